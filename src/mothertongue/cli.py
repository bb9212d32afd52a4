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


# The translation-memory, data and listing commands (cli_tools.py) register on `app` and `ls_app`.
from mothertongue import cli_tools  # noqa: E402,F401

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
