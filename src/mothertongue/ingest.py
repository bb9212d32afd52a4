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

Memory stays bounded: each record is validated, checked for duplicates, weighted, given its
split and written as it is read (the OASST adapter alone reads its whole export first, to build
trees). Duplicates are found by 128-bit digests, not by the text (see `digests`: in
memory up to two million per set, then in a temporary SQLite file; a false duplicate has
probability under n²/2**129 for n records), and the report's counts come from a ledger that
holds no records.
"""

from __future__ import annotations

import bisect
import gc
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
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
from mothertongue.digests import DigestSet, Scratch, digest, hash128
from mothertongue.formats import FORMATS, IngestReport, detect_format
from mothertongue.ingest_ledger import Ledger
from mothertongue.registry import UnknownName
from mothertongue.runs import RunDir, atomic_write_json

Record = Conversation | PreferencePair | Document
__all__ = ["SPLITS", "split_of", "read_sources", "run", "format_report"]


_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_EDGES = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_BUFFER = 4096  # records written (and counted) at once: bigger batches run a little faster


def _exact_key(r: Record) -> tuple:
    """The record's own strings, in order: identical tuples are exact duplicates."""
    if isinstance(r, Document):
        return ("\x1c", r.text)
    if isinstance(r, PreferencePair):
        return (*(x for m in r.prompt for x in (m.role, m.content)), "\x1d", r.chosen, r.rejected)
    return tuple(x for m in r.messages for x in (m.role, m.content))


def _exact_parts(r: Record) -> tuple | list:
    """What the exact digest hashes: the same strings as `_exact_key`, built faster for the
    common case (a conversation: its (role, content) pairs)."""
    if isinstance(r, Conversation):
        return [(m.role, m.content) for m in r.messages]
    return _exact_key(r)


def _near_key(key: tuple) -> bytes:
    """Ignores case, Unicode form, whitespace and punctuation ("Hallo, Welt!" == "hallo welt")."""
    text = "\x1e".join(key)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    norm = " ".join(_PUNCT.sub(" ", text.casefold()).split())
    return hash128(norm.encode("utf-8", "surrogatepass"))


class _Dedup:
    """Duplicates among one kind of record (conversations across all sources, pairs, documents)."""

    def __init__(self, mode: str, scratch: Scratch, kind: str):
        self.mode = mode
        self.exact = DigestSet(scratch, f"{kind}_exact")
        self.near = DigestSet(scratch, f"{kind}_near") if mode == "near" else None

    def why(self, r: Record) -> str | None:
        """None when r is new (and now remembered), else the duplicate reason."""
        if self.mode == "none":
            return None
        if self.near is None:
            return None if self.exact.add(digest(_exact_parts(r))) else "duplicate (exact)"
        key = _exact_key(r)
        d = digest(_exact_parts(r))
        if d in self.exact:
            return "duplicate (exact)"
        if not self.near.add(_near_key(key)):
            return "duplicate (near: same normalised text)"
        self.exact.add(d)
        return None


def _copies(c: Conversation, weight: float, ledger: Ledger, phase: tuple[int, int, int]) -> list[Conversation]:
    """weight < 1 keeps that share, weight > 1 adds copies; chosen by id hash, so reproducible
    and stable when other sources change. Copies share their original's split (no leakage)."""
    if weight == 1.0:
        return [c]
    whole, frac = int(weight), weight - int(weight)
    copies = whole + (1 if frac and stable_fraction(c.id, "weight") < frac else 0)
    if copies == 0:
        ledger.drop(c, f"sampled out (weight={weight})", phase=phase)
        return []
    out = [c]
    for k in range(1, copies):
        meta = {**c.meta, "copy_of": c.id}
        out.append(Conversation(f"{c.id}~{k}", c.messages, c.lang, c.source, list(c.tags), meta, c.tools, c.origin))
    return out


def _records(recipe: Recipe, report: IngestReport, per_source: list[dict], ledger: Ledger) -> Iterator[tuple[int, Record]]:
    """(source index, record) for every record of every source, validated, as it is read; a
    source's entry in `per_source` is added when the source is done."""
    if not recipe.ingest.sources:
        raise DataError("ingest.sources is empty: add at least one source (path and format)")
    default_lang = recipe.translate.source_lang if recipe.translate.enabled else None
    for i, src in enumerate(recipe.ingest.sources):
        where = f"ingest.sources.{i}"
        path = recipe.resolve_path(src.path)
        if not path.exists() and src.format != "hf":
            raise DataError(f"{where}.path: file not found: {path}")
        fmt, why = src.format, "given"
        counts = Counter()
        try:
            if fmt == "auto":
                fmt, why = detect_format(path, FORMATS)
                report.notes.append(f"{path}: format auto -> {fmt} ({why})")
            try:
                adapter = FORMATS.get(fmt)(src, src.options, where)
            except UnknownName as e:
                raise DataError(f"{where}.format: {e}") from None
            read_before, skipped_before = report.read, sum(report.skipped.values())
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
                    counts[type(rec)] += 1
                    yield i, rec
                bar.update(completed=report.read - read_before)
        except PermissionError as e:
            raise DataError(f"{where}.path: {e.filename or path}: permission denied") from None
        except IsADirectoryError as e:
            raise DataError(f"{where}.path: {e.filename or path} is a folder; format {fmt} expects a file here") from None
        except OSError as e:
            raise DataError(f"{where}.path: {e.filename or path}: cannot read ({e.strerror or e})") from None
        ledger.read.append(report.read - read_before)
        ledger.skipped.append(sum(report.skipped.values()) - skipped_before)
        per_source.append({
            "name": adapter.src_name, "path": str(path), "format": fmt, "detected": why if src.format == "auto" else None,
            "read": report.read - read_before, "conversations": counts[Conversation], "pairs": counts[PreferencePair],
            "weight": src.weight, **({"documents": counts[Document]} if counts[Document] else {}),
        })


def read_sources(
    recipe: Recipe, report: IngestReport, per_source: list[dict] | None = None, ledger: Ledger | None = None,
    documents: list[Document] | None = None,
) -> tuple[list[list[Conversation]], list[PreferencePair]]:
    """Every source read, converted and validated, in memory: conversations per source, and all
    pairs (documents are appended to `documents`). The ingest stage itself streams instead."""
    convs: list[list[Conversation]] = [[] for _ in recipe.ingest.sources]
    pairs: list[PreferencePair] = []
    docs = documents if documents is not None else []
    for i, rec in _records(recipe, report, per_source if per_source is not None else [], ledger or Ledger(report)):
        if isinstance(rec, PreferencePair):
            pairs.append(rec)
        elif isinstance(rec, Document):
            docs.append(rec)
        else:
            convs[i].append(rec)
    return convs, pairs


def _empty_error(i: int, src_report: dict, path: Path, fmt: str, report: IngestReport) -> DataError:
    where = f"ingest.sources.{i}"
    if src_report["read"] == 0:
        what = f"a folder without files for format {fmt}" if path.is_dir() else "no records (empty or only whitespace)"
        return DataError(f"{where}: {path}: {what}; set ingest.allow_empty=true to accept an empty source")
    top = ", ".join(f"{n} x {r}" for r, n in report.skipped.most_common(3))
    return DataError(f"{where}: {path}: all {src_report['read']} records were skipped ({top}); "
                     "see the examples with ingest.on_error=skip, or set ingest.allow_empty=true")


class _Files:
    """The stage's JSONL outputs, appended `_BUFFER` records at a time through the one writer;
    `bufs` are filled by the caller (the hot loop appends directly) and emptied in place."""

    def __init__(self, out: Path, names: tuple[str, ...]):
        self.out = out
        self.bufs: dict[str, list] = {name: [] for name in names}
        self.counts: Counter[str] = Counter()
        for name in names:  # these exist even when empty; documents.jsonl only when there are any
            write_jsonl(out / f"{name}.jsonl", [])

    def add(self, name: str, rec: Record) -> None:
        buf = self.bufs.setdefault(name, [])
        buf.append(rec)
        if len(buf) >= _BUFFER:
            self.flush(name)

    def flush(self, name: str | None = None) -> None:
        for n in [name] if name else list(self.bufs):
            buf = self.bufs[n]
            if buf:
                self.counts[n] += write_jsonl(self.out / f"{n}.jsonl", buf, append=True)
                buf.clear()


class _Stats:
    """The report's languages, turns and length histogram, counted over the conversations written,
    in batches (so the counting loops run in C) and in output order (which orders the ties)."""

    def __init__(self):
        self.languages: Counter[str] = Counter()
        self.message_languages: Counter[str] = Counter()
        self.turns: Counter[int] = Counter()
        self.chars: Counter[int] = Counter()
        self.batch: list[Conversation] = []

    def add(self, c: Conversation) -> None:
        self.batch.append(c)
        if len(self.batch) >= _BUFFER:
            self.flush()

    def flush(self) -> None:
        b = self.batch
        self.languages.update(c.lang or "unknown" for c in b)
        self.message_languages.update(m.lang or c.lang or "unknown" for c in b for m in c.messages)
        self.turns.update(len(c.messages) for c in b)
        self.chars.update(bisect.bisect_right(_EDGES, sum(len(m.content) for m in c.messages)) - 1 for c in b)
        b.clear()

    def to_dict(self) -> dict:
        self.flush()
        labels = [f"{lo}-{hi - 1}" for lo, hi in zip(_EDGES, _EDGES[1:])] + [f"{_EDGES[-1]}+"]
        return {
            "languages": dict(self.languages.most_common()),
            "message_languages": dict(self.message_languages.most_common()),
            "turns": {str(k): v for k, v in sorted(self.turns.items())},
            "chars_histogram": {labels[i]: self.chars[i] for i in sorted(self.chars)},
        }


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    # Millions of short-lived small objects would make the cyclic GC rescan over and over;
    # ingest creates no cycles worth collecting.
    enabled = gc.isenabled()
    gc.disable()
    scratch = Scratch(out / ".ingest-scratch.sqlite")
    try:
        return _run(recipe, out, scratch)
    finally:
        scratch.close()
        if enabled:
            gc.enable()


def _run(recipe: Recipe, out: Path, scratch: Scratch) -> dict:
    cfg = recipe.ingest
    report = IngestReport(on_error=cfg.on_error)
    ledger = Ledger(report, scratch)
    per_source: list[dict] = []
    dedup = {kind: _Dedup(cfg.dedup, scratch, kind) for kind in ("conversations", "pairs", "documents")}
    files = _Files(out, (*SPLITS, "pairs"))
    stats = _Stats()
    first_name: dict[int, str] = {}
    added: Counter[int] = Counter()
    dev, test, convs_dedup = cfg.dev_fraction, cfg.test_fraction, dedup["conversations"]
    bufs, batch = files.bufs, stats.batch  # the common case below appends to them directly
    originals: Counter[int] = Counter()  # one-record conversations kept, per source (converted, for the ledger)
    # `phase` orders the drops as a whole-input ingest made them (see Ledger)
    for i, rec in _records(recipe, report, per_source, ledger):
        if not isinstance(rec, Conversation):
            kind, phase = ("pairs", (2, 0, 0)) if isinstance(rec, PreferencePair) else ("documents", (3, 0, 0))
            why = dedup[kind].why(rec)
            if why:
                ledger.drop(rec, why, phase=phase)
                continue
            files.add(kind, rec)
            ledger.keep(rec)
            continue
        why = convs_dedup.why(rec)
        if why:
            ledger.drop(rec, why, phase=(1, i, 0))
            continue
        if i not in first_name:
            first_name[i] = rec.source
        weight = cfg.sources[i].weight
        if weight == 1.0:
            split = split_of(rec, dev, test)
            buf = bufs[split]
            buf.append(rec)
            if len(buf) >= _BUFFER:
                files.flush(split)
            if len(rec.origin) == 1:
                originals[i] += 1
            else:
                ledger.keep(rec)
            batch.append(rec)
            if len(batch) >= _BUFFER:
                stats.flush()
            continue
        copies = _copies(rec, weight, ledger, (1, i, 1))
        added[i] += max(len(copies) - 1, 0)
        for c in copies:
            files.add(split_of(c, dev, test), c)
            ledger.keep(c)
            stats.add(c)
    files.flush()
    ledger.converted_once(originals)
    for i, src in enumerate(cfg.sources):
        if src.weight > 1:
            report.notes.append(f"{first_name.get(i, '?')}: weight={src.weight} added {added[i]} copies")
    for src_report, counts in zip(per_source, ledger.settle()):
        src_report.update(counts)
    for i, src_report in enumerate(per_source):
        if src_report["converted"] == 0 and not cfg.allow_empty:
            raise _empty_error(i, src_report, Path(src_report["path"]), src_report["format"], report)

    summary = report.to_dict()
    splits = {s: files.counts[s] for s in SPLITS}
    summary["conversations"] = sum(splits.values())
    summary["splits"] = splits
    summary["pairs"] = files.counts["pairs"]
    if files.counts["documents"]:
        summary["documents"] = files.counts["documents"]
    summary["sources"] = per_source
    summary.update(stats.to_dict())
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
