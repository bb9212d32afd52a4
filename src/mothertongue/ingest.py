"""Ingest stage: read every source of a recipe into conversations, losing nothing silently.

    mothertongue ingest recipes/quickstart.yaml
    mothertongue ingest recipes/quickstart.yaml ingest.on_error=skip

Writes `ingest/{train,dev,test}.jsonl` (conversations), `ingest/pairs.jsonl` (preference pairs,
when a source has them) and `ingest/report.json`: records read, converted, skipped by reason
with file:line examples, languages, turns and lengths. Splits are decided by a hash of the
conversation id, so adding a source never moves existing conversations between splits; a
source that marks its own evaluation part (the text format's `_EVAL_`) keeps it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.conversation import Conversation, DataError, PreferencePair, write_jsonl
from mothertongue.formats import FORMATS, IngestReport, detect_format
from mothertongue.runs import RunDir, atomic_write_json

SPLITS = ("train", "dev", "test")


def _split_of(conv: Conversation, dev: float, test: float) -> str:
    explicit = conv.meta.get("split")
    if explicit in SPLITS:
        return explicit
    u = int(hashlib.sha256(conv.id.encode()).hexdigest()[:12], 16) / 16**12
    if u < test:
        return "test"
    if u < test + dev:
        return "dev"
    return "train"


_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def _dedup_key(conv: Conversation, mode: str) -> str:
    text = "\x1e".join(f"{m.role}\x1f{m.content}" for m in conv.messages)
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    if mode == "near":
        text = _PUNCT.sub(" ", text)
        text = " ".join(text.split())
    return hashlib.sha1(text.encode()).hexdigest()


def _histogram(values: list[int]) -> dict[str, int]:
    edges = [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    out: Counter[str] = Counter()
    for v in values:
        lo = max(e for e in edges if e <= v)
        hi = next((e for e in edges if e > v), None)
        out[f"{lo}-{hi - 1}" if hi else f"{lo}+"] += 1
    return {k: out[k] for k in sorted(out, key=lambda s: int(s.split("-")[0].rstrip("+")))}


def read_sources(recipe: Recipe, report: IngestReport) -> tuple[list[Conversation], list[PreferencePair]]:
    convs: list[Conversation] = []
    pairs: list[PreferencePair] = []
    if not recipe.ingest.sources:
        raise DataError("ingest.sources is empty: add at least one source (path and format)")
    for i, src in enumerate(recipe.ingest.sources):
        path = recipe.resolve_path(src.path)
        if not path.exists():
            raise DataError(f"ingest.sources.{i}.path: file not found: {path}")
        fmt = src.format
        if fmt == "auto":
            fmt, why = detect_format(path, FORMATS)
            report.notes.append(f"{path}: format auto -> {fmt} ({why})")
        adapter = FORMATS.get(fmt)(src, src.options)
        n = 0
        for rec in adapter.read(path, report):
            if src.limit is not None and n >= src.limit:
                report.notes.append(f"{path}: stopped after limit={src.limit} records")
                break
            where = f"{path}:{rec.meta.get('line', '?')}"
            try:
                rec.validate()
            except DataError as e:
                report.bad(where, "invalid conversation", str(e))
                continue
            if rec.lang is None:
                rec.lang = recipe.translate.source_lang if recipe.translate.enabled else None
            (pairs if isinstance(rec, PreferencePair) else convs).append(rec)
            n += 1
    return convs, pairs


def run(recipe: Recipe, run: RunDir, out: Path) -> dict:
    cfg = recipe.ingest
    report = IngestReport(on_error=cfg.on_error)
    convs, pairs = read_sources(recipe, report)

    kept: list[Conversation] = []
    seen: set[str] = set()
    for c in convs:
        if cfg.dedup != "none":
            key = _dedup_key(c, cfg.dedup)
            if key in seen:
                report.skip(f"{c.meta.get('file', c.source)}:{c.meta.get('line', '?')}", f"duplicate ({cfg.dedup})")
                continue
            seen.add(key)
        kept.append(c)
    report.converted = len(kept) + len(pairs)

    by_split: dict[str, list[Conversation]] = {s: [] for s in SPLITS}
    for c in kept:
        by_split[_split_of(c, cfg.dev_fraction, cfg.test_fraction)].append(c)
    for s in SPLITS:
        write_jsonl(out / f"{s}.jsonl", by_split[s])
    write_jsonl(out / "pairs.jsonl", pairs)

    summary = report.to_dict()
    summary["splits"] = {s: len(v) for s, v in by_split.items()}
    summary["pairs"] = len(pairs)
    summary["languages"] = dict(Counter(c.lang or "unknown" for c in kept))
    summary["turns"] = dict(Counter(str(len(c.messages)) for c in kept))
    summary["chars_histogram"] = _histogram([sum(len(m.content) for m in c.messages) for c in kept])
    atomic_write_json(out / "report.json", summary)
    print(format_report(summary))
    return summary


def format_report(s: dict) -> str:
    lines = [
        f"[ingest] read {s['read']} records, converted {s['converted']} "
        f"(train {s['splits']['train']}, dev {s['splits']['dev']}, test {s['splits']['test']}, pairs {s['pairs']})"
    ]
    for reason, n in sorted(s["skipped"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  skipped {n} x {reason}, e.g. {s['examples'][reason][0]}")
    for note in s["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
