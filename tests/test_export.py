"""Export: merged safetensors (same greedy output as adapter-on-base), CTranslate2, GGUF (converter
fetched from PyPI once, file loaded back by Transformers and made to generate), vLLM path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers import SHARED_MODELS


@pytest.fixture(scope="module")
def exported(lora_run, tmp_path_factory):
    from mothertongue.export import export

    out = tmp_path_factory.mktemp("export")
    return out, export(lora_run, out, ("merged", "ct2"), ct2_quantization="float32", log=lambda m: None)


def _logits(model, tokenizer, text):
    import torch

    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.slow
def test_merged_equals_adapter_on_base(lora_run, exported):
    import torch
    from transformers import AutoModelForCausalLM

    from mothertongue.chat import load_model

    out, result = exported
    merged_rep = result["exports"][0]
    assert merged_rep["format"] == "merged" and merged_rep["same_greedy_output"] and merged_rep["same_forced_tokens"]
    assert any(merged_rep["tuned"]), "the probe replies are real text"
    assert merged_rep["export"] == merged_rep["tuned"] and merged_rep["export_ids"] == merged_rep["tuned_ids"]

    # Independently of the report: the adapter changes the base, the merged weights reproduce it.
    tuned, tok, _, _ = load_model(lora_run, "tuned")
    base, _, _, _ = load_model(lora_run, "base")
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    text = tok.apply_chat_template([{"role": "user", "content": "Nenne drei Farben."}], tokenize=False,
                                   add_generation_prompt=True)
    lt, lb, lm = (_logits(m, tok, text) for m in (tuned, base, merged))
    assert (lt - lb).abs().max() > 1e-2, "the adapter is not a no-op"
    assert torch.allclose(lt, lm, atol=1e-4)
    assert not any(k for k in merged.state_dict() if "lora" in k)


@pytest.mark.slow
def test_merged_folder_is_what_vllm_serves(lora_run, exported):
    """`vllm serve DIR` needs config + safetensors + tokenizer with the chat template, and a
    generation config that stops at the end-of-turn token; the prompt it renders must be ours."""
    from transformers import AutoTokenizer

    out, _ = exported
    d = out / "merged"
    assert (d / "config.json").exists() and (d / "model.safetensors").exists()
    assert not (d / "adapter_config.json").exists()
    gen = json.loads((d / "generation_config.json").read_text())
    run_tok = AutoTokenizer.from_pretrained(lora_run / "train" / "model")
    exp_tok = AutoTokenizer.from_pretrained(d)
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert run_tok.eos_token_id in eos
    conv = [{"role": "user", "content": "Nenne drei Farben."}, {"role": "assistant", "content": "Rot."},
            {"role": "user", "content": "Und noch eine?"}]
    render = {t: t.apply_chat_template(conv, tokenize=False, add_generation_prompt=True) for t in (run_tok, exp_tok)}
    assert render[run_tok] == render[exp_tok]


@pytest.mark.slow
@pytest.mark.gpu
def test_vllm_serves_merged_model(exported):
    vllm = pytest.importorskip("vllm")
    out, result = exported
    llm = vllm.LLM(model=str(out / "merged"), dtype="float32", max_model_len=256)
    got = llm.chat([{"role": "user", "content": result["exports"][0]["prompts"][0]}],
                   vllm.SamplingParams(temperature=0, max_tokens=32))
    assert got[0].outputs[0].text.strip() == result["exports"][0]["tuned"][0]


@pytest.mark.slow
def test_ctranslate2_export_generates_the_same(exported):
    import ctranslate2

    out, result = exported
    ct2 = result["exports"][1]
    assert ct2["format"] == "ct2" and Path(ct2["path"], "model.bin").exists()
    assert ct2["same_greedy_output"] and ct2["same_forced_tokens"], (ct2["export"], ct2["tuned"])
    assert any(ct2["export"])
    # The folder stands alone: model and tokenizer load from it and generate.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ct2["path"])
    gen = ctranslate2.Generator(ct2["path"])
    prompt = tok.apply_chat_template([{"role": "user", "content": ct2["prompts"][0]}], tokenize=False,
                                     add_generation_prompt=True)
    res = gen.generate_batch([tok.convert_ids_to_tokens(tok(prompt, add_special_tokens=False)["input_ids"])],
                             max_length=32, sampling_topk=1, include_prompt_in_result=False,
                             end_token=tok.eos_token)
    assert tok.decode(res[0].sequences_ids[0], skip_special_tokens=True).strip() == ct2["tuned"][0]


@pytest.mark.slow
def test_ctranslate2_int8(exported, tmp_path):
    from mothertongue.export import to_ctranslate2

    out, result = exported
    prompts = [[{"role": "user", "content": p}] for p in result["exports"][0]["prompts"]]
    rep = to_ctranslate2(out / "merged", tmp_path / "ct2-int8", "int8", prompts=prompts)
    assert len(rep["export"]) == len(prompts) and all(rep["export"])
    # int8 weights may flip a late token on a tiny model; most replies stay identical.
    assert sum(a == b for a, b in zip(rep["export"], rep["tuned"], strict=True)) >= len(prompts) - 1


@pytest.fixture(scope="session")
def llama_cpp_dir():
    """llama.cpp's converter: $LLAMA_CPP_DIR, else fetched once from the llama-cpp-python source
    package on PyPI into the cache ($MOTHERTONGUE_CACHE or ~/.cache/mothertongue), as export does.
    Offline with nothing cached, the tests that need it skip with pip's reason."""
    from mothertongue.export import find_llama_cpp
    from mothertongue.runs import StageError

    try:
        return find_llama_cpp(None, log=lambda m: None)
    except StageError as e:
        if "could not download" not in str(e):
            raise
        pytest.skip(f"no llama.cpp converter cached and none fetched (offline?): {e}")


def test_gguf_converter_errors_are_one_line(quickstart_run, tmp_path, monkeypatch):
    from mothertongue.export import export
    from mothertongue.runs import StageError

    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    with pytest.raises(StageError, match="has none; pass --llama-cpp DIR") as e:
        export(quickstart_run, tmp_path, ("gguf",), llama_cpp=str(tmp_path / "nowhere"), log=lambda m: None)
    assert "\n" not in str(e.value)
    with pytest.raises(StageError, match="unknown export format 'onnx'"):
        export(quickstart_run, tmp_path, ("onnx",), log=lambda m: None)
    assert not (tmp_path / "merged").exists(), "failed before any slow step"


@pytest.mark.network
def test_failed_converter_download_is_one_line(tmp_path):
    """A download that fails (a version PyPI does not have), through the real pip."""
    from mothertongue.export import fetch_llama_cpp
    from mothertongue.runs import StageError

    with pytest.raises(StageError, match=r"could not download the llama-cpp-python==0\.0\.1 .*--llama-cpp DIR") as e:
        fetch_llama_cpp("0.0.1", cache=tmp_path / "cache", log=lambda m: None)
    assert "\n" not in str(e.value) and not (tmp_path / "cache" / "llama.cpp-0.0.1").exists()


@pytest.mark.slow
@pytest.mark.network
def test_fetched_converter_is_only_the_python_part(llama_cpp_dir):
    from mothertongue.export import LLAMA_CPP_PYTHON_VERSION

    if os.environ.get("LLAMA_CPP_DIR"):
        pytest.skip("LLAMA_CPP_DIR is set: export uses that checkout, nothing is fetched")
    src = json.loads((llama_cpp_dir / "SOURCE.json").read_text())
    assert src["package"] == f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    assert (llama_cpp_dir / "conversion" / "llama.py").exists() and (llama_cpp_dir / "gguf-py" / "gguf").is_dir()
    assert not (llama_cpp_dir / "src").exists() and not list(llama_cpp_dir.rglob("*.cpp"))
    assert src["bytes"] < 10e6 < src["sdist_bytes"], src
    assert not list(llama_cpp_dir.parent.glob("*.tar.gz")), "the tarball is not kept"


@pytest.mark.slow
def test_pre_tokenizer_is_named_only_for_the_gpt2_byte_level_split(exported, tmp_path):
    from mothertongue.export import gguf_pre_tokenizer

    out, _ = exported
    tok = json.loads((out / "merged" / "tokenizer.json").read_text())
    assert gguf_pre_tokenizer(out / "merged") == "gpt-2"  # the tiny tokenizer
    for change in ({"normalizer": {"type": "NFC"}},
                   {"pre_tokenizer": {**tok["pre_tokenizer"], "add_prefix_space": True}},
                   {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}}):
        (tmp_path / "tokenizer.json").write_text(json.dumps({**tok, **change}))
        assert gguf_pre_tokenizer(tmp_path) is None, change


@pytest.fixture(scope="module")
def gguf_exported(lora_run, llama_cpp_dir, tmp_path_factory):
    """`export --format merged,gguf --gguf-type f16` of the tiny LoRA run, converter as export finds it."""
    from mothertongue.export import export

    out = tmp_path_factory.mktemp("gguf")
    logs = []
    result = export(lora_run, out, ("merged", "gguf"), gguf_type="f16", log=logs.append)
    return out, result, logs


@pytest.mark.slow
@pytest.mark.network
def test_gguf_f16_loaded_back_generates_like_the_merged_model(gguf_exported):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.generation import prompt_ids

    out, result, logs = gguf_exported
    merged_rep, rep = result["exports"]
    assert rep["format"] == "gguf" and Path(rep["path"]).name == "model-f16.gguf"
    # The tiny tokenizer is one llama.cpp's hash table does not list: named from tokenizer.json.
    assert rep["pre_tokenizer_fallback"] == "gpt-2" and any("tokenizer.ggml.pre='gpt-2'" in m for m in logs)
    reader = gguf.GGUFReader(rep["path"])
    pre = reader.fields["tokenizer.ggml.pre"]
    assert bytes(pre.parts[pre.data[0]]).decode() == "gpt-2"
    assert "F16" in {t.tensor_type.name for t in reader.tensors}
    # The report: the merged model's greedy replies and forced tokens, exactly.
    assert any(rep["tuned"]) and rep["tuned"] == merged_rep["export"]
    assert rep["export"] == rep["tuned"] and rep["export_ids"] == rep["tuned_ids"], (rep["export"], rep["tuned"])
    assert rep["same_greedy_output"] and rep["same_forced_tokens"] and rep["token_agreement"] == 1.0
    assert json.loads((out / "report.json").read_text())["exports"][1]["export"] == rep["export"]

    # Independently of the report: Transformers rebuilds the same tokenizer from the file ...
    d, name = Path(rep["path"]).parent, Path(rep["path"]).name
    ref_tok = AutoTokenizer.from_pretrained(out / "merged")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    for s in ("Grüße aus München, Öl und Äpfel!", "ÄÖÜ äöü ß", "  zwei  Leerzeichen\n\nund 12345", rep["prompts"][0]):
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert ids == ref_tok(s, add_special_tokens=False)["input_ids"] and tok.decode(ids) == s
    conv = [{"role": "user", "content": rep["prompts"][0]}]
    assert prompt_ids(tok, conv) == prompt_ids(ref_tok, conv)
    # ... and the same greedy continuation from the dequantized weights.
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    ref = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    ids = torch.tensor([prompt_ids(ref_tok, conv)])
    with torch.no_grad():
        a, b = (m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                           min_new_tokens=12, pad_token_id=ref_tok.pad_token_id) for m in (ref, model))
    assert a.tolist() == b.tolist()
    if rep["llama_cpp"] is not None:  # llama-cpp-python installed: llama.cpp itself generated from the file
        assert rep["llama_cpp"]["same_token_ids"] and any(rep["llama_cpp"]["export"]), rep["llama_cpp"]


@pytest.mark.slow
@pytest.mark.network
def test_gguf_q8_0_mostly_agrees(lora_run, gguf_exported, llama_cpp_dir, tmp_path):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.export import probe_prompts, to_gguf

    out, _, _ = gguf_exported
    prompts = probe_prompts(lora_run, 10)  # the 10 held-out prompts: 160 forced tokens to compare
    rep = to_gguf(out / "merged", tmp_path / "m-q8_0.gguf", "q8_0", llama_cpp_dir, prompts=prompts,
                  log=lambda m: None)
    assert "Q8_0" in {t.tensor_type.name for t in gguf.GGUFReader(rep["path"]).tensors}
    assert rep["bytes"] < 0.6 * Path(out / "model-f16.gguf").stat().st_size
    # 8-bit weights may flip a near-tie token; the replies stay real and mostly identical.
    # (The 2-epoch tiny LoRA model itself answers some prompts with an empty reply: the GGUF must
    # not lose the replies the merged model gives, beyond the near-tie flips allowed below.)
    assert len(rep["export"]) == len(rep["tuned"]) == len(prompts) == 10 and any(rep["export"])
    assert sum(1 for t, e in zip(rep["tuned"], rep["export"]) if t and not e) <= 2, rep
    assert rep["prompts_matching"] >= len(prompts) - 2 and rep["token_agreement"] >= 0.9, rep
    # Not vacuous: what Transformers loaded are the 8-bit weights, not the merged model's.
    tok = AutoTokenizer.from_pretrained(out / "merged")
    ids = tok(rep["prompts"][0], return_tensors="pt")["input_ids"]
    q8 = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m-q8_0.gguf", dtype=torch.float32).eval()
    ref = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    with torch.no_grad():
        d = (q8(input_ids=ids).logits - ref(input_ids=ids).logits).abs().max().item()
    assert 0 < d < 1.0, d


@pytest.mark.slow
@pytest.mark.network
def test_gguf_unknown_tokenizer_is_a_one_line_error(gguf_exported, llama_cpp_dir, tmp_path):
    """A BPE tokenizer that is neither published (hash) nor the GPT-2 byte-level split is refused."""
    from mothertongue.export import to_gguf
    from mothertongue.runs import StageError

    out, _, _ = gguf_exported
    src = tmp_path / "merged"
    shutil.copytree(out / "merged", src)
    tok = json.loads((src / "tokenizer.json").read_text())
    (src / "tokenizer.json").write_text(json.dumps({**tok, "normalizer": {"type": "NFC"}}))
    with pytest.raises(StageError, match="pre-tokenizer was not recognized.*GPT-2 byte-level") as e:
        to_gguf(src, tmp_path / "x.gguf", "f16", llama_cpp_dir, log=lambda m: None)
    assert "\n" not in str(e.value) and not (tmp_path / "x.gguf").exists()


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.real_models
@pytest.mark.parametrize("qtype", ["q8_0", "f32"])
def test_gguf_export_of_a_real_llama(llama_cpp_dir, tmp_path, qtype):
    """stories260K: a published Llama with a sentencepiece tokenizer, converted without help."""
    import gguf
    from transformers import AutoTokenizer

    from mothertongue.export import to_gguf

    src = SHARED_MODELS / "stories260K"
    rep = to_gguf(src, tmp_path / f"m-{qtype}.gguf", qtype, llama_cpp_dir,
                  prompts=[[{"role": "user", "content": "Once upon a time"}]], max_new_tokens=8, log=lambda m: None)
    reader = gguf.GGUFReader(rep["path"])
    tmpl = reader.fields["tokenizer.chat_template"]
    assert bytes(tmpl.parts[tmpl.data[0]]).decode() == AutoTokenizer.from_pretrained(src).chat_template
    assert rep["tensors"] == len(reader.tensors) > 0 and rep["pre_tokenizer_fallback"] is None
    kinds = {t.tensor_type.name for t in reader.tensors}
    assert ("Q8_0" if qtype == "q8_0" else "F32") in kinds
    assert all(rep["export"]) and rep["token_agreement"] >= 0.9
    if qtype == "f32":
        assert rep["export"] == rep["tuned"] and rep["export_ids"] == rep["tuned_ids"]
