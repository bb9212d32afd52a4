"""The CTranslate2 export: the merged model converted for fast CPU (and GPU) inference.

    mothertongue export runs/quickstart --format merged,ct2 --ct2-quantization int8

CTranslate2's TransformersConverter writes `RUN/export/ct2-QUANTIZATION` with the tokenizer files
copied next to the weights; the folder is loaded with `ctranslate2.Generator` and made to
generate next to the merged model (verify.compare).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from pydantic import BaseModel, ConfigDict

from mothertongue.export.base import Exporter, Job
from mothertongue.export.verify import CT2Generator, HFGenerator, Reference, compare, require
from mothertongue.languages import greeting
from mothertongue.runs import RunDir, StageError

# Copied next to the converted weights, so the folder stands alone.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    RunDir.TEMPLATE_INFO,
    "generation_config.json",
)
QUANTIZATIONS = (
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
    "none",
)


class CT2Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantization: str = "int8"  # CTranslate2 weight type, or none (as saved)


class CT2Exporter(Exporter):
    """CTranslate2 Generator folder (int8 by default) with the tokenizer next to it."""

    name = "ct2"
    Options = CT2Options

    def check(self, job: Job) -> None:
        from mothertongue.runs import StageError

        if self.opts.quantization not in QUANTIZATIONS:
            raise StageError(
                f"unknown --ct2-quantization {self.opts.quantization!r}; choose from "
                f"{', '.join(QUANTIZATIONS)}"
            )

    def target(self, out: Path) -> Path:
        return out / f"ct2-{self.opts.quantization}"

    def export(self, job: Job) -> dict:
        return to_ctranslate2(
            job.merged_dir, self.target(job.out), self.opts.quantization, prompts=job.prompts
        )

    def summary(self, report: dict) -> str:
        return (
            f"ctranslate2 -> {report['path']} (greedy replies same as tuned: {report['same_greedy_output']}; "
            f"16 forced tokens same: {report['same_forced_tokens']})"
        )


def ct2_supports(model_dir: Path) -> None:
    """Raise a one-line StageError when CTranslate2 has no converter for the architecture (its own
    error lists every supported configuration on one very long line)."""
    from ctranslate2.converters.transformers import _MODEL_LOADERS
    from transformers import AutoConfig

    name = type(AutoConfig.from_pretrained(model_dir)).__name__
    if name not in _MODEL_LOADERS:
        raise StageError(f"CTranslate2 has no converter for {name} ({model_dir}); export --format merged or gguf instead")


def _rope(config) -> dict:
    return getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}


def _mended_loaders(loaders: dict) -> dict:
    """CTranslate2 4.x loaders that still read Transformers 4's layout, mended.

    - Phi-3 reads the LongRoPE factors from every attention layer's `rotary_emb`, which
      Transformers 5 no longer has (one rotary embedding on the model, factors in the config):
      the conversion died with an AttributeError. It is given the config's factors where it looks.
      It also leaves the RMSNorm epsilon at CTranslate2's default 1e-6 where Phi-3 has 1e-5
      (logits off by ~0.5 %).
      Its RoPE base is `config.rope_theta`, which Transformers 5 keeps in the rope parameters
      only: every Phi-3 model was converted with base 10000 whatever its own (Phi-4: 250000).
      And it reads the scaling kind from `rope_scaling["type"]`, which a model without RoPE
      scaling (Phi-3-mini-4k, Phi-4) no longer has: the conversion died with a KeyError.
      It rotates every dimension of a head, where Phi-4-mini (`partial_rotary_factor` 0.75)
      rotates the first three quarters: its conversion generated garbage, or with LongRoPE
      factors for the partial dimensions died with an IndexError.
    - GPT-NeoX (Pythia) reads `config.rotary_pct` and the head as `embed_out`, in Transformers 5
      the rope parameters' `partial_rotary_factor` and `lm_head`: the conversion died with an
      AttributeError. It never passes the RoPE base on (base 10000 whatever the model's own).
    The loaders convert a model instance of their own, so its config is mended in place."""
    out = {}
    if "Phi3Config" in loaders:

        class Phi3Loader(type(loaders["Phi3Config"])):
            def get_model_spec(self, model):
                rope = _rope(model.config)
                if getattr(model.config, "rope_theta", None) is None and "rope_theta" in rope:
                    model.config.rope_theta = rope["rope_theta"]
                kind = rope.get("type") or rope.get("rope_type")
                if kind in (None, "default"):
                    # What CTranslate2 reads as "no scaling"; with an original context length it
                    # still scales the rotary angles (Transformers does not, without scaling).
                    model.config.rope_scaling = None
                    model.config.original_max_position_embeddings = 0
                elif "type" not in rope:
                    rope["type"] = kind
                spec = super().get_model_spec(model)
                factor = rope.get("partial_rotary_factor", getattr(model.config, "partial_rotary_factor", 1.0))
                if factor != 1.0:
                    import numpy as np

                    head_dim = model.config.hidden_size // model.config.num_attention_heads
                    for layer in spec.decoder.layer:
                        layer.self_attention.rotary_dim = np.int32(int(head_dim * factor))
                return spec

            def set_decoder(self, spec, module, *args, **kwargs):
                rope = _rope(module.config)
                factors = SimpleNamespace(long_factor=rope.get("long_factor"), short_factor=rope.get("short_factor"))
                for layer in module.layers:
                    if not hasattr(layer.self_attn, "rotary_emb"):
                        object.__setattr__(layer.self_attn, "rotary_emb", factors)
                return super().set_decoder(spec, module, *args, **kwargs)

            def set_config(self, config, model, tokenizer):
                super().set_config(config, model, tokenizer)
                if getattr(config, "layer_norm_epsilon", None) is None:
                    config.layer_norm_epsilon = model.config.rms_norm_eps

        out["Phi3Config"] = Phi3Loader()
    if "GPTNeoXConfig" in loaders:

        class GPTNeoXLoader(type(loaders["GPTNeoXConfig"])):
            def get_model_spec(self, model):
                if not hasattr(model.config, "rotary_pct"):
                    model.config.rotary_pct = _rope(model.config).get("partial_rotary_factor", 1.0)
                if not hasattr(model, "embed_out"):
                    object.__setattr__(model, "embed_out", model.get_output_embeddings())
                import numpy as np

                spec = super().get_model_spec(model)
                theta = _rope(model.config).get("rope_theta") or getattr(model.config, "rotary_emb_base", None)
                if theta is not None:
                    for layer in spec.decoder.layer:
                        layer.self_attention.rotary_base = np.float32(theta)
                return spec

        out["GPTNeoXConfig"] = GPTNeoXLoader()
    return out


@contextmanager
def _loaders_for_this_transformers():
    """CTranslate2's registry with the mended loaders, for the time of one conversion."""
    from ctranslate2.converters import transformers as ct2_tf

    mended = _mended_loaders(ct2_tf._MODEL_LOADERS)
    saved = {k: ct2_tf._MODEL_LOADERS[k] for k in mended}
    ct2_tf._MODEL_LOADERS.update(mended)
    try:
        yield
    finally:
        ct2_tf._MODEL_LOADERS.update(saved)


def to_ctranslate2(
    merged_dir: Path,
    out_dir: Path,
    quantization: str = "int8",
    max_new_tokens: int = 32,
    prompts: list[list[dict]] | None = None,
) -> dict:
    """Convert the merged model with CTranslate2's TransformersConverter and generate with it."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoModelForCausalLM

    from mothertongue.export.base import load_tokenizer
    from mothertongue.models import read_template_info, stop_token_ids

    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    ct2_supports(merged_dir)
    ref_tok = load_tokenizer(merged_dir)
    copy = [f for f in TOKENIZER_FILES if (merged_dir / f).exists()]
    with _loaders_for_this_transformers():
        TransformersConverter(str(merged_dir), copy_files=copy).convert(
            str(out_dir), quantization=None if quantization == "none" else quantization, force=True
        )

    tok = load_tokenizer(out_dir)
    stop_ids = stop_token_ids(tok, read_template_info(merged_dir).get("end_of_turn"))
    prompts = prompts or [
        [
            {
                "role": "user",
                "content": greeting(read_template_info(merged_dir).get("language") or "en"),
            }
        ]
    ]
    hf = AutoModelForCausalLM.from_pretrained(merged_dir, use_safetensors=True).eval()
    ref = Reference.of(HFGenerator(hf, ref_tok, stop_ids), prompts, max_new_tokens)
    gen = ctranslate2.Generator(str(out_dir), device="cpu")
    report = {
        "format": "ct2",
        "path": str(out_dir),
        "quantization": quantization,
        **compare(ref, CT2Generator(gen, tok, stop_ids)),
    }
    require(report, f"the CTranslate2 {quantization} export at {out_dir}", exact=False)
    return report
