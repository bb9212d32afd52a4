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


@pytest.mark.slow
def test_dpo_on_fidelity_pairs_raises_the_line_pass_rate(tmp_path):
    """A tiny model that answers one way of asking in German and the other in English (its SFT data
    kept English answers there, as a half-translated set would) is tuned with DPO on the fidelity
    pairs that build makes from the translated data; on held-out animals its LCB-style line pass
    rate (German expected) rises from about one half to (nearly) all.

    Margin: before DPO every reply to the second way of asking is English, so the rate is at most
    ~0.5 (+ chance); the test asks for a rise of at least 0.3 and an end of at least 0.9."""
    from mothertongue.config import load_recipe
    from mothertongue.generation import generate
    from mothertongue.metrics.lcb import line_level
    from mothertongue.models import load_model
    from mothertongue.runs import atomic_write_json, run_stage
    from mothertongue.text.langid import LangId

    train_animals, held_out = ANIMALS[:12], ANIMALS[12:]
    tiny = ["tiny_model.hidden_size=64", "tiny_model.intermediate_size=128", "tiny_model.num_hidden_layers=2",
            "tiny_model.num_attention_heads=4", "tiny_model.vocab_size=400", "build.system_prompt=none",
            "translate.enabled=true", "build.template=chatml"]

    def upstream(run_dir, convs):
        for stage in ("ingest", "translate"):
            d = run_dir / stage
            d.mkdir(parents=True)
            write_jsonl(d / "train.jsonl", convs)
            for name in ("dev.jsonl", "test.jsonl", "pairs.jsonl"):
                write_jsonl(d / name, [])
            atomic_write_json(d / "manifest.json", {"stage": stage, "fingerprint": "test"})

    def recipe(name, *overrides):
        p = tmp_path / f"{name}.yaml"
        p.write_text(f"run_dir: {tmp_path / name}\nlanguage: de\n", encoding="utf-8")
        return load_recipe(p, [*tiny, *overrides])

    # 1. SFT: the first way of asking answered in German, the second in English (untranslated).
    sft_convs = [Conversation(f"{k}-{a}", [Message("user", ASK[k].format(a)),
                                          Message("assistant", _answer_de(a) if k == 0 else _answer_en(a))], "de")
                 for a in train_animals for k in (0, 1)]
    upstream(tmp_path / "sft", sft_convs)
    r_sft = recipe("sft", "train.adapter=full", "train.epochs=25", "train.learning_rate=0.003", "train.batch_size=8")
    for stage in ("build", "train"):
        run_stage(r_sft, stage, log=lambda m: None)

    # 2. DPO from the SFT model on the fidelity pairs of the fully translated data.
    translated_convs = [translated(f"{k}-{a}", ASK[k].format(a), _answer_de(a), ASK[k].format(EN[a]), _answer_en(a))
                        for a in train_animals for k in (0, 1)]
    upstream(tmp_path / "dpo", translated_convs)
    sft_model = tmp_path / "sft" / "train" / "model"
    r_dpo = recipe("dpo", f"base_model={sft_model}", "build.fidelity_pairs=true", "train.method=dpo",
                   "train.adapter=full", "train.learning_rate=0.001", "train.epochs=6", "train.batch_size=8",
                   "train.beta=0.5")
    run_stage(r_dpo, "build", log=lambda m: None)
    report = json.loads((tmp_path / "dpo" / "build" / "report.json").read_text())
    assert report["fidelity_pairs"]["made"] == len(translated_convs)
    run_stage(r_dpo, "train", log=lambda m: None)

    detect = LangId(["de", "en"]).detect
    prompts = [[{"role": "user", "content": ASK[k].format(a)}] for a in held_out for k in (0, 1)]

    def pass_rate(run):
        model, tok, stop, _ = load_model(tmp_path / run, "tuned")
        replies = [r.text for r in generate(model, tok, prompts, stop, max_new_tokens=24)]
        scores = line_level(replies, "de", lambda t: detect(t)[0])
        assert scores["judgeable"] == len(prompts), replies
        return scores["line_pass_rate"], replies

    before, replies_before = pass_rate("sft")
    after, replies_after = pass_rate("dpo")
    assert before <= 0.75, replies_before
    assert after >= 0.9 and after >= before + 0.3, (before, after, replies_after)
