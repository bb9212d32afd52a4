"""What every format adapter shares: the interface, strict options, helpers and format detection.

    python -c "from mothertongue.formats import FORMATS; print(FORMATS.get('alpaca').Options.model_fields)"

An adapter turns source records into `Conversation` / `PreferencePair`. Most formats are "one
record in, one or more conversations out": they implement `convert(obj, loc, report)` and get
file reading (JSON array, JSONL, a JSON object holding one list; UTF-8 with or without BOM,
UTF-16, CRLF; a folder of such files; see `jsonio`) from `records()`. Formats that need the
whole collection at once (OpenAssistant trees) override `read_rows()`. The Hugging Face adapter
feeds rows from `datasets` into any adapter's `read_rows()`, so every format also works on
hub/local datasets. Each format declares its options as a pydantic class (`Options`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mothertongue.config import SourceConfig
from mothertongue.conversation import Conversation, DataError, Message, PreferencePair
from mothertongue.formats.jsonio import (
    JSON_SUFFIXES,
    decode_text,
    files_in,
    iter_json_records,
    sample_records,
)
from mothertongue.formats.report import IngestReport

Record = Conversation | PreferencePair
# readers and the report live in jsonio/report; adapters import them from here too
__all__ = [
    "JSON_SUFFIXES", "Adapter", "FormatOptions", "IngestReport", "Record", "clean", "decode_text",
    "detect_format", "detect_records", "files_in", "iter_json_records", "loc_meta", "missing_fields",
    "options_error", "sample_records", "stable_id", "turn",
]


def clean(text: Any) -> str:
    """Message text as str with CRLF/CR line ends normalised to LF."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def stable_id(source: str, *parts: str) -> str:
    """An id derived from the source name and the record's own content (stable across edits)."""
    h = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{source}-{h}"


def loc_meta(loc: str) -> dict[str, Any]:
    """{"file", "line"} from 'file:line', {"file", "row"} from 'dataset[split] row N'."""
    file, sep, line = loc.rpartition(":")
    if sep and line.isdigit():  # the common case first: this runs once per record
        return {"file": file, "line": int(line)}
    file, sep, row = loc.rpartition(" row ")
    if sep and row.isdigit():
        return {"file": file, "row": int(row)}
    return {"file": loc}


def missing_fields(obj: Any, fields: Iterable[str]) -> list[str]:
    if not isinstance(obj, dict):
        return list(fields)
    return [f for f in fields if obj.get(f) is None]


def turn(role: str, content: Any, lang: str | None = None) -> Message:
    return Message(role, clean(content), lang)


class FormatOptions(BaseModel):
    """Options every format takes; a format's own `Options` class adds its fields. Unknown
    options are errors naming `ingest.sources.N.options.NAME`."""

    model_config = ConfigDict(extra="forbid")

    lang: str | None = Field(None, description="Language of the source's text when the records do not say.")


def options_error(err: ValidationError, where: str, fmt: str, cls: type[BaseModel]) -> DataError:
    """One line for the first bad option, named as the user wrote it in the recipe."""
    e = err.errors()[0]
    dotted = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        known = ", ".join(cls.model_fields) or "none"
        return DataError(f"{where}.options.{dotted}: unknown option for format {fmt} (it takes: {known})")
    msg = e["msg"][0].lower() + e["msg"][1:]
    return DataError(f"{where}.options.{dotted}: {msg.replace('input should be', 'must be')} (format {fmt})")


class Adapter:
    """Base class: subclasses set `name`, `Options`, `required` and implement `convert` (or
    `read_rows`); `self.opts` holds the validated options."""

    name = "?"
    Options: type[FormatOptions] = FormatOptions
    required: tuple[str, ...] = ()  # fields every record must have; named when they are missing
    suffixes: tuple[str, ...] = JSON_SUFFIXES
    # True when the adapter reads the whole collection before yielding (OASST trees): a source
    # `limit` then drains it so every message is still accounted for
    collects = False

    def __init__(self, source: SourceConfig, options: dict[str, Any] | None = None, where: str = "source"):
        self.source = source
        self.where = where
        try:
            self.opts = self.Options.model_validate(options or {})
        except ValidationError as e:
            raise options_error(e, where, self.name, self.Options) from None
        self.src_name = source.name or Path(source.path).stem or self.name
        self._checked_format = False

    @classmethod
    def sniff(cls, path: Path, sample: list[Any]) -> str | None:
        """Return a reason when the sample looks like this format, else None."""
        head = sample[:10]
        if cls.required and head and all(isinstance(r, dict) for r in head):
            # most, not all: a few broken records must not hide the format
            if sum(not missing_fields(r, cls.required) for r in head) * 2 > len(head):
                return f"records have the fields {', '.join(cls.required)}"
        return None

    # -- reading
    def records(self, path: Path, report: IngestReport) -> Iterator[tuple[str, Any]]:
        """(location, record) for every raw record; location is 'file:line' or 'file:row N'."""
        enc = getattr(self.source, "encoding", None)
        for f in files_in(path, self.suffixes):
            fs = str(f)
            for line, obj in iter_json_records(f, report, enc):
                yield f"{fs}:{line}", obj

    def read(self, path: Path, report: IngestReport) -> Iterator[Record]:
        return self.read_rows(self.records(path, report), report)

    def read_rows(self, rows: Iterable[tuple[str, Any]], report: IngestReport) -> Iterator[Record]:
        convert = self.convert
        for loc, obj in rows:
            if not self._checked_format:
                self.check_format(loc, obj)
            yield from convert(obj, loc, report)

    def check_format(self, loc: str, obj: Any) -> None:
        """The first record of a source must look like the format: else one clear error, always
        (with on_error=skip too: a file in another format would otherwise be 'skipped' whole)."""
        self._checked_format = True
        miss = missing_fields(obj, self.required)
        if self.required and (not isinstance(obj, dict) or len(miss) == len(self.required)):
            from mothertongue.formats import FORMATS, detect_records

            keys = ", ".join(sorted(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
            guess = detect_records([obj], FORMATS)
            hint = f"; it looks like {guess[0]} ({guess[1]})" if guess else ""
            raise DataError(
                f"{loc}: not in {self.name} format: missing field(s) {', '.join(miss)} "
                f"(the record has {keys}){hint}"
            )

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Record]:
        raise NotImplementedError

    # -- helpers for subclasses
    def fields(self, obj: Any, loc: str, report: IngestReport, names: Iterable[str]) -> list[str] | None:
        """The named fields as text, or None after reporting the first missing/empty/non-text one."""
        if not isinstance(obj, dict):
            report.bad(loc, "not an object", f"expected a JSON object, got {type(obj).__name__}")
            return None
        out = []
        for n in names:
            v = obj.get(n)
            if v is None:
                report.bad(loc, f"missing field {n}", f"field '{n}' is missing")
                return None
            if not isinstance(v, str):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = str(v)
                else:
                    report.bad(loc, f"bad field {n}", f"field '{n}' is {type(v).__name__}, expected text")
                    return None
            if not v.strip():
                report.bad(loc, f"empty {n}", f"field '{n}' is empty")
                return None
            out.append(clean(v))
        return out

    @staticmethod
    def optional_text(obj: dict, name: str, loc: str, report: IngestReport) -> str | None | bool:
        """An optional text field: its text (a number becomes its decimal text), None when absent,
        or False after reporting a value that is not text (an object never becomes its repr)."""
        v = obj.get(name)
        if v is None or isinstance(v, str):
            return clean(v) if v else v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        report.bad(loc, f"bad field {name}", f"field '{name}' is {type(v).__name__}, expected text")
        return False

    def meta_of(self, obj: dict, loc: str, used: Iterable[str]) -> dict:
        """Source location plus every field the conversion did not use (nothing is lost)."""
        meta = loc_meta(loc)
        used = used if isinstance(used, (set, frozenset)) else set(used)
        if not obj.keys() <= used:  # a set comparison in C: this runs once per record
            meta["extra"] = {k: v for k, v in obj.items() if k not in used}
        return meta


def detect_records(sample: list[Any], registry, path: Path | None = None) -> tuple[str, str] | None:
    from mothertongue.formats import DETECT_ORDER

    for name in DETECT_ORDER:
        if name not in registry:
            continue
        why = registry.get(name).sniff(path or Path("."), sample)
        if why:
            return name, why
    return None


def detect_format(path: Path, registry) -> tuple[str, str]:
    """Pick the format whose sniff() accepts the data; returns (name, why)."""
    found = detect_records(sample_records(path), registry, path)
    if found:
        return found
    raise DataError(
        f"{path}: could not detect the format; set format: to one of {', '.join(registry.names())}"
    )
