"""Machine-translate the vision data's text with the translate stage's own machinery.

    records, report = translate_records(recipe, RunDir(recipe.run_dir), records, out / "translate")

With `translate.enabled`, the vision stage hands its records (captions and conversations) to the
same plan, engines, translation memory and quality gate as ingested text: each record becomes a
conversation; a message's source language is the one of its source (`vision.captions[].lang`),
else `translate.source_lang`, else detected, and text already in the recipe's language passes
through (so does the question the captions format writes in the target language). Only text is
translated: an image is a path in the record, never in the text, and the image token is markup
that segmentation keeps byte for byte, so neither reaches the engine or the memory. Segments the
translate stage (or an earlier vision run) already translated are memory hits.

Writes translate's outputs for the vision text into `out` (`train.jsonl`, `parallel.jsonl`,
`flagged.jsonl`); a record whose translation fails the gate is left out unless
`translate.keep_flagged`, counted in the report with its reasons.
"""

from __future__ import annotations

from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.conversation import Conversation, Message, read_conversations
from mothertongue.runs import RunDir


def as_conversation(record: dict, target: str) -> Conversation:
    fixed = set(record.get("in_target", ()))
    msgs = [
        Message(m["role"], m["content"], target if i in fixed else None)
        for i, m in enumerate(record["messages"])
    ]
    return Conversation(record["id"], msgs, record.get("lang"), record.get("source", ""))


def translate_records(
    recipe: Recipe, rundir: RunDir, records: list[dict], out: Path
) -> tuple[list[dict], dict]:
    """`records` with their text in the recipe's language (original text in `source_messages`),
    and the report: translated and flagged counts, the memory's statistics."""
    from mothertongue.engines.memory import Memory
    from mothertongue.translate import assemble, execute, make_plan, memory_path
    from mothertongue.translate.work import make_executor

    out.mkdir(parents=True, exist_ok=True)
    convs = {"train": [as_conversation(r, recipe.language) for r in records], "dev": [], "test": []}
    plan = make_plan(recipe, rundir, data=(convs, [], [], {}))
    memory = Memory(memory_path(recipe))
    executor = make_executor(recipe, plan.engines)
    try:
        segments = execute(plan, memory, executor=executor)
        assembled = assemble(plan, memory, out)
    finally:
        executor.close()
        memory.close()
    done = {c.id: c for c in read_conversations(out / "train.jsonl")}
    kept = []
    for r in records:
        c = done.get(r["id"])
        if c is not None:
            kept.append(
                {
                    **r,
                    "messages": [{"role": m.role, "content": m.content} for m in c.messages],
                    "source_messages": r["messages"],
                }
            )
    report = {
        "records": len(records),
        "kept": len(kept),
        "messages_by_pair": assembled["messages_by_pair"],
        "passthrough_messages": assembled["passthrough_messages"],
        "segments": dict(segments),
        "flagged": assembled["flagged"],
        "flagged_count": assembled["flagged_count"],
        "flagged_kept": assembled["flagged_kept"],
    }
    return kept, report
