"""Ingest throughput: a generated Alpaca-style JSONL file and generated OASST exports.

    python benchmarks/ingest.py                       # 1M Alpaca records; OASST at 50k/100k/200k messages
    python benchmarks/ingest.py --alpaca 200000 --oasst 20000 40000

All data is generated into a temporary folder (nothing downloaded). Reported per input:
`adapter` = read + parse + convert (the format adapter alone); `stage` = the whole ingest stage
(adapter, validation, exact dedup, hash split, writing train/dev/test JSONL and report.json).
OASST rows are flat messages in trees of 40 (fanout 3, depth 4) with ranked answers; the
messages/s column staying flat as size grows is the linear-time check.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import yaml

WORDS = ("der die das und ist nicht ein eine zu mit auf für sich dem von es den im "
         "haus baum wasser schnell langsam rot grün blau code python zahl liste frage antwort").split()


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def make_alpaca(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = {"instruction": f"{_text(rng, 5, 20)} ({i})",
                   "input": _text(rng, 3, 15) if i % 3 == 0 else "",
                   "output": _text(rng, 10, 60) + ("\n```python\nprint(1)\n```" if i % 10 == 0 else "")}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def make_oasst(path: Path, n_messages: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        t = 0
        while n < n_messages:
            level = [(f"t{t}", None, "prompter")]
            while level:
                nxt = []
                for mid, parent, role in level:
                    row = {"message_id": mid, "parent_id": parent, "role": role, "text": _text(rng, 5, 40),
                           "lang": rng.choice(["en", "de", "es", "pt-BR", "uk-UA"]), "deleted": n % 97 == 0,
                           "review_result": n % 53 != 0, "synthetic": False, "message_tree_id": f"t{t}",
                           "rank": rng.randint(0, 2) if role == "assistant" else None}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
                    if mid.count(".") < 3:
                        child = "assistant" if role == "prompter" else "prompter"
                        nxt += [(f"{mid}.{i}", mid, child) for i in range(3)]
                level = nxt
            t += 1
    return n


def time_adapter(path: Path, fmt: str) -> tuple[float, float, int, int]:
    from mothertongue.config import SourceConfig
    from mothertongue.formats import FORMATS, IngestReport

    rep = IngestReport("skip")
    t, c = time.perf_counter(), time.process_time()
    n_out = sum(1 for _ in FORMATS.get(fmt)(SourceConfig(path=str(path)), {}).read(path, rep))
    return time.perf_counter() - t, time.process_time() - c, rep.read, n_out


def time_stage(tmp: Path, path: Path, fmt: str) -> tuple[float, float, dict]:
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage

    recipe = tmp / f"{path.stem}.yaml"
    recipe.write_text(yaml.safe_dump({"name": "bench", "run_dir": str(tmp / f"run-{path.stem}"), "ingest": {
        "sources": [{"path": str(path), "format": fmt}], "on_error": "skip", "dev_fraction": 0.01,
        "test_fraction": 0.01}}))
    t, c = time.perf_counter(), time.process_time()
    out = run_stage(load_recipe(recipe), "ingest", force=True, log=lambda m: None).path
    return time.perf_counter() - t, time.process_time() - c, json.loads((out / "report.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpaca", type=int, default=1_000_000, help="Alpaca records to generate")
    ap.add_argument("--oasst", type=int, nargs="*", default=[50_000, 100_000, 200_000], help="OASST message counts")
    args = ap.parse_args()
    import contextlib
    import io

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        inputs = []
        if args.alpaca:
            p = tmp / "alpaca.jsonl"
            make_alpaca(p, args.alpaca)
            inputs.append(("alpaca", p, args.alpaca))
        for n in args.oasst:
            p = tmp / f"oasst{n}.jsonl"
            inputs.append(("oasst", p, make_oasst(p, n)))
        for fmt, p, n in inputs:
            ta, ca, read, n_out = time_adapter(p, fmt)
            with contextlib.redirect_stdout(io.StringIO()):
                ts, cs, rep = time_stage(tmp, p, fmt)
            rows.append((fmt, n, p.stat().st_size / 2**20, n_out, ta, ca, ts, cs, read,
                         sum(rep["splits"].values()), rep["pairs"]))
    # wall = elapsed time; cpu = this process's CPU time (differs when the machine is shared)
    print(f"{'input':<7}{'records':>10}{'MiB':>5}{'out':>10}{'adapter wall/cpu s':>20}{'rec/s wall/cpu':>17}"
          f"{'stage wall/cpu s':>18}{'rec/s wall/cpu':>17}{'convs':>10}{'pairs':>8}")
    for fmt, n, mib, n_out, ta, ca, ts, cs, read, nc, npairs in rows:
        print(f"{fmt:<7}{n:>10,}{mib:>5.0f}{n_out:>10,}{ta:>12.1f} /{ca:>6.1f}{read / ta:>9,.0f} /{read / ca:>7,.0f}"
              f"{ts:>10.1f} /{cs:>6.1f}{read / ts:>9,.0f} /{read / cs:>7,.0f}{nc:>10,}{npairs:>8,}")


if __name__ == "__main__":
    main()
