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
comparable in definition but not identical to a fastText run ("LCB-style"). Normalisation and
the line rules follow the benchmark's released `compute_metrics.py` (ASCII punctuation deleted, an
em dash is a space, lines of 5+ whitespace words). Word-level pass rate is defined, as there, only
for languages written in a non-Latin script (ar, hi, ja, ko, ru, zh): among replies whose lines all
pass, the share with no English word. The benchmark looks words up in an English word list; here an
"English word" is any lowercase Latin-script word of 4+ letters, which such a reply should not hold
(it also counts other Latin-script words, so it is the stricter of the two). Lines of Chinese and
Japanese replies are split into words by whitespace only (the benchmark uses jieba and fugashi), so
fewer of their lines are judgeable.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_WORDS = 5
_ENGLISH_WORD = re.compile(r"(?<![A-Za-z])[a-z]{4,}(?![A-Za-z])")
WORD_LEVEL = frozenset({"ar", "hi", "ja", "ko", "ru", "zh"})  # the benchmark's non-Latin-script languages
_DELETE = str.maketrans({**{c: None for c in string.punctuation + "\u060c"}, "\u2014": " "})


def normalize(reply: str) -> str:
    """Cut at a following turn and delete punctuation, as the benchmark does."""
    return reply.split("\nQ:")[0].strip().translate(_DELETE)


def judgeable_lines(reply: str) -> list[str]:
    """The lines of a reply the benchmark judges: cut at a following turn, punctuation removed,
    lines of fewer than MIN_WORDS words dropped."""
    return [line for line in normalize(reply).split("\n") if len(line.split()) >= MIN_WORDS]


@dataclass
class LineJudgement:
    lines: int  # judgeable lines
    correct: int  # of them, in the expected language
    english_words: int  # in the judged lines (word level; meaningful for non-Latin-script targets)

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
    return LineJudgement(len(lines), correct, sum(len(_ENGLISH_WORD.findall(line)) for line in lines))


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
    word = [j for j, e in zip(judged, exp) if e in WORD_LEVEL and j.passed]
    if any(e in WORD_LEVEL for e in exp):
        out["word_pass_rate"] = sum(j.english_words == 0 for j in word) / len(word) if word else None
    return out
