"""Stage outputs land atomically; unchanged stages are skipped; a bad input never spoils good output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.slow  # trains until a checkpoint exists, then kills (86 s measured under load)
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


# ------------------------------------------------------------------ the stage table
def test_stage_table_derives_order_needs_and_skips(tmp_path):
    from mothertongue.runs import ORDER, STAGE_TABLE, stages_for, upstream

    p, _ = _recipe(tmp_path, "A.#B\n")
    r = load_recipe(p)
    assert ORDER == [s.name for s in STAGE_TABLE]
    assert stages_for(r) == ["ingest", "build", "train", "evaluate"]
    assert upstream(r, "build") == ["ingest"]  # translate is off: build reads the ingest output
    rt = load_recipe(p, ["translate.enabled=true", "evaluate.enabled=false"])
    assert stages_for(rt) == ["ingest", "translate", "build", "train"]
    assert upstream(rt, "build") == ["translate"]
    first = run_stage(r, "ingest", log=lambda m: None)
    again = run_stage(r, "ingest", log=lambda m: None)
    assert (first.skipped, again.skipped) == (False, True)
    assert first.path == again.path == tmp_path / "run" / "ingest"
    assert again.summary == first.summary and first.summary  # the skipped run reports the saved summary


def test_manifest_lists_files_and_a_missing_one_means_incomplete(tmp_path):
    p, _ = _recipe(tmp_path, "A.#B\nC.#D\n")
    r = load_recipe(p)
    out = run_stage(r, "ingest", log=lambda m: None).path
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert "train.jsonl" in files and files["train.jsonl"] == (out / "train.jsonl").stat().st_size
    run = RunDir(tmp_path / "run")
    assert run.complete("ingest")
    (out / "train.jsonl").unlink()  # a partly deleted folder with its manifest still there
    assert not run.complete("ingest")
    with pytest.raises(StageError, match="missing or incomplete"):
        run_stage(r, "build")
    redo = run_stage(r, "ingest", log=lambda m: None)  # not skipped: the folder is not complete
    assert not redo.skipped and (out / "train.jsonl").exists() and run.complete("ingest")


class Killed(BaseException):
    """Stands for SIGKILL inside the process: nothing after it runs, no cleanup."""


@pytest.mark.parametrize("kill_at", range(1, 7))
def test_kill_at_any_step_after_the_work_leaves_old_or_new_output(tmp_path, monkeypatch, kill_at):
    """Every rename and delete after the stage's work (manifest, resolved recipe, old folder aside,
    new folder in, old folder deleted) is a kill point; after each the stage folder holds the old
    or the new complete output or is absent, never a manifest beside partial content, and the
    next run finishes with the new output and no leftovers."""
    import shutil

    import mothertongue.runs as runs

    p, data = _recipe(tmp_path, "A.#B\nC.#D\n")
    run, final = RunDir(tmp_path / "run"), tmp_path / "run" / "ingest"
    run_stage(load_recipe(p), "ingest", log=lambda m: None)
    data.write_text("E.#F\nG.#H\nI.#J\n", encoding="utf-8")
    calls, armed = {"n": 0}, {"on": False}
    real_replace, real_rmtree, real_get = os.replace, shutil.rmtree, runs.STAGES.get

    def step():
        if armed["on"]:
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise Killed

    def replace(src, dst, *a, **kw):
        step()
        return real_replace(src, dst, *a, **kw)

    def rmtree(path, *a, **kw):
        if armed["on"]:  # killed half way through a delete: the first files gone, the rest left
            for q in sorted(q for q in Path(path).rglob("*") if q.is_file())[:2]:
                q.unlink()
        step()
        return real_rmtree(path, *a, **kw)

    def get(name):
        fn = real_get(name)

        def then_arm(*a, **kw):
            out = fn(*a, **kw)
            armed["on"] = True
            return out
        return then_arm

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(runs.STAGES, "get", get)
    with pytest.raises(Killed) if kill_at <= 5 else contextlib.nullcontext():
        run_stage(load_recipe(p), "ingest", log=lambda m: None)
    armed["on"] = False
    monkeypatch.undo()

    if (final / "manifest.json").exists():
        assert run.complete("ingest"), "a manifest beside incomplete content"
        assert len((final / "train.jsonl").read_text().splitlines()) in (2, 3)
    res = run_stage(load_recipe(p), "ingest", log=lambda m: None)
    assert run.complete("ingest") and len((final / "train.jsonl").read_text().splitlines()) == 3
    assert sorted(q.name for q in run.root.iterdir()) == ["history.jsonl", "ingest", "logs", "recipe.resolved.yaml"]
    # Where the new output was complete before the kill, it is taken as it is, not redone.
    assert res.skipped == (kill_at >= 2)


KILLER = """
import os, shutil, signal, sys
import mothertongue.runs as runs
from mothertongue.config import load_recipe

kill_at, armed, n = int(sys.argv[2]), [False], [0]
def point(real):
    def wrapped(*a, **kw):
        if armed[0]:
            n[0] += 1
            if n[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)
    return wrapped
for name in ("replace", "rename", "unlink", "rmdir"):
    setattr(os, name, point(getattr(os, name)))
real_get = runs.STAGES.get
def get(name):
    fn = real_get(name)
    def then_arm(*a, **kw):
        out = fn(*a, **kw)
        armed[0] = True
        return out
    return then_arm
runs.STAGES.get = get
runs.run_stage(load_recipe(sys.argv[1]), "ingest", force=True, log=lambda m: None)
"""


@pytest.mark.slow
def test_sigkill_at_every_file_operation_of_the_commit(tmp_path):
    """A real SIGKILL at each rename and delete after the stage's work, until the command gets
    through: every time, the stage folder is complete (old or new) or absent, and the next run
    ends with the new output and nothing else beside it."""
    p, data = _recipe(tmp_path, "A.#B\nC.#D\n")
    run, final = RunDir(tmp_path / "run"), tmp_path / "run" / "ingest"
    for kill_at in range(1, 200):
        shutil.rmtree(run.root, ignore_errors=True)
        data.write_text("A.#B\nC.#D\n", encoding="utf-8")
        run_stage(load_recipe(p), "ingest", log=lambda m: None)
        data.write_text("E.#F\nG.#H\nI.#J\n", encoding="utf-8")
        proc = subprocess.run([sys.executable, "-c", KILLER, str(p), str(kill_at)], capture_output=True, text=True)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        if (final / "manifest.json").exists():
            assert run.complete("ingest"), f"kill {kill_at}: a manifest beside incomplete content"
            assert len((final / "train.jsonl").read_text().splitlines()) in (2, 3)
        run_stage(load_recipe(p), "ingest", log=lambda m: None)
        assert run.complete("ingest") and len((final / "train.jsonl").read_text().splitlines()) == 3, kill_at
        assert sorted(q.name for q in run.root.iterdir()) == ["history.jsonl", "ingest", "logs", "recipe.resolved.yaml"], kill_at
    assert kill_at > 5  # manifest, resolved recipe, aside, in, and the files of the old folder


def test_failing_command_keeps_the_record_of_the_run_and_leaves_no_partial(tmp_path):
    """The resolved recipe changes only when a stage's new output is committed: a command that
    fails (a typo in a template name) neither rewrites it nor leaves a `.partial` folder."""
    p, _ = _recipe(tmp_path, "A.#B\nC.#D\n")
    run_stage(load_recipe(p), "ingest", log=lambda m: None)
    resolved = tmp_path / "run" / "recipe.resolved.yaml"
    before = resolved.read_bytes()
    with pytest.raises(DataError, match="unknown template 'chatm'"):
        run_stage(load_recipe(p, ["build.template=chatm"]), "build", log=lambda m: None)
    assert resolved.read_bytes() == before
    assert not (tmp_path / "run" / "build.partial").exists()
    assert sorted(q.name for q in (tmp_path / "run").iterdir()) == ["history.jsonl", "ingest", "logs", "recipe.resolved.yaml"]


def test_resolved_recipe_finds_relative_files_from_another_directory(tmp_path, monkeypatch):
    """`evaluate RUN_DIR` loads the resolved recipe; its relative parallel file, suite, perplexity
    file and template still resolve against the original recipe's folder, from any directory."""
    from mothertongue.evaluate import build_sets
    from mothertongue.templates import resolve

    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "par.tsv").write_text("Hello.\tHallo.\nThanks.\tDanke.\n", encoding="utf-8")
    (proj / "suite.txt").write_text("Wie spät ist es?\nWas ist los?\n", encoding="utf-8")
    (proj / "ppl.txt").write_text("Ein Satz.\nNoch einer.\n", encoding="utf-8")
    (proj / "t.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}", encoding="utf-8")
    lines = "".join(f"Frage {i}.#Antwort {i}.\n" for i in range(10))
    p, _ = _recipe(proj, lines)
    p.write_text(p.read_text() + "  test_fraction: 0.3\nbuild:\n  template: t.jinja\nevaluate:\n"
                 "  parallel_file: par.tsv\n  perplexity_file: ppl.txt\n  suites: [suite.txt]\n", encoding="utf-8")
    run_stage(load_recipe(p), "ingest", log=lambda m: None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = RunDir(proj / "run")
    r = run.load_recipe([f"run_dir={run.root}"])
    sets, ppl, info = build_sets(r, run)
    assert [i.reference for i in sets["parallel"]] == ["Hallo.", "Danke."]
    assert ppl == {"text": ["Ein Satz.", "Noch einer."]}
    assert [i.messages[-1]["content"] for i in sets["prompts-suite"]] == ["Wie spät ist es?", "Was ist los?"]
    assert resolve(r.build.template, None, Path(r.base_dir)).name == "t.jinja"


def test_run_dir_that_is_a_file_is_one_line(tmp_path):
    from helpers import mt, one_line_error

    p, _ = _recipe(tmp_path, "A.#B\n")
    (tmp_path / "run").write_text("not a folder")
    one_line_error(mt("ingest", p), "run_dir", "is a file")
    assert (tmp_path / "run").read_text() == "not a folder"


def test_write_folder_is_complete_or_absent(tmp_path):
    """The untuned base is saved this way: a kill after the config but before the weights leaves
    no `base_model/` that later runs would take as saved."""
    from mothertongue.runs import write_folder

    dest = tmp_path / "base_model"

    def killed_half_way(folder: Path) -> None:
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        raise Killed

    with pytest.raises(Killed):
        write_folder(dest, killed_half_way)
    assert not dest.exists()

    def whole(folder: Path) -> None:
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"weights")

    write_folder(dest, whole)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base_model"]
