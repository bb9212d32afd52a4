"""Stage outputs land atomically; unchanged stages are skipped; a bad input never spoils good output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mothertongue.config import load_recipe
from mothertongue.conversation import DataError
from mothertongue.runs import RunDir, StageError, run_stage

TINY = ["tiny_model.hidden_size=64", "tiny_model.intermediate_size=128", "tiny_model.num_hidden_layers=2",
        "tiny_model.num_attention_heads=4", "tiny_model.vocab_size=400"]


def _recipe(tmp_path, lines: str, extra=()):
    data = tmp_path / "d.txt"
    data.write_text(lines, encoding="utf-8")
    p = tmp_path / "r.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\ningest:\n  sources:\n    - path: d.txt\n      format: text\n")
    return p, data


def test_skip_when_unchanged_and_redo_on_change(tmp_path):
    p, data = _recipe(tmp_path, "A.#B\nC.#D\n")
    logs = []
    r = load_recipe(p)
    run_stage(r, "ingest", log=logs.append)
    first = json.loads((tmp_path / "run/ingest/manifest.json").read_text())
    run_stage(r, "ingest", log=logs.append)
    assert any("skipped: inputs and settings unchanged" in m for m in logs)
    assert json.loads((tmp_path / "run/ingest/manifest.json").read_text()) == first
    run_stage(r, "ingest", force=True, log=logs.append)
    assert json.loads((tmp_path / "run/ingest/manifest.json").read_text())["finished"] >= first["finished"]
    data.write_text("A.#B\nC.#D\nE.#F\n", encoding="utf-8")
    out = run_stage(load_recipe(p), "ingest", log=logs.append).path
    assert len((out / "train.jsonl").read_text().splitlines()) == 3
    # a settings change redoes the stage too
    run_stage(load_recipe(p, ["ingest.dedup=none"]), "ingest", log=logs.append)
    assert sum("skipped" in m for m in logs) == 1


def test_bad_record_never_corrupts_good_output(tmp_path):
    p, data = _recipe(tmp_path, "A.#B\nC.#D\n")
    run_stage(load_recipe(p), "ingest")
    good = (tmp_path / "run/ingest/train.jsonl").read_text()
    data.write_text("A.#B\nC.#D\nkaputt\n", encoding="utf-8")
    with pytest.raises(DataError, match="d.txt:3"):
        run_stage(load_recipe(p), "ingest")
    assert (tmp_path / "run/ingest/train.jsonl").read_text() == good
    assert (tmp_path / "run/ingest/manifest.json").exists()
    # the half-done attempt is not complete and is never read as output
    assert not (tmp_path / "run/ingest.partial/manifest.json").exists()


def test_killed_stage_is_not_taken_as_complete(tmp_path):
    lines = "".join(f"Frage {i}.#Antwort {i} ist lang genug, um etwas zu lernen.\n" for i in range(40))
    p, _ = _recipe(tmp_path, lines)
    r = load_recipe(p, TINY + ["train.epochs=200", "train.save_steps=20", "train.batch_size=2"])
    run_stage(r, "ingest")
    run_stage(r, "build")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mothertongue", "train", str(p), *TINY, "train.epochs=200", "train.save_steps=20", "train.batch_size=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    partial = tmp_path / "run" / "train.partial"
    deadline = time.time() + 120
    while time.time() < deadline and not list(partial.glob("checkpoints/checkpoint-*")):
        time.sleep(0.3)
    assert proc.poll() is None, "training finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = RunDir(tmp_path / "run")
    assert not run.complete("train")
    assert not (tmp_path / "run" / "train").exists()
    with pytest.raises(StageError, match="missing or incomplete"):
        run_stage(r, "evaluate")
    # rerun with fewer epochs would change the fingerprint; the same settings resume instead
    assert (partial / ".fingerprint").exists()
