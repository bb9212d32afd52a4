"""Translate at scale: executor throughput (local vs Ray with 1 and 2 workers) and peak memory
against corpus size (chunked planning vs the whole input at once).

    python benchmarks/translate_scale.py                                   # small sizes, a few minutes
    python benchmarks/translate_scale.py --sizes 100000,400000,1000000     # the README's claim sizes
    python benchmarks/translate_scale.py --skip-ray                        # without Ray installed

The engine is the `remote` engine against a stub OpenAI-compatible server on loopback that answers
`[de] <segment>` after `--latency` seconds (a stand-in for a model server: it measures what the
pipeline and the executors add, not a model). Throughput: `--segments` distinct segments
translated from scratch by each executor, in this process (Ray started once, before timing). Memory: an ingest output of N two-sentence
conversations drawn from a small vocabulary (the translations are few; planning, segmenting and
assembling N conversations is what grows), translated in a subprocess whose peak RSS is read
from the kernel (`wait4`), once with `translate.chunk_records` and once as one piece.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the stub server the tests use

from mothertongue.conversation import Conversation, Message, write_jsonl  # noqa: E402
from mothertongue.runs import atomic_write_json  # noqa: E402
from stub_openai import Stub  # noqa: E402

WORDS = "cat dog house tree water bread milk apple book table chair window door sun moon star road lake".split()


def write_ingest(run: Path, n: int, distinct: bool) -> None:
    """n conversations; `distinct`: every sentence new (all translated), else from a small vocabulary."""
    d = run / "ingest"
    d.mkdir(parents=True, exist_ok=True)
    sents = [f"The {a} sees the {b}." for a in WORDS for b in WORDS if a != b]

    def convs():
        for i in range(n):
            if distinct:
                a, b = f"Item {i} sees the {WORDS[i % len(WORDS)]}.", f"It is number {i}."
            else:
                a, b = sents[i % len(sents)], sents[(7 * i + 3) % len(sents)]
            yield Conversation(
                f"c{i}", [Message("user", a), Message("assistant", f"{b} {a}")], "en"
            )

    write_jsonl(d / "train.jsonl", convs())
    for name in ("dev", "test", "pairs"):
        write_jsonl(d / f"{name}.jsonl", [])
    atomic_write_json(
        d / "manifest.json", {"stage": "ingest", "fingerprint": f"bench-{n}-{distinct}"}
    )


def write_recipe(tmp: Path, url: str, extra: str) -> Path:
    p = tmp / "r.yaml"
    p.write_text(
        f"run_dir: {tmp / 'run'}\nlanguage: de\ningest:\n  sources: [{{path: none.txt, format: text}}]\n"
        "translate:\n  enabled: true\n  engine: remote\n  model: stub\n  progress: false\n  quality_gate: false\n"
        f"  options: {{url: '{url}', concurrency: 4}}\n{extra}",
        encoding="utf-8",
    )
    return p


def translate_in_subprocess(recipe: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `mothertongue translate recipe` in its own process."""
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "mothertongue", "translate", str(recipe)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"translate failed: {proc.stderr.read().decode()[-2000:]}")
    return time.time() - t0, usage.ru_maxrss / 1024  # KiB on Linux


def throughput(url: str, segments: int, workers: list[int]) -> None:
    """In this process; Ray is started once beforehand (cluster start-up is not the executor's cost)."""
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage

    if workers:
        import ray

        ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: lazy imports and caches, not timed
        write_ingest(Path(tmp) / "run", 20, distinct=True)
        run_stage(load_recipe(write_recipe(Path(tmp), url, "")), "translate", log=lambda m: None)
    print(f"\nexecutor throughput: {segments} distinct segments")
    print("| executor | seconds | segments/s | vs local |\n|---|---:|---:|---:|")
    base = None
    for name, extra in [("local", "")] + [
        (
            f"ray, {w} worker{'s' if w > 1 else ''}",
            f"  executor: ray\n  ray: {{workers: {w}, num_cpus: 1}}\n",
        )
        for w in workers
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            write_ingest(Path(tmp) / "run", segments // 2, distinct=True)
            recipe = load_recipe(write_recipe(Path(tmp), url, extra))
            t0 = time.time()
            run_stage(recipe, "translate", log=lambda m: None)
            secs = time.time() - t0
        rate = segments / secs
        base = base or rate
        print(f"| {name} | {secs:.1f} | {rate:,.0f} | {rate / base:.2f}x |", flush=True)
    if workers:
        ray.shutdown()


def memory(url: str, sizes: list[int], chunk: int) -> None:
    print(
        f"\npeak RSS of the translate process against corpus size (chunks of {chunk:,} records vs one piece)"
    )
    print(
        "| conversations | chunked: peak RSS MiB | s | one piece: peak RSS MiB | s |\n|---:|---:|---:|---:|---:|"
    )
    for n in sizes:
        row = [f"{n:,}"]
        for extra in (f"  chunk_records: {chunk}\n", f"  chunk_records: {max(sizes) * 2}\n"):
            with tempfile.TemporaryDirectory() as tmp:
                write_ingest(Path(tmp) / "run", n, distinct=False)
                secs, rss = translate_in_subprocess(write_recipe(Path(tmp), url, extra))
            row += [f"{rss:,.0f}", f"{secs:.0f}"]
        print("| " + " | ".join(row) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        default="10000,40000,160000",
        help="Corpus sizes (conversations) for the memory table.",
    )
    ap.add_argument(
        "--chunk", type=int, default=10_000, help="translate.chunk_records for the chunked runs."
    )
    ap.add_argument(
        "--segments", type=int, default=2000, help="Distinct segments for the throughput table."
    )
    ap.add_argument(
        "--latency", type=float, default=0.002, help="Seconds the stub server takes per request."
    )
    ap.add_argument("--skip-ray", action="store_true", help="Only the local executor.")
    args = ap.parse_args()
    stub = Stub(delay=args.latency)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    try:
        throughput(stub.url, args.segments, [] if args.skip_ray else [1, 2])
        memory(stub.url, [int(s) for s in args.sizes.split(",")], args.chunk)
    finally:
        stub.close()


if __name__ == "__main__":
    main()
