"""The evaluate stage end to end: fidelity rises after training, the CLI on a run dir, the HTML page.

    python -m pytest -q tests/test_evaluate.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_recipe

THINGS = ["Apfel", "Baum", "Fluss", "Garten", "Hund", "Katze", "Vogel", "Berg", "Stern", "Wald", "Zug",
          "Buch", "Fenster", "Haus", "Brot", "Kaffee", "Regen", "Wind", "Mond", "Ball"]
EN = ["apple", "tree", "river", "garden", "dog", "cat", "bird", "mountain", "star", "forest", "train",
      "book", "window", "house", "bread", "coffee", "rain", "wind", "moon", "ball"]


def _synthetic_task(path: Path) -> None:
    """Questions in English, answers always in German: a model that learned it 'speaks' German."""
    lines = ["# synthetic: English questions, German answers"]
    for de, en in zip(THINGS, EN):
        lines.append(f"Tell me something about the {en}.#Ich erzähle dir gern etwas über {de}, denn {de} ist wirklich schön.")
        lines.append(f"What do you think of the {en}?#Ich finde {de} sehr gut und denke oft an {de}.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    suite = [{"prompt": f"Tell me something about the {en}.", "lang": "en"} for en in EN[::2]]
    suite += [{"prompt": f"What do you think of the {en}?", "lang": "en"} for en in EN[1::2]]
    (path.parent / "suite.jsonl").write_text("\n".join(json.dumps(s) for s in suite) + "\n", encoding="utf-8")


@pytest.mark.slow  # trains a tiny model on a synthetic task
def test_fidelity_rises_after_training_on_a_target_language_task(tmp_path):
    _synthetic_task(tmp_path / "task.txt")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: synthetic\nlanguage: de\nbase_model: tiny\n"
        "tiny_model: {hidden_size: 96, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 600}\n"
        "ingest: {sources: [{path: task.txt, format: text, options: {lang: de}}]}\n"
        "build: {template: chatml, max_length: 128}\n"
        "train: {adapter: full, epochs: 12, learning_rate: 0.003, batch_size: 8, logging_steps: 50, save_steps: 1000}\n"
        "evaluate: {max_new_tokens: 32, train_sample: 0, suites: [suite.jsonl], expect_reply_in: target, html: false}\n",
        encoding="utf-8")
    run_recipe(recipe, [f"run_dir={tmp_path / 'run'}"])
    card = json.loads((tmp_path / "run" / "evaluate" / "scorecard.json").read_text())
    base, tuned = card["models"]["base"]["prompts-suite"], card["models"]["tuned"]["prompts-suite"]
    assert tuned["n"] == base["n"] == 20
    assert tuned["fidelity"] is not None and tuned["fidelity"] >= 0.9
    base_fid = base["fidelity"] or 0.0
    assert tuned["fidelity"] > base_fid + 0.3, (base, tuned)
    assert tuned["sentence_fidelity"] > (base["sentence_fidelity"] or 0.0)
    # Expecting English replies instead turns the same German replies into failures.
    gens = [json.loads(x) for x in (tmp_path / "run" / "evaluate" / "generations.jsonl").read_text().splitlines()]
    assert {g["expected_lang"] for g in gens} == {"de"}
    assert sum(g["reply_lang"] == "de" for g in gens if g["model"] == "tuned") >= 18


def test_evaluate_run_dir_cli_prints_table_and_writes_files(quickstart_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quickstart_run, run)
    shutil.rmtree(run / "evaluate")
    cmd = [sys.executable, "-m", "mothertongue", "evaluate", str(run), "evaluate.suite_max_prompts=12",
           "evaluate.english_regression_max=0.05"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    for needle in ("| set", "held-out (10)", "prompts-de (12)", "prompts-en (12)", "in expected language", "chrF", "perplexity", "bits per byte"):
        assert needle in p.stdout
    out = run / "evaluate"
    for f in ("scorecard.json", "scorecard.md", "scorecard.html", "generations.jsonl", "manifest.json"):
        assert (out / f).exists(), f
    card = json.loads((out / "scorecard.json").read_text())
    tuned, base = card["models"]["tuned"], card["models"]["base"]
    assert tuned["held-out"]["perplexity"] < base["held-out"]["perplexity"]
    assert tuned["held-out"]["bits_per_byte"] < base["held-out"]["bits_per_byte"]
    # The quickstart translates from English: the held-out originals are scored, and the English
    # regression gate judges them (the verdict follows the numbers, and the command printed it).
    gate = card["english_regression"]
    b, t = base["english"]["bits_per_byte"], tuned["english"]["bits_per_byte"]
    assert gate["checks"][0]["loss"] == pytest.approx((t - b) / b, abs=1e-4)
    assert gate["flagged"] == ((t - b) / b > 0.05)
    assert ("ENGLISH REGRESSION" if gate["flagged"] else "English kept") in p.stdout
    # The untuned tiny model's babble is made of German sub-words, so lingua may call it German too:
    # fidelity alone cannot separate them here (test_fidelity_rises_* does); repetition does.
    assert tuned["held-out"]["fidelity"] >= 0.8
    assert tuned["held-out"]["repetition"] <= base["held-out"]["repetition"]  # the random base may not loop
    gens = (out / "generations.jsonl").read_text().splitlines()
    # Every prompt of every set was answered by both models (text-only sets are scored, not answered).
    answered = [k for k, v in card["sets"].items() if v["kind"] != "perplexity"]
    assert len(gens) == 2 * sum(tuned.get(k, {}).get("n", 0) for k in answered)
    # Unchanged: a second call skips the stage and still prints the table from the saved card.
    p2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0 and "skipped" in p2.stdout and "prompts-de (12)" in p2.stdout
    # A folder that is not a run is one line on stderr, exit 2.
    p3 = subprocess.run([sys.executable, "-m", "mothertongue", "evaluate", str(tmp_path)], capture_output=True, text=True)
    assert p3.returncode == 2 and "recipe.resolved.yaml is missing" in p3.stderr and "Traceback" not in p3.stderr


def test_quickstart_scorecard_has_fidelity_and_html(quickstart_run):
    out = quickstart_run / "evaluate"
    card = json.loads((out / "scorecard.json").read_text())
    tuned = card["models"]["tuned"]
    assert tuned["held-out"]["fidelity"] >= 0.9  # the tuned model answers the German prompts in German
    assert "prompts-de" in tuned and tuned["prompts-de"]["n"] == 24  # default cap per suite
    page = (out / "scorecard.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "<script" not in page and "http" not in page.split("<h2>Replies")[0]


def test_plots_draw_both_models_values(monkeypatch):
    """The scorecard's plots show what the card says: one bar per set and model at its value,
    both models in the legend, every plot a PNG a browser can show."""
    import base64
    import io

    from PIL import Image

    from mothertongue.metrics import report

    card = {"max_new_tokens": 8, "models": {
        "base": {"held-out": {"n": 2, "fidelity": 0.25, "sentence_fidelity": 0.5, "chrf": 10.0},
                 "prompts-de": {"n": 2, "fidelity": 0.0, "sentence_fidelity": 0.1}},
        "tuned": {"held-out": {"n": 2, "fidelity": 1.0, "sentence_fidelity": 0.75, "chrf": 40.0},
                  "prompts-de": {"n": 2, "fidelity": 0.5, "sentence_fidelity": 0.6}},
    }}
    gens = [{"model": m, "tokens": t, "ended": e} for m, t, e in
            [("base", 8, False), ("base", 8, False), ("tuned", 3, True), ("tuned", 4, True)]]
    figures = []
    real_png = report._png
    monkeypatch.setattr(report, "_png", lambda fig: (figures.append(fig), real_png(fig))[1])
    pngs = report.plots(card, gens)
    assert set(pngs) == {"fidelity", "lengths", "metrics"}
    for b64 in pngs.values():
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "PNG" and min(img.size) > 100
    replies_ax = figures[0].axes[0]
    heights = {c.get_label(): [round(b.get_height(), 6) for b in c] for c in replies_ax.containers}
    assert heights == {"base": [25.0, 0.0], "tuned": [100.0, 50.0]}
    assert [t.get_text() for t in replies_ax.get_xticklabels()] == ["held-out", "prompts-de"]
    assert [t.get_text() for t in replies_ax.get_legend().get_texts()] == ["base", "tuned"]
    chrf_ax = figures[2].axes[0]
    assert {c.get_label(): [b.get_height() for b in c] for c in chrf_ax.containers} == {"base": [10.0], "tuned": [40.0]}


def test_defaults_follow_the_target_language():
    """Suites and lm-eval tasks come from the run's language, not German for everyone."""
    from mothertongue.config import Recipe
    from mothertongue.evaluate import suites_for
    from mothertongue.metrics.benchmarks import default_tasks

    assert suites_for(Recipe(language="de")) == ["de", "en"]
    assert suites_for(Recipe(language="fr")) == ["en"]  # no shipped French suite (yet)
    assert suites_for(Recipe(language="fr", evaluate={"suites": ["my.txt"]})) == ["my.txt"]
    known = {"arc_fr", "xnli_fr", "belebele_fra_Latn", "arc_de"}
    assert default_tasks("fr", known) == ["arc_fr", "belebele_fra_Latn", "xnli_fr"]
    assert default_tasks("fr-ca", known) == ["arc_fr", "belebele_fra_Latn", "xnli_fr"]


@pytest.mark.slow
def test_german_keeps_its_lm_eval_tasks():
    """With the installed lm-eval (its task index takes a while to build), German gets the
    human-translated or native sets (#19), all of which the installed lm-eval knows."""
    pytest.importorskip("lm_eval")
    from mothertongue.metrics.benchmarks import default_tasks

    assert default_tasks("de") == ["mmmlu_de_de", "global_mmlu_de", "include_base_44_german",
                                   "belebele_deu_Latn", "xquad_de", "mgsm_native_cot_de"]


def test_english_regression_gate_flags_a_loss_over_the_limit():
    from mothertongue.metrics.english import english_regression, verdict_line

    base = {"english": {"bits_per_byte": 2.0}, "lm-eval en": {"n": 2, "arc_easy (acc)": 0.60, "hellaswag (acc)": 0.40}}
    kept = {"english": {"bits_per_byte": 2.05}, "lm-eval en": {"n": 2, "arc_easy (acc)": 0.59, "hellaswag (acc)": 0.41}}
    lost = {"english": {"bits_per_byte": 2.05}, "lm-eval en": {"n": 2, "arc_easy (acc)": 0.50, "hellaswag (acc)": 0.41}}
    ok = english_regression({"base": base, "tuned": kept}, 0.05)
    assert not ok["flagged"] and [c["loss"] for c in ok["checks"]] == [0.025, 0.01, -0.01]
    assert verdict_line(ok).startswith("English kept: worst loss 0.025")
    bad = english_regression({"base": base, "tuned": lost}, 0.05)
    assert bad["flagged"] and [c["over"] for c in bad["checks"]] == [False, True, False]
    assert "ENGLISH REGRESSION" in verdict_line(bad) and "arc_easy" in verdict_line(bad)
    assert english_regression({"base": {}, "tuned": {}}, 0.05) == {"max": 0.05, "checks": [], "flagged": False}

