"""Translate, the quality gate: reasons a machine translation looks wrong.

    python -c "from mothertongue.config import TranslateConfig; from mothertongue.translate.gate import gate; print(gate('Hello there, my friend.', 'Hallo', 'de', TranslateConfig()))"

Three checks, each cheap: the output is empty; its length in characters is out of
`translate.min_length_ratio`..`max_length_ratio` of the source's; a 1-3 word n-gram repeats back
to back more often than in the source (the classic decoder loop); and, when a detector is given
and the output is long enough to tell, it is not in the target language.
"""

from __future__ import annotations

from mothertongue.config import TranslateConfig
from mothertongue.text.langid import LangId

# Fewer letters than this and a language identifier guesses (names, lists, short replies).
MIN_LETTERS = 30


def max_run(words: list[str]) -> int:
    """Longest run of one 1-3 word n-gram repeated back to back."""
    best = 1
    for n in (1, 2, 3):
        for start in range(n):
            run, prev = 1, None
            for i in range(start, len(words) - n + 1, n):
                g = tuple(words[i : i + n])
                run = run + 1 if g == prev else 1
                prev = g
                best = max(best, run)
    return best


def gate(
    src: str, out: str, tgt_lang: str, cfg: TranslateConfig, langid: LangId | None = None
) -> list[str]:
    """Reasons a translation looks wrong (empty list: it passed)."""
    if not out.strip():
        return ["empty"]
    reasons = []
    if len(src) >= 10:
        r = len(out) / len(src)
        if not cfg.min_length_ratio <= r <= cfg.max_length_ratio:
            reasons.append("length_ratio")
    if max_run(out.lower().split()) > max(3, max_run(src.lower().split())):
        reasons.append("repetition")
    if (
        langid is not None
        and sum(ch.isalpha() for ch in out) >= MIN_LETTERS
        and langid.is_language(out, tgt_lang) is False
    ):
        reasons.append("language")
    return reasons


def message_in_language(text: str, src_lang: str, tgt_lang: str) -> bool | None:
    """The assembled message's language check: False when it is, with confidence, in the source
    language rather than the target (a translation that failed mostly stays in the source). Judged
    between those two languages only, in lingua's high-accuracy mode, and only on texts of
    MIN_LETTERS letters or more; None when that cannot be told."""
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS or src_lang == tgt_lang:
        return None
    return LangId([src_lang, tgt_lang]).is_language(text, tgt_lang)
