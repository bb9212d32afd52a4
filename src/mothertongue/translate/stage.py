"""Translate, the entry points: the stage (`run`), one `--shard` worker, and where the memory lives.

    mothertongue translate recipes/my.yaml                       # resumable: rerun after a crash
    mothertongue translate recipes/my.yaml --shard 0/4           # one of 4 workers (then rerun without)

`run` plans (translate.plan), merges any shard memories, translates what the memory lacks
(translate.work), assembles the outputs (translate.assemble) and writes `report.json`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.engines.memory import Memory
from mothertongue.runs import RunDir, StageError, atomic_write_json
from mothertongue.translate.assemble import assemble
from mothertongue.translate.plan import Plan, make_plan
from mothertongue.translate.work import execute


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
    """The stage: plan, translate what the memory lacks, assemble outputs, report."""
    started = time.time()
    plan = make_plan(recipe, rundir)
    memory = Memory(memory_path(recipe))
    try:
        merged = []
        for p in shard_memory_paths(recipe):
            memory.merge_from(p)
            merged.append(p.name)
        stats = execute(plan, memory)
        report = assemble(plan, memory, out)
    finally:
        memory.close()
    secs = time.time() - started
    report.update(
        engine=recipe.translate.engine, routes=routes_summary(plan), segments=stats, merged_shards=merged,
        seconds=round(secs, 2), segments_per_second=round(stats.get("translated", 0) / secs, 2) if secs else None,
        memory=str(memory_path(recipe)),
    )  # fmt: skip
    atomic_write_json(out / "report.json", report)
    return {k: report[k] for k in ("written", "messages_by_pair", "passthrough_messages", "pivoted_messages")} | {
        "flagged": len(report["flagged"]), "segments": stats,
    }  # fmt: skip


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
    plan = make_plan(recipe, RunDir(Path(recipe.run_dir)))
    main = memory_path(recipe)
    memory = Memory(main.with_name(f"{main.stem}.shard{index}of{count}.sqlite"))
    try:
        stats = execute(plan, memory, shard=(index, count))
    finally:
        memory.close()
    return {"memory": str(memory.path), **stats}


_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str) -> tuple[int, int]:
    m = _SHARD.match(spec.strip())
    if not m or int(m.group(2)) < 1:
        raise StageError(f"--shard {spec!r}: expected i/n such as 0/4")
    return int(m.group(1)), int(m.group(2))
