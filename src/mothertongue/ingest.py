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

import bisect
import gc
import hashlib
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.conversation import Conversation, DataError, PreferencePair
from mothertongue.formats import FORMATS, IngestReport, detect_format
from mothertongue.registry import UnknownName
from mothertongue.runs import RunDir, atomic_write_json

SPLITS = ("train", "dev", "test")


def split_of(conv: Conversation | PreferencePair, dev: float, test: float) -> str:
    """train/dev/test by the record's own mark, else by a hash of its id (stable when sources are added)."""
    explicit = conv.meta.get("split")
    if explicit in SPLITS:
        return explicit
    if not (dev or test):
        return "train"
    u = _hash01(conv.meta.get("copy_of", conv.id))
    if u < test:
        return "test"
    if u < test + dev:
        return "dev"
    return "train"


_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def _exact_key(r: Conversation | PreferencePair) -> tuple:
    """Identical text, as a tuple of the record's own strings: hashed in C, nothing copied,
    and compared in full on a hash match (no digest whose collision could drop a record)."""
    if isinstance(r, PreferencePair):
        return (*(x for m in r.prompt for x in (m.role, m.content)), "\x1d", r.chosen, r.rejected)
    return tuple(x for m in r.messages for x in (m.role, m.content))


def _near_key(key: tuple) -> bytes:
    """Ignores case, Unicode form, whitespace and punctuation ("Hallo, Welt!" == "hallo welt")."""
    text = "\x1e".join(key)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return hashlib.sha1(" ".join(_PUNCT.sub(" ", text.casefold()).split()).encode()).digest()


def _hash01(s: str, salt: str = "") -> float:
    """A uniform number in [0, 1) from the first 48 bits of sha256(salt + s)."""
    return int.from_bytes(hashlib.sha256((salt + s).encode()).digest()[:6], "big") / 16**12


def _histogram(values: list[int], edges=(0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)) -> dict[str, int]:
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    counts = Counter(bisect.bisect_right(edges, v) - 1 for v in values)
    return {labels[i]: counts[i] for i in sorted(counts)}


def _where(r: Conversation | PreferencePair) -> str:
    m = r.meta
    if "line" in m:
        return f"{m.get('file', r.source)}:{m['line']}"
    if "row" in m:
        return f"{m.get('file', r.source)} row {m['row']}"
    return m.get("file", r.source)


def read_sources(
    recipe: Recipe, report: IngestReport, per_source: list[dict] | None = None
) -> tuple[list[list[Conversation]], list[PreferencePair]]:
    """Every source read, converted and validated: conversations per source, and all pairs."""
    per_source = per_source if per_source is not None else []
    convs: list[list[Conversation]] = []
    pairs: list[PreferencePair] = []
    if not recipe.ingest.sources:
        raise DataError("ingest.sources is empty: add at least one source (path and format)")
    default_lang = recipe.translate.source_lang if recipe.translate.enabled else None
    for i, src in enumerate(recipe.ingest.sources):
        path = recipe.resolve_path(src.path)
        if not path.exists() and src.format != "hf":
            raise DataError(f"ingest.sources.{i}.path: file not found: {path}")
        fmt, why = src.format, "given"
        if fmt == "auto":
            fmt, why = detect_format(path, FORMATS)
            report.notes.append(f"{path}: format auto -> {fmt} ({why})")
        try:
            adapter = FORMATS.get(fmt)(src, src.options)
        except UnknownName as e:
            raise DataError(f"ingest.sources.{i}.format: {e}") from None
        read_before, skipped_before = report.read, sum(report.skipped.values())
        mine: list[Conversation] = []
        n = 0
        for rec in adapter.read(path, report):
            if src.limit is not None and n >= src.limit:
                report.notes.append(f"{path}: stopped after limit={src.limit} records")
                break
            try:
                rec.validate()
            except DataError as e:
                report.bad(_where(rec), "invalid conversation", str(e))
                continue
            if rec.lang is None:
                rec.lang = default_lang
            (pairs if isinstance(rec, PreferencePair) else mine).append(rec)
            n += 1
        convs.append(mine)
        per_source.append({
            "name": adapter.src_name, "path": str(path), "format": fmt, "detected": why if src.format == "auto" else None,
            "read": report.read - read_before, "conversations": len(mine), "pairs": n - len(mine),
            "skipped": sum(report.skipped.values()) - skipped_before, "weight": src.weight,
        })
    return convs, pairs


def _dedup(records: list, mode: str, report: IngestReport, seen_exact: set, seen_near: set) -> list:
    if mode == "none":
        return records
    kept = []
    near = mode == "near"
    for r in records:
        key = _exact_key(r)
        if key in seen_exact:
            report.skip(_where(r), "duplicate (exact)")
            continue
        if near:
            nkey = _near_key(key)
            if nkey in seen_near:
                report.skip(_where(r), "duplicate (near: same normalised text)")
                continue
            seen_near.add(nkey)
        seen_exact.add(key)
        kept.append(r)
    return kept


def _weighted(convs: list[Conversation], weight: float, report: IngestReport) -> list[Conversation]:
    """weight < 1 keeps that share, weight > 1 adds copies; chosen by id hash, so reproducible
    and stable when other sources change. Copies share their original's split (no leakage)."""
    if weight == 1.0:
        return convs
    out: list[Conversation] = []
    whole, frac = int(weight), weight - int(weight)
    for c in convs:
        copies = whole + (1 if frac and _hash01(c.id, "weight") < frac else 0)
        if copies == 0:
            report.skip(_where(c), f"sampled out (weight={weight})")
            continue
        out.append(c)
        for k in range(1, copies):
            meta = {**c.meta, "copy_of": c.id}
            out.append(Conversation(f"{c.id}~{k}", c.messages, c.lang, c.source, list(c.tags), meta))
    if weight > 1:
        report.notes.append(f"{convs[0].source if convs else '?'}: weight={weight} added {len(out) - len(convs)} copies")
    return out


def _write(path: Path, records: list) -> None:
    """JSONL like conversation.write_jsonl, 3x faster at 1M records (orjson, stdlib as fallback)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    try:
        import orjson
    except ImportError:  # pragma: no cover
        orjson = None

    def line(r) -> bytes:
        d = r.to_dict()
        if orjson is not None:
            try:
                return orjson.dumps(d) + b"\n"
            except TypeError:  # ints over 64 bits, lone surrogates: the stdlib writes them
                pass
        return (encode(d) + "\n").encode("utf-8", "surrogatepass")

    with open(path, "wb") as f:
        f.writelines(line(r) for r in records)


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
    per_source: list[dict] = []
    by_source, pairs = read_sources(recipe, report, per_source)

    seen_exact: set = set()
    seen_near: set = set()
    kept: list[Conversation] = []
    for src, convs in zip(cfg.sources, by_source):
        kept += _weighted(_dedup(convs, cfg.dedup, report, seen_exact, seen_near), src.weight, report)
    pairs = _dedup(pairs, cfg.dedup, report, set(), set())
    report.converted = len(kept) + len(pairs)

    by_split: dict[str, list[Conversation]] = {s: [] for s in SPLITS}
    for c in kept:
        by_split[split_of(c, cfg.dev_fraction, cfg.test_fraction)].append(c)
    for s in SPLITS:
        _write(out / f"{s}.jsonl", by_split[s])
    _write(out / "pairs.jsonl", pairs)

    summary = report.to_dict()
    summary["splits"] = {s: len(v) for s, v in by_split.items()}
    summary["pairs"] = len(pairs)
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
        f"[ingest] read {s['read']} records, converted {s['converted']} "
        f"(train {s['splits']['train']}, dev {s['splits']['dev']}, test {s['splits']['test']}, pairs {s['pairs']})"
    ]
    for src in s.get("sources", []):
        how = f"auto: {src['detected']}" if src.get("detected") else "given"
        lines.append(f"  source {src['name']} [{src['format']}, {how}]: read {src['read']}, "
                     f"{src['conversations']} conversations, {src['pairs']} pairs, {src['skipped']} skipped")
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
