"""Export a tuned model: merged safetensors (for Transformers/vLLM), GGUF (llama.cpp, Ollama) and
CTranslate2 (fast CPU inference). Every export is loaded back and made to generate.

    mothertongue export runs/quickstart                                   # -> runs/quickstart/export/merged
    mothertongue export runs/quickstart --format merged,ct2 --ct2-quantization int8
    mothertongue export runs/quickstart --format gguf --gguf-type q8_0 --llama-cpp /path/to/llama.cpp
    mothertongue export runs/quickstart --push-to-hub you/model-de        # only then is anything uploaded

The merged folder holds the LoRA adapter merged into the base (or the fully tuned model), the
tokenizer with its chat template and a generation config whose EOS is the end-of-turn token, so
`vllm serve runs/quickstart/export/merged` answers with the same template. Verification results
(greedy replies of the export next to the tuned model's) go to `export/report.json`.

GGUF needs llama.cpp's `convert_hf_to_gguf.py`, which no PyPI wheel installs; the llama-cpp-python
source package vendors a full llama.cpp checkout:
    pip download --no-deps --no-build-isolation llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz
    mothertongue export RUN --format gguf --llama-cpp llama_cpp_python-*/vendor/llama.cpp
Verifying a GGUF by generation needs `pip install llama-cpp-python` (which compiles llama.cpp).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mothertongue.runs import StageError, atomic_write_json

FORMATS = ("merged", "gguf", "ct2")
# Types convert_hf_to_gguf.py writes itself; others are made from an f16 file by llama-quantize.
GGUF_DIRECT = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja", "mothertongue_template.json", "generation_config.json")


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
    return out or [[{"role": "user", "content": "Hallo! Wie geht es dir?"}]]


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

    from mothertongue.chat import load_model
    from mothertongue.models import stop_token_ids

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
    src_info = run_dir / "train" / "model" / "mothertongue_template.json"
    if src_info.exists():
        shutil.copy(src_info, tmp / "mothertongue_template.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)

    back_tok = AutoTokenizer.from_pretrained(out_dir)
    back = AutoModelForCausalLM.from_pretrained(out_dir, use_safetensors=True).eval()
    back_stop = stop_token_ids(back_tok, info.get("end_of_turn"))
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
    prompts = prompts or [[{"role": "user", "content": "Hallo! Wie geht es dir?"}]]
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
def find_llama_cpp(llama_cpp: str | Path | None) -> Path:
    """The llama.cpp checkout holding convert_hf_to_gguf.py (argument, then $LLAMA_CPP_DIR)."""
    cand = llama_cpp or os.environ.get("LLAMA_CPP_DIR")
    if cand and (Path(cand) / "convert_hf_to_gguf.py").exists():
        return Path(cand)
    where = f"{cand} has no convert_hf_to_gguf.py" if cand else "no llama.cpp checkout given"
    raise StageError(
        f"GGUF export needs llama.cpp's convert_hf_to_gguf.py ({where}); pass --llama-cpp DIR "
        "(a llama.cpp checkout, or `pip download --no-deps --no-build-isolation llama-cpp-python` "
        "and use llama_cpp_python-*/vendor/llama.cpp from the unpacked tarball)")


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


def to_gguf(merged_dir: Path, out_file: Path, qtype: str = "q8_0", llama_cpp: str | Path | None = None,
            prompts: list[list[dict]] | None = None, max_new_tokens: int = 32) -> dict:
    """Convert with llama.cpp's converter (quantize when asked), then read the file back: by
    generating with llama-cpp-python when installed, else by checking its tensors and template."""
    import gguf

    checkout = find_llama_cpp(llama_cpp)
    merged_dir, out_file = Path(merged_dir), Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    direct = qtype.lower() in GGUF_DIRECT
    first = out_file if direct else out_file.with_suffix(".f16.gguf")
    env = {**os.environ, "PYTHONPATH": str(checkout / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(checkout / "convert_hf_to_gguf.py"), str(merged_dir), "--outfile", str(first),
         "--outtype", qtype.lower() if direct else "f16"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        hint = ("; llama.cpp converts the tokenizers of published models only, not a locally trained one "
                "such as base_model: tiny") if "pre-tokenizer was not recognized" in last else ""
        raise StageError(f"convert_hf_to_gguf.py failed on {merged_dir}: {last}{hint}")
    if not direct:
        _quantize(first, out_file, qtype, checkout)
        first.unlink()

    reader = gguf.GGUFReader(str(out_file))
    fields = reader.fields
    has_template = "tokenizer.chat_template" in fields
    report = {"format": "gguf", "path": str(out_file), "type": qtype, "tensors": len(reader.tensors),
              "bytes": out_file.stat().st_size, "chat_template": has_template}
    if not reader.tensors or not has_template:
        raise StageError(f"{out_file}: GGUF without tensors or without the chat template")
    try:
        from llama_cpp import Llama
    except ImportError:
        report["generated"] = None
        report["note"] = "read back with gguf.GGUFReader; install llama-cpp-python to verify by generating"
        return report
    llm = Llama(model_path=str(out_file), n_ctx=512, verbose=False)
    prompts = prompts or [[{"role": "user", "content": "Hallo! Wie geht es dir?"}]]
    report["prompts"] = [p[-1]["content"] for p in prompts]
    report["generated"] = [llm.create_chat_completion(messages=p, max_tokens=max_new_tokens, temperature=0.0)
                           ["choices"][0]["message"]["content"] for p in prompts]
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
    if not (run_dir / "train" / "model_info.json").exists():
        raise StageError(f"{run_dir}: no finished train stage (train/model_info.json); train first")
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    if "gguf" in formats:
        find_llama_cpp(llama_cpp)  # fail before the slow steps, not after
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
        rep = to_gguf(merged_dir, out / f"model-{gguf_type}.gguf", gguf_type, llama_cpp, prompts=prompts)
        reports.append(rep)
        log(f"[export] gguf -> {rep['path']} ({rep['bytes']} bytes, {rep['tensors']} tensors)")
    result = {"run_dir": str(run_dir), "exports": reports}
    atomic_write_json(out / "report.json", result)
    return result
