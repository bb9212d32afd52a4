"""The stage table and the stage runner (the run folder itself: rundir.py).

    runs/quickstart/
      recipe.resolved.yaml      the recipe as run (overrides applied, base folder recorded)
      ingest/ translate/ build/ train/ evaluate/     one folder per stage
        manifest.json           written last: lists every file; a folder without it, or missing a file it lists, is not complete
      logs/<stage>.txt          everything each attempt printed and logged (outside the stage folder: kept when it fails)

    path, skipped, summary = run_stage(recipe, "build")

A stage is one row of `STAGE_TABLE` plus a module whose `run(recipe, rundir, out)` reads upstream
artifacts and writes into `out`. The runner owns atomicity: the stage writes into
`<stage>.partial/`; when it returns, the manifest (with every file and its size) is written last
and the folder is swapped in by renames only (old folder aside, new one in, old one deleted), so a
kill at any point leaves either the old or the new complete folder, never a manifest beside
partial content. A stage that fails removes its `.partial` folder, except resumable stages
(train, translate), which keep it to resume. A stage whose settings and inputs are unchanged is
skipped on rerun; `--force` redoes it.
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
from typing import Any, NamedTuple

from mothertongue import progress
from mothertongue.config import Recipe
from mothertongue.errors import MothertongueError, StageError
from mothertongue.registry import Registry

# The run folder, its artifacts and atomic file writing live in rundir.py; imported here under the
# names every stage module has always used.
from mothertongue.rundir import (
    MANIFEST,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    file_signature,
    list_files,
    manifest_intact,
    read_manifest,
    write_folder,
)

__all__ = [
    "MANIFEST", "ORDER", "STAGES", "STAGE_TABLE", "RunDir", "Stage", "StageError", "StageResult",
    "atomic_write_json", "atomic_write_text", "file_signature", "list_files", "manifest_intact",
    "read_manifest", "run_stage", "stage_row", "stages_for", "upstream", "write_folder",
]

def _always(recipe: Recipe) -> bool:
    return True


def _ingest_files(recipe: Recipe) -> dict:
    srcs = []
    for s in recipe.ingest.sources:
        p = recipe.resolve_path(s.path)
        srcs.append(file_signature(p) if p.exists() else s.path)
    return {"files": srcs}


def _translate_files(recipe: Recipe) -> dict:
    """Parallel files of `toy:PATH` models (a changed file is a changed translation model), and the
    human corrections in the translation memory (`mothertongue review --import`)."""
    from mothertongue.engines.memory import Memory
    from mothertongue.translate.stage import memory_path

    specs = [recipe.translate.model, recipe.translate.round_trip.model, *recipe.translate.models.values()]
    toys = sorted({m for m in specs if m and m.startswith("toy:")})
    out: dict = {"toy_files": [file_signature(recipe.resolve_path(m[4:])) for m in toys if recipe.resolve_path(m[4:]).is_file()]}
    if memory_path(recipe).is_file():
        memory = Memory(memory_path(recipe))
        try:
            if edits := memory.edits_digest():
                out["edits"] = edits
        finally:
            memory.close()
    return out


def _vision_files(recipe: Recipe) -> dict:
    """The data files, the images they name (replaced in place: stale) and, when the stage
    machine-translates the vision text, the translate settings."""
    from mothertongue.vision.data import images_signature

    v = recipe.vision
    paths = [recipe.resolve_path(s.path) for s in [*v.captions, *v.instructions, *v.heldout]] if v else []
    out = {"vision_files": [file_signature(p) if p.exists() else str(p) for p in paths]}
    if v:
        out["vision_images"] = images_signature(recipe)
    if v and recipe.translate.enabled:
        out["vision_translate"] = recipe.dump()["translate"]
    return out


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline: adding a stage is a row here plus its module."""

    name: str
    target: str  # "module:function" with the signature run(recipe, rundir, out) -> summary dict
    doc: str
    needs: tuple[str, ...] = ()  # a disabled stage stands for what it needs (build <- translate <- ingest)
    enabled: Callable[[Recipe], bool] = _always
    resumable: bool = False  # keeps <stage>.partial/ between attempts to resume
    # The recipe keys whose values decide whether the stage's output is still current.
    config_keys: tuple[str, ...] = ("language", "base_model", "tiny_model", "seed")
    inputs: Callable[[Recipe], dict] | None = None  # extra fingerprint parts (source file hashes)
    models: bool = True  # loads models with transformers (its log lines go to the stage log from the start)


STAGE_TABLE: list[Stage] = [
    Stage("ingest", "mothertongue.ingest:run", "read source data into conversations",
          config_keys=(), inputs=_ingest_files, models=False),
    Stage("translate", "mothertongue.translate:run", "machine-translate into the target language",
          needs=("ingest",), enabled=lambda r: r.translate.enabled, resumable=True, inputs=_translate_files),
    Stage("vocab", "mothertongue.vocab.stage:run", "extend the tokenizer for the target language",
          needs=("translate",), enabled=lambda r: r.vocab.enabled, inputs=lambda r: {"native": r.dump()["build"]["native"]}),
    Stage("build", "mothertongue.build:run", "render training examples with the chat template",
          needs=("vocab",)),
    Stage("train", "mothertongue.train:run", "fine-tune the base model", needs=("build",), resumable=True),
    Stage("evaluate", "mothertongue.evaluate:run", "score base and tuned model",
          needs=("train", "build"), enabled=lambda r: r.evaluate.enabled),
    Stage("vision", "mothertongue.vision.stage:run", "compose and train a vision-language model (2 stages)",
          needs=("train", "build"), enabled=lambda r: r.vision is not None, resumable=True, inputs=_vision_files),
]
ORDER = [s.name for s in STAGE_TABLE]
STAGES = Registry("stage")
for _s in STAGE_TABLE:
    STAGES.register(_s.name, _s.target, _s.doc)
_BY_NAME = {s.name: s for s in STAGE_TABLE}


def stage_row(name: str) -> Stage:
    STAGES.target(name)  # an unknown name raises UnknownName with close matches
    return _BY_NAME[name]


def stages_for(recipe: Recipe) -> list[str]:
    """The stages `mothertongue run` runs for this recipe, in order."""
    return [s.name for s in STAGE_TABLE if s.enabled(recipe)]


def upstream(recipe: Recipe, name: str) -> list[str]:
    """The enabled stages whose output `name` reads; a disabled need is replaced by its own needs."""
    out: list[str] = []
    for need in stage_row(name).needs:
        row = _BY_NAME[need]
        for up in [need] if row.enabled(recipe) else upstream(recipe, need):
            if up not in out:
                out.append(up)
    return out


def _relevant_config(recipe: Recipe, name: str) -> dict:
    row, d = stage_row(name), recipe.dump()
    cfg = {k: d[k] for k in row.config_keys}
    cfg[name] = d.get(name)
    if name == "train":
        cfg[name].pop("report_to", None)  # where metrics are reported does not change the model
    if row.inputs is not None:
        cfg.update(row.inputs(recipe))
    return cfg


def fingerprint(recipe: Recipe, run: RunDir, name: str) -> str:
    parts: dict[str, Any] = {"config": _relevant_config(recipe, name)}
    for up in upstream(recipe, name):
        m = read_manifest(run.stage(up))
        parts[up] = m["fingerprint"] if m else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class StageResult(NamedTuple):
    path: Path
    skipped: bool
    summary: dict


def _is_main() -> bool:
    # Under `accelerate launch` every rank runs the stage; only rank 0 owns the folders.
    return int(os.environ.get("RANK", "0")) == 0


def _recover(run: RunDir, name: str) -> bool:
    """Finish a swap a kill interrupted. A `.partial` folder with an intact manifest is finished
    work newer than the stage folder: it moves in. An aside copy is deleted once a complete stage
    folder exists, else moved back. True when finished work was moved in."""
    final, partial, aside = run.stage(name), run.partial(name), run.aside(name)
    adopted = manifest_intact(partial, read_manifest(partial))
    if adopted:
        swap_in(run, name)
    if aside.exists():
        if not final.exists() and manifest_intact(aside, read_manifest(aside)):
            os.replace(aside, final)
        else:
            shutil.rmtree(aside, ignore_errors=True)
    return adopted


def swap_in(run: RunDir, name: str) -> Path:
    """Move the finished `.partial` folder into place by renames only."""
    final, partial, aside = run.stage(name), run.partial(name), run.aside(name)
    if aside.exists():
        shutil.rmtree(aside)
    if final.exists():
        os.replace(final, aside)
    os.replace(partial, final)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def _check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise StageError(f"run_dir {root} is a file, not a folder; set run_dir to a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StageError(f"run_dir {root}: cannot create it ({e.strerror or e})") from None


def run_stage(recipe: Recipe, name: str, force: bool = False,
              log: Callable[[str], None] = print) -> StageResult:
    """Run one stage atomically, or skip it when its settings and inputs are unchanged."""
    row = stage_row(name)
    fn = STAGES.get(name)
    rundir = RunDir(Path(recipe.run_dir))
    _check_root(rundir.root)
    adopted = _recover(rundir, name) if _is_main() else False
    for up in upstream(recipe, name):
        rundir.require(up, name)
    fp = fingerprint(recipe, rundir, name)
    final = rundir.stage(name)
    old = read_manifest(final)
    if old and old.get("fingerprint") == fp and not force and rundir.complete(name):
        log(f"[{name}] skipped: inputs and settings unchanged since {old.get('finished', '?')} (--force redoes it)")
        if _is_main():
            if adopted or not rundir.resolved_path.exists():
                rundir.save_recipe(recipe)  # finishing the interrupted commit of this very recipe
            rundir.note(name, "skipped")
        return StageResult(final, True, old.get("summary") or {})
    partial = rundir.partial(name)
    meta_path = partial / ".fingerprint"
    keep = (
        row.resumable
        and not force
        and meta_path.exists()
        and meta_path.read_text().strip() == fp
    )
    if _is_main():
        if partial.exists() and not keep:
            shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(fp)
    else:
        partial.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if _is_main():
        rundir.note(name, "started")
    try:
        with progress.stage(name, rundir.log_path(name), models=row.models):
            summary = fn(recipe, rundir, partial) or {}
    except BaseException as e:
        # A failed attempt must not look like work in progress; resumable stages keep it to resume.
        if _is_main():
            if not row.resumable:
                shutil.rmtree(partial, ignore_errors=True)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            rundir.note(name, "failed", error=f"{type(e).__name__}: {first}" if not isinstance(e, MothertongueError) else first)
        raise
    if not _is_main():  # only rank 0 commits (train's other ranks stop inside the stage)
        return StageResult(partial, False, summary)
    manifest = {
        "stage": name,
        "fingerprint": fp,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - started, 2),
        "summary": summary,
    }
    meta_path.unlink(missing_ok=True)
    manifest["files"] = list_files(partial)
    atomic_write_json(partial / MANIFEST, manifest)
    # The record of the run changes only when a stage's new output is about to replace the old.
    rundir.save_recipe(recipe)
    path = swap_in(rundir, name)
    rundir.note(name, "ran", seconds=manifest["seconds"])
    return StageResult(path, False, summary)
