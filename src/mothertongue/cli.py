"""Command line: parse, load the recipe, call one thing. No logic lives here.

    mothertongue run recipes/quickstart.yaml              # every stage in order
    mothertongue train recipes/quickstart.yaml train.epochs=5 --force
    mothertongue chat runs/quickstart
    mothertongue serve runs/quickstart --port 8000
    mothertongue export runs/quickstart --format merged,ct2
    mothertongue export-data runs/quickstart             # the data as HF datasets + card
    mothertongue -v run recipes/quickstart.yaml           # also the libraries' own bars and messages
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from mothertongue.errors import UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="mothertongue: teach open language models a new language.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
ls_app = typer.Typer(help="List what is available.", no_args_is_help=True)
app.add_typer(ls_app, name="ls")

RECIPE = typer.Argument(..., help="Recipe YAML file.")
OVERRIDES = typer.Argument(None, help="Overrides like train.epochs=3 build.template=chatml.")
FORCE = typer.Option(False, "--force", help="Redo the stage even if nothing changed.")
TRUST_REMOTE_CODE = typer.Option(False, "--trust-remote-code",
                                 help="Run the model's own Python code (only for models you trust; a run folder never turns this on).")


@app.callback()
def _options(
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Show the libraries' own progress bars and messages (they always go to RUN_DIR/logs/)."),
) -> None:
    from mothertongue import progress

    progress.configure(verbose)


def _recipe(path: str, overrides: list[str] | None):
    from mothertongue.config import load_recipe
    from mothertongue.training.trackers import check

    recipe = load_recipe(path, overrides)
    check(recipe)  # a tracker named but not installed fails now, not after hours of translation
    return recipe


def _stage(name: str, recipe: str, overrides: list[str] | None, force: bool) -> None:
    from mothertongue.runs import run_stage

    r = _recipe(recipe, overrides)
    out, skipped, _ = run_stage(r, name, force=force)
    typer.echo(f"[{name}] {'up to date' if skipped else 'done'}: {out}")


@app.command()
def validate(recipe: str = RECIPE, overrides: list[str] = OVERRIDES) -> None:
    """Check a recipe: every key known, every value valid."""
    from mothertongue.runs import stages_for

    r = _recipe(recipe, overrides)
    if Path(r.run_dir).exists() and not Path(r.run_dir).is_dir():
        raise UsageError(f"run_dir {r.run_dir} is a file, not a folder; set run_dir to a folder")
    typer.echo(f"{recipe}: ok (stages: {' -> '.join(stages_for(r))}; run dir {r.run_dir})")


@app.command()
def doctor(
    recipe: str = RECIPE,
    overrides: list[str] = OVERRIDES,
    gguf: bool = typer.Option(False, "--gguf", help="Also ask llama.cpp's converter (fetched once if absent)."),
) -> None:
    """Check the base model before a long run: template, loss mask, prompt prefix, end of turn, pad, GGUF."""
    from mothertongue.doctor import doctor as run_doctor

    raise typer.Exit(run_doctor(_recipe(recipe, overrides), gguf, log=typer.echo))


@app.command()
def run(recipe: str = RECIPE, overrides: list[str] = OVERRIDES, force: bool = FORCE) -> None:
    """Run every stage of a recipe in order (unchanged stages are skipped)."""
    from mothertongue.runs import run_stage, stages_for

    r = _recipe(recipe, overrides)
    for name in stages_for(r):
        run_stage(r, name, force=force)
    typer.echo(f"\nDone. Talk to your model:  mothertongue chat {r.run_dir}")


@app.command()
def ingest(recipe: str = RECIPE, overrides: list[str] = OVERRIDES, force: bool = FORCE) -> None:
    """Read the recipe's sources into conversations (with a report of everything skipped)."""
    _stage("ingest", recipe, overrides, force)


@app.command()
def translate(
    recipe: str = RECIPE,
    overrides: list[str] = OVERRIDES,
    force: bool = FORCE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (routes, models, segments, time); translate nothing."),
    shard: str = typer.Option(None, "--shard", help="i/n: translate this worker's share into its own memory; rerun without to finish."),
) -> None:
    """Machine-translate the ingested conversations into the target language (resumable)."""
    if dry_run or shard:
        from mothertongue import translate as tr

        r = _recipe(recipe, overrides)
        if dry_run:
            typer.echo(tr.dry_run(r))
        else:
            i, n = tr.parse_shard(shard)
            typer.echo(f"[translate] shard {i}/{n} done: {tr.run_shard(r, i, n)}")
        return
    _stage("translate", recipe, overrides, force)


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
        mem.close()
        if created and mem.count() == 0:
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


@app.command()
def tokenizer(
    recipe: str = RECIPE,
    overrides: list[str] = OVERRIDES,
    report: bool = typer.Option(True, "--report/--no-report", help="Print tokens per word of the base tokenizer on target and English text."),
) -> None:
    """Diagnose the base tokenizer on the target language (fertility), with a recommendation."""
    from mothertongue.vocab.stage import diagnose, format_report

    if report:
        typer.echo(format_report(diagnose(_recipe(recipe, overrides))))


@app.command()
def build(
    recipe: str = RECIPE,
    overrides: list[str] = OVERRIDES,
    force: bool = FORCE,
    show: int = typer.Option(0, "--show", help="Print N rendered examples with trained tokens marked."),
) -> None:
    """Render training examples with the chat template and the loss mask."""
    from mothertongue.runs import RunDir, run_stage

    r = _recipe(recipe, overrides)
    run_stage(r, "build", force=force)
    if show:
        from mothertongue.build import show as show_examples

        typer.echo(show_examples(RunDir(Path(r.run_dir)).root, show, color=sys.stdout.isatty()))


@app.command()
def train(recipe: str = RECIPE, overrides: list[str] = OVERRIDES, force: bool = FORCE) -> None:
    """Fine-tune the base model on the built data (resumes after a kill)."""
    _stage("train", recipe, overrides, force)


@app.command()
def vision(recipe: str = RECIPE, overrides: list[str] = OVERRIDES, force: bool = FORCE) -> None:
    """Compose a vision-language model from the tuned model and an image encoder; train it in two stages."""
    _stage("vision", recipe, overrides, force)


@app.command()
def evaluate(
    target: str = typer.Argument(..., help="Recipe YAML file, or a run directory (uses its recipe.resolved.yaml)."),
    overrides: list[str] = OVERRIDES,
    force: bool = FORCE,
) -> None:
    """Score the base and the tuned model side by side; print the scorecard table."""
    from mothertongue.evaluate import print_scorecard
    from mothertongue.runs import RunDir, run_stage

    if Path(target).is_dir():
        r = RunDir(Path(target)).load_recipe([f"run_dir={target}", *(overrides or [])])
    else:
        r = _recipe(target, overrides)
    out, skipped, _ = run_stage(r, "evaluate", force=force, log=typer.echo)
    if skipped:  # a fresh run prints its table itself
        typer.echo(print_scorecard(out.parent))
    typer.echo(f"[evaluate] scorecard: {out / 'scorecard.md'}, {out / 'scorecard.html'}, {out / 'scorecard.json'}")


@app.command()
def chat(
    run_dir: str = typer.Argument(..., help="A run directory (e.g. runs/quickstart) or an exported model folder."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Answer one prompt and exit ('-': read it from stdin)."),
    preset: str = typer.Option(None, "--preset", help="greedy, beam or sample (default: recipe's chat.preset)."),
    system: str = typer.Option(None, "--system", help="System prompt."),
    style: str = typer.Option(None, "--style", help="Style tag, e.g. pirate (as /style in the REPL)."),
    base: bool = typer.Option(False, "--base", help="Talk to the untuned base model instead."),
    merged: bool = typer.Option(False, "--merged", help="Merge the LoRA adapter into the base first."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Longest reply in tokens."),
    image: list[str] = typer.Option(None, "--image", help="An image for the first message (vision runs; repeatable)."),
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Talk to a tuned model: a multi-turn REPL, one answer with --prompt, or prompts piped on stdin."""
    from mothertongue.chat import ChatSession, repl
    from mothertongue.generation import generation_kwargs

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if max_new_tokens is not None and max_new_tokens <= 0:
        raise UsageError(f"--max-new-tokens must be > 0, got {max_new_tokens}")
    if preset is not None:
        generation_kwargs(preset)  # an unknown preset fails here, before the model loads
    which = "base" if base else "merged" if merged else "tuned"
    if image:
        from mothertongue.runs import RunDir
        from mothertongue.vision.images import open_image

        v = RunDir(Path(run_dir)).recipe_or_none()
        v = v.vision if v else None
        for p in image:  # a bad image fails before the model loads
            open_image(p, *((v.max_image_pixels, v.max_image_bytes) if v else ()))
    session = ChatSession(Path(run_dir), which, preset, system, max_new_tokens, style=style,
                          trust_remote_code=trust_remote_code)
    for p in image or []:
        session.attach_image(p)
    if prompt is not None:
        text = sys.stdin.read().strip() if prompt == "-" else prompt
        rep = session.reply(text)
        typer.echo(rep.text)
    else:
        repl(session)


@app.command()
def serve(
    run_dir: str = typer.Argument(..., help="A run directory or an exported model folder."),
    host: str = typer.Option(None, "--host", help="Address to bind (default: serve.host, 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="TCP port (default: serve.port, 8000)."),
    api_key: str = typer.Option(None, "--api-key", envvar="MOTHERTONGUE_API_KEY",
                                help="Require Authorization: Bearer KEY (or set MOTHERTONGUE_API_KEY)."),
    name: str = typer.Option(None, "--name", help="Model id reported by the API (default: the run name)."),
    base: bool = typer.Option(False, "--base", help="Serve the untuned base model instead."),
    merged: bool = typer.Option(False, "--merged", help="Merge the LoRA adapter into the base first."),
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Serve a tuned model behind an OpenAI-compatible API (POST /v1/chat/completions)."""
    from mothertongue.serve import serve as run_server

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if port is not None and not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    run_server(Path(run_dir), "base" if base else "merged" if merged else "tuned", host, port, api_key, name,
               trust_remote_code=trust_remote_code)


@app.command()
def export(
    run_dir: str = typer.Argument(..., help="A finished run directory."),
    fmt: str = typer.Option("merged", "--format", help="Comma-separated: merged, gguf, ct2, gptq, awq (`mothertongue ls exporters`)."),
    out: str = typer.Option(None, "--out", help="Output folder (default: RUN_DIR/export)."),
    gguf_type: str = typer.Option("q8_0", "--gguf-type", help="GGUF type: f32, f16, bf16, q8_0, or q4_k_m etc."),
    llama_cpp: str = typer.Option(None, "--llama-cpp", envvar="LLAMA_CPP_DIR",
                                  help="llama.cpp checkout with convert_hf_to_gguf.py (for gguf); without one, the converter is fetched once from the llama-cpp-python sdist on PyPI."),
    ct2_quantization: str = typer.Option("int8", "--ct2-quantization", help="int8, int8_float16, float16, float32, none."),
    push_to_hub: str = typer.Option(None, "--push-to-hub", help="Also upload the merged model to this hub repo."),
    option: list[str] = typer.Option(None, "--option", "-o", help="FORMAT.KEY=VALUE for one format, e.g. gptq.group_size=64, awq.calibration_samples=512 (repeatable)."),
) -> None:
    """Merge the adapter and export (safetensors, GGUF, CTranslate2, GPTQ, AWQ); each export is verified."""
    from mothertongue.export import export as run_export
    from mothertongue.export import parse_options

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    formats = tuple(f.strip() for f in fmt.split(",") if f.strip())
    result = run_export(Path(run_dir), Path(out) if out else None, formats, gguf_type, llama_cpp,
                        ct2_quantization, push_to_hub, log=typer.echo, options=parse_options(option or []))
    typer.echo(f"[export] report: {Path(out) if out else Path(run_dir) / 'export'}/report.json "
               f"({len(result['exports'])} exports loaded back and generated with)")


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


@app.command()
def status(
    run_dir: str = typer.Argument(..., help="A run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (for scripts)."),
) -> None:
    """Where a run stands: each stage's state, when it ran, how long, key counts, disk used."""
    import json

    from mothertongue.status import format_status, stage_states

    if not Path(run_dir).is_dir():
        raise UsageError(f"run directory not found: {run_dir}")
    rows = stage_states(Path(run_dir))
    typer.echo(json.dumps({"run_dir": run_dir, "stages": rows}, ensure_ascii=False, indent=2) if as_json else format_status(Path(run_dir), rows))


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


# OS errors a user causes and can fix (a path that is missing, a folder, not allowed); other
# OSErrors are bugs or broken machines and keep their traceback.
USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (MT_DEBUG=1 shows traces)."""
    from mothertongue.errors import MothertongueError, os_error_line

    # -v is a global option; accept it after the command too (`mothertongue run r.yaml -v`)
    args = sys.argv[1:]
    cut = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:cut] if a in ("-v", "--verbose")]
    rest = [a for a in args[:cut] if a not in ("-v", "--verbose")] + args[cut:]
    try:
        app(args=flags[:1] + rest, prog_name="mothertongue")
    except MothertongueError as e:
        if os.environ.get("MT_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except USER_OS_ERRORS as e:
        if os.environ.get("MT_DEBUG"):
            raise
        typer.echo(f"error: {os_error_line(e)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
