"""Which language codes mothertongue knows, and the recipe check that uses them.

    mothertongue ls languages          # every known code, and which part knows it

A code is known when the phrase table (`languages.py`), the language detector (lingua) or the
MT catalogue (NLLB, mBART-50, M2M-100 codes) knows it. `check_language_codes` runs when a recipe
is loaded, so `language: klingon` fails `validate`, not the translate stage.
"""

from __future__ import annotations

from functools import lru_cache

from mothertongue.languages import ALIASES, LANGS


@lru_cache(maxsize=1)
def detector_codes() -> frozenset[str]:
    """ISO 639-1 codes the language detector (lingua) can recognise."""
    from lingua import Language

    return frozenset(lang.iso_code_639_1.name.lower() for lang in Language.all())


@lru_cache(maxsize=1)
def known_codes() -> frozenset[str]:
    """Every code some part of mothertongue knows: this table, the detector, the MT catalogue."""
    from mothertongue.engines.catalogue import M2M100_LANGS, MBART50_CODES, NLLB_CODES

    return frozenset(LANGS) | frozenset(ALIASES) | detector_codes() | set(NLLB_CODES) | set(MBART50_CODES) | M2M100_LANGS


def is_known(code: str) -> bool:
    c = code.lower()
    return c in known_codes() or c.split("-")[0] in known_codes()


def unknown_code_message(field: str, code: str, known: frozenset[str] | None = None) -> str:
    import difflib

    known = known or known_codes()
    close = difflib.get_close_matches(code.lower(), known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (f"{field}: unknown language code {code!r}; {hint}use an ISO 639-1 code such as de, fr, pt "
            "(`mothertongue ls languages` lists them)")


def check_language_codes(recipe) -> None:
    """Every language code must be one the languages table, the detector or the MT catalogue
    knows, so a typo fails `validate` instead of the translate or evaluate stage. A target
    language nobody knows is accepted when the recipe brings its own MT model for it."""
    t = recipe.translate
    own_model = bool(t.model) or any(k.lower().endswith("-" + recipe.language.lower()) for k in t.models)
    if not is_known(recipe.language) and not own_model:
        raise ValueError(unknown_code_message("language", recipe.language))
    for name, code in (("translate.source_lang", t.source_lang), ("translate.pivot", t.pivot)):
        if code and not is_known(code):
            raise ValueError(unknown_code_message(name, code))
    detector = detector_codes()
    for name, codes in (("translate.detect_languages", t.detect_languages or []),
                         ("evaluate.fidelity_languages", recipe.evaluate.fidelity_languages)):
        for code in codes:
            if code.lower() not in detector:
                raise ValueError(unknown_code_message(name, code, detector).replace(
                    "unknown language code", "the language detector does not know"))
