"""The run folder: where every artifact of a run lives, its manifests, and writing files atomically.

    from mothertongue.rundir import RunDir
    run = RunDir("runs/quickstart")
    run.tuned_dir, run.load_recipe(), run.complete("build"), run.require("train", "export")

`RunDir` is the one place the names of a run's files are written (`recipe.resolved.yaml`,
`train/model_info.json`, the template info beside a tokenizer, `history.jsonl`, `logs/`). A stage
folder is complete when its `manifest.json` exists and every file it lists is there; the runner
(runs.py) writes the manifest last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mothertongue.config import Recipe, load_recipe, save_resolved
from mothertongue.errors import StageError

MANIFEST = "manifest.json"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_manifest(stage_dir: Path) -> dict | None:
    p = stage_dir / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def list_files(folder: Path) -> dict[str, int]:
    """Every file under `folder` (relative path -> size), the manifest itself excepted."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(folder).as_posix()] = p.stat().st_size
    return files


def manifest_intact(stage_dir: Path, manifest: dict | None) -> bool:
    """True when every file the manifest lists is there (manifests from before the file list
    count as intact). Sizes are recorded but not compared: a file edited on purpose (a
    hand-fixed preference file) still counts; a file gone means a half-deleted folder."""
    if manifest is None:
        return False
    return all((stage_dir / rel).is_file() for rel in manifest.get("files") or {})


def write_folder(dest: Path, write: Callable[[Path], Any]) -> Path:
    """Create the folder `dest` with `write(tmp)` into a temporary folder and a rename, so it is
    complete or absent, never half written (a kill while writing leaves only `dest.tmp`, which
    the next call replaces). An existing `dest` is kept as it is."""
    dest = Path(dest)
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    os.replace(tmp, dest)
    return dest


def file_signature(path: Path) -> str:
    """Content hash of a file or folder (size+mtime for very large files)."""
    h = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:
        st = p.stat()
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        if st.st_size > 256 * 1024 * 1024:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


@dataclass
class RunDir:
    """A run folder and the names of its artifacts (the one place those names are written)."""

    root: Path

    RESOLVED: ClassVar[str] = "recipe.resolved.yaml"  # the recipe as run
    MODEL_INFO: ClassVar[str] = "model_info.json"  # in train/: adapter, base path, end of turn
    # Beside a tokenizer (build/tokenizer, train/model, an export): template, language, system prompt.
    TEMPLATE_INFO: ClassVar[str] = "mothertongue_template.json"
    RECIPE_COPY: ClassVar[str] = "mothertongue_recipe.yaml"  # beside a saved model: its recipe
    HISTORY: ClassVar[str] = "history.jsonl"  # every stage attempt: started, ran, skipped, failed
    LOGS: ClassVar[str] = "logs"  # logs/<stage>.txt: what each attempt printed and logged

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def resolved_path(self) -> Path:
        return self.root / self.RESOLVED

    @property
    def history_path(self) -> Path:
        return self.root / self.HISTORY

    def note(self, stage: str, outcome: str, **fields: Any) -> None:
        """Append one event to the run's history (read by `mothertongue status`)."""
        event = {"stage": stage, "outcome": outcome, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **fields}
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")

    def log_path(self, stage: str) -> Path:
        """The stage's log file; beside the stage folders (not in them) so a failed attempt's log
        stays. Under `accelerate launch` each rank but the main one writes its own."""
        rank = int(os.environ.get("RANK", "0"))
        return self.root / self.LOGS / (f"{stage}.txt" if rank == 0 else f"{stage}.rank{rank}.txt")

    @property
    def model_info_path(self) -> Path:
        return self.stage("train") / self.MODEL_INFO

    @property
    def tuned_dir(self) -> Path:
        """The trained model (full weights, or the LoRA adapter) with its tokenizer."""
        return self.stage("train") / "model"

    @property
    def base_model_dir(self) -> Path:
        """The untuned base as saved by train (the locally built `tiny` base)."""
        return self.stage("train") / "base_model"

    @property
    def tokenizer_dir(self) -> Path:
        return self.stage("build") / "tokenizer"

    def is_run(self) -> bool:
        return self.stage("train").is_dir() or self.resolved_path.exists()

    def load_recipe(self, overrides: list[str] | None = None) -> Recipe:
        """The recipe this run was made with (relative paths still resolve against the folder
        of the original recipe)."""
        if not self.resolved_path.exists():
            raise StageError(f"{self.root} is not a run directory: {self.RESOLVED} is missing")
        return load_recipe(self.resolved_path, overrides)

    def recipe_or_none(self) -> Recipe | None:
        return self.load_recipe() if self.resolved_path.exists() else None

    def language(self) -> str:
        """The run's target language (its recipe's; English when the folder does not say)."""
        from mothertongue.languages import default_language

        info = self.tuned_dir / self.TEMPLATE_INFO
        template = json.loads(info.read_text(encoding="utf-8")) if info.exists() else {}
        return default_language(self.recipe_or_none(), template)

    def save_recipe(self, recipe: Recipe) -> None:
        save_resolved(recipe, self.resolved_path)

    def stage(self, name: str) -> Path:
        return self.root / name

    def partial(self, name: str) -> Path:
        return self.root / f"{name}.partial"

    def aside(self, name: str) -> Path:
        """Where the previous output waits while the new one moves in."""
        return self.root / f"{name}.old"

    def complete(self, name: str) -> bool:
        d = self.stage(name)
        return manifest_intact(d, read_manifest(d))

    def require(self, name: str, needed_by: str) -> Path:
        d = self.stage(name)
        if not self.complete(name):
            raise StageError(
                f"{needed_by} needs the output of {name} in {d}, which is missing or incomplete; "
                f"run `mothertongue {name} RECIPE` (or `mothertongue run RECIPE`) first"
            )
        return d

    def data_dir(self, recipe: Recipe, needed_by: str) -> Path:
        """Conversations for build: translated when translation is on, else ingested."""
        return self.require("translate" if recipe.translate.enabled else "ingest", needed_by)
