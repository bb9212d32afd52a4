"""The ingest stage on several sources: formats mixed, limits and weights, exact and near
duplicates, a split that stays put when sources are added, the report, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mothertongue.config import load_recipe
from mothertongue.conversation import DataError, read_conversations, read_pairs
from mothertongue.runs import run_stage

FIX = Path(__file__).parent / "fixtures" / "ingest"


def ingest(tmp_path, sources, name="r", **ingest_cfg):
    recipe = {"name": name, "run_dir": str(tmp_path / name), "ingest": {"sources": sources, **ingest_cfg}}
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    out = run_stage(load_recipe(p), "ingest", force=True, log=lambda m: None).path
    convs = {s: read_conversations(out / f"{s}.jsonl") for s in ("train", "dev", "test")}
    return out, convs, json.loads((out / "report.json").read_text())


def _alpaca(tmp_path, rows, name="a.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False) + "\n" for q, a in rows))
    return str(p)


def test_mixed_sources_report_and_outputs(tmp_path):
    srcs = [{"path": str(FIX / "alpaca.json")}, {"path": str(FIX / "dolly.jsonl")},
            {"path": str(FIX / "oasst_flat.jsonl")}, {"path": str(FIX / "preference.jsonl")},
            {"path": str(FIX / "sharegpt.json"), "format": "sharegpt"}]
    out, convs, rep = ingest(tmp_path, srcs, on_error="skip", dev_fraction=0.2, test_fraction=0.2)
    n = sum(len(v) for v in convs.values())
    assert n == 4 + 3 + 4 + 2
    pairs = read_pairs(out / "pairs.jsonl")
    assert len(pairs) == 3 + 2  # 3 valid preference rows + 2 OASST pairs
    # converted counts records read, not outputs (issue #14): 16 OASST messages -> 12 used in
    # 4 threads and 2 pairs, 4 skipped; every record read is converted or skipped, once
    assert rep["read"] == 4 + 3 + 16 + 4 + 2 and rep["converted"] == 4 + 3 + 12 + 3 + 2
    assert rep["read"] == rep["converted"] + sum(rep["skipped"].values())
    for s in rep["sources"]:
        assert s["read"] == s["converted"] + s["skipped"], s
    assert [s["format"] for s in rep["sources"]] == ["alpaca", "dolly", "oasst", "preference", "sharegpt"]
    assert rep["sources"][0]["detected"].startswith("records have the fields")
    assert rep["skipped"]["invalid conversation"] == 1  # chosen == rejected
    assert rep["languages"]["pt-BR"] == 1 and rep["message_languages"]["uk-UA"] == 2
    assert rep["turns"] == {"2": 10, "3": 1, "4": 2} and sum(rep["chars_histogram"].values()) == n
    assert sum(rep["splits"].values()) == n


def test_on_error_stop_writes_nothing(tmp_path):
    srcs = [{"path": str(FIX / "alpaca.json")}, {"path": str(FIX / "alpaca_bad.jsonl"), "format": "alpaca"}]
    with pytest.raises(DataError, match=r"alpaca_bad.jsonl:2: invalid JSON"):
        ingest(tmp_path, srcs)
    assert not (tmp_path / "r" / "ingest").exists()
    _, convs, rep = ingest(tmp_path, srcs, on_error="skip")
    assert sum(len(v) for v in convs.values()) == 6
    assert rep["skipped"] == {"invalid JSON": 1, "missing field output": 1, "empty output": 1, "encoding": 1}


def test_exact_and_near_duplicates_counted(tmp_path):
    a = _alpaca(tmp_path, [("Sag hallo.", "Hallo!"), ("Sag hallo.", "Hallo!"), ("sag  Hallo", "hallo"),
                           ("Zähle.", "Eins.")])
    _, convs, rep = ingest(tmp_path, [{"path": a, "format": "alpaca"}], dedup="exact")
    assert sum(map(len, convs.values())) == 3 and rep["skipped"] == {"duplicate (exact)": 1}
    _, convs, rep = ingest(tmp_path, [{"path": a, "format": "alpaca"}], dedup="near")
    assert sum(map(len, convs.values())) == 2
    assert rep["skipped"] == {"duplicate (exact)": 1, "duplicate (near: same normalised text)": 1}
    assert rep["examples"]["duplicate (near: same normalised text)"][0].endswith("a.jsonl:3")


def test_split_is_stable_when_sources_are_added(tmp_path):
    a = _alpaca(tmp_path, [(f"Frage {i}?", f"Antwort {i}.") for i in range(300)])
    b = _alpaca(tmp_path, [(f"Andere {i}?", f"Ja {i}.") for i in range(300)], "b.jsonl")
    cfg = {"dev_fraction": 0.1, "test_fraction": 0.2}
    _, one, _ = ingest(tmp_path, [{"path": a, "format": "alpaca"}], name="one", **cfg)
    _, two, _ = ingest(tmp_path, [{"path": b, "format": "alpaca"}, {"path": a, "format": "alpaca"}], name="two", **cfg)
    where1 = {c.id: s for s, cs in one.items() for c in cs}
    where2 = {c.id: s for s, cs in two.items() for c in cs}
    assert all(where2[i] == s for i, s in where1.items())
    assert 30 <= len(one["test"]) <= 90 and 10 <= len(one["dev"]) <= 55  # ~60 and ~30 of 300


def test_limit_and_weights(tmp_path):
    a = _alpaca(tmp_path, [(f"Frage {i}?", f"Antwort {i}.") for i in range(200)])
    b = _alpaca(tmp_path, [(f"Zwei {i}?", f"B {i}.") for i in range(10)], "b.jsonl")
    srcs = [{"path": a, "format": "alpaca", "weight": 0.5}, {"path": b, "format": "alpaca", "weight": 2.5, "limit": 8}]
    _, convs, rep = ingest(tmp_path, srcs, test_fraction=0.3)
    all_c = [c for cs in convs.values() for c in cs]
    from_a = [c for c in all_c if c.source == "a"]
    from_b = [c for c in all_c if c.source == "b"]
    assert 70 <= len(from_a) <= 130 and rep["skipped"]["sampled out (weight=0.5)"] == 200 - len(from_a)
    originals = [c for c in from_b if "copy_of" not in c.meta]
    assert len(originals) == 8 and 16 <= len(from_b) <= 24
    split_of = {c.id: s for s, cs in convs.items() for c in cs}
    for c in from_b:  # a copy never lands in another split than its original
        if "copy_of" in c.meta:
            assert split_of[c.id] == split_of[c.meta["copy_of"]]
    # the same recipe gives the same selection
    _, again, _ = ingest(tmp_path, srcs, name="again", test_fraction=0.3)
    assert sorted(c.id for cs in again.values() for c in cs) == sorted(c.id for c in all_c)


def test_unknown_format_and_missing_file_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"ingest.sources.0.format: unknown source format 'alpacca'; did you mean alpaca"):
        ingest(tmp_path, [{"path": str(FIX / "alpaca.json"), "format": "alpacca"}])
    with pytest.raises(DataError, match="file not found"):
        ingest(tmp_path, [{"path": str(tmp_path / "nope.json"), "format": "alpaca"}])
