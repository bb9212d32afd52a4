"""`models.load_model` loads a run directory or an exported folder for every consumer."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers import TINY, write_text_recipe
from mothertongue.errors import StageError
from mothertongue.generation import generate
from mothertongue.models import load_model, stop_token_ids
from mothertongue.runs import RunDir

pytestmark = pytest.mark.slow  # trains a tiny model once for the module (~20 s)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A LoRA run on a tiny base: a few steps, enough for the loader (not for learning)."""
    from helpers import run_recipe

    folder = tmp_path_factory.mktemp("loader")
    lines = "".join(f"Nenne die Zahl {i}.#Die Zahl ist {i}.\n" for i in range(12))
    p = write_text_recipe(folder, lines, "language: fr\nbuild:\n  template: chatml\n")
    run_recipe(p, [*TINY, "train.max_steps=3", "train.lora_r=4", "train.logging_steps=1",
                   "train.lora_alpha=64", "train.learning_rate=0.05"], ["ingest", "build", "train"])
    return folder / "run"


def _greedy(model, tok, stops):
    return [r.text for r in generate(model, tok, [[{"role": "user", "content": "Nenne die Zahl 3."}]], stops,
                                     max_new_tokens=6, do_sample=False)]


def test_run_folder_tuned_base_merged_and_exported_folder(lora_run, tmp_path):
    tuned, tok, stops, info = load_model(lora_run)
    assert (info.kind, info.which, info.language) == ("run", "tuned", "fr")
    assert info.recipe is not None and info.recipe.language == "fr"
    assert info.end_of_turn == "<|im_end|>" and stops == stop_token_ids(tok, "<|im_end|>")
    assert info.system_prompt  # the build stage's system prompt travels with the model
    base, *_ = load_model(lora_run, "base")
    merged, *_ = load_model(lora_run, "merged")
    assert not hasattr(merged, "peft_config") and hasattr(tuned, "peft_config")
    w = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[w], base.state_dict()[w])  # the adapter moved it
    assert _greedy(merged, tok, stops) == _greedy(tuned, tok, stops)
    # An exported folder (weights + tokenizer + template info) loads as it is, same replies.
    out = tmp_path / "export"
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(RunDir(lora_run).tuned_dir / RunDir.TEMPLATE_INFO, out / RunDir.TEMPLATE_INFO)
    folder_model, folder_tok, folder_stops, folder_info = load_model(out)
    assert (folder_info.kind, folder_info.language, folder_info.recipe) == ("folder", "fr", None)
    assert folder_stops == stops
    assert _greedy(folder_model, folder_tok, folder_stops) == _greedy(tuned, tok, stops)


def test_loader_errors_are_one_line(lora_run, tmp_path):
    with pytest.raises(StageError, match="unknown model 'best'; use tuned, base, merged"):
        load_model(lora_run, "best")
    with pytest.raises(StageError, match="neither a run directory"):
        load_model(tmp_path)
    with pytest.raises(StageError, match="not a folder"):
        load_model(tmp_path / "nope")
    # An exported model without its tokenizer names the folder and what is missing.
    out = tmp_path / "no-tokenizer"
    model, *_ = load_model(lora_run, "merged")
    model.save_pretrained(out)
    with pytest.raises(StageError) as e:
        load_model(out)
    assert str(e.value).startswith(f"cannot load the tokenizer from {out}") and "\n" not in str(e.value)


def test_model_info_cannot_turn_on_remote_code(lora_run, tmp_path):
    """Only the caller (the user's recipe or flag) decides trust_remote_code; model_info.json,
    a file inside the run folder, does not."""
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    info_path = RunDir(run).model_info_path
    info = json.loads(info_path.read_text())
    base = tmp_path / "custom-base"
    shutil.copytree(RunDir(run).base_model_dir, base)
    config = json.loads((base / "config.json").read_text())
    # A base whose architecture lives in code shipped with the model ("remote code").
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomLlama"}
    (base / "config.json").write_text(json.dumps(config))
    (base / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nclass CustomLlama(LlamaForCausalLM):\n    RAN = True\n")
    info.update(base_saved=False, base_path=str(base), trust_remote_code=True)
    info_path.write_text(json.dumps(info))
    model, *_ = load_model(run, "base")  # transformers' own Llama: the shipped code did not run
    assert type(model).__name__ == "LlamaForCausalLM"
    model, *_ = load_model(run, "base", trust_remote_code=True)
    assert type(model).__name__ == "CustomLlama"
