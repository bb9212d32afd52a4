"""What a person sees while a run works: one progress display per stage (a live bar on a
terminal, plain lines in a pipe), the libraries' bars and the Trainer's dicts only with `-v`,
numbers rounded for people, a log file per stage that outlives a failure, and trackers that are
never on by accident."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest

from helpers import TINY, mt, one_line_error, run_in_pty, write_text_recipe

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
RAW_DICT = re.compile(
    r"\{'\w+': "
)  # the Trainer's per-step print: {'loss': '7.17', 'grad_norm': ...}
LIBRARY_BARS = re.compile(r"Loading weights|Writing model shards|\d+%\|| \d+/\d+ \[\d\d:\d\d")
LINES = "".join(f"Wie heißt Zahl {i}?#Die Zahl heißt {i}.\n" for i in range(24))
SMALL = ["build.template=chatml", "build.max_length=64", "train.adapter=full", "train.batch_size=8",
         "train.logging_steps=2", "train.save_steps=4", "train.max_steps=8", "evaluate.compare_base=false",
         "evaluate.max_new_tokens=4", "evaluate.suite_max_prompts=2", "evaluate.train_sample=2",
         "ingest.test_fraction=0.2", *TINY]  # fmt: skip


def visible_lines(terminal: str) -> list[str]:
    """The distinct lines a terminal showed (escape codes and redraws folded away)."""
    out: list[str] = []
    for line in re.split(r"[\r\n]+", ESCAPE.sub("", terminal)):
        if line.strip() and line not in out:
            out.append(line.rstrip())
    return out


def rounded(number: str) -> bool:
    """At most 4 significant digits (7.081, 0.03861, 2e-05), not 7.081029891967773."""
    mantissa = number.lower().split("e")[0]
    return len(mantissa.replace(".", "").replace("-", "").lstrip("0")) <= 4


def test_numbers_are_rounded_for_people():
    from mothertongue.progress import num

    assert num(7.081029891967773) == "7.081" and num(0.038609132170677185) == "0.03861"
    assert num(2e-05) == "2e-05" and num(360) == "360" and num(None) == "None"
    assert num(135123.4) == "135100" and num(9999.99) == "10000" and num(0.0) == "0"


def test_plain_lines_in_a_pipe(monkeypatch, capsys):
    """Not a terminal: a line per 10 % of the work and a closing line, no control characters."""
    from mothertongue import progress

    monkeypatch.setattr(progress, "PLAIN_MIN_S", 0.0)
    with progress.task("translate", total=200, unit="segments") as bar:
        for _ in range(200):
            bar.advance()
            bar.update(loss=1 / 3)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out and "\x1b" not in out
    assert 10 <= len(lines) <= 12, lines  # every 10 %, and the closing line
    assert lines[0].startswith("[translate] 20/200 segments (10%), ") and "ETA" in lines[0]
    assert lines[-1].startswith("[translate] 200/200 segments (100%), ") and "took" in lines[-1]
    assert lines[-1].endswith("; loss 0.3333")


SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mothertongue import progress

    with progress.stage("train", Path(sys.argv[1])):
        print("before the bar")
        with progress.task("train", total=30, unit="steps") as bar:
            for i in range(30):
                time.sleep(0.05)
                bar.update(completed=i + 1, loss=7.081029891967773 / (i + 1))
                if i == 10:
                    print("a line while the bar runs")
        print("after the bar")
""")


def test_live_bar_in_a_terminal_and_plain_log(tmp_path):
    """A terminal gets rich's live bar; prints show above it; the log gets the same text and the
    plain progress lines, without escape codes."""
    log = tmp_path / "logs" / "train.txt"
    rc, shown = run_in_pty([sys.executable, "-c", SCRIPT, str(log)], timeout=120)
    assert rc == 0, shown
    lines = visible_lines(shown)
    assert any(re.match(r"train +━+ +30/30 steps .*loss 0\.236", ln) for ln in lines), lines
    assert "\x1b[" in shown  # drawn with escape codes ...
    for text in ("before the bar", "a line while the bar runs", "after the bar"):
        assert text in lines
    written = log.read_text(encoding="utf-8")
    assert "\x1b" not in written and "\r" not in written  # ... but the log is plain text
    assert "a line while the bar runs" in written and "[train] 30/30 steps (100%)" in written
    assert "===== train started" in written and "===== train finished" in written


def test_a_failed_stage_keeps_its_log_and_status_points_to_it(tmp_path):
    recipe = write_text_recipe(tmp_path, "no separator here\n")
    res = mt("ingest", recipe)
    one_line_error(res, "d.txt:1")
    log = tmp_path / "run" / "logs" / "ingest.txt"
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "d.txt:1" in text and "===== ingest failed" in text
    status = mt("status", tmp_path / "run")
    assert status.returncode == 0 and f"log:   {log}" in status.stdout, status.stdout


def test_a_stage_runs_when_its_log_cannot_be_written(tmp_path, capsys):
    from mothertongue import progress

    (tmp_path / "a-file").write_text("", encoding="utf-8")
    with progress.stage("ingest", tmp_path / "a-file" / "logs" / "ingest.txt", models=False):
        print("the work")
    out = capsys.readouterr().out
    assert "the work" in out and "[ingest] no log file: cannot write" in out


def test_report_to_a_tracker_that_is_not_installed_is_one_line(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    recipe = write_text_recipe(tmp_path, LINES)
    one_line_error(
        mt("validate", recipe, "train.report_to=wandb"), "train.report_to", "mothertongue[wandb]"
    )
    one_line_error(
        mt("run", recipe, "train.report_to=[tensorboard, wandb]"), "wandb is not installed"
    )
    assert not (tmp_path / "run").exists()  # refused before any stage ran
    one_line_error(mt("validate", recipe, "train.report_to=[none, tensorboard]"), "train.report_to")


def test_report_to_defaults(tmp_path):
    from mothertongue.config import load_recipe
    from mothertongue.training.trackers import installed, report_to

    recipe = write_text_recipe(tmp_path, LINES)
    auto = report_to(load_recipe(recipe))
    assert auto == (["tensorboard"] if installed("tensorboard") else [])
    assert report_to(load_recipe(recipe, ["train.report_to=none"])) == []
    assert report_to(load_recipe(recipe, ["train.report_to=[]"])) == []
    from mothertongue.training.args import common_args  # what the Trainer is given

    assert (
        common_args(load_recipe(recipe, ["train.report_to=none"]), tmp_path, False)["report_to"]
        == []
    )
    assert common_args(load_recipe(recipe), tmp_path, False)["report_to"] == auto


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny recipe run once through the CLI with its output piped (as in CI or `| tee`)."""
    folder = tmp_path_factory.mktemp("piped")
    recipe = write_text_recipe(folder, LINES)
    res = mt("run", recipe, *SMALL, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return folder, recipe, res


@pytest.mark.slow
def test_piped_output_is_plain_lines(small_run):
    folder, _, res = small_run
    out = res.stdout + res.stderr
    assert "\r" not in out and "\x1b" not in out
    assert not RAW_DICT.search(out) and not LIBRARY_BARS.search(out), out
    final = re.search(r"^\[train\] 8 steps, loss (\S+) -> (\S+)", res.stdout, re.M)
    assert final and rounded(final[1]) and rounded(final[2]), res.stdout
    # every stage's log holds what it printed; the train log also the Trainer's full metrics
    logs = folder / "run" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "build.txt",
        "evaluate.txt",
        "ingest.txt",
        "train.txt",
    ]
    train_log = (logs / "train.txt").read_text(encoding="utf-8")
    assert final[0] in train_log and re.search(r'step 8: \{"train_runtime"', train_log)
    assert "***** Running training *****" in train_log  # the library's own log lines


@pytest.mark.slow
def test_verbose_restores_the_library_output(small_run):
    folder, recipe, _ = small_run
    res = mt("train", recipe, *SMALL, "--force", "-v", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert RAW_DICT.search(out), out  # the Trainer's dicts
    assert "Writing model shards" in out and re.search(r"\d+%\|", out), out  # the libraries' bars
    # train first in its process: transformers' own log lines still reach the stage log
    attempts = (
        (folder / "run" / "logs" / "train.txt")
        .read_text(encoding="utf-8")
        .split("===== train started")
    )
    assert len(attempts) == 3 and "***** Running training *****" in attempts[-1]


def test_quickstart_in_a_terminal(quickstart_terminal):
    """The shipped quickstart as a person sees it: our bars, no raw dicts, no library bars, and
    the training summary with rounded numbers."""
    lines = visible_lines(quickstart_terminal)
    text = "\n".join(lines)
    assert not RAW_DICT.search(text), text[-3000:]
    assert not LIBRARY_BARS.search(text), text[-3000:]
    assert any(re.match(r"train +━+ +\d+/\d+ steps .*loss \S+, lr \S+", ln) for ln in lines), text[
        -3000:
    ]
    assert any(re.match(r"evaluate +━+ +\d+/\d+ prompts", ln) for ln in lines), text[-3000:]
    final = re.search(r"^\[train\] (\d+) steps, loss (\S+) -> (\S+) \((\S+) tokens/s", text, re.M)
    assert final, text[-3000:]
    assert all(rounded(n) for n in final.groups()[1:]), final[0]
