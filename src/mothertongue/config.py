"""Recipes: one YAML file describes a whole run; one strict config class per stage.

    recipe = load_recipe("recipes/quickstart.yaml", ["train.epochs=3", "build.template=chatml"])

Every field documents itself (`description=`), unknown keys are errors that name the dotted path
and suggest close matches, and a bad value reads `train.learning_rate: must be > 0`, never a
traceback. Paths inside a recipe are relative to the recipe file; `run_dir` is relative to the
directory you run the command from.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RecipeError(ValueError):
    """A recipe or override is wrong; the message is one line meant for the user."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- ingest
class SourceConfig(Strict):
    path: str = Field(description="File, folder or Hugging Face dataset id to read.")
    format: str = Field("auto", description="Source format name (`mothertongue ls formats`), or auto.")
    name: str | None = Field(None, description="Short name used in ids and reports; default: file stem.")
    limit: int | None = Field(None, gt=0, description="Read at most this many records from the source.")
    weight: float = Field(1.0, gt=0, description="Sampling weight when combining sources.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Format-specific options; checked by the format adapter."
    )


class IngestConfig(Strict):
    sources: list[SourceConfig] = Field(default_factory=list, description="Where the data comes from.")
    on_error: Literal["stop", "skip"] = Field(
        "stop", description="stop: the first bad record aborts before anything is written; skip: count and list it."
    )
    dedup: Literal["none", "exact", "near"] = Field("exact", description="Duplicate removal.")
    dev_fraction: float = Field(0.0, ge=0, lt=1, description="Share of conversations held out as dev.")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="Share held out as test (evaluation).")


# -------------------------------------------------------------------------- translate
class TranslateConfig(Strict):
    enabled: bool = Field(False, description="Translate the ingested data into `language`.")
    engine: str = Field("ctranslate2", description="Translation backend (`mothertongue ls engines`).")
    model: str | None = Field(None, description="MT model id/path; default: picked from the catalogue.")
    source_lang: str | None = Field(None, description="Source language when the data does not say; default: detect.")
    batch_tokens: int = Field(4096, gt=0, description="Token budget per translation batch.")
    beam_size: int = Field(1, gt=0, description="Beam size; 1 is greedy (fast).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the MT model runs.")
    options: dict[str, Any] = Field(default_factory=dict, description="Engine-specific options.")


# ------------------------------------------------------------------------------ build
class BuildConfig(Strict):
    template: str | None = Field(
        None, description="Chat template: None uses the tokenizer's own; or a shipped name (`mothertongue ls templates`) or a .jinja file."
    )
    system_prompt: str | None = Field(None, description="System prompt added to every conversation.")
    loss_on: Literal["assistant", "last_assistant", "all"] = Field(
        "assistant", description="Which tokens are trained: all assistant turns, the last one, or everything."
    )
    max_length: int = Field(1024, gt=8, description="Longest training example in tokens.")
    on_too_long: Literal["split", "drop"] = Field(
        "split", description="Longer examples are split at turn boundaries, or dropped (always counted)."
    )


# ------------------------------------------------------------------------------ train
class TinyModelConfig(Strict):
    """The embedded default base model: a small Llama built locally, no hub needed."""

    hidden_size: int = Field(192, gt=0)
    intermediate_size: int = Field(512, gt=0)
    num_hidden_layers: int = Field(3, gt=0)
    num_attention_heads: int = Field(6, gt=0)
    vocab_size: int = Field(1200, ge=300, description="Size of the BPE tokenizer trained on the data.")
    max_position_embeddings: int = Field(512, gt=0)


class TrainConfig(Strict):
    method: Literal["sft"] = Field("sft", description="Training method.")
    adapter: Literal["full", "lora"] = Field("lora", description="full fine-tuning or a LoRA adapter.")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator.")
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="Modules that get LoRA adapters.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, gt=0, description="Examples per device per step.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    scheduler: str = Field("cosine", description="Learning-rate schedule (transformers name).")
    weight_decay: float = Field(0.0, ge=0)
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(200, gt=0, description="Checkpoint every N steps (resume point).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the hardware supports it on GPU, else fp32."
    )
    gradient_checkpointing: bool = Field(False)
    trust_remote_code: bool = Field(False, description="Run model code from the hub. Off unless you trust it.")


# --------------------------------------------------------------------- evaluate, chat
class EvaluateConfig(Strict):
    enabled: bool = Field(True)
    max_new_tokens: int = Field(128, gt=0)
    preset: Literal["greedy", "beam", "sample"] = Field("greedy")
    compare_base: bool = Field(True, description="Also score the untuned base model on the same prompts.")
    max_prompts: int | None = Field(None, gt=0, description="Score at most this many prompts.")
    train_sample: int = Field(100, ge=0, description="Also measure recall on this many training examples.")


class ChatConfig(Strict):
    preset: Literal["greedy", "beam", "sample"] = Field("greedy")
    max_new_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    num_beams: int = Field(4, gt=0)
    no_repeat_ngram_size: int = Field(3, ge=0)


class Recipe(Strict):
    name: str = Field("run", description="Run name.")
    run_dir: str = Field("runs/run", description="Where artifacts go (relative to the working directory).")
    language: str = Field("de", description="Target language, ISO 639-1 (de, fr, pt, ...).")
    base_model: str = Field("tiny", description="`tiny` (built locally), a hub id or a local path.")
    tiny_model: TinyModelConfig = Field(default_factory=TinyModelConfig)
    seed: int = Field(42)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    translate: TranslateConfig = Field(default_factory=TranslateConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)

    # Not part of the file: where it came from, so relative paths resolve against it.
    base_dir: str = Field(".", exclude=True, description="Directory of the recipe file.")

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if not self.language or len(self.language) > 12:
            raise ValueError("language must be a language code such as 'de'")
        return self

    def resolve_path(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def dump(self) -> dict:
        return self.model_dump(mode="json", exclude={"base_dir"})


# ------------------------------------------------------------------------- loading
def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at a location inside the recipe, to suggest close matches."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return []
        ann = cur.model_fields[part].annotation
        args = getattr(ann, "__args__", ())
        cur = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), ann)
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return []


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "recipe"
        if e["type"] == "extra_forbidden":
            names = _fields_at(Recipe, loc) if not prefix else []
            close = difflib.get_close_matches(str(loc[-1]), names, n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(dotted.rsplit('.', 1)[0] + '.' + c if '.' in dotted else c for c in close)}?)" if close else ""
            known = f"; known keys here: {', '.join(names)}" if names and not close else ""
            lines.append(f"unknown key {dotted}{hint}{known}")
        else:
            msg = e["msg"]
            msg = msg[0].lower() + msg[1:] if msg else msg
            lines.append(f"{dotted}: {msg.replace('input should be', 'must be')}")
    return "; ".join(lines)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
                continue
            except (ValueError, IndexError):
                raise RecipeError(f"override {dotted}: no list item {part!r}") from None
        if part not in cur or cur[part] is None:
            cur[part] = {}
        cur = cur[part]
        if not isinstance(cur, (dict, list)):
            raise RecipeError(f"override {dotted}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(cur, list):
        try:
            cur[int(last)] = value
        except (ValueError, IndexError):
            raise RecipeError(f"override {dotted}: no list item {last!r}") from None
    else:
        cur[last] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    out = []
    for o in overrides or []:
        if "=" not in o:
            raise RecipeError(f"override {o!r} must look like stage.field=value")
        key, raw = o.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    for key, value in parse_overrides(overrides):
        _set_dotted(data, key, value)
    try:
        recipe = Recipe.model_validate({**data, "base_dir": str(path.parent.resolve())})
    except ValidationError as e:
        raise RecipeError(f"{path}: {format_validation_error(e)}") from None
    return recipe


def save_resolved(recipe: Recipe, path: Path) -> None:
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False, allow_unicode=True), encoding="utf-8")
