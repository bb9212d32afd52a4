"""Sets of 128-bit digests that stay bounded in memory: a Python set, spilled to SQLite past a size.

    python -c "from mothertongue.digests import digest; print(digest(('user', 'Hallo')).hex())"

Used where a stage must remember what it has seen without holding it: ingest's duplicates and
its ledger, and the translate checks' segments already scored in an earlier chunk. `DigestSet`
keeps 128-bit digests (XXH3-128, BLAKE2b-128 where the `xxhash` package is missing) in memory up
to `SPILL_AT` per set, then moves them into a table of a temporary SQLite file (`Scratch`) and
looks there too. Two different inputs share a digest with probability at most n(n-1)/2 / 2**128
for n inputs (about 1.5e-21 for a billion). XXH3 is not a cryptographic hash: the bound is for
data not crafted to collide (a crafted collision makes ingest count one record as a duplicate,
in the report like any other). It is used for its speed: 0.1 us a record against BLAKE2b's 1 us.
"""

from __future__ import annotations

import hashlib
import marshal
import sqlite3
from pathlib import Path

# digests kept in memory per set before they move to the scratch file (about 95 MB per million)
SPILL_AT = 2_000_000


try:
    from xxhash import xxh3_128_digest as hash128
except ImportError:  # pragma: no cover - xxhash comes with datasets

    def hash128(data: bytes) -> bytes:
        """128-bit digest of bytes."""
        return hashlib.blake2b(data, digest_size=16).digest()


def digest(parts: tuple | list) -> bytes:
    """128-bit digest of a tuple or list of strings (or of tuples of strings). Marshal format 2
    writes each string with its length and has no back-references, so equal values give equal
    bytes and different ones different bytes (("a\\x00b",) and ("a", "b") differ); a digest
    lives only within one run."""
    return hash128(marshal.dumps(parts, 2))


class Scratch:
    """A temporary SQLite file (in a stage's staging folder), opened on first use and deleted by
    `close`; `path=None` keeps it in memory (small callers)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path is not None:
                self.path.unlink(missing_ok=True)  # a killed run's leftover: its sets are not ours
            db = sqlite3.connect(str(self.path) if self.path else ":memory:", isolation_level=None)
            # a scratch file is thrown away on any failure: no journal, no syncs, one transaction
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-32000")
            db.execute("BEGIN")
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class DigestSet:
    """A set of 16-byte digests: a Python set up to `SPILL_AT` entries, then moved into a table
    of the scratch file (and the Python set emptied), where later lookups also look."""

    def __init__(self, scratch: Scratch, name: str):
        self._mem: set[bytes] = set()
        self._scratch = scratch
        self._table = name
        self._spill_at = SPILL_AT
        self._spilled = False

    def __contains__(self, key: bytes) -> bool:
        if key in self._mem:
            return True
        return self._spilled and self._scratch.db.execute(
            f"SELECT 1 FROM {self._table} WHERE k = ?", (key,)).fetchone() is not None

    def add(self, key: bytes) -> bool:
        """Remember key; True when it was new."""
        mem = self._mem
        if key in mem or self._spilled and key in self:
            return False
        mem.add(key)
        if len(self._mem) >= self._spill_at:
            self._spill()
        return True

    def _spill(self) -> None:
        db = self._scratch.db
        if not self._spilled:
            db.execute(f"CREATE TABLE {self._table} (k BLOB PRIMARY KEY) WITHOUT ROWID")
            self._spilled = True
        db.executemany(f"INSERT INTO {self._table} VALUES (?)", ((k,) for k in sorted(self._mem)))
        self._mem = set()
