"""Command line, the tools around the stages: translation memories, post-editing, MT benchmarks,
data export and the `ls` listings. Registered on cli.py's `app` when it is imported.

    mothertongue merge-memory runs/x/translate-memory.sqlite shards/*.sqlite
    mothertongue review runs/x --export review.csv
    mothertongue mt-bench dev.tsv --src en --tgt de -m Helsinki-NLP/opus-mt-en-de
    mothertongue export-data runs/x
    mothertongue ls formats
"""

from __future__ import annotations

from pathlib import Path

import typer

from mothertongue.cli import app, ls_app
from mothertongue.errors import UsageError


@app.command("merge-memory")
def merge_memory(
    dest: str = typer.Argument(..., help="Translation memory to merge into (created if missing)."),
    sources: list[str] = typer.Argument(..., help="Memories to copy in (e.g. shard memories)."),
) -> None:
    """Merge translation memories (SQLite) from shards or other machines into one."""
    from mothertongue.engines.memory import Memory

    for src in sources:  # before the destination is created: a typo leaves nothing behind
        if not Path(src).is_file():
            raise UsageError(f"translation memory not found: {src}")
    created = not Path(dest).exists()
    mem = Memory(dest)
    try:
        for src in sources:
            typer.echo(f"{src}: {mem.merge_from(src)} new segments")
    except Exception:
        empty = mem.count() == 0
        mem.close()
        if created and empty:
            for leftover in (Path(dest), Path(f"{dest}-wal"), Path(f"{dest}-shm")):
                leftover.unlink(missing_ok=True)
        raise
    typer.echo(f"{dest}: {mem.count()} segments")
    mem.close()


@app.command("review")
def review(
    run_dir: str = typer.Argument(..., help="A run directory (its translation memory)."),
    export_to: str = typer.Option(None, "--export", help="Write segments to this CSV for post-editing."),
    import_from: str = typer.Option(None, "--import", help="Read corrections from this CSV into the memory."),
    sample: int = typer.Option(None, "--sample", min=1, help="With --export: a random sample of N segments instead of the flagged ones."),
) -> None:
    """Human post-editing: export translated segments to a CSV, import the corrections."""
    from mothertongue.engines.memory import Memory
    from mothertongue.runs import RunDir
    from mothertongue.translate import review as rv
    from mothertongue.translate.stage import memory_path

    if (export_to is None) == (import_from is None):
        raise UsageError("give exactly one of --export FILE or --import FILE")
    recipe = RunDir(Path(run_dir)).load_recipe([f"run_dir={run_dir}"])
    path = memory_path(recipe)
    if not path.is_file():
        raise UsageError(f"{run_dir}: no translation memory at {path}; run the translate stage first")
    mem = Memory(path)
    try:
        if export_to:
            got = rv.export(mem, Path(export_to), sample, recipe.seed)
            typer.echo(f"[review] {got['segments']} of {got['in_memory']} segments -> {export_to}; "
                       "fill in the `correction` column, then --import it")
        else:
            got = rv.import_corrections(mem, Path(import_from))
            typer.echo(f"[review] {got['rows']} rows: {got['edited']} corrections stored, {got['removed']} removed, "
                       f"{got['unchanged']} unchanged; rerun translate (and the stages after it) to use them")
    finally:
        mem.close()


@app.command("mt-bench")
def mt_bench(
    data: str = typer.Argument(..., help="Parallel file: `source<TAB>reference` per line."),
    models: list[str] = typer.Option(..., "--model", "-m", help="Candidate model (repeat); `engine:model` picks an engine."),
    src: str = typer.Option(..., "--src", help="Source language (ISO 639-1)."),
    tgt: str = typer.Option(..., "--tgt", help="Target language (ISO 639-1)."),
    engine: str = typer.Option("ctranslate2", "--engine", help="Default engine for models without a prefix."),
    beam_size: int = typer.Option(1, "--beam-size", help="Beam size (1: greedy)."),
    limit: int = typer.Option(None, "--limit", help="Use only the first N lines."),
    options: list[str] = typer.Option(None, "--option", "-o", help="Engine option key=value (repeat)."),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", min=1, help="Token budget per batch (translate.batch_tokens)."),
) -> None:
    """Score MT models on your parallel data: BLEU, chrF (sacreBLEU) and speed, side by side."""
    from mothertongue.mtbench import bench, format_table

    rows = bench(data, models, src, tgt, engine=engine, beam_size=beam_size, limit=limit, options=options, batch_tokens=batch_tokens)
    typer.echo(format_table(rows))


@app.command("export-data")
def export_data(
    run_dir: str = typer.Argument(..., help="A run directory (translate or ingest finished)."),
    out: str = typer.Option(None, "--out", help="Output folder (default: RUN_DIR/export-data)."),
    push_to_hub: str = typer.Option(None, "--push-to-hub", help="Also upload the folder to this hub dataset repo (private unless --public)."),
    public: bool = typer.Option(False, "--public", help="With --push-to-hub: make a new repo public."),
) -> None:
    """The run's data as datasets others load: Parquet (HF datasets), OpenAI/ShareGPT JSONL, TRL pairs, a card."""
    from mothertongue.export.data import export_data as run_export_data

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if public and not push_to_hub:
        raise UsageError("--public only applies with --push-to-hub REPO")
    r = run_export_data(Path(run_dir), Path(out) if out else None, push_to_hub, public)
    splits = ", ".join(f"{s} {n}" for s, n in r["conversations"].items())
    typer.echo(f"[export-data] {r['out']}: conversations {splits}; preference pairs {sum(r['preference'].values())}; "
               f"card {r['out']}/README.md" + (f"; pushed to {r['pushed']}" if r.get("pushed") else ""))


@ls_app.command("templates")
def ls_templates() -> None:
    """Chat templates shipped with mothertongue."""
    from mothertongue import templates

    for n in templates.names():
        typer.echo(n)


@ls_app.command("formats")
def ls_formats() -> None:
    """Source formats the ingest stage reads."""
    from mothertongue.formats import FORMATS

    for n in FORMATS.names():
        typer.echo(f"{n:<14} {FORMATS.doc(n)}")


@ls_app.command("engines")
def ls_engines() -> None:
    """Translation engines (translate.engine)."""
    from mothertongue.engines import ENGINES

    for n in ENGINES.names():
        typer.echo(f"{n:<14} {ENGINES.doc(n)}")


@ls_app.command("languages")
def ls_languages() -> None:
    """Language codes mothertongue knows (phrase table, language detector, MT catalogue)."""
    from mothertongue.language_codes import detector_codes, known_codes
    from mothertongue.languages import english_name, lang

    detect = detector_codes()
    for code in sorted(known_codes()):
        parts = [p for p, ok in (("phrases", lang(code) is not None), ("detector", code in detect)) if ok]
        typer.echo(f"{code:<6} {english_name(code):<16} {', '.join(parts)}")


@ls_app.command("exporters")
def ls_exporters() -> None:
    """Export formats (`mothertongue export RUN --format NAME`)."""
    from mothertongue.export import EXPORTERS

    for n in EXPORTERS.names():
        typer.echo(f"{n:<14} {EXPORTERS.doc(n)}")


@ls_app.command("stages")
def ls_stages() -> None:
    """Pipeline stages, in order."""
    from mothertongue.runs import STAGE_TABLE

    for s in STAGE_TABLE:
        needs = f"  (needs {', '.join(s.needs)})" if s.needs else ""
        typer.echo(f"{s.name:<10} {s.doc}{needs}")
