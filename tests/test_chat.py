"""Chat: the REPL driven through a pseudo-terminal, stdin prompts, presets, /style, /save, /load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINED = {  # lines of recipes/data/quickstart_de.txt the quickstart model is trained on
    "Nenne drei Farben.": "Rot, Grün und Blau.",
    "Sag hallo.": "Hallo! Schön, dich zu sehen.",
    "Nenne drei Tiere.": "Hund, Katze und Pferd.",
    "Verabschiede dich.": "Auf Wiedersehen und bis bald!",
    "Nenne drei Monate.": "Januar, Mai und Oktober.",
}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MT_DEBUG": ""}


@pytest.fixture(scope="module")
def session(quickstart_run):
    from mothertongue.chat import ChatSession

    return ChatSession(quickstart_run)


def test_tuned_model_answers_its_training_prompts(session):
    session.reset()
    hits = 0
    for prompt, answer in TRAINED.items():
        session.reset()
        rep = session.reply(prompt)
        assert rep.ended, "reply must stop at the end-of-turn token"
        hits += rep.text == answer
    assert hits >= 4, "the quickstart model learned these lines exactly"


def test_stream_pieces_join_to_the_reply(session):
    session.reset()
    pieces: list[str] = []
    streamed = session.reply("Nenne drei Farben.", stream=True, on_text=pieces.append)
    session.reset()
    plain = session.reply("Nenne drei Farben.")
    assert len(pieces) >= 2, "text arrives in pieces while it is generated"
    assert "".join(pieces).strip() == streamed.text == plain.text


def test_presets_beam_and_sample(session):
    from mothertongue.generation import generation_kwargs

    kw = generation_kwargs("beam", session.chat_cfg, 40)
    assert kw["num_beams"] == 4 and kw["no_repeat_ngram_size"] == 3 and not kw["do_sample"]
    session.set_preset("beam")
    session.reset()
    beam = session.reply("Nenne drei Farben.", stream=True, on_text=lambda t: None)
    assert beam.ended and beam.text
    session.set_preset("sample")
    import torch

    torch.manual_seed(0)
    session.reset()
    assert session.reply("Sag hallo.").new_tokens > 0
    session.set_preset("greedy")
    with pytest.raises(ValueError, match="unknown preset"):
        session.set_preset("nucleus")


def test_style_uses_the_build_stage_wording(session):
    """Chat asks for a style in the same words the build stage trains with (target language)."""
    from mothertongue.prompts import system_for

    session.system = "Sei hilfsbereit."
    session.style = "pirate"
    assert session.system_prompt == "Sei hilfsbereit. Antworte wie ein Pirat."
    assert session.messages("Hallo")[0] == {"role": "system", "content": "Sei hilfsbereit. Antworte wie ein Pirat."}
    # identical to what a conversation tagged `pirate` was trained with
    session.system = session.default_system
    trained = system_for("any-id", ["pirate"], session.recipe.build, "de")
    assert session.system_prompt == trained
    session.custom_styles = {"robot": "Antworte wie ein Roboter."}
    session.style = "robot"
    assert session.system_prompt.endswith("Antworte wie ein Roboter.")
    session.style = None
    assert session.system_prompt == session.default_system


def test_save_load_roundtrip_and_bad_file(session, tmp_path):
    from mothertongue.conversation import DataError

    session.reset()
    session.reply("Sag hallo.")
    session.save(tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    session.reset()
    session.load(tmp_path / "c.json")
    assert session.history == saved["messages"]
    (tmp_path / "bad.json").write_text('{"messages": [{"role": "robot", "content": 1}]}')
    with pytest.raises(DataError, match=r"bad.json: messages\[0\]"):
        session.load(tmp_path / "bad.json")
    assert session.history == saved["messages"], "a bad file leaves the conversation as it was"
    session.reset()


def test_repl_in_a_pty_two_turns_reset_save(quickstart_run, session, tmp_path):
    """A real terminal: prompts, streamed replies with tokens/s, /save, /reset, /quit."""
    pexpect = pytest.importorskip("pexpect")
    # What the same conversation gives in-process, to compare the terminal's text with.
    session.reset()
    first = session.reply("Nenne drei Farben.").text
    second = session.reply("Nenne drei Tiere.").text
    session.reset()

    child = pexpect.spawn(sys.executable, ["-m", "mothertongue", "chat", str(quickstart_run)], env=_env(),
                          cwd=str(tmp_path), encoding="utf-8", timeout=180, dimensions=(40, 200))
    try:
        child.expect("du> ")
        child.sendline("Nenne drei Farben.")
        child.expect(r"tokens/s")
        turn1 = child.before
        child.expect("du> ")
        child.sendline("Nenne drei Tiere.")
        child.expect(r"tokens/s")
        turn2 = child.before
        child.expect("du> ")
        child.sendline("/save two.json")
        child.expect(r"saved 2 turns")
        child.expect("du> ")
        child.sendline("/reset")
        child.expect(r"conversation reset")
        child.expect("du> ")
        child.sendline("/save none.json")
        child.expect(r"saved 0 turns")
        child.expect("du> ")
        child.sendline("/load nosuchfile.json")
        child.expect(r"error: .*nosuchfile.json")
        child.expect("du> ")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "bot> " + first in turn1.replace("\r\n", "\n")
    assert "bot> " + second in turn2.replace("\r\n", "\n")
    two = json.loads((tmp_path / "two.json").read_text())["messages"]
    assert [m["content"] for m in two] == ["Nenne drei Farben.", first, "Nenne drei Tiere.", second]
    assert json.loads((tmp_path / "none.json").read_text())["messages"] == []


def test_prompts_from_stdin_and_prompt_option(quickstart_run, session):
    session.reset()
    a = session.reply("Sag hallo.").text
    session.reset()
    b = session.reply("Verabschiede dich.").text
    session.reset()
    cmd = [sys.executable, "-m", "mothertongue", "chat", str(quickstart_run)]
    out = subprocess.run(cmd, input="Sag hallo.\n/reset\nVerabschiede dich.\n", capture_output=True, text=True,
                         env=_env(), timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [a, b], "piped: only the replies, one per line"
    one = subprocess.run(cmd + ["--prompt", "-"], input="Sag hallo.\n", capture_output=True, text=True,
                         env=_env(), timeout=180)
    assert one.returncode == 0 and one.stdout.strip() == a


class _Terminal:
    """Input that says it is a terminal, so the REPL shows its prompts (and streams)."""

    def __init__(self, lines: str):
        self.lines = iter(lines.splitlines(keepends=True))

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return next(self.lines, "")


@pytest.mark.parametrize("language, shown", [("de", "du> "), ("en", "you> "), ("fr", "toi> "), ("xx", "you> ")])
def test_repl_prompt_speaks_the_runs_language(session, language, shown):
    import io

    from mothertongue.chat import repl

    out, was = io.StringIO(), session.language
    session.language = language
    try:
        repl(session, _Terminal("/reset\n/quit\n"), out)
    finally:
        session.language = was
    lines = out.getvalue().splitlines()
    assert lines[1] == f"{shown}(conversation reset)" and lines[2] == shown


def _run_with_model_code(quickstart_run, dest: Path) -> Path:
    """A copy of the quickstart run whose model folder ships its own Python code (auto_map), and
    whose model_info.json says trust_remote_code: true. The code leaves a marker file when run."""
    import shutil

    run = shutil.copytree(quickstart_run, dest)
    info = run / "train" / "model_info.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "trust_remote_code": True}))
    model = run / "train" / "model"
    (model / "marked_llama.py").write_text(
        "import os\nfrom pathlib import Path\n\nfrom transformers import LlamaForCausalLM\n\n"
        "Path(os.environ['MT_MARKER']).write_text('the model folder ran its code')\n\n\n"
        "class MarkedLlama(LlamaForCausalLM):\n    pass\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "marked_llama.MarkedLlama"}
    (model / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.slow
def test_trust_remote_code_flag_runs_the_model_code(quickstart_run, session, tmp_path):
    """model_info.json saying trust_remote_code does not run the folder's code (models.load_model,
    tested in test_models); the user's --trust-remote-code does (cached in a temporary HF_MODULES_CACHE)."""
    run = _run_with_model_code(quickstart_run, tmp_path / "run")
    session.reset()
    want = session.reply("Sag hallo.").text
    session.reset()
    env = {**_env(), "MT_MARKER": str(tmp_path / "marker"), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run([sys.executable, "-m", "mothertongue", "chat", str(run), "--prompt", "Sag hallo.",
                          "--trust-remote-code"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want
    assert (tmp_path / "marker").read_text() == "the model folder ran its code"


def test_with_system_puts_the_prompt_first_once():
    """The one rule build, evaluate, chat and serve share."""
    from mothertongue.prompts import split_system, with_system

    user = [{"role": "user", "content": "Hallo"}]
    own = [{"role": "system", "content": "Sei kurz."}, *user]
    assert with_system(user, "Sei nett.") == [{"role": "system", "content": "Sei nett."}, *user]
    assert with_system(own, "Sei nett.") == own, "a conversation's own system prompt wins"
    assert with_system(user, None) == with_system(user, "") == user
    assert with_system(user, "Sei nett.") is not user and user == [{"role": "user", "content": "Hallo"}]
    assert split_system(own) == ("Sei kurz.", user) and split_system(user) == (None, user)
