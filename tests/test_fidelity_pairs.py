"""Fidelity preference pairs: the translated answer is chosen over the original-language one."""

from __future__ import annotations

import json

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
