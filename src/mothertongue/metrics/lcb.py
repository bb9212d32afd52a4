"""Line-level language fidelity as the Language Confusion Benchmark defines it (LCB-style).

    from mothertongue.metrics.lcb import line_level
    line_level(["Hallo, wie geht es dir heute?\\nI am fine, thank you very much."], "de", detect)

Marchisio et al. 2024, "Understanding and Mitigating Language Confusion in LLMs" (arXiv
2406.20052), score a reply by its lines: cut the reply where a following turn starts (`\\nQ:`),
strip punctuation, split into lines, ignore lines with fewer than 5 words, and identify the
language of each remaining line. A reply passes when no judged line is in another language;
**line-level pass rate** is the share of judgeable replies that pass (replies with no line of 5+
words are not judgeable and are counted apart), **line accuracy** the mean share of a judgeable
reply's lines in the expected language. The benchmark identifies languages with fastText's lid.176;
here the caller's detector (lingua, through `mothertongue.text.langid`) judges, so the numbers are
comparable in definition but not identical to a fastText run ("LCB-style"). Word-level pass rate
(no Latin-script word in a reply whose language is written in another script) is defined only for
non-Latin-script languages, as in the benchmark.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_WORDS = 5
_NEXT_TURN = re.compile(r"\nQ:")
_LATIN_WORD = re.compile(r"\b[A-Za-z]{2,}\b")
# Scripts of the languages the benchmark scores at word level (non-Latin scripts).
NON_LATIN = {"ar", "hi", "ja", "ko", "ru", "zh", "he", "fa", "th", "uk", "el", "bn", "ta", "te", "ur", "zh-cn", "zh-tw"}


def _strip_punctuation(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def judgeable_lines(reply: str) -> list[str]:
    """The lines of a reply the benchmark judges: cut at a following turn, punctuation removed,
    lines of fewer than MIN_WORDS words dropped."""
    reply = _NEXT_TURN.split(reply, maxsplit=1)[0]
    lines = (" ".join(_strip_punctuation(line).split()) for line in reply.splitlines())
    return [line for line in lines if len(line.split()) >= MIN_WORDS]


@dataclass
class LineJudgement:
    lines: int  # judgeable lines
    correct: int  # of them, in the expected language
    latin_words: int  # Latin-script words (word level; meaningful for non-Latin-script targets)

    @property
    def judgeable(self) -> bool:
        return self.lines > 0

    @property
    def passed(self) -> bool:
        return self.judgeable and self.correct == self.lines


def judge_lines(reply: str, expected: str, detect: Callable[[str], str | None]) -> LineJudgement:
    """Judge one reply; `detect(text)` returns a language code (or None: counted as not expected)."""
    lines = judgeable_lines(reply)
    correct = sum(detect(line) == expected for line in lines)
    return LineJudgement(len(lines), correct, len(_LATIN_WORD.findall(reply)))


def line_level(replies: Sequence[str], expected: str | Sequence[str], detect: Callable[[str], str | None]) -> dict:
    """LCB-style scores of replies (one expected language, or one per reply)."""
    exp = [expected] * len(replies) if isinstance(expected, str) else list(expected)
    judged = [judge_lines(r, e, detect) for r, e in zip(replies, exp)]
    ok = [j for j in judged if j.judgeable]
    out = {
        "replies": len(judged),
        "judgeable": len(ok),
        "line_pass_rate": sum(j.passed for j in ok) / len(ok) if ok else None,
        "line_accuracy": sum(j.correct / j.lines for j in ok) / len(ok) if ok else None,
    }
    word = [j for j, e in zip(judged, exp) if e in NON_LATIN]
    if word:
        out["word_pass_rate"] = sum(j.latin_words == 0 for j in word) / len(word)
    return out
