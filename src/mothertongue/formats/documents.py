"""Plain documents (articles, book chapters, web pages) to translate and train on as native text.

    mothertongue ingest recipe.yaml   # sources: [{path: wiki.jsonl, format: documents, options: {lang: en}}]

Source: a JSONL/JSON file or a Parquet file with a text column (`options.field`, default
`text`), one document per row::

    {"text": "# Cats\\n\\nCats are small carnivores.\\n\\n- They purr.\\n- They sleep a lot.", "title": "Cats"}

or a `.txt`/`.md` file whose documents are separated by a line holding only
`options.separator` (by default: by blank lines, so each paragraph is a document; give a
separator such as `---` or `<|doc|>` to keep multi-paragraph documents whole), or a Hugging Face
dataset (`format: hf, options: {format: documents}`). The JSONL row above becomes::

    Document(id="wiki-5d0c…", text="# Cats\\n\\nCats are small carnivores.\\n\\n- They purr.\\n- They sleep a lot.",
             lang="en", source="wiki", meta={"file": "wiki.jsonl", "line": 1, "extra": {"title": "Cats"}})

Ingest writes them to `ingest/documents.jsonl`; translate translates them like messages (same
segmentation, protection of code/URLs/markup, memory and quality gate) into
`translate/documents.jsonl`, and build adds them to the native text (`build.native_as`: continue
tasks, or raw text for `train.method: cpt`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from mothertongue.conversation import Document
from mothertongue.formats.base import (
    Adapter,
    FormatOptions,
    IngestReport,
    clean,
    decode_text,
    files_in,
    iter_json_records,
    stable_id,
)


class DocumentsOptions(FormatOptions):
    field: str = Field(
        "text",
        min_length=1,
        description="Column/key holding the document text (JSONL, Parquet, datasets).",
    )
    separator: str | None = Field(
        None,
        min_length=1,
        description="In .txt/.md files, a line holding only this separates documents; default: blank lines.",
    )


class DocumentsAdapter(Adapter):
    name = "documents"
    Options = DocumentsOptions
    suffixes = (".txt", ".md", ".jsonl", ".json", ".parquet")

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self.required = (self.opts.field,)

    @classmethod
    def sniff(cls, path: Path, sample) -> str | None:
        return None  # never guessed: documents and instructions can look alike

    def records(self, path: Path, report: IngestReport) -> Iterator[tuple[str, Any]]:
        for f in files_in(path, self.suffixes):
            suffix = f.suffix.lower()
            if suffix in (".txt", ".md"):
                for line, text in split_documents(
                    decode_text(f, self.source.encoding), self.opts.separator
                ):
                    report.read += 1
                    yield f"{f}:{line}", {self.opts.field: text}
            elif suffix == ".parquet":
                import pyarrow.parquet as pq

                i = 0
                for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                    for row in batch.to_pylist():
                        report.read += 1
                        yield f"{f} row {i}", row
                        i += 1
            else:
                for line, obj in iter_json_records(f, report, self.source.encoding):
                    yield f"{f}:{line}", obj

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Document]:
        got = self.fields(obj, loc, report, [self.opts.field])
        if got is None:
            return
        text = got[0].strip("\n")
        lang = self.optional_text(obj, "lang", loc, report)
        if lang is False:
            return
        meta = self.meta_of(obj, loc, (self.opts.field, "lang", "id"))
        ident = obj.get("id")
        yield Document(
            f"{self.src_name}-{ident}" if isinstance(ident, (str, int)) and str(ident) else stable_id(self.src_name, text),
            text, lang or self.opts.lang, self.src_name, meta,
        )  # fmt: skip


def split_documents(text: str, separator: str | None) -> Iterator[tuple[int, str]]:
    """(first line number, document) for each document of a text file."""
    text = clean(text)
    if separator is None:
        pattern = re.compile(r"\n[ \t]*\n")
    else:
        pattern = re.compile(r"(?:^|\n)[ \t]*" + re.escape(separator) + r"[ \t]*(?:\n|$)")
    pos = 0
    for m in [*pattern.finditer(text), None]:
        end = m.start() if m else len(text)
        chunk = text[pos:end]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip("\n"))
            yield text.count("\n", 0, pos + lead) + 1, chunk.strip("\n")
        if m:
            pos = m.end()
