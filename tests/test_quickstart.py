"""The shipped quickstart: English instructions translated into German by a toy MT model trained on
the spot, then a tiny model taught to answer them in German."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "recipes" / "data"


def german_reference() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out) instruction/response pairs of recipes/data/quickstart_de.txt."""
    parts: tuple[list, list] = ([], [])
    held_out = False
    for line in (DATA / "quickstart_de.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            held_out = held_out or "_EVAL_" in line
            continue
        if line.strip():
            prompt, _, answer = line.partition("#")
            parts[held_out].append((prompt, answer))
    return parts


def translated(run: Path, split: str) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in (run / "translate" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows]


def test_quickstart_translates_the_english_data_exactly(quickstart_run):
    report = json.loads((quickstart_run / "translate" / "report.json").read_text())
    assert report["flagged"] == [], report["flagged"]
    assert report["messages_by_pair"] == {"en->de": 154}  # 77 instructions and their 77 answers
    assert report["passthrough_messages"] == 0
    segments = report["segments"]
    assert segments["translated"] + segments["from_memory"] == segments["segments"] == 162
    assert segments["flagged"] == 0
    train, held_out = german_reference()
    assert sorted(translated(quickstart_run, "train")) == sorted(train)
    assert sorted(translated(quickstart_run, "test")) == sorted(held_out)
    # inline code and the placeholder came back byte for byte
    assert ("Erkläre den Befehl `ls -l` in einem Satz.", "Der Befehl `ls -l` listet Dateien mit Details auf.") in train
    assert ("Begrüße {name} mit Namen.", "Hallo {name}, schön, dich zu sehen!") in train


def test_quickstart_learns_and_stops(quickstart_run):
    card = json.loads((quickstart_run / "evaluate" / "scorecard.json").read_text())
    tuned, base = card["models"]["tuned"], card["models"]["base"]
    assert tuned["train"]["n"] >= 60
    assert tuned["train"]["exact_match"] >= 0.90
    assert base["train"]["exact_match"] == 0.0
    assert tuned["train"]["ended_at_eot"] == 1.0
    assert tuned["held-out"]["ended_at_eot"] == 1.0
    assert tuned["held-out"]["chrf"] > base["held-out"]["chrf"] + 10


def test_quickstart_artifacts(quickstart_run):
    for stage in ("ingest", "translate", "build", "train", "evaluate"):
        assert (quickstart_run / stage / "manifest.json").exists()
        assert not (quickstart_run / f"{stage}.partial").exists()
    assert (quickstart_run / "recipe.resolved.yaml").exists()
    assert (quickstart_run / "train" / "model" / "model.safetensors").exists()
    assert (quickstart_run / "train" / "loss.png").exists()
    report = json.loads((quickstart_run / "ingest" / "report.json").read_text())
    assert report["splits"] == {"train": 67, "dev": 0, "test": 10}
    gens = [json.loads(x) for x in (quickstart_run / "evaluate" / "generations.jsonl").read_text().splitlines()]
    assert {g["model"] for g in gens} == {"base", "tuned"}


def test_quickstart_rerun_skips_every_stage(quickstart_run):
    from helpers import mt

    res = mt("run", REPO / "recipes" / "quickstart.yaml", f"run_dir={quickstart_run}", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for stage in ("ingest", "translate", "build", "train", "evaluate"):
        assert f"[{stage}] skipped" in res.stdout, res.stdout
