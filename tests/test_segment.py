"""Segmentation and protection: structure survives, protected spans never reach the model.

    python -m pytest -q tests/test_segment.py
"""

from __future__ import annotations

import pytest

from mothertongue.text.protect import protected_spans, strip_protected
from mothertongue.text.segment import segment, split_long, split_sentences

MESSAGE = """# Setup guide

Install it first. Dr. Smith wrote the guide, e.g. for beginners! Then run the tool.

1. Open https://example.com/docs?page=2, then log in.
2. Write to help@example.org if it fails.
   - nested: keep `pip install mothertongue` as is
> Quoted text stays quoted.

```python
def f(x):
    return "Do not translate this sentence."
```

    indented code is code too

Hello #NAME#, your order {order_id} ships on date_0 ({{ship_date}}). Rate: 50% sure, %s and %(count)d items.
<b>Bold</b> and <a href="x.html">a link</a>.
"""


def test_identity_render_is_byte_exact():
    doc = segment(MESSAGE)
    assert doc.render(lambda s: s) == MESSAGE


def test_segments_exclude_code_urls_tags_and_placeholders():
    doc = segment(MESSAGE)
    segs = doc.segments()
    joined = "\n".join(segs)
    for protected in (
        "https://example.com", "help@example.org", "pip install", "return", "Do not translate",
        "indented code", "#NAME#", "{order_id}", "date_0", "{{ship_date}}", "%s", "%(count)d",
        "<b>", "</a>", 'href="x.html"', "```", "# Setup", "1.", "> ",
    ):  # fmt: skip
        assert protected not in joined, protected
    # Real sentences, with abbreviations kept inside their sentence (pysbd).
    assert "Dr. Smith wrote the guide, e.g. for beginners!" in segs
    assert "Install it first." in segs and "Then run the tool." in segs
    assert "Setup guide" in segs and "Quoted text stays quoted." in segs


def test_structure_survives_a_translation():
    doc = segment(MESSAGE)
    out = doc.render(lambda s: s.upper())
    assert out.count("\n") == MESSAGE.count("\n")
    assert "```python\ndef f(x):\n    return \"Do not translate this sentence.\"\n```" in out
    assert "\n1. OPEN https://example.com/docs?page=2, THEN LOG IN.\n" in out
    assert "\n   - NESTED: KEEP `pip install mothertongue` AS IS\n" in out
    assert "HELLO #NAME#, YOUR ORDER {order_id} SHIPS ON date_0 ({{ship_date}})." in out
    assert "    indented code is code too\n" in out
    assert out.startswith("# SETUP GUIDE\n\n")


def test_german_sentence_splitter_knows_german_abbreviations():
    text = "Das ist z. B. ein Test. Er kam um 10 Uhr usw. an. Dann ging er."
    spans = split_sentences(text, "de")
    sents = [text[s:e] for s, e in spans]
    assert sents[0] == "Das ist z. B. ein Test."
    assert sents[-1] == "Dann ging er."


def test_long_sentence_is_cut_at_clause_ends_and_within_limit():
    sentence = "alpha beta gamma, delta epsilon zeta, eta theta iota kappa, lambda mu nu xi omicron pi."
    count = lambda s: len(s.split())  # noqa: E731 - one token per word
    pieces = split_long(sentence, 5, count)
    texts = [sentence[s:e] for s, e in pieces]
    assert all(count(t) <= 5 for t in texts)
    assert texts[0] == "alpha beta gamma,"  # cut after the comma, not mid-clause
    assert " ".join(texts) == sentence
    doc = segment(sentence, max_tokens=5, count=count)
    assert doc.render(lambda s: s) == sentence and len(doc.segments()) == len(pieces)


@pytest.mark.parametrize(
    "text,kinds",
    [
        ("see https://a.org/x.", ["url"]),
        ("mail me@b.co now", ["email"]),
        ("{x} {{y}} #Z# %s date_0", ["brace", "double_brace", "hash_name", "printf", "indexed"]),
        ("100% sure", []),  # a percent sign is not a placeholder
        ("<br/> and `a<b`", ["tag", "inline_code"]),
    ],
)
def test_protected_spans(text, kinds):
    assert [k for _, _, k in protected_spans(text)] == kinds


def test_strip_protected_for_language_id():
    assert "print" not in strip_protected("Hallo Welt.\n```\nprint(1)\n```\nsiehe https://x.org")
    assert "Hallo Welt." in strip_protected("Hallo Welt.\n```\nprint(1)\n```\n")


ONE_SENTENCE_EDGES = ["Hello world", "  Hello world  ", "Wow! ", "Hi.", "\u201cQuote\u201d",
                      "\u4f60\u597d\u4e16\u754c\u3002", "\u0645\u0631\u062d\u0628\u0627\u061f",
                      "\u0928\u092e\u0938\u094d\u0924\u0947\u0964", "Gr\u00fc\u00dfe aus M\u00fcnchen!"]
SEVERAL = ["Dr. Smith came. He left.", "a) one b) two", "Price: 5 euros", "Hi; bye", "\u4f60\u597d\u3002\u4e16\u754c\u3002",
           "Wait\u2026 what?", "One.Two", "x?y", "Is it?\u201d", "Done.)", "(see above)", "Ok.'", "Hi...", "Wow!!! "]


@pytest.mark.parametrize("text", ONE_SENTENCE_EDGES + SEVERAL)
def test_one_sentence_shortcut_agrees_with_pysbd(text):
    """split_sentences answers one-sentence texts itself; whatever it answers is pysbd's answer,
    and a text with a mark that may end a sentence inside it still goes to pysbd."""
    from mothertongue.text import segment as seg

    assert split_sentences(text) == seg.pysbd_spans(text)
    assert seg.is_one_sentence(text) == (text in ONE_SENTENCE_EDGES)


def test_one_sentence_shortcut_knows_every_pysbd_mark():
    """A mark pysbd splits at in any of its languages keeps a text away from the shortcut."""
    from pysbd.languages import LANGUAGE_CODES

    from mothertongue.text import segment as seg

    marks = {c for lang in LANGUAGE_CODES.values() for c in getattr(lang, "Punctuations", [])}
    assert marks and all(seg._MAY_END.search(c) for c in marks), sorted(c for c in marks if not seg._MAY_END.search(c))


def test_one_sentence_shortcut_agrees_with_pysbd_on_random_texts():
    """Random words, marks, quotes, brackets and spaces in every pysbd language: the same spans."""
    import random

    from pysbd.languages import LANGUAGE_CODES

    from mothertongue.text import segment as seg

    rnd = random.Random(7)
    words = ["Hallo", "world", "Mr", "e", "3", "M\u00fcnchen", "\u4f60\u597d", "\u0645\u0631\u062d\u0628\u0627", "(x", "y)",
             '"q', "\u00aba\u00bb", "\u2014", "a)", "1"]
    marks = ["", "", "", ".", "!", "?", "\u2026", "...", "\u3002", "?!", "\u201d", ")", "'", " ", "  ", ",", "\t"]
    langs = sorted(LANGUAGE_CODES)
    for _ in range(1500):
        text = "".join(rnd.choice(words) + rnd.choice(marks) + rnd.choice([" ", ""]) for _ in range(rnd.randint(1, 5)))
        lang = rnd.choice(langs)
        assert split_sentences(text, lang) == seg.pysbd_spans(text, lang), (text, lang)


@pytest.mark.real_data
def test_one_sentence_shortcut_on_real_lines():
    """Every line of the real dataset samples: the same spans as pysbd alone, and most lines
    (single sentences) never reach pysbd."""
    import json

    from conftest import SHARED_DATA
    from mothertongue.text import segment as seg

    texts: list[str] = []

    def walk(o):
        if isinstance(o, str):
            texts.append(o)
        elif isinstance(o, dict):
            [walk(v) for v in o.values()]
        elif isinstance(o, list):
            [walk(v) for v in o]

    for f in sorted(SHARED_DATA.glob("*.json")):
        walk(json.loads(f.read_text(encoding="utf-8")))
    for f in sorted(SHARED_DATA.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            walk(json.loads(line))
    lines = [x for t in texts for x in t.splitlines() if x.strip()]
    calls = []
    real = seg.pysbd_spans
    try:
        seg.pysbd_spans = lambda t, lang="en": calls.append(t) or real(t, lang)
        got = [split_sentences(x) for x in lines]
    finally:
        seg.pysbd_spans = real
    assert got == [real(x) for x in lines]
    assert len(lines) > 4000 and len(calls) < len(lines) / 2, (len(lines), len(calls))
