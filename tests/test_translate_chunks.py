"""Translate in chunks of `translate.chunk_records` records: the same output as one piece, and
peak memory that does not grow with the input.

    python -m pytest -q tests/test_translate_chunks.py

The engine is the remote engine against a stub OpenAI-compatible server on loopback (answers
`[de] <segment>`), so long English messages fail the quality gate's language check and are
flagged, with labels that must not depend on the chunking.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from helpers import run_recipe
from mothertongue.conversation import Conversation, Document, Message, PreferencePair, write_jsonl
from mothertongue.runs import atomic_write_json
from stub_openai import Stub

WORDS = (
    "cat dog house tree water bread milk apple book table chair window door sun moon star".split()
)
SENTENCES = [f"The {a} sees the {b}." for a in WORDS for b in WORDS if a != b]


def write_ingest(run: Path, n: int) -> None:
    """An ingest output of n conversations (plus a few pairs and documents), written directly."""
    d = run / "ingest"
    d.mkdir(parents=True, exist_ok=True)
    convs = []
    for i in range(n):
        a, b = SENTENCES[i % len(SENTENCES)], SENTENCES[(7 * i + 3) % len(SENTENCES)]
        answer = (
            f"{b} {a}"
            if i % 5
            else "Sunlight is scattered by the air in every direction, blue light the most."
        )
        convs.append(
            Conversation(f"c{i}", [Message("user", a), Message("assistant", answer)], "en")
        )
    split = {
        "train": convs[: n * 8 // 10],
        "dev": convs[n * 8 // 10 : n * 9 // 10],
        "test": convs[n * 9 // 10 :],
    }
    for s, cs in split.items():
        write_jsonl(d / f"{s}.jsonl", cs)
    pairs = [
        PreferencePair(
            f"p{i}", [Message("user", SENTENCES[i])], SENTENCES[i + 1], SENTENCES[i + 2], "en"
        )
        for i in range(3)
    ]
    write_jsonl(d / "pairs.jsonl", pairs)
    docs = [
        Document(f"d{i}", f"# {SENTENCES[i]}\n\n- {SENTENCES[i + 1]}\n\n```\ncode()\n```", "en")
        for i in range(3)
    ]
    write_jsonl(d / "documents.jsonl", docs)
    atomic_write_json(d / "manifest.json", {"stage": "ingest", "fingerprint": f"test-{n}"})


def write_recipe(tmp: Path, url: str, chunk: int, gate: bool = True) -> Path:
    p = tmp / "r.yaml"
    p.write_text(
        f"run_dir: {tmp / 'run'}\nlanguage: de\ningest:\n  sources: [{{path: none.txt, format: text}}]\n"
        "translate:\n  enabled: true\n  engine: remote\n  model: tiny-mt\n  progress: false\n"
        f"  chunk_records: {chunk}\n  quality_gate: {str(gate).lower()}\n  options: {{url: '{url}', concurrency: 4}}\n",
        encoding="utf-8",
    )
    return p


def translate(tmp: Path, url: str, n: int, chunk: int, gate: bool = True) -> Path:
    tmp.mkdir(exist_ok=True)
    write_ingest(tmp / "run", n)
    run_recipe(write_recipe(tmp, url, chunk, gate), [], stages=["translate"])
    return tmp / "run" / "translate"


@pytest.fixture(scope="module")
def stub():
    s = Stub()
    yield s
    s.close()


def test_chunked_output_is_identical_to_one_piece(stub, tmp_path):
    whole = translate(tmp_path / "whole", stub.url, 20, 100_000)
    chunked = translate(tmp_path / "chunked", stub.url, 20, 3)
    files = sorted(p.name for p in whole.glob("*.jsonl"))
    assert files == sorted(p.name for p in chunked.glob("*.jsonl")) and "documents.jsonl" in files
    for name in files:
        assert (whole / name).read_bytes() == (chunked / name).read_bytes(), name
    a, b = (json.loads((d / "report.json").read_text()) for d in (whole, chunked))
    assert (
        b["chunks"] == 9 and a["chunks"] == 1
    )  # 20 conversations + 3 pairs + 3 documents = 26 records
    for key in ("written", "messages_by_pair", "passthrough_messages", "flagged"):
        assert a[key] == b[key], key
    # labels carry global indexes: train/i is conversation c{i}, dev/i is c{16 + i}, test/i c{18 + i}
    start = {"train": 0, "dev": 16, "test": 18}
    convs = [f for f in a["flagged"] if f["kind"] == "conversation"]
    for f in convs:
        split, index, _ = f["reasons"][0].split(":")[0].split("/")
        assert f["id"] == f"c{start[split] + int(index)}", f
    assert {f["split"] for f in convs} == {"train", "dev", "test"}
    kept = sum(len((whole / f"{s}.jsonl").read_text().splitlines()) for s in start)
    assert kept + len(convs) == 20


def test_report_lists_the_first_flagged_and_counts_all(stub, tmp_path, monkeypatch):
    import importlib

    # the module, not the package's `assemble` function of the same name
    monkeypatch.setattr(importlib.import_module("mothertongue.translate.assemble"), "FLAGGED_IN_REPORT", 2)
    out = translate(tmp_path, stub.url, 20, 3)  # 9 chunks, flagged records in several of them
    report = json.loads((out / "report.json").read_text())
    rows = [json.loads(line) for line in (out / "flagged.jsonl").read_text().splitlines()]
    assert len(rows) > 2 and report["flagged_count"] == len(rows)  # nothing lost: all on disk
    assert report["flagged"] == [{k: r[k] for k in ("kind", "id", "reasons", "split") if k in r} for r in rows[:2]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["flagged"] == len(rows)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_input(stub, tmp_path):
    translate(
        tmp_path / "warm-up", stub.url, 50, 500, gate=False
    )  # lazy imports and caches, not counted
    peaks = {}
    for n in (1500, 6000):
        tmp = tmp_path / str(n)
        tmp.mkdir()
        write_ingest(tmp / "run", n)  # the test's own data, made before measuring
        recipe = write_recipe(tmp, stub.url, 500, gate=False)
        tracemalloc.start()
        run_recipe(recipe, [], stages=["translate"])
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # 4x the records: the Python heap's peak stays within 1.5x (one chunk's structures plus what
    # the memory lookups hold), where planning the whole input at once would need about 4x. The
    # gate is off, so the flagged records' own rows do not vary with it.
    assert peaks[6000] < 1.5 * peaks[1500], peaks


def test_dry_run_in_chunks_says_the_same(stub, tmp_path):
    from mothertongue.config import load_recipe
    from mothertongue.translate import dry_run

    write_ingest(tmp_path / "run", 20)
    recipe = write_recipe(tmp_path, stub.url, 100_000)
    asked = stub.requests
    whole, chunked = (
        dry_run(load_recipe(recipe, [f"translate.chunk_records={n}"]), calibrate=0)
        for n in (100_000, 3)
    )
    assert whole == chunked and "segments: 71; distinct 35 (memory saves 36 repeats)" in whole, (
        whole
    )
    assert stub.requests == asked  # nothing translated by a dry run without calibration
