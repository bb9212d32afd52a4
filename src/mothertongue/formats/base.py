"""What every format adapter shares: the interface, the skip/bad-record report, record readers
and format detection.

    python -c "from mothertongue.formats import sample_records; print(sample_records('data.jsonl'))"

An adapter turns source records into `Conversation` / `PreferencePair`. Most formats are "one
record in, one or more conversations out": they implement `convert(obj, loc, report)` and get
file reading (JSON array, JSONL, a JSON object holding one list; UTF-8 with or without BOM,
UTF-16, CRLF; a folder of such files) from `records()`. Formats that need the whole collection at
once (OpenAssistant trees) override `read_rows()`. The Hugging Face adapter feeds rows from
`datasets` into any adapter's `read_rows()`, so every format also works on hub/local datasets.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mothertongue.config import SourceConfig
from mothertongue.conversation import Conversation, DataError, Message, PreferencePair

try:  # orjson parses 2-3x faster; the stdlib parser still writes every error message
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency, but stay usable without it
    fast_loads = json.loads

EXAMPLES_PER_REASON = 5
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
Record = Conversation | PreferencePair


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


# ------------------------------------------------------------------------------ reading
def _decode_whole(data: bytes, path: Path, encoding: str | None) -> str | None:
    """Text for files that cannot be read line by line as UTF-8 bytes (UTF-16, explicit codec)."""
    if encoding and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as e:
            raise DataError(f"{path}: cannot decode as {encoding} ({e})") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    return None


def decode_text(path: Path, encoding: str | None = None) -> str:
    """A whole text file as str (UTF-8 with or without BOM, UTF-16 by BOM, or the declared
    encoding); bytes that are not UTF-8 are a DataError naming the line."""
    data = path.read_bytes()
    text = _decode_whole(data, path, encoding)
    if text is not None:
        return text
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8; re-save the file as UTF-8 or set the source's encoding") from None


def _line_of(text: str | bytes, pos: int, start_pos: int, start_line: int) -> int:
    return start_line + text.count("\n" if isinstance(text, str) else b"\n", start_pos, pos)


def iter_json_records(
    path: Path, report: IngestReport, encoding: str | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield (line, object) for every record of a JSON array, JSONL file or one JSON object.

    A JSONL line that is not JSON, or not UTF-8, is a bad record (file:line, reason); the rest
    of the file is still read. A JSON array is parsed element by element so every record keeps
    its own line number. `report.read` counts every record seen, good or bad."""
    data = path.read_bytes()
    text = _decode_whole(data, path, encoding)
    if text is None and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    doc = text if text is not None else data
    if _is_json_document(doc):
        yield from _iter_json_document(path, report, doc)
        return
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # keep bytes: each line is decoded alone, so a bad line is reported with its number
    lines: Iterable = (text.split("\n") if text is not None else data.split(b"\n"))
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        report.read += 1
        try:
            obj = fast_loads(line)
        except ValueError:
            obj = None
        else:
            yield lineno, obj
            continue
        try:  # the slow path: accept what only the stdlib accepts, else say exactly why not
            obj = json.loads(line)
        except UnicodeDecodeError as e:
            report.bad(f"{path}:{lineno}", "encoding", f"not UTF-8 (column {e.start + 1}); "
                       "re-save as UTF-8 or set the source's encoding")
            continue
        except json.JSONDecodeError as e:
            report.bad(f"{path}:{lineno}", "invalid JSON", f"invalid JSON ({e.msg}, column {e.colno})")
            continue
        yield lineno, obj


def _is_json_document(doc: str | bytes) -> bool:
    """True for a JSON array or one (possibly pretty-printed) JSON object; False for JSONL."""
    nl = "\n" if isinstance(doc, str) else b"\n"
    stripped = doc.lstrip("\ufeff \t\r\n" if isinstance(doc, str) else b" \t\r\n")
    first = stripped[:1]
    if first in ("[", b"["):
        return True
    if first not in ("{", b"{"):
        return False
    end = stripped.find(nl)
    head = stripped if end < 0 else stripped[:end]
    try:
        json.loads(head)
        # one complete object on the first line: JSONL unless nothing else follows
        return not stripped[len(head):len(head) + 65536].strip() and len(stripped) - len(head) < 65536
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    try:  # the first line is not a whole object: a pretty-printed document, or broken JSONL
        json.loads(doc)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _iter_json_document(path: Path, report: IngestReport, doc: str | bytes) -> Iterator[tuple[int, Any]]:
    if isinstance(doc, bytes):
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError as e:
            line = doc.count(b"\n", 0, e.start) + 1
            report.bad(f"{path}:{line}", "encoding", "not UTF-8; re-save as UTF-8 or set the source's encoding")
            return
    dec = json.JSONDecoder()
    i = len(doc) - len(doc.lstrip("\ufeff \t\r\n"))
    if doc[i] == "{":
        obj, _ = dec.raw_decode(doc, i)
        line = _line_of(doc, i, 0, 1)
        lists = [k for k, v in obj.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1 and not _looks_like_record(obj):
            # {"data": [...]} wrappers: the list holds the records
            for item in obj[lists[0]]:
                report.read += 1
                yield line, item
        else:
            report.read += 1
            yield line, obj
        return
    # a JSON array: decode one element at a time to keep line numbers
    pos, line, n = i + 1, _line_of(doc, i, 0, 1), len(doc)
    last = i
    ws = " \t\r\n"
    while True:
        while pos < n and doc[pos] in ws:
            pos += 1
        if pos < n and doc[pos] == "]":
            return
        line = _line_of(doc, pos, last, line)
        last = pos
        report.read += 1
        try:
            obj, pos = dec.raw_decode(doc, pos)
        except json.JSONDecodeError as e:
            report.bad(f"{path}:{e.lineno}", "invalid JSON", f"invalid JSON ({e.msg}, column {e.colno}); "
                       "the rest of this JSON array cannot be read")
            return
        yield line, obj
        while pos < n and doc[pos] in ws:
            pos += 1
        if pos < n and doc[pos] == ",":
            pos += 1
        elif pos < n and doc[pos] == "]":
            return
        else:
            report.bad(f"{path}:{_line_of(doc, pos, last, line)}", "invalid JSON",
                       "invalid JSON (expected ',' or ']' between array elements)")
            return


def _looks_like_record(obj: dict) -> bool:
    # A Natural Instructions task, an OASST tree or root message (with nested `replies`) is one
    # record that happens to hold a list of objects.
    return any(k in obj for k in ("Definition", "Instances", "prompt", "conversations", "messages", "instruction",
                                  "instances", "message_id", "replies", "chosen"))


def files_in(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The file itself, or the matching files of a folder (sorted, so ids and order are stable)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    return [path]


def sample_records(path: str | Path, n: int = 20) -> list[Any]:
    """The first records of a file or folder (for detection); [] when it is not JSON."""
    path = Path(path)
    out: list[Any] = []
    for f in files_in(path, JSON_SUFFIXES)[:3]:
        if f.suffix.lower() not in JSON_SUFFIXES or f.stat().st_size > 512 * 2**20 and f.suffix == ".json":
            continue
        rep = IngestReport("skip")
        try:
            for _, obj in iter_json_records(f, rep):
                out.append(obj)
                if len(out) >= n:
                    return out
        except (DataError, OSError, ValueError):
            continue
    return out


# ------------------------------------------------------------------------------ helpers
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
        if len(obj) > len(used) or any(k not in used for k in obj):
            extra = {k: v for k, v in obj.items() if k not in used}
            if extra:
                meta["extra"] = extra
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
