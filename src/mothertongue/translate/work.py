"""Translate, step 2 (the work): translate every segment the translation memory lacks.

    python -c "from mothertongue.translate.work import shard_of; print(shard_of('Hello.', 4))"

Per route leg, the distinct segments the leg's memory lacks are cut into batches by the leg's
engine (`Engine.batches`: length-sorted, under `translate.batch_tokens`, the only batching
layer). The executor (`translate.executor`: this process, or Ray workers each holding one
engine, translate/ray_executor.py) translates each batch and checks it with the quality gate
(failures retried once with a wider beam, then flagged); this process commits each result to
the memory as one transaction, so a kill loses at most the batches in flight and a rerun does
only what is missing. Second legs of pivoted routes
translate the first legs' (pivot-language) outputs.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterator

from mothertongue import progress
from mothertongue.config import Recipe, TranslateConfig
from mothertongue.engines import Engine
from mothertongue.engines.catalogue import Leg
from mothertongue.engines.memory import Memory
from mothertongue.text.langid import LangId, lingua_codes
from mothertongue.translate.gate import gate
from mothertongue.translate.plan import Plan


def shard_of(text: str, n: int) -> int:
    """Which of n `--shard` workers translates this segment (stable across runs and machines)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % n


def leg_langid(t: TranslateConfig, leg: Leg) -> LangId | None:
    """The gate's language judge for a leg: between its two languages only (high accuracy). A
    failed translation mostly stays in its source language, and an all-language guess calls
    short German "Latin"."""
    ok = t.quality_gate and leg.tgt in lingua_codes() and leg.src in lingua_codes()
    return LangId([leg.src, leg.tgt]) if ok else None


def execute(plan: Plan, memory: Memory, shard: tuple[int, int] | None = None, executor=None) -> dict:
    """Translate everything the memory lacks (this shard's part only, when sharded); `executor`:
    one made by `make_executor` that outlives this plan (a chunk of the input), else one for it."""
    t = plan.recipe.translate
    by_leg1: dict[Leg, set[str]] = defaultdict(set)
    for u in plan.units:
        legs = plan.routes[u.src]
        if legs:
            by_leg1[legs[0]].update(u.doc.segments())
    total = sum(len(v) for v in by_leg1.values())
    stats: Counter = Counter()
    own = executor is None
    executor = executor or make_executor(plan.recipe, plan.engines)
    try:
        with progress.task("translate", total=total, unit="segments", enabled=t.progress) as bar:
            for leg, segs in by_leg1.items():
                stats.update(translate_leg(plan, executor, leg, segs, memory, shard, bar))
        for legs in plan.routes.values():
            if len(legs) < 2:
                continue
            first, second = legs
            got = plan.store(memory, first).get(by_leg1.get(first, set()))
            mids = {
                tgt
                for s, (tgt, _st) in got.items()
                if shard is None or shard_of(s, shard[1]) == shard[0]
            }
            name = f"translate {second.src}->{second.tgt}"
            with progress.task(name, total=len(mids), unit="segments", enabled=t.progress) as bar:
                pivot = translate_leg(plan, executor, second, mids, memory, None, bar)
            stats.update({f"pivot_{k}": v for k, v in pivot.items()})
    finally:
        if own:
            executor.close()
    stats["segments"] = total
    return dict(stats)


def translate_batch(
    eng: Engine, chunk: list[str], leg: Leg, t: TranslateConfig, langid: LangId | None
) -> tuple[list[str], list[str], dict[str, int]]:
    """One engine batch through the quality gate: (outputs, statuses, retried/flagged counts).
    The same function runs in this process and in a Ray worker."""
    outs = eng.translate(chunk, leg.src, leg.tgt, t.beam_size)
    status = ["ok"] * len(chunk)
    stats = {"retried": 0, "flagged": 0}
    if t.quality_gate:
        verdicts = [gate(s, o, leg.tgt, t, langid) for s, o in zip(chunk, outs)]
        bad = [k for k, reasons in enumerate(verdicts) if reasons]
        # An engine that would repeat its answer (greedy, no beam) is not asked again.
        again: list[str | None] = [None] * len(bad)
        if bad and eng.retry_helps:
            again = eng.translate([chunk[k] for k in bad], leg.src, leg.tgt, max(t.retry_beam_size, t.beam_size))
        for k, o in zip(bad, again):
            reasons = verdicts[k] if o is None else gate(chunk[k], o, leg.tgt, t, langid)
            if reasons:
                status[k] = "flagged:" + ",".join(reasons)
                stats["flagged"] += 1
            else:
                outs[k], status[k] = o, "retried"
                stats["retried"] += 1
    return outs, status, stats


class LocalExecutor:
    """Batches translated one after another by this process's engines."""

    def __init__(self, recipe: Recipe, engines: dict[str, Engine]):
        self.t = recipe.translate
        self.engines = engines  # model -> engine, filled by make_plan
        self.langids: dict[Leg, LangId | None] = {}

    def run(self, leg: Leg, batches: list[list[str]]) -> Iterator[tuple[list[str], list[str], list[str], dict]]:
        t = self.t
        if leg not in self.langids:
            self.langids[leg] = leg_langid(t, leg)
        eng = self.engines[leg.model]
        for chunk in batches:
            yield (chunk, *translate_batch(eng, chunk, leg, t, self.langids[leg]))

    def close(self) -> None:
        pass


def make_executor(recipe: Recipe, engines: dict[str, Engine]):
    """The recipe's executor (`translate.executor`); close() it when the stage is done."""
    if recipe.translate.executor == "ray":
        from mothertongue.translate.ray_executor import RayExecutor

        return RayExecutor(recipe)
    return LocalExecutor(recipe, engines)


def translate_leg(
    plan: Plan, executor, leg: Leg, sources: set[str], memory: Memory, shard, bar: progress.Task
) -> dict[str, int]:
    """Translate the sources of one leg that the memory lacks; commit one engine batch at a time
    (in the order the executor finishes them: each batch is one transaction either way)."""
    t = plan.recipe.translate
    eng = plan.engines[leg.model]
    store = plan.store(memory, leg)
    have = store.get(sources)
    todo = sorted(
        s for s in sources if s not in have and (shard is None or shard_of(s, shard[1]) == shard[0])
    )
    stats = {"from_memory": len(sources) - len(todo), "translated": 0, "retried": 0, "flagged": 0}
    bar.skip(len(sources) - len(todo))  # in the memory already, or another shard's
    batches = [[todo[i] for i in b] for b in eng.batches(todo, t.beam_size, plan.count_tokens(leg.model))]
    for chunk, outs, status, counts in executor.run(leg, batches):
        store.put(zip(chunk, outs, status))
        stats["translated"] += len(chunk)
        stats["retried"] += counts["retried"]
        stats["flagged"] += counts["flagged"]
        bar.advance(len(chunk))
    return stats
