"""The `remote` engine: translate through an OpenAI-compatible server on loopback.

    python -m pytest -q tests/test_engine_remote.py

Against `mothertongue serve` with a tiny random-weight chat model (the translations are the
server's own greedy answers to the recipe's prompt), and against small stdlib servers that fail
twice with HTTP 500 before answering, count concurrent requests and check the API key, or never
answer (a timeout: one-line error, nothing written). The CLI prints such a StageError/RecipeError as
its one `error:` line (tests/test_cli.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import run_recipe, start_server
from mothertongue.errors import RecipeError, StageError
from stub_openai import Stub

pytest.importorskip("fastapi")

TEXTS = [
    "The cat sleeps on the warm mat.",
    "Dogs like long walks in the park.",
    "We read a book together tonight.",
]


def write_recipe(tmp: Path, options: dict, extra: str = "", texts: list[str] = TEXTS) -> Path:
    (tmp / "d.txt").write_text("".join(f"{t}#{t}\n" for t in texts), encoding="utf-8")
    p = tmp / "r.yaml"
    p.write_text(
        f"run_dir: {tmp / 'run'}\nlanguage: de\n"
        "ingest:\n  sources:\n    - {path: d.txt, format: text, options: {lang: en}}\n"
        "translate:\n  enabled: true\n  engine: remote\n  model: tiny-chat\n  progress: false\n"
        f"  quality_gate: false\n  options: {json.dumps(options)}\n{extra}",
        encoding="utf-8",
    )
    return p


def translate(recipe: Path, force: bool = False) -> dict:
    """Ingest (when needed) and translate in-process; returns the translate report."""
    run_recipe(recipe, [], stages=["ingest"])
    run_recipe(recipe, [], stages=["translate"], force=force)
    return json.loads((recipe.parent / "run" / "translate" / "report.json").read_text())


def memory_rows(tmp: Path) -> list[tuple]:
    db = tmp / "run" / "translate-memory.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        return c.execute("SELECT engine, model, source, target FROM tm ORDER BY source").fetchall()


# ----------------------------------------------------------------------- mothertongue serve
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`mothertongue serve` of a tiny random chat model on a loopback port; yields its /v1 URL."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mothertongue import templates
    from mothertongue.config import ServeConfig
    from mothertongue.models import train_tiny_tokenizer
    from mothertongue.serve_engine import build_engine

    folder = tmp_path_factory.mktemp("remote") / "tiny-chat"
    t = templates.resolve("chatml", None)
    tok = train_tiny_tokenizer(
        TEXTS * 10 + ["Übersetze ins Deutsche. Die Katze schläft."] * 10, 300, t.special_tokens
    )
    templates.install(t, tok)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    # One request per batch: the answers must not depend on which requests happen to share a batch.
    engine = build_engine(folder, cfg=ServeConfig(max_batch_size=1, max_new_tokens_limit=64))
    server, thread, url = start_server(engine)
    yield f"{url}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def ask(url: str, body: dict) -> str:
    req = urllib.request.Request(
        url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"].strip()


@pytest.mark.slow  # a tiny model served in this process: about 10 s with its imports
def test_translates_through_mothertongue_serve(served, tmp_path):
    from mothertongue.engines import load_engine

    opts = {"url": served, "max_tokens": 12, "concurrency": 3}
    report = translate(write_recipe(tmp_path, opts))
    seg = report["segments"]
    assert (
        seg["translated"] == seg["segments"] == len(TEXTS)
    )  # instruction == response: one segment each
    eng = load_engine("remote", "tiny-chat", options=opts)
    rows = memory_rows(tmp_path)
    assert [r[2] for r in rows] == sorted(TEXTS)
    for key, model, source, target in rows:
        assert key == eng.settings_key(1) and model == "tiny-chat"
        assert target == ask(
            served, eng.request_body(source, "en", "de")
        )  # the server's own answer
    assert report["engine"] == "remote"
    # Same settings: all from the memory. Another prompt is another memory key: translated again.
    assert translate(write_recipe(tmp_path, opts), force=True)["segments"]["translated"] == 0
    opts2 = {**opts, "prompt": "Auf Deutsch: {text}"}
    assert translate(write_recipe(tmp_path, opts2), force=True)["segments"]["translated"] == len(
        TEXTS
    )
    assert len({r[0] for r in memory_rows(tmp_path)}) == 2


def test_retries_500s_then_succeeds(tmp_path):
    from mothertongue.engines import load_engine

    stub = Stub(fail_first=2)
    try:
        eng = load_engine(
            "remote",
            "m",
            options={"url": stub.url, "backoff": 0.05, "retries": 3, "concurrency": 1},
        )
        assert eng.translate(["Hello there."], "en", "de") == ["[de] Hello there."]
        assert stub.requests == 3
    finally:
        stub.close()
    stub = Stub(fail_first=100)
    try:  # retries exhausted: one line naming the cause
        eng = load_engine("remote", "m", options={"url": stub.url, "backoff": 0.01, "retries": 2})
        with pytest.raises(Exception, match=r"HTTP 500 \(overloaded\) after 3 attempt"):
            eng.translate(["Hello."], "en", "de")
    finally:
        stub.close()


def test_concurrency_rate_limit_and_key_from_environment(tmp_path, monkeypatch):
    stub = Stub(delay=0.05)
    texts = [f"Sentence number {i} is here." for i in range(12)]
    try:
        monkeypatch.setenv("MT_TEST_KEY", "s3cret-value")
        opts = {"url": stub.url, "concurrency": 4, "api_key_env": "MT_TEST_KEY"}
        recipe = write_recipe(tmp_path, opts, texts=texts)
        translate(recipe)
        got = [
            json.loads(line)
            for line in (tmp_path / "run" / "translate" / "train.jsonl").read_text().splitlines()
        ]
        assert sorted(c["messages"][0]["content"] for c in got) == sorted(
            f"[de] {t}" for t in texts
        )
        assert 1 < stub.max_in_flight <= 4
        assert stub.auth == {"Bearer s3cret-value"}
        for f in (tmp_path / "run").rglob("*"):  # the key itself is stored nowhere
            assert not f.is_file() or b"s3cret-value" not in f.read_bytes(), f
    finally:
        stub.close()
    from mothertongue.engines import load_engine

    stub = Stub()
    try:  # 10 requests at 20/s take at least 0.45 s
        eng = load_engine(
            "remote", "m", options={"url": stub.url, "requests_per_second": 20, "concurrency": 8}
        )
        t0 = time.monotonic()
        eng.translate(texts[:10], "en", "de")
        assert time.monotonic() - t0 >= 0.44
    finally:
        stub.close()
    monkeypatch.delenv("MT_TEST_KEY")
    with pytest.raises(
        RecipeError,
        match="^translate.options.api_key_env: environment variable MT_TEST_KEY is not set$",
    ):
        translate(recipe, force=True)


def test_server_that_never_answers_times_out_in_one_line(tmp_path):
    stub = Stub(hang=True)
    try:
        recipe = write_recipe(
            tmp_path, {"url": stub.url, "timeout": 0.3, "retries": 1, "backoff": 0.05}
        )
        with pytest.raises(StageError, match=r"no answer within 0.3 s after 2 attempt\(s\)") as e:
            translate(recipe)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "run" / "translate").exists()
        assert memory_rows(tmp_path) == []
    finally:
        stub.close()


def test_options_are_strict():
    from mothertongue.engines import load_engine

    with pytest.raises(RecipeError, match="concurency"):
        load_engine("remote", "m", options={"concurency": 4})
    with pytest.raises(RecipeError, match="url must start with http"):
        load_engine("remote", "m", options={"url": "localhost:8000"})


def test_failed_gate_is_not_asked_again_when_the_answer_would_repeat(tmp_path):
    stub = Stub()
    try:  # "[de] <English sentence>" fails the gate's language check; a greedy retry would repeat it
        texts = ["The weather today is sunny and pleasantly warm outside.", "Hi."]
        recipe = write_recipe(tmp_path, {"url": stub.url}, "  quality_gate: true\n", texts)
        recipe.write_text(recipe.read_text().replace("  quality_gate: false\n", ""))
        seg = translate(recipe)["segments"]
        assert seg["translated"] == 2 and seg["flagged"] == 1 and seg["retried"] == 0
        assert stub.requests == 2
    finally:
        stub.close()
