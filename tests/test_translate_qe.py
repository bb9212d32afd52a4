"""LLM-judge quality estimation (`translate.quality_estimation`): every translated segment is scored
by a judge behind an OpenAI-compatible URL; a broken translator's segments are flagged, scores are
kept per segment in the memory beside the round-trip score, a rerun asks the judge nothing again,
an answer without a score is counted, and a judge that never answers is one line.

    python -m pytest -q tests/test_translate_qe.py

The judge is a stub server on loopback that scores like a bilingual reader would: chrF of the
translation against the exact translation of the source. What is under test is the stage's side:
the prompt carries source and translation, scores land in the memory, flags follow the threshold.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path

import pytest

from stub_openai import Stub
from test_translate import read, run_translate
from test_translate_fixtures import random_sentence, to_xx
from test_translate_roundtrip import wrong_xx

pytestmark = pytest.mark.slow

ASKED = re.compile(r'English source: "(.*)"\nxx translation: "(.*)"\nScore:', re.S)


def judge(prompt: str) -> str:
    from sacrebleu.metrics import CHRF

    source, translation = ASKED.search(prompt).groups()
    if "moon" in source.split():  # a judge that sometimes answers without a score
        return "I cannot rate this."
    return f"{CHRF().sentence_score(translation, [to_xx(source)]).score:.0f}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("qe")
    rng = random.Random(5)
    sents = sorted({random_sentence(rng, 3, 6, ).rstrip(".!?") + "." for _ in range(40)})
    for name, fn in (("good", to_xx), ("bad", wrong_xx)):
        (root / f"{name}.tsv").write_text("".join(f"{s}\t{fn(s)}\n" for s in sents), encoding="utf-8")
    (root / "back.tsv").write_text("".join(f"{to_xx(s)}\t{s}\n" for s in sents), encoding="utf-8")
    return root, sents


def _recipe(root: Path, sents: list[str], forward: str, folder: str, url: str, extra: str = "") -> Path:
    convs = [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
             for a, b in zip(sents[::2], sents[1::2])]
    data = root / f"{folder}.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
    recipe = root / f"{folder}.yaml"
    toys = root / "toy-mt"  # the toy models, trained once for all runs (their folders are named by data hash)
    toys.mkdir(exist_ok=True)
    (root / folder).mkdir(exist_ok=True)
    if not (root / folder / "toy-mt").exists():
        (root / folder / "toy-mt").symlink_to(toys)
    recipe.write_text(
        f"name: qe\nrun_dir: {root / folder}\nlanguage: xx\n"
        f"ingest:\n  sources:\n    - {{path: {data}, format: openai, options: {{lang: en}}}}\n"
        f"translate:\n  enabled: true\n  progress: false\n  models: {{en-xx: 'toy:{forward}.tsv', xx-en: 'toy:back.tsv'}}\n"
        f"  round_trip: {{enabled: true, min_chrf: 0}}\n"
        f"  quality_estimation: {{enabled: true, url: '{url}', model: judge, min_score: 60, concurrency: 4{extra}}}\n",
        encoding="utf-8")
    return recipe


def _memory(r) -> list[tuple[str, str, dict]]:
    db = sqlite3.connect(Path(r.run_dir) / "translate-memory.sqlite")
    rows = db.execute("SELECT source, status, scores FROM tm WHERE src='en' AND tgt='xx'").fetchall()
    db.close()
    return [(s, st, json.loads(sc)) for s, st, sc in rows]


def test_judge_flags_a_broken_translator_and_is_asked_once(corpus):
    root, sents = corpus
    unjudgeable = sum("moon" in s.split() for s in sents)
    assert 0 < unjudgeable < len(sents) // 2
    stub = Stub(answer=judge)
    try:
        _, good = run_translate(_recipe(root, sents, "good", "good-run", stub.url))
        qe = json.loads((good / "report.json").read_text())["segments"]["quality_estimation"]
        assert qe["asked"] == len(sents) and qe["unparsed"] == unjudgeable, qe
        assert qe["scored"] == len(sents) - unjudgeable and qe["flagged"] == 0 and qe["mean_score"] > 90, qe
        assert stub.requests == len(sents)

        stub.requests = 0
        r, bad = run_translate(_recipe(root, sents, "bad", "bad-run", stub.url))
        qe = json.loads((bad / "report.json").read_text())["segments"]["quality_estimation"]
        assert qe["mean_score"] < 40 and qe["flagged"] >= 0.9 * qe["scored"], qe
        assert stub.requests == len(sents)
        rows = _memory(r)
        assert len(rows) == len(sents)
        # Both checks' scores sit side by side in the memory; the unparsed keep no score.
        assert all("round_trip_chrf" in sc and sc["qe_judge"].startswith("qe:") for _, _, sc in rows)
        assert all(sc["qe"] is None for s, _, sc in rows if "moon" in s.split())
        flagged = [sc["qe"] for _, st, sc in rows if st == "flagged:quality-estimation"]
        assert len(flagged) == qe["flagged"] and all(v < 60 for v in flagged)
        assert len(read(bad / "flagged.jsonl")) >= 1

        # A forced rerun asks the judge nothing and reaches the same verdict.
        from mothertongue.runs import run_stage

        stub.requests = 0
        again = run_stage(r, "translate", force=True, log=lambda m: None).summary["segments"]
        assert stub.requests == 0 and again["translated"] == 0
        assert again["quality_estimation"]["flagged"] == qe["flagged"]
        assert again["quality_estimation"]["asked"] == 0
    finally:
        stub.close()


def test_a_judge_that_never_answers_is_one_line_and_keeps_the_translations(corpus):
    from mothertongue.errors import StageError

    root, sents = corpus
    stub = Stub(hang=True)
    try:
        recipe = _recipe(root, sents[:6], "good", "hang-run", stub.url, ", timeout: 0.5, retries: 0")
        with pytest.raises(StageError, match=r"^translate\.quality_estimation \(judge, http://127\.0\.0\.1:\d+/v1/chat"
                                             r"/completions\): no answer within 0\.5 s after 1 attempt"):
            run_translate(recipe)
    finally:
        stub.close()
    from mothertongue.config import load_recipe

    r = load_recipe(recipe)
    assert not (Path(r.run_dir) / "translate").exists()
    rows = _memory(r)
    assert len(rows) == 6 and all("qe" not in sc for _, _, sc in rows)  # translated and kept, not judged
