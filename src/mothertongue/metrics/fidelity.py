"""Language fidelity: is a reply written in the language it should be in, and does it stay there?

    from mothertongue.metrics.fidelity import FidelityJudge, fidelity_scores
    judge = FidelityJudge("de", others=["en", "fr"])
    j = judge.judge("Hallo! Wie geht es dir? I am fine, thank you very much.")
    fidelity_scores([j], ["de"])   # reply-level and per-sentence shares

Judged with lingua (a real n-gram language identifier, the detector translate uses too:
text.langid) over a fixed set of candidate languages (the target, English and a few neighbours;
more candidates load slower). Before judging, what is not prose in any language is stripped
(text.protect, quotes mode): fenced and indented code, inline code, URLs, e-mail addresses,
placeholders, quoted lines (`> ...`) and text in quotation marks (quoted source text, e.g. the
phrase the user asked to translate). A reply with fewer than `min_letters` letters left is counted as
too short to judge, separately, instead of being guessed. Per sentence (text.segment's pysbd splitter), so a
reply that drifts into English halfway shows up even when its majority language is right.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mothertongue.text.langid import LangId
from mothertongue.text.protect import strip_protected
from mothertongue.text.segment import sentences


def strip_non_prose(text: str) -> str:
    """Remove code, URLs, addresses and quoted text; what is left is judged for its language."""
    return strip_protected(text, quotes=True)


@dataclass
class Judgement:
    """One reply: its language (None: too short to judge) and each judgeable sentence's language."""

    lang: str | None
    sentences: list[str] = field(default_factory=list)
    short_sentences: int = 0


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code ("de" -> "German"), for prompts and reports."""
    from mothertongue.languages import english_name

    return english_name(code)


class FidelityJudge:
    """Detects the language of replies and of their sentences among a fixed set of candidates."""

    def __init__(self, target: str, others: list[str] | tuple[str, ...] = ("en",), min_letters: int = 10):
        codes = tuple(dict.fromkeys(c.lower() for c in [target, *others]))
        if len(codes) < 2:
            raise ValueError("fidelity needs at least two candidate languages (the target and one more)")
        self.target = target.lower()
        self.codes = codes
        self.min_letters = min_letters
        self.langid = LangId(codes, min_letters=min_letters, quotes=True, option="evaluate.fidelity_languages")

    def detect(self, text: str) -> str | None:
        """ISO 639-1 code of the text's language, or None when too little prose is left to judge."""
        return self.langid.language_of(text)

    def sentences(self, text: str, lang: str | None = None) -> list[str]:
        return sentences(text, lang or self.target)

    def judge(self, text: str) -> Judgement:
        prose = strip_non_prose(text)
        lang = self.detect(prose)
        sents, short = [], 0
        for s in self.sentences(prose, lang):
            sl = self.detect(s)
            if sl is None:
                short += 1
            else:
                sents.append(sl)
        return Judgement(lang, sents, short)


def fidelity_scores(judgements: list[Judgement], expected: list[str]) -> dict:
    """Shares of replies and of sentences in the expected language, too-short replies apart.

    `fidelity`: judged replies detected as expected / judged replies (None when none was judgeable);
    `sentence_fidelity`: the same over all judgeable sentences of all replies;
    `too_short`: replies with too little prose to judge; `reply_langs`: detected languages counted.
    """
    judged = [(j, e) for j, e in zip(judgements, expected) if j.lang is not None]
    sents = [(s, e) for j, e in zip(judgements, expected) for s in j.sentences]
    return {
        "fidelity": sum(j.lang == e for j, e in judged) / len(judged) if judged else None,
        "sentence_fidelity": sum(s == e for s, e in sents) / len(sents) if sents else None,
        "judged": len(judged),
        "too_short": len(judgements) - len(judged),
        "reply_langs": dict(Counter(j.lang or "too short" for j in judgements).most_common()),
    }
