"""Every model family we claim, with its real tokenizer, chat template and architecture.

    pytest -q tests/test_families*.py                # the whole matrix (~5 min on 2 cores at load 3-4)
    pytest -q tests/test_families.py -k qwen          # one family

Build, per family, with the real tokenizer and chat template: the loss mask is the assistant turns
and their end-of-turn token, decoded back byte for byte; the chat-time prompt is a token prefix of
the training text; where the template puts a system prompt, whether it injects a default one,
whether it knows tools; conversations a template rejects are counted. Train, chat, serve and
export (merged, CTranslate2, GGUF) per family are in test_families_stages.py.
"""

from __future__ import annotations

import pytest

from family_models import FAMILIES, TOKENIZERS, load_tokenizer

pytestmark = pytest.mark.real_models
NAMES = list(FAMILIES)

SYSTEM = "Du bist ein hilfreicher Assistent. Antworte immer auf Deutsch."
# Answers with what templates and tokenizers like to mangle: umlauts, whitespace runs, newlines.
TURNS = [("Hallo, wie geht es?", "Mir geht es gut, danke!  Und dir?"),
         ("Nenne drei Farben.", "Rot, Grün und Blau.\nFertig — mit Öl & Übermut: 3 Äpfel.")]


def _conv(system: bool, turns: int) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM}] if system else []
    for q, a in TURNS[:turns]:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("family-tokenizers")
    cache = {}

    def get(name):
        if name not in cache:
            from mothertongue import templates

            tok = load_tokenizer(name, root / name)
            assert len(tok) > 1000, "a vocabulary-less tokenizer (README: transformers 5 loads those silently)"
            if FAMILIES[name].template:
                templates.install(templates.resolve(FAMILIES[name].template, tok), tok)
            cache[name] = tok
        return cache[name]

    return get


# ------------------------------------------------------------------------------------ build
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("system,turns", [(True, 1), (False, 2), (True, 2)])
def test_mask_is_exactly_the_answers_and_their_end_of_turn(tokenizers, name, system, turns):
    """Through doctor's mask_report, the same code `mothertongue doctor` runs on a user's model."""
    from mothertongue import templates
    from mothertongue.config import BuildConfig
    from mothertongue.doctor import mask_report
    from mothertongue.encoding import PER_TURN, PER_TURN_TOKENS
    from mothertongue.models import stop_token_ids

    tok = tokenizers(name)
    msgs = _conv(system, turns)
    eot_id = stop_token_ids(tok, templates.end_of_turn_token(tok))[0]
    rep = mask_report(tok, msgs, BuildConfig(), eot_id)
    # Mistral v0.3 writes the system prompt into the last user turn only (none when the
    # conversation ends with an answer); the Llama-3 template's "\n\n" + answer tokenizes
    # differently from the prompt alone with this BPE: build makes one example per answer.
    allowed = ({PER_TURN} if (name, system) == ("mistral-v0.3", True) else
               {None, PER_TURN_TOKENS} if name == "llama-3" else {None})
    assert rep.per_turn in allowed, rep.per_turn
    assert len(rep.examples) == (turns if rep.per_turn else 1)
    assert rep.problems == []
    for ex in rep.examples:
        if len(rep.examples) == 1 and name not in ("mistral-v0.3", "llama-3"):
            assert ex.ids == tok(templates.render(tok, ex.messages), add_special_tokens=False)["input_ids"]
        answers = [x["content"] for x in ex.messages if x["role"] == "assistant"]
        if rep.per_turn:
            answers = answers[-1:]
        assert ex.answers == answers
        assert len(ex.trained) == len(answers), (ex.trained, answers)
        for run, answer in zip(ex.trained, answers):
            assert run[-1] == eot_id and eot_id not in run[:-1], "each turn ends with exactly its end-of-turn token"
            assert tok.decode(run[:-1]).strip() == answer  # byte for byte (template glue is whitespace only)
        # The chat-time prompt of every trained turn is the token prefix of the training text.
        assert ex.prefix_ok
        if system:  # our (target-language) system prompt is trained on, where the template puts it
            assert SYSTEM in tok.decode(ex.ids)


EXPECTED_SYSTEM = {"mistral-v0.3": "last user turn", "llama-2": "first user turn"}
DEFAULT_SYSTEM = {"qwen2.5": "You are Qwen", "smollm2": "You are a helpful AI assistant named SmolLM"}
TOOLS = {"qwen2.5", "mistral-v0.3"}


@pytest.mark.parametrize("name", NAMES)
def test_template_behaviour_is_reported(tokenizers, name):
    from mothertongue import templates

    b = templates.describe(tokenizers(name))
    assert b.system == EXPECTED_SYSTEM.get(name, "own turn")
    assert (b.default_system or "").startswith(DEFAULT_SYSTEM.get(name, "")) and bool(b.default_system) == (
        name in DEFAULT_SYSTEM)
    assert b.tools == (name in TOOLS)
    notes = " ".join(b.notes())
    assert ("own system prompt" in notes) == (name in DEFAULT_SYSTEM)


@pytest.mark.parametrize("name", ["llama-2", "mistral-v0.3"])
def test_conversations_a_template_rejects_are_counted_not_fatal(tokenizers, name):
    from collections import Counter

    from mothertongue.build import build_rows
    from mothertongue.config import Recipe
    from mothertongue.encoding import PER_TURN

    tok = tokenizers(name)
    recipe = Recipe(base_model="tiny", language="de")
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    counts: Counter = Counter()
    rows = build_rows(tok, [("ok", _conv(True, 2), None), ("bad", bad, None)], recipe, counts)
    assert {r["id"].split("#")[0] for r in rows} == {"ok"}
    assert [k for k in counts if k.startswith("skipped: the chat template rejects it")], counts
    assert (counts[PER_TURN] == 1) == (name == "mistral-v0.3")


def test_saved_tokenizer_keeps_its_sentencepiece_model(tmp_path):
    """transformers 5 saves tokenizer.json only; llama.cpp's converter needs tokenizer.model for
    a Llama/Mistral vocabulary's scores (without it the GGUF splits "Hallo" as "▁H allo")."""
    from mothertongue.models import save_tokenizer, sentencepiece_matches

    tok = load_tokenizer("mistral-v0.3", tmp_path / "base")
    tok.add_special_tokens({"pad_token": "<|pad|>"})  # what build adds: an added token past the pieces
    save_tokenizer(tok, tmp_path / "build")
    assert (tmp_path / "build" / "tokenizer.model").read_bytes() == (tmp_path / "base" / "tokenizer.model").read_bytes()
    again = load_tokenizer("mistral-v0.3", tmp_path / "build")
    save_tokenizer(again, tmp_path / "train")  # and so on down the run: build -> train -> export
    assert (tmp_path / "train" / "tokenizer.model").exists()
    # Another vocabulary's model file is never copied next to this one.
    assert not sentencepiece_matches(tok, TOKENIZERS / "tinyllama-1.1b-chat-v1.0" / "tokenizer.model")
