"""Tabular files (CSV, TSV, Parquet, JSON/JSONL) with a column mapping in the recipe.

    mothertongue ingest recipe.yaml

    sources:
      - path: faq.csv
        format: tabular
        options: {columns: {instruction: Frage, output: Antwort, input: Kontext, lang: Sprache}}

Source (a CSV row)::

    Frage,Kontext,Antwort,Sprache
    Wie spät ist es?,,Es ist drei Uhr.,de

becomes::

    Conversation(id="faq-41d0…", source="faq", lang="de", meta={"file": "faq.csv", "line": 2},
                 messages=[Message("user", "Wie spät ist es?"), Message("assistant", "Es ist drei Uhr.")])

Mapping keys: `instruction` and `output` (required), `input`, `system`, `lang`, `id`, `tags`. A
field the mapping does not name reads the column of its own name (`instruction`, `input`,
`output`) unless that column already feeds another field; map a field to `null` to leave it out.
A column may feed only one field: naming it twice is an error. Unmapped columns go to
`meta["extra"]`. CSV line numbers count the header (line 1) and quoted newlines; Parquet rows are
numbered from 0 (`file row N`).

Tab-separated files (`.tsv`, or `options.delimiter: "\\t"`) are read without CSV quote rules: a
`"` is text, and every physical line is one row (`options.quoting: csv` asks for the quote rules).
A row with more or fewer cells than the header is a bad record naming its line, and rows that
span several lines (quoted newlines) are counted in the report's notes, so rows can never merge
silently.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mothertongue.conversation import Conversation, DataError, Message
from mothertongue.formats.base import (
    Adapter,
    FormatOptions,
    IngestReport,
    decode_text,
    files_in,
    iter_json_records,
    stable_id,
)

KEYS = ("instruction", "input", "output", "system", "lang", "id", "tags")
DEFAULTS = ("instruction", "input", "output")


class TabularOptions(FormatOptions):
    columns: dict[str, str | None] = Field(default_factory=dict, description="Field -> column name (or null).")
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="Cell separator; default: tab for .tsv, else comma.")
    quoting: Literal["auto", "csv", "none"] = Field(
        "auto", description="auto: CSV quote rules, except for tab-separated files; csv; none."
    )
    input_join: str = Field("\n\n", description="Put between the instruction and a non-empty input.")


def column_map(user: dict[str, str | None], where: str) -> dict[str, str]:
    """The user's mapping; defaults only for fields it does not name and columns it does not use."""
    bad = sorted(set(user) - set(KEYS))
    if bad:
        raise DataError(f"{where}.options.columns.{bad[0]}: unknown field; known: {', '.join(KEYS)}")
    cols = {k: v for k, v in user.items() if v is not None}
    for k in DEFAULTS:
        if k not in user and k not in cols.values():
            cols[k] = k
    fed: dict[str, str] = {}
    for k, col in cols.items():
        if col in fed:
            raise DataError(f"{where}.options.columns: column {col!r} feeds both {fed[col]} and {k}; "
                            "a column may feed only one field")
        fed[col] = k
    for k in ("instruction", "output"):
        if k not in cols:
            raise DataError(f"{where}.options.columns.{k}: required; name the column that holds the {k}")
    return cols


class TabularAdapter(Adapter):
    name = "tabular"
    Options = TabularOptions
    suffixes = (".csv", ".tsv", ".parquet", ".json", ".jsonl")

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self.cols = column_map(self.opts.columns, where)
        self.required = (self.cols["instruction"], self.cols["output"])

    @classmethod
    def sniff(cls, path: Path, sample) -> str | None:
        if path.suffix.lower() in (".csv", ".tsv", ".parquet"):
            return f"{path.suffix} file (map its columns with options.columns)"
        return None

    def records(self, path: Path, report: IngestReport) -> Iterator[tuple[str, Any]]:
        for f in files_in(path, self.suffixes):
            suffix = f.suffix.lower()
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                i = 0
                for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
                    for row in batch.to_pylist():
                        report.read += 1
                        yield f"{f} row {i}", row
                        i += 1
            elif suffix in (".csv", ".tsv"):
                yield from self._csv(f, report)
            else:
                for line, obj in iter_json_records(f, report, self.source.encoding):
                    yield f"{f}:{line}", obj

    def _csv(self, f: Path, report: IngestReport) -> Iterator[tuple[str, Any]]:
        delim = self.opts.delimiter or ("\t" if f.suffix.lower() == ".tsv" else ",")
        quoting = self.opts.quoting
        if quoting == "auto":
            quoting = "none" if delim == "\t" else "csv"
        text = decode_text(f, self.source.encoding)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim,
                            quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)
        spanning, first_spanning = 0, None
        try:
            header = next(reader, None)
            if header is None:
                return
            start = reader.line_num + 1
            for row in reader:
                where = f"{f}:{start}"
                if reader.line_num > start:
                    spanning += 1
                    first_spanning = first_spanning or start
                start = reader.line_num + 1
                if not row:
                    continue
                report.read += 1
                if len(row) != len(header):
                    more = "more" if len(row) > len(header) else "fewer"
                    report.bad(where, "bad row", f"{len(row)} cells, {more} than the header's {len(header)}"
                               + ("" if quoting == "none" else "; a stray quote can merge rows (options.quoting)"))
                    continue
                yield where, dict(zip(header, row))
        except csv.Error as e:
            raise DataError(f"{f}:{reader.line_num}: not valid CSV ({e})") from None
        if spanning:
            report.notes.append(f"{f}: {spanning} rows span several lines (quoted newlines), the first at line "
                                f"{first_spanning}; {reader.line_num} lines hold {reader.line_num - 1 - spanning} "
                                "one-line rows")

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        c = self.cols
        got = self.fields(obj, loc, report, (c["instruction"], c["output"]))
        if got is None:
            return
        instruction, output = got
        inp = self.optional_text(obj, c["input"], loc, report) if c.get("input") else None
        system = self.optional_text(obj, c["system"], loc, report) if c.get("system") and inp is not False else None
        if inp is False or system is False:
            return
        inp = (inp or "").strip()
        user = f"{instruction}{self.opts.input_join}{inp}" if inp else instruction
        msgs = [Message("system", system)] if system and system.strip() else []
        msgs += [Message("user", user), Message("assistant", output)]
        lang = obj.get(c["lang"]) if c.get("lang") else None
        tags = obj.get(c["tags"]) if c.get("tags") else None
        rid = obj.get(c["id"]) if c.get("id") else None
        yield Conversation(
            id=f"{self.src_name}-{rid}" if rid not in (None, "") else stable_id(self.src_name, instruction, inp, output),
            messages=msgs,
            lang=str(lang) if lang else self.opts.lang,
            source=self.src_name,
            tags=[t for t in (tags.split(",") if isinstance(tags, str) else tags or []) if t],
            meta=self.meta_of(obj, loc, [v for v in c.values() if v]),
        )
