"""Translate, the plan in words (`--dry-run`): routes, models, segments, memory savings, time.

    mothertongue translate recipes/my.yaml --dry-run

Nothing is written: the main memory and any shard memories are only read, and the time is
estimated by translating a small sample of one route's segments with its first-leg model.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.engines.catalogue import Leg
from mothertongue.engines.memory import Memory
from mothertongue.runs import RunDir
from mothertongue.translate.plan import make_plan
from mothertongue.translate.stage import memory_path, shard_memory_paths


def dry_run(recipe: Recipe, calibrate: int = 16) -> str:
    """The plan in words: pairs, routes, models, segments, memory savings, estimated time."""
    plan = make_plan(recipe, RunDir(Path(recipe.run_dir)))
    t = recipe.translate
    lines = [f"translate -> {plan.target} with engine {t.engine} (beam {t.beam_size})"]
    by_src = Counter(u.src for u in plan.units)
    for src, legs in plan.routes.items():
        how = (
            " then ".join(f"{leg.src}->{leg.tgt} [{leg.model}]" for leg in legs)
            or "pass-through (already target language)"
        )
        lines.append(
            f"  {src}->{plan.target}: {by_src[src]} messages, {'pivot ' if len(legs) > 1 else ''}{how}"
        )
    all_segs = [s for u in plan.units if u.doc is not None for s in u.doc.segments()]
    uniq = set(all_segs)
    segs_by_src = {
        src: {s for u in plan.units if u.src == src for s in u.doc.segments()}
        for src, legs in plan.routes.items()
        if legs
    }
    mem_path = memory_path(recipe)
    # The main memory and any shard memories the next full run will merge (read here, not merged).
    shard_paths = shard_memory_paths(recipe)
    mems = [Memory(p) for p in ([mem_path] if mem_path.exists() else []) + shard_paths]
    if shard_paths:
        lines.append(
            f"  shard memories: {', '.join(p.name for p in shard_paths)} (merged by the next full run)"
        )

    def in_memory(leg: Leg, texts: set[str]) -> dict:
        found: dict = {}
        for m in mems:
            found.update(plan.store(m, leg).get(texts))
        return found

    # Pivoted routes translate twice: the first leg's (pivot-language) outputs go through the
    # second leg too. Outputs the first leg has not made yet count one each (an upper bound).
    known = second = 0
    try:
        for src, segs in segs_by_src.items():
            legs = plan.routes[src]
            got = in_memory(legs[0], segs)
            known += len(got)
            if len(legs) > 1:
                mids = {tgt for tgt, _st in got.values()}
                second += len(mids) - len(in_memory(legs[1], mids)) + len(segs) - len(got)
    finally:
        for m in mems:
            m.close()
    todo = len(uniq) - known
    lines.append(
        f"  segments: {len(all_segs)}; distinct {len(uniq)} (memory saves {len(all_segs) - len(uniq)} repeats); already in memory {known}; to translate {todo}"
        + (f" (+ at most {second} on the second legs of pivots)" if second else "")
    )
    if todo + second and calibrate:
        # Timed on segments of one route with its own first-leg model (not text in another language).
        src = next(src for src in segs_by_src if segs_by_src[src])
        leg, sample = plan.routes[src][0], sorted(segs_by_src[src])[:calibrate]
        t0 = time.time()
        plan.engines[leg.model].translate(sample, leg.src, leg.tgt, t.beam_size)
        rate = len(sample) / max(time.time() - t0, 1e-6)
        lines.append(
            f"  estimated time: {(todo + second) / rate / 60:.1f} min at {rate:.1f} segments/s (measured on {len(sample)} {leg.src}->{leg.tgt} segments)"
        )
    return "\n".join(lines)
