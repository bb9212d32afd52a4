"""Translation engines, selectable by name (`mothertongue ls engines`), each with strict options.

    from mothertongue.engines import ENGINES, load_engine
    eng = load_engine("ctranslate2", "Helsinki-NLP/opus-mt-en-de", device="cpu", options={})
    eng.translate(["Hello world."], "en", "de", beam_size=1)

An engine wraps one model. It tokenizes (`count_tokens`, for segmentation and token-budget
batches), translates a list of segments for one language pair, and says which settings change
its output (`settings_key`, part of the translation-memory key).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mothertongue.precision import resolve_device  # noqa: F401  (engines import it from here)
from mothertongue.registry import Registry

ENGINES = Registry("translation engine", entry_point_group="mothertongue.engines")
ENGINES.register(
    "ctranslate2", "mothertongue.engines.ct2:CTranslate2Engine",
    "seq2seq checkpoints converted once to CTranslate2 (int8 on CPU, float16 on GPU); the fast default",
)  # fmt: skip
ENGINES.register(
    "transformers", "mothertongue.engines.hf:TransformersEngine",
    "any seq2seq checkpoint (OPUS-MT, NLLB, M2M100, MADLAD, mBART-50) via generate",
)  # fmt: skip
ENGINES.register(
    "llm", "mothertongue.engines.llm:LLMEngine",
    "an instruction-tuned causal LM prompted to translate (vLLM when installed)",
)  # fmt: skip


class EngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Engine:
    """Base class. Subclasses set `name`, `Options` and implement `_load`, `count_tokens`, `translate`."""

    name = "engine"
    Options: type[EngineOptions] = EngineOptions

    def __init__(self, model: str, device: str = "auto", options: dict[str, Any] | None = None, family: str | None = None):
        from mothertongue.config import RecipeError

        try:
            self.opts = self.Options.model_validate(options or {})
        except ValidationError as e:
            from mothertongue.config import format_validation_error

            raise RecipeError(f"translate.options ({self.name}): {format_validation_error(e)}") from None
        self.model = model
        self.device = resolve_device(device)
        self.family = family
        self._load()

    def _load(self) -> None:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def translate(self, texts: list[str], src: str, tgt: str, beam_size: int = 1) -> list[str]:
        raise NotImplementedError

    def settings_key(self, beam_size: int) -> str:
        """Engine name plus the settings that change its output (translation-memory key)."""
        return f"{self.name}:beam{beam_size}"


def load_engine(name: str, model: str, device: str = "auto", options: dict | None = None, family: str | None = None) -> Engine:
    return ENGINES.get(name)(model, device=device, options=options, family=family)


def resolve_family(model: str, family: str | None) -> str:
    """The family given, or guessed from the model's name and config."""
    from mothertongue.engines.catalogue import family_of

    if family and family != "auto":
        return family
    model_type = tok_class = None
    from pathlib import Path

    cfg = Path(model) / "config.json"
    if cfg.exists():
        import json

        model_type = json.loads(cfg.read_text()).get("model_type")
    tc = Path(model) / "tokenizer_config.json"
    if tc.exists():
        import json

        tok_class = json.loads(tc.read_text()).get("tokenizer_class")
    return family_of(model, model_type, tok_class)
