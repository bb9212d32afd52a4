"""Language fidelity on texts written for this test, each labelled by hand.

    python -m pytest -q tests/test_fidelity.py
"""

from __future__ import annotations

import pytest

from mothertongue.metrics.fidelity import FidelityJudge, fidelity_scores, strip_non_prose

# (text, reply language, per-sentence languages in order); None: too short to judge.
LABELLED = [
    ("Die Hauptstadt von Frankreich ist Paris. Dort steht der Eiffelturm.", "de", ["de", "de"]),
    ("Ich kann abends schlecht einschlafen, deshalb lese ich vor dem Schlafen ein Buch.", "de", ["de"]),
    ("The capital of France is Paris. The Eiffel Tower stands there.", "en", ["en", "en"]),
    ("Please remember to water the plants while I am away on holiday.", "en", ["en"]),
    # Drifts into English halfway: mostly German overall, but one sentence is English.
    ("Gerne helfe ich dir bei deiner Bewerbung und dem Anschreiben. Zuerst solltest du die Stellenanzeige genau lesen. "
     "After that, you should write a short and friendly cover letter.", "de", ["de", "de", "en"]),
    ("Das ist eine gute Frage, über die viele Menschen nachdenken. However, the answer depends on many different factors.",
     None, ["de", "en"]),
    # Code, URLs and quoted source text are not prose: only the German around them is judged.
    ("So drehst du eine Liste in Python um:\n```python\nitems = [1, 2, 3]\nitems.reverse()\nprint(items)\n```\n"
     "Die Methode verändert die Liste direkt.", "de", ["de", "de"]),
    ("Mehr dazu findest du unter https://docs.python.org/3/tutorial/datastructures.html in der offiziellen Dokumentation.",
     "de", ["de"]),
    ("Der Satz „The early bird catches the worm“ bedeutet auf Deutsch: Der frühe Vogel fängt den Wurm.", "de", ["de"]),
    ("Ja.", None, []),
    ("```bash\ngit commit -m 'fix the parser and the tests'\n```", None, []),
    ("42 + 17 = 59", None, []),
]


@pytest.fixture(scope="module")
def lid() -> FidelityJudge:
    return FidelityJudge("de", ["en", "fr", "es", "it", "nl"], min_letters=10)


@pytest.mark.parametrize("text,lang,sentences", [x for x in LABELLED if x[1] is not None or not x[2]])
def test_reply_and_sentence_languages_are_as_labelled(lid, text, lang, sentences):
    j = lid.judge(text)
    assert j.lang == lang
    assert j.sentences == sentences


def test_mixed_reply_sentences(lid):
    # Half German, half English: whatever the reply-level vote, the sentences show the drift.
    text, _, sentences = LABELLED[5]
    j = lid.judge(text)
    assert j.sentences == sentences
    assert j.lang in ("de", "en")


def test_stripping_removes_code_urls_and_quotes():
    s = strip_non_prose("Siehe `x = 1` und https://example.org/a?b=c oder „quoted words here“.\n> zitiert\nEnde")
    assert "x = 1" not in s and "example.org" not in s and "quoted" not in s and "zitiert" not in s
    assert s.startswith("Siehe") and s.endswith("Ende")


def test_scores_count_too_short_apart(lid):
    texts = [t for t, _, _ in LABELLED]
    judgements = [lid.judge(t) for t in texts]
    s = fidelity_scores(judgements, ["de"] * len(texts))
    assert s["too_short"] == 3
    assert s["judged"] == len(texts) - 3
    german = sum(j.lang == "de" for j in judgements)
    assert s["fidelity"] == pytest.approx(german / s["judged"])
    assert s["fidelity"] < 1.0  # the English replies count against German fidelity
    n_sent = sum(len(x[2]) for x in LABELLED)
    n_de = sum(x[2].count("de") for x in LABELLED)
    assert s["sentence_fidelity"] == pytest.approx(n_de / n_sent)
    # Expecting English instead flips the shares for the same judgements.
    s_en = fidelity_scores(judgements, ["en"] * len(texts))
    assert s_en["sentence_fidelity"] == pytest.approx(1 - n_de / n_sent)


def test_unknown_language_code_is_a_clear_error():
    with pytest.raises(ValueError, match="not known"):
        FidelityJudge("xx", ["en"])
