"""Where every record went, while ingest streams: counts, not records.

    python -c "from mothertongue.ingest_ledger import Ledger, IngestReport; print(Ledger(IngestReport()).settle())"

Ingest writes each record as soon as it is read, so nothing here holds a record's text; what it
must remember goes into digest sets (`mothertongue.digests`: bounded in memory, spilled to a
temporary SQLite file). A record wrongly taken for a duplicate through a digest collision
(probability under n²/2**129 for n records) would still be counted, never lost silently.
`Ledger` counts every record read
as converted or skipped once; drops of outputs made from several records (OASST threads,
Natural Instructions answers) are spooled to the scratch file and settled at the end, in the
order the drops happened in a whole-input ingest, so the report is the same as that one's.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from mothertongue.digests import DigestSet, Scratch, digest
from mothertongue.formats.report import EXAMPLES_PER_REASON, IngestReport

__all__ = ["IngestReport", "Ledger", "where_of"]


def where_of(r: Any) -> str:
    """A record's location for the report: file:line, file row N, or the file."""
    m = r.meta
    if "line" in m:
        return f"{m.get('file', r.source)}:{m['line']}"
    if "row" in m:
        return f"{m.get('file', r.source)} row {m['row']}"
    return m.get("file", r.source)


def _unit(src: int, u: Any) -> bytes:
    return digest((str(src), type(u).__name__, str(u)))


class Ledger:
    """Where every record read went. A conversation or pair carries `origin`: (source index,)
    when it is the one output of one record, else (source index, unit, unit, ...) naming the
    records it came from (an OASST thread: its messages). A dropped one-record output is one
    skip at once; a dropped several-record output is settled at the end: a record is skipped
    only when none of its outputs survived, and then once. `phase` orders the drops as a
    whole-input ingest made them (reading, then per source dedup and weights, then pairs,
    then documents), which decides the report's examples and the order of its reasons."""

    def __init__(self, report: IngestReport, scratch: Scratch | None = None):
        self.report = report
        self.read: list[int] = []
        self.skipped: list[int] = []  # by the adapters, per source
        self._scratch = scratch or Scratch(None)
        self._spooled = False
        self._converted: Counter[int] = Counter()
        self._lost: Counter[int] = Counter()
        self._units = DigestSet(self._scratch, "units")
        self._seq = 0
        self._reasons: dict[str, list] = {}  # reason -> [count, first order, [(order, example)]]

    def drop(self, rec: Any, reason: str, detail: str = "", phase: tuple[int, int, int] = (0, 0, 0)) -> None:
        where = where_of(rec)
        if reason == "invalid conversation" and self.report.on_error == "stop":
            self.report.bad(where, reason, detail)  # raises
        self._seq += 1
        order = (*phase, self._seq)
        if len(rec.origin) == 1:
            self._lost[rec.origin[0]] += 1
            self._note(reason, order, where, detail)
        else:
            self._spool(order, rec.origin, reason, where, detail)

    def _spool(self, order: tuple[int, ...], origin: tuple, reason: str, where: str, detail: str) -> None:
        db = self._scratch.db
        if not self._spooled:
            db.execute("CREATE TABLE drops (p0 INT, p1 INT, p2 INT, seq INT, origin TEXT, reason TEXT, loc TEXT, detail TEXT)")
            self._spooled = True
        db.execute("INSERT INTO drops VALUES (?,?,?,?,?,?,?,?)", (*order, json.dumps(origin), reason, where, detail))

    def _spooled_drops(self):
        if not self._spooled:
            return
        for *order, origin, reason, where, detail in self._scratch.db.execute(
                "SELECT * FROM drops ORDER BY p0, p1, p2, seq"):
            yield tuple(order), tuple(json.loads(origin)), reason, where, detail

    def keep(self, rec: Any) -> None:
        """A record written to the output (copies made by a source weight are not counted)."""
        origin = rec.origin
        if len(origin) == 1:
            if "copy_of" not in rec.meta:
                self._converted[origin[0]] += 1
            return
        if "copy_of" in rec.meta:
            return
        src = origin[0]
        for u in origin[1:]:
            if self._units.add(_unit(src, u)):
                self._converted[src] += 1

    def converted_once(self, counts: Counter) -> None:
        """Add records kept as the one output of one record, counted by the caller per source
        (the same as `keep` on each, without a call per record)."""
        self._converted.update(counts)

    def _note(self, reason: str, order: tuple, where: str, detail: str) -> None:
        r = self._reasons.get(reason)
        if r is None:
            r = self._reasons[reason] = [0, order, []]
        r[0] += 1
        r[1] = min(r[1], order)
        examples = r[2]
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append((order, f"{where}: {detail}" if detail else where))
        else:
            worst = max(examples)
            if order < worst[0]:
                examples.remove(worst)
                examples.append((order, f"{where}: {detail}" if detail else where))

    def settle(self) -> list[dict]:
        """Count the records whose outputs were all dropped, hand the skips to the report, and
        return read/converted/skipped per source."""
        gone = DigestSet(self._scratch, "gone")
        for order, origin, reason, where, detail in self._spooled_drops():
            src = origin[0]
            lost = [k for k in (_unit(src, u) for u in origin[1:]) if k not in self._units and k not in gone]
            for k in lost:
                gone.add(k)
                self._lost[src] += 1
                self._note(reason, order, where, detail)
        for reason, (n, _, examples) in sorted(self._reasons.items(), key=lambda kv: kv[1][1]):
            have = self.report.examples[reason]
            for _, text in sorted(examples):
                if len(have) < EXAMPLES_PER_REASON:
                    have.append(text)
            self.report.skipped[reason] += n
        self.report.converted = sum(self._converted.values())
        return [{"read": self.read[i], "converted": self._converted[i], "skipped": self.skipped[i] + self._lost[i]}
                for i in range(len(self.read))]
