"""Translation engines, selectable by name (`mothertongue ls engines`), each with strict options.

    from mothertongue.engines import ENGINES, load_engine
    eng = load_engine("ctranslate2", "Helsinki-NLP/opus-mt-en-de", device="cpu", options={})
    eng.translate(["Hello world."], "en", "de", beam_size=1)

An engine wraps one model. It tokenizes (`count_tokens`, for segmentation), cuts work into
batches under its token budget (`batches`; `batch_tokens` is a constructor argument, the
recipe's `translate.batch_tokens`), translates a list of segments for one language pair, and
says which settings change its output (`settings_key`, part of the translation-memory key).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mothertongue.config import format_validation_error
from mothertongue.engines.catalogue import FAMILIES, family_of
from mothertongue.errors import RecipeError
from mothertongue.precision import resolve_device
from mothertongue.registry import Registry
from mothertongue.weights import check_base_model, require_safetensors

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
ENGINES.register(
    "remote", "mothertongue.engines.remote:RemoteEngine",
    "any OpenAI-compatible chat server (vLLM, TGI, llama.cpp, `mothertongue serve`, a hosted API)",
)  # fmt: skip


DEFAULT_BATCH_TOKENS = 4096


def length_batches(lengths: list[int], budget: int, beam_size: int = 1) -> list[list[int]]:
    """Indices sorted by length (longest first), cut so rows*beam*max_len stays within budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, cur = [], []
    for i in order:
        width = max([lengths[j] for j in cur] + [lengths[i]])
        if cur and (len(cur) + 1) * width * beam_size > budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


class EngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Engine:
    """Base class. Subclasses set `name`, `Options` and implement `_load`, `count_tokens`, `translate`."""

    name = "engine"
    Options: type[EngineOptions] = EngineOptions
    # False for engines whose model lives elsewhere (a server's model name, not a folder or hub id).
    local_model = True

    def __init__(
        self, model: str, device: str = "auto", options: dict[str, Any] | None = None, family: str | None = None,
        batch_tokens: int = DEFAULT_BATCH_TOKENS, allow_pickle: bool = False,
    ):  # fmt: skip
        try:
            self.opts = self.Options.model_validate(options or {})
        except ValidationError as e:
            raise RecipeError(f"translate.options ({self.name}): {format_validation_error(e)}") from None
        if batch_tokens <= 0:
            raise RecipeError(f"translate.batch_tokens must be > 0, got {batch_tokens}")
        self.batch_tokens = batch_tokens
        self.allow_pickle = allow_pickle
        self.model = model
        # Resolving "auto" imports torch (hundreds of MB): only engines that run a model here need it.
        self.device = resolve_device(device) if self.local_model else device
        self.family = family
        if self.local_model and not Path(model).exists():  # a hub id: offline or unreachable is one line now, not after retries
            check_base_model(model, field="translation model", weights=False)
        try:
            self._load()
        except OSError as e:
            if Path(model).exists():
                raise
            raise RecipeError(
                f"translation model {model!r} could not be loaded ({_first_line(e)}); it is not a local folder, and "
                "as a hub id it is neither in the local cache nor downloadable (offline?). Download it once, or point "
                "translate.model / translate.models at a local folder"
            ) from None

    def check_pair(self, src: str, tgt: str) -> None:
        """A one-line error now, before any work, when the model's family has no code for a language."""
        fam = FAMILIES.get(self.family or "")
        if fam is not None:
            fam.code(src)
            fam.code(tgt)

    def _load(self) -> None:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def translate(self, texts: list[str], src: str, tgt: str, beam_size: int = 1) -> list[str]:
        """Translations of texts, in order; batched internally with `batches` (one call per batch
        when the texts already are one batch, as the translate stage passes them)."""
        raise NotImplementedError

    def batches(self, texts: list[str], beam_size: int = 1, count: Callable[[str], int] | None = None) -> list[list[int]]:
        """Indices of texts, longest first, cut so rows x beam x longest stays within batch_tokens."""
        count = count or self.count_tokens
        return length_batches([count(t) for t in texts], self.batch_tokens, beam_size)

    @property
    def retry_helps(self) -> bool:
        """Whether the quality gate's retry with a wider beam can change an output (False: an
        engine whose answer would repeat, such as a greedy request to a server)."""
        return True

    def settings_key(self, beam_size: int) -> str:
        """Engine name plus the settings that change its output (translation-memory key)."""
        return f"{self.name}:beam{beam_size}"


def check_safetensors(model: str, allow_pickle: bool) -> None:
    """Refuse a local checkpoint whose weights are only pickle files (loading one can run code)."""
    p = Path(model)
    if p.is_dir():
        require_safetensors(p, "translation model", "translate.allow_pickle: true", allow_pickle)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def load_engine(
    name: str, model: str, device: str = "auto", options: dict | None = None, family: str | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS, allow_pickle: bool = False,
) -> Engine:  # fmt: skip
    return ENGINES.get(name)(
        model, device=device, options=options, family=family, batch_tokens=batch_tokens, allow_pickle=allow_pickle
    )


def resolve_family(model: str, family: str | None) -> str:
    """The family given, or guessed from the model's name and config."""
    if family and family != "auto":
        return family
    model_type = tok_class = None
    cfg = Path(model) / "config.json"
    if cfg.exists():
        import json

        model_type = json.loads(cfg.read_text()).get("model_type")
    tc = Path(model) / "tokenizer_config.json"
    if tc.exists():
        import json

        tok_class = json.loads(tc.read_text()).get("tokenizer_class")
    return family_of(model, model_type, tok_class)
