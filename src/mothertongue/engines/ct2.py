"""`ctranslate2` engine (default): a Transformers seq2seq checkpoint converted once to CTranslate2.

    mothertongue translate recipe.yaml translate.engine=ctranslate2 translate.options.compute_type=int8

The conversion (`ctranslate2.converters.TransformersConverter`) is cached under
`~/.cache/mothertongue/ct2/` (or `options.cache_dir`), keyed by the model and quantization, and
written atomically. A directory that already holds a CTranslate2 model (`model.bin`) is used as
is; its tokenizer comes from `options.tokenizer` (a Transformers tokenizer path, or `chars` /
`whitespace` for models whose tokens are characters or words). int8 on CPU, int8_float16 on GPU;
length-sorted batches under the token budget.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pydantic import Field

from mothertongue.engines import (
    Engine,
    EngineOptions,
    check_safetensors,
    length_batches,
    resolve_family,
)
from mothertongue.engines.catalogue import FAMILIES
from mothertongue.errors import RecipeError


class CTranslate2Options(EngineOptions):
    family: str = Field("auto", description="Model family (opus-mt, nllb, m2m100, madlad, mbart50, plain) or auto.")
    compute_type: str = Field(
        "auto", description="auto: int8 on CPU, int8_float16 on GPU; or any CTranslate2 compute type (weights converted to it)."
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer: a Transformers tokenizer path/id, `chars` or `whitespace`; default: the model's."
    )
    cache_dir: str | None = Field(None, description="Where converted models are kept; default ~/.cache/mothertongue/ct2.")
    intra_threads: int = Field(0, ge=0, description="Threads per translation (0: all cores).")
    inter_threads: int = Field(1, gt=0, description="Batches translated in parallel.")
    max_input_tokens: int = Field(512, gt=0, description="Longest source in tokens.")
    max_decoding_length: int = Field(512, gt=0, description="Longest translation in tokens.")
    force_length: bool = Field(
        False, description="Benchmarks only: every output is exactly as long as its batch's longest source."
    )


def convert(model: str, quantization: str, cache_dir: str | None = None, allow_pickle: bool = False) -> Path:
    """Convert a Transformers checkpoint once; later calls return the cached folder.

    Pickle-only checkpoints are refused unless allow_pickle (translate.allow_pickle)."""
    root = Path(cache_dir or os.environ.get("MT_CT2_CACHE", Path.home() / ".cache" / "mothertongue" / "ct2"))
    p = Path(model)
    ident = str(p.resolve()) if p.exists() else model
    if p.exists():  # a retrained local checkpoint must not reuse an old conversion
        ident += ":" + ":".join(str(f.stat().st_mtime_ns) for f in sorted(p.glob("*")) if f.is_file())
    key = hashlib.sha256(f"{ident}|{quantization}".encode()).hexdigest()[:16]
    out = root / f"{p.name or 'model'}-{quantization}-{key}"
    if (out / "model.bin").exists():
        return out
    check_safetensors(model, allow_pickle)
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            # use_safetensors=True also makes a hub download refuse pickle-only repositories.
            safe = None if allow_pickle else True
            return super().load_model(model_class, model_name_or_path, use_safetensors=safe, **kwargs)

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    Converter(model).convert(str(tmp), quantization=quantization, force=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class CTranslate2Engine(Engine):
    name = "ctranslate2"
    Options = CTranslate2Options

    def _load(self) -> None:
        import ctranslate2

        gpu = self.device == "cuda"
        compute = self.opts.compute_type
        # The weights are converted to the type asked for: float32 computed on int8 weights (the
        # conversion's type used to be int8 whatever compute_type said) is not float32.
        weights = "float16" if gpu else "int8"
        if compute == "auto":
            compute = "int8_float16" if gpu else "int8"
        elif compute != "default":
            weights = compute
        is_ct2 = (Path(self.model) / "model.bin").exists()
        self.family = "plain" if is_ct2 and not self.family else resolve_family(self.model, self.family or self.opts.family)
        path = Path(self.model) if is_ct2 else convert(self.model, weights, self.opts.cache_dir, self.allow_pickle)
        self.ct2_path = path
        self.translator = ctranslate2.Translator(
            str(path), device=self.device, compute_type=compute,
            intra_threads=self.opts.intra_threads, inter_threads=self.opts.inter_threads,
        )  # fmt: skip
        spec = self.opts.tokenizer or (None if is_ct2 else self.model)
        self.tok = None
        self.mode = spec if spec in ("chars", "whitespace") else "hf"
        if self.mode == "hf":
            from transformers import AutoTokenizer

            if spec is None:
                raise RecipeError(f"{self.model} is a CTranslate2 model; set translate.options.tokenizer (a path, chars or whitespace)")
            self.tok = AutoTokenizer.from_pretrained(spec)

    def tokenize(self, text: str) -> list[str]:
        if self.mode == "chars":
            return list(text.replace(" ", ""))
        if self.mode == "whitespace":
            return text.split()
        ids = self.tok(text, truncation=True, max_length=self.opts.max_input_tokens)["input_ids"]
        return self.tok.convert_ids_to_tokens(ids)

    def detokenize(self, tokens: list[str]) -> str:
        if self.mode == "chars":
            return "".join(tokens)
        if self.mode == "whitespace":
            return " ".join(tokens)
        return self.tok.decode(self.tok.convert_tokens_to_ids(tokens), skip_special_tokens=True).strip()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def translate(self, texts: list[str], src: str, tgt: str, beam_size: int = 1) -> list[str]:
        if not texts:
            return []
        fam = FAMILIES[self.family]
        prefix = None
        if self.family == "madlad":
            texts = [f"{fam.code(tgt)} {t}" for t in texts]
        elif self.family in ("nllb", "mbart50", "m2m100"):
            self.tok.src_lang = fam.code(src) if self.family != "m2m100" else src
            prefix = [fam.code(tgt)]
        toks = [self.tokenize(t) for t in texts]
        out: list[str] = [""] * len(texts)
        for batch in length_batches([len(t) for t in toks], self.batch_tokens, beam_size):
            kw = dict(beam_size=beam_size, max_decoding_length=self.opts.max_decoding_length)
            if self.opts.force_length:
                n = max(len(toks[i]) for i in batch)
                kw.update(min_decoding_length=n, max_decoding_length=n)
            res = self.translator.translate_batch(
                [toks[i] for i in batch], target_prefix=[prefix] * len(batch) if prefix else None, **kw
            )
            for i, r in zip(batch, res):
                hyp = r.hypotheses[0]
                out[i] = self.detokenize(hyp[1:] if prefix else hyp)
        return out
