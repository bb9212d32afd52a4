"""Engines on real models: the tiny Marian trained here (transformers and ctranslate2), the real
CTranslate2 transliteration model, language-code tables, the catalogue and mt-bench.

    python -m pytest -q tests/test_engines.py
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from helpers import SHARED_MODELS
from mothertongue.engines import ENGINES, EngineOptions, load_engine
from mothertongue.engines.catalogue import FAMILIES, NLLB_CODES, route
from mothertongue.errors import UnknownName
from test_translate_fixtures import random_sentence, tiny_marian_path, to_xx


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> Path:
    return tiny_marian_path(tmp_path_factory)

def _held_out(n: int, seed: int = 99) -> list[str]:
    rng = random.Random(seed)
    return [random_sentence(rng) for _ in range(n)]


def test_transformers_engine_translates_held_out_sentences(tiny_marian):
    eng = load_engine("transformers", str(tiny_marian), "cpu", {})
    src = _held_out(60)
    out = eng.translate(src, "en", "xx", beam_size=1)
    assert out == [to_xx(s) for s in src]


def test_ctranslate2_engine_converts_once_and_translates(tiny_marian, tmp_path):
    opts = {"cache_dir": str(tmp_path / "ct2")}
    eng = load_engine("ctranslate2", str(tiny_marian), "cpu", opts)
    assert (eng.ct2_path / "model.bin").exists()
    src = _held_out(60, seed=7)
    assert eng.translate(src, "en", "xx", beam_size=1) == [to_xx(s) for s in src]
    assert eng.translate(src[:10], "en", "xx", beam_size=4) == [to_xx(s) for s in src[:10]]
    again = load_engine("ctranslate2", str(tiny_marian), "cpu", opts)
    assert again.ct2_path == eng.ct2_path and len(list((tmp_path / "ct2").iterdir())) == 1


def test_engine_options_are_strict(tiny_marian):
    from mothertongue.config import RecipeError

    with pytest.raises(RecipeError, match="compute_typo"):
        load_engine("ctranslate2", str(tiny_marian), "cpu", {"compute_typo": "int8"})


@pytest.mark.real_models
def test_ctranslate2_engine_on_real_converted_model():
    model = SHARED_MODELS / "ct2-aren-transliteration-int8"
    eng = load_engine("ctranslate2", str(model), "cpu", {"tokenizer": "chars"})
    assert eng.translate(["آتزمون", "آتشيسون"], "ar", "en", beam_size=2) == ["atzmon", "achison"]


def test_registry_and_codes():
    # Each registered name leads to an engine class that answers to that name (translation-memory
    # keys carry it), with strict options; a typo is an error that suggests the name.
    for name in ENGINES.names():
        cls = ENGINES.get(name)
        assert cls.name == name and issubclass(cls.Options, EngineOptions)
    with pytest.raises(UnknownName, match="did you mean ctranslate2"):
        ENGINES.get("ctranslat2")
    nllb = FAMILIES["nllb"]
    assert nllb.code("de") == "deu_Latn" and nllb.code("zh") == "zho_Hans"
    assert FAMILIES["mbart50"].code("de") == "de_DE" and FAMILIES["m2m100"].code("de") == "__de__"
    assert FAMILIES["madlad"].code("sw") == "<2sw>"
    with pytest.raises(ValueError, match="no code for language 'tlh'"):
        nllb.code("tlh")
    # every NLLB code is a real FLORES-200 shape: xxx_Scrp
    assert all(len(c) == 8 and c[3] == "_" and c[4].isupper() for c in NLLB_CODES.values())
    assert FAMILIES["opus-mt"].model_for("en", "de") == "Helsinki-NLP/opus-mt-en-de"
    assert FAMILIES["opus-mt"].model_for("en", "pt") == "Helsinki-NLP/opus-mt-tc-big-en-pt"
    assert [leg.model for leg in route("pt", "de", "opus-mt", None, {})] == [
        "Helsinki-NLP/opus-mt-tc-big-pt-en", "Helsinki-NLP/opus-mt-en-de",
    ]  # fmt: skip
    assert route("sw", "de", "opus-mt", None, {}) is None
    assert route("de", "de", "opus-mt", None, {}) == []


def test_mt_bench_scores_models_side_by_side(tiny_marian, tmp_path):
    from mothertongue.mtbench import bench, format_table

    src = _held_out(30, seed=3)
    data = tmp_path / "dev.tsv"
    data.write_text("".join(f"{s}\t{to_xx(s)}\n" for s in src), encoding="utf-8")
    rows = bench(data, [str(tiny_marian), f"transformers:{tiny_marian}"], "en", "xx")
    assert [r["engine"] for r in rows] == ["ctranslate2", "transformers"]
    assert all(r["bleu"] == 100.0 and r["chrf"] == 100.0 and r["segments_per_s"] > 0 for r in rows)
    assert "BLEU" in format_table(rows)
