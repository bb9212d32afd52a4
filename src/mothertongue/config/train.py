"""Recipe sections of training: the tiny model, train, vision."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator

from mothertongue.config.base import Strict


# ------------------------------------------------------------------------------ train
class TinyModelConfig(Strict):
    """The embedded default base model: a small Llama built locally, no hub needed."""

    hidden_size: int = Field(192, gt=0)
    intermediate_size: int = Field(512, gt=0)
    num_hidden_layers: int = Field(3, gt=0)
    num_attention_heads: int = Field(6, gt=0)
    num_key_value_heads: int | None = Field(
        None, gt=0, description="Grouped-query attention: key/value heads (default: one per attention head)."
    )
    vocab_size: int = Field(1200, ge=300, description="Size of the BPE tokenizer trained on the data.")
    max_position_embeddings: int = Field(512, gt=0)


class TrainConfig(Strict):
    method: Literal["sft", "dpo", "orpo", "cpt"] = Field(
        "sft",
        description="sft: chat examples (assistant tokens trained); dpo/orpo: preference pairs "
        "(build/preference.jsonl); cpt: continued pretraining on native text (build/text.jsonl).",
    )
    adapter: Literal["full", "lora", "qlora"] = Field(
        "lora", description="full fine-tuning, a LoRA adapter, or LoRA on a 4/8-bit base (qlora, needs CUDA + bitsandbytes)."
    )
    qlora_bits: Literal[4, 8] = Field(4, description="Base-model quantization for adapter=qlora.")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha/r, or alpha/sqrt(r) with rslora).")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1,
        description="Dropout on the LoRA input. 0 (default) skips a dropout pass per adapted layer, about a tenth of a CPU step.",
    )
    target_modules: str | list[str] = Field("all-linear", description="Modules that get LoRA adapters (all linear layers by default).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling alpha/sqrt(r).")
    train_embeddings: bool = Field(
        False, description="Also train input embeddings and LM head (useful for cpt on a new language)."
    )
    embedding_learning_rate: float | None = Field(
        None, gt=0, description="Learning rate for embeddings and LM head when train_embeddings (default: learning_rate / 10)."
    )
    beta: float = Field(0.1, gt=0, description="dpo: KL strength; orpo: weight of the odds-ratio term.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate; default per method and adapter (e.g. sft+lora 2e-4, full 2e-5, dpo 5e-6)."
    )
    batch_size: int = Field(4, gt=0, description="Examples per device per step.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps with linear warmup.")
    scheduler: str = Field("cosine", description="Learning-rate schedule after warmup (transformers name).")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    logging_steps: int = Field(10, gt=0)
    report_to: list[Literal["auto", "none", "tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=lambda: ["auto"],
        description="Experiment trackers: auto (TensorBoard when installed, in train/tensorboard/), none, or any "
        "of tensorboard, wandb, mlflow, trackio (a named one must be installed: pip install \"mothertongue[wandb]\").",
    )
    save_steps: int = Field(200, gt=0, description="Checkpoint every N steps (resume point).")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate on dev every N steps (default: save_steps).")
    padding_free: bool = Field(
        True, description="Concatenate each batch into one sequence (no pad tokens computed); sft/cpt."
    )
    packing: bool = Field(
        False, description="Pack examples into max_length bins (best-fit decreasing); implies padding_free."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it (else fp16); on CPU bf16 autocast when the CPU has "
        "native bf16 (AVX512-BF16/AMX), else fp32. Weights stay fp32 on CPU.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (less memory, ~30% slower).")
    cpu_kernels: Literal["auto", "off"] = Field(
        "auto",
        description="auto: on CPU, the faster SFT loss, per-example attention and fused LoRA layers of "
        "training/cpu (stock path if the installed TRL/Transformers/PEFT changed what they use); off: stock path.",
    )
    trust_remote_code: bool = Field(False, description="Run model code from the hub. Off unless you trust it.")
    allow_pickle: bool = Field(
        False, description="Also load a base model or adapter stored as pickle (.bin, .pt) rather than "
        "safetensors. Pickle files can run code when loaded: only for files you trust.",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("report_to")
    @classmethod
    def _alone(cls, v: list[str]) -> list[str]:
        if len(v) > 1 and ("auto" in v or "none" in v):
            raise ValueError("auto and none stand alone; list trackers without them, e.g. [tensorboard, wandb]")
        if not v:
            return ["none"]
        return v


# ----------------------------------------------------------------------------- vision
class VisionHFOptions(Strict):
    """`options` of a vision source with `format: hf` (read by mothertongue/vision/hub.py)."""

    split: str = Field("train", description="Dataset split.")
    config: str | None = Field(None, description="Dataset configuration name.")
    revision: str | None = Field(None, description="Dataset revision (hub ids).")
    image_column: str = Field("image", description="Column holding the image (or a list of images).")
    caption_column: str = Field("caption", description="Column holding the caption (caption rows).")
    rows: Literal["auto", "captions", "llava"] = Field(
        "auto", description="captions: image + caption columns; llava: a `conversations` column in LLaVA's "
        "form; auto: llava when there is a `conversations` column.")


class VisionSourceConfig(Strict):
    """Image-text data for the vision stage (see mothertongue/vision/data.py for the formats)."""

    path: str = Field(description="A .json/.jsonl/.csv file or a folder of them; image paths inside are relative to the file.")
    format: Literal["auto", "llava", "openai", "captions", "hf"] = Field(
        "auto", description="llava: {image, conversations}; openai: {messages} with image_url parts; captions: image,caption "
        "rows; hf: a Hugging Face dataset (hub id or local folder) with an image column (see options)."
    )
    options: VisionHFOptions = Field(
        default_factory=VisionHFOptions, description="format hf: split (train), config, revision, image_column "
        "(image), caption_column (caption), rows (auto|captions|llava: a `conversations` column in LLaVA's form).")
    limit: int | None = Field(None, gt=0, description="Read at most this many records.")
    lang: str | None = Field(
        None, description="Language of the text (e.g. en). With translate.enabled, text not in the recipe's language is "
        "machine-translated like ingested text; default: translate.source_lang, else detected.")

    @field_serializer("options")
    def _options_as_written(self, options: VisionHFOptions) -> dict[str, Any]:
        # the options the recipe sets, not every default: the dump (and so the vision stage's
        # fingerprint) stays what it was when options were a plain dict
        return options.model_dump(mode="json", exclude_unset=True)


class VisionTrainConfig(Strict):
    """One of the two vision training stages."""

    epochs: float = Field(1.0, gt=0, description="Passes over the stage's data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    projector_learning_rate: float | None = Field(
        None, gt=0, description="The projector's own peak learning rate (default: learning_rate); stage 2 often "
        "wants it higher than the language model's.")
    batch_size: int = Field(16, gt=0, description="Examples per device per step.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    save_steps: int = Field(200, gt=0, description="Checkpoint every N steps (resume point).")
    cache_features: bool = Field(
        True, description="Run the frozen encoder once per image and train from its stored features (a file of "
        "images x tokens x hidden, 2-4 bytes each, kept while the stage runs); false: encode every batch again.")


def _stage2_defaults() -> VisionTrainConfig:
    return VisionTrainConfig(learning_rate=2e-4)


class VisionConfig(Strict):
    """Compose a vision-language model (LLaVA architecture) from the run's model and a pretrained
    image encoder, and train it in two stages (see mothertongue/vision/)."""

    encoder: str = Field(description="Image encoder: hub id or local path of a CLIP, SigLIP, DINOv2 or ViT model.")
    projector: Literal["linear", "mlp2x_gelu"] = Field(
        "mlp2x_gelu", description="mlp2x_gelu: Linear-GELU-Linear (LLaVA-1.5); linear: one linear map (original LLaVA)."
    )
    feature_layer: int = Field(-2, description="Encoder hidden layer whose outputs are the image features (-2: second to last).")
    keep_cls: bool | None = Field(
        None, description="Keep the CLS token among the image features; default: no for CLIP/DINOv2/ViT, yes for SigLIP (which has none)."
    )
    image_size: int | None = Field(None, gt=0, description="Input image side in pixels; default: the encoder's.")
    image_token: str = Field("<image>", description="Placeholder token for an image in the text (added to the tokenizer).")
    captions: list[VisionSourceConfig] = Field(default_factory=list, description="Stage 1 data: image-caption pairs.")
    instructions: list[VisionSourceConfig] = Field(
        default_factory=list, description="Stage 2 data: visual instruction conversations (default: the captions)."
    )
    heldout: list[VisionSourceConfig] = Field(
        default_factory=list, description="Held-out image-text data scored after training (vision/scorecard.json): exact "
        "match and chrF of greedy replies, and how often another image changes the reply.")
    text_mix: float = Field(
        0.1, ge=0, lt=1, description="Share of stage 2 examples that are text-only target-language conversations (build/train.jsonl)."
    )
    adapter: Literal["lora", "full"] = Field("lora", description="Stage 2 trains the language model with LoRA (merged at the end) or in full.")
    stage1: VisionTrainConfig = Field(default_factory=VisionTrainConfig)
    stage2: VisionTrainConfig = Field(default_factory=_stage2_defaults)
    max_image_pixels: int = Field(40_000_000, gt=0, description="Larger images (width x height) are skipped as too big.")
    max_image_bytes: int = Field(20_000_000, gt=0, description="Larger image files are skipped as too big.")


