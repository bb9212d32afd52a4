"""The recipe: every section in one file, loaded with overrides and saved as run."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from mothertongue.config.base import Strict
from mothertongue.config.data import BuildConfig, IngestConfig, TranslateConfig, VocabConfig
from mothertongue.config.train import TinyModelConfig, TrainConfig, VisionConfig
from mothertongue.config.use import ChatConfig, EvaluateConfig, ServeConfig
from mothertongue.errors import RecipeError
from mothertongue.language_codes import check_language_codes
from mothertongue.overrides import format_validation_error, parse_overrides, set_dotted


class Recipe(Strict):
    name: str = Field("run", description="Run name.")
    run_dir: str = Field("runs/run", description="Where artifacts go (relative to the working directory).")
    language: str = Field("de", description="Target language, ISO 639-1 (de, fr, pt, ...).")
    base_model: str = Field("tiny", description="`tiny` (built locally), a hub id or a local path.")
    tiny_model: TinyModelConfig = Field(default_factory=TinyModelConfig)
    seed: int = Field(42)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    translate: TranslateConfig = Field(default_factory=TranslateConfig)
    vocab: VocabConfig = Field(default_factory=VocabConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    vision: VisionConfig | None = Field(None, description="Compose and train a vision-language model (off when absent).")

    # Not part of the file: where it came from, so relative paths resolve against it.
    base_dir: str = Field(".", exclude=True, description="Directory of the recipe file.")

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if not self.language or len(self.language) > 12:
            raise ValueError("language must be a language code such as 'de'")
        check_language_codes(self)  # languages.py: table, detector and MT catalogue
        return self

    def resolve_path(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def dump(self) -> dict:
        return self.model_dump(mode="json", exclude={"base_dir"})


# ------------------------------------------------------------------------- loading
def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}")
    if path.is_dir():
        raise RecipeError(f"{path} is a folder; give the recipe's .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    # A resolved recipe records the folder of the recipe it came from, so its relative paths
    # (suites, parallel files, templates) still resolve when it is loaded from the run folder.
    base_dir = data.pop("base_dir", None)
    if base_dir is None or not Path(str(base_dir)).is_absolute():
        base_dir = str(path.parent.resolve())
    for key, value in parse_overrides(overrides):
        set_dotted(data, key, value)
    try:
        recipe = Recipe.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as e:
        raise RecipeError(f"{path}: {format_validation_error(e, root=Recipe)}") from None
    return recipe


RESOLVED_HEADER = (
    "# The recipe as run, overrides applied (written by mothertongue). Relative paths resolve\n"
    "# against base_dir, the folder of the recipe it was made from.\n"
)


def save_resolved(recipe: Recipe, path: Path) -> None:
    """Write the recipe as run, atomically, with the folder its relative paths resolve against."""
    data = {"base_dir": str(Path(recipe.base_dir).resolve()), **recipe.dump()}
    text = RESOLVED_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp")  # one name: a write killed half way leaves no litter
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
