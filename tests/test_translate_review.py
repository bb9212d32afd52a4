"""Human post-editing (`mothertongue review`): export segments, correct two, import, rerun
translate: exactly those two change in the output, nothing is translated again.

    python -m pytest -q tests/test_translate_review.py
"""

from __future__ import annotations

import csv
import json
import random
import sqlite3
from pathlib import Path

import pytest

from helpers import mt, one_line_error
from test_translate import read, run_translate, sent, write_recipe
from test_translate_fixtures import tiny_marian_path


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory) -> Path:
    return tiny_marian_path(tmp_path_factory)


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _messages(run_dir: Path) -> list[str]:
    return [m["content"] for split in ("train", "dev", "test")
            for c in read(run_dir / "translate" / f"{split}.jsonl") for m in c["messages"]]


def test_review_round_trip_changes_exactly_the_corrected_segments(tiny_marian, tmp_path):
    rng = random.Random(7)
    convs = [{"messages": [{"role": "user", "content": f"{sent(rng)} {sent(rng)}"},
                           {"role": "assistant", "content": f"{sent(rng)}\n\n{sent(rng)}"}]} for _ in range(6)]
    recipe = write_recipe(tmp_path, tiny_marian, convs)
    r, out = run_translate(recipe)
    run = Path(r.run_dir)
    before = _messages(run)
    memory = run / "translate-memory.sqlite"
    db_rows = lambda: sqlite3.connect(memory).execute("SELECT * FROM tm ORDER BY source").fetchall()  # noqa: E731
    machine = db_rows()

    # Nothing is flagged here: the default export is empty; --sample takes segments from all.
    assert mt("review", run, "--export", tmp_path / "flagged.csv").returncode == 0
    assert _rows(tmp_path / "flagged.csv") == []
    res = mt("review", run, "--export", tmp_path / "review.csv", "--sample", 1000)
    assert res.returncode == 0, res.stderr
    rows = _rows(tmp_path / "review.csv")
    assert len(rows) == len(machine) >= 12 and all(r["correction"] == "" for r in rows)
    fixed = {rows[1]["source"]: "KORRIGIERT EINS.", rows[4]["source"]: "KORRIGIERT ZWEI."}
    for r_ in rows:
        r_["correction"] = fixed.get(r_["source"], "")
    _write(tmp_path / "review.csv", rows)
    res = mt("review", run, "--import", tmp_path / "review.csv")
    assert res.returncode == 0 and "2 corrections stored" in res.stdout, res.stderr

    # The machine output stays in the memory beside the correction.
    assert [row[:6] for row in db_rows()] == [row[:6] for row in machine]
    # The rerun reassembles (the corrections are part of the stage's fingerprint) from the memory.
    from mothertongue.runs import run_stage

    result = run_stage(r, "translate", log=lambda m: None)
    assert not result.skipped
    assert result.summary["segments"]["translated"] == 0
    after = _messages(run)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert len(after) == len(before) and 1 <= len(changed) <= 2
    old_targets = {row[4]: row[5] for row in machine}
    for b, a in changed:
        assert sum(old_targets[s] in b and fix in a for s, fix in fixed.items()) >= 1
    assert sum(a.count(fix) for a in after for fix in fixed.values()) >= 2
    report = json.loads((out / "report.json").read_text())
    assert report["segments"]["from_memory"] == len(machine)

    # A file from elsewhere (an unknown segment) is one line naming the file and line; nothing written.
    rows[2]["source"] = "a segment this run never had"
    _write(tmp_path / "bad.csv", rows)
    one_line_error(mt("review", run, "--import", tmp_path / "bad.csv"), "bad.csv:4", "not in")
    assert sum(row[8] is not None for row in db_rows()) == 2
