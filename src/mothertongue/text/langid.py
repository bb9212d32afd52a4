"""Language identification with lingua, for translate and evaluate (ISO 639-1 codes in and out).

    python -c "from mothertongue.text.langid import LangId; print(LangId().detect('Guten Morgen, wie geht es dir?'))"

The one place a lingua detector is built (`detector`, cached per candidate set): all 75
languages in low-accuracy mode (building high accuracy for all of them takes half a minute), or
high accuracy for a candidate list. Code blocks, URLs and placeholders are stripped before
detection (they look like English); `quotes=True` (evaluation) strips quoted text too.
`LangId.confirm` re-judges a text against a dataset's dominant language alone, with high
accuracy: short English instructions full of names ("How did Julius Caesar die?") are Latin to a
low-accuracy detector over every language, and only a clear, majority verdict may overrule the
rest of the dataset.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mothertongue.errors import RecipeError
from mothertongue.text.protect import strip_protected
from mothertongue.text.segment import has_letters

_LETTER = re.compile(r"[^\W\d_]")


class UnknownLanguage(RecipeError):
    """A language code lingua does not know (a user error: one line, naming the option)."""


@lru_cache(maxsize=1)
def lingua_codes() -> frozenset[str]:
    from lingua import Language

    return frozenset(lang.iso_code_639_1.name.lower() for lang in Language.all())


def check_codes(codes: list[str] | tuple[str, ...], option: str) -> tuple[str, ...]:
    """The codes, lower-cased and de-duplicated; unknown ones raise UnknownLanguage naming `option`."""
    out = tuple(dict.fromkeys(c.strip().lower() for c in codes))
    unknown = [c for c in out if c not in lingua_codes()]
    if unknown:
        raise UnknownLanguage(
            f"{option}: language {', '.join(map(repr, unknown))} is not known to the language identifier (lingua); "
            f"use ISO 639-1 codes: {', '.join(sorted(lingua_codes()))}"
        )
    return out


@lru_cache(maxsize=16)
def detector(codes: tuple[str, ...] | None):
    """A lingua detector for these candidates (None: every language, low accuracy); built once."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    if not codes:
        return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    langs = [Language.from_iso_code_639_1(IsoCode639_1.from_str(c)) for c in codes]
    # Preloading loads the candidates' models in parallel; lazy loading would do it one by one.
    return LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models().build()


def letters(text: str) -> int:
    return len(_LETTER.findall(text))


def _code(language) -> str:
    return language.iso_code_639_1.name.lower()


class LangId:
    """detect(text) -> (code or None, confidence) among `languages` (None: all lingua knows)."""

    def __init__(
        self, languages: list[str] | tuple[str, ...] | None = None, min_letters: int = 12, quotes: bool = False,
        option: str = "translate.detect_languages",
    ):  # fmt: skip
        codes = check_codes(languages, option) if languages else None
        if codes and len(codes) < 2:
            codes = None  # a one-language detector always answers that language
        self.languages = tuple(sorted(codes)) if codes else None
        self.min_letters = min_letters
        self.quotes = quotes

    def clean(self, text: str) -> str:
        return strip_protected(text, quotes=self.quotes)

    def _judgeable(self, text: str) -> str | None:
        clean = self.clean(text)
        if letters(clean) < self.min_letters or not has_letters(clean):
            return None
        return clean

    def detect(self, text: str) -> tuple[str | None, float]:
        clean = self._judgeable(text)
        if clean is None:
            return None, 0.0
        vals = detector(self.languages).compute_language_confidence_values(clean)
        if not vals:
            return None, 0.0
        return _code(vals[0].language), float(vals[0].value)

    def language_of(self, text: str) -> str | None:
        """lingua's own verdict (None: too short, or no clear winner)."""
        clean = self._judgeable(text)
        if clean is None:
            return None
        lang = detector(self.languages).detect_language_of(clean)
        return _code(lang) if lang is not None else None

    def is_language(self, text: str, code: str, min_confidence: float = 0.5) -> bool | None:
        """True/False when the text is long enough to tell and lingua knows `code`; else None."""
        if code not in lingua_codes():
            return None
        got, conf = self.detect(text)
        if got is None:
            return None
        if got == code:
            return True
        return False if conf >= min_confidence else None

    def confirm(self, text: str, detected: str, dominant: str, min_confidence: float = 0.75, short: int = 40) -> bool:
        """Whether `detected` stands against the dataset's `dominant` language: judged between the
        two alone (high accuracy), it must hold most of the text's letters with `min_confidence`
        (0.95 for texts under `short` letters, where names and loan words tip the balance)."""
        if detected == dominant or dominant not in lingua_codes() or detected not in lingua_codes():
            return True
        clean = self._judgeable(text)
        if clean is None:
            return False
        from lingua import IsoCode639_1, Language

        det = detector(tuple(sorted((detected, dominant))))
        lang = Language.from_iso_code_639_1(IsoCode639_1.from_str(detected))
        n = letters(clean)
        if det.compute_language_confidence(clean, lang) < (min_confidence if n >= short else max(min_confidence, 0.95)):
            return False
        share = sum(letters(clean[r.start_index : r.end_index]) for r in det.detect_multiple_languages_of(clean) if r.language == lang)
        return share * 2 > n
