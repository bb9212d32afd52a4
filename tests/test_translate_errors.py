"""User errors of the translate wing: one line, exit code 2, no traceback; and safetensors only.

    python -m pytest -q tests/test_translate_errors.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import mt, one_line_error
from mothertongue.config import load_recipe
from mothertongue.errors import DataError, MothertongueError, RecipeError
from mothertongue.runs import run_stage


def _cli(*args: str, env: dict | None = None):
    env = {**os.environ, **(env or {})}
    env.pop("MT_DEBUG", None)
    return mt(*args, env=env, timeout=300)


def random_marian(out: Path, safetensors: bool = True) -> Path:
    """A random-weight Marian with a tiny BPE tokenizer (weights as safetensors or pickle only)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # Like OPUS-MT vocabularies: </s>=0, <unk>=1, <pad> last (CTranslate2's converter relies on it).
    tok.train_from_iterator(["the cat sees the dog"] * 5, trainers.BpeTrainer(vocab_size=40, special_tokens=["</s>", "<unk>"], show_progress=False))
    tok.add_special_tokens(["<pad>"])
    pad = tok.token_to_id("<pad>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    cfg = MarianConfig(vocab_size=len(fast), d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=8, decoder_ffn_dim=8, pad_token_id=pad, eos_token_id=0,
                       decoder_start_token_id=pad, max_length=8)  # fmt: skip
    model = MarianMTModel(cfg)
    model.save_pretrained(out)
    if not safetensors:  # Transformers 5 saves safetensors only: write the old pickle layout by hand
        (out / "model.safetensors").unlink()
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    fast.save_pretrained(out)
    return out


def test_merge_memory_refuses_a_file_that_is_not_sqlite(tmp_path):
    (tmp_path / "notes.sqlite").write_text("not a database\n", encoding="utf-8")
    one_line_error(_cli("merge-memory", str(tmp_path / "tm.sqlite"), str(tmp_path / "notes.sqlite")), "notes.sqlite", "not a translation memory")
    assert not (tmp_path / "tm.sqlite").exists()  # the refused merge leaves no empty memory behind
    one_line_error(_cli("merge-memory", str(tmp_path / "tm.sqlite"), str(tmp_path / "typo.sqlite")), "typo.sqlite", "not found")
    assert not (tmp_path / "tm.sqlite").exists()
    from mothertongue.engines.memory import Memory

    with pytest.raises(DataError, match="notes.sqlite: not a translation memory"):
        Memory(tmp_path / "notes.sqlite")


def test_unknown_detect_languages_code_names_the_option():
    from mothertongue.text.langid import LangId

    with pytest.raises(RecipeError, match=r"translate.detect_languages: language 'klingon' is not known"):
        LangId(["en", "klingon"])


def _recipe(tmp: Path, extra: str) -> Path:
    data = tmp / "data.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "the cat sees the dog."},
                                             {"role": "assistant", "content": "the dog sees the cat."}]}) + "\n", encoding="utf-8")  # fmt: skip
    recipe = tmp / "recipe.yaml"
    recipe.write_text(
        f"name: t\nrun_dir: {tmp / 'run'}\nlanguage: de\ningest:\n  sources:\n    - {{path: {data}, format: openai, options: {{lang: en}}}}\n"
        f"translate:\n  enabled: true\n  progress: false\n{extra}",
        encoding="utf-8",
    )
    run_stage(load_recipe(recipe), "ingest", log=lambda m: None)
    return recipe


@pytest.mark.slow
def test_dry_run_offline_without_a_cached_model_is_one_line(tmp_path):
    recipe = _recipe(tmp_path, "  engine: transformers\n  model: Helsinki-NLP/opus-mt-en-nosuchmodel\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TRANSFORMERS_OFFLINE": "1"}
    p = _cli("translate", str(recipe), "--dry-run", env=env)
    one_line_error(p, "Helsinki-NLP/opus-mt-en-nosuchmodel", "not in the Hugging Face cache")


@pytest.mark.slow
def test_unknown_language_for_a_model_family_stops_before_any_work(tmp_path):
    model = random_marian(tmp_path / "m")
    recipe = _recipe(tmp_path, f"  engine: transformers\n  model: {model}\n  options: {{family: nllb}}\n  source_lang: en\n")
    r = load_recipe(recipe, ["language=la"])
    with pytest.raises(RecipeError, match=r"nllb models have no code for language 'la'"):
        run_stage(r, "translate", log=lambda m: None)
    assert not (tmp_path / "run" / "translate-memory.sqlite").exists()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["transformers", "ctranslate2"])
def test_pickle_only_checkpoints_are_refused_unless_allowed(tmp_path, engine):
    from mothertongue.engines import load_engine

    model = random_marian(tmp_path / "pickled", safetensors=False)
    assert (model / "pytorch_model.bin").exists() and not list(model.glob("*.safetensors"))
    opts = {"cache_dir": str(tmp_path / "ct2")} if engine == "ctranslate2" else {}
    with pytest.raises(MothertongueError, match=r"pytorch_model.bin: the translation model has only pickle weights.*translate.allow_pickle"):
        load_engine(engine, str(model), "cpu", opts)
    assert not (tmp_path / "ct2").exists() or not any((tmp_path / "ct2").iterdir())  # nothing converted
    eng = load_engine(engine, str(model), "cpu", opts, allow_pickle=True)
    assert len(eng.translate(["the cat"], "en", "de")) == 1
    # The recipe flag reaches the engine: the stage refuses, then runs with translate.allow_pickle.
    # (A fresh conversion cache: a conversion made once with the flag is CTranslate2's format, no pickle.)
    opts = {"cache_dir": str(tmp_path / "ct2-stage")} if engine == "ctranslate2" else {}
    recipe = _recipe(tmp_path, f"  engine: {engine}\n  model: {model}\n  quality_gate: false\n  options: {json.dumps(opts)}\n")
    with pytest.raises(MothertongueError, match="translate.allow_pickle"):
        run_stage(load_recipe(recipe), "translate", log=lambda m: None)
    out = run_stage(load_recipe(recipe, ["translate.allow_pickle=true"]), "translate", log=lambda m: None).path
    assert (out / "train.jsonl").exists()
