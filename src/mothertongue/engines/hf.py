"""`transformers` engine: any seq2seq checkpoint through `generate`, with each family's codes.

    mothertongue translate recipe.yaml translate.engine=transformers translate.model=facebook/nllb-200-distilled-600M

Families (from the model name/config, or `translate.options.family`): OPUS-MT Marian (no codes),
NLLB-200 (`src_lang` + forced BOS of the FLORES code), M2M100 (`__de__`), mBART-50 (`de_DE`),
MADLAD-400 (`<2de>` prefixed to the source). Inputs are sorted by length and cut into batches
whose padded size stays under `translate.batch_tokens`, so short chat turns do not pay for
the long ones.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mothertongue.engines import (
    Engine,
    EngineOptions,
    check_safetensors,
    length_batches,
    resolve_family,
)
from mothertongue.engines.catalogue import FAMILIES
from mothertongue.precision import torch_dtype


class TransformersOptions(EngineOptions):
    family: str = Field("auto", description="Model family (opus-mt, nllb, m2m100, madlad, mbart50, plain) or auto.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float16 on GPU, float32 on CPU."
    )
    max_input_tokens: int = Field(512, gt=0, description="Longest source in tokens (longer segments are split before).")
    max_new_tokens: int = Field(512, gt=0, description="Longest translation in tokens.")
    force_length: bool = Field(
        False, description="Benchmarks only: every output is exactly as long as its batch's longest source."
    )


class TransformersEngine(Engine):
    name = "transformers"
    Options = TransformersOptions

    def _load(self) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.family = resolve_family(self.model, self.family or self.opts.family)
        check_safetensors(self.model, self.allow_pickle)
        self.tok = AutoTokenizer.from_pretrained(self.model)
        dtype = torch_dtype(self.opts.dtype, self.device)
        # use_safetensors=True also makes a hub download refuse pickle-only repositories.
        safe = None if self.allow_pickle else True
        self.net = AutoModelForSeq2SeqLM.from_pretrained(self.model, dtype=dtype, use_safetensors=safe).to(self.device).eval()

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text)["input_ids"])

    def _prepare(self, texts: list[str], src: str, tgt: str) -> tuple[list[str], dict]:
        fam = FAMILIES[self.family]
        kw: dict = {}
        if self.family == "madlad":
            return [f"{fam.code(tgt)} {t}" for t in texts], kw
        if self.family in ("nllb", "mbart50", "m2m100"):
            self.tok.src_lang = fam.code(src) if self.family != "m2m100" else src
            kw["forced_bos_token_id"] = self.tok.convert_tokens_to_ids(fam.code(tgt))
        return texts, kw

    def translate(self, texts: list[str], src: str, tgt: str, beam_size: int = 1) -> list[str]:
        import torch

        if not texts:
            return []
        inputs, kw = self._prepare(texts, src, tgt)
        ids = self.tok(inputs, truncation=True, max_length=self.opts.max_input_tokens)["input_ids"]
        out: list[str] = [""] * len(texts)
        for batch in length_batches([len(x) for x in ids], self.batch_tokens, beam_size):
            enc = self.tok.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt").to(self.device)
            gen = dict(num_beams=beam_size, do_sample=False, max_new_tokens=self.opts.max_new_tokens, **kw)
            if self.opts.force_length:
                n = max(len(ids[i]) for i in batch)
                gen.update(min_new_tokens=n, max_new_tokens=n)
            with torch.inference_mode():
                seqs = self.net.generate(**enc, **gen)
            for i, text in zip(batch, self.tok.batch_decode(seqs, skip_special_tokens=True)):
                out[i] = text.strip()
        return out
