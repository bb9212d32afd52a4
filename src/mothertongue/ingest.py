"""Ingest stage: read every source of a recipe into conversations, losing nothing silently.

    mothertongue ingest recipes/quickstart.yaml
    mothertongue ingest recipes/quickstart.yaml ingest.on_error=skip

Writes `ingest/{train,dev,test}.jsonl` (conversations), `ingest/pairs.jsonl` (preference pairs,
when a source has them) and `ingest/report.json`: records read, converted, skipped by reason
with file:line examples, languages, turns and lengths. The report reconciles: every record read
is converted (into conversations, pairs or both, counted once) or skipped with one reason. A
source that yields nothing is an error (unless `ingest.allow_empty`), and a failed ingest leaves
the previous output as it was. Splits are decided by a hash of the conversation id, so adding a
source never moves existing conversations between splits; a source that marks its own
evaluation part (the text format's `_EVAL_`) keeps it.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mothertongue import progress
from mothertongue.config import Recipe
from mothertongue.conversation import (
    SPLITS,
    Conversation,
    DataError,
    Document,
    PreferencePair,
    split_of,
    stable_fraction,
    write_jsonl,
)
from mothertongue.formats import FORMATS, IngestReport, detect_format
from mothertongue.registry import UnknownName
from mothertongue.runs import RunDir, atomic_write_json

Record = Conversation | PreferencePair | Document
__all__ = ["SPLITS", "split_of", "read_sources", "run", "format_report"]


_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def _exact_key(r: Record) -> tuple:
    """Identical text, as a tuple of the record's own strings: hashed in C, nothing copied,
    and compared in full on a hash match (no digest whose collision could drop a record)."""
    if isinstance(r, Document):
        return ("\x1c", r.text)
    if isinstance(r, PreferencePair):
        return (*(x for m in r.prompt for x in (m.role, m.content)), "\x1d", r.chosen, r.rejected)
    return tuple(x for m in r.messages for x in (m.role, m.content))


def _near_key(key: tuple) -> bytes:
    """Ignores case, Unicode form, whitespace and punctuation ("Hallo, Welt!" == "hallo welt")."""
    text = "\x1e".join(key)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return hashlib.sha1(" ".join(_PUNCT.sub(" ", text.casefold()).split()).encode()).digest()


def _histogram(values: list[int], edges=(0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)) -> dict[str, int]:
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    counts = Counter(bisect.bisect_right(edges, v) - 1 for v in values)
    return {labels[i]: counts[i] for i in sorted(counts)}


def _where(r: Record) -> str:
    m = r.meta
    if "line" in m:
        return f"{m.get('file', r.source)}:{m['line']}"
    if "row" in m:
        return f"{m.get('file', r.source)} row {m['row']}"
    return m.get("file", r.source)


@dataclass
class Ledger:
    """Where every record read went. A conversation or pair carries `origin`: (source index,)
    when it is the one output of one record, else (source index, unit, unit, ...) naming the
    records it came from (an OASST thread: its messages). Outputs dropped after the adapter
    (invalid, duplicate, sampled out, past the limit) are resolved at the end: a record is
    skipped only when none of its outputs survived, and then once."""

    report: IngestReport
    read: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # by the adapters, per source
    dropped: list[tuple[Record, str, str, str]] = field(default_factory=list)

    def drop(self, rec: Record, reason: str, detail: str = "") -> None:
        where = _where(rec)
        if reason == "invalid conversation" and self.report.on_error == "stop":
            self.report.bad(where, reason, detail)  # raises
        self.dropped.append((rec, reason, where, detail))

    def settle(self, kept: list[Record]) -> list[dict]:
        """Count converted records and the records dropped whole; per source and in total."""
        n = len(self.read)
        converted, skipped = [0] * n, list(self.skipped)
        units: set = set()
        for r in kept:
            if "copy_of" in r.meta:
                continue
            src = r.origin[0]
            if len(r.origin) == 1:
                converted[src] += 1
            else:
                for u in r.origin[1:]:
                    if (src, u) not in units:
                        units.add((src, u))
                        converted[src] += 1
        gone: set = set()
        for rec, reason, where, detail in self.dropped:
            src = rec.origin[0]
            lost = [None] if len(rec.origin) == 1 else [
                u for u in rec.origin[1:] if (src, u) not in units and (src, u) not in gone]
            for u in lost:
                if u is not None:
                    gone.add((src, u))
                self.report.skip(where, reason, detail)
                skipped[src] += 1
        self.report.converted = sum(converted)
        return [{"read": self.read[i], "converted": converted[i], "skipped": skipped[i]} for i in range(n)]


def read_sources(
    recipe: Recipe, report: IngestReport, per_source: list[dict] | None = None, ledger: Ledger | None = None,
    documents: list[Document] | None = None,
) -> tuple[list[list[Conversation]], list[PreferencePair]]:
    """Every source read, converted and validated: conversations per source, and all pairs
    (documents, from `documents` sources, are appended to `documents`)."""
    per_source = per_source if per_source is not None else []
    ledger = ledger or Ledger(report)
    convs: list[list[Conversation]] = []
    pairs: list[PreferencePair] = []
    docs = documents if documents is not None else []
    if not recipe.ingest.sources:
        raise DataError("ingest.sources is empty: add at least one source (path and format)")
    default_lang = recipe.translate.source_lang if recipe.translate.enabled else None
    for i, src in enumerate(recipe.ingest.sources):
        where = f"ingest.sources.{i}"
        path = recipe.resolve_path(src.path)
        if not path.exists() and src.format != "hf":
            raise DataError(f"{where}.path: file not found: {path}")
        fmt, why = src.format, "given"
        try:
            if fmt == "auto":
                fmt, why = detect_format(path, FORMATS)
                report.notes.append(f"{path}: format auto -> {fmt} ({why})")
            try:
                adapter = FORMATS.get(fmt)(src, src.options, where)
            except UnknownName as e:
                raise DataError(f"{where}.format: {e}") from None
            read_before, skipped_before = report.read, sum(report.skipped.values())
            mine: list[Conversation] = []
            n_pairs = n_docs = 0
            single, limit, n = (i,), src.limit, 0  # one shared origin tuple for one-record outputs
            with progress.task(f"ingest {adapter.src_name}", unit="records") as bar:
                for seen, rec in enumerate(adapter.read(path, report)):
                    if seen % 1000 == 0:  # an update per record would cost more than the record
                        bar.update(completed=report.read - read_before)
                    rec.origin = single if rec.origin is None else (i, *rec.origin)
                    if limit is not None and n >= limit:
                        # past the limit: counted; an adapter that read everything before yielding
                        # (OASST) is drained so each of its records is accounted for
                        ledger.drop(rec, f"beyond the source's limit ({limit})")
                        if adapter.collects:
                            continue
                        report.notes.append(f"{path}: stopped after limit={limit} records")
                        break
                    n += 1
                    try:
                        rec.validate()
                    except DataError as e:
                        ledger.drop(rec, "invalid conversation", str(e))
                        continue
                    if rec.lang is None:
                        rec.lang = default_lang
                    if isinstance(rec, PreferencePair):
                        pairs.append(rec)
                        n_pairs += 1
                    elif isinstance(rec, Document):
                        docs.append(rec)
                        n_docs += 1
                    else:
                        mine.append(rec)
                bar.update(completed=report.read - read_before)
        except PermissionError as e:
            raise DataError(f"{where}.path: {e.filename or path}: permission denied") from None
        except IsADirectoryError as e:
            raise DataError(f"{where}.path: {e.filename or path} is a folder; format {fmt} expects a file here") from None
        except OSError as e:
            raise DataError(f"{where}.path: {e.filename or path}: cannot read ({e.strerror or e})") from None
        convs.append(mine)
        ledger.read.append(report.read - read_before)
        ledger.skipped.append(sum(report.skipped.values()) - skipped_before)
        per_source.append({
            "name": adapter.src_name, "path": str(path), "format": fmt, "detected": why if src.format == "auto" else None,
            "read": report.read - read_before, "conversations": len(mine), "pairs": n_pairs, "weight": src.weight,
            **({"documents": n_docs} if n_docs else {}),
        })
    return convs, pairs


def _empty_error(i: int, src_report: dict, path: Path, fmt: str, report: IngestReport) -> DataError:
    where = f"ingest.sources.{i}"
    if src_report["read"] == 0:
        what = f"a folder without files for format {fmt}" if path.is_dir() else "no records (empty or only whitespace)"
        return DataError(f"{where}: {path}: {what}; set ingest.allow_empty=true to accept an empty source")
    top = ", ".join(f"{n} x {r}" for r, n in report.skipped.most_common(3))
    return DataError(f"{where}: {path}: all {src_report['read']} records were skipped ({top}); "
                     "see the examples with ingest.on_error=skip, or set ingest.allow_empty=true")


def _dedup(records: list, mode: str, ledger: Ledger, seen_exact: set, seen_near: set) -> list:
    if mode == "none":
        return records
    kept = []
    near = mode == "near"
    for r in records:
        key = _exact_key(r)
        if key in seen_exact:
            ledger.drop(r, "duplicate (exact)")
            continue
        if near:
            nkey = _near_key(key)
            if nkey in seen_near:
                ledger.drop(r, "duplicate (near: same normalised text)")
                continue
            seen_near.add(nkey)
        seen_exact.add(key)
        kept.append(r)
    return kept


def _weighted(convs: list[Conversation], weight: float, ledger: Ledger) -> list[Conversation]:
    """weight < 1 keeps that share, weight > 1 adds copies; chosen by id hash, so reproducible
    and stable when other sources change. Copies share their original's split (no leakage)."""
    if weight == 1.0:
        return convs
    out: list[Conversation] = []
    whole, frac = int(weight), weight - int(weight)
    for c in convs:
        copies = whole + (1 if frac and stable_fraction(c.id, "weight") < frac else 0)
        if copies == 0:
            ledger.drop(c, f"sampled out (weight={weight})")
            continue
        out.append(c)
        for k in range(1, copies):
            meta = {**c.meta, "copy_of": c.id}
            out.append(Conversation(f"{c.id}~{k}", c.messages, c.lang, c.source, list(c.tags), meta, c.tools, c.origin))
    if weight > 1:
        ledger.report.notes.append(f"{convs[0].source if convs else '?'}: weight={weight} added {len(out) - len(convs)} copies")
    return out


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    # Millions of long-lived small objects make the cyclic GC rescan the heap over and over
    # (a third of the time at 1M records); ingest creates no cycles worth collecting.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(recipe, out)
    finally:
        if enabled:
            gc.enable()


def _run(recipe: Recipe, out: Path) -> dict:
    cfg = recipe.ingest
    report = IngestReport(on_error=cfg.on_error)
    ledger = Ledger(report)
    per_source: list[dict] = []
    docs: list[Document] = []
    by_source, pairs = read_sources(recipe, report, per_source, ledger, docs)

    seen_exact: set = set()
    seen_near: set = set()
    kept: list[Conversation] = []
    for src, convs in zip(cfg.sources, by_source):
        kept += _weighted(_dedup(convs, cfg.dedup, ledger, seen_exact, seen_near), src.weight, ledger)
    pairs = _dedup(pairs, cfg.dedup, ledger, set(), set())
    docs = _dedup(docs, cfg.dedup, ledger, set(), set())
    for src_report, counts in zip(per_source, ledger.settle([*kept, *pairs, *docs])):
        src_report.update(counts)
    for i, src_report in enumerate(per_source):
        if src_report["converted"] == 0 and not cfg.allow_empty:
            raise _empty_error(i, src_report, Path(src_report["path"]), src_report["format"], report)

    by_split: dict[str, list[Conversation]] = {s: [] for s in SPLITS}
    for c in kept:
        by_split[split_of(c, cfg.dev_fraction, cfg.test_fraction)].append(c)
    for s in SPLITS:
        write_jsonl(out / f"{s}.jsonl", by_split[s])
    write_jsonl(out / "pairs.jsonl", pairs)
    if docs:  # only when there are any: runs without documents keep their exact set of files
        write_jsonl(out / "documents.jsonl", docs)

    summary = report.to_dict()
    summary["conversations"] = len(kept)
    summary["splits"] = {s: len(v) for s, v in by_split.items()}
    summary["pairs"] = len(pairs)
    if docs:
        summary["documents"] = len(docs)
    summary["sources"] = per_source
    summary["languages"] = dict(Counter(c.lang or "unknown" for c in kept).most_common())
    summary["message_languages"] = dict(
        Counter(m.lang or c.lang or "unknown" for c in kept for m in c.messages).most_common())
    summary["turns"] = {str(k): v for k, v in sorted(Counter(len(c.messages) for c in kept).items())}
    summary["chars_histogram"] = _histogram([sum(len(m.content) for m in c.messages) for c in kept])
    atomic_write_json(out / "report.json", summary)
    print(format_report(summary))
    return summary


def format_report(s: dict) -> str:
    lines = [
        f"[ingest] read {s['read']} records: converted {s['converted']}, skipped {sum(s['skipped'].values())}; "
        f"conversations: train {s['splits']['train']}, dev {s['splits']['dev']}, test {s['splits']['test']}; "
        f"pairs {s['pairs']}" + (f"; documents {s['documents']}" if s.get("documents") else "")
    ]
    for src in s.get("sources", []):
        how = f"auto: {src['detected']}" if src.get("detected") else "given"
        lines.append(f"  source {src['name']} [{src['format']}, {how}]: read {src['read']}, converted "
                     f"{src['converted']}, skipped {src['skipped']} -> {src['conversations']} conversations, "
                     f"{src['pairs']} pairs")
    for reason, n in sorted(s["skipped"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  skipped {n} x {reason}, e.g. {s['examples'][reason][0]}")
    langs = ", ".join(f"{k} {v}" for k, v in list(s.get("languages", {}).items())[:8])
    if langs:
        lines.append(f"  languages: {langs}")
    turns = ", ".join(f"{k}: {v}" for k, v in s.get("turns", {}).items())
    if turns:
        lines.append(f"  messages per conversation: {turns}")
    for note in s["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
