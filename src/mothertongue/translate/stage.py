"""Translate, the entry points: the stage (`run`), one `--shard` worker, and where the memory lives.

    mothertongue translate recipes/my.yaml                       # resumable: rerun after a crash
    mothertongue translate recipes/my.yaml --shard 0/4           # one of 4 workers (then rerun without)

`run` plans (translate.plan), merges any shard memories, translates what the memory lacks
(translate.work), assembles the outputs (translate.assemble) and writes `report.json`.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.digests import DigestSet, Scratch
from mothertongue.engines.memory import Memory
from mothertongue.runs import RunDir, StageError, atomic_write_json
from mothertongue.translate import qe, roundtrip
from mothertongue.translate.assemble import assemble, cap_flagged
from mothertongue.translate.plan import Plan, make_plan, read_chunks
from mothertongue.translate.work import execute, make_executor


def memory_path(recipe: Recipe) -> Path:
    t = recipe.translate
    return (
        recipe.resolve_path(t.memory)
        if t.memory
        else Path(recipe.run_dir) / "translate-memory.sqlite"
    )


def shard_memory_paths(recipe: Recipe) -> list[Path]:
    """The `--shard` workers' memory files beside the main memory, which the next full run merges."""
    main = memory_path(recipe)
    return sorted(main.parent.glob(main.stem + ".shard*.sqlite"))


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    """The stage: plan, translate what the memory lacks, assemble outputs, report; chunk by chunk
    of `translate.chunk_records` records (one chunk for most inputs), so memory stays bounded."""
    started = time.time()
    (out / "documents.jsonl").unlink(missing_ok=True)  # a failed earlier attempt's; chunks append
    memory = executor = None
    engines: dict = {}
    report: dict = {}
    stats: Counter = Counter()
    routes: dict[str, list[str]] = {}
    merged: list[str] = []
    round_trip: dict = {}
    judged: dict = {}
    # the segments each check has scored in an earlier chunk: a repeat is counted once
    scratch = Scratch(out / ".scored.sqlite")
    scored = {"round_trip": DigestSet(scratch, "round_trip"), "qe": DigestSet(scratch, "qe")}
    try:
        for k, data in enumerate(read_chunks(rundir, recipe.translate.chunk_records)):
            plan = make_plan(recipe, rundir, data=data, engines=engines)
            if memory is None:  # opened once the first plan holds: an unroutable pair creates no file
                memory = Memory(memory_path(recipe))
                for p in shard_memory_paths(recipe):
                    memory.merge_from(p)
                    merged.append(p.name)
            executor = executor or make_executor(recipe, engines)
            stats.update(execute(plan, memory, executor=executor))
            if recipe.translate.round_trip.enabled:  # before assembly: it may flag segments
                round_trip = add_reports(round_trip, roundtrip.score(plan, memory, scored["round_trip"]))
            if recipe.translate.quality_estimation.enabled:
                judged = add_reports(judged, qe.score(plan, memory, scored["qe"]))
            report = cap_flagged(add_reports(report, assemble(plan, memory, out, append=k > 0)))
            routes.update(routes_summary(plan))
            report["chunks"] = k + 1
    finally:
        scratch.close()
        if executor is not None:
            executor.close()
        if memory is not None:
            memory.close()
    secs = time.time() - started
    stats = dict(stats)
    if round_trip:
        stats["round_trip"] = roundtrip.summary(round_trip, recipe.translate.round_trip.min_chrf)
    if judged:
        stats["quality_estimation"] = qe.summary(judged, recipe.translate.quality_estimation.min_score)
    report.update(
        engine=recipe.translate.engine, routes=routes, segments=stats, merged_shards=merged,
        seconds=round(secs, 2), segments_per_second=round(stats.get("translated", 0) / secs, 2) if secs else None,
        memory=str(memory_path(recipe)),
    )  # fmt: skip
    atomic_write_json(out / "report.json", report)
    return {k: report[k] for k in ("written", "messages_by_pair", "passthrough_messages", "pivoted_messages")} | {
        "flagged": report["flagged_count"], "segments": stats,
    }  # fmt: skip


def add_reports(total: dict, part: dict) -> dict:
    """Two chunks' assembly counts as one: numbers and per-key counts summed, lists joined."""
    if not total:
        return part
    out = dict(total)
    for k, v in part.items():
        if isinstance(v, (bool, str)):
            out[k] = v
        elif isinstance(v, (int, float)):
            out[k] = total.get(k, 0) + v
        elif isinstance(v, dict):
            merged = dict(total.get(k, {}))
            for n, x in v.items():
                merged[n] = merged.get(n, 0) + x
            out[k] = merged
        elif isinstance(v, list):
            out[k] = total.get(k, []) + v
    return out


def routes_summary(plan: Plan) -> dict:
    return {
        f"{s}->{plan.target}": (
            [f"{leg.src}->{leg.tgt}: {leg.model}" for leg in legs] or ["pass-through"]
        )
        for s, legs in plan.routes.items()
    }


def run_shard(recipe: Recipe, index: int, count: int) -> dict:
    """Translate this worker's share into its own memory file (merged by the final run)."""
    if not 0 <= index < count:
        raise StageError(f"--shard {index}/{count}: index must be in 0..{count - 1}")
    rundir = RunDir(Path(recipe.run_dir))
    main = memory_path(recipe)
    path = main.with_name(f"{main.stem}.shard{index}of{count}.sqlite")
    memory = executor = None
    engines: dict = {}
    stats: Counter = Counter()
    try:
        for data in read_chunks(rundir, recipe.translate.chunk_records):
            plan = make_plan(recipe, rundir, data=data, engines=engines)
            memory = memory or Memory(path)
            executor = executor or make_executor(recipe, engines)
            stats.update(execute(plan, memory, shard=(index, count), executor=executor))
    finally:
        if executor is not None:
            executor.close()
        if memory is not None:
            memory.close()
    return {"memory": str(path), **stats}


_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str) -> tuple[int, int]:
    m = _SHARD.match(spec.strip())
    if not m or int(m.group(2)) < 1:
        raise StageError(f"--shard {spec!r}: expected i/n such as 0/4")
    return int(m.group(1)), int(m.group(2))
