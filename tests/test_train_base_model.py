"""Train stage: the base model a run starts from (half-saved, unusable, pickle) and the
one-line errors around it.

    python -m pytest -q tests/test_train_base_model.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import cli_env, copy_run, fit_train, write_words_recipe
from mothertongue.config import load_recipe as load

pytestmark = pytest.mark.usefixtures("one_thread")


def test_half_saved_base_model_is_saved_again(built_words, tmp_path):
    """A kill after the base model's config but before its weights left `base_model/` broken for
    good (only config.json was checked); now a folder without complete weights is redone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.models import build_tiny_model

    root, path = copy_run(built_words, tmp_path)
    recipe = load(path, ["train.max_steps=1"])
    broken = root / "run" / "train.partial" / "base_model"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))  # what the kill left
    (_, summary), out = fit_train(recipe, root)
    assert not (out / "base_model.tmp").exists()
    saved = AutoModelForCausalLM.from_pretrained(out / "base_model", dtype=torch.float32, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(root / "run" / "build" / "tokenizer")
    want = build_tiny_model(recipe.tiny_model, tok, recipe.seed).state_dict()
    got = saved.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def _save_small_model(folder: Path, safe: bool) -> Path:
    """A small Llama saved as safetensors, or as a pickle checkpoint the way older tools wrote them."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(config)
    if safe:
        model.save_pretrained(folder)
    else:  # transformers 5 writes safetensors only
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "a file", "not a model folder",
                                  "hub id while offline", "hub id without network", "pickle-only model",
                                  "pickle-only adapter"])
def test_unusable_base_model_is_a_one_line_error(built_words, tmp_path, monkeypatch, case):
    from huggingface_hub import constants

    from mothertongue.errors import StageError

    root, path = copy_run(built_words, tmp_path)
    where = tmp_path / "base"
    if case == "missing folder":
        name, match = where, "base_model: no such folder"
    elif case == "empty folder":
        where.mkdir()
        name, match = where, "is an empty folder"
    elif case == "a file":
        where.write_text("x")
        name, match = where, "is a file"
    elif case == "not a model folder":
        where.mkdir()
        (where / "notes.txt").write_text("x")
        name, match = where, "has no config.json"
    elif case == "hub id while offline":  # conftest sets HF_HUB_OFFLINE=1
        name, match = "acme-nonexistent/tiny-model", "hub is offline"
    elif case == "hub id without network":  # online mode, and a hub endpoint where nothing listens
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
        name, match = "acme-nonexistent/tiny-model", "the hub cannot be reached"
    elif case == "pickle-only model":
        name, match = _save_small_model(where, safe=False), "pytorch_model.bin: the model has only pickle weights"
    else:
        from peft import LoraConfig, get_peft_model

        base = _save_small_model(tmp_path / "adapter_base", safe=True)
        from transformers import AutoModelForCausalLM

        peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, task_type="CAUSAL_LM"))
        peft_model.save_pretrained(where, safe_serialization=False)
        name, match = where, "adapter_model.bin: the adapter has only pickle weights"
    with pytest.raises(StageError, match=match) as e:
        fit_train(load(path, [f"base_model={name}", "train.max_steps=1"]), root)
    assert not list((root / "run" / "train.partial").glob("checkpoints/*"))
    assert "\n" not in str(e.value)
    if "pickle" in case:
        assert "train.allow_pickle: true" in str(e.value)


def test_pickle_base_model_loads_when_allowed(built_words, tmp_path):
    from mothertongue.errors import StageError
    from mothertongue.models import load_base_model

    root, path = copy_run(built_words, tmp_path)
    folder = _save_small_model(tmp_path / "pickled", safe=False)
    tok = __import__("transformers").AutoTokenizer.from_pretrained(root / "run" / "build" / "tokenizer")
    with pytest.raises(StageError, match="pickle"):
        load_base_model(load(path, [f"base_model={folder}"]), tok)
    model = load_base_model(load(path, [f"base_model={folder}", "train.allow_pickle=true"]), tok)
    assert model.config.hidden_size == 32


def test_pickle_adapter_in_a_run_is_refused_unless_allowed(built_words, tmp_path):
    """PEFT loads `adapter_model.bin` through pickle when no safetensors file is there: loading a
    run's tuned model refuses that in one line unless asked to allow it."""
    import torch
    from safetensors.torch import load_file

    from mothertongue.errors import StageError
    from mothertongue.models import load_model

    root, path = copy_run(built_words, tmp_path)
    (_, summary), out = fit_train(load(path, ["train.adapter=lora", "train.max_steps=1"]), root)
    shutil.move(str(out), str(root / "run" / "train"))
    (root / "run" / "train" / "manifest.json").write_text("{}")
    adapter = root / "run" / "train" / "model"
    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(StageError, match="adapter_model.bin: the adapter has only pickle weights"):
        load_model(root / "run")
    model, _, _, _ = load_model(root / "run", allow_pickle=True)
    assert any("lora_A" in n for n, _ in model.named_parameters())


@pytest.mark.slow  # a CLI process, ~4 s
def test_build_with_a_missing_base_model_is_one_line(tmp_path):
    """build loads the base model's tokenizer before train loads its weights: the same one line."""
    import subprocess
    import sys

    recipe = write_words_recipe(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mothertongue", "run", str(recipe), f"base_model={tmp_path / 'nope'}"],
                       env=cli_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "base_model: no such folder" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
