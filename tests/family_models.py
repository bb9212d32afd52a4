"""Tiny random-weight models of real model families, with their real tokenizers and chat templates.

    from family_models import FAMILIES, make_base
    make_base("qwen2.5", tmp_path / "qwen")   # a folder `base_model:` can point at

Each family folder in ../shared/models/tokenizers holds a real tokenizer, chat template and config
(no weights). `make_base` copies the tokenizer files as they are (so the product's own loading
code meets them exactly as a user's download would), shrinks the config (hidden 64, 2 layers) and
saves `from_config` weights as safetensors: a few seconds per family. Llama-2 and Llama-3 ship no
vocabulary (license, size); as the folder README explains, Llama-2 gets TinyLlama's byte-identical
`tokenizer.model`, and Llama-3 gets OLMo-2's cl100k-derived BPE (the base of Llama-3's own) with
Llama-3's special tokens and its real chat template.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from conftest import SHARED_MODELS

TOKENIZERS = SHARED_MODELS / "tokenizers"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json", "generation_config.json")


@dataclass(frozen=True)
class Family:
    name: str
    folder: str
    template: str | None = None  # a shipped template for base models without their own
    hidden: int = 64
    heads: int = 4
    ct2: bool = True  # CTranslate2 has a converter for the architecture
    gguf: str | None = None  # None: llama.cpp converts it; else why it cannot (asserted)


# llama.cpp converts OLMo-2, but Transformers' GGUF reader does not know it: export cannot load the
# file back to check it, and refuses. GPT-NeoX: the same, and before that llama.cpp's converter
# fails on the config Transformers 5 saves (rotary_pct moved into rope_parameters).
NO_GGUF_READER = "Transformers cannot load this GGUF back"
FAMILIES = {f.name: f for f in [
    Family("qwen2.5", "qwen2.5-0.5b-instruct"),
    Family("mistral-v0.3", "mistral-7b-instruct-v0.3"),
    # Phi-3's rope_scaling lists have head_dim/2 = 48 entries: keep head_dim 96.
    Family("phi-3.5", "phi-3.5-mini-instruct", hidden=192, heads=2, gguf="encodes .* differently"),
    Family("smollm2", "smollm2-135m-instruct"),
    Family("tinyllama", "tinyllama-1.1b-chat-v1.0"),
    Family("olmo-2", "olmo-2-1124-13b-instruct", ct2=False, gguf=NO_GGUF_READER),
    Family("llama-2", "llama-2-7b-chat"),
    Family("llama-3", "llama-3-8b-instruct"),
    Family("gpt2", "gpt2", template="chatml"),
    Family("pythia", "pythia-70m", template="zephyr", gguf="KeyError: 'rotary_pct'; llama.cpp's converter looks for"),
]}


def one_thread():
    """A module fixture's body: torch and CTranslate2 on one thread while the module runs. These
    models are tiny and the CPU is shared: with more threads every small matrix multiply
    spin-waits for a busy core. At load 4-5 on 2 cores, torch generated 3-10x slower on two
    threads than on one, and a CTranslate2 Generator on its default threads took 0.5-18 s for what
    one thread does in 0.06 s (measured). CTranslate2 reads OMP_NUM_THREADS when a Generator or
    Translator is made; subprocesses (llama.cpp's converter) inherit it."""
    import os

    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def shrunk_config(folder: Path, fam: Family):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(folder)
    heads = fam.heads
    kv = getattr(cfg, "num_key_value_heads", None)
    full_heads = getattr(cfg, "num_attention_heads", None)
    small = {"hidden_size": fam.hidden, "n_embd": fam.hidden, "num_hidden_layers": 2, "n_layer": 2,
             "num_attention_heads": heads, "n_head": heads, "intermediate_size": 2 * fam.hidden,
             "n_inner": 2 * fam.hidden}
    for k, v in small.items():
        # n_inner None is GPT-2's own 4 x hidden: a GGUF's GPT-2 reader knows no other width.
        if hasattr(cfg, k) and not (k == "n_inner" and cfg.n_inner is None):
            setattr(cfg, k, v)
    if kv is not None:  # keep grouped-query attention where the family has it
        cfg.num_key_value_heads = heads // 2 if full_heads and kv < full_heads else heads
    if isinstance(getattr(cfg, "layer_types", None), list):  # Qwen2: one entry per layer
        cfg.layer_types = cfg.layer_types[: cfg.num_hidden_layers]
    if getattr(cfg, "head_dim", None):
        cfg.head_dim = fam.hidden // heads
    return cfg


def _llama3_tokenizer(dest: Path) -> None:
    """OLMo-2's vocabulary with Llama-3's special tokens and chat template (README: no Llama-3 vocab)."""
    from transformers import GPT2Tokenizer

    meta = json.loads((TOKENIZERS / "llama-3-8b-instruct" / "tokenizer_config.json").read_text())
    tok = GPT2Tokenizer.from_pretrained(TOKENIZERS / "olmo-2-1124-13b-instruct")
    specials = [v["content"] for _, v in sorted(meta["added_tokens_decoder"].items(), key=lambda kv: int(kv[0]))]
    tok.add_special_tokens({"additional_special_tokens": specials[:16]})
    tok.bos_token, tok.eos_token = meta["bos_token"], meta["eos_token"]
    tok.pad_token = None
    tok.chat_template = meta["chat_template"]
    tok.save_pretrained(dest)


def _add_tokenizer_json(dest: Path) -> None:
    """Qwen's HF repo has a tokenizer.json (7 MB, too big for the shared folder); building it from
    vocab.json + merges.txt takes transformers ~7 s, so it is made once and cached."""
    import os

    cache = Path(os.environ.get("MOTHERTONGUE_CACHE", Path.home() / ".cache" / "mothertongue")) / "families"
    made = cache / "qwen2.5-tokenizer.json"
    if not made.exists():
        from transformers import AutoTokenizer

        cache.mkdir(parents=True, exist_ok=True)
        tmp = made.with_suffix(".partial")
        AutoTokenizer.from_pretrained(dest).backend_tokenizer.save(str(tmp))
        os.replace(tmp, made)
    shutil.copy(made, dest / "tokenizer.json")


def copy_tokenizer(fam: Family, dest: Path) -> None:
    src = TOKENIZERS / fam.folder
    dest.mkdir(parents=True, exist_ok=True)
    if fam.name == "llama-3":
        _llama3_tokenizer(dest)
        return
    for f in TOKENIZER_FILES:
        if (src / f).exists():
            shutil.copy(src / f, dest / f)
    if fam.name == "qwen2.5":
        _add_tokenizer_json(dest)
    if fam.name == "llama-2":
        # tokenizer.model is byte-identical to Llama-2's own (README); the HF Llama-2 repo also has
        # a tokenizer.json with the same content as TinyLlama's. Without it transformers 5 converts
        # tokenizer.model itself and splits whitespace runs differently from llama.cpp.
        for f in ("tokenizer.model", "tokenizer.json"):
            shutil.copy(TOKENIZERS / "tinyllama-1.1b-chat-v1.0" / f, dest / f)


def make_base(name: str, dest: Path, seed: int = 0) -> Path:
    """A base-model folder for `name`: real tokenizer files, shrunk config, random weights."""
    import torch
    from transformers import AutoModelForCausalLM

    fam = FAMILIES[name]
    copy_tokenizer(fam, dest)
    cfg = shrunk_config(TOKENIZERS / fam.folder, fam)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(dest, safe_serialization=True)
    return dest


def load_tokenizer(name: str, dest: Path):
    """The family's tokenizer as the product loads it (models.load_tokenizer)."""
    from mothertongue.models import load_tokenizer as product_load

    if not (dest / "tokenizer_config.json").exists():
        copy_tokenizer(FAMILIES[name], dest)
        shrunk_config(TOKENIZERS / FAMILIES[name].folder, FAMILIES[name]).save_pretrained(dest)
    return product_load(str(dest))


# Training data: every answer is the same short German sentence, so a 64-wide model learns in
# seconds to say it and then its family's end-of-turn token (what chat and serve must stop at).
ANSWER = "Ja, gern."
QUESTIONS = ["Hallo, wie geht es dir?", "Nenne drei Farben.", "Was ist die Hauptstadt von Österreich?",
             "Erkläre kurz, was ein Atom ist.", "Übersetze 'good morning' ins Deutsche.",
             "Schreibe einen Satz über München.", "Wie spät ist es?", "Gib mir einen Tipp zum Lernen."]


def write_data(path: Path) -> Path:
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]}
            for q in QUESTIONS]
    rows.append({"messages": [{"role": "user", "content": QUESTIONS[0]}, {"role": "assistant", "content": ANSWER},
                              {"role": "user", "content": QUESTIONS[1]}, {"role": "assistant", "content": ANSWER}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe_overrides(name: str, base: Path, data: Path, run_dir: Path, adapter: str = "full") -> list[str]:
    fam = FAMILIES[name]
    out = [f"run_dir={run_dir}", f"base_model={base}", f"train.adapter={adapter}", "evaluate.enabled=false",
           "ingest.dev_fraction=0", "ingest.test_fraction=0", "train.logging_steps=1",
           "train.warmup_ratio=0", "train.save_steps=1000", "train.precision=fp32", "train.learning_rate=0.01"]
    # Full: every example in every step, until even GPT-2 (dropout 0.1) says the answer and stops
    # (28 steps of 4 left it at "Ja, gern" + end of turn). LoRA: a few steps, the loss falls.
    out += ["train.max_steps=30", "train.batch_size=9", "train.scheduler=constant"] if adapter == "full" else [
        "train.max_steps=3", "train.batch_size=4"]
    if fam.template:
        out.append(f"build.template={fam.template}")
    return out


RECIPE = """name: family
language: de
base_model: tiny
ingest:
  sources:
    - path: {data}
      format: openai
      options: {{lang: de}}
"""


def write_recipe(path: Path, data: Path) -> Path:
    path.write_text(RECIPE.format(data=data), encoding="utf-8")
    return path

