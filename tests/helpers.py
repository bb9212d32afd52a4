"""Helpers shared by test files (import them as `from helpers import ...`; conftest only holds
fixtures and markers). Everything here builds locally; nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_MODELS = Path(os.environ.get("MT_SHARED_MODELS", SHARED / "models"))
SHARED_DATA = Path(os.environ.get("MT_SHARED_DATA", SHARED / "data" / "real"))

# A tiny base small enough that a whole train stage takes seconds on a CPU.
TINY = ["tiny_model.hidden_size=64", "tiny_model.intermediate_size=128", "tiny_model.num_hidden_layers=2",
        "tiny_model.num_attention_heads=4", "tiny_model.vocab_size=400"]


def run_recipe(recipe_path: Path, overrides: list[str], stages: list[str] | None = None, force: bool = False):
    """Load a recipe and run its stages (all enabled ones by default) quietly; returns the recipe."""
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage, stages_for

    recipe = load_recipe(recipe_path, overrides)
    for s in stages or stages_for(recipe):
        run_stage(recipe, s, force=force, log=lambda m: None)
    return recipe


def mt(*args: str, cwd: Path | str | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the `mothertongue` CLI in a subprocess (it inherits PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "mothertongue", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, **kw)


def run_in_pty(args: list[str], timeout: float = 600, cwd: Path | str | None = None,
               columns: int = 120) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as stdin, stdout and stderr (what a person at a
    terminal sees); returns (exit code, everything it wrote, escape codes included)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while True:
            if time.time() > deadline:
                proc.kill()
                raise TimeoutError(f"{args} ran over {timeout} s")
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(), b"".join(chunks).decode("utf-8", "replace")


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert the CLI failed as a user error: exit 2, one `error:` line on stderr, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def write_text_recipe(folder: Path, lines: str, extra: str = "", run_dir: Path | None = None) -> Path:
    """A recipe reading `instruction#response` lines from folder/d.txt; returns the recipe path."""
    (folder / "d.txt").write_text(lines, encoding="utf-8")
    p = folder / "r.yaml"
    p.write_text(f"run_dir: {run_dir or folder / 'run'}\ningest:\n  sources:\n    - path: d.txt\n      format: text\n"
                 + extra, encoding="utf-8")
    return p


# A tiny synthetic instruction task: name the German word for an English one.
WORDS = {
    "cat": "Katze", "dog": "Hund", "house": "Haus", "tree": "Baum", "water": "Wasser",
    "bread": "Brot", "milk": "Milch", "apple": "Apfel", "book": "Buch", "table": "Tisch",
    "chair": "Stuhl", "window": "Fenster", "door": "Tür", "sun": "Sonne", "moon": "Mond",
    "star": "Stern", "car": "Auto", "train": "Zug", "school": "Schule", "friend": "Freund",
    "mother": "Mutter", "father": "Vater", "child": "Kind", "city": "Stadt",
}


def start_server(engine, api_key: str | None = None):
    """`mothertongue serve`'s server for `engine` on a free loopback port, in a thread, started;
    returns (server, thread, "http://127.0.0.1:PORT"). Stop it with `server.should_exit = True`."""
    import threading
    import time

    from mothertongue.serve import bind, create_app, uvicorn_server

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn_server(create_app(engine, api_key), engine.cfg)  # as `mothertongue serve` runs it
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- the words run (train tests)
def write_words_recipe(root: Path, extra: str = "") -> Path:
    """A recipe teaching the tiny model German words (WORDS), full fine-tuning by default."""
    data = root / "words.txt"
    data.write_text(
        "\n".join(f"Was heißt {en} auf Deutsch?#Das heißt {de}." for en, de in WORDS.items()) + "\n",
        encoding="utf-8",
    )
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"""name: words
run_dir: {root / "run"}
language: de
base_model: tiny
seed: 7
tiny_model: {{hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 400}}
ingest:
  sources: [{{path: words.txt, format: text, options: {{lang: de}}}}]
build: {{template: chatml, max_length: 64}}
train:
  adapter: full
  learning_rate: 0.005
  batch_size: 8
  epochs: 1
  logging_steps: 5
  save_steps: 1000
  warmup_ratio: 0.05
{extra}""",
        encoding="utf-8",
    )
    return recipe


def copy_run(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the built run, so each test trains on its own."""
    root = tmp_path / "r"
    shutil.copytree(built, root)
    recipe = root / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(str(built), str(root)))
    return root, recipe


def fit_train(recipe, root: Path):
    """Train stage body into run/train.partial: ((model, summary), the partial folder)."""
    from mothertongue import train
    from mothertongue.runs import RunDir

    out = root / "run" / "train.partial"
    out.mkdir(parents=True, exist_ok=True)
    return train.fit(recipe, RunDir(root / "run"), out), out


def cli_env() -> dict:
    import os

    # One thread per process: the two DDP ranks then use the two cores without oversubscribing.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
