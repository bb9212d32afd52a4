"""Split a message into translatable segments and literal parts, and put it back together.

    python -c "from mothertongue.text.segment import segment; d = segment('Hi. Go!\\n\\n- see `x`'); print(d.parts)"

A message becomes a `Doc`: a list of parts, each either literal (newlines, blank lines, list
markers, heading marks, indentation, code blocks, inline code, URLs, tags, placeholders, the
whitespace between sentences) or a segment to translate (one sentence, or a piece of a sentence
longer than the model's limit). `doc.render(translation_of)` joins them again, so everything that
was not sent to the model comes back byte-for-byte, and `doc.render(identity)` is the input.
Paragraphs are lines: a line break is never moved or merged, so hard-wrapped prose is translated
line by line (a deliberate trade: structure always survives).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from mothertongue.text.protect import code_block_lines, protected_spans

# Leading structure kept literal: indentation, list bullets, numbered items, headings, quotes.
_PREFIX = re.compile(r"^[ \t]*(?:(?:[-*+\u2022]|\d{1,3}[.)]|[a-zA-Z][.)](?=\s)|#{1,6}|>)[ \t]+|>[ \t]*)*")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_CLAUSE_END = re.compile(r"[,;:\u3001\uff0c\uff1b\uff1a]$")
# Cutting units: a run of spaced-script letters (a word), or one CJK character or full-width
# punctuation mark, since Chinese and Japanese write whole sentences without a space.
_CJK = "\u2e80-\u9fff\u3040-\u30ff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_UNIT = re.compile(rf"[^\s{_CJK}]+|[{_CJK}]")


# A text with no mark that can end a sentence, except one at its very end, is one
# sentence: pysbd (~0.5 ms a call, most of planning's time) is asked only about the others.
# 3,240 of the 4,638 lines of the real dataset samples take this path; pysbd returns the same
# single span for each, and for random texts in all its languages (tests/test_segment.py).
_ENDS = ".!?\u2026\u3002\uff01\uff1f\uff61\u061f\u06d4\u0964\u0965\u0589\u1362\u203c\u2047\u2048\u2049\ufe12\ufe52\ufe56\ufe57\uff0e"
# (pysbd splits a closing quote or bracket after a final mark off as a sentence of its own, and
# splits "a) one b) two" as a list: those go to pysbd too.)
# Only one final mark: pysbd in some languages splits a final "..." into ".." and ".".
_FINAL_MARKS = re.compile(rf"[{_ENDS}]?\s*$")
# Also every mark in a pysbd language's `Punctuations` (Arabic comma, Burmese and Armenian marks, |).
_MAY_END = re.compile(rf"[{_ENDS}\u1367\u1368\u060c\u104b\u104f\u055c|;:)\n\r]")


def has_letters(s: str) -> bool:
    return bool(_LETTER.search(s))


def approx_tokens(s: str) -> int:
    """Rough subword count when no tokenizer is at hand (about 4 characters per token)."""
    return max(1, (len(s) + 3) // 4)


@dataclass
class Doc:
    """A message as literal parts and segments: parts[i] = (is_segment, text)."""

    parts: list[tuple[bool, str]] = field(default_factory=list)

    def lit(self, s: str) -> None:
        if not s:
            return
        if self.parts and not self.parts[-1][0]:
            self.parts[-1] = (False, self.parts[-1][1] + s)
        else:
            self.parts.append((False, s))

    def seg(self, s: str) -> None:
        self.parts.append((True, s))

    def segments(self) -> list[str]:
        return [t for is_seg, t in self.parts if is_seg]

    def render(self, translation_of: Callable[[str], str]) -> str:
        return "".join(translation_of(t) if is_seg else t for is_seg, t in self.parts)


@lru_cache(maxsize=32)
def _segmenter(lang: str):
    import pysbd
    from pysbd.languages import LANGUAGE_CODES

    return pysbd.Segmenter(language=lang if lang in LANGUAGE_CODES else "en", clean=False)


def split_sentences(text: str, lang: str = "en") -> list[tuple[int, int]]:
    """Sentence spans (start, end) covering the stripped sentences of text, via pysbd."""
    if is_one_sentence(text):
        return [(len(text) - len(text.lstrip()), len(text.rstrip()))]
    return pysbd_spans(text, lang)


def is_one_sentence(text: str) -> bool:
    """The shortcut's test: letters, and no mark that could end a sentence before the last one."""
    body = text.rstrip()
    return has_letters(body) and not _MAY_END.search(_FINAL_MARKS.sub("", body))


def pysbd_spans(text: str, lang: str = "en") -> list[tuple[int, int]]:
    """split_sentences without its one-sentence shortcut: always pysbd."""
    spans, pos = [], 0
    for sent in _segmenter(lang).segment(text):
        s = sent.strip()
        if not s:
            continue
        i = text.find(s, pos)
        if i < 0:  # pysbd changed the text (rare): fall back to one sentence for the rest
            rest = text[pos:]
            if rest.strip():
                lead = len(rest) - len(rest.lstrip())
                spans.append((pos + lead, pos + len(rest.rstrip())))
            return spans
        spans.append((i, i + len(s)))
        pos = i + len(s)
    return spans


def sentences(text: str, lang: str = "en") -> list[str]:
    """The sentences of a text, line by line (a line break always ends a sentence)."""
    out = []
    for line in text.split("\n"):
        if line.strip():
            out += [line[s:e] for s, e in split_sentences(line, lang)]
    return out


def split_long(sentence: str, max_tokens: int, count: Callable[[str], int]) -> list[tuple[int, int]]:
    """Cut a sentence longer than max_tokens into pieces at clause ends, else between words (or
    between characters in scripts written without spaces)."""
    if count(sentence) <= max_tokens:
        return [(0, len(sentence))]
    words = [(m.start(), m.end()) for m in _UNIT.finditer(sentence)]
    pieces: list[tuple[int, int]] = []
    start_w, budget, last_clause = 0, 0, None
    cost = [count(sentence[s:e]) for s, e in words]
    i = 0
    while i < len(words):
        if budget + cost[i] > max_tokens and i > start_w:
            cut = last_clause if last_clause is not None and last_clause > start_w else i
            pieces.append((words[start_w][0], words[cut - 1][1]))
            start_w, budget, last_clause = cut, 0, None
            i = cut
            continue
        budget += cost[i]
        if _CLAUSE_END.search(sentence[words[i][0] : words[i][1]]):
            last_clause = i + 1
        i += 1
    pieces.append((words[start_w][0], words[-1][1]))
    return pieces


def _text_run(doc: Doc, run: str, lang: str, max_tokens: int, count: Callable[[str], int]) -> None:
    if not has_letters(run):
        doc.lit(run)
        return
    pos = 0
    for s, e in split_sentences(run, lang):
        doc.lit(run[pos:s])
        sent = run[s:e]
        if not has_letters(sent):
            doc.lit(sent)
        else:
            p0 = 0
            for ps, pe in split_long(sent, max_tokens, count):
                doc.lit(sent[p0:ps])
                piece = sent[ps:pe]
                (doc.seg if has_letters(piece) else doc.lit)(piece)
                p0 = pe
            doc.lit(sent[p0:])
        pos = e
    doc.lit(run[pos:])


def segment(
    text: str, lang: str = "en", max_tokens: int = 200, count: Callable[[str], int] = approx_tokens
) -> Doc:
    """Split one message into a Doc; `max_tokens` is the longest segment the model should get."""
    doc = Doc()
    lines = text.splitlines(keepends=True)
    for line, is_code in zip(lines, code_block_lines(lines)):
        if is_code:
            doc.lit(line)
            continue
        body = line.rstrip("\r\n")
        eol = line[len(body) :]
        prefix = _PREFIX.match(body).group(0)
        core = body[len(prefix) :]
        trail = core[len(core.rstrip()) :]
        core = core[: len(core) - len(trail)]
        doc.lit(prefix)
        pos = 0
        for s, e, _kind in protected_spans(core):
            _text_run(doc, core[pos:s], lang, max_tokens, count)
            doc.lit(core[s:e])
            pos = e
        _text_run(doc, core[pos:], lang, max_tokens, count)
        doc.lit(trail + eol)
    return doc
