"""Language identification with lingua (ISO 639-1 codes in and out).

    python -c "from mothertongue.text.langid import LangId; print(LangId().detect('Guten Morgen, wie geht es dir?'))"

Code blocks, URLs and placeholders are stripped before detection (they look like English).
Building a detector for all 75 languages in high-accuracy mode takes half a minute, so the
default is all languages in low-accuracy mode, or high accuracy for a given candidate list.
"""

from __future__ import annotations

from functools import lru_cache

from mothertongue.errors import RecipeError
from mothertongue.text.protect import strip_protected
from mothertongue.text.segment import has_letters


@lru_cache(maxsize=1)
def lingua_codes() -> frozenset[str]:
    from lingua import Language

    return frozenset(lang.iso_code_639_1.name.lower() for lang in Language.all())


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...] | None):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    if languages:
        langs = [Language.from_iso_code_639_1(IsoCode639_1.from_str(c)) for c in languages]
        return LanguageDetectorBuilder.from_languages(*langs).build()
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


class LangId:
    """detect(text) -> (code or None, confidence). Codes unknown to lingua are rejected up front."""

    def __init__(self, languages: list[str] | None = None, min_letters: int = 12):
        if languages:
            unknown = sorted(set(languages) - lingua_codes())
            if unknown:
                raise RecipeError(f"translate.detect_languages: language id does not know {', '.join(unknown)}; known: {', '.join(sorted(lingua_codes()))}")
            if len(set(languages)) < 2:
                languages = None  # a one-language detector always answers that language
        self.languages = tuple(sorted(set(languages))) if languages else None
        self.min_letters = min_letters

    def detect(self, text: str) -> tuple[str | None, float]:
        clean = strip_protected(text)
        if sum(ch.isalpha() for ch in clean) < self.min_letters or not has_letters(clean):
            return None, 0.0
        det = _detector(self.languages)
        vals = det.compute_language_confidence_values(clean)
        if not vals:
            return None, 0.0
        top = vals[0]
        return top.language.iso_code_639_1.name.lower(), float(top.value)

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
