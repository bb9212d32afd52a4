"""Tiny Marian MT models trained here on synthetic word-substitution languages.

    python -m pytest -q tests/test_translate.py tests/test_engines.py   # builds en->xx once per session

The "language" xx maps each English word to an invented one, keeping order and punctuation, so a
correct translation is known exactly. A second synthetic language is filed under the real code
`fi` (the router and the translation memory want real codes; the words are invented): `to_fi`
makes its text from English and the fi->en model learns the inverse, `from_fi`, so that fi->xx
has no direct model and must pivot fi->en->xx (tests/test_translate_pivot.py). Each model
(d_model 64, 2+2 layers) learns its mapping in about 20 s on one CPU thread; it is saved in
Hugging Face format (Marian + a BPE tokenizer with Metaspace pre-tokenization so decoding is
byte-exact) and converted for CTranslate2 on demand.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

WORDS = (
    "cat dog bird fish cow horse red blue green big small the a sees likes eats runs and with "
    "house tree water sun moon go visit see now here first second item ok value list code"
).split()
XX = {w: (w[::-1] + "ka") for w in WORDS}
PUNCT = [".", ".", ".", "!", "?"]


# "fi": every English word with a suffix (no fi word is an English or an xx word).
FI = {w: w + "ja" for w in WORDS}
FI_WORDS = [FI[w] for w in WORDS]
FROM_FI = {v: k for k, v in FI.items()}


def _substitute(table: dict[str, str], text: str) -> str:
    import re

    return re.sub(r"[a-z]+", lambda m: table.get(m.group(0), m.group(0)), text)


def to_xx(sentence: str) -> str:
    """The exact translation of a synthetic English text: every known word substituted."""
    return _substitute(XX, sentence)


def to_fi(sentence: str) -> str:
    """Synthetic English -> synthetic "fi" (how the fi test data is made)."""
    return _substitute(FI, sentence)


def from_fi(sentence: str) -> str:
    """The exact translation of a synthetic fi text into English (what the fi->en model learns)."""
    return _substitute(FROM_FI, sentence)


def identity(sentence: str) -> str:
    return sentence


# The synthetic pairs a model can be trained for: (src, tgt) -> (mapping, source words, seed).
SYNTHETIC_PAIRS = {
    ("en", "xx"): (to_xx, WORDS, 0),
    ("fi", "en"): (from_fi, FI_WORDS, 1),
}


def random_sentence(rng: random.Random, lo: int = 1, hi: int = 9, words: list[str] = WORDS) -> str:
    picked = [rng.choice(words) for _ in range(rng.randint(lo, hi))]
    end = rng.choice(PUNCT) if rng.random() < 0.8 else ""
    return " ".join(picked) + end


def train_tiny_marian(
    out: Path, seed: int = 0, steps: int = 600, *, src: str = "en", tgt: str = "xx",
    mapping: Callable[[str], str] | None = None, words: list[str] | None = None,
) -> Path:  # fmt: skip
    """Train and save a src->tgt model; returns its folder. Source sentences are random strings
    of `words`, targets are `mapping(source)`; both default to the SYNTHETIC_PAIRS entry for
    (src, tgt). The defaults (en->xx, seed 0) give the model every translate test shares."""
    import torch

    from mothertongue.engines.toy import train_toy_marian

    if mapping is None or words is None:
        if (src, tgt) not in SYNTHETIC_PAIRS:
            raise ValueError(f"no synthetic mapping for {src}->{tgt}: pass mapping and words")
        mapping = mapping or SYNTHETIC_PAIRS[src, tgt][0]
        words = words or SYNTHETIC_PAIRS[src, tgt][1]
    rng = random.Random(seed)
    pairs = [(s, mapping(s)) for s in (random_sentence(rng, words=words) for _ in range(4000))]
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and the CPU is shared
    return train_toy_marian(pairs, out, seed=seed, steps=steps)


def tiny_marian_path(tmp_path_factory, src: str = "en", tgt: str = "xx") -> Path:
    """The trained tiny src->tgt Marian model (a SYNTHETIC_PAIRS pair, en->xx by default), trained
    once per session and kept in the session's base temp dir (the test modules' `tiny_marian*`
    fixtures all call this)."""
    base = tmp_path_factory.getbasetemp()
    os.environ.setdefault("MT_CT2_CACHE", str(base / "ct2-cache"))
    out = base / f"tiny_marian_{src}_{tgt}"
    if not (out / "model.safetensors").exists():
        train_tiny_marian(out, SYNTHETIC_PAIRS[src, tgt][2], src=src, tgt=tgt)
    return out
