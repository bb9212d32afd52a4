"""Translate stage: machine-translate ingested conversations into the recipe's language.

    mothertongue translate recipes/my.yaml                       # resumable: rerun after a crash
    mothertongue translate recipes/my.yaml --dry-run             # the plan: routes, models, segments, time
    mothertongue translate recipes/my.yaml --shard 0/4           # one of 4 workers (then rerun without)

Read in this order: `plan` (languages per message, routes, segments), `work` (translate what
the translation memory lacks, one engine batch per transaction, through the quality `gate`),
`assemble` (render messages from the memory, write the outputs), `stage` (the entry points) and
`estimate` (`--dry-run`). Every message is split into segments (text.segment: sentences, pieces
of over-long sentences; code, URLs, markup and placeholders never reach the model). Each distinct
segment is translated once per route leg and stored in the translation memory (SQLite,
engines.memory), so a kill loses at most the batch in flight and a rerun does only what is
missing. Outputs go to `translate/` (atomically, by runs.run_stage): `{train,dev,test}.jsonl`
(lang = target; original messages in meta["source_messages"]), `pairs.jsonl`, `parallel.jsonl`
(one row per translated train message), `flagged.jsonl` (conversations that failed the quality
gate; kept out unless translate.keep_flagged) and `report.json` (counts by language pair,
pass-through, pivoted, guessed languages; flagged: counted, the first 100 listed).
"""

from __future__ import annotations

from mothertongue.translate.assemble import assemble
from mothertongue.translate.estimate import dry_run
from mothertongue.translate.gate import gate
from mothertongue.translate.plan import Plan, RecordKey, TextKey, Unit, make_plan
from mothertongue.translate.stage import (
    memory_path,
    parse_shard,
    run,
    run_shard,
    shard_memory_paths,
)
from mothertongue.translate.work import execute

__all__ = [
    "Plan", "RecordKey", "TextKey", "Unit", "assemble", "dry_run", "execute", "gate", "make_plan",
    "memory_path", "parse_shard", "run", "run_shard", "shard_memory_paths",
]  # fmt: skip
