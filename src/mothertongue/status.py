"""`mothertongue status RUN_DIR`: where a run stands, stage by stage.

    mothertongue status runs/quickstart            # a table
    mothertongue status runs/quickstart --json     # the same for scripts

For each stage of the pipeline: its state (done, skipped as unchanged at the last run, partial
with its progress, failed with its one-line error and its log file, not started), when it last
ran and for how long, its key counts, and the disk it uses. The states come from the stage
folders and manifests (`runs.py`) and from `RUN_DIR/history.jsonl`, where the runner notes every
attempt: ran, skipped or failed; each attempt's output is in `RUN_DIR/logs/<stage>.txt`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from mothertongue.progress import num
from mothertongue.runs import ORDER, RunDir, manifest_intact, read_manifest, stage_row


def disk_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover




def key_counts(name: str, summary: dict) -> dict:
    """The few numbers a person looks for, per stage."""
    s = summary or {}
    if name == "ingest":
        return {"records read": s.get("read"), "converted": s.get("converted"),
                "skipped": sum((s.get("skipped") or {}).values()), "splits": s.get("splits")}  # fmt: skip
    if name == "translate":
        seg = s.get("segments") or {}
        return {"segments translated": seg.get("translated"), "from memory": seg.get("from_memory"),
                "flagged": s.get("flagged"), "written": s.get("written")}  # fmt: skip
    if name == "build":
        return {"train examples": s.get("train_examples"), "dev examples": s.get("dev_examples"),
                "preference pairs": (s.get("preference_pairs") or {}).get("train")}  # fmt: skip
    if name == "train":
        return {"steps": s.get("steps"), "final loss": s.get("final_loss"), "eval loss": s.get("eval_loss")}
    if name == "evaluate":
        tuned = (s.get("models") or {}).get("tuned") or {}
        fid = [v["fidelity"] for v in tuned.values() if isinstance(v, dict) and isinstance(v.get("fidelity"), (int, float))]
        held = tuned.get("held-out") or {}
        return {"held-out exact match": held.get("exact_match"), "held-out chrF": held.get("chrf"),
                "mean fidelity": sum(fid) / len(fid) if fid else None}  # fmt: skip
    return {k: v for k, v in s.items() if not isinstance(v, (dict, list))}


def _progress(rundir: RunDir, name: str) -> dict:
    """What a partial (killed or running) stage has done so far."""
    partial = rundir.partial(name)
    if name == "train":
        def step(p: Path) -> int:
            tail = p.parent.name.rsplit("-", 1)[-1]
            return int(tail) if tail.isdigit() else -1

        # a checkpoint counts once its trainer state is written (the last file the trainer saves)
        states = sorted(partial.glob("checkpoints/checkpoint-*/trainer_state.json"), key=step)
        if not states:
            return {"checkpoint step": None}
        st = json.loads(states[-1].read_text(encoding="utf-8"))
        return {"checkpoint step": st.get("global_step"), "of steps": st.get("max_steps")}
    if name == "translate":
        recipe = rundir.recipe_or_none()
        mem = Path(recipe.translate.memory) if recipe and recipe.translate.memory else rundir.root / "translate-memory.sqlite"
        if mem.exists():
            try:
                with sqlite3.connect(f"file:{mem}?mode=ro", uri=True) as db:
                    tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
                    rows = sum(db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables if t.startswith("segments") or t == "memory")
                return {"segments in memory": rows}
            except sqlite3.Error:
                return {"segments in memory": "unreadable"}
    return {}


def last_events(rundir: RunDir) -> dict[str, dict]:
    out: dict[str, dict] = {}
    path = rundir.history_path
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: the others still count
            out[ev.get("stage", "?")] = ev
    return out


def stage_states(run_dir: Path) -> list[dict]:
    rundir = RunDir(Path(run_dir))
    events = last_events(rundir)
    rows = []
    for name in ORDER:
        final, partial = rundir.stage(name), rundir.partial(name)
        manifest = read_manifest(final)
        complete = manifest is not None and manifest_intact(final, manifest)
        ev = events.get(name, {})
        log = rundir.log_path(name)
        row = {"stage": name, "state": "not started", "when": None, "seconds": None, "counts": {},
               "disk": disk_bytes(final) + disk_bytes(partial), "error": None,
               "log": str(log) if log.exists() else None}  # fmt: skip
        if complete:
            row.update(when=manifest.get("finished"), seconds=manifest.get("seconds"),
                       counts=key_counts(name, manifest.get("summary") or {}))  # fmt: skip
            row["state"] = "skipped (unchanged)" if ev.get("outcome") == "skipped" else "done"
        if ev.get("outcome") == "failed" and (not complete or ev.get("at", "") > (manifest or {}).get("finished", "")):
            row.update(state="failed", error=ev.get("error"), when=ev.get("at"))
        elif partial.exists() and (ev.get("outcome") == "started" or (not complete and stage_row(name).resumable)):
            row.update(state="partial", counts=_progress(rundir, name))
        elif manifest is not None and not complete:
            row["state"] = "incomplete (files missing)"
        rows.append(row)
    return rows


def format_status(run_dir: Path, rows: list[dict]) -> str:
    lines = [f"{run_dir}"]
    w = max(len(r["state"]) for r in rows)
    for r in rows:
        counts = ", ".join(f"{k} {num(v)}" for k, v in r["counts"].items() if v is not None)
        took = f"{num(float(r['seconds']))} s" if r["seconds"] is not None else ""
        when = r["when"] or ""
        line = f"  {r['stage']:<10} {r['state']:<{w}}  {when:<19} {took:>9}  {human_bytes(r['disk']):>10}"
        lines.append(line.rstrip() + (f"\n             {counts}" if counts else ""))
        if r["error"]:
            lines.append(f"             error: {r['error']}")
            if r.get("log"):
                lines.append(f"             log:   {r['log']}")
    return "\n".join(lines)
