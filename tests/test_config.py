"""Recipes are strict and their errors name what the user typed."""

from __future__ import annotations

import pytest

from mothertongue.config import RecipeError, load_recipe


def _write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_key_names_dotted_path_and_suggests(tmp_path):
    p = _write(tmp_path, "train:\n  learning_rat: 0.1\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "unknown key train.learning_rat" in msg
    assert "did you mean train.learning_rate" in msg
    assert "\n" not in msg


def test_unknown_top_level_key(tmp_path):
    p = _write(tmp_path, "trian:\n  epochs: 1\n")
    with pytest.raises(RecipeError, match=r"unknown key trian \(did you mean train\?\)"):
        load_recipe(p)


def test_bad_value_names_field(tmp_path):
    p = _write(tmp_path, "train:\n  batch_size: 0\n")
    with pytest.raises(RecipeError, match=r"train\.batch_size: must be greater than 0"):
        load_recipe(p)


def test_overrides_apply_and_are_strict(tmp_path):
    p = _write(tmp_path, "ingest:\n  sources:\n    - path: a.txt\n")
    r = load_recipe(p, ["train.epochs=7", "build.template=chatml", "ingest.sources.0.format=text"])
    assert r.train.epochs == 7 and r.build.template == "chatml"
    assert r.ingest.sources[0].format == "text"
    assert r.resolve_path("a.txt") == tmp_path / "a.txt"
    with pytest.raises(RecipeError, match="unknown key train.epoch "):
        load_recipe(p, ["train.epoch=7"])
    with pytest.raises(RecipeError, match="must look like stage.field=value"):
        load_recipe(p, ["train.epochs"])
    with pytest.raises(RecipeError, match="no list item '3'"):
        load_recipe(p, ["ingest.sources.3.path=x"])


def test_bare_on_off_words_mean_the_word(tmp_path):
    """YAML reads a bare `off` as false; a switch whose choices are words gets the word, in the
    file and on the command line (the CPU-kernel docs tell users to type `train.cpu_kernels=off`)."""
    p = _write(tmp_path, "train:\n  cpu_kernels: off\nevaluate:\n  lm_eval_chat: on\n")
    r = load_recipe(p)
    assert (r.train.cpu_kernels, r.evaluate.lm_eval_chat) == ("off", "on")
    r = load_recipe(p, ["train.cpu_kernels=auto", "evaluate.lm_eval_chat=off"])
    assert (r.train.cpu_kernels, r.evaluate.lm_eval_chat) == ("auto", "off")
    with pytest.raises(RecipeError, match=r"train\.cpu_kernels: must be 'auto' or 'off'"):
        load_recipe(p, ["train.cpu_kernels=on"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    p = _write(tmp_path, "train: [unclosed\n")
    with pytest.raises(RecipeError, match=r"r\.yaml:\d+: not valid YAML"):
        load_recipe(p)
    p = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(p)


def test_every_shipped_recipe_loads():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert recipes
    for r in recipes:
        load_recipe(r)


@pytest.mark.parametrize("field, value, needle", [
    ("language", "klingon", "language: unknown language code 'klingon'"),
    ("language", "zz", "language: unknown language code 'zz'"),
    ("translate.source_lang", "englsh", "translate.source_lang: unknown language code 'englsh'"),
    ("translate.detect_languages", "[en, xy]", "translate.detect_languages: the language detector does not know 'xy'"),
    ("evaluate.fidelity_languages", "[en, ast]", "evaluate.fidelity_languages: the language detector does not know 'ast'"),
])
def test_unknown_language_codes_fail_at_load(tmp_path, field, value, needle):
    p = _write(tmp_path, "name: t\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p, [f"{field}={value}"])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_known_language_codes_pass(tmp_path):
    p = _write(tmp_path, "name: t\n")
    for code in ("de", "pt-br", "nn", "lb", "sw", "ca"):  # table, alias, detector, MT catalogue
        assert load_recipe(p, [f"language={code}"]).language == code
    # A language nobody here knows is fine when the recipe brings its own MT model for it.
    r = load_recipe(p, ["language=xx", 'translate.models={"en-xx": my/model}'])
    assert r.language == "xx"


def test_recipe_path_that_is_a_folder_or_not_utf8(tmp_path):
    with pytest.raises(RecipeError, match="is a folder; give the recipe's .yaml file"):
        load_recipe(tmp_path)
    p = tmp_path / "r.yaml"
    p.write_bytes("name: Gr\u00fc\u00dfe\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"r.yaml: not UTF-8 text \(byte 8\)"):
        load_recipe(p)


def test_resolved_recipe_records_its_base_folder(tmp_path):
    from mothertongue.config import save_resolved

    src = tmp_path / "project"
    src.mkdir()
    p = _write(src, "name: t\nevaluate:\n  parallel_file: par.tsv\n")
    out = tmp_path / "run" / "recipe.resolved.yaml"
    out.parent.mkdir()
    save_resolved(load_recipe(p, ["train.epochs=2"]), out)
    again = load_recipe(out)
    assert again.resolve_path("par.tsv") == src.resolve() / "par.tsv"
    assert again.train.epochs == 2 and again.dump() == load_recipe(p, ["train.epochs=2"]).dump()
    assert [q.name for q in out.parent.iterdir()] == ["recipe.resolved.yaml"]  # no temporary file left
