"""The round-trip score (`translate.round_trip`): a correct translator scores high, a broken one
(every word mapped to the wrong word) scores low and its segments are flagged; scores are kept
per segment in the translation memory and a rerun translates nothing again.

    python -m pytest -q tests/test_translate_roundtrip.py
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from test_translate import read, run_translate
from test_translate_fixtures import WORDS, random_sentence, to_xx

pytestmark = pytest.mark.slow


def wrong_xx(sentence: str) -> str:
    """A broken translator: each word becomes the xx word of the next word in the list."""
    shifted = {w: WORDS[(i + 1) % len(WORDS)] for i, w in enumerate(WORDS)}
    return to_xx(" ".join(shifted.get(w.strip(".!?"), w) + w[len(w.rstrip(".!?")):] for w in sentence.split()))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """Sentences, and toy parallel files: correct en->xx, broken en->xx, correct xx->en."""
    root = tmp_path_factory.mktemp("roundtrip")
    rng = random.Random(3)
    sents = sorted({random_sentence(rng, 3, 6).rstrip(".!?") + "." for _ in range(40)})
    for name, fn in (("good", to_xx), ("bad", wrong_xx)):
        (root / f"{name}.tsv").write_text("".join(f"{s}\t{fn(s)}\n" for s in sents), encoding="utf-8")
    (root / "back.tsv").write_text("".join(f"{to_xx(s)}\t{s}\n" for s in sents), encoding="utf-8")
    return root, sents


def _run(root: Path, sents: list[str], forward: str, folder: str):
    convs = [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
             for a, b in zip(sents[::2], sents[1::2])]
    data = root / f"{folder}.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
    recipe = root / f"{folder}.yaml"
    recipe.write_text(
        f"name: rt\nrun_dir: {root / folder}\nlanguage: xx\n"
        f"ingest:\n  sources:\n    - {{path: {data}, format: openai, options: {{lang: en}}}}\n"
        f"translate:\n  enabled: true\n  progress: false\n  models: {{en-xx: 'toy:{forward}.tsv', xx-en: 'toy:back.tsv'}}\n"
        f"  round_trip: {{enabled: true, min_chrf: 50}}\n", encoding="utf-8")
    return run_translate(recipe)


def test_round_trip_scores_a_good_translator_high_and_flags_a_broken_one(corpus):
    root, sents = corpus
    _, good = _run(root, sents, "good", "good-run")
    rt = json.loads((good / "report.json").read_text())["segments"]["round_trip"]
    assert rt["scored"] == len(sents) and rt["flagged"] == 0 and rt["mean_chrf"] > 90, rt
    assert sum(len(c["messages"]) for c in read(good / "train.jsonl")) == len(sents)

    r, bad = _run(root, sents, "bad", "bad-run")
    report = json.loads((bad / "report.json").read_text())
    rt = report["segments"]["round_trip"]
    assert rt["scored"] == len(sents) and rt["mean_chrf"] < 40 and rt["flagged"] >= 0.9 * len(sents), rt
    assert len(read(bad / "flagged.jsonl")) >= 0.9 * len(sents) / 2  # conversations of two messages
    # Per-segment scores and the flag live in the memory.
    db = sqlite3.connect(Path(r.run_dir) / "translate-memory.sqlite")
    rows = db.execute("SELECT status, scores FROM tm WHERE src='en' AND tgt='xx'").fetchall()
    assert len(rows) == len(sents)
    assert sum(st == "flagged:round-trip" for st, _ in rows) == rt["flagged"]
    assert all(json.loads(sc)["round_trip_chrf"] < 50 for st, sc in rows if st == "flagged:round-trip")

    # A rerun (forced) translates nothing, in either direction, and reaches the same verdict.
    from mothertongue.runs import run_stage

    again = run_stage(r, "translate", force=True, log=lambda m: None).summary["segments"]
    assert again["translated"] == 0 and again["round_trip"]["flagged"] == rt["flagged"]
    assert db.execute("SELECT COUNT(*) FROM tm").fetchone()[0] == 2 * len(sents)


def test_a_segment_in_two_chunks_is_scored_and_counted_once(corpus):
    root, sents = corpus
    sents = sents[:12]
    # conversation i is (sentence i, sentence i+1): every inner sentence is in two conversations,
    # which chunks of two conversations put into two chunks
    convs = [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
             for a, b in zip(sents, sents[1:])]
    data = root / "overlap.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
    recipe = root / "overlap.yaml"
    toys = root / "bad-run" / "toy-mt"  # the models the test above trained, when it ran (else trained now)
    toys.mkdir(parents=True, exist_ok=True)
    (root / "overlap-run").mkdir()
    (root / "overlap-run" / "toy-mt").symlink_to(toys)
    recipe.write_text(
        f"name: rt\nrun_dir: {root / 'overlap-run'}\nlanguage: xx\n"
        f"ingest:\n  sources:\n    - {{path: {data}, format: openai, options: {{lang: en}}}}\n"
        f"translate:\n  enabled: true\n  progress: false\n  chunk_records: 2\n"
        f"  models: {{en-xx: 'toy:bad.tsv', xx-en: 'toy:back.tsv'}}\n"
        f"  round_trip: {{enabled: true, min_chrf: 50}}\n", encoding="utf-8")
    r, out = run_translate(recipe)
    report = json.loads((out / "report.json").read_text())
    assert report["chunks"] == 6
    rt = report["segments"]["round_trip"]
    db = sqlite3.connect(Path(r.run_dir) / "translate-memory.sqlite")
    rows = db.execute("SELECT status, scores FROM tm WHERE src='en' AND tgt='xx'").fetchall()
    assert rt["scored"] == len(rows) == len(sents), rt
    assert rt["flagged"] == sum(st == "flagged:round-trip" for st, _ in rows) >= 0.9 * len(sents), rt
    mean = sum(json.loads(sc)["round_trip_chrf"] for _, sc in rows) / len(rows)
    assert rt["mean_chrf"] == pytest.approx(mean, abs=0.1)
    assert not (out / ".scored.sqlite").exists()
