"""Source formats: one adapter per file, each registered here by name.

An adapter reads one source and yields `Conversation` / `PreferencePair` records. It reports a
bad record through `report.bad(...)` (which stops the run or counts it, per `ingest.on_error`)
and a record it filters on purpose through `report.skip(...)`; nothing disappears silently.
"""

from __future__ import annotations

from mothertongue.formats.base import Adapter, IngestReport, detect_format
from mothertongue.registry import Registry

FORMATS = Registry("source format")
FORMATS.register("text", "mothertongue.formats.text:TextAdapter", "instruction#response lines, `_EVAL_` marker")

__all__ = ["FORMATS", "Adapter", "IngestReport", "detect_format"]
