"""Fidelity preference pairs: the translated answer is chosen over the original-language one."""

from __future__ import annotations

import json

import pytest

from mothertongue.config import Recipe
from mothertongue.conversation import Conversation, Message, write_jsonl


def translated(cid: str, prompt: str, answer: str, src_prompt: str, src_answer: str, lang: str = "en") -> Conversation:
    """A conversation as the translate stage writes it: target text, originals in meta."""
    msgs = [Message("user", prompt), Message("assistant", answer)]
    meta = {"source_messages": [{"role": "user", "content": src_prompt}, {"role": "assistant", "content": src_answer}],
            "source_lang": lang}
    return Conversation(cid, msgs, "de", "t", [], meta)


def test_pairs_from_translated_conversations_and_counted_outcomes():
    from mothertongue.fidelity_pairs import fidelity_pairs

    convs = [
        translated("a", "Nenne drei Farben.", "Rot, Grün und Blau.", "Name three colours.", "Red, green and blue."),
        translated("b", "Sag hallo.", "Hallo!", "Sag hallo.", "Hallo!", lang="de"),  # was German already
        Conversation("c", [Message("user", "Wie geht es?"), Message("assistant", "Gut.")], "de"),  # not translated
    ]
    pairs, counts = fidelity_pairs(convs, "de")
    assert [(p.id, p.chosen, p.rejected) for p in pairs] == [("a#fidelity", "Rot, Grün und Blau.", "Red, green and blue.")]
    assert [m.content for m in pairs[0].prompt] == ["Nenne drei Farben."]
    assert counts == {"made": 1, "original already in the target language": 1, "not translated": 1}
    assert sum(counts.values()) == len(convs)


def test_build_writes_them_in_the_conversation_split(tmp_path):
    from mothertongue.build import write_preferences

    data, out = tmp_path / "translate", tmp_path / "build"
    data.mkdir()
    out.mkdir()
    write_jsonl(data / "train.jsonl", [translated("a", "Nenne drei Tiere.", "Hund, Katze und Pferd.", "Name three animals.", "Dog, cat and horse.")])
    write_jsonl(data / "test.jsonl", [translated("z", "Sag tschüss.", "Tschüss!", "Say bye.", "Bye!")])
    recipe = Recipe(run_dir=str(tmp_path / "run"), build={"fidelity_pairs": True, "system_prompt": None})
    counts, fidelity = write_preferences(recipe, data, out)
    assert counts == {"train": 1, "dev": 0, "test": 1} and fidelity == {"made": 2}
    row = json.loads((out / "preference.jsonl").read_text(encoding="utf-8"))
    assert row["prompt"] == [{"role": "user", "content": "Nenne drei Tiere."}]
    assert (row["chosen"], row["rejected"]) == ("Hund, Katze und Pferd.", "Dog, cat and horse.")
    off = write_preferences(Recipe(run_dir=str(tmp_path / "run")), data, out)
    assert off == ({"train": 0, "dev": 0, "test": 0}, {})


def test_base_reply_pairs_pair_only_wrong_language_replies_and_count_every_conversation():
    from mothertongue.fidelity_pairs import base_reply_pairs

    convs = [Conversation(str(i), [Message("user", f"Frage {i}"), Message("assistant", f"Antwort {i}")], "de")
             for i in range(5)]
    convs.append(Conversation("fr", [Message("user", "Question"), Message("assistant", "Réponse")], "fr"))
    convs.append(Conversation("solo", [Message("assistant", "Hallo")], "de"))
    replies = {"Frage 0": "english", "Frage 1": "deutsch", "Frage 2": "?", "Frage 3": "english"}
    asked = []

    def answer(prompts):
        asked.extend(p[-1].content for p in prompts)
        return [replies[p[-1].content] for p in prompts]

    detect = {"english": "en", "deutsch": "de", "?": None}.get
    pairs, counts = base_reply_pairs(convs, "de", answer, detect, max_prompts=4)
    assert asked == ["Frage 0", "Frage 1", "Frage 2", "Frage 3"]  # one call, at most max_prompts
    assert [(p.id, p.chosen, p.rejected) for p in pairs] == [("0#fidelity-base", "Antwort 0", "english"),
                                                             ("3#fidelity-base", "Antwort 3", "english")]
    assert pairs[0].meta == {"kind": "fidelity", "rejected_from": "base_model", "rejected_lang": "en"}
    assert counts == {"made (base model's reply)": 2, "base reply already in the target language": 1,
                      "base reply: language undetermined": 1, "not asked (build.fidelity_max_prompts)": 1,
                      "conversation not in the target language": 1, "no user turn before the last answer": 1}
    assert sum(counts.values()) == len(convs)


ANIMALS = ["Hund", "Katze", "Pferd", "Vogel", "Fisch", "Maus", "Kuh", "Ziege", "Ente", "Schaf", "Hase", "Igel",
           "Fuchs", "Wolf", "Bär", "Esel"]
EN = {"Hund": "dog", "Katze": "cat", "Pferd": "horse", "Vogel": "bird", "Fisch": "fish", "Maus": "mouse", "Kuh": "cow",
      "Ziege": "goat", "Ente": "duck", "Schaf": "sheep", "Hase": "hare", "Igel": "hedgehog", "Fuchs": "fox",
      "Wolf": "wolf", "Bär": "bear", "Esel": "donkey"}
ASK = ("Erzähle mir bitte etwas über das Tier {}.", "Was weißt du über das Tier {}?")


# One answer per language, whatever the animal: what is learned is the language, not the animal
# (a model this small is slow to learn to copy a word from the prompt).
def _answer_de(a: str) -> str:
    return "Dieses Tier ist freundlich und lebt sehr gern draußen im grünen Garten."


def _answer_en(a: str) -> str:
    return "This animal is friendly and really likes to live outside in the green garden."


TINY = ["tiny_model.hidden_size=64", "tiny_model.intermediate_size=128", "tiny_model.num_hidden_layers=2",
        "tiny_model.num_attention_heads=4", "tiny_model.vocab_size=400", "build.system_prompt=none",
        "translate.enabled=true", "build.template=chatml"]
TRAIN_ANIMALS, HELD_OUT = ANIMALS[:12], ANIMALS[12:]


def _upstream(run_dir, convs):
    """ingest and translate folders holding these conversations, as if those stages had run."""
    from mothertongue.runs import atomic_write_json

    for stage in ("ingest", "translate"):
        d = run_dir / stage
        d.mkdir(parents=True)
        write_jsonl(d / "train.jsonl", convs)
        for name in ("dev.jsonl", "test.jsonl", "pairs.jsonl"):
            write_jsonl(d / name, [])
        atomic_write_json(d / "manifest.json", {"stage": stage, "fingerprint": "test"})


def _recipe(root, name, *overrides):
    from mothertongue.config import load_recipe

    p = root / f"{name}.yaml"
    p.write_text(f"run_dir: {root / name}\nlanguage: de\n", encoding="utf-8")
    return load_recipe(p, [*TINY, *overrides])


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory):
    """A tiny model that answers one way of asking in German and the other in English (its SFT
    data kept English answers there, as a half-translated set would)."""
    from mothertongue.runs import run_stage

    root = tmp_path_factory.mktemp("fidelity")
    convs = [Conversation(f"{k}-{a}", [Message("user", ASK[k].format(a)),
                                      Message("assistant", _answer_de(a) if k == 0 else _answer_en(a))], "de")
             for a in TRAIN_ANIMALS for k in (0, 1)]
    _upstream(root / "sft", convs)
    r = _recipe(root, "sft", "train.adapter=full", "train.epochs=25", "train.learning_rate=0.003", "train.batch_size=8")
    for stage in ("build", "train"):
        run_stage(r, stage, log=lambda m: None)
    return root / "sft"


@pytest.mark.slow
@pytest.mark.parametrize("rejected", ["original", "base_model"])
def test_dpo_on_fidelity_pairs_raises_the_line_pass_rate(sft_model, tmp_path, rejected):
    """The SFT model is tuned with DPO on the fidelity pairs build makes; on held-out animals its
    LCB-style line pass rate (German expected) rises from about one half to (nearly) all.
    `original`: the pairs come from translated data (rejected: the English original).
    `base_model`: from German data that was never translated (rejected: the model's own English
    replies, found by the language detector), so only the way of asking it gets wrong is paired.

    Margin: before DPO every reply to the second way of asking is English, so the rate is at most
    ~0.5 (+ chance); the test asks for a rise of at least 0.3 and an end of at least 0.9."""
    from mothertongue.generation import generate
    from mothertongue.metrics.lcb import line_level
    from mothertongue.models import load_model
    from mothertongue.runs import run_stage
    from mothertongue.text.langid import LangId

    detect = LangId(["de", "en"]).detect
    if rejected == "original":
        convs = [translated(f"{k}-{a}", ASK[k].format(a), _answer_de(a), ASK[k].format(EN[a]), _answer_en(a))
                 for a in TRAIN_ANIMALS for k in (0, 1)]
    else:
        convs = [Conversation(f"{k}-{a}", [Message("user", ASK[k].format(a)), Message("assistant", _answer_de(a))], "de")
                 for a in TRAIN_ANIMALS for k in (0, 1)]
    _upstream(tmp_path / "dpo", convs)
    r_dpo = _recipe(tmp_path, "dpo", f"base_model={sft_model / 'train' / 'model'}", f"build.fidelity_pairs={rejected}",
                    "build.fidelity_max_new_tokens=24", "train.method=dpo", "train.adapter=full",
                    "train.learning_rate=0.001", "train.epochs=6", "train.batch_size=8", "train.beta=0.5")
    run_stage(r_dpo, "build", log=lambda m: None)
    made = json.loads((tmp_path / "dpo" / "build" / "report.json").read_text())["fidelity_pairs"]
    assert sum(made.values()) == len(convs), made
    pairs = [json.loads(line) for line in (tmp_path / "dpo" / "build" / "preference.jsonl").read_text().splitlines()]
    if rejected == "original":
        assert made["made"] == len(convs)
    else:  # the second way of asking, answered in English by the model itself
        assert made["made (base model's reply)"] >= len(TRAIN_ANIMALS) - 2, made
        assert made.get("base reply already in the target language", 0) >= len(TRAIN_ANIMALS) - 2, made
        assert all(p["prompt"][-1]["content"].startswith("Was weißt") for p in pairs), pairs
        assert all(detect(p["rejected"])[0] == "en" for p in pairs), pairs
    run_stage(r_dpo, "train", log=lambda m: None)

    prompts = [[{"role": "user", "content": ASK[k].format(a)}] for a in HELD_OUT for k in (0, 1)]

    def pass_rate(run):
        model, tok, stop, _ = load_model(run, "tuned")
        replies = [r.text for r in generate(model, tok, prompts, stop, max_new_tokens=24)]
        scores = line_level(replies, "de", lambda t: detect(t)[0])
        assert scores["judgeable"] == len(prompts), replies
        return scores["line_pass_rate"], replies

    before, replies_before = pass_rate(sft_model)
    after, replies_after = pass_rate(tmp_path / "dpo")
    assert before <= 0.75, replies_before
    assert after >= 0.9 and after >= before + 0.3, (before, after, replies_after)


def test_base_model_prompt_cap_holds_over_all_splits(tmp_path):
    """build.fidelity_max_prompts caps the base model's replies over train, dev and test together."""
    from mothertongue.build import prepare_tokenizer, write_preferences

    data, out = tmp_path / "translate", tmp_path / "build"
    data.mkdir()
    out.mkdir()
    convs = {s: [Conversation(f"{s}{i}", [Message("user", f"Frage {i}?"), Message("assistant", f"Antwort {i}.")], "de")
                 for i in range(n)] for s, n in (("train", 3), ("test", 2))}
    for split, cs in convs.items():
        write_jsonl(data / f"{split}.jsonl", cs)
    recipe = Recipe(run_dir=str(tmp_path / "run"), tiny_model={"hidden_size": 32, "intermediate_size": 64,
                    "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 300},
                    build={"fidelity_pairs": "base_model", "fidelity_max_prompts": 4, "fidelity_max_new_tokens": 4,
                           "template": "chatml"})
    tok, tmpl = prepare_tokenizer(recipe, [[{"role": "user", "content": f"Frage {i}? Antwort {i}."}] for i in range(5)])
    _, fidelity = write_preferences(recipe, data, out, tok, tmpl.end_of_turn)
    assert sum(fidelity.values()) == 5 and fidelity["not asked (build.fidelity_max_prompts)"] == 1, fidelity
