"""Export a tuned model: merged safetensors (for Transformers/vLLM), GGUF (llama.cpp, Ollama) and
CTranslate2 (fast CPU inference). Every export is loaded back and made to generate.

    mothertongue export runs/quickstart                                   # -> runs/quickstart/export/merged
    mothertongue export runs/quickstart --format merged,ct2 --ct2-quantization int8
    mothertongue export runs/quickstart --format gguf --gguf-type q8_0         # converter fetched from PyPI once
    mothertongue export runs/quickstart --format gguf --llama-cpp /path/to/llama.cpp   # or your checkout's
    mothertongue export runs/quickstart --push-to-hub you/model-de        # only then is anything uploaded

The merged folder holds the LoRA adapter merged into the base (or the fully tuned model), the
tokenizer with its chat template and a generation config whose EOS is the end-of-turn token, so
`vllm serve runs/quickstart/export/merged` answers with the same template. Verification results
(greedy replies of the export next to the tuned model's) go to `export/report.json`.

GGUF uses llama.cpp's `convert_hf_to_gguf.py`, which no wheel installs. With `--llama-cpp DIR` (or
$LLAMA_CPP_DIR) that checkout is used; without, the converter is fetched once from the llama-cpp-python
source package on PyPI (it vendors llama.cpp), pinned to LLAMA_CPP_PYTHON_VERSION: `pip download`
of the 77 MB sdist, of which only the converter, its `conversion` package, gguf-py and chat templates
(2.3 MB) are kept in $MOTHERTONGUE_CACHE or ~/.cache/mothertongue/llama.cpp-VERSION. The written GGUF
is loaded back with Transformers' GGUF support (tokenizer rebuilt from the file, weights dequantized
by the `gguf` package) and made to generate greedily next to the merged model: an f32 file must
match exactly; the report gives, for any type, how many replies match and how often both models
pick the same next token. With llama-cpp-python installed, llama.cpp generates from the file too.
A locally trained byte-level tokenizer (`base_model: tiny`) is unknown to the converter's hash
table; it is written as llama.cpp's "gpt-2" pre-tokenizer, the split it declares (gguf_pre_tokenizer).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mothertongue.languages import greeting
from mothertongue.runs import RunDir, StageError, atomic_write_json

FORMATS = ("merged", "gguf", "ct2")
# Types convert_hf_to_gguf.py writes itself; others are made from an f16 file by llama-quantize.
GGUF_DIRECT = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja", RunDir.TEMPLATE_INFO, "generation_config.json")


def probe_prompts(run_dir: Path, n: int = 3) -> list[list[dict]]:
    """Prompts to verify an export with: held-out user turns of the run when there are any."""
    out = []
    for name in ("test.jsonl", "dev.jsonl", "train.jsonl"):
        p = Path(run_dir) / "ingest" / name
        if p.exists():
            for line in p.read_text(encoding="utf-8").splitlines():
                msgs = json.loads(line).get("messages", [])
                if msgs and msgs[0].get("role") == "user":
                    out.append([{"role": "user", "content": msgs[0]["content"]}])
                if len(out) >= n:
                    return out
    return out or [[{"role": "user", "content": greeting(RunDir(Path(run_dir)).language())}]]


def _greedy(model, tokenizer, stop_ids, prompts, max_new_tokens: int = 32) -> list[str]:
    from mothertongue.generation import generate

    reps = generate(model, tokenizer, prompts, stop_ids, do_sample=False, num_beams=1,
                    max_new_tokens=max_new_tokens)
    return [r.text for r in reps]


def forced_ids(model, tokenizer, stop_ids, prompts, n: int = 16) -> list[list[int]]:
    """Greedy token ids of exactly `n` new tokens per prompt, end-of-turn ignored: a reply that
    stops at once would hide any difference between two models, n forced tokens do not
    (`min_new_tokens` masks the stop tokens until then)."""
    import torch

    from mothertongue.generation import prompt_ids

    out = []
    for p in prompts:
        ids = torch.tensor([prompt_ids(tokenizer, p)], device=next(model.parameters()).device)
        with torch.no_grad():
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                               max_new_tokens=n, min_new_tokens=n, eos_token_id=stop_ids,
                               pad_token_id=tokenizer.pad_token_id or 0)
        out.append(g[0, ids.shape[1]:].tolist())
    return out


def merge(run_dir: Path, out_dir: Path, push_to_hub: str | None = None, max_new_tokens: int = 32) -> dict:
    """Merge the adapter into the base and save safetensors + tokenizer + chat template to
    `out_dir`; load it back and check its greedy replies equal the adapter-on-base ones."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.models import load_model, stop_token_ids

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, tokenizer, stop_ids, info = load_model(run_dir, "tuned")
    prompts = probe_prompts(run_dir)
    tuned = _greedy(model, tokenizer, stop_ids, prompts, max_new_tokens)
    tuned_ids = forced_ids(model, tokenizer, stop_ids, prompts)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model = model.to("cpu")
    # The exported generation config stops at the end-of-turn token, so servers that read it
    # (vLLM, TGI, transformers pipelines) stop where chat does.
    model.generation_config.eos_token_id = stop_ids
    if tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    src_info = RunDir(run_dir).tuned_dir / RunDir.TEMPLATE_INFO
    if src_info.exists():
        shutil.copy(src_info, tmp / RunDir.TEMPLATE_INFO)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)

    back_tok = AutoTokenizer.from_pretrained(out_dir)
    back = AutoModelForCausalLM.from_pretrained(out_dir, use_safetensors=True).eval()
    back_stop = stop_token_ids(back_tok, info.end_of_turn)
    merged = _greedy(back, back_tok, back_stop, prompts, max_new_tokens)
    merged_ids = forced_ids(back, back_tok, back_stop, prompts)
    report = {
        "format": "merged", "path": str(out_dir), "prompts": [p[0]["content"] for p in prompts],
        "tuned": tuned, "export": merged, "tuned_ids": tuned_ids, "export_ids": merged_ids,
        "same_greedy_output": merged == tuned, "same_forced_tokens": merged_ids == tuned_ids,
        "chat_template": bool(back_tok.chat_template), "stop_ids": back_stop,
    }
    if not (report["same_greedy_output"] and report["same_forced_tokens"]):
        raise StageError(f"merged model at {out_dir} answers differently from the tuned model: {merged} vs {tuned}")
    if push_to_hub:
        # Only ever with an explicit --push-to-hub REPO.
        back.push_to_hub(push_to_hub, private=True)
        back_tok.push_to_hub(push_to_hub, private=True)
        report["pushed_to"] = push_to_hub
    return report


# ----------------------------------------------------------------------- CTranslate2
def to_ctranslate2(merged_dir: Path, out_dir: Path, quantization: str = "int8", max_new_tokens: int = 32,
                   prompts: list[list[dict]] | None = None) -> dict:
    """Convert the merged model with CTranslate2's TransformersConverter and generate with it."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.generation import prompt_ids
    from mothertongue.models import read_template_info, stop_token_ids

    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    copy = [f for f in TOKENIZER_FILES if (merged_dir / f).exists()]
    TransformersConverter(str(merged_dir), copy_files=copy).convert(
        str(out_dir), quantization=None if quantization == "none" else quantization, force=True)

    tok = AutoTokenizer.from_pretrained(out_dir)
    stop_ids = stop_token_ids(tok, read_template_info(merged_dir).get("end_of_turn"))
    prompts = prompts or [[{"role": "user", "content": greeting(read_template_info(merged_dir).get("language") or "en")}]]
    gen = ctranslate2.Generator(str(out_dir), device="cpu")
    batch = [tok.convert_ids_to_tokens(prompt_ids(tok, p)) for p in prompts]
    results = gen.generate_batch(batch, max_length=max_new_tokens, sampling_topk=1, beam_size=1,
                                 include_prompt_in_result=False,
                                 end_token=[tok.convert_ids_to_tokens(i) for i in stop_ids])
    texts = [tok.decode([i for i in r.sequences_ids[0] if i not in stop_ids], skip_special_tokens=True).strip()
             for r in results]
    n = 16
    forced = gen.generate_batch(batch, max_length=n, min_length=n, sampling_topk=1, beam_size=1,
                                include_prompt_in_result=False,
                                end_token=[tok.convert_ids_to_tokens(i) for i in stop_ids])
    ct2_ids = [r.sequences_ids[0][:n] for r in forced]
    hf = AutoModelForCausalLM.from_pretrained(merged_dir, use_safetensors=True).eval()
    ref = _greedy(hf, tok, stop_ids, prompts, max_new_tokens)
    ref_ids = forced_ids(hf, tok, stop_ids, prompts, n)
    return {"format": "ct2", "path": str(out_dir), "quantization": quantization,
            "prompts": [p[-1]["content"] for p in prompts], "export": texts, "tuned": ref,
            "export_ids": ct2_ids, "tuned_ids": ref_ids,
            "same_greedy_output": texts == ref, "same_forced_tokens": ct2_ids == ref_ids}


# ----------------------------------------------------------------------------- GGUF
# The llama-cpp-python source package whose vendored llama.cpp supplies convert_hf_to_gguf.py
# when no checkout is given. Its gguf-py is 0.19.0, the version the `gguf` dependency is tested at.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# What of vendor/llama.cpp the converter needs: the script, the model classes it imports
# (`conversion/`, split out of the script in recent versions), its own gguf-py, and the chat templates some
# model classes read. Not the C++ sources, not the test vocabularies in models/.
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "gguf-py/pyproject.toml",
                    "gguf-py/LICENSE", "models/templates/", "LICENSE")


def cache_dir() -> Path:
    """Where fetched tools are kept: $MOTHERTONGUE_CACHE, else ~/.cache/mothertongue."""
    env = os.environ.get("MOTHERTONGUE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mothertongue"


def fetch_llama_cpp(version: str = LLAMA_CPP_PYTHON_VERSION, cache: Path | None = None, log=print) -> Path:
    """llama.cpp's converter from the llama-cpp-python source package on the package index.

    `pip download --no-deps --no-binary :all: llama-cpp-python==VERSION` (76.6 MB for 0.3.36; pip
    also prepares its metadata, in an isolated build environment), then only the converter, the
    `conversion` package, gguf-py and the chat templates are unpacked (187 files, 2.3 MB) into
    CACHE/llama.cpp-VERSION and the tarball is deleted: 8.5 s in all on the 2-core development
    machine, 18 s when pip's cache did not yet hold the build backend. Later calls reuse the folder."""
    import tarfile
    import tempfile
    import time

    dest = Path(cache or cache_dir()) / f"llama.cpp-{version}"
    if (dest / "convert_hf_to_gguf.py").exists() and (dest / "SOURCE.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = " (~77 MB download, once)" if version == LLAMA_CPP_PYTHON_VERSION else ""
    log(f"[export] no llama.cpp checkout given: fetching convert_hf_to_gguf.py from the llama-cpp-python=={version} "
        f"source package{size} into {dest}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-cpp-python-", dir=dest.parent) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
             f"llama-cpp-python=={version}", "-d", tmp], capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
            raise StageError(f"could not download the llama-cpp-python=={version} source package for llama.cpp's "
                             f"convert_hf_to_gguf.py (pip: {why}); pass --llama-cpp DIR with a llama.cpp checkout")
        sdist = sdists[0]
        size = sdist.stat().st_size
        t_download = time.monotonic() - t0
        unpacked = Path(tmp) / "unpacked"
        n_files = n_bytes = 0
        with tarfile.open(sdist) as tar:
            for m in tar:
                head, sep, rel = m.name.partition("/vendor/llama.cpp/")
                if not sep or "/" in head or not m.isfile() or not any(
                        rel == p or (p.endswith("/") and rel.startswith(p)) for p in _CONVERTER_PARTS):
                    continue
                target = unpacked / rel
                if ".." in Path(rel).parts:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n_files += 1
                n_bytes += m.size
        if not (unpacked / "convert_hf_to_gguf.py").exists():
            raise StageError(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py; "
                             "pass --llama-cpp DIR with a llama.cpp checkout")
        info = {"package": f"llama-cpp-python=={version}", "sdist": sdist.name, "sdist_bytes": size,
                "files": n_files, "bytes": n_bytes, "download_s": round(t_download, 1),
                "total_s": round(time.monotonic() - t0, 1)}
        (unpacked / "SOURCE.json").write_text(json.dumps(info, indent=1) + "\n")
        try:
            os.replace(unpacked, dest)
        except OSError:  # another process finished first (or a stale incomplete folder is there)
            if not (dest / "SOURCE.json").exists():
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(unpacked, dest)
    log(f"[export] {sdist.name}: {size / 1e6:.1f} MB in {t_download:.0f} s; kept {n_files} files "
        f"({n_bytes / 1e6:.1f} MB: converter, conversion/, gguf-py) in {dest}, tarball deleted")
    return dest


def find_llama_cpp(llama_cpp: str | Path | None, log=print) -> Path:
    """The llama.cpp folder holding convert_hf_to_gguf.py: the argument, then $LLAMA_CPP_DIR, else
    the converter vendored in the llama-cpp-python source package, fetched once (fetch_llama_cpp)."""
    cand = llama_cpp or os.environ.get("LLAMA_CPP_DIR")
    if cand:
        if (Path(cand) / "convert_hf_to_gguf.py").exists():
            return Path(cand)
        raise StageError(f"GGUF export needs llama.cpp's convert_hf_to_gguf.py and {cand} has none; pass "
                         "--llama-cpp DIR (a llama.cpp checkout), or neither it nor LLAMA_CPP_DIR to fetch the "
                         f"converter from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} on the package index")
    return fetch_llama_cpp(log=log)


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
    if ((tok.get("model") or {}).get("type") == "BPE" and tok.get("normalizer") is None
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")):
        return "gpt-2"
    return None


# Runs convert_hf_to_gguf.py's main() with one change: where its hash table does not know the
# pre-tokenizer, the name read from tokenizer.json (gguf_pre_tokenizer) is used instead of failing.
_CONVERT_WITH_PRE = r"""
import importlib.util, logging, sys
from pathlib import Path
checkout, pre = Path(sys.argv[1]), sys.argv[2]
sys.argv = [str(checkout / "convert_hf_to_gguf.py"), *sys.argv[3:]]
sys.path[0:0] = [str(checkout), str(checkout / "gguf-py")]
spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", sys.argv[0])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
owner = next((c for c in (getattr(mod, n, None) for n in ("TextModel", "Model"))
              if c is not None and "get_vocab_base_pre" in vars(c)), None)
if owner is None:
    from conversion.base import TextModel as owner
known = owner.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return known(self, tokenizer)
    except NotImplementedError:
        logging.getLogger("mothertongue").warning("MOTHERTONGUE_PRE %s: pre-tokenizer hash not in llama.cpp's list; "
                                                  "tokenizer.json declares the GPT-2 byte-level split", pre)
        return pre
owner.get_vocab_base_pre = get_vocab_base_pre
mod.main()
"""


def _quantize(src: Path, dst: Path, qtype: str, llama_cpp: Path) -> None:
    """f16 GGUF -> qtype with llama-quantize (checkout build) or llama-cpp-python's binding."""
    for b in (llama_cpp / "build" / "bin" / "llama-quantize", llama_cpp / "llama-quantize"):
        if b.exists():
            subprocess.run([str(b), str(src), str(dst), qtype.upper()], check=True, capture_output=True)
            return
    try:
        import llama_cpp as lc
    except ImportError:
        raise StageError(f"GGUF type {qtype} needs llama-quantize (build llama.cpp in {llama_cpp}) or "
                         f"`pip install llama-cpp-python`; types written directly: {', '.join(GGUF_DIRECT)}") from None
    ftype = getattr(lc, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", None)
    if ftype is None:
        raise StageError(f"unknown GGUF type {qtype}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = ftype
    if lc.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise StageError(f"llama.cpp could not quantize {src} to {qtype}")


# Strings whose token ids the GGUF's tokenizer must reproduce (besides the rendered probe prompts).
TOKENIZER_PROBES = ("Grüße aus München: Öl, Äpfel und Übermut für 3 Tage.",
                    "  Zwei  Leerzeichen,\nneue Zeile\tund Tab — straße, STRASSE, 12345!", "ÄÖÜäöüß€ 😀")


def _next_token_choices(model, seqs: list[tuple[list[int], list[int]]]) -> list[list[int]]:
    """The token a model picks next at every position of each continuation (teacher-forced along
    prompt + continuation)."""
    import torch

    out = []
    for p, c in seqs:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1: len(p) + len(c) - 1]
        out.append(logits.argmax(-1).tolist())
    return out


def _agreement(a: list[list[int]], b: list[list[int]]) -> tuple[int, int]:
    """(positions where both pick the same token, positions)."""
    return sum(x == y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)), sum(map(len, a))


def _llama_cpp_check(path: Path, seqs: list[tuple[list[int], list[int]]], ref_choices: list[list[int]], tok,
                     stop_ids: list[int], ref_texts: list[str], ref_ids: list[list[int]], rendered: list[str],
                     max_new_tokens: int) -> dict:
    """llama.cpp itself (llama-cpp-python) on the file: its tokenizer on the rendered prompts, and
    greedy decoding (argmax of its logits) from the same prompt ids as the merged model."""
    import numpy as np
    from llama_cpp import Llama

    n_forced = max(map(len, ref_ids), default=0)
    n_ctx = max(len(p) for p, _ in seqs) + max(max_new_tokens, n_forced) + 8
    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, verbose=False,
                n_threads=max(1, min(4, os.cpu_count() or 1)))

    def decode(prompt: list[int], n: int, allow_stop: bool) -> list[int]:
        llm.reset()
        llm.eval(prompt)
        out = []
        while len(out) < n:
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            if not allow_stop:
                logits[stop_ids] = -np.inf
            t = int(logits.argmax())
            if allow_stop and t in stop_ids:
                break
            out.append(t)
            llm.eval([t])
        return out

    same_ids = [llm.tokenize(r.encode("utf-8"), add_bos=False, special=True) == p for r, (p, _) in zip(rendered, seqs)]
    texts = [tok.decode(decode(p, max_new_tokens, True), skip_special_tokens=True).strip() for p, _ in seqs]
    ids = [decode(p, len(c), False) for p, c in seqs]
    choices = []
    for p, c in seqs:
        llm.reset()
        llm.eval(p + c)
        choices.append(np.asarray(llm.scores[len(p) - 1: len(p) + len(c) - 1]).argmax(-1).tolist())
    agree, total = _agreement(ref_choices, choices)
    return {"export": texts, "export_ids": ids, "same_token_ids": all(same_ids),
            "same_greedy_output": texts == ref_texts, "same_forced_tokens": ids == ref_ids,
            "prompts_matching": sum(a == b for a, b in zip(texts, ref_texts)),
            "token_agreement": round(agree / total, 4) if total else None}


def to_gguf(merged_dir: Path, out_file: Path, qtype: str = "q8_0", llama_cpp: str | Path | None = None,
            prompts: list[list[dict]] | None = None, max_new_tokens: int = 32, log=print) -> dict:
    """Convert with llama.cpp's converter (quantize when asked), then load the file back with
    Transformers' GGUF loader (tokenizer and dequantized weights) and generate: same token ids as
    the merged tokenizer, greedy replies and 16 forced tokens next to the merged model's, and how
    often both predict the same next token along those tokens. f32 must match exactly; lossy types
    are reported as they are and fail only when the output is garbage. llama-cpp-python, when
    installed, generates from the file too."""
    import gc

    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.generation import prompt_ids
    from mothertongue.models import read_template_info, stop_token_ids

    checkout = find_llama_cpp(llama_cpp, log=log)
    merged_dir, out_file = Path(merged_dir), Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    direct = qtype.lower() in GGUF_DIRECT
    first = out_file if direct else out_file.with_suffix(".f16.gguf")
    pre = gguf_pre_tokenizer(merged_dir)
    args = [str(merged_dir), "--outfile", str(first), "--outtype", qtype.lower() if direct else "f16"]
    env = {**os.environ, "PYTHONPATH": str(checkout / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = ([sys.executable, "-c", _CONVERT_WITH_PRE, str(checkout), pre, *args] if pre
           else [sys.executable, str(checkout / "convert_hf_to_gguf.py"), *args])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        hint = ("; llama.cpp names BPE pre-tokenizers of published models only, and this tokenizer.json is not the "
                "GPT-2 byte-level kind mothertongue can name for it") if "pre-tokenizer was not recognized" in last else ""
        raise StageError(f"convert_hf_to_gguf.py failed on {merged_dir}: {last}{hint}")
    pre_fallback = pre if "MOTHERTONGUE_PRE" in proc.stderr else None
    if pre_fallback:
        log(f"[export] llama.cpp does not know this tokenizer's hash; tokenizer.ggml.pre={pre_fallback!r} "
            "from tokenizer.json (byte-level BPE, GPT-2 split)")
    if not direct:
        _quantize(first, out_file, qtype, checkout)
        first.unlink()

    reader = gguf.GGUFReader(str(out_file))
    has_template = "tokenizer.chat_template" in reader.fields
    n_tensors = len(reader.tensors)
    del reader
    report = {"format": "gguf", "path": str(out_file), "type": qtype, "tensors": n_tensors,
              "bytes": out_file.stat().st_size, "chat_template": has_template,
              "converter": str(checkout), "pre_tokenizer_fallback": pre_fallback}
    if not n_tensors or not has_template:
        raise StageError(f"{out_file}: GGUF without tensors or without the chat template")

    # The reference: the merged model, greedy, on the same prompts.
    prompts = prompts or [[{"role": "user", "content": greeting(read_template_info(merged_dir).get("language") or "en")}]]
    n_forced = 16
    ref_tok = AutoTokenizer.from_pretrained(merged_dir)
    end_of_turn = read_template_info(merged_dir).get("end_of_turn")
    ref_stop = stop_token_ids(ref_tok, end_of_turn)
    ref = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32, use_safetensors=True).eval()
    ref_texts = _greedy(ref, ref_tok, ref_stop, prompts, max_new_tokens)
    ref_ids = forced_ids(ref, ref_tok, ref_stop, prompts, n_forced)

    # The file as Transformers reads it: tokenizer rebuilt from its vocabulary, weights dequantized.
    tok = AutoTokenizer.from_pretrained(out_file.parent, gguf_file=out_file.name)
    model = AutoModelForCausalLM.from_pretrained(out_file.parent, gguf_file=out_file.name, dtype=torch.float32).eval()
    stop_ids = stop_token_ids(tok, end_of_turn)
    rendered = [ref_tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    diff = [s for s in [*TOKENIZER_PROBES, *rendered]
            if tok(s, add_special_tokens=False)["input_ids"] != ref_tok(s, add_special_tokens=False)["input_ids"]]
    if diff or stop_ids != ref_stop or tok.chat_template != ref_tok.chat_template:
        what = (f"encodes {diff[0]!r} differently" if diff else
                f"stops at {stop_ids} not {ref_stop}" if stop_ids != ref_stop else "has another chat template")
        raise StageError(f"{out_file}: the tokenizer Transformers rebuilds from the GGUF {what} than the merged "
                         "model's tokenizer")
    texts = _greedy(model, tok, stop_ids, prompts, max_new_tokens)
    ids = forced_ids(model, tok, stop_ids, prompts, n_forced)
    seqs = [(prompt_ids(ref_tok, p), c) for p, c in zip(prompts, ref_ids, strict=True)]
    ref_choices = _next_token_choices(ref, seqs)
    agree, total = _agreement(ref_choices, _next_token_choices(model, seqs))
    del model, ref
    gc.collect()
    report.update({
        "prompts": [p[-1]["content"] for p in prompts], "tuned": ref_texts, "export": texts,
        "tuned_ids": ref_ids, "export_ids": ids, "same_token_ids": True,
        "same_greedy_output": texts == ref_texts, "same_forced_tokens": ids == ref_ids,
        "prompts_matching": sum(a == b for a, b in zip(texts, ref_texts)),
        "token_agreement": round(agree / total, 4) if total else None,
        "verified_with": "transformers",
    })
    if qtype.lower() == "f32" and not (report["same_greedy_output"] and report["same_forced_tokens"]):
        raise StageError(f"{out_file}: the f32 GGUF, loaded back, generates differently from the merged model: "
                         f"{texts} vs {ref_texts}")
    if (total and agree / total < 0.5) or (any(ref_texts) and not any(texts)):
        raise StageError(f"{out_file}: the {qtype} GGUF generates garbage: next-token agreement with the merged "
                         f"model {agree}/{total}, replies {texts} vs {ref_texts}")

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        report["llama_cpp"] = None
        return report
    lc = report["llama_cpp"] = _llama_cpp_check(out_file, seqs, ref_choices, ref_tok, ref_stop, ref_texts, ref_ids,
                                                rendered, max_new_tokens)
    if (lc["token_agreement"] or 0) < 0.5 or (any(ref_texts) and not any(lc["export"])):
        raise StageError(f"{out_file}: llama.cpp generates garbage from the {qtype} GGUF: next-token agreement with "
                         f"the merged model {lc['token_agreement']}, replies {lc['export']} vs {ref_texts}")
    return report


# ------------------------------------------------------------------------------ entry
def export(run_dir: Path, out: Path | None = None, formats: tuple[str, ...] = ("merged",),
           gguf_type: str = "q8_0", llama_cpp: str | None = None, ct2_quantization: str = "int8",
           push_to_hub: str | None = None, log=print) -> dict:
    """Run the chosen exports into `out` (default RUN/export); merged comes first (the others
    are made from it). Returns and writes `report.json`."""
    run_dir = Path(run_dir)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise StageError(f"unknown export format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    if not RunDir(run_dir).model_info_path.exists():
        raise StageError(f"{run_dir}: no finished train stage (train/model_info.json); train first")
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    checkout = None
    if "gguf" in formats:
        checkout = find_llama_cpp(llama_cpp, log=log)  # fetch or fail before the slow steps, not after
    merged_dir = out / "merged"
    reports = []
    rep = merge(run_dir, merged_dir, push_to_hub)
    reports.append(rep)
    log(f"[export] merged -> {merged_dir} (greedy output same as tuned: {rep['same_greedy_output']})")
    prompts = probe_prompts(run_dir)
    if "ct2" in formats:
        rep = to_ctranslate2(merged_dir, out / f"ct2-{ct2_quantization}", ct2_quantization, prompts=prompts)
        reports.append(rep)
        log(f"[export] ctranslate2 -> {rep['path']} (greedy replies same as tuned: {rep['same_greedy_output']}; "
            f"16 forced tokens same: {rep['same_forced_tokens']})")
    if "gguf" in formats:
        rep = to_gguf(merged_dir, out / f"model-{gguf_type}.gguf", gguf_type, checkout, prompts=prompts, log=log)
        reports.append(rep)
        n = len(rep["prompts"])
        log(f"[export] gguf -> {rep['path']} ({rep['bytes']} bytes, {rep['tensors']} tensors); loaded back with "
            f"Transformers: same token ids, greedy replies same as merged {rep['prompts_matching']}/{n}, "
            f"16 forced tokens same: {rep['same_forced_tokens']}, next-token agreement {rep['token_agreement']:.1%}")
        if rep["llama_cpp"]:
            lc = rep["llama_cpp"]
            log(f"[export] gguf in llama.cpp (llama-cpp-python): same token ids {lc['same_token_ids']}, greedy replies "
                f"same as merged {lc['prompts_matching']}/{n}, 16 forced tokens same: {lc['same_forced_tokens']}, "
                f"next-token agreement {lc['token_agreement']:.1%}")
    result = {"run_dir": str(run_dir), "exports": reports}
    atomic_write_json(out / "report.json", result)
    return result
