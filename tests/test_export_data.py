"""`mothertongue export-data`: a translated run as a Hugging Face dataset, JSONL files and a card.

    python -m pytest -q tests/test_export_data.py

The run is translated through the remote engine against a stub OpenAI-compatible server on
loopback (it answers `[de] <text>`), so the quality gate flags the long messages (still English)
and passes the short ones; the export must reload with `datasets.load_dataset` with the rows of
the translate stage, and its card must name the model and the counts. Pushing is tested only as
far as it goes without a network: refused in one line, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import mt, one_line_error, run_recipe
from stub_openai import Stub

SHORT = ["Name a color.#Red.", "Say hello.#Hello!", "Count to three.#One, two, three."]
LONG = [
    "Explain in a few words why the sky looks blue during the day.#Sunlight is scattered by the air, and blue light is scattered the most."
]
PAIRS = [
    {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A chair."},
    {"prompt": "Name an animal.", "chosen": "A cat.", "rejected": "A rock."},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-data")
    (tmp / "d.txt").write_text("\n".join(SHORT * 1 + LONG) + "\n", encoding="utf-8")
    (tmp / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    stub = Stub()
    recipe = tmp / "r.yaml"
    recipe.write_text(
        f"name: demo\nrun_dir: {tmp / 'run'}\nlanguage: de\n"
        "ingest:\n  dev_fraction: 0\n  test_fraction: 0\n  sources:\n"
        "    - {path: d.txt, format: text, options: {lang: en}, license: cc-by-4.0}\n"
        "    - {path: p.jsonl, format: preference, options: {lang: en}}\n"
        "translate:\n  enabled: true\n  engine: remote\n  model: tiny-mt\n  progress: false\n"
        f"  options: {{url: '{stub.url}', api_key_env: null}}\n",
        encoding="utf-8",
    )
    try:
        run_recipe(recipe, [], stages=["ingest", "translate"])
    finally:
        stub.close()
    return tmp / "run"


def test_parquet_reloads_with_identical_rows_and_card_counts(run, tmp_path):
    from datasets import load_dataset

    from mothertongue.export.data import export_data

    res = export_data(run)
    out = Path(res["out"])
    report = json.loads((run / "translate" / "report.json").read_text())
    translated = [
        json.loads(line) for line in (run / "translate" / "train.jsonl").read_text().splitlines()
    ]
    assert len(translated) == len(SHORT) and len(report["flagged"]) == len(
        LONG
    )  # the long one kept out
    ds = load_dataset(str(out), cache_dir=str(tmp_path))  # the card's YAML names the files
    assert list(ds) == ["train"]
    rows = ds["train"].to_list()
    assert [r["id"] for r in rows] == [c["id"] for c in translated]
    for r, c in zip(rows, translated):
        assert r["messages"] == [
            {"role": m["role"], "content": m["content"]} for m in c["messages"]
        ]
        assert r["source_messages"] == [
            {"role": m["role"], "content": m["content"]} for m in c["meta"]["source_messages"]
        ]
        assert r["lang"] == "de" and r["source_lang"] == "en" and r["source"] == c["source"]
    again = load_dataset(
        "parquet",
        data_files={"train": str(out / "data" / "train-00000-of-00001.parquet")},
        cache_dir=str(tmp_path),
    )
    assert again["train"].to_list() == rows
    # TRL's conversational preference format, translated
    pref = load_dataset(str(out), "preference", cache_dir=str(tmp_path))["train"].to_list()
    assert sorted(p["chosen"][0]["content"] for p in pref) == ["[de] A cat.", "[de] An apple."]
    assert all(
        p["prompt"][0]["role"] == "user" and p["rejected"][0]["role"] == "assistant" for p in pref
    )
    # OpenAI messages and ShareGPT JSONL carry the same conversations
    msgs = [
        json.loads(line) for line in (out / "messages" / "train.jsonl").read_text().splitlines()
    ]
    assert [m["messages"] for m in msgs] == [r["messages"] for r in rows]
    share = [
        json.loads(line) for line in (out / "sharegpt" / "train.jsonl").read_text().splitlines()
    ]
    assert [[t["value"] for t in s["conversations"]] for s in share] == [
        [m["content"] for m in r["messages"]] for r in rows
    ]
    assert (
        share[0]["conversations"][0]["from"] == "human"
        and share[0]["conversations"][1]["from"] == "gpt"
    )
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["mothertongue_train"]["file_name"] == "sharegpt/train.jsonl"
    # the card: model, engine, counts, licenses, what was kept out
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "license: cc-by-4.0" in card
    assert "MT models: tiny-mt" in card and "engine `remote`" in card
    assert f"| en->de | {report['messages_by_pair']['en->de']} |" in card
    assert f"records flagged: {len(LONG)} (kept out of this dataset)" in card
    assert "| `d.txt` | text | cc-by-4.0 | 4 | 4 | 0 |" in card
    assert "not stated in the recipe" in card  # the preference source names no license
    assert "api_key" not in card or "api_key_env" in card


def test_push_is_refused_without_hub_and_nothing_is_written(run, tmp_path):
    out = tmp_path / "x"
    res = mt(
        "export-data",
        run,
        "--out",
        out,
        "--push-to-hub",
        "me/demo",
        env={**_env(), "HF_HUB_OFFLINE": "1"},
    )
    one_line_error(res, "--push-to-hub me/demo", "offline", "nothing was pushed")
    assert not out.exists()
    res = mt("export-data", run, "--out", out, "--push-to-hub", "not a repo", env=_env())
    one_line_error(res, "user/name")
    res = mt("export-data", run, "--out", out, "--public", env=_env())
    one_line_error(res, "--public only applies with --push-to-hub")
    assert not out.exists()


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}


def test_built_mix_and_preference_come_from_the_build(run, tmp_path):
    from datasets import load_dataset

    from mothertongue.export.data import export_data

    run_recipe(run.parent / "r.yaml", ["build.template=chatml"], stages=["build"])
    out = Path(export_data(run, tmp_path / "out")["out"])
    built = [json.loads(line) for line in (run / "build" / "train.jsonl").read_text().splitlines()]
    rows = load_dataset(str(out), "built", cache_dir=str(tmp_path / "cache"))["train"].to_list()
    assert [r["messages"] for r in rows] == [[{"role": m["role"], "content": m["content"]} for m in b["messages"]] for b in built]
    pref = load_dataset(str(out), "preference", cache_dir=str(tmp_path / "cache"))["train"].to_list()
    want = [json.loads(line) for line in (run / "build" / "preference.jsonl").read_text().splitlines()]
    assert [p["prompt"] for p in pref] == [w["prompt"] for w in want]  # with the build's system prompts
    assert "## Build" in (out / "README.md").read_text()


def test_card_reports_the_round_trip_and_judge_scores():
    from mothertongue.config import Recipe
    from mothertongue.export.datacard import translation_section

    recipe = Recipe(translate={"quality_estimation": {"enabled": True, "model": "judge-7b"}})
    segments = {"round_trip": {"scored": 40, "flagged": 3, "mean_chrf": 71.5, "min_chrf": 25.0, "skipped": {}},
                "quality_estimation": {"scored": 34, "asked": 40, "unparsed": 6, "flagged": 2, "mean_score": 88.1,
                                       "min_score": 50.0, "skipped": {}}}
    text = "\n".join(translation_section(recipe, {"segments": segments}))
    assert "round trip (back-translated, chrF against the source): 40 segments scored, mean 71.5, 3 flagged under 25.0" in text
    assert ("quality estimation (LLM judge `judge-7b`, 0-100): 34 segments scored, mean 88.1, 2 flagged under 50.0, "
            "6 unparsed") in text
    assert "round trip" not in "\n".join(translation_section(recipe, {"segments": {}}))
