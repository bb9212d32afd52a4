"""What every format adapter shares: the interface, the skip/bad-record report, detection."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mothertongue.config import SourceConfig
from mothertongue.conversation import Conversation, DataError, PreferencePair

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


class Adapter:
    """Base class: subclasses set `name` and implement `read` (and `sniff` for auto-detection)."""

    name = "?"
    option_names: tuple[str, ...] = ()

    def __init__(self, source: SourceConfig, options: dict[str, Any] | None = None):
        self.source = source
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(self.option_names))
        if unknown:
            allowed = ", ".join(self.option_names) or "none"
            raise DataError(f"format {self.name}: unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
        self.options = opts

    @classmethod
    def sniff(cls, path: Path, sample: list[Any]) -> str | None:
        """Return a reason when the sample looks like this format, else None."""
        return None

    def read(self, path: Path, report: IngestReport) -> Iterator[Conversation | PreferencePair]:
        raise NotImplementedError


def stable_id(source: str, *parts: str) -> str:
    """An id derived from the source name and the record's own content (stable across edits)."""
    h = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{source}-{h}"


def detect_format(path: Path, registry) -> tuple[str, str]:
    """Pick the format whose sniff() accepts the data; returns (name, why)."""
    for name in registry.names():
        cls = registry.get(name)
        why = cls.sniff(path, [])
        if why:
            return name, why
    raise DataError(
        f"{path}: could not detect the format; set format: to one of {', '.join(registry.names())}"
    )
