"""`mothertongue status`: a run in each state (fresh, failed, complete, one stage changed, partial
after a kill) reads back right, as a table and as JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import TINY, mt, run_recipe, write_text_recipe

LINES = "".join(f"Wie heißt Zahl {i}?#Die Zahl heißt {i}.\n" for i in range(40))
TRAIN = ["build.template=chatml", "build.max_length=64", "train.adapter=full", "train.batch_size=8",
         "train.logging_steps=5", "train.save_steps=5", "train.max_steps=10", "evaluate.enabled=false", *TINY]


def states(run_dir) -> dict[str, dict]:
    from mothertongue.status import stage_states

    return {r["stage"]: r for r in stage_states(run_dir)}


@pytest.mark.slow
def test_status_in_every_state(tmp_path):
    from mothertongue.errors import MothertongueError

    recipe = write_text_recipe(tmp_path, "kein trenner\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert {r["state"] for r in states(run_dir).values()} == {"not started"}

    with pytest.raises(MothertongueError):  # a bad line: ingest fails with one line
        run_recipe(recipe, TRAIN, stages=["ingest"])
    ing = states(run_dir)["ingest"]
    assert ing["state"] == "failed" and "d.txt:1" in ing["error"] and "\n" not in ing["error"]
    assert ing["log"] == str(run_dir / "logs" / "ingest.txt")  # the failed attempt's log stays
    assert "d.txt:1" in (run_dir / "logs" / "ingest.txt").read_text(encoding="utf-8")

    (tmp_path / "d.txt").write_text(LINES, encoding="utf-8")
    run_recipe(recipe, TRAIN)
    st = states(run_dir)
    assert [st[s]["state"] for s in ("ingest", "build", "train")] == ["done"] * 3
    assert st["translate"]["state"] == "not started"  # not part of this recipe
    assert st["ingest"]["counts"]["records read"] == 40 and st["train"]["counts"]["steps"] == 10
    assert st["train"]["disk"] > 100_000 and st["train"]["seconds"] > 0

    run_recipe(recipe, [*TRAIN, "train.learning_rate=0.001"])  # only train changed
    st = states(run_dir)
    assert [st[s]["state"] for s in ("ingest", "build", "train")] == ["skipped (unchanged)"] * 2 + ["done"]

    # partial: a retrain killed with SIGKILL once it has written a checkpoint
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mothertongue", "train", str(recipe), "--force", *TRAIN,
                             "train.max_steps=2000", "train.save_steps=5"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    partial = run_dir / "train.partial"
    deadline = time.time() + 240
    while time.time() < deadline and not list(partial.glob("checkpoints/checkpoint-*/trainer_state.json")):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    tr = states(run_dir)["train"]
    assert tr["state"] == "partial" and tr["counts"]["checkpoint step"] >= 5 and tr["counts"]["of steps"] == 2000

    res = mt("status", run_dir)
    assert res.returncode == 0 and "partial" in res.stdout and "skipped (unchanged)" in res.stdout
    assert "checkpoint step" in res.stdout
    data = json.loads(mt("status", run_dir, "--json").stdout)
    from mothertongue.runs import ORDER

    assert [s["stage"] for s in data["stages"]] == ORDER


def test_status_of_a_missing_folder_is_one_line(tmp_path):
    from helpers import one_line_error

    one_line_error(mt("status", tmp_path / "nope"), "run directory not found")
