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

Mapping keys: `instruction` and `output` (required), `input`, `system`, `lang`, `id`, `tags`; the
defaults are the Alpaca names. Unmapped columns go to `meta["extra"]`. CSV line numbers count
the header (line 1) and quoted newlines; Parquet rows are numbered from 0 (`file row N`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mothertongue.conversation import Conversation, DataError, Message
from mothertongue.formats.base import (
    Adapter,
    IngestReport,
    clean,
    files_in,
    iter_json_records,
    stable_id,
)

KEYS = ("instruction", "input", "output", "system", "lang", "id", "tags")


class TabularAdapter(Adapter):
    name = "tabular"
    option_names = ("columns", "lang", "delimiter", "input_join")
    suffixes = (".csv", ".tsv", ".parquet", ".json", ".jsonl")

    def __init__(self, source, options=None):
        super().__init__(source, options)
        cols = {k: k for k in ("instruction", "input", "output")}
        cols.update(self.options.get("columns") or {})
        bad = sorted(set(cols) - set(KEYS))
        if bad:
            raise DataError(f"format tabular: options.columns has unknown key(s) {', '.join(bad)}; known: {', '.join(KEYS)}")
        self.cols = cols
        self.required = (cols["instruction"], cols["output"])

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
        enc = self.source.encoding or "utf-8-sig"
        delim = self.options.get("delimiter") or ("\t" if f.suffix.lower() == ".tsv" else ",")
        try:
            with open(f, encoding=enc, newline="") as fh:
                reader = csv.DictReader(fh, delimiter=delim)
                start = 2
                for row in reader:
                    report.read += 1
                    if None in row:  # more cells than header columns
                        report.bad(f"{f}:{start}", "bad row", f"{len(row[None])} cell(s) more than the header has")
                    else:
                        yield f"{f}:{start}", row
                    start = reader.line_num + 1
        except UnicodeDecodeError as e:
            raise DataError(f"{f}: not {enc} (byte {e.start}); set the source's encoding (e.g. latin-1)") from None
        except csv.Error as e:
            raise DataError(f"{f}:{reader.line_num}: not valid CSV ({e})") from None

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        c = self.cols
        got = self.fields(obj, loc, report, (c["instruction"], c["output"]))
        if got is None:
            return
        instruction, output = got
        inp = clean(obj.get(c["input"]) or "").strip()
        user = f"{instruction}{self.options.get('input_join', chr(10) * 2)}{inp}" if inp else instruction
        msgs = []
        if c.get("system") and obj.get(c["system"]):
            msgs.append(Message("system", clean(obj[c["system"]])))
        msgs += [Message("user", user), Message("assistant", output)]
        lang = obj.get(c["lang"]) if c.get("lang") else None
        tags = obj.get(c["tags"]) if c.get("tags") else None
        rid = obj.get(c["id"]) if c.get("id") else None
        yield Conversation(
            id=f"{self.src_name}-{rid}" if rid not in (None, "") else stable_id(self.src_name, instruction, inp, output),
            messages=msgs,
            lang=str(lang) if lang else self.options.get("lang"),
            source=self.src_name,
            tags=[t for t in (tags.split(",") if isinstance(tags, str) else tags or []) if t],
            meta=self.meta_of(obj, loc, [v for v in c.values() if v]),
        )
