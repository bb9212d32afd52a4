"""The ingest report: records read, converted, and skipped by reason with file:line examples.

    report = IngestReport("skip"); report.bad("data.jsonl:3", "missing field output", "...")

`bad` is a malformed record (stops the run, or is counted with `ingest.on_error=skip`); `skip`
is a record left out on purpose (deleted, duplicate, ...) and always counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from mothertongue.conversation import DataError

EXAMPLES_PER_REASON = 5


class IngestReport:
    """Counts of what happened to every record, with file:line examples per reason."""

    def __init__(self, on_error: str = "stop"):
        self.on_error = on_error
        self.read = 0
        self.converted = 0
        self.skipped: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.notes: list[str] = []

    def _note(self, reason: str, where: str, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(f"{where}: {detail}" if detail else where)

    def bad(self, where: str, reason: str, detail: str) -> None:
        """A malformed record: stop with one clear line, or count it (`ingest.on_error=skip`)."""
        if self.on_error == "stop":
            raise DataError(f"{where}: {detail} (set ingest.on_error=skip to skip and count such records)")
        self._note(reason, where, detail)

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        """A record filtered on purpose (deleted, failed review, duplicate, ...): always counted."""
        self._note(reason, where, detail)

    def to_dict(self) -> dict:
        return {
            "read": self.read,
            "converted": self.converted,
            "skipped": dict(self.skipped),
            "examples": dict(self.examples),
            "notes": self.notes,
        }
