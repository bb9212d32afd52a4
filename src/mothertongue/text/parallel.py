"""Parallel files (a source text and its translation per row): the one reader.

    python -c "from mothertongue.text.parallel import read_parallel; print(read_parallel('dev.tsv')[:2])"

Two layouts, chosen by the file name:

- `.jsonl`: one object per line with the two texts under `keys` (evaluation files use
  `{"source", "reference"}`, the translate stage's `parallel.jsonl` `{"src", "tgt"}`); the
  whole object is kept in `ParallelPair.row` (e.g. `src_lang`).
- anything else is tab-separated, `source<TAB>reference`, one row per physical line. Tabs split,
  and nothing else is special: quotes are text (`He said "hi"` stays as written, a stray quote
  never swallows the next rows). `quoting=True` applies CSV quote rules instead (for files written
  by a CSV writer with a tab delimiter); a quoted field may then hold a tab but not a line break:
  a row count that differs from the line count is an error naming the file.

Every row must have two non-empty texts; a bad row is a DataError naming file and line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from mothertongue.conversation import DataError, iter_jsonl


@dataclass
class ParallelPair:
    source: str
    target: str
    line: int
    row: dict = field(default_factory=dict)


def read_parallel(
    path: str | Path, *, keys: tuple[str, str] = ("source", "reference"), limit: int | None = None,
    quoting: bool = False, required: bool = True,
) -> list[ParallelPair]:  # fmt: skip
    """The pairs of a parallel file, in order (the first `limit` only, when given).

    required: a missing file or a file without pairs is an error (else: no pairs)."""
    path = Path(path)
    if not path.exists():
        if required:
            raise DataError(f"parallel file not found: {path}")
        return []
    pairs = _read_jsonl(path, keys, limit) if path.suffix.lower() == ".jsonl" else _read_tsv(path, keys, limit, quoting)
    if not pairs and required:
        raise DataError(f"{path}: no sentence pairs in this file")
    return pairs


def _read_jsonl(path: Path, keys: tuple[str, str], limit: int | None) -> list[ParallelPair]:
    pairs = []
    for lineno, obj in iter_jsonl(path):
        texts = []
        for k in keys:
            v = obj.get(k)
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{path}:{lineno}: field {k!r} must be a non-empty string")
            texts.append(v)
        pairs.append(ParallelPair(texts[0], texts[1], lineno, obj))
        if limit and len(pairs) >= limit:
            break
    return pairs


def _lines(path: Path) -> list[str]:
    """Physical lines: split at "\\n" only (a U+2028 or form feed inside a text is not a row end)."""
    lines = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            lines.append(raw.decode("utf-8-sig" if lineno == 1 else "utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{lineno}: not UTF-8 (byte {e.start} of the line); re-save the file as UTF-8") from None
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _read_tsv(path: Path, keys: tuple[str, str], limit: int | None, quoting: bool) -> list[ParallelPair]:
    lines = _lines(path)
    numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip()]
    if quoting:
        reader = csv.reader((ln for _, ln in numbered), delimiter="\t", quotechar='"', strict=True)
        try:
            rows = list(reader)
        except csv.Error as e:
            raise DataError(f"{path}: row {reader.line_num}: {e} (CSV quoting)") from None
        if len(rows) != len(numbered):
            raise DataError(
                f"{path}: {len(rows)} rows read with CSV quoting from {len(numbered)} non-empty lines; "
                "a quote opens a field that spans lines (read it without `quoting`, or fix the quotes)"
            )
        split = [(n, r) for (n, _), r in zip(numbered, rows)]
    else:
        split = [(n, ln.split("\t")) for n, ln in numbered]
    pairs = []
    for lineno, parts in split:
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(
                f"{path}:{lineno}: expected `source<TAB>reference` (two non-empty fields), got {len(parts)} field(s)"
            )
        src, tgt = parts[0].strip(), parts[1].strip()
        pairs.append(ParallelPair(src, tgt, lineno, {keys[0]: src, keys[1]: tgt}))
        if limit and len(pairs) >= limit:
            break
    return pairs
