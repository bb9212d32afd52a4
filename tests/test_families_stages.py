"""Every stage after build, per model family: train (LoRA and full), chat, serve, export.

    pytest -q tests/test_families_stages.py -k qwen

Each family's tiny random-weight model (family_models.py) is trained for a few seconds on one
short German answer, so it learns to say it and then its family's end-of-turn token: train (loss
falls; pad is never EOS or end-of-turn; the saved tokenizer keeps template and special tokens),
chat and the server's stream stop at that token, merged safetensors reload and answer identically,
CTranslate2 converts every architecture it supports and refuses the others in one line, GGUF (f32)
loads back with the same token ids and answers, or is refused in one line that doctor announces.
Every family's base, runs and exports are made once, by two worker processes (family_workshop.py),
and shared by its tests.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from family_models import ANSWER, FAMILIES, one_thread
from family_workshop import Workshop

pytestmark = [pytest.mark.real_models, pytest.mark.slow]
NAMES = list(FAMILIES)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_thread()


@pytest.fixture(scope="module")
def built(request, tmp_path_factory):
    """Every selected family's base, runs, export and GGUF, made by two worker processes (see
    family_workshop.py) while the tests below check what is ready."""
    here = [i for i in request.session.items if i.module is request.module and hasattr(i, "callspec")]
    names = [n for n in NAMES if any(i.callspec.params.get("name") == n for i in here)]
    gguf = {i.callspec.params["name"] for i in here
            if i.originalname == "test_gguf_where_llama_cpp_knows_the_family" and not i.get_closest_marker("skip")}
    shop = Workshop(tmp_path_factory.mktemp("families"), names, gguf)
    yield shop
    shop.close()


# ------------------------------------------------------------------------------------ train
def _train_report(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "model_info.json").read_text())


@pytest.mark.parametrize("adapter", ["lora", "full"])
@pytest.mark.parametrize("name", NAMES)
def test_train_loss_falls_and_tokenizer_survives(built, name, adapter):
    from transformers import AutoTokenizer

    from mothertongue import templates
    from mothertongue.models import stop_token_ids

    run_dir = built.made(name, adapter)
    losses = json.loads((run_dir / "train" / "loss.json").read_text())
    train_losses = [x["loss"] for x in losses if "loss" in x]
    assert train_losses[-1] < train_losses[0], train_losses
    saved = AutoTokenizer.from_pretrained(run_dir / "train" / "model")
    built_tok = AutoTokenizer.from_pretrained(run_dir / "build" / "tokenizer")
    assert saved.chat_template == built_tok.chat_template and saved.chat_template
    eot = templates.end_of_turn_token(saved)
    stops = stop_token_ids(saved, eot)
    assert saved.pad_token_id is not None and saved.pad_token_id not in stops
    assert saved.convert_tokens_to_ids(eot) == built_tok.convert_tokens_to_ids(eot)
    for t in saved.all_special_tokens:
        assert saved.convert_tokens_to_ids(t) == built_tok.convert_tokens_to_ids(t), t


# ------------------------------------------------------------------------------- chat / serve
@pytest.mark.parametrize("name", NAMES)
def test_chat_and_server_stream_stop_at_the_end_of_turn_token(built, name):
    from fastapi.testclient import TestClient

    from mothertongue import templates
    from mothertongue.chat import ChatSession
    from mothertongue.config import ServeConfig
    from mothertongue.serve import build_engine, create_app

    run_dir = built.made(name, "full")
    s = ChatSession(run_dir, max_new_tokens=24)
    eot = templates.end_of_turn_token(s.tokenizer)
    assert s.stop_ids[0] == s.tokenizer.convert_tokens_to_ids(eot)
    rep = s.reply("Wie spät ist es?")
    assert rep.ended and rep.text == ANSWER, rep
    rep2 = s.reply("Und morgen?")  # second turn: history rendered with the template's own glue
    assert rep2.ended, rep2

    engine = build_engine(run_dir, cfg=ServeConfig(max_new_tokens_limit=24))
    with TestClient(create_app(engine)) as client, client.stream("POST", "/v1/chat/completions", json={
            "stream": True, "max_tokens": 24, "messages": [{"role": "user", "content": "Wie spät ist es?"}]}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert text == ANSWER and finish == ["stop"], (text, finish)


# ------------------------------------------------------------------------------------ export
@pytest.mark.parametrize("name", NAMES)
def test_export_merged_and_ctranslate2(built, name, tmp_path):
    from mothertongue.export import to_ctranslate2
    from mothertongue.runs import StageError

    out, result = built.made(name, "export")
    merged = result["exports"][0]
    assert merged["same_greedy_output"] and merged["same_forced_tokens"] and merged["chat_template"]
    if FAMILIES[name].ct2:
        ct2 = result["exports"][1]
        assert ct2["same_forced_tokens"] and ct2["same_greedy_output"], ct2
    else:
        with pytest.raises(StageError, match="CTranslate2 has no converter for") as e:
            to_ctranslate2(out / "merged", tmp_path / "ct2")
        assert "\n" not in str(e.value)


# Phi-4 is a Phi-3 model with RoPE base 250000 and no RoPE scaling; Phi-4-mini keeps LongRoPE but
# rotates only 3/4 of each head (its factors cover those dimensions); GPT-NeoX configs set a base.
@pytest.mark.parametrize("name,rope", [("phi-3.5", {"rope_type": "default", "rope_theta": 250000.0}),
                                       ("phi-3.5", {"partial_rotary_factor": 0.75}),
                                       ("pythia", {"rope_theta": 50000.0})], ids=["phi-4", "phi-4-mini", "pythia"])
def test_ctranslate2_keeps_the_models_rope(built, name, rope, tmp_path):
    """The family's merged model with another RoPE base (Phi-3 also without RoPE scaling) or
    partial rotary dimensions, and sharpened attention, so that positions matter: CTranslate2's
    logits along 160 positions are Transformers' (with base 10000, or every dimension rotated,
    they are off by far more than float error)."""

    import ctranslate2
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from mothertongue.export import to_ctranslate2

    src = built.made(name, "export")[0] / "merged"
    folder = tmp_path / "merged"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    kept = {} if rope.get("rope_type") == "default" else cfg.get("rope_parameters") or {}
    cfg["rope_parameters"] = {**{k: v for k, v in kept.items() if k != "rope_theta"}, **rope}
    if "long_factor" in cfg["rope_parameters"] and "partial_rotary_factor" in rope:
        rotated = int(cfg["hidden_size"] // cfg["num_attention_heads"] * rope["partial_rotary_factor"])
        for k in ("long_factor", "short_factor"):
            cfg["rope_parameters"][k] = cfg["rope_parameters"][k][: rotated // 2]
    cfg.pop("rope_scaling", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "qkv_proj" in n or "query_key_value" in n:
                p.mul_(6)  # peaked attention: which position is which changes the output
    model.save_pretrained(folder, safe_serialization=True)
    to_ctranslate2(folder, tmp_path / "ct2", "float32")
    ids = list(range(200, 360))
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    got = np.asarray(ctranslate2.Generator(str(tmp_path / "ct2"), device="cpu").forward_batch([ids]))[0]
    assert np.abs(ref - got).max() < 2e-3, np.abs(ref - got).max()


@pytest.mark.network
@pytest.mark.parametrize("name", NAMES)
def test_gguf_where_llama_cpp_knows_the_family(built, name):
    """f32 GGUF, loaded back: the probe strings (umlauts, whitespace runs) and prompts tokenize to
    the same ids and the model answers token for token like the merged one; where llama.cpp does
    not know the architecture or pre-tokenizer, a one-line refusal, and doctor says so beforehand."""
    from mothertongue.runs import StageError

    fam = FAMILIES[name]
    verdict = built.made(name, "doctor")  # doctor asks llama.cpp's converter beforehand
    assert (verdict.status == "ok") == (fam.gguf is None), verdict
    if fam.gguf:
        e = built.failed(name, "gguf")
        assert isinstance(e, StageError) and re.search(fam.gguf, str(e)), e
        assert "\n" not in str(e)
        return
    rep = built.made(name, "gguf")
    assert rep["same_token_ids"] and rep["chat_template"] and rep["pre_tokenizer_fallback"] is None
    assert rep["same_greedy_output"] and rep["same_forced_tokens"], rep
