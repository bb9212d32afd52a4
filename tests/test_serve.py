"""The OpenAI-compatible server on a loopback port, with real HTTP clients (httpx and openai)."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import start_server

try:  # the HTTP library the installed openai client uses (httpx, or its successor httpx2)
    import httpx2 as httpx
except ImportError:
    httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

PROMPTS = {
    "Nenne drei Farben.": None, "Sag hallo.": None, "Nenne drei Tiere.": None,
    "Verabschiede dich.": None, "Nenne drei Monate.": None,
}




@pytest.fixture(scope="module")
def engine(quickstart_run):
    from mothertongue.config import ServeConfig
    from mothertongue.serve import build_engine

    cfg = ServeConfig(max_request_bytes=20_000, max_new_tokens_limit=64, max_batch_size=8, max_queue=64)
    return build_engine(quickstart_run, cfg=cfg)


@pytest.fixture(scope="module")
def server(engine):
    srv, thread, url = start_server(engine)
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def expected(engine):
    """Each prompt answered alone, in-process, with the same greedy settings."""
    from mothertongue.generation import generate

    mnt = min(engine.chat_cfg.max_new_tokens, engine.cfg.max_new_tokens_limit)
    kw = {"do_sample": False, "num_beams": 1, "max_new_tokens": mnt}
    out = {}
    for p in PROMPTS:
        msgs = engine.messages_for([{"role": "user", "content": p}])
        out[p] = generate(engine.model, engine.tokenizer, [msgs], engine.stop_ids, **kw)[0].text
    return out


def _chat(url, content, **extra):
    body = {"model": "quickstart", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def test_health_and_models(server):
    h = httpx.get(f"{server}/health", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok"
    m = httpx.get(f"{server}/v1/models", timeout=10).json()
    assert m["object"] == "list" and [d["id"] for d in m["data"]] == ["quickstart"]


def test_completion_is_the_tuned_answer(server, expected):
    r = _chat(server, "Nenne drei Farben.")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "quickstart"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected["Nenne drei Farben."]}
    assert choice["finish_reason"] == "stop"
    u = body["usage"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    cut = _chat(server, "Nenne drei Farben.", max_tokens=2).json()["choices"][0]
    assert cut["finish_reason"] == "length"


def test_stream_chunks_are_well_formed(server, expected):
    chunks, done = [], False
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=120, json={
        "model": "quickstart", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Nenne drei Tiere."}]}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                continue
            assert line.startswith("data: "), line
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                continue
            assert not done, "nothing after [DONE]"
            chunks.append(json.loads(payload))
    assert done
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "quickstart" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 2
    assert text == expected["Nenne drei Tiere."]


def test_official_openai_client(server, expected):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=120, max_retries=0)
    assert [m.id for m in client.models.list()] == ["quickstart"]
    r = client.chat.completions.create(model="quickstart", messages=[{"role": "user", "content": "Sag hallo."}])
    assert r.choices[0].message.content == expected["Sag hallo."]
    assert r.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model="quickstart", stream=True, messages=[{"role": "user", "content": "Sag hallo."}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected["Sag hallo."]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hallo"}])


@pytest.mark.parametrize("body, status, words", [
    (b'{"model": "quickstart", "messages": [', 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"model": "quickstart"}', 400, "messages"),
    (b'{"messages": []}', 400, "messages"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
    (b'{"messages": [{"role": "user"}]}', 400, "content"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}', 400, "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature"),
    (b'{"messages": [{"role": "assistant", "content": "x"}]}', 400, "last message"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', 400, "n"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stop": ["."]}', 400, "stop"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": "yes"}', 400,
     "stream_options"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream_options": [1]}', 400, "stream_options"),
    (b'{"messages": [{"role": "user", "content": "x"}], "seed": 9223372036854775808}', 400, "seed"),
    (b'{"messages": [{"role": "user", "content": "x"}], "seed": 99999999999999999999999}', 400, "seed"),
    (b'{"messages": [{"role": "user", "content": "x"}], "seed": -9223372036854775809}', 400, "seed"),
    (b'{"messages": [{"role": "user", "content": "x"}], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400,
     "nested deeper"),
    (b'{"messages": [{"role": "user", "content": "x"}], "x": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", 400,
     "nested deeper"),
    (b"[" * 5000, 400, "nested deeper"),
], ids=lambda v: v[:60].decode() if isinstance(v, bytes) else str(v))
def test_bad_requests_get_4xx_json_and_server_keeps_serving(server, expected, body, status, words):
    r = httpx.post(f"{server}/v1/chat/completions", content=body, timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] and err["type"]
    ok = _chat(server, "Nenne drei Monate.")
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == expected["Nenne drei Monate."]


def test_oversized_long_prompt_and_unknown_route(server, engine):
    big = httpx.post(f"{server}/v1/chat/completions", timeout=30,
                     json={"messages": [{"role": "user", "content": "x" * 50_000}]})
    assert big.status_code == 413 and "bytes" in big.json()["error"]["message"]
    # Under the byte limit but longer than the context: a token limit, not a crash.
    long = httpx.post(f"{server}/v1/chat/completions", timeout=30,
                      json={"messages": [{"role": "user", "content": "Nenne drei Farben. " * 400}]})
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    assert httpx.get(f"{server}/v2/nothing", timeout=10).status_code == 404
    assert httpx.get(f"{server}/v1/chat/completions", timeout=10).status_code == 405
    assert httpx.get(f"{server}/health", timeout=10).json()["status"] == "ok"


def test_twenty_concurrent_requests_all_answered_right(server, expected):
    prompts = [list(PROMPTS)[i % len(PROMPTS)] for i in range(20)]

    def one(i):
        if i % 4 == 3:  # some streaming requests mixed into the batch traffic
            with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=300, json={
                    "stream": True, "messages": [{"role": "user", "content": prompts[i]}]}) as r:
                lines = [x for x in r.iter_lines() if x.startswith("data: {")]
                text = "".join(json.loads(x[6:])["choices"][0]["delta"].get("content", "") for x in lines)
                return r.status_code, text
        r = _chat(server, prompts[i])
        return r.status_code, r.json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [s for s, _ in results] == [200] * 20
    assert [t for _, t in results] == [expected[p] for p in prompts]


def test_concurrent_streams_are_batched_and_each_stream_is_its_own(server, expected):
    """Streamed requests waiting together are answered by one batched generation; each client
    still gets exactly its own reply, chunk by chunk."""
    prompts = list(PROMPTS) * 2
    # A long request with other settings keeps the worker busy while the streams queue up.
    busy = ThreadPoolExecutor(1).submit(_chat, server, "Nenne drei Farben.", max_tokens=64, temperature=1.5, seed=1)

    def stream(p):
        with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=300, json={
                "stream": True, "messages": [{"role": "user", "content": p}]}) as r:
            lines = [x for x in r.iter_lines() if x.startswith("data: {")]
        return r.status_code, [json.loads(x[6:])["choices"][0]["delta"].get("content", "") for x in lines]

    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(stream, prompts))
    assert busy.result().status_code == 200
    assert [s for s, _ in results] == [200] * len(prompts)
    assert ["".join(chunks) for _, chunks in results] == [expected[p] for p in prompts]
    health = httpx.get(f"{server}/health", timeout=10).json()
    assert health["largest_batch"]["streamed"] >= 2, health


def test_api_key(engine):
    srv, thread, url = start_server(engine, api_key="s3cret")
    try:
        body = {"messages": [{"role": "user", "content": "Sag hallo."}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code == 401
        wrong = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        good = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60,
                          headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200, "health needs no key"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_sampling_with_seed_is_repeatable(server):
    kw = {"temperature": 2.0, "top_p": 1.0, "max_tokens": 12, "seed": 7}
    a = _chat(server, "Nenne drei Farben.", **kw)
    b = _chat(server, "Nenne drei Farben.", **kw)
    assert a.status_code == b.status_code == 200
    assert a.json()["choices"][0]["message"]["content"] == b.json()["choices"][0]["message"]["content"]
    for seed in (2**63 - 1, -(2**63)):  # the ends of OpenAI's int64 range are served, repeatably
        c, d = (_chat(server, "Nenne drei Farben.", **{**kw, "seed": seed}) for _ in range(2))
        assert c.status_code == d.status_code == 200, c.text
        assert c.json()["choices"][0]["message"]["content"] == d.json()["choices"][0]["message"]["content"]


def test_style_extension_sets_the_system_prompt(server, engine):
    from mothertongue.prompts import style_system_prompt

    plain = _chat(server, "Sag hallo.").json()["usage"]["prompt_tokens"]
    styled = _chat(server, "Sag hallo.", style="pirate")
    assert styled.status_code == 200
    want = engine.messages_for([{"role": "user", "content": "Sag hallo."}], "pirate")
    assert want[0] == {"role": "system", "content": style_system_prompt("de", "pirate", engine.system)}
    from mothertongue.generation import prompt_ids

    assert styled.json()["usage"]["prompt_tokens"] == len(prompt_ids(engine.tokenizer, want)) != plain


def _engine_with(engine, **cfg):
    """Another Engine on the same loaded model, with other serve settings."""
    from mothertongue.serve import Engine

    return Engine(engine.model, engine.tokenizer, engine.stop_ids, engine.chat_cfg,
                  engine.cfg.model_copy(update=cfg), engine.name, engine.system, engine.language)


@pytest.mark.slow
def test_health_stays_fast_while_large_prompts_are_rendered(engine):
    """Rendering and tokenizing a large prompt takes a while; it must not block the event loop,
    so /health (and every other client) is answered meanwhile."""
    big = _engine_with(engine, max_request_bytes=10_000_000, request_timeout=120)
    srv, thread, url = start_server(big)
    body = {"messages": [{"role": "user", "content": "Nenne drei Farben und Tiere. " * 60_000}]}
    try:
        t0 = time.perf_counter()
        alone = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        t_alone = time.perf_counter() - t0
        assert alone.json()["error"]["code"] == "context_length_exceeded"
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=300)
                       for _ in range(4)]
            latencies = []
            time.sleep(0.1)
            while not all(f.done() for f in futures):
                t = time.perf_counter()
                assert httpx.get(f"{url}/health", timeout=60).status_code == 200
                latencies.append(time.perf_counter() - t)
                time.sleep(0.05)
            assert all(f.result().status_code == 400 for f in futures)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
    assert len(latencies) >= 3, f"requests were in flight only briefly ({t_alone:.2f} s alone)"
    # Blocked, /health would wait for at least one whole rendering (t_alone, over a second here);
    # off the loop it waits only for CPU time: ~10 ms on a quiet machine, ~0.6 s at load 20 on 2 cores.
    assert t_alone > 0.5, f"the large request must be slow enough to show a blocked loop ({t_alone:.2f} s)"
    assert max(latencies) < t_alone / 2, (max(latencies), t_alone)


def _trickle_headers(sock: socket.socket) -> tuple[bytes, float]:
    """Send a request's header lines one every 0.25 s, never finishing; (what came back, when)."""
    t0, got = time.perf_counter(), b""
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    for i in range(20):
        try:
            sock.sendall(f"x-slow-{i}: y\r\n".encode())
        except OSError:
            break
        time.sleep(0.25)
        sock.settimeout(0.01)
        try:
            chunk = sock.recv(1024)
        except TimeoutError:
            continue
        got += chunk
        if not chunk or b"408" in got:
            break
    return got, time.perf_counter() - t0


def test_slow_headers_and_body_are_cut_off(engine):
    """A client that sends its request headers slowly (slowloris) is answered 408 and closed
    after serve.request_timeout, on a new connection and on a kept-alive one; a body that never
    finishes arriving gets 408 too; other clients are served meanwhile."""
    quick = _engine_with(engine, request_timeout=1.0)
    srv, thread, url = start_server(quick)
    port = int(url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            got, after = _trickle_headers(slow)
        assert got.startswith(b"HTTP/1.1 408"), got
        assert 0.8 < after < 3.0, after
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            first = b""
            while not first.endswith(b"}}"):  # the whole response: headers and the JSON body
                first += kept.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
            got, after = _trickle_headers(kept)  # the next request on it has its own deadline
        assert got.startswith(b"HTTP/1.1 408") and 0.3 < after < 3.0, (got, after)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as body:
            body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 100\r\n\r\n{\"messages\": ")
            t0 = time.perf_counter()
            answer = b""
            while b"request_timeout" not in answer and (chunk := body.recv(4096)):  # headers and body may arrive apart
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, answer
        assert 0.8 < time.perf_counter() - t0 < 3.0
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _cli(*args: str, timeout: int = 120):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "MT_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "mothertongue", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_busy_port_and_bad_port_fail_in_one_line(quickstart_run):
    holder = socket.create_server(("127.0.0.1", 0))
    try:
        busy = _cli("serve", str(quickstart_run), "--port", str(holder.getsockname()[1]))
    finally:
        holder.close()
    assert busy.returncode == 2, busy.stderr
    assert "serving" not in busy.stdout
    assert busy.stderr.strip().count("\n") == 0 and "cannot listen on 127.0.0.1:" in busy.stderr
    bad = _cli("serve", str(quickstart_run), "--port", "99999")
    assert bad.returncode == 2 and "serving" not in bad.stdout
    assert bad.stderr.strip() == "error: --port must be between 0 and 65535, got 99999"
