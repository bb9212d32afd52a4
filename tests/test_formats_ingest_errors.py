"""The ingest stage's promises on bad and empty input (issue #14): the report reconciles (every
record read is converted once or skipped with a reason), an empty result is an error that
leaves the previous output alone, and unreadable sources are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mothertongue.config import load_recipe
from mothertongue.conversation import DataError
from mothertongue.runs import run_stage

FIX = Path(__file__).parent / "fixtures" / "ingest"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.exists(), reason=f"absent: {REAL}")


def recipe(tmp_path, sources, **ingest_cfg) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "r", "run_dir": str(tmp_path / "run"),
                                 "ingest": {"sources": sources, **ingest_cfg}}))
    return p


def ingest(tmp_path, sources, **ingest_cfg) -> dict:
    out = run_stage(load_recipe(recipe(tmp_path, sources, **ingest_cfg)), "ingest", force=True, log=lambda m: None).path
    return json.loads((out / "report.json").read_text())


def reconciles(rep: dict) -> None:
    assert rep["read"] == rep["converted"] + sum(rep["skipped"].values()), rep
    for s in rep["sources"]:
        assert s["read"] == s["converted"] + s["skipped"], s


# ----------------------------------------------------------------------- reconcile
@pytest.mark.real_data
@needs_real
@pytest.mark.parametrize("threads", ["best", "all", "topk"])
def test_real_oasst_report_adds_up_to_the_messages_read(tmp_path, threads):
    src = {"path": str(REAL / "oa_repo_en_100_tree_first25.jsonl"), "format": "oasst", "options": {"threads": threads}}
    rep = ingest(tmp_path, [src], on_error="skip")
    reconciles(rep)
    assert rep["read"] == 272 and rep["pairs"] > 0 and rep["conversations"] >= 25


@pytest.mark.real_data
@needs_real
def test_real_sources_together_reconcile(tmp_path):
    srcs = [{"path": str(REAL / f)} for f in ("alpaca_data_first50.json", "databricks-dolly-15k.first12.jsonl",
                                               "fastchat_dummy_conversation_first200.json",
                                               "task1564_triviaqa_answer_generation.first100.json")]
    srcs.append({"path": str(REAL / "srogmann_instruct_ger_bsp_1.txt"), "format": "text"})
    rep = ingest(tmp_path, srcs, on_error="skip", dedup="near", test_fraction=0.1)
    reconciles(rep)
    assert [s["format"] for s in rep["sources"]][:4] == ["alpaca", "dolly", "sharegpt", "natural_instructions"]


def test_one_record_many_outputs_and_a_limit_reconcile(tmp_path):
    # answer=all: one instance -> two conversations, counted as one record; the limit cuts inside
    srcs = [{"path": str(FIX / "ni"), "format": "natural_instructions", "options": {"answer": "all"}, "limit": 2},
            {"path": str(FIX / "oasst_flat.jsonl"), "format": "oasst", "limit": 3},
            {"path": str(FIX / "alpaca.json"), "weight": 2.0}]
    rep = ingest(tmp_path, srcs, on_error="skip")
    reconciles(rep)
    ni, oasst, alpaca = rep["sources"]
    assert ni["conversations"] == 2 and ni["read"] == 2  # the limit stops reading
    assert oasst["read"] == 16 and oasst["conversations"] + oasst["pairs"] == 3  # every message accounted
    assert alpaca["converted"] == 4 and rep["conversations"] >= 2 + 3 - 1 + 8  # copies are not records


def test_duplicates_of_multi_message_threads_count_each_message_once(tmp_path):
    srcs = [{"path": str(FIX / "oasst_flat.jsonl"), "format": "oasst", "name": "a"},
            {"path": str(FIX / "oasst_flat.jsonl"), "format": "oasst", "name": "b"}]
    with pytest.raises(DataError, match=r"ingest.sources.1: .*all 16 records were skipped \(12 x duplicate"):
        ingest(tmp_path, srcs, on_error="skip")  # the second source adds nothing
    rep = ingest(tmp_path, srcs, on_error="skip", allow_empty=True)
    reconciles(rep)
    assert rep["sources"][1]["converted"] == 0 and rep["sources"][1]["skipped"] == 16
    assert rep["skipped"]["duplicate (exact)"] == 12


# ----------------------------------------------------------------------- empty results
@pytest.mark.parametrize("content,why", [
    ("", "no records"), ("  \n\n \t\n", "no records"), (None, "a folder without files for format alpaca"),
    ('{"instruction": "Hallo", "output": ""}\n', "all 1 records were skipped"),
])
def test_empty_source_is_an_error_and_keeps_the_previous_output(tmp_path, content, why):
    good = recipe(tmp_path, [{"path": str(FIX / "alpaca.json")}])
    out = run_stage(load_recipe(good), "ingest", log=lambda m: None).path
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = tmp_path / "bad.jsonl"
    if content is None:
        bad = tmp_path / "folder.json"
        bad.mkdir()
        (bad / "notes.md").write_text("no data here")
    else:
        bad.write_text(content)
    p = recipe(tmp_path, [{"path": str(bad), "format": "alpaca"}], on_error="skip")
    with pytest.raises(DataError, match=rf"^ingest.sources.0: .*{why}.*ingest.allow_empty=true"):
        run_stage(load_recipe(p), "ingest", force=True, log=lambda m: None)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    rep = ingest(tmp_path, [{"path": str(bad), "format": "alpaca"}], on_error="skip", allow_empty=True)
    assert rep["conversations"] == 0
    reconciles(rep)


def test_cli_exit_code_and_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    p = recipe(tmp_path, [{"path": str(empty), "format": "alpaca", "options": {"inptu_join": " "}}])
    r = subprocess.run([sys.executable, "-m", "mothertongue", "ingest", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith(
        "ingest.sources.0.options.inptu_join: unknown option for format alpaca (it takes: lang, input_join, system)")
    p = recipe(tmp_path, [{"path": str(empty), "format": "alpaca"}])
    r = subprocess.run([sys.executable, "-m", "mothertongue", "ingest", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and "no records" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------- unreadable sources
def test_permission_denied_is_one_line():
    """Run as an unprivileged user when the tests run as root (root reads anything)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="mt-perm-"))
    d.chmod(0o777)
    try:
        src = d / "secret.jsonl"
        src.write_text('{"instruction": "a", "output": "b"}\n')
        src.chmod(0)
        p = d / "r.yaml"
        p.write_text(yaml.safe_dump({"name": "r", "run_dir": str(d / "run"),
                                     "ingest": {"sources": [{"path": str(src), "format": "alpaca"}]}}))
        p.chmod(0o644)
        drop = (lambda: os.setuid(65534)) if os.geteuid() == 0 else None
        try:
            r = subprocess.run([sys.executable, "-m", "mothertongue", "ingest", str(p)], capture_output=True,
                               text=True, preexec_fn=drop, cwd=d, env={**os.environ, "HOME": str(d)})
        except PermissionError:
            pytest.skip("python is not runnable by an unprivileged user here (root reads any file)")
        if drop and "No module named" in r.stderr:
            pytest.skip("the package is not readable by an unprivileged user here")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].endswith(
            f"ingest.sources.0.path: {src}: permission denied"), r.stderr
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_folder_as_text_source_reads_its_txt_files_or_says_it_has_none(tmp_path):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "a.txt").write_text("Sag hallo.#Hallo!\n")
    (d / "b.txt").write_text("Sag tschüss.#Tschüss!\n")
    rep = ingest(tmp_path, [{"path": str(d), "format": "text"}])
    assert rep["conversations"] == 2
    e = tmp_path / "nothing"
    e.mkdir()
    with pytest.raises(DataError, match=r"nothing: a folder without files for format text"):
        ingest(tmp_path, [{"path": str(e), "format": "text"}])
