"""Rendering with every shipped template: no prompt token trained, every end of turn trained; tool
calls through the template's own tool support; too-long and empty builds counted or refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from mothertongue import templates
from mothertongue.config import load_recipe
from mothertongue.conversation import DataError
from mothertongue.encoding import IGNORE, encode, generation_prefix_ok
from mothertongue.models import stop_token_ids, train_tiny_tokenizer
from mothertongue.runs import run_stage

CONV = [
    {"role": "system", "content": "Du bist ein hilfreicher Assistent."},
    {"role": "user", "content": "Nenne drei Farben."},
    {"role": "assistant", "content": "Rot, Grün und Blau."},
    {"role": "user", "content": "Und zwei Tiere?"},
    {"role": "assistant", "content": "Hund und Katze."},
]


def _tokenizer(name):
    t = templates.resolve(name, None)
    texts = [m["content"] for m in CONV] * 10
    tok = train_tiny_tokenizer(texts, 400, t.special_tokens)
    templates.install(t, tok)
    return tok, t


def _trained_text(tok, ids, labels):
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE])


@pytest.mark.parametrize("name", templates.names())
def test_mask_trains_answers_and_end_of_turn_only(name):
    tok, t = _tokenizer(name)
    ids, labels, mask = encode(tok, CONV)
    assert len(ids) == len(labels) == len(mask)
    trained = _trained_text(tok, ids, labels)
    assert "Rot, Grün und Blau." in trained and "Hund und Katze." in trained
    for prompt_text in ("Nenne drei Farben", "Und zwei Tiere", "hilfreicher"):
        assert prompt_text not in trained
    eot = stop_token_ids(tok, t.end_of_turn)[0]
    trained_ids = [i for i, lab in zip(ids, labels) if lab != IGNORE]
    assert trained_ids.count(eot) == 2, "each assistant turn must train its end-of-turn token"
    assert generation_prefix_ok(tok, CONV, ids)


def test_loss_on_variants():
    tok, _ = _tokenizer("chatml")
    ids, all_labels, _ = encode(tok, CONV, "all")
    assert all(lab != IGNORE for lab in all_labels)
    _, last, _ = encode(tok, CONV, "last_assistant")
    trained = _trained_text(tok, ids, last)
    assert "Hund und Katze." in trained and "Rot" not in trained


def test_german_template_text():
    tok, _ = _tokenizer("anweisung")
    text = templates.render(tok, CONV[1:3])
    assert text.startswith("<s>" + templates.GERMAN_PREAMBLE)
    assert "### Anweisung:\nNenne drei Farben.\n\n### Antwort:\nRot, Grün und Blau.</s>" in text


def test_no_template_lists_choices(tiny_tokenizer):
    tiny_tokenizer.chat_template = None
    with pytest.raises(DataError, match="has no chat template; set build.template to one of .*chatml"):
        templates.resolve(None, tiny_tokenizer)
    with pytest.raises(DataError, match="did you mean llama3"):
        templates.resolve("llama33", tiny_tokenizer)


def test_mismatched_template_is_detected(tiny_tokenizer):
    # A template whose generation prompt differs from the training text makes models ramble.
    tiny_tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )
    with pytest.raises(templates.TemplateMismatch):
        encode(tiny_tokenizer, CONV[1:3])


def test_user_jinja_file(tmp_path, tiny_tokenizer):
    f = tmp_path / "mine.jinja"
    f.write_text(templates.TEMPLATES["chatml"][0])
    t = templates.resolve("mine.jinja", tiny_tokenizer, tmp_path)
    assert t.end_of_turn == "<|im_end|>"


@pytest.mark.real_models
def test_real_tokenizer_own_template():
    from transformers import AutoTokenizer

    from helpers import SHARED_MODELS as models

    tok = AutoTokenizer.from_pretrained(models / "stories260K")
    t = templates.resolve(None, tok)
    ids, labels, _ = encode(tok, CONV[1:])
    ref = tok.apply_chat_template(CONV[1:], tokenize=False)
    assert ids == tok(ref, add_special_tokens=False)["input_ids"]
    trained = [i for i, lab in zip(ids, labels) if lab != IGNORE]
    assert trained.count(tok.eos_token_id) == 2
    assert t.name == "tokenizer"


# ------------------------------------------------------------------ build on data (issue #14)
FIX = Path(__file__).parent / "fixtures" / "ingest"
SHARED_MODELS = Path(os.environ.get("MT_SHARED_MODELS", Path(__file__).resolve().parents[2] / "shared" / "models"))
QWEN = SHARED_MODELS / "tokenizers" / "qwen2.5-0.5b-instruct"
TINY = ["tiny_model.hidden_size=96", "tiny_model.intermediate_size=256", "tiny_model.num_hidden_layers=2",
        "tiny_model.num_attention_heads=4", "tiny_model.vocab_size=500"]


def _run(tmp_path, *overrides, sources=None):
    p = tmp_path / "r.yaml"
    srcs = sources or [{"path": str(FIX / "sharegpt_tools.jsonl"), "format": "sharegpt"},
                       {"path": str(FIX / "alpaca.json")}]
    p.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "language": "de",
                                 "ingest": {"sources": srcs, "on_error": "skip"}}))
    r = load_recipe(p, list(overrides))
    run_stage(r, "ingest", log=lambda m: None)
    out = run_stage(r, "build", log=lambda m: None).path
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    return out, rows, json.loads((out / "report.json").read_text())


@pytest.mark.real_models
def test_tool_calls_render_with_the_templates_own_tool_support(tmp_path):
    from transformers import AutoTokenizer

    out, rows, rep = _run(tmp_path, f"base_model={QWEN}", "build.max_length=2048")
    (row,) = [r for r in rows if r["id"] == "sharegpt_tools-tool1"]
    assert row["tools"][0]["function"]["name"] == "wetter"
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    text = tok.decode(row["input_ids"])
    assert '<tools>\n{"type": "function", "function": {"name": "wetter"' in text  # the schema, in the prompt
    assert '<tool_call>\n{"name": "wetter", "arguments": {"ort": "Kiel"}}\n</tool_call>' in text
    assert '<|im_start|>user\n<tool_response>\n{"temp": 12' in text  # the result as a tool turn
    trained = tok.decode([i for i, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE])
    assert trained.startswith("<tool_call>") and "In Kiel sind es 12 Grad" in trained and "temp" not in trained
    assert not rep["counts"]


def test_tool_calls_without_template_support_are_refused_and_counted(tmp_path, capsys):
    out, rows, rep = _run(tmp_path, "base_model=tiny", *TINY, "build.template=chatml")
    assert rep["counts"] == {"dropped: uses tools, and the chat template has no tool support": 1}
    assert len(rows) == 4 and all("tools" not in r for r in rows)  # the four alpaca rows
    assert sum("no tool support" in ln for ln in capsys.readouterr().out.splitlines()) == 1


def test_too_long_conversation_is_counted_once(tmp_path):
    from collections import Counter

    from mothertongue.encoding import encode_with_limit

    tok, _ = _tokenizer("chatml")
    r = load_recipe(_write_recipe(tmp_path), ["build.max_length=20"])
    long = [{"role": "user", "content": "Nenne drei Farben. " * 10}, {"role": "assistant", "content": "Rot."}]
    counts: Counter = Counter()
    assert encode_with_limit(tok, long, r.build, counts) == []
    assert counts == {"dropped: a single turn longer than build.max_length": 1}
    counts.clear()
    pieces = encode_with_limit(tok, CONV[1:3] + long + CONV[3:], load_recipe(_write_recipe(tmp_path), [
        "build.max_length=40"]).build, counts)
    assert len(pieces) == 2 and counts == {
        "split at turn boundaries": 1,
        "turns left out of split conversations (a single turn longer than build.max_length)": 1}


def test_zero_examples_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"build: 0 training examples from 1 conversations \(1 x dropped: uses tools"):
        _run(tmp_path, "base_model=tiny", *TINY, "build.template=chatml",
             sources=[{"path": str(FIX / "sharegpt_tools.jsonl"), "format": "sharegpt"}])


@pytest.mark.parametrize("source,why", [
    ("{% for m in messages %}{{ m.content }}{% endfor", "TemplateSyntaxError"),
    ("{% for m in messages %}{{ m.content | shout }}{% endfor %}", "shout"),
    ("{{ raise_exception('only system messages, please') }}", "only system messages, please"),
])
def test_broken_jinja_template_is_one_line(tmp_path, tiny_tokenizer, source, why):
    f = tmp_path / "broken.jinja"
    f.write_text(source)
    t = templates.resolve("broken.jinja", tiny_tokenizer, tmp_path)
    with pytest.raises(DataError, match=rf"^build.template: broken.jinja: the chat template failed: .*{why}"):
        templates.install(t, tiny_tokenizer)


def _write_recipe(tmp_path) -> Path:
    p = tmp_path / "plain.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\n")
    return p
