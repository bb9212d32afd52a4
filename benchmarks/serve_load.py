"""Load test for `mothertongue serve`: requests/s and latency percentiles, loopback only, bounded.

    python benchmarks/serve_load.py runs/quickstart                        # starts its own server
    python benchmarks/serve_load.py runs/quickstart --requests 200 --concurrency 16 --stream
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --requests 50   # a running server

Sends exactly --requests chat completions (prompts from the run's held-out set) with at most
--concurrency in flight (after one untimed warm-up request), stops after --max-seconds whatever
happens, and prints one table row per run. Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def start_server(run_dir: Path, max_batch_size: int):
    from mothertongue.config import ServeConfig
    from mothertongue.serve import bind, build_engine, create_app, uvicorn_server

    engine = build_engine(run_dir, cfg=ServeConfig(max_batch_size=max_batch_size, max_queue=4096))
    sock = bind("127.0.0.1", 0)
    server = uvicorn_server(create_app(engine), engine.cfg)  # as `mothertongue serve` runs it
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}", engine.name


def prompts_of(run_dir: Path | None) -> list[str]:
    if run_dir:
        p = run_dir / "ingest" / "test.jsonl"
        if p.exists():
            return [json.loads(x)["messages"][0]["content"] for x in p.read_text(encoding="utf-8").splitlines()]
    return ["Nenne drei Farben.", "Sag hallo.", "Wie geht es dir?"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="run directory (starts an in-process server on 127.0.0.1)")
    ap.add_argument("--url", help="an already running server on a loopback address")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--max-batch-size", type=int, default=8, help="server batching (in-process server only)")
    ap.add_argument("--stream", action="store_true", help="streaming requests (time to first token too)")
    ap.add_argument("--max-seconds", type=float, default=300, help="hard stop for the whole run")
    a = ap.parse_args()
    if a.requests > 10_000 or a.concurrency > 256:
        ap.error("bounded load test: at most 10000 requests and 256 in flight")
    try:  # the HTTP library the openai client brings (httpx, or its successor httpx2)
        import httpx2 as httpx
    except ImportError:
        import httpx

    server = None
    if a.url:
        if urlparse(a.url).hostname not in LOOPBACK:
            ap.error(f"{a.url}: only loopback targets (127.0.0.1, localhost, ::1) are allowed")
        url, model = a.url.rstrip("/"), httpx.get(a.url.rstrip("/") + "/v1/models", timeout=10).json()["data"][0]["id"]
    elif a.run_dir:
        server, url, model = start_server(Path(a.run_dir), a.max_batch_size)
    else:
        ap.error("give a run directory or --url")
    prompts = prompts_of(Path(a.run_dir) if a.run_dir else None)
    deadline = time.monotonic() + a.max_seconds
    client = httpx.Client(timeout=max(10.0, a.max_seconds))

    def one(i: int):
        if time.monotonic() > deadline:
            return None
        body = {"model": model, "max_tokens": a.max_tokens, "stream": a.stream,
                "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]}
        t0 = time.perf_counter()
        first = None
        if a.stream:
            body["stream_options"] = {"include_usage": True}
            toks = 0
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first = time.perf_counter() - t0  # time to first token
                    if chunk.get("usage"):
                        toks = chunk["usage"]["completion_tokens"]
                ok = r.status_code == 200
        else:
            r = client.post(f"{url}/v1/chat/completions", json=body)
            ok = r.status_code == 200
            toks = r.json()["usage"]["completion_tokens"] if ok else 0
        return ok, time.perf_counter() - t0, first, toks

    # One untimed request first: the first generation pays one-off setup costs, which would
    # otherwise land on the whole first batch and skew the percentiles.
    client.post(f"{url}/v1/chat/completions", json={
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": prompts[0]}]})
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.concurrency) as pool:
        results = [r for r in pool.map(one, range(a.requests)) if r is not None]
    wall = time.perf_counter() - t0
    if server is not None:
        server.should_exit = True
    ok = [r for r in results if r[0]]
    lat = [r[1] for r in ok]
    ttft = [r[2] for r in ok if r[2] is not None]
    toks = sum(r[3] for r in ok)
    row = {
        "requests": len(results), "ok": len(ok), "concurrency": a.concurrency, "stream": a.stream,
        "batch": a.max_batch_size if server else None, "wall_s": round(wall, 2),
        "req_per_s": round(len(ok) / wall, 2), "tokens_per_s": round(toks / wall, 1),
        "p50_ms": round(1000 * percentile(lat, 0.5)), "p90_ms": round(1000 * percentile(lat, 0.9)),
        "p99_ms": round(1000 * percentile(lat, 0.99)), "mean_ms": round(1000 * statistics.fmean(lat)) if lat else None,
    }
    if ttft:
        row["ttft_p50_ms"] = round(1000 * percentile(ttft, 0.5))
    print("| " + " | ".join(row) + " |")
    print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0 if len(ok) == len(results) == a.requests else 1


if __name__ == "__main__":
    sys.exit(main())
