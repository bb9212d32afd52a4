"""Ingest with bounded memory: the digest sets spilled to disk give the same output as in memory,
and peak RSS stays flat when the input grows 4x.

    PYTHONPATH=$PWD/src python -m pytest -q tests/test_ingest_stream.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

import mothertongue.digests as digests
from mothertongue.config import load_recipe
from mothertongue.runs import run_stage

FIX = Path(__file__).parent / "fixtures" / "ingest"
OUTPUTS = ("train.jsonl", "dev.jsonl", "test.jsonl", "pairs.jsonl", "documents.jsonl", "report.json")


def _recipe(tmp_path: Path, name: str, sources: list, **cfg) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "run_dir": str(tmp_path / "run"), "ingest": {"sources": sources, **cfg}}))
    return p


def _outputs(recipe: Path) -> dict[str, bytes]:
    out = run_stage(load_recipe(recipe), "ingest", force=True, log=lambda m: None).path
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any(f.startswith(".") for f in manifest["files"]), manifest["files"]  # no scratch file left
    return {f: (out / f).read_bytes() for f in OUTPUTS if (out / f).exists()}


def test_spilled_digests_give_the_same_output(tmp_path, monkeypatch):
    rows = [(f"Frage {i % 40}?", f"Antwort {i % 7}.") for i in range(300)] + [("frage 3", "ANTWORT 3")]
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps({"instruction": q, "input": "", "output": o}) + "\n" for q, o in rows))
    docs = tmp_path / "d.txt"
    docs.write_text("Erster Absatz.\n\nZweiter Absatz.\n\nerster absatz\n\n" * 3)
    sources = [
        {"path": str(a), "format": "alpaca", "weight": 1.5},
        {"path": str(FIX / "oasst_flat.jsonl")},  # threads: outputs made of several records
        {"path": str(FIX / "oasst_flat.jsonl"), "limit": 5},  # the same threads again: duplicates
        {"path": str(FIX / "preference.jsonl")},
        {"path": str(docs), "format": "documents"},
        {"path": str(a), "format": "alpaca", "weight": 0.5},
    ]
    recipe = _recipe(tmp_path, "r", sources, dedup="near", on_error="skip", allow_empty=True,
                     dev_fraction=0.2, test_fraction=0.2)
    in_memory = _outputs(recipe)
    monkeypatch.setattr(digests, "SPILL_AT", 2)  # every digest set moves to SQLite at once
    assert _outputs(recipe) == in_memory
    rep = json.loads(in_memory["report.json"])
    assert rep["skipped"]["duplicate (exact)"] > 300 and rep["skipped"]["duplicate (near: same normalised text)"] >= 2
    assert rep["read"] == rep["converted"] + sum(rep["skipped"].values())
    for s in rep["sources"]:
        assert s["read"] == s["converted"] + s["skipped"], s


_MEASURE = """
import resource, sys
from mothertongue.config import load_recipe
from mothertongue.runs import run_stage
summary = run_stage(load_recipe(sys.argv[1]), "ingest", force=True, log=lambda m: None).summary
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, summary["conversations"])
"""


def _peak_kib(tmp_path: Path, n: int) -> tuple[int, int]:
    """Peak RSS of a fresh process ingesting n ~1 KiB Alpaca records (every 10th a duplicate)."""
    path = tmp_path / f"a{n}.jsonl"
    filler = "Dies ist ein Satz mit ein paar Wörtern, der die Antwort länger macht. " * 14
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            k = i - 1 if i % 10 == 9 else i
            f.write(json.dumps({"instruction": f"Frage {k}?", "input": "", "output": f"{k}: {filler}"},
                               ensure_ascii=False) + "\n")
    recipe = _recipe(tmp_path, f"r{n}", [{"path": str(path), "format": "alpaca"}], test_fraction=0.1)
    res = subprocess.run([sys.executable, "-c", _MEASURE, str(recipe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    peak, convs = map(int, res.stdout.split()[-2:])
    assert convs == n - n // 10
    return peak, path.stat().st_size


def test_peak_memory_does_not_grow_with_the_input(tmp_path):
    # 8,000 records (9 MiB) against 32,000 (35 MiB): holding the records, or the file, would add
    # over 100 MiB to the larger run's peak; streaming keeps both near the interpreter's own size.
    small, small_bytes = _peak_kib(tmp_path, 8_000)
    large, large_bytes = _peak_kib(tmp_path, 32_000)
    assert large_bytes > 3.9 * small_bytes
    assert large < 1.5 * small, f"peak RSS {small} KiB -> {large} KiB for 4x the input"
