"""Which language each message is translated from: per-message languages from the data,
per-message detection when the data says nothing, and the dataset's dominant language for
texts the detector cannot tell (plain English Alpaca must not stop at "no model for la->de").

    python -m pytest -q tests/test_translate_langs.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import SHARED_DATA
from mothertongue.config import Recipe, load_recipe
from mothertongue.runs import run_stage
from mothertongue.translate.plan import RecordKey, TextKey, Unit, assign_languages
from test_translate_fixtures import tiny_marian_path, to_xx

ALPACA = SHARED_DATA / "alpaca_data_first50.json"


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> Path:
    return tiny_marian_path(tmp_path_factory)


def _units(texts: list[str]) -> list[Unit]:
    return [Unit(TextKey(RecordKey("conv", "train", i), "messages", 0), t, "") for i, t in enumerate(texts)]


def _recipe(tmp: Path, model: Path, convs: list[dict], source: str, extra: str = "") -> Path:
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(
        f"name: t\nrun_dir: {tmp / 'run'}\nlanguage: de\n"
        f"ingest:\n  sources:\n    - {{path: {source or data}, format: {'alpaca' if source else 'openai'}}}\n"
        f'translate:\n  enabled: true\n  models: {{"en-de": {model}}}\n  progress: false\n  quality_gate: false\n{extra}',
        encoding="utf-8",
    )
    return recipe


GERMAN = "Übersetze bitte den folgenden Satz ins Deutsche, so genau wie möglich."
ENGLISH = "the cat sees the dog and the bird. the dog likes the house and the water."


@pytest.mark.slow
def test_language_per_message_german_passes_english_is_translated(tiny_marian, tmp_path):
    convs = [
        # The data names each message's language (as natural-instructions tasks do).
        {"messages": [{"role": "user", "content": GERMAN, "lang": "de"}, {"role": "assistant", "content": "the dog eats.", "lang": "en"}]},
        # The data says nothing: each message is detected on its own.
        {"messages": [{"role": "user", "content": GERMAN + " Danke schön!"}, {"role": "assistant", "content": ENGLISH}]},
    ]  # fmt: skip
    r = load_recipe(_recipe(tmp_path, tiny_marian, convs, ""))
    run_stage(r, "ingest", log=lambda m: None)
    out = run_stage(r, "translate", log=lambda m: None).path
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    got = {m["content"] for c in rows for m in c["messages"]}
    assert {GERMAN, GERMAN + " Danke schön!", to_xx("the dog eats."), to_xx(ENGLISH)} == got
    report = json.loads((out / "report.json").read_text())
    assert report["passthrough_messages"] == 2 and report["messages_by_pair"] == {"en->de": 2}
    parallel = [json.loads(x) for x in (out / "parallel.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(p["src_lang"] for p in parallel) == ["en", "en"]


@pytest.mark.slow
@pytest.mark.real_data
def test_short_english_alpaca_texts_fall_back_to_the_dominant_language():
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    texts = [r[k] for r in rows for k in ("instruction", "input", "output") if r[k]]
    native = ["Guten Morgen, wie geht es dir heute?", "Nenne drei Tipps für ein gesundes Leben.", "Bonjour, je voudrais réserver une table pour deux personnes ce soir."]
    units = _units(texts + native)
    assign_languages(units, Recipe(language="de"))
    langs = {u.text: u.src for u in units}
    # Texts with letters are English (Alpaca has "How did Julius Caesar die?", Latin to a
    # low-accuracy detector over all languages); digits-only inputs need no translation.
    wrong = {t: lang for t, lang in langs.items() if t not in native and lang != "en" and any(c.isalpha() for c in t)}
    assert wrong == {}
    assert [langs[t] for t in native] == ["de", "de", "fr"]
    assert sum(u.guessed for u in units) >= 5  # short and overruled texts are counted as guessed


@pytest.mark.slow
@pytest.mark.real_data
def test_plain_english_alpaca_plans_one_route(tiny_marian, tmp_path):
    from mothertongue.translate import dry_run

    r = load_recipe(_recipe(tmp_path, tiny_marian, [], str(ALPACA)))
    run_stage(r, "ingest", log=lambda m: None)
    plan = dry_run(r, calibrate=0)
    routes = [ln for ln in plan.splitlines() if "->de:" in ln]
    assert len(routes) <= 2 and routes[0].lstrip().startswith("en->de:"), plan
    assert all("en->de" in ln or "pass-through" in ln for ln in routes), plan


def test_no_model_hint_names_source_lang(tiny_marian, tmp_path):
    convs = [{"messages": [{"role": "user", "content": "tacka.", "lang": "zz"}, {"role": "assistant", "content": "cat."}]}]
    r = load_recipe(_recipe(tmp_path, tiny_marian, convs, ""))
    run_stage(r, "ingest", log=lambda m: None)
    with pytest.raises(Exception, match=r"no translation model for zz->de.*translate\.source_lang"):
        run_stage(r, "translate", log=lambda m: None)
