"""Hugging Face datasets: a hub id, a local `save_to_disk` folder or a folder of parquet files.

    mothertongue ingest recipe.yaml

    sources:
      - path: OpenAssistant/oasst1          # hub id (needs network), or a local folder
        format: hf
        options: {split: train, format: oasst, threads: best}

Source (a row of the `databricks/databricks-dolly-15k` dataset, read with `datasets`)::

    {"instruction": "When did Virgin Australia start operating?", "context": "Virgin Australia, ...",
     "response": "Virgin Australia commenced services on 31 August 2000 ...", "category": "closed_qa"}

becomes, with `options.format: dolly` (or detected from the first rows)::

    Conversation(id="databricks-dolly-15k-6f0e…", source="databricks-dolly-15k", tags=["closed_qa"],
                 meta={"file": "databricks/databricks-dolly-15k[train]", "row": 0},
                 messages=[Message("user", "When did Virgin Australia start operating?\\n\\nVirgin Australia, ..."),
                           Message("assistant", "Virgin Australia commenced services on 31 August 2000 ...")])

Options: `config` (dataset configuration name), `split` (default train), `format` (the row format:
any adapter name; default: detected, or `tabular` when `columns` is given), `revision`; every
other option goes to the row format's adapter. Rows are located as `dataset[split] row N`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from mothertongue.conversation import DataError
from mothertongue.formats.base import Adapter, FormatOptions, IngestReport, Record


def load_dataset(name: str, config: str | None = None, split: str = "train", revision: str | None = None):
    """A `datasets.Dataset`: local save_to_disk folder, local data folder/file, or hub id."""
    import datasets

    path = Path(name).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
                          or (path / "state.json").exists()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{name}: no split {split!r}; available: {', '.join(ds)}")
            ds = ds[split]
        return ds
    try:
        return datasets.load_dataset(str(path) if path.exists() else name, config, split=split, revision=revision)
    except ValueError as e:  # unknown split or config: one line
        raise DataError(f"{name}: {str(e).splitlines()[0]}") from None
    except (FileNotFoundError, ConnectionError, OSError) as e:
        raise DataError(f"{name}: cannot load the dataset ({str(e).splitlines()[0][:200]})") from None


class HFOptions(FormatOptions):
    """The dataset's own options; every other option goes to the row format (and is checked there)."""

    model_config = ConfigDict(extra="allow")

    config: str | None = Field(None, description="Dataset configuration name.")
    split: str = Field("train", description="Dataset split.")
    format: str | None = Field(None, description="Row format (any format name); default: detected.")
    revision: str | None = Field(None, description="Dataset revision (hub ids).")


class HFAdapter(Adapter):
    name = "hf"
    Options = HFOptions

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self.inner_options = dict(self.opts.model_extra or {})
        if self.opts.lang is not None:
            self.inner_options["lang"] = self.opts.lang
        self.src_name = source.name or Path(source.path.rstrip("/")).name or "hf"

    @classmethod
    def sniff(cls, path: Path, sample) -> str | None:
        if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return "a datasets save_to_disk folder"
        if path.is_dir() and any(path.rglob("*.parquet")):
            return "a folder of parquet files"
        return None

    def _rows(self, ds, label: str, report: IngestReport) -> Iterator[tuple[str, Any]]:
        i = 0
        for batch in ds.iter(batch_size=1000):
            cols = list(batch)
            for values in zip(*(batch[c] for c in cols)):
                report.read += 1
                yield f"{label} row {i}", dict(zip(cols, values))
                i += 1

    def read(self, path: Path, report: IngestReport) -> Iterator[Record]:
        from mothertongue.formats import FORMATS, detect_records

        split = self.opts.split
        name = str(path) if path.exists() else self.source.path
        ds = load_dataset(name, self.opts.config, split, self.opts.revision)
        fmt = self.opts.format or ("tabular" if "columns" in self.inner_options else None)
        if fmt is None:
            sample = [ds[i] for i in range(min(20, len(ds)))]
            found = detect_records(sample, FORMATS)
            if not found or found[0] in ("hf", "text", "tabular"):
                raise DataError(f"{name}: cannot detect the row format (columns {', '.join(ds.column_names)}); "
                                "set options.format, or options.columns for a column mapping")
            fmt, why = found
            report.notes.append(f"{name}[{split}]: rows detected as {fmt} ({why})")
        try:
            cls = FORMATS.get(fmt)
        except KeyError as e:
            raise DataError(f"{self.where}.options.format: {e}") from None
        inner = cls(self.source.model_copy(update={"name": self.src_name}), self.inner_options, self.where)
        self.collects = inner.collects  # a source limit drains OASST rows too (see ingest)
        return inner.read_rows(self._rows(ds, f"{name}[{split}]", report), report)
