"""What an exporter is: a name, strict options, a place in the output folder, and `export(job)`
returning its verification report.

    class OnnxExporter(Exporter):
        name = "onnx"
        Options = OnnxOptions            # a pydantic model with extra="forbid"
        def target(self, out): return out / "onnx"
        def export(self, job): ...       # read job.merged_dir, write self.target(job.out), verify

registered in mothertongue/export/__init__.py (or by a plug-in's entry point) as
`EXPORTERS.register("onnx", "mypkg.onnx:OnnxExporter", "one line for `mothertongue ls exporters`")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mothertongue.errors import UsageError
from mothertongue.runs import StageError


@dataclass
class Job:
    """One `mothertongue export` call: where from, where to, what to probe with."""

    run_dir: Path
    out: Path
    prompts: list[list[dict]]  # probe conversations (held-out user turns of the run)
    language: str
    log: Callable[[str], None] = print

    @property
    def merged_dir(self) -> Path:
        """The merged safetensors folder every other export is made from."""
        return self.out / "merged"


class ExporterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Exporter:
    """Base class. Subclasses set `name`, `Options` and implement `target`, `export`, `summary`;
    `check` runs before any slow step (the merge), so a missing tool fails in a second."""

    name = "exporter"
    Options: type[BaseModel] = ExporterOptions

    def __init__(self, options: dict[str, Any] | None = None):
        try:
            self.opts = self.Options.model_validate(options or {})
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UsageError(f"export option {self.name}.{where}: {err['msg']}") from None

    def check(self, job: Job) -> None:
        """Fail fast (one line) when this export cannot run here."""

    def target(self, out: Path) -> Path:
        raise NotImplementedError

    def export(self, job: Job) -> dict:
        raise NotImplementedError

    def summary(self, report: dict) -> str:
        return f"{self.name} -> {report['path']}"


# Files one of which a folder must hold for AutoTokenizer to find a tokenizer in it.
TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def load_tokenizer(model_dir: Path) -> Any:
    """The tokenizer saved in an (exported or converted) model folder; one line when there is none."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if not any((model_dir / f).exists() for f in TOKENIZER_MARKERS):
        raise StageError(
            f"{model_dir}: no tokenizer next to the model ({', '.join(TOKENIZER_MARKERS)} missing); "
            "export from a folder saved with its tokenizer (tokenizer.save_pretrained)"
        )
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StageError(f"{model_dir}: its tokenizer does not load ({first})") from None
