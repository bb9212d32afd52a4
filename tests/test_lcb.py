"""LCB-style line-level fidelity on hand-written replies with known answers."""

from __future__ import annotations

import random
import string

import pytest

from mothertongue.metrics.lcb import judgeable_lines, line_level

DE = [
    "Hallo, wie geht es dir heute?",
    "Das ist ein ganz normaler deutscher Satz.",
    "Morgen fahren wir mit dem Zug nach Hamburg.",
    "Ich lese gern Bücher über die Geschichte Europas.",
]
EN = [
    "I am fine, thank you very much for asking.",
    "We will take the train to London tomorrow morning.",
    "She likes reading books about the history of Europe.",
]


@pytest.fixture(scope="module")
def detect():
    from mothertongue.text.langid import LangId

    lid = LangId(["de", "en"])
    return lambda text: lid.detect(text)[0]


def reference(replies, expected, detect):
    """The benchmark's rules written out once more, independently: cut at '\\nQ:', drop
    punctuation, keep lines of 5+ words, pass = every kept line in the expected language."""
    judged = []
    for r in replies:
        r = r.split("\nQ:")[0].strip()
        r = "".join(ch for ch in r if ch not in string.punctuation).replace("\u2014", " ")
        kept = [line for line in r.split("\n") if len(line.split()) >= 5]
        if kept:
            judged.append([detect(x) == expected for x in kept])
    return {
        "judgeable": len(judged),
        "line_pass_rate": sum(all(j) for j in judged) / len(judged),
        "line_accuracy": sum(sum(j) / len(j) for j in judged) / len(judged),
    }


def test_known_answers(detect):
    replies = [
        DE[0] + "\n" + EN[0],  # drifts into English on its second line: fails, half right
        DE[1] + "\nOk, danke.",  # the short line is ignored: passes
        "Ja.\nGut!",  # nothing of 5+ words: not judgeable
        DE[2] + "\nQ: " + EN[1],  # the next turn is cut off: passes
    ]
    got = line_level(replies, "de", detect)
    assert got["replies"] == 4 and got["judgeable"] == 3
    assert got["line_pass_rate"] == pytest.approx(2 / 3)
    assert got["line_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert "word_pass_rate" not in got, "word level is defined only for non-Latin scripts"
    assert judgeable_lines("Hallo!!! Wie — geht's, dir; heute?") == ["Hallo Wie   gehts dir heute"]


def test_matches_a_reimplementation_on_random_replies(detect):
    rng = random.Random(0)
    replies = ["\n".join(rng.choice(DE + EN + ["Ja.", "Gut so!"]) for _ in range(rng.randint(1, 4))) for _ in range(40)]
    ours, ref = line_level(replies, "de", detect), reference(replies, "de", detect)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k])


def test_word_level_for_non_latin_scripts():
    ja = ["これは 日本語 の 文 です", "これは test の 文 です", "これは English words の 文 です", "短い"]
    got = line_level(ja, "ja", lambda text: "ja")
    assert got["judgeable"] == 3 and got["line_pass_rate"] == 1.0
    assert got["word_pass_rate"] == pytest.approx(1 / 3), "'test' and 'words' are English words"


@pytest.mark.parametrize("lang,name", [("de", "German"), ("fr", "French"), ("es", "Spanish"), ("it", "Italian"), ("pt", "Portuguese"), ("ja", "Japanese")])
def test_cross_lingual_suite_asks_for_the_run_language(lang, name, tmp_path):
    from mothertongue.metrics.suites import load_suite

    _, items = load_suite("xling", tmp_path, language=lang)
    assert len(items) == 36 and all(it.expect == "target" and it.lang == "en" for it in items)
    texts = [it.messages[-1]["content"] for it in items]
    assert all(name in t and "{language}" not in t for t in texts)
    where = {it.meta["location"] for it in items}
    assert where == {"start", "middle", "end"}
    assert sum(t.startswith(("Reply", "Answer", "Write in", "Respond", "Use")) for t in texts) >= 12


def test_reads_the_benchmarks_own_csv(tmp_path):
    from mothertongue.metrics.suites import load_suite

    f = tmp_path / "de.csv"
    f.write_text(
        "prompt,location,phrasing,language,source\n"
        '"Reply in German. Explain a misconception.\nTopic: AI",Start,reply in {language_requested},de,okapi\n'
        "Explain in German how the Gini index is calculated.,Middle,in {language_requested},de,okapi\n",
        encoding="utf-8",
    )
    name, items = load_suite(str(f), tmp_path)
    assert name == "prompts-de" and [it.expect for it in items] == ["de", "de"]
    assert items[0].messages[0]["content"] == "Reply in German. Explain a misconception.\nTopic: AI"
    assert items[1].meta == {"source": "okapi", "location": "Middle", "phrasing": "in {language_requested}"}
    bad = tmp_path / "bad.csv"
    bad.write_text("text,source\nhello,x\n", encoding="utf-8")
    from mothertongue.conversation import DataError

    with pytest.raises(DataError, match=r"bad.csv:1: missing column\(s\) language, prompt"):
        load_suite(str(bad), tmp_path)


def test_scorecard_sets_carry_lcb_scores_and_item_expectations(tmp_path):
    from mothertongue.config import Recipe
    from mothertongue.evaluate import expected_langs, score_set
    from mothertongue.generation import Reply
    from mothertongue.metrics.fidelity import FidelityJudge
    from mothertongue.metrics.suites import Item

    recipe = Recipe(language="de", run_dir=str(tmp_path))
    lid = FidelityJudge("de", ["en"])
    items = [
        Item("a", [{"role": "user", "content": "Explain why the sky is blue. Answer in German."}], lang="en", expect="target"),
        Item("b", [{"role": "user", "content": "Why is the sky blue? Please explain it to me."}], lang="en"),
    ]
    assert expected_langs("prompts-xling", items, recipe, lid) == ["de", "en"]
    texts = [DE[0] + "\n" + EN[0], EN[1] + "\n" + EN[2]]
    replies = [Reply(t, True, 20) for t in texts]
    scores, _ = score_set("prompts-xling", items, replies, ["de", "en"], lid)
    assert scores["line_pass_rate"] == 0.5 and scores["line_accuracy"] == 0.75 and scores["line_judgeable"] == 2
