"""The foundation's acceptance: the shipped quickstart teaches the tiny model its instructions."""

from __future__ import annotations

import json


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
    for stage in ("ingest", "build", "train", "evaluate"):
        assert (quickstart_run / stage / "manifest.json").exists()
        assert not (quickstart_run / f"{stage}.partial").exists()
    assert (quickstart_run / "recipe.resolved.yaml").exists()
    assert (quickstart_run / "train" / "model" / "model.safetensors").exists()
    assert (quickstart_run / "train" / "loss.png").exists()
    report = json.loads((quickstart_run / "ingest" / "report.json").read_text())
    assert report["splits"] == {"train": 65, "dev": 0, "test": 10}
    gens = [json.loads(x) for x in (quickstart_run / "evaluate" / "generations.jsonl").read_text().splitlines()]
    assert {g["model"] for g in gens} == {"base", "tuned"}
