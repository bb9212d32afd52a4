"""Export: merged safetensors (same greedy output as adapter-on-base), CTranslate2, GGUF, vLLM path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, SHARED_MODELS, run_recipe


@pytest.fixture(scope="module")
def lora_run(quickstart_run, tmp_path_factory):
    """A LoRA run on top of the quickstart's tuned model (a local-path base that already answers
    German), so adapter-on-base replies are real sentences, not an empty end-of-turn."""
    root = tmp_path_factory.mktemp("lora")
    base = root / "base"
    shutil.copytree(quickstart_run / "train" / "model", base)
    run_dir = root / "run"
    run_recipe(REPO / "recipes" / "quickstart.yaml", [
        f"run_dir={run_dir}", f"base_model={base}", "train.adapter=lora", "train.epochs=2",
        "train.learning_rate=0.01", "evaluate.enabled=false"])
    return run_dir


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


@pytest.mark.gpu
def test_vllm_serves_merged_model(exported):
    vllm = pytest.importorskip("vllm")
    out, result = exported
    llm = vllm.LLM(model=str(out / "merged"), dtype="float32", max_model_len=256)
    got = llm.chat([{"role": "user", "content": result["exports"][0]["prompts"][0]}],
                   vllm.SamplingParams(temperature=0, max_tokens=32))
    assert got[0].outputs[0].text.strip() == result["exports"][0]["tuned"][0]


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


def test_ctranslate2_int8(exported, tmp_path):
    from mothertongue.export import to_ctranslate2

    out, result = exported
    prompts = [[{"role": "user", "content": p}] for p in result["exports"][0]["prompts"]]
    rep = to_ctranslate2(out / "merged", tmp_path / "ct2-int8", "int8", prompts=prompts)
    assert len(rep["export"]) == len(prompts) and all(rep["export"])
    # int8 weights may flip a late token on a tiny model; most replies stay identical.
    assert sum(a == b for a, b in zip(rep["export"], rep["tuned"], strict=True)) >= len(prompts) - 1


def test_gguf_without_converter_is_a_clear_error(quickstart_run, tmp_path, monkeypatch):
    from mothertongue.export import export
    from mothertongue.runs import StageError

    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    with pytest.raises(StageError, match="--llama-cpp DIR"):
        export(quickstart_run, tmp_path, ("gguf",), llama_cpp=None, log=lambda m: None)
    with pytest.raises(StageError, match="unknown export format 'onnx'"):
        export(quickstart_run, tmp_path, ("onnx",), log=lambda m: None)
    assert not (tmp_path / "merged").exists(), "failed before any slow step"


LLAMA_CPP = os.environ.get("LLAMA_CPP_DIR")


@pytest.mark.real_models
@pytest.mark.skipif(not (LLAMA_CPP and Path(LLAMA_CPP, "convert_hf_to_gguf.py").exists()),
                    reason="set LLAMA_CPP_DIR to a llama.cpp checkout (see export.py) to test GGUF conversion")
@pytest.mark.parametrize("qtype", ["q8_0", "f16"])
def test_gguf_export_of_a_real_llama(tmp_path, qtype):
    import gguf
    from transformers import AutoTokenizer

    from mothertongue.export import to_gguf

    src = SHARED_MODELS / "stories260K"
    rep = to_gguf(src, tmp_path / f"m-{qtype}.gguf", qtype, LLAMA_CPP,
                  prompts=[[{"role": "user", "content": "Once upon a time"}]], max_new_tokens=8)
    reader = gguf.GGUFReader(rep["path"])
    tmpl = reader.fields["tokenizer.chat_template"]
    assert bytes(tmpl.parts[tmpl.data[0]]).decode() == AutoTokenizer.from_pretrained(src).chat_template
    assert rep["tensors"] == len(reader.tensors) > 0
    kinds = {t.tensor_type.name for t in reader.tensors}
    assert ("Q8_0" if qtype == "q8_0" else "F16") in kinds
    if rep["generated"] is not None:  # llama-cpp-python installed: it loaded and generated
        assert all(isinstance(g, str) for g in rep["generated"])


@pytest.mark.skipif(not (LLAMA_CPP and Path(LLAMA_CPP, "convert_hf_to_gguf.py").exists()),
                    reason="set LLAMA_CPP_DIR to a llama.cpp checkout (see export.py) to test GGUF conversion")
def test_gguf_refuses_the_tiny_tokenizer_in_one_line(exported, tmp_path):
    from mothertongue.export import to_gguf
    from mothertongue.runs import StageError

    out, _ = exported
    with pytest.raises(StageError, match="pre-tokenizer was not recognized.*published models") as e:
        to_gguf(out / "merged", tmp_path / "tiny.gguf", "q8_0", LLAMA_CPP)
    assert "\n" not in str(e.value)
