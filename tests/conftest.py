"""Shared fixtures: everything is built locally, nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `from helpers import ...` in every test file
from helpers import REPO, SHARED_DATA, SHARED_MODELS, run_in_pty, run_recipe  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _online(host: str = "pypi.org", port: int = 443, timeout_s: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    import torch

    online = None
    for item in items:
        # The shared quickstart run trains a model end to end (~40 s): whoever uses it is slow.
        if "quickstart_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        if "network" in item.keywords:
            online = _online() if online is None else online
            if not online:
                item.add_marker(pytest.mark.skip(reason="needs the network (PyPI); offline"))
        if "real_models" in item.keywords and not SHARED_MODELS.exists():
            item.add_marker(pytest.mark.skip(reason=f"real models folder absent: {SHARED_MODELS}"))
        if "real_data" in item.keywords and not SHARED_DATA.exists():
            item.add_marker(pytest.mark.skip(reason=f"real data folder absent: {SHARED_DATA}"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """The shipped quickstart recipe run once end to end (tiny model trained here, ~40 s), as a
    person runs it: `mothertongue run recipes/quickstart.yaml` in a terminal (a pseudo-terminal);
    what it showed is kept beside the run folder in `terminal.txt` (see `quickstart_terminal`).

    Tests that need a finished run (chat, evaluate, serve, export) share it; don't modify it."""
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    rc, shown = run_in_pty([sys.executable, "-m", "mothertongue", "run", str(REPO / "recipes" / "quickstart.yaml"),
                            f"run_dir={run_dir}"], timeout=1500)  # fmt: skip
    (run_dir.parent / "terminal.txt").write_text(shown, encoding="utf-8")
    assert rc == 0, shown[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def quickstart_terminal(quickstart_run) -> str:
    """What the quickstart run showed in its terminal (escape codes included)."""
    return (quickstart_run.parent / "terminal.txt").read_text(encoding="utf-8")


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: with 2 OpenMP threads each step spin-waits on a
    busy core and runs ~10x slower than with one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_tokenizer():
    """A byte-level BPE tokenizer trained on the spot, with the chatml template installed."""
    from mothertongue import templates
    from mothertongue.models import train_tiny_tokenizer

    texts = ["Hallo Welt, wie geht es dir?", "Nenne drei Farben: Rot, Grün und Blau."] * 20
    t = templates.resolve("chatml", None)
    tok = train_tiny_tokenizer(texts, 400, t.special_tokens)
    templates.install(t, tok)
    return tok


@pytest.fixture(scope="session")
def lora_run(quickstart_run, tmp_path_factory):
    """(Export tests) A LoRA run on top of the quickstart's tuned model (a local-path base that already answers
    German), so adapter-on-base replies are real sentences, not an empty end-of-turn."""
    root = tmp_path_factory.mktemp("lora")
    base = root / "base"
    shutil.copytree(quickstart_run / "train" / "model", base)
    run_dir = root / "run"
    run_recipe(REPO / "recipes" / "quickstart.yaml", [
        f"run_dir={run_dir}", f"base_model={base}", "train.adapter=lora", "train.epochs=2",
        "train.learning_rate=0.01", "evaluate.enabled=false"])
    return run_dir


@pytest.fixture(scope="session")
def built_words(tmp_path_factory) -> Path:
    """A recipe dir whose run has ingest + build done (train not yet)."""
    from helpers import run_recipe, write_words_recipe

    root = tmp_path_factory.mktemp("words")
    recipe = write_words_recipe(root)
    run_recipe(recipe, [], stages=["ingest", "build"])
    return root
