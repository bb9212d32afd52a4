"""Run directory layout, atomic stage outputs, manifests and the stage runner.

    runs/quickstart/
      recipe.resolved.yaml      the recipe as run, overrides applied
      ingest/ translate/ build/ train/ evaluate/     one folder per stage
        manifest.json           written last: a folder without it is not complete

A stage writes into `<stage>.partial/` and only after it finished is the manifest written and
the folder renamed into place, so a killed stage never leaves output that a later run takes as
complete. Resumable stages (train, translate) keep their `.partial` folder between attempts.
A stage whose settings and inputs are unchanged is skipped on rerun; `--force` redoes it.
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

from mothertongue.config import Recipe, save_resolved
from mothertongue.registry import Registry

MANIFEST = "manifest.json"

STAGES = Registry("stage")
STAGES.register("ingest", "mothertongue.ingest:run", "read source data into conversations")
STAGES.register("translate", "mothertongue.translate:run", "machine-translate into the target language")
STAGES.register("build", "mothertongue.build:run", "render training examples with the chat template")
STAGES.register("train", "mothertongue.train:run", "fine-tune the base model")
STAGES.register("evaluate", "mothertongue.evaluate:run", "score base and tuned model")
ORDER = ["ingest", "translate", "build", "train", "evaluate"]


class StageError(RuntimeError):
    """A stage cannot run; the message says what to do."""


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
    root: Path

    def stage(self, name: str) -> Path:
        return self.root / name

    def partial(self, name: str) -> Path:
        return self.root / f"{name}.partial"

    def complete(self, name: str) -> bool:
        return read_manifest(self.stage(name)) is not None

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


def _upstream(recipe: Recipe, name: str) -> list[str]:
    deps = {
        "ingest": [],
        "translate": ["ingest"],
        "build": ["translate" if recipe.translate.enabled else "ingest"],
        "train": ["build"],
        "evaluate": ["train", "build"],
    }
    return deps.get(name, [])


def _relevant_config(recipe: Recipe, name: str) -> dict:
    d = recipe.dump()
    common = {k: d[k] for k in ("language", "base_model", "tiny_model", "seed")}
    if name == "ingest":
        srcs = []
        for s in recipe.ingest.sources:
            p = recipe.resolve_path(s.path)
            srcs.append(file_signature(p) if p.exists() else s.path)
        return {"ingest": d["ingest"], "files": srcs}
    return {**common, name: d.get(name)}


def fingerprint(recipe: Recipe, run: RunDir, name: str) -> str:
    parts = {"config": _relevant_config(recipe, name)}
    for up in _upstream(recipe, name):
        m = read_manifest(run.stage(up))
        parts[up] = m["fingerprint"] if m else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


RESUMABLE = {"train", "translate"}


def run_stage(recipe: Recipe, name: str, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run one stage atomically, or skip it when its settings and inputs are unchanged."""
    fn = STAGES.get(name)
    run = RunDir(Path(recipe.run_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    save_resolved(recipe, run.root / "recipe.resolved.yaml")
    for up in _upstream(recipe, name):
        run.require(up, name)
    fp = fingerprint(recipe, run, name)
    final = run.stage(name)
    old = read_manifest(final)
    if old and old.get("fingerprint") == fp and not force:
        log(f"[{name}] skipped: inputs and settings unchanged since {old.get('finished', '?')} (--force redoes it)")
        return final
    partial = run.partial(name)
    meta_path = partial / ".fingerprint"
    keep = (
        name in RESUMABLE
        and not force
        and meta_path.exists()
        and meta_path.read_text().strip() == fp
    )
    # Under `accelerate launch` every rank runs the stage; only rank 0 prepares the folder.
    if int(os.environ.get("RANK", "0")) == 0:
        if partial.exists() and not keep:
            shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(fp)
    else:
        partial.mkdir(parents=True, exist_ok=True)
    started = time.time()
    summary = fn(recipe, run, partial) or {}
    manifest = {
        "stage": name,
        "fingerprint": fp,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - started, 2),
        "summary": summary,
    }
    meta_path.unlink(missing_ok=True)
    atomic_write_json(partial / MANIFEST, manifest)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def stages_for(recipe: Recipe) -> list[str]:
    out = ["ingest"]
    if recipe.translate.enabled:
        out.append("translate")
    out += ["build", "train"]
    if recipe.evaluate.enabled:
        out.append("evaluate")
    return out
