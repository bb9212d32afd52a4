"""Loading base and tuned models; the embedded `tiny` default built locally.

`base_model: tiny` builds a small Llama-architecture model from a config, with a byte-level BPE
tokenizer trained on the recipe's own data, so a whole run works with no hub. Any other value is
a hub id or local path loaded with the real `from_pretrained` code (safetensors only;
`trust_remote_code` only when the recipe says so).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mothertongue.config import Recipe, TinyModelConfig

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
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)


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


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), so autocast pays off."""
    import torch

    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # very old torch
        return False
    if "AMX" in cap:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(precision: str):
    """dtype the weights are loaded in: fp32 on CPU (bf16 there is autocast, see `train_precision`),
    bf16 on GPUs that support it, else fp16."""
    import torch

    if precision == "fp32":
        return torch.float32
    if not torch.cuda.is_available():
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# Below this width, CPU autocast spends more time casting weights each step than the bf16
# matrix multiplies save (measured: a 64-wide model trains ~1.4x slower under autocast).
CPU_BF16_MIN_HIDDEN = 512


def train_precision(precision: str, hidden_size: int | None = None) -> str:
    """The mixed-precision mode training runs in: "bf16", "fp16" or "fp32"."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    wide = hidden_size is None or hidden_size >= CPU_BF16_MIN_HIDDEN
    return "bf16" if wide and cpu_has_bf16() else "fp32"


def quantization_config(recipe: Recipe):
    """bitsandbytes settings for adapter=qlora; a clear StageError where they cannot work."""
    import torch

    from mothertongue.runs import StageError

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

    kwargs = {}
    if recipe.train.adapter == "qlora":
        import os

        kwargs["quantization_config"] = quantization_config(recipe)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = AutoModelForCausalLM.from_pretrained(
        path or recipe.base_model,
        dtype=pick_dtype(recipe.train.precision),
        trust_remote_code=recipe.train.trust_remote_code,
        use_safetensors=True,
        **kwargs,
    )
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


def read_template_info(tokenizer_dir: Path) -> dict:
    p = tokenizer_dir / "mothertongue_template.json"
    return json.loads(p.read_text()) if p.exists() else {}


def load_for_inference(run_dir: Path, which: str = "tuned"):
    """(model, tokenizer, stop_ids) for a finished run: `tuned` or the untuned `base`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.runs import RunDir, StageError

    run = RunDir(Path(run_dir))
    train_dir = run.require("train", "chat")
    info = json.loads((train_dir / "model_info.json").read_text())
    tok_dir = train_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    trust = bool(info.get("trust_remote_code"))
    base_path = info["base_path"] if not info.get("base_saved") else str(train_dir / "base_model")
    dtype = torch.float32 if not torch.cuda.is_available() else pick_dtype("auto")

    def _base():
        m = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, trust_remote_code=trust, use_safetensors=True)
        if len(tokenizer) > m.get_input_embeddings().weight.shape[0]:
            m.resize_token_embeddings(len(tokenizer))
        return m

    if which == "base":
        model = _base()
    elif which == "tuned":
        if info["adapter"] in ("lora", "qlora"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(_base(), tok_dir)
        else:
            model = AutoModelForCausalLM.from_pretrained(tok_dir, dtype=dtype, trust_remote_code=trust, use_safetensors=True)
    else:
        raise StageError(f"unknown model {which!r}; use tuned or base")
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, tokenizer, stop_token_ids(tokenizer, info.get("end_of_turn"))
