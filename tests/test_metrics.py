"""Metrics and prompt suites of the evaluate stage, on inputs written for the test.

    python -m pytest -q tests/test_metrics.py
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from mothertongue.conversation import DataError
from mothertongue.metrics.behaviour import behaviour_scores, repetition
from mothertongue.metrics.benchmarks import fold_results, main_score
from mothertongue.metrics.reference import bleu, chrf, exact_match_rate
from mothertongue.metrics.suites import load_suite, read_parallel, read_texts, shipped_suites


def test_shipped_suites_cover_the_categories():
    assert {"de", "en"} <= set(shipped_suites())
    name, de = load_suite("de", Path("."))
    assert name == "prompts-de" and len(de) >= 60
    cats = {i.category for i in de}
    assert {"open", "explain", "advice", "writing", "list", "maths", "code", "followup"} <= cats
    assert all(i.lang == "de" for i in de)
    multi = [i for i in de if i.category == "followup"]
    assert multi and all(len(i.messages) == 3 and i.messages[-1]["role"] == "user" for i in multi)
    assert len({i.id for i in de}) == len(de)
    _, en = load_suite("en", Path("."))
    assert len(en) >= 20 and all(i.lang == "en" for i in en)


def test_own_suites_jsonl_and_text(tmp_path):
    (tmp_path / "mine.jsonl").write_text(
        '{"prompt": "Wie spät ist es?", "lang": "de"}\n\n'
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hallo"}, {"role": "user", "content": "Und?"}], "reference": "Gut."}\n',
        encoding="utf-8")
    name, items = load_suite("mine.jsonl", tmp_path)
    assert name == "prompts-mine" and len(items) == 2
    assert items[1].reference == "Gut." and len(items[1].messages) == 3
    (tmp_path / "mine.txt").write_text("# comment\nNenne drei Farben.#Rot, Grün und Blau.\nErzähl einen Witz.\n", encoding="utf-8")
    _, items = load_suite("mine.txt", tmp_path)
    assert [i.reference for i in items] == ["Rot, Grün und Blau.", None]


@pytest.mark.parametrize("line,needle", [
    ('{"prompt": ""}', "bad.jsonl:2: field 'prompt'"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}', "bad.jsonl:2: field 'messages' must end with a user turn"),
    ('{"messages": [{"role": "bot", "content": "a"}]}', "bad.jsonl:2: messages[0].role"),
    ("not json", "bad.jsonl:2: not valid JSON"),
])
def test_bad_suite_lines_name_file_line_field(tmp_path, line, needle):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_suite("bad.jsonl", tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_suite_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown prompt suite 'xx'; shipped: de, en"):
        load_suite("xx", tmp_path)
    with pytest.raises(DataError, match="file not found: nope.jsonl"):
        load_suite("nope.jsonl", tmp_path)


def test_parallel_and_text_files(tmp_path):
    (tmp_path / "p.tsv").write_text("Good morning.\tGuten Morgen.\nThank you.\tDanke.\n", encoding="utf-8")
    assert read_parallel(tmp_path / "p.tsv") == [("Good morning.", "Guten Morgen."), ("Thank you.", "Danke.")]
    (tmp_path / "bad.tsv").write_text("Good morning.\tGuten Morgen.\nonly one field\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected `source<TAB>reference`"):
        read_parallel(tmp_path / "bad.tsv")
    (tmp_path / "t.jsonl").write_text('{"text": "Der Hund schläft."}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="t.jsonl:2: field 'text'"):
        read_texts(tmp_path / "t.jsonl")


def test_reference_metrics():
    refs = ["Guten Morgen, wie geht es dir?", "Der Hund schläft im Garten."]
    assert exact_match_rate(["Guten  Morgen, wie geht es dir?", "Die Katze"], refs) == 0.5
    assert chrf(refs, refs) == pytest.approx(100.0)
    assert bleu(refs, refs) == pytest.approx(100.0)
    worse = ["Guten Abend, wie geht es?", "Der Hund schläft."]
    assert 0 < bleu(worse, refs) < 100 and 0 < chrf(worse, refs) < 100
    assert chrf(["Good morning", "The dog"], refs) < chrf(worse, refs)


def test_behaviour_metrics():
    assert repetition("ja ja ja ja ja ja") == 0.75  # 4 word 3-grams, 3 repeat the first
    assert repetition("Der Hund schläft heute ruhig im warmen Garten.") == 0.0
    loop = "Ich bin hier. Ich bin hier. Ich bin hier. Ich bin hier."
    assert 0.5 < repetition(loop) < 1.0
    s = behaviour_scores(["Hallo Welt.", loop], [True, False], [3, 48])
    assert s["ended_at_eot"] == 0.5 and s["mean_reply_tokens"] == 25.5 and s["repetitive"] == 0.5


def test_lm_eval_results_fold_into_scorecard_shape():
    # The shape lm-eval's simple_evaluate returns under "results" (keys "metric,filter").
    results = {"arc_de": {"alias": "arc_de", "acc,none": 0.25, "acc_stderr,none": 0.01, "acc_norm,none": 0.3},
               "xnli_de": {"acc,none": 0.41, "acc_stderr,none": 0.02}}
    assert main_score(results["arc_de"]) == ("acc_norm", 0.3)
    assert fold_results(results, ["arc_de", "xnli_de", "missing"]) == {"n": 2, "arc_de (acc_norm)": 0.3, "xnli_de (acc)": 0.41}


def test_benchmarks_without_lm_eval_say_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` now fails as if it were absent
    from mothertongue.config import Recipe
    from mothertongue.metrics.benchmarks import run_benchmarks

    out, note = run_benchmarks(None, None, Recipe())
    assert out == {} and "lm-eval is not installed" in note


class _GermanPreferringJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose 'model' prefers the reply lingua calls German."""

    def do_POST(self):  # noqa: N802
        from mothertongue.metrics.fidelity import FidelityJudge

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"]
        a = text.split("Reply A:\n", 1)[1].split("\n\nReply B:\n", 1)[0]
        b = text.split("Reply B:\n", 1)[1].split("\n\nWhich reply", 1)[0]
        lid = FidelityJudge("de", ["en"])
        verdict = "A" if lid.detect(a) == "de" and lid.detect(b) != "de" else "B" if lid.detect(b) == "de" and lid.detect(a) != "de" else "T"
        self.server.seen.append(self.headers.get("Authorization"))
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def test_pairwise_judge_over_an_openai_compatible_endpoint(monkeypatch):
    from mothertongue.config import Recipe
    from mothertongue.metrics.judge import judge_pairwise

    server = HTTPServer(("127.0.0.1", 0), _GermanPreferringJudge)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MY_JUDGE_KEY", "secret")
    recipe = Recipe.model_validate({"evaluate": {"judge": {
        "enabled": True, "endpoint": f"http://127.0.0.1:{server.server_port}/v1", "model": "judge", "api_key_env": "MY_JUDGE_KEY"}}})
    de = "Der Hund schläft ruhig im warmen Garten hinter dem Haus."
    en = "The dog is sleeping quietly in the warm garden behind the house."
    rows = [("1", de, en), ("2", de, en), ("3", en, de), ("4", de, de)]  # (id, tuned, base)
    gens = []
    for i, tuned, base in rows:
        gens += [{"model": "tuned", "set": "prompts-de", "id": i, "prompt": "Wo ist der Hund?", "reply": tuned},
                 {"model": "base", "set": "prompts-de", "id": i, "prompt": "Wo ist der Hund?", "reply": base}]
    try:
        res = judge_pairwise(gens, recipe)
    finally:
        server.shutdown()
    assert res["tuned"] == 2 and res["base"] == 1 and res["tie"] == 1 and res["invalid"] == 0 and res["n"] == 4
    assert server.seen and set(server.seen) == {"Bearer secret"}
    down = Recipe.model_validate({"evaluate": {"judge": {"enabled": True, "endpoint": "http://127.0.0.1:9/v1"}}})
    assert "judge request failed" in judge_pairwise(gens, down)["error"]


def test_perplexity_and_bits_per_byte_count_every_token_once(tiny_tokenizer):
    """One pass gives both numbers; a text longer than the window is scored in windows with no
    token lost or counted twice, and bits per byte is the same log-likelihood over UTF-8 bytes."""
    import math

    from mothertongue.config import TinyModelConfig
    from mothertongue.metrics.perplexity import text_scores
    from mothertongue.models import build_tiny_model

    model = build_tiny_model(TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2), tiny_tokenizer, seed=0)
    texts = ["Nenne drei Farben: Rot, Grün und Blau. " * 12, "Hallo Welt!", "   "]
    n_tokens = sum(len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts[:2])
    assert n_tokens > 40
    for window in (16, 512):
        s = text_scores(model, tiny_tokenizer, texts, batch_size=2, max_length=window)
        assert s["tokens"] == n_tokens and s["bytes"] == sum(len(t.encode()) for t in texts[:2])
        nll = math.log(s["perplexity"]) * s["tokens"]
        assert s["bits_per_byte"] == pytest.approx(nll / math.log(2) / s["bytes"], abs=1e-4)
        # A random model is close to uniform over the vocabulary.
        assert len(tiny_tokenizer) / 3 < s["perplexity"] < len(tiny_tokenizer) * 3
    assert text_scores(model, tiny_tokenizer, ["  "]) is None
