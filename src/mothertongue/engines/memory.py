"""Translation memory: an embedded SQLite database of every segment ever translated.

    python -m mothertongue.cli merge-memory runs/x/translate-memory.sqlite runs/x/*.shard*.sqlite

Key: (engine settings, model, source language, target language, segment text). Each batch is
committed as one transaction (WAL journal), so a kill loses at most the batch in flight and a
rerun asks the memory what is missing; identical segments anywhere in a dataset are one row.
Rows carry the quality-gate status ("ok", "retried", or "flagged:<reasons>"), optional per-segment
scores (JSON, e.g. the round-trip chrF) and a human correction (`edited`, from `mothertongue
review --import`): the machine output stays in `target`, and reads return the correction with the
status "edited".
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from mothertongue.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS tm (
  engine TEXT NOT NULL, model TEXT NOT NULL, src TEXT NOT NULL, tgt TEXT NOT NULL,
  source TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'ok',
  scores TEXT, edited TEXT,
  PRIMARY KEY (engine, model, src, tgt, source)
)
"""
# Columns added after the first release; older memory files get them on open.
ADDED_COLUMNS = {"scores": "TEXT", "edited": "TEXT"}
COLUMNS = "engine, model, src, tgt, source, target, status, scores, edited"
KEY = ("engine", "model", "src", "tgt", "source")
MATCH_KEY = " AND ".join(f"{k}=?" for k in KEY)  # one row, by its key
LEG_KEY = " AND ".join(f"{k}=?" for k in KEY[:-1])  # the rows of one leg under one engine setting


class LegLike(Protocol):
    src: str
    tgt: str
    model: str


class LegMemory:
    """The rows of one route leg under one engine setting: the memory key is built here, once."""

    def __init__(self, memory: Memory, settings: str, leg: LegLike):
        self.memory = memory
        self.key = (settings, leg.model, leg.src, leg.tgt)

    def get(self, sources: Iterable[str]) -> dict[str, tuple[str, str]]:
        """source -> (target, status) for the sources already translated."""
        return self.memory.get_many(*self.key, sources)

    def put(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Store (source, target, status) rows in one transaction."""
        self.memory.put_many(*self.key, rows)

    def scores(self, sources: Iterable[str]) -> dict[str, dict]:
        """source -> its scores (empty when none) for the sources in the memory."""
        out: dict[str, dict] = {}
        sources = list(sources)
        q = f"SELECT source, scores FROM tm WHERE {LEG_KEY} AND source IN ({{}})"
        for i in range(0, len(sources), 500):
            chunk = sources[i : i + 500]
            rows = self.memory.db.execute(q.format(",".join("?" * len(chunk))), (*self.key, *chunk))
            out.update({src: json.loads(js) if js else {} for src, js in rows})
        return out

    def set_scores(self, scores: dict[str, dict]) -> None:
        """Add per-segment scores (source -> {name: value}) to those stored, in one transaction:
        each check (round trip, quality estimation) keeps its own names."""
        have = self.scores(scores)
        with self.memory.db:
            self.memory.db.executemany(
                f"UPDATE tm SET scores=? WHERE {MATCH_KEY}",
                [(json.dumps({**have.get(src, {}), **new}, ensure_ascii=False, sort_keys=True), *self.key, src)
                 for src, new in scores.items()])

    def set_status(self, sources: Iterable[str], status: str) -> None:
        """Set the status of some segments (e.g. flagged by a later check) in one transaction."""
        with self.memory.db:
            self.memory.db.executemany(f"UPDATE tm SET status=? WHERE {MATCH_KEY}",
                                       [(status, *self.key, source) for source in sources])

    def flag_under(self, values: dict[str, float], statuses: dict[str, str], threshold: float, flag: str) -> int:
        """A later check's verdict (round trip, quality estimation): a segment the gate passed
        whose value is under `threshold` gets `flag`; one this check flagged that now passes (the
        threshold was lowered) is "ok" again; a human edit or another check's flag stays. Returns
        how many of `statuses`' segments carry `flag` afterwards."""
        flag_now = [s for s, v in values.items() if v < threshold and statuses[s] in ("ok", "retried")]
        unflag = [s for s, v in values.items() if v >= threshold and statuses[s] == flag]
        self.set_status(flag_now, flag)
        self.set_status(unflag, "ok")
        return sum(st == flag for st in statuses.values()) + len(flag_now) - len(unflag)


def _not_a_memory(path: Path | str, e: sqlite3.DatabaseError) -> DataError:
    return DataError(f"{path}: not a translation memory (SQLite with a `tm` table): {e}")


class Memory:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a folder, not a translation memory (SQLite file)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=60)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(SCHEMA)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(tm)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE tm ADD COLUMN {name} {kind}")
            self.db.commit()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise _not_a_memory(self.path, e) from None

    def get_many(self, engine: str, model: str, src: str, tgt: str, sources: Iterable[str]) -> dict[str, tuple[str, str]]:
        """source -> (target, status) for the sources already translated."""
        out: dict[str, tuple[str, str]] = {}
        sources = list(sources)
        q = ("SELECT source, COALESCE(edited, target), CASE WHEN edited IS NULL THEN status ELSE 'edited' END "
             f"FROM tm WHERE {LEG_KEY} AND source IN ({{}})")
        for i in range(0, len(sources), 500):
            chunk = sources[i : i + 500]
            rows = self.db.execute(q.format(",".join("?" * len(chunk))), (engine, model, src, tgt, *chunk))
            out.update({s: (t, st) for s, t, st in rows})
        return out

    def put_many(self, engine: str, model: str, src: str, tgt: str, rows: Iterable[tuple[str, str, str]]) -> None:
        """Store (source, target, status) rows in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO tm (engine, model, src, tgt, source, target, status) VALUES (?,?,?,?,?,?,?)",
                [(engine, model, src, tgt, s, t, st) for s, t, st in rows],
            )

    def for_leg(self, settings: str, leg: LegLike) -> LegMemory:
        """The store of one leg (`settings`: the engine's `settings_key`, e.g. "ctranslate2:beam1")."""
        return LegMemory(self, settings, leg)

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM tm").fetchone()[0]

    def merge_from(self, other: Path | str) -> int:
        """Copy every row of another memory in (existing rows win); returns rows added."""
        if not Path(other).is_file():
            raise DataError(f"translation memory not found: {other}")
        before = self.count()
        try:
            self.db.execute("ATTACH DATABASE ? AS other", (str(other),))
        except sqlite3.DatabaseError as e:
            raise _not_a_memory(other, e) from None
        try:
            theirs = {row[1] for row in self.db.execute("PRAGMA other.table_info(tm)")}
            cols = ", ".join(c.strip() for c in COLUMNS.split(",") if c.strip() in theirs)
            with self.db:
                self.db.execute(f"INSERT OR IGNORE INTO tm ({cols}) SELECT {cols} FROM other.tm")
        except sqlite3.DatabaseError as e:
            raise _not_a_memory(other, e) from None
        finally:
            self.db.execute("DETACH DATABASE other")
        return self.count() - before

    def rows(self, where: str = "1", params: tuple = ()) -> list[dict]:
        """Every column of the rows matching an SQL condition, in key order."""
        cur = self.db.execute(f"SELECT {COLUMNS} FROM tm WHERE {where} ORDER BY {', '.join(KEY)}", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def set_edits(self, edits: Iterable[tuple[tuple[str, str, str, str, str], str | None]]) -> int:
        """Store human corrections ((key), text or None to remove one) in one transaction; returns
        how many rows changed. The machine output is kept."""
        with self.db:
            return sum(self.db.execute(f"UPDATE tm SET edited=? WHERE {MATCH_KEY}",
                                       (text, *key)).rowcount for key, text in edits)

    def edits_digest(self) -> str | None:
        """A hash of every human correction (None without any): part of the translate stage's
        fingerprint, so an imported review reassembles the data."""
        import hashlib

        rows = self.db.execute(f"SELECT {', '.join(KEY)}, edited FROM tm WHERE edited IS NOT NULL ORDER BY {', '.join(KEY)}")
        h, n = hashlib.sha256(), 0
        for row in rows:
            h.update("\x1f".join(row).encode() + b"\x1e")
            n += 1
        return f"{n}:{h.hexdigest()[:16]}" if n else None

    def close(self) -> None:
        self.db.close()
