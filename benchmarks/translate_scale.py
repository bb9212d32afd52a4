"""Translate at scale: executor throughput (local vs Ray with 1 and 2 workers) and peak memory
against corpus size (chunked planning vs the whole input at once), with a tiny model.

    python benchmarks/translate_scale.py                                   # 50k, 200k and 1M messages
    python benchmarks/translate_scale.py --sizes 2000,8000 --segments 500  # a quick look
    python benchmarks/translate_scale.py --engine stub                     # no model: the pipeline alone
    python benchmarks/translate_scale.py --skip-ray                        # without Ray installed

The engine (`--engine toy`, the default) is a tiny real model: a toy Marian model (2+2 layers,
d_model 64; `engines/toy.py`) trained at the start on the benchmark's few thousand sentence pairs
and run by the `ctranslate2` engine (int8 on CPU). `--engine stub` is the `remote` engine against
a stub OpenAI-compatible server on loopback that answers `[de] <segment>` after `--latency`
seconds: it measures what the pipeline and the executors add, without a model. Throughput:
`--segments` distinct segments translated from scratch by each executor, in this process (Ray
started once, before timing). Memory: an ingest output of N two-message conversations drawn from
a small vocabulary (the distinct segments are few; planning, segmenting and assembling N
conversations is what grows), translated in a subprocess whose peak RSS is read from the kernel
(`wait4`), once with `translate.chunk_records` and once as one piece.
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
ADJS = "big small red old new green dark warm quiet happy".split()
GERMAN = dict(zip(WORDS + ADJS, (
    "Katze Hund Haus Baum Wasser Brot Milch Apfel Buch Tisch Stuhl Fenster Tür Sonne Mond Stern Straße See "
    "große kleine rote alte neue grüne dunkle warme stille frohe").split()))
SMALL = [f"The {a} sees the {b}." for a in WORDS for b in WORDS if a != b]  # the memory table's vocabulary
MANY = SMALL + [f"The {j} {a} sees the {b}." for j in ADJS for a in WORDS for b in WORDS if a != b]
# the throughput table's segments: the toy model is trained on MANY; the rest are new combinations
# of the same words (a tiny model's cost per segment, not a translation worth reading)
BIG = MANY + [f"The {j} {a} sees the {k} {b}." for j in ADJS for a in WORDS for k in ADJS for b in WORDS if a != b]


def german(sentence: str) -> str:
    """The toy model's training target: a word-for-word pseudo-German of a benchmark sentence."""
    words = sentence.rstrip(".").split()[1:]
    return "Die " + " ".join(GERMAN.get(w, w) for w in words if w != "sees" and w != "the") + " sieht."


def write_ingest(run: Path, n: int, distinct: bool) -> None:
    """n conversations; `distinct`: sentences from the large set, each segment once (all are
    translated), else from the small set (few distinct segments)."""
    d = run / "ingest"
    d.mkdir(parents=True, exist_ok=True)

    def convs():
        for i in range(n):
            if distinct:
                a, b = BIG[(2 * i) % len(BIG)], BIG[(2 * i + 1) % len(BIG)]
            else:
                a, b = SMALL[i % len(SMALL)], SMALL[(7 * i + 3) % len(SMALL)]
            yield Conversation(f"c{i}", [Message("user", a), Message("assistant", b)], "en")

    write_jsonl(d / "train.jsonl", convs())
    for name in ("dev", "test", "pairs"):
        write_jsonl(d / f"{name}.jsonl", [])
    atomic_write_json(
        d / "manifest.json", {"stage": "ingest", "fingerprint": f"bench-{n}-{distinct}"}
    )


def toy_model(cache: Path) -> tuple[str, float]:
    """The tiny model (trained once into `cache`) and the seconds its training took."""
    from mothertongue.engines.toy import ensure_toy_model

    cache.mkdir(parents=True, exist_ok=True)
    pairs = cache / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{german(s)}\n" for s in MANY), encoding="utf-8")
    t0 = time.time()
    folder = ensure_toy_model(f"toy:{pairs}", cache, cache, log=lambda m: None)
    return folder, time.time() - t0


def write_recipe(tmp: Path, engine: str, extra: str) -> Path:
    """`engine`: a model folder (ctranslate2) or a stub server's URL (remote)."""
    if engine.startswith("http"):
        how = f"  engine: remote\n  model: stub\n  options: {{url: '{engine}', concurrency: 4}}\n"
    else:
        how = f"  engine: ctranslate2\n  model: {engine}\n  options: {{cache_dir: {Path(engine).parent / 'ct2'}}}\n"
    p = tmp / "r.yaml"
    p.write_text(
        f"run_dir: {tmp / 'run'}\nlanguage: de\ningest:\n  sources: [{{path: none.txt, format: text}}]\n"
        "translate:\n  enabled: true\n  progress: false\n  quality_gate: false\n"
        f"{how}{extra}",
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


def throughput(engine: str, segments: int, workers: list[int]) -> None:
    """In this process; Ray is started once beforehand (cluster start-up is not the executor's cost)."""
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage

    if workers:
        import ray

        ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: lazy imports and caches, not timed
        write_ingest(Path(tmp) / "run", 20, distinct=True)
        run_stage(load_recipe(write_recipe(Path(tmp), engine, "")), "translate", log=lambda m: None)
    print(f"\nexecutor throughput: {segments:,} distinct segments (the executor's own time: planned, engines"
          " loaded and Ray workers started beforehand)")
    print("| executor | worker start-up s | seconds | segments/s | vs local |\n|---|---:|---:|---:|---:|")
    base = None
    for name, extra in [("local", "")] + [
        # the machine's CPUs shared out among the workers, as the local engine uses them all
        (f"ray, {w} worker{'s' if w > 1 else ''} x {cpus(w)} CPU",
         f"  executor: ray\n  ray: {{workers: {w}, num_cpus: {cpus(w)}}}\n")
        for w in workers
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            write_ingest(Path(tmp) / "run", segments // 2, distinct=True)
            startup, secs, done = time_executor(load_recipe(write_recipe(Path(tmp), engine, extra)), Path(tmp))
        assert done == segments, (done, segments)
        rate = segments / secs
        base = base or rate
        print(f"| {name} | {startup:.1f} | {secs:.1f} | {rate:,.0f} | {rate / base:.2f}x |", flush=True)
    if workers:
        ray.shutdown()


def cpus(workers: int) -> int:
    """CPUs per Ray worker: the machine's, shared out (Ray sets each worker's thread count to it)."""
    return max(1, (os.cpu_count() or 1) // workers)


def time_executor(recipe, tmp: Path) -> tuple[float, float, int]:
    """(worker start-up s, translation s, segments translated) for the recipe's executor: the plan
    is made and the workers hold their engines before the clock starts, so what is timed is the
    executor's work (batches out, results back, each committed to a fresh memory)."""
    from mothertongue.engines.memory import Memory
    from mothertongue.runs import RunDir
    from mothertongue.translate.plan import make_plan, read_chunks
    from mothertongue.translate.work import execute, make_executor

    rundir = RunDir(Path(recipe.run_dir))
    engines: dict = {}
    plan = make_plan(recipe, rundir, data=next(read_chunks(rundir, recipe.translate.chunk_records)), engines=engines)
    executor = make_executor(recipe, engines)
    t0 = time.time()
    if recipe.translate.executor == "ray":
        workers, _ = executor.actors(plan.routes["en"][0].model)
        executor.ray.get([w.pid.remote() for w in workers])
    startup = time.time() - t0
    memory = Memory(tmp / "memory.sqlite")
    try:
        t0 = time.time()
        stats = execute(plan, memory, executor=executor)
        return startup, time.time() - t0, stats["translated"]
    finally:
        executor.close()
        memory.close()


def memory(engine: str, sizes: list[int], chunk: int) -> None:
    print(
        f"\npeak RSS of the translate process against corpus size (chunks of {chunk:,} records vs one piece)"
    )
    print(
        "| conversations | messages | chunked: peak RSS MiB | s | one piece: peak RSS MiB | s |\n"
        "|---:|---:|---:|---:|---:|---:|"
    )
    for n in sizes:
        row = [f"{n:,}", f"{2 * n:,}"]
        for extra in (f"  chunk_records: {chunk}\n", f"  chunk_records: {max(sizes) * 2}\n"):
            with tempfile.TemporaryDirectory() as tmp:
                write_ingest(Path(tmp) / "run", n, distinct=False)
                secs, rss = translate_in_subprocess(write_recipe(Path(tmp), engine, extra))
            row += [f"{rss:,.0f}", f"{secs:.0f}"]
        print("| " + " | ".join(row) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        default="25000,100000,500000",
        help="Corpus sizes (conversations of two messages) for the memory table.",
    )
    ap.add_argument(
        "--chunk", type=int, default=10_000, help="translate.chunk_records for the chunked runs."
    )
    ap.add_argument(
        "--segments", type=int, default=20_000, help="Distinct segments for the throughput table."
    )
    ap.add_argument(
        "--latency", type=float, default=0.002, help="Seconds the stub server takes per request."
    )
    ap.add_argument("--skip-ray", action="store_true", help="Only the local executor.")
    ap.add_argument("--engine", choices=("toy", "stub"), default="toy", help="A tiny model, or a stub server.")
    ap.add_argument("--skip-memory", action="store_true", help="Only the throughput table.")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    stub = Stub(delay=args.latency) if args.engine == "stub" else None
    with tempfile.TemporaryDirectory() as cache:
        if stub is None:
            engine, secs = toy_model(Path(cache))
            print(f"toy model trained on {len(MANY):,} sentence pairs in {secs:.0f} s")
        else:
            engine = stub.url
        try:
            throughput(engine, args.segments, [] if args.skip_ray else [1, 2])
            if not args.skip_memory:
                memory(engine, [int(s) for s in args.sizes.split(",")], args.chunk)
        finally:
            if stub is not None:
                stub.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
