"""Reading records from JSON files: a JSON array, JSONL, one JSON object (or a `{"data": [...]}`
wrapper); UTF-8 with or without BOM, UTF-16, a declared encoding; a folder of such files.

    python -c "from mothertongue.formats.jsonio import sample_records; print(sample_records('data.jsonl'))"

Every record keeps its own line number, and a record that cannot be read is reported by line
(`file:line`), never by byte offset, while the rest of the file is still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mothertongue.conversation import DataError
from mothertongue.formats.report import IngestReport

try:  # orjson parses 2-3x faster; the stdlib parser still writes every error message
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency, but stay usable without it
    fast_loads = json.loads

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


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
    its own line number. `report.read` counts every record seen, good or bad. UTF-8 JSONL is read
    line by line from disk (memory does not grow with the file); a JSON document (array or
    object), UTF-16 or another declared encoding is read whole."""
    if _streams_as_jsonl(path, encoding):
        yield from _iter_jsonl_file(path, report)
        return
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
    yield from _parse_lines(path, enumerate(lines, 1), report)


def _parse_lines(path: Path, numbered: Iterable[tuple[int, str | bytes]], report: IngestReport) -> Iterator[tuple[int, Any]]:
    """(line number, object) for every non-blank JSONL line; a bad line is reported, not yielded."""
    for lineno, line in numbered:
        if not line.strip():
            continue
        report.read += 1
        try:
            obj = fast_loads(line)
        except ValueError:
            pass
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


def _streams_as_jsonl(path: Path, encoding: str | None) -> bool:
    """True when the file is UTF-8 JSONL by the same rules as `_is_json_document`, decided from
    its first line (and the 64 KiB after it) instead of the whole file; False also when the
    first line is not one JSON object (the whole file decides then)."""
    if encoding and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return False
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(3)
        if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return False
        f.seek(3 if start == b"\xef\xbb\xbf" else 0)
        line = b""
        while not line.strip():
            line = f.readline()
            if not line:
                return False  # empty or blank: the whole-file path reads (nothing) as before
        head = line.lstrip(b" \t\r\n").rstrip(b"\n")
        if head[:1] != b"{":
            return head[:1] != b"["
        try:
            json.loads(head)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        rest = size - f.tell() + 1  # the newline after the first line counts, as in _is_json_document
        return not (not f.read(65536).strip() and rest < 65536)


def _iter_jsonl_file(path: Path, report: IngestReport) -> Iterator[tuple[int, Any]]:
    lineno = 0
    with open(path, "rb") as f:
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)
        while lines := f.readlines(1 << 22):  # about 4 MiB of whole lines at a time
            try:  # str like the whole-file reader's lines (its blank test and error messages)
                block: list = b"".join(lines).decode("utf-8").split("\n")[:len(lines)]
            except UnicodeDecodeError:
                block = [_decoded(raw.rstrip(b"\n")) for raw in lines]
            yield from _parse_lines(path, enumerate(block, lineno + 1), report)
            lineno += len(block)


def _decoded(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # each bad line is reported by the parser with its own line number


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
