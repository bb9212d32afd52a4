"""Translate, the plan in words (`--dry-run`): routes, models, segments, memory savings, time.

    mothertongue translate recipes/my.yaml --dry-run

Nothing is written: the main memory and any shard memories are only read, and the time is
estimated by translating a small sample of one route's segments with its first-leg model.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.engines.catalogue import Leg
from mothertongue.engines.memory import Memory
from mothertongue.runs import RunDir
from mothertongue.translate.plan import make_plan, read_chunks
from mothertongue.translate.stage import memory_path, shard_memory_paths


def dry_run(recipe: Recipe, calibrate: int = 16) -> str:
    """The plan in words: pairs, routes, models, segments, memory savings, estimated time.

    The input is planned chunk by chunk (`translate.chunk_records`) like the stage does; the
    distinct segments seen so far are kept in a temporary SQLite file, not in memory."""
    rundir = RunDir(Path(recipe.run_dir))
    t = recipe.translate
    mem_path = memory_path(recipe)
    # The main memory and any shard memories the next full run will merge (read here, not merged).
    shard_paths = shard_memory_paths(recipe)
    mems = [Memory(p) for p in ([mem_path] if mem_path.exists() else []) + shard_paths]
    engines: dict = {}
    by_src: Counter = Counter()
    routes: dict[str, list[Leg]] = {}
    n_segs = distinct = known = second = 0
    sample: tuple[Leg, list[str]] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        seen = sqlite3.connect(Path(tmp) / "seen.sqlite")
        seen.execute("CREATE TABLE s (scope TEXT, text TEXT, PRIMARY KEY (scope, text))")

        def new(scope: str, texts: set[str]) -> set[str]:
            """The texts not seen before in this scope (and now marked seen)."""
            fresh = set()
            for x in texts:
                if seen.execute("INSERT OR IGNORE INTO s VALUES (?, ?)", (scope, x)).rowcount:
                    fresh.add(x)
            return fresh

        try:
            for data in read_chunks(rundir, t.chunk_records):
                plan = make_plan(recipe, rundir, data=data, engines=engines)

                def in_memory(leg: Leg, texts: set[str], plan=plan) -> dict:
                    found: dict = {}
                    for m in mems:
                        found.update(plan.store(m, leg).get(texts))
                    return found

                by_src.update(u.src for u in plan.units)
                for src, legs in plan.routes.items():
                    routes.setdefault(src, legs)
                segs = [x for u in plan.units if u.doc is not None for x in u.doc.segments()]
                n_segs += len(segs)
                distinct += len(new("", set(segs)))
                for src, legs in plan.routes.items():
                    if not legs:
                        continue
                    fresh = new(src, {x for u in plan.units if u.src == src for x in u.doc.segments()})
                    if sample is None and fresh:
                        sample = (legs[0], sorted(fresh)[:calibrate])
                    # Pivoted routes translate twice: the first leg's (pivot-language) outputs go
                    # through the second leg too. Outputs the first leg has not made yet count
                    # one each (an upper bound).
                    got = in_memory(legs[0], fresh)
                    known += len(got)
                    if len(legs) > 1:
                        mids = new(f"mid:{src}", {tgt for tgt, _st in got.values()})
                        second += len(mids) - len(in_memory(legs[1], mids)) + len(fresh) - len(got)
        finally:
            seen.close()
            for m in mems:
                m.close()
    lines = [f"translate -> {recipe.language} with engine {t.engine} (beam {t.beam_size})"]
    for src, legs in routes.items():
        how = (
            " then ".join(f"{leg.src}->{leg.tgt} [{leg.model}]" for leg in legs)
            or "pass-through (already target language)"
        )
        lines.append(
            f"  {src}->{recipe.language}: {by_src[src]} messages, {'pivot ' if len(legs) > 1 else ''}{how}"
        )
    if shard_paths:
        lines.append(
            f"  shard memories: {', '.join(p.name for p in shard_paths)} (merged by the next full run)"
        )
    todo = distinct - known
    lines.append(
        f"  segments: {n_segs}; distinct {distinct} (memory saves {n_segs - distinct} repeats); already in memory {known}; to translate {todo}"
        + (f" (+ at most {second} on the second legs of pivots)" if second else "")
    )
    if todo + second and calibrate and sample:
        # Timed on segments of one route with its own first-leg model (not text in another language).
        leg, texts = sample
        t0 = time.time()
        engines[leg.model].translate(texts, leg.src, leg.tgt, t.beam_size)
        rate = len(texts) / max(time.time() - t0, 1e-6)
        lines.append(
            f"  estimated time: {(todo + second) / rate / 60:.1f} min at {rate:.1f} segments/s (measured on {len(texts)} {leg.src}->{leg.tgt} segments)"
        )
    return "\n".join(lines)
