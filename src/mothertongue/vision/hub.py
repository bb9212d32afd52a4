"""Vision data from a Hugging Face dataset with an image column (`vision.*[].format: hf`).

    vision:
      captions: [{path: nlphuji/flickr30k, format: hf, options: {split: test, caption_column: caption}}]
      instructions: [{path: ./my_saved_dataset, format: hf, options: {rows: llava}}]

`path` is a hub id (needs the network) or a local folder (`save_to_disk`, or data files), loaded
like ingest's `hf` format. Each row becomes a caption record (`image_column` + `caption_column`)
or, with a `conversations` column in LLaVA's form (`rows: llava`, or detected), a conversation.
The image bytes are written once, named by their SHA-256, under `RUN_DIR/vision-images/`, so the
rest of the stage sees ordinary local files (opened, checked and skipped with a reason like any
other image) and a rerun writes nothing again. A row whose image is empty is skipped, counted.
The options are `VisionHFOptions` (mothertongue/config/train.py), checked when the recipe loads.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mothertongue.config import Recipe, VisionSourceConfig
from mothertongue.conversation import DataError
from mothertongue.formats.hf import load_dataset
from mothertongue.formats.report import IngestReport


def _dataset(src: VisionSourceConfig):
    import datasets

    o = src.options
    ds = load_dataset(src.path, o.config, o.split, o.revision)
    col = o.image_column
    if col not in ds.column_names:
        raise DataError(f"vision source {src.path}: no column {col!r} (columns: {', '.join(ds.column_names)})")
    feature = ds.features[col]
    if isinstance(feature, datasets.Image):  # bytes as stored: no decode and re-encode
        ds = ds.cast_column(col, datasets.Image(decode=False))
    elif isinstance(feature, (list, datasets.Sequence)):
        ds = ds.cast_column(col, datasets.Sequence(datasets.Image(decode=False)))
    return ds


def _save(value: Any, folder: Path) -> str:
    """A local file holding the image (an Image feature's bytes, written once by content hash), or ''."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, str):
        data, path = None, value
    else:
        raise ValueError(f"image column holds {type(value).__name__}, not an image")
    if not data:
        return path or ""
    name = hashlib.sha256(data).hexdigest() + (Path(path).suffix if path else "")
    target = folder / name[:2] / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return str(target)


def rows(recipe: Recipe, src: VisionSourceConfig, report: IngestReport) -> Iterator[tuple[str, str, dict]]:
    """(where, format, record) per row, images as local files, for read_source's common path."""
    o = src.options
    ds = _dataset(src)
    folder = Path(recipe.run_dir) / "vision-images"
    fmt = o.rows if o.rows != "auto" else ("llava" if "conversations" in ds.column_names else "captions")
    label = f"{src.path}[{o.split}]"
    for i, row in enumerate(ds):
        report.read += 1
        where = f"{label} row {i}"
        value = row[o.image_column]
        try:
            images = [_save(v, folder) for v in value] if isinstance(value, list) else _save(value, folder)
        except ValueError as e:
            report.bad(where, "malformed hf record", str(e))
            continue
        if fmt == "llava":
            yield where, fmt, {"image": images, "conversations": row.get("conversations")}
        else:
            yield where, fmt, {"image": images, "caption": row.get(o.caption_column)}


def _local_files(path: str) -> tuple:
    """(name, size, mtime) of every file under a local dataset path; () for a hub id."""
    root = Path(path).expanduser()
    files = sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []
    return tuple((str(f), st.st_size, st.st_mtime_ns) for f in files if f.is_file() and (st := f.stat()))


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, config: str | None, split: str, revision: str | None, files: tuple) -> str:
    # `files` is only part of the key: a local dataset written again is loaded again
    return getattr(load_dataset(path, config, split, revision), "_fingerprint", "") or ""


def signature(src: VisionSourceConfig) -> str:
    """What identifies the dataset's content without reading it: its fingerprint (datasets'),
    loaded once per process for a dataset (a local one: while its files stay as they are)."""
    o = src.options
    return _fingerprint(src.path, o.config, o.split, o.revision, _local_files(src.path))
