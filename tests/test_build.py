"""Rendering with every shipped template: no prompt token trained, every end of turn trained."""

from __future__ import annotations

import pytest

from mothertongue import templates
from mothertongue.build import IGNORE, encode, generation_prefix_ok
from mothertongue.conversation import DataError
from mothertongue.models import stop_token_ids, train_tiny_tokenizer

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
