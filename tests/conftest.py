"""Shared fixtures: everything is built locally, nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("MT_SHARED_MODELS", REPO.parent / "shared" / "models"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def pytest_collection_modifyitems(config, items):
    import torch

    for item in items:
        if "real_models" in item.keywords and not SHARED_MODELS.exists():
            item.add_marker(pytest.mark.skip(reason=f"real models folder absent: {SHARED_MODELS}"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


def run_recipe(recipe_path: Path, overrides: list[str], stages: list[str] | None = None, force: bool = False):
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage, stages_for

    recipe = load_recipe(recipe_path, overrides)
    for s in stages or stages_for(recipe):
        run_stage(recipe, s, force=force, log=lambda m: None)
    return recipe


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """The shipped quickstart recipe run once end to end (tiny model trained here, ~40 s).

    Tests that need a finished run (chat, evaluate, serve, export) share it; don't modify it."""
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    run_recipe(REPO / "recipes" / "quickstart.yaml", [f"run_dir={run_dir}"])
    return run_dir


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
