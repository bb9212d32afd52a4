"""Models: the embedded `tiny` base built locally, the training base, and `load_model` for
every consumer (chat, serve, evaluate, export).

    model, tokenizer, stop_ids, info = load_model("runs/quickstart")          # tuned
    model, tokenizer, stop_ids, info = load_model("runs/quickstart/export/merged")

`base_model: tiny` builds a small Llama-architecture model from a config, with a byte-level BPE
tokenizer trained on the recipe's own data, so a whole run works with no hub. Any other value is
a hub id or local path loaded with the real `from_pretrained` code (safetensors only;
`trust_remote_code` only when the recipe says so).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothertongue.config import Recipe, TinyModelConfig
from mothertongue.errors import StageError
from mothertongue.languages import default_language
from mothertongue.precision import (  # noqa: F401  (re-exported: training imports them from here)
    CPU_BF16_MIN_HIDDEN,
    cpu_has_bf16,
    inference_dtype,
    pick_dtype,
    train_precision,
)
from mothertongue.runs import RunDir
from mothertongue.weights import check_base_model, require_safetensors

TINY = "tiny"
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int, extra_special: Iterable[str] = ()):
    """A byte-level BPE tokenizer trained on the given texts (every byte stays representable)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL.values()) + [t for t in extra_special if t not in SPECIAL.values()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    extra = [t for t in extra_special if t not in SPECIAL.values()]
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    return fast


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The base model's tokenizer; a missing or empty folder, or a hub id that cannot be reached,
    is one line naming `base_model` (build loads it before train loads the weights)."""
    from transformers import AutoTokenizer

    check_base_model(name, weights=False)
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise StageError(f"base_model: cannot load the tokenizer of {name}: {_first_line(e)}") from None
    except ValueError:
        # transformers 5 maps some model types (olmo2) to a backend that needs tokenizer.json and
        # ignores the tokenizer_class the folder declares; OLMo-2's vocab.json + merges.txt load
        # with that class (GPT2Tokenizer).
        cls = _declared_tokenizer_class(name)
        if cls is None:
            raise
        return cls.from_pretrained(name)


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """`save_pretrained`, keeping the SentencePiece file the tokenizer was loaded with.

    transformers 5 writes only tokenizer.json. llama.cpp's converter takes a Llama/Mistral
    vocabulary's merge scores from tokenizer.model; without it, it guesses them from tokenizer.json
    and the GGUF tokenizes German words differently from training ("▁H allo" for "▁Hall o"). The
    file is copied only while its pieces are still the tokenizer's first ids and every later id is
    an added token (a pad token, chat markers), which the converter reads from tokenizer_config."""
    import shutil

    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    src = getattr(tokenizer, "vocab_file", None)
    dest = folder / "tokenizer.model"
    if not src or not str(src).endswith(".model") or not Path(src).is_file() or dest.exists():
        return
    if sentencepiece_matches(tokenizer, src):
        shutil.copy(src, dest)


def sentencepiece_matches(tokenizer, model_file: str | Path) -> bool:
    """Whether the SentencePiece model's pieces are the tokenizer's ids 0..n-1 and every id past
    them is an added token."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    n = sp.get_piece_size()
    if len(tokenizer) < n or any(i not in tokenizer.added_tokens_decoder for i in range(n, len(tokenizer))):
        return False
    return tokenizer.convert_ids_to_tokens(list(range(n))) == [sp.id_to_piece(i) for i in range(n)]


def _declared_tokenizer_class(name: str):
    import transformers
    from transformers.utils import cached_file

    try:
        path = cached_file(name, "tokenizer_config.json")
    except OSError:
        return None
    declared = json.loads(Path(path).read_text(encoding="utf-8")).get("tokenizer_class") if path else None
    return getattr(transformers, declared, None) if isinstance(declared, str) else None


def build_tiny_model(cfg: TinyModelConfig, tokenizer, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads or cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def quantization_config(recipe: Recipe):
    """bitsandbytes settings for adapter=qlora; a clear StageError where they cannot work."""
    import torch

    if not torch.cuda.is_available():
        raise StageError("train.adapter=qlora needs a CUDA GPU (bitsandbytes 4/8-bit); use train.adapter=lora on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise StageError("train.adapter=qlora needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if recipe.train.qlora_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=pick_dtype(recipe.train.precision),
    )


def load_base_model(recipe: Recipe, tokenizer, path: str | None = None):
    """The model training starts from, with embeddings grown for any tokens the template added.

    `path` overrides where the weights come from (the saved tiny base, for qlora)."""
    if recipe.base_model == TINY and path is None:
        return build_tiny_model(recipe.tiny_model, tokenizer, recipe.seed)
    from transformers import AutoModelForCausalLM

    from mothertongue.vocab.stage import base_model_path

    name = path or base_model_path(recipe)
    allow_pickle = recipe.train.allow_pickle
    check_base_model(name, allow_pickle)
    kwargs = {}
    if recipe.train.adapter == "qlora":
        import os

        kwargs["quantization_config"] = quantization_config(recipe)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name,
            dtype=pick_dtype(recipe.train.precision),
            trust_remote_code=recipe.train.trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            **kwargs,
        )
    except OSError as e:  # the hub unreachable, a file missing from the folder or the hub repo
        raise StageError(f"base_model: cannot load {name}: {_first_line(e)}") from None
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def stop_token_ids(tokenizer, end_of_turn: str | None = None) -> list[int]:
    """Token ids that end an assistant turn: the template's end-of-turn token and EOS."""
    ids = []
    for t in (end_of_turn, tokenizer.eos_token):
        if t and t in tokenizer.get_vocab():
            ids.append(tokenizer.convert_tokens_to_ids(t))
    return list(dict.fromkeys(ids))




# ----------------------------------------------------------------------- inference loading
WHICH = ("tuned", "base", "merged")


def read_template_info(folder: Path) -> dict:
    """The template info written beside a tokenizer (template, end of turn, language, system prompt)."""
    p = Path(folder) / RunDir.TEMPLATE_INFO
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise StageError(f"{p}: not valid JSON ({e}); re-export or retrain the model") from None


@dataclass
class ModelInfo:
    """What `load_model` loaded, and the settings that travel with it."""

    path: Path  # the run directory or model folder given
    which: str  # tuned, base or merged (a model folder is always "tuned")
    kind: str  # "run" or "folder"
    template: dict = field(default_factory=dict)  # the template info file's contents
    recipe: Recipe | None = None  # a run's resolved recipe
    processor: Any = None  # a vision-language model's processor (images + tokenizer); None for text models

    @property
    def language(self) -> str:
        """The run's target language; English (what every phrase table falls back to) when the
        folder does not say."""
        return default_language(self.recipe, self.template)

    @property
    def system_prompt(self) -> str | None:
        return self.template.get("system_prompt")

    @property
    def styles(self) -> dict:
        return self.template.get("styles") or {}

    @property
    def end_of_turn(self) -> str | None:
        return self.template.get("end_of_turn")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _pretrained(loader, path, what: str, **kwargs):
    """`loader.from_pretrained`, with a missing or broken folder as one line naming it."""
    try:
        return loader.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        raise StageError(f"cannot load the {what} from {path}: {_first_line(e)}") from None


def _place(model):
    import torch

    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model


def _load_run(run: RunDir, which: str, trust_remote_code: bool, allow_pickle: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run.require("train", "loading the model")
    try:
        info = json.loads(run.model_info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise StageError(f"{run.model_info_path}: unreadable ({e}); rerun `mothertongue train --force`") from None
    tuned = run.tuned_dir
    tokenizer = _pretrained(AutoTokenizer, tuned, "tokenizer")
    base_path = str(run.base_model_dir) if info.get("base_saved") else info["base_path"]
    kw = {"dtype": inference_dtype(), "trust_remote_code": trust_remote_code, "use_safetensors": True}

    def base():
        m = _pretrained(AutoModelForCausalLM, base_path, "base model", **kw)
        if len(tokenizer) > m.get_input_embeddings().weight.shape[0]:
            m.resize_token_embeddings(len(tokenizer))
        return m

    if which == "base":
        model = base()
    elif info.get("adapter") in ("lora", "qlora"):
        from peft import PeftModel

        require_safetensors(tuned, "adapter", "train.allow_pickle: true", allow_pickle)  # PEFT would unpickle a .bin
        model = PeftModel.from_pretrained(base(), tuned)
        if which == "merged":
            model = model.merge_and_unload()
    else:
        model = _pretrained(AutoModelForCausalLM, tuned, "tuned model", **kw)
    template = read_template_info(tuned)
    template.setdefault("end_of_turn", info.get("end_of_turn"))
    return model, tokenizer, template


def _load_vision(path: Path, folder: Path, trust_remote_code: bool, recipe: Recipe | None):
    from mothertongue.vision.infer import load

    model, processor = load(folder, trust_remote_code)
    info = ModelInfo(path, "tuned", "run" if recipe else "folder", read_template_info(folder), recipe, processor)
    stops = stop_token_ids(processor.tokenizer, info.end_of_turn)
    gen_eos = model.generation_config.eos_token_id  # the stops the model was saved with (any Llava folder)
    stops += [t for t in (gen_eos if isinstance(gen_eos, list) else [gen_eos]) if t is not None and t not in stops]
    return model, processor.tokenizer, stops, info


def load_model(path: str | Path, which: str = "tuned", trust_remote_code: bool = False, allow_pickle: bool = False,
               vision: bool = False):
    """(model, tokenizer, stop_ids, ModelInfo) from a run directory or a model folder.

    A run directory gives `tuned` (adapter on base, or the full model), `base` (untuned) or
    `merged` (the LoRA adapter merged into the base in memory: the weights `export` saves).
    A folder with a config.json (e.g. `mothertongue export` output) is loaded as it is.
    Weights load as safetensors only (a pickle-only adapter too, unless `allow_pickle`); model code from the hub runs only with
    `trust_remote_code`, which the caller takes from the user's recipe or flag, never from
    files in the folder.

    With `vision` (chat, serve), the tuned model of a run that finished the vision stage is its
    vision-language model (`ModelInfo.processor` set); a Llava model folder always loads as one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.vision.infer import is_vision_folder, run_model_dir

    path = Path(path)
    if which not in WHICH:
        raise StageError(f"unknown model {which!r}; use {', '.join(WHICH)}")
    if not path.is_dir():
        raise StageError(f"{path}: not a folder; give a run directory or an exported model folder")
    run = RunDir(path)
    if is_vision_folder(path):
        return _load_vision(path, path, trust_remote_code, None)
    vision_dir = run_model_dir(path) if vision and which == "tuned" and run.is_run() else None
    if vision_dir is not None:
        return _load_vision(path, vision_dir, trust_remote_code, run.recipe_or_none())
    if run.is_run():
        model, tokenizer, template = _load_run(run, which, trust_remote_code, allow_pickle)
        info = ModelInfo(path, which, "run", template, run.recipe_or_none())
    elif (path / "config.json").exists():
        template = read_template_info(path)
        tokenizer = _pretrained(AutoTokenizer, path, "tokenizer")
        model = _pretrained(AutoModelForCausalLM, path, "model", dtype=inference_dtype(),
                            trust_remote_code=trust_remote_code, use_safetensors=True)
        info = ModelInfo(path, "tuned", "folder", template)
    else:
        raise StageError(f"{path}: neither a run directory (train/) nor a model folder (config.json)")
    return _place(model), tokenizer, stop_token_ids(tokenizer, info.end_of_turn), info
