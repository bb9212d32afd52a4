"""A toy Marian translation model, trained on the spot from a small parallel file.

    translate: {model: "toy:data/quickstart_en_de.tsv"}    # in a recipe (the quickstart does this)

It exists so that the quickstart (and the tests) can run the whole translate stage offline: the
model memorises the sentence pairs of the file in seconds on a CPU and translates exactly those
sentences; it knows nothing else. For real work use a real model, e.g.
`translate.model: Helsinki-NLP/opus-mt-en-de` or `translate.family: nllb`.

The trained model is saved in Hugging Face format (Marian + a BPE tokenizer with Metaspace
pre-tokenization, so decoding is byte-exact) in a folder named by the hash of its training data
and settings, so a rerun reuses it and a changed file trains a new one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

from mothertongue.text.parallel import read_parallel

SCHEME = "toy:"


def train_toy_marian(
    pairs: Sequence[tuple[str, str]], out: Path, *, seed: int = 0, steps: int = 600, batch_size: int = 32,
    vocab_size: int = 400, d_model: int = 64, ffn_dim: int = 128, max_length: int = 64, lr: float = 2e-3,
) -> Path:  # fmt: skip
    """Train a Marian model on `pairs` and save it (model + tokenizer) into `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    from mothertongue import progress

    rng = random.Random(seed)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    # Like real OPUS-MT vocabularies: </s>=0, <unk>=1, ..., <pad> last (CTranslate2 relies on it).
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator([t for p in pairs for t in p], trainer=trainer)
    tok.add_special_tokens(["<pad>"])
    pad_id = tok.token_to_id("<pad>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    cfg = MarianConfig(
        vocab_size=len(fast), d_model=d_model, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=ffn_dim, decoder_ffn_dim=ffn_dim,
        max_position_embeddings=max_length, pad_token_id=pad_id, eos_token_id=0, decoder_start_token_id=pad_id,
        forced_eos_token_id=0, scale_embedding=True, share_encoder_decoder_embeddings=True, dropout=0.0,
        num_beams=1, max_length=max_length,
    )  # fmt: skip
    model = MarianMTModel(cfg)
    # Marian decodes from a zero <pad> embedding (real OPUS-MT checkpoints have one, CTranslate2
    # relies on it); keep that row at zero by masking its gradient.
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[pad_id].zero_()
    emb.register_hook(lambda g: g.index_fill(0, torch.tensor([pad_id]), 0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    pairs = list(pairs)
    with progress.task("toy MT model", total=steps, unit="steps") as bar:
        for _ in range(steps):
            batch = rng.sample(pairs, min(batch_size, len(pairs)))
            enc = fast([s for s, _ in batch], text_target=[t for _, t in batch], padding=True, return_tensors="pt")
            enc["labels"][enc["labels"] == pad_id] = -100
            loss = model(**enc).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            bar.update(completed=bar.completed + 1, loss=loss.item())
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


# Settings the quickstart's 162 pairs are memorised with (checked exact on every pair in ~15 s on
# one CPU thread); part of the cache key, so a change trains a new model.
SETTINGS = {"steps": 400, "vocab_size": 800, "d_model": 64, "ffn_dim": 128, "lr": 5e-3, "seed": 0}


def is_toy(model: str) -> bool:
    return model.startswith(SCHEME)


def toy_file(model: str, base_dir: Path) -> Path:
    """The parallel file a `toy:PATH` model names (relative to the recipe's folder)."""
    path = Path(model[len(SCHEME) :]).expanduser()
    path = path if path.is_absolute() else Path(base_dir) / path
    if not path.is_file():
        from mothertongue.errors import RecipeError

        raise RecipeError(f"translate.model: {model}: no parallel file at {path}")
    return path


def ensure_toy_model(model: str, base_dir: Path, cache: Path, log=print) -> str:
    """The folder of the toy model for `toy:PATH`, trained now unless already cached."""
    import os
    import shutil

    import torch

    pairs = [(p.source, p.target) for p in read_parallel(toy_file(model, base_dir))]
    key = hashlib.sha256(json.dumps([pairs, SETTINGS], ensure_ascii=False).encode()).hexdigest()[:12]
    out = cache / f"toy-{key}"
    if (out / "model.safetensors").exists():
        return str(out)
    log(f"[translate] training the toy translation model on {len(pairs)} sentence pairs (a demo, seconds)")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest
    try:
        train_toy_marian(pairs, tmp, **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    os.replace(tmp, out)
    return str(out)
