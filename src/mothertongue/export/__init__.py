"""Export a tuned model: merged safetensors (Transformers, vLLM), CTranslate2 (fast CPU inference),
GGUF (llama.cpp, Ollama). Every export is loaded back and made to generate.

    mothertongue export runs/quickstart                                   # -> runs/quickstart/export/merged
    mothertongue export runs/quickstart --format merged,ct2 --ct2-quantization int8
    mothertongue export runs/quickstart --format gguf --gguf-type q8_0

Exporters are rows of EXPORTERS (name -> lazily imported class, see base.py for what one is);
`merged` always runs first and the others are made from its folder. Verification results (the
export's greedy replies and forced tokens next to the tuned model's, verify.py) go to
`export/report.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mothertongue import progress
from mothertongue.errors import UsageError
from mothertongue.export.base import Exporter, Job
from mothertongue.export.converter import LLAMA_CPP_PYTHON_VERSION, fetch_llama_cpp, find_llama_cpp
from mothertongue.export.ct2 import to_ctranslate2
from mothertongue.export.gguf import gguf_pre_tokenizer, to_gguf
from mothertongue.languages import greeting
from mothertongue.registry import Registry, UnknownName
from mothertongue.runs import RunDir, StageError, atomic_write_json

__all__ = [
    "parse_options",
    "EXPORTERS",
    "Exporter",
    "Job",
    "export",
    "probe_prompts",
    "load_exporter",
    "to_ctranslate2",
    "to_gguf",
    "find_llama_cpp",
    "fetch_llama_cpp",
    "gguf_pre_tokenizer",
    "LLAMA_CPP_PYTHON_VERSION",
]

EXPORTERS = Registry("export format", entry_point_group="mothertongue.exporters")
EXPORTERS.register(
    "merged",
    "mothertongue.export.merged:MergedExporter",
    "adapter merged into the base: safetensors + tokenizer + chat template (Transformers, vLLM)",
)
EXPORTERS.register(
    "ct2",
    "mothertongue.export.ct2:CT2Exporter",
    "CTranslate2 generator folder, int8 by default (fast CPU inference)",
)
EXPORTERS.register(
    "gguf",
    "mothertongue.export.gguf:GGUFExporter",
    "one GGUF file, q8_0 by default (llama.cpp, Ollama); converter fetched from PyPI once",
)

EXPORTERS.register(
    "gptq",
    "mothertongue.export.quant:GPTQExporter",
    "4-bit GPTQ folder (vLLM, SGLang, TGI, Transformers), calibrated on the run's target-language data; needs [quant]",
)
EXPORTERS.register(
    "awq",
    "mothertongue.export.quant:AWQExporter",
    "4-bit AWQ folder (vLLM, SGLang, Transformers), calibrated on the run's target-language data; needs [quant]",
)


def probe_prompts(run_dir: Path, n: int = 3) -> list[list[dict]]:
    """Prompts to verify an export with: held-out user turns of the run when there are any."""
    import json

    out = []
    for name in ("test.jsonl", "dev.jsonl", "train.jsonl"):
        p = Path(run_dir) / "ingest" / name
        if p.exists():
            for line in p.read_text(encoding="utf-8").splitlines():
                msgs = json.loads(line).get("messages", [])
                if msgs and msgs[0].get("role") == "user":
                    out.append([{"role": "user", "content": msgs[0]["content"]}])
                if len(out) >= n:
                    return out
    return out or [[{"role": "user", "content": greeting(RunDir(Path(run_dir)).language())}]]


def parse_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """`--option FORMAT.KEY=VALUE` strings as {format: {key: value}}; values are read as YAML
    scalars (8 -> int, true -> bool, anything else a string)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        fmt, dot, field = key.strip().partition(".")
        if not (sep and dot and fmt and field):
            raise UsageError(
                f"--option {pair!r}: expected FORMAT.KEY=VALUE, e.g. gptq.group_size=64"
            )
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        out.setdefault(fmt, {})[field] = parsed
    return out


def load_exporter(name: str, options: dict[str, Any] | None = None) -> Exporter:
    """The exporter registered as `name`, with its options validated (one-line errors)."""
    try:
        cls = EXPORTERS.get(name)
    except UnknownName as e:
        raise StageError(str(e)) from None
    return cls(options)


def export(
    run_dir: Path,
    out: Path | None = None,
    formats: tuple[str, ...] = ("merged",),
    gguf_type: str = "q8_0",
    llama_cpp: str | None = None,
    ct2_quantization: str = "int8",
    push_to_hub: str | None = None,
    log: Callable[[str], None] = print,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict:
    """Run the chosen exports into `out` (default RUN/export); merged comes first (the others
    are made from it). `options` holds each format's options by name ({"gguf": {"type": "f16"}}),
    over the named arguments. Returns and writes `report.json`."""
    run_dir = Path(run_dir)
    opts: dict[str, dict[str, Any]] = {
        "merged": {"push_to_hub": push_to_hub},
        "gguf": {"type": gguf_type, "llama_cpp": llama_cpp},
        "ct2": {"quantization": ct2_quantization},
    }
    names = ["merged", *dict.fromkeys(f for f in formats if f != "merged")]
    for name, o in (options or {}).items():
        if name not in names:
            raise UsageError(
                f"export options for {name!r}, which is not among the formats ({', '.join(names)})"
            )
        opts[name] = {**opts.get(name, {}), **o}
    exporters = [load_exporter(name, opts.get(name)) for name in names]
    if not RunDir(run_dir).model_info_path.exists():
        raise StageError(f"{run_dir}: no finished train stage (train/model_info.json); train first")
    # the log beside the run's other logs, or in --out (the run folder may not be writable)
    log_path = Path(out) / "log.txt" if out else RunDir(run_dir).log_path("export")
    out = Path(out) if out else run_dir / "export"
    job = Job(run_dir, out, probe_prompts(run_dir), RunDir(run_dir).language(), log)
    for exp in exporters:  # every check before any slow step (and before the folder is made)
        exp.check(job)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    with progress.stage("export", log_path), \
            progress.task("export", total=len(exporters), unit="formats") as bar:
        for exp in exporters:
            bar.update(format=exp.name)
            rep = exp.export(job)
            reports.append(rep)
            log(f"[export] {exp.summary(rep)}")
            bar.advance()
    result = {"run_dir": str(run_dir), "exports": reports}
    atomic_write_json(out / "report.json", result)
    return result
