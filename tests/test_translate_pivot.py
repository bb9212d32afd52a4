"""A two-leg pivot translation end to end: fi -> en -> xx with two tiny Marian models.

    python -m pytest -q tests/test_translate_pivot.py

There is no fi->xx model: the recipe names only `fi-en` (a tiny model trained here on the
synthetic fi language, test_translate_fixtures.from_fi) and `en-xx` (the shared en->xx model), so
the router must pivot through English. Every fi message must come back as exactly
to_xx(from_fi(text)) with code, URLs and placeholders byte-identical; the report counts the
messages as pivoted, the translation memory holds both legs, a rerun translates nothing, a run
that lost its second leg redoes only that, and --dry-run counts both legs' work. fi and en
messages in one dataset take their own routes (pivoted and direct) and share en->xx rows.
Adds about 20 s to a session (training the fi->en model); the tests themselves take ~2 s.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from test_translate_fixtures import (
    from_fi,
    identity,
    random_sentence,
    tiny_marian_path,
    to_fi,
    to_xx,
)

# Literal parts of every structured message: never translated, must survive byte for byte.
PROTECTED = ["`cat = dog()`", "```python\nprint('the cat sees the dog.')\n```", "https://example.com/cat.html",
             "{name}", "#NAME#", "date_0"]  # fmt: skip
TEMPLATE = (
    "{0} {1}\n\n"
    "- {2}\n"
    "- {3} `cat = dog()` {4}\n"
    "  1. {5}\n\n"
    "```python\nprint('the cat sees the dog.')\n```\n\n"
    "{6} https://example.com/cat.html {7} {{name}} {8} #NAME# {9} date_0 {10}\n"
)


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> Path:
    return tiny_marian_path(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_marian_fi_en(tmp_path_factory) -> Path:
    return tiny_marian_path(tmp_path_factory, "fi", "en")


def sent(rng: random.Random) -> str:
    """A sentence ending in "." that pysbd splits from the next one: not ending in "ok", which
    pysbd reads as an abbreviation ("ok. go" stays one segment, longer than the models know)."""
    while (s := random_sentence(rng, 1, 6).rstrip(".!?")).endswith("ok"):
        pass
    return s + "."


def english_parts(rng: random.Random) -> list[str]:
    """TEMPLATE's 11 slots: six sentences, four single words (the text between the protected
    spans of the last line), one closing sentence."""
    words = [random_sentence(rng, 1, 1).rstrip(".!?") for _ in range(4)]
    return [sent(rng) for _ in range(6)] + words + [sent(rng)]


def en_segments(text: str) -> set[str]:
    """The segments the stage sends to the model for an English message (to know which memory
    rows an en message needs; the text is far below translate.max_segment_tokens)."""
    from mothertongue.text.segment import approx_tokens, segment

    return set(segment(text, "en", 200, approx_tokens).segments())


def message(parts: list[str], source_of) -> tuple[str, str]:
    """(source text in the language `source_of` writes, its exact xx translation)."""
    return TEMPLATE.format(*map(source_of, parts)), TEMPLATE.format(*map(to_xx, parts))


def write_recipe(tmp: Path, models: dict[str, Path], convs: list[dict], engine: str) -> Path:
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    pairs = ", ".join(f'"{k}": {v}' for k, v in models.items())
    recipe = tmp / "recipe.yaml"
    # No translate.model: each pair is routed through the catalogue, whose per-pair overrides win.
    recipe.write_text(
        f"name: t\nrun_dir: {tmp / 'run'}\nlanguage: xx\n"
        f"ingest:\n  sources:\n    - {{path: {data}, format: openai}}\n"
        f"translate:\n  enabled: true\n  engine: {engine}\n  progress: false\n  models: {{{pairs}}}\n",
        encoding="utf-8",
    )
    return recipe


def run_translate(recipe: Path, force: bool = False):
    """Ingest (first time) and translate; with force, translate again from the memory."""
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage

    r = load_recipe(recipe)
    if not (Path(r.run_dir) / "ingest").exists():
        run_stage(r, "ingest", log=lambda m: None)
    out = run_stage(r, "translate", force=force, log=lambda m: None).path
    return out, json.loads((out / "report.json").read_text())


def plan_text(recipe: Path) -> str:
    """The --dry-run plan (ingesting first when needed)."""
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage
    from mothertongue.translate import dry_run

    r = load_recipe(recipe)
    if not (Path(r.run_dir) / "ingest").exists():
        run_stage(r, "ingest", log=lambda m: None)
    return dry_run(r, calibrate=4)


def read(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def memory_rows(db: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """(src, tgt, model) -> {source segment: target} from the translation memory."""
    out: dict = {}
    with sqlite3.connect(str(db)) as con:
        for src, tgt, model, s, t, st in con.execute("SELECT src, tgt, model, source, target, status FROM tm"):
            assert st == "ok", (s, t, st)
            out.setdefault((src, tgt, model), {})[s] = t
    return out


def check_outputs(out: Path, expected: dict[str, str]) -> int:
    """Every message is exactly its expected translation, and a structured message's protected
    spans are all there byte for byte; returns how many messages were checked."""
    n = 0
    for c in read(out / "train.jsonl"):
        assert c["lang"] == "xx"
        for m, src in zip(c["messages"], c["meta"]["source_messages"], strict=True):
            assert src["content"] in expected, src["content"]  # ingest kept the text as written
            assert m["content"] == expected[src["content"]], (src["content"], m["content"])
            if "```" in src["content"]:
                for span in PROTECTED:
                    assert m["content"].count(span) == src["content"].count(span) == 1, span
            n += 1
    return n


@pytest.mark.parametrize("engine", ["ctranslate2", "transformers"])
def test_fi_is_pivoted_through_english_exactly(tiny_marian, tiny_marian_fi_en, tmp_path, engine):
    rng = random.Random(77)
    convs, expected = [], {}
    for _ in range(4):
        msgs = []
        for role in ("user", "assistant"):
            parts = english_parts(rng)
            fi, xx = message(parts, to_fi)
            expected[fi] = xx
            msgs.append({"role": role, "content": fi, "lang": "fi"})
        convs.append({"messages": msgs})
    convs.append({"messages": [{"role": "user", "content": to_fi("cat sees dog.") + " https://example.com/cat.html", "lang": "fi"},
                               {"role": "assistant", "content": to_fi("the dog eats fish!"), "lang": "fi"}]})  # fmt: skip
    expected[to_fi("cat sees dog.") + " https://example.com/cat.html"] = to_xx("cat sees dog.") + " https://example.com/cat.html"
    expected[to_fi("the dog eats fish!")] = to_xx("the dog eats fish!")
    recipe = write_recipe(tmp_path, {"fi-en": tiny_marian_fi_en, "en-xx": tiny_marian}, convs, engine)
    before = plan_text(recipe)

    out, report = run_translate(recipe)
    assert check_outputs(out, expected) == 10
    assert report["routes"] == {"fi->xx": [f"fi->en: {tiny_marian_fi_en}", f"en->xx: {tiny_marian}"]}
    assert report["messages_by_pair"] == {"fi->xx": 10}
    assert report["pivoted_messages"] == 10 and report["passthrough_messages"] == 0
    assert report["flagged"] == []
    seg = report["segments"]
    assert seg["translated"] == seg["segments"] > 0 and seg["pivot_translated"] == seg["translated"]
    parallel = read(out / "parallel.jsonl")
    assert len(parallel) == 10 and all(p["tgt"] == expected[p["src"]] and p["src_lang"] == "fi" for p in parallel)

    # The memory holds both legs: fi segments -> their exact English, that English -> exact xx.
    rows = memory_rows(tmp_path / "run" / "translate-memory.sqlite")
    leg1, leg2 = rows.pop(("fi", "en", str(tiny_marian_fi_en))), rows.pop(("en", "xx", str(tiny_marian)))
    assert rows == {}
    assert all(en == from_fi(fi) for fi, en in leg1.items())
    assert set(leg2) == set(leg1.values()) and all(xx == to_xx(en) for en, xx in leg2.items())
    assert len(leg1) == seg["segments"]
    # The dry run had counted both legs' work (the second one before its inputs exist: one each).
    n = seg["segments"]
    assert f"fi->xx: 10 messages, pivot fi->en [{tiny_marian_fi_en}] then en->xx [{tiny_marian}]" in before
    assert f"already in memory 0; to translate {n} (+ at most {n} on the second legs of pivots)" in before
    assert "measured on 4 fi->en segments" in before
    assert f"already in memory {n}; to translate 0\n" in plan_text(recipe) + "\n"

    # Rerun from scratch (--force): both legs come from the memory, nothing is translated again.
    out2, report2 = run_translate(recipe, force=True)
    seg2 = report2["segments"]
    assert seg2["translated"] == 0 and seg2["pivot_translated"] == 0
    assert seg2["from_memory"] == n and seg2["pivot_from_memory"] == len(leg2)
    assert read(out2 / "train.jsonl") == read(out / "train.jsonl") and report2["pivoted_messages"] == 10

    # As if killed between the legs: the second leg's rows are gone. The dry run sees that work,
    # and the rerun translates exactly those, nothing of the first leg, with the same output.
    with sqlite3.connect(str(tmp_path / "run" / "translate-memory.sqlite")) as con:
        con.execute("DELETE FROM tm WHERE src = 'en' AND tgt = 'xx'")
    con.close()
    assert f"already in memory {n}; to translate 0 (+ at most {len(leg2)} on the second legs of pivots)" in plan_text(recipe)
    out3, report3 = run_translate(recipe, force=True)
    seg3 = report3["segments"]
    assert seg3["translated"] == 0 and seg3["from_memory"] == n and seg3["pivot_translated"] == len(leg2)
    assert read(out3 / "train.jsonl") == read(out / "train.jsonl")


def test_direct_and_pivoted_routes_coexist_in_one_dataset(tiny_marian, tiny_marian_fi_en, tmp_path):
    """fi and en messages side by side (even within one conversation): en goes straight to xx,
    fi goes fi->en->xx, and an English segment that both routes need is translated once."""
    rng = random.Random(31)
    shared = english_parts(rng)  # written once in fi and once in en: one en->xx memory row serves both
    convs, expected = [], {}
    for k in range(6):
        parts_u = shared if k == 0 else english_parts(rng)
        parts_a = english_parts(rng)
        lang_u, lang_a = [("fi", "en"), ("en", "fi"), ("fi", "fi"), ("en", "en"), ("fi-FI", "en"), ("en", "FI")][k]
        msgs = []
        for role, parts, lang in (("user", parts_u, lang_u), ("assistant", parts_a, lang_a)):
            src, xx = message(parts, to_fi if lang.lower().startswith("fi") else identity)
            expected[src] = xx
            msgs.append({"role": role, "content": src, "lang": lang})
        convs.append({"messages": msgs})
    en_shared, xx_shared = message(shared, identity)
    convs.append({"messages": [{"role": "user", "content": en_shared, "lang": "en"},
                               {"role": "assistant", "content": "tacka godka.", "lang": "xx"}]})  # fmt: skip
    expected[en_shared], expected["tacka godka."] = xx_shared, "tacka godka."
    recipe = write_recipe(tmp_path, {"fi-en": tiny_marian_fi_en, "en-xx": tiny_marian}, convs, "ctranslate2")
    before = plan_text(recipe)

    out, report = run_translate(recipe)
    n_fi = sum(m["lang"].lower().startswith("fi") for c in convs for m in c["messages"])
    n_en = sum(m["lang"] == "en" for c in convs for m in c["messages"])
    assert (n_fi, n_en) == (6, 7)
    assert check_outputs(out, expected) == 14
    assert report["routes"] == {"fi->xx": [f"fi->en: {tiny_marian_fi_en}", f"en->xx: {tiny_marian}"],
                                "en->xx": [f"en->xx: {tiny_marian}"], "xx->xx": ["pass-through"]}  # fmt: skip
    assert report["messages_by_pair"] == {"fi->xx": n_fi, "en->xx": n_en}
    assert report["pivoted_messages"] == n_fi and report["passthrough_messages"] == 1
    assert report["flagged"] == []

    rows = memory_rows(tmp_path / "run" / "translate-memory.sqlite")
    leg1, en_xx = rows.pop(("fi", "en", str(tiny_marian_fi_en))), rows.pop(("en", "xx", str(tiny_marian)))
    assert rows == {}
    assert all(en == from_fi(fi) for fi, en in leg1.items()) and all(xx == to_xx(en) for en, xx in en_xx.items())
    direct = set().union(*(en_segments(m["content"]) for c in convs for m in c["messages"] if m["lang"] == "en"))
    mids = set(leg1.values())
    # en->xx holds the direct segments and the pivot's English, each once; the English of the fi
    # copy of the shared message was already there from the direct route, so leg 2 skipped it.
    assert en_segments(en_shared) <= mids & direct
    assert set(en_xx) == direct | mids
    seg = report["segments"]
    assert seg["translated"] == len(leg1) + len(direct) == seg["segments"]
    assert seg["pivot_translated"] == len(mids - direct) and seg["pivot_from_memory"] == len(mids & direct)
    assert f"to translate {seg['segments']} (+ at most {len(leg1)} on the second legs of pivots)" in before
    assert f"en->xx: {n_en} messages, en->xx [{tiny_marian}]" in before and f"fi->xx: {n_fi} messages, pivot" in before

    _, report2 = run_translate(recipe, force=True)
    assert report2["segments"]["translated"] == report2["segments"]["pivot_translated"] == 0
