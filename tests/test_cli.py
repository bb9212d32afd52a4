"""User errors are one line on stderr with a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def mt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mothertongue", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_everywhere():
    for args in ([], ["run"], ["build"], ["chat"], ["ls"]):
        res = mt(*args, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout


def test_bad_recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("train:\n  epochz: 3\n")
    _one_line_error(mt("validate", str(p)), "unknown key train.epochz", "did you mean train.epochs")


def test_missing_recipe_and_missing_data(tmp_path):
    _one_line_error(mt("run", str(tmp_path / "nope.yaml")), "recipe file not found")
    p = tmp_path / "r.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\ningest:\n  sources:\n    - path: missing.txt\n      format: text\n")
    _one_line_error(mt("ingest", str(p)), "ingest.sources.0.path", "missing.txt")


def test_malformed_line(tmp_path):
    (tmp_path / "d.txt").write_text("Sag hallo.#Hallo!\nkein trenner\n", encoding="utf-8")
    p = tmp_path / "r.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\ningest:\n  sources:\n    - path: d.txt\n      format: text\n")
    _one_line_error(mt("ingest", str(p)), "d.txt:2:", "ingest.on_error=skip")
    ok = mt("ingest", str(p), "ingest.on_error=skip")
    assert ok.returncode == 0, ok.stderr
    assert "skipped 1 x missing separator" in ok.stdout


def test_unknown_template_and_stage_order(tmp_path):
    (tmp_path / "d.txt").write_text("Sag hallo.#Hallo!\n", encoding="utf-8")
    p = tmp_path / "r.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\ningest:\n  sources:\n    - path: d.txt\n")
    _one_line_error(mt("train", str(p)), "needs the output of build")
    assert mt("ingest", str(p)).returncode == 0
    _one_line_error(mt("build", str(p), "build.template=chatm"), "unknown template 'chatm'", "did you mean chatml")


@pytest.mark.parametrize("cmd", [["ls", "templates"], ["ls", "formats"], ["ls", "stages"]])
def test_ls(cmd):
    res = mt(*cmd)
    assert res.returncode == 0 and res.stdout.strip()


def test_bad_recipe_paths_and_codes_are_one_line(tmp_path):
    _one_line_error(mt("validate", str(tmp_path)), "is a folder")
    p = tmp_path / "r.yaml"
    p.write_bytes(b"name: \xff\n")
    _one_line_error(mt("validate", str(p)), "not UTF-8")
    p.write_text("language: klingon\n")
    _one_line_error(mt("validate", str(p)), "language: unknown language code 'klingon'")


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a folder nobody may write to (/sys)")
def test_run_dir_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "d.txt").write_text("Sag hallo.#Hallo!\n", encoding="utf-8")
    p = tmp_path / "r.yaml"
    p.write_text("run_dir: /sys/mothertongue-test/run\ningest:\n  sources:\n    - path: d.txt\n")
    _one_line_error(mt("ingest", str(p)), "run_dir /sys/mothertongue-test/run: cannot create it")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_source_is_one_line(tmp_path):
    src = tmp_path / "d.txt"
    src.write_text("Sag hallo.#Hallo!\n", encoding="utf-8")
    src.chmod(0)
    p = tmp_path / "r.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\ningest:\n  sources:\n    - path: d.txt\n      format: text\n")
    _one_line_error(mt("ingest", str(p)), "d.txt", "Permission denied")


@pytest.mark.slow  # several CLI processes, ~5 s
def test_bad_options_fail_before_any_model_loads(tmp_path):
    run = tmp_path / "run"
    run.mkdir()  # not a run: the option checks come first
    _one_line_error(mt("chat", str(run), "--preset", "nosuch", "-p", "x"), "unknown preset 'nosuch'")
    _one_line_error(mt("chat", str(run), "--max-new-tokens", "-5", "-p", "x"), "--max-new-tokens must be > 0")
    _one_line_error(mt("serve", str(run), "--port", "99999"), "--port must be between 0 and 65535")
    _one_line_error(mt("chat", str(tmp_path / "nope")), "run directory not found")
    _one_line_error(mt("chat", str(run), "-p", "x"), "neither a run directory")
