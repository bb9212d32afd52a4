"""Recipes: one YAML file describes a whole run; one strict config class per stage.

    recipe = load_recipe("recipes/quickstart.yaml", ["train.epochs=3", "build.template=chatml"])

Every field documents itself (`description=`), unknown keys are errors that name the dotted path
and suggest close matches, and a bad value reads `train.learning_rate: must be > 0`, never a
traceback. Paths inside a recipe are relative to the recipe file; `run_dir` is relative to the
directory you run the command from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mothertongue.errors import RecipeError  # noqa: F401  (raised and re-exported here)
from mothertongue.language_codes import check_language_codes
from mothertongue.overrides import (  # noqa: F401  (format_validation_error: re-exported)
    format_validation_error,
    parse_overrides,
    set_dotted,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _switch_words(cls, data):
        # YAML reads a bare on/off as true/false; where the choices are words, the word was meant.
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                word = {True: "on", False: "off"}.get(value) if isinstance(value, bool) else None
                if word and field is not None and word in get_args(field.annotation):
                    data = {**data, name: word}
        return data


# ----------------------------------------------------------------------------- ingest
class SourceConfig(Strict):
    path: str = Field(description="File, folder or Hugging Face dataset id to read.")
    format: str = Field("auto", description="Source format name (`mothertongue ls formats`), or auto.")
    name: str | None = Field(None, description="Short name used in ids and reports; default: file stem.")
    limit: int | None = Field(None, gt=0, description="Read at most this many records from the source.")
    weight: float = Field(
        1.0, gt=0, description="Sampling weight: <1 keeps that share (chosen by id hash), >1 repeats records."
    )
    encoding: str | None = Field(
        None, description="Text encoding of the file when not UTF-8 (e.g. latin-1, cp1252); UTF-16 is detected."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Format-specific options; checked by the format adapter."
    )
    license: str | None = Field(None, description="The source's license, named in exported dataset cards.")


class IngestConfig(Strict):
    sources: list[SourceConfig] = Field(default_factory=list, description="Where the data comes from.")
    on_error: Literal["stop", "skip"] = Field(
        "stop", description="stop: the first bad record aborts before anything is written; skip: count and list it."
    )
    dedup: Literal["none", "exact", "near"] = Field(
        "exact",
        description="Duplicate removal across sources: exact (identical texts) or near (also equal after "
        "case, Unicode form, whitespace and punctuation are normalised); every removal is counted.",
    )
    dev_fraction: float = Field(0.0, ge=0, lt=1, description="Share of conversations held out as dev.")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="Share held out as test (evaluation).")
    allow_empty: bool = Field(
        False, description="Accept a source that yields no conversation or pair (otherwise an error, and the "
        "previous ingest output stays)."
    )


# -------------------------------------------------------------------------- translate
class RayConfig(Strict):
    """`translate.executor: ray`: where the translation workers run (pip install "mothertongue[ray]")."""

    address: str | None = Field(None, description="A running Ray cluster (`auto`, `ray://host:10001`); none: start a local one.")
    workers: int = Field(2, gt=0, description="Ray actors, each holding one engine and translating one batch at a time.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per worker.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per worker; fractions share one (0.5: two engines per GPU).")
    max_restarts: int = Field(3, ge=0, description="A worker process that dies is restarted this often; its batch is redone.")


class RoundTripConfig(Strict):
    """Score every translated segment by translating it back (translate/roundtrip.py)."""

    enabled: bool = Field(False, description="Translate every segment back and score it with chrF against the source.")
    model: str | None = Field(None, description="The reverse (target->source) model; default: the catalogue's.")
    min_chrf: float = Field(25.0, ge=0, le=100, description="Segments scoring under this are flagged like gate failures.")


class TranslateConfig(Strict):
    enabled: bool = Field(False, description="Translate the ingested data into `language`.")
    engine: str = Field("ctranslate2", description="Translation backend (`mothertongue ls engines`).")
    model: str | None = Field(None, description="MT model id/path; default: picked from the catalogue.")
    source_lang: str | None = Field(None, description="Source language when the data does not say; default: detect.")
    batch_tokens: int = Field(4096, gt=0, description="Token budget per translation batch.")
    beam_size: int = Field(1, gt=0, description="Beam size; 1 is greedy (fast).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the MT model runs.")
    options: dict[str, Any] = Field(default_factory=dict, description="Engine-specific options (checked by the engine).")
    family: Literal["opus-mt", "nllb", "m2m100", "madlad", "mbart50"] = Field(
        "opus-mt", description="Catalogue family a model is picked from when `model` is not set."
    )
    models: dict[str, str] = Field(
        default_factory=dict, description='Per-pair model overrides, e.g. {"en-de": "path/or/hub-id"}.'
    )
    pivot: str = Field("en", description="Pivot language for pairs with no direct model.")
    max_segment_tokens: int = Field(200, gt=8, description="Longer sentences are cut into pieces of at most this many tokens.")
    memory: str | None = Field(
        None, description="Translation-memory SQLite file; default RUN_DIR/translate-memory.sqlite."
    )
    detect_languages: list[str] | None = Field(
        None, description="Candidate source languages for detection (high accuracy); default: all, low accuracy."
    )
    quality_gate: bool = Field(True, description="Check every output: target language, length ratio, repetition.")
    min_length_ratio: float = Field(0.4, gt=0, description="Quality gate: shortest output/source length in characters.")
    max_length_ratio: float = Field(2.5, gt=0, description="Quality gate: longest output/source length in characters.")
    retry_beam_size: int = Field(4, gt=0, description="Beam size of the one retry of a segment that failed the gate.")
    keep_flagged: bool = Field(False, description="Keep conversations whose translation failed the gate in the train data.")
    progress: bool = Field(True, description="Show a progress bar (segments/s, ETA).")
    round_trip: RoundTripConfig = Field(default_factory=RoundTripConfig, description="Optional round-trip score per segment.")
    allow_pickle: bool = Field(
        False, description="Load MT checkpoints that have only pickle weights (.bin); they can run code. Default: safetensors only."
    )
    chunk_records: int = Field(
        100_000, gt=0, description="Plan, translate and write this many input records at a time (bounded memory); smaller inputs are one chunk."
    )
    executor: Literal["local", "ray"] = Field("local", description="Where batches are translated: this process, or Ray workers (translate.ray).")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray executor settings.")


class VocabConfig(Strict):
    """Vocabulary adaptation (the vocab stage, between translate and build): see mothertongue/vocab/."""
    enabled: bool = Field(False, description="Run the vocab stage: extend the base tokenizer and initialise the new embedding rows.")
    extension_size: int = Field(2000, gt=0, description="At most this many new tokens.")
    init: Literal["mean-of-subtokens", "mean", "random"] = Field("mean-of-subtokens", description="New embedding rows: mean of the rows of the pieces the base tokenizer gives the token, mean of all rows, or random.")
    pad_to_multiple_of: int = Field(64, gt=0, description="Pad the embedding matrix to a multiple of this many rows.")
    min_frequency: int = Field(2, gt=0, description="A new token must occur at least this often in the training text.")
    recommend_ratio: float = Field(1.4, gt=0, description="Recommend extension when the target language needs this many times the tokens per word of English.")
    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="Without a test split or evaluate.perplexity_file, this share of the texts is held out of the extension (training may still see it).")
    texts: list[str] = Field(default_factory=list, description="Extra target-language text files (.txt one text per line, or .jsonl with `text`).")
    english_texts: list[str] = Field(default_factory=list, description="English text files whose tokens must not change (besides the shipped English prompts and English source data).")
    warmup_new_rows_steps: int = Field(0, ge=0, description="Train only the new rows for this many steps before the train stage (0: off).")
    warmup_learning_rate: float = Field(1e-3, gt=0, description="Learning rate of the new-rows warm-up.")


# ------------------------------------------------------------------------------ build
class NativeSourceConfig(Strict):
    """Native target-language text (Wikipedia, Gutenberg, your own) mixed into training."""

    path: str = Field(description="A .txt file (documents separated by blank lines), .jsonl, or a Hugging Face dataset id / save_to_disk folder.")
    field: str = Field("text", description="Column/key holding the text (jsonl and datasets).")
    split: str = Field("train", description="Dataset split (Hugging Face datasets).")
    config: str | None = Field(None, description="Dataset configuration name (Hugging Face datasets).")
    limit: int | None = Field(None, gt=0, description="Read at most this many documents.")


class MixConfig(Strict):
    """Relative weights of the training mix; only parts that have data count (default: a third each of
    instructions, translation and native; no English)."""

    instructions: float = Field(1.0, ge=0, description="(Translated) instruction conversations.")
    translation: float = Field(1.0, ge=0, description="Translation tasks made from the translate stage's source/target pairs.")
    native: float = Field(1.0, ge=0, description="Native text wrapped as 'continue this text' tasks.")
    english: float = Field(
        0.0, ge=0, description="The original English (source-language) conversations the translate stage kept, "
        "with a system prompt in their language, so the model keeps the language it started from. 0: off.",
    )


class BuildConfig(Strict):
    template: str | None = Field(
        None, description="Chat template: None uses the tokenizer's own; or a shipped name (`mothertongue ls templates`) or a .jinja file."
    )
    system_prompt: str | None = Field(
        "auto",
        description="auto: a natural system prompt in the target language; none/null: no system prompt; or your own text.",
    )
    system_prompt_variants: bool = Field(
        False, description="Vary the auto system prompt across examples so the model does not depend on one string."
    )
    styles: dict[str, str] = Field(
        default_factory=dict, description="Extra style tags -> instruction text (built-ins: funny, sad, pirate, angry, formal, ...)."
    )
    loss_on: Literal["assistant", "last_assistant", "all"] = Field(
        "assistant", description="Which tokens are trained: all assistant turns, the last one, or everything."
    )
    max_length: int = Field(1024, gt=8, description="Longest training example in tokens.")
    on_too_long: Literal["split", "drop"] = Field(
        "split", description="Longer examples are split at turn boundaries, or dropped (always counted)."
    )
    translation_tasks: bool = Field(
        True, description="Make translation tasks (both directions) from the translate stage's parallel pairs."
    )
    native: list[NativeSourceConfig] = Field(default_factory=list, description="Native target-language text sources.")
    native_as: Literal["continue", "raw"] = Field(
        "continue", description="continue: 'continue this text' tasks in the SFT mix; raw: build/text.jsonl for continued pretraining."
    )
    native_chunk_chars: int = Field(1500, ge=100, description="Native documents are cut into pieces of about this many characters.")
    fidelity_pairs: bool = Field(
        False, description="Add preference pairs: the translated answer (chosen) over the original-language one (rejected)."
    )
    mix: MixConfig = Field(default_factory=MixConfig)


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
class VisionSourceConfig(Strict):
    """Image-text data for the vision stage (see mothertongue/vision/data.py for the formats)."""

    path: str = Field(description="A .json/.jsonl/.csv file or a folder of them; image paths inside are relative to the file.")
    format: Literal["auto", "llava", "openai", "captions"] = Field(
        "auto", description="llava: {image, conversations}; openai: {messages} with image_url parts; captions: image,caption rows."
    )
    limit: int | None = Field(None, gt=0, description="Read at most this many records.")


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
    text_mix: float = Field(
        0.1, ge=0, lt=1, description="Share of stage 2 examples that are text-only target-language conversations (build/train.jsonl)."
    )
    adapter: Literal["lora", "full"] = Field("lora", description="Stage 2 trains the language model with LoRA (merged at the end) or in full.")
    stage1: VisionTrainConfig = Field(default_factory=VisionTrainConfig)
    stage2: VisionTrainConfig = Field(default_factory=_stage2_defaults)
    max_image_pixels: int = Field(40_000_000, gt=0, description="Larger images (width x height) are skipped as too big.")
    max_image_bytes: int = Field(20_000_000, gt=0, description="Larger image files are skipped as too big.")


# --------------------------------------------------------------------- evaluate, chat
class JudgeConfig(Strict):
    """Optional LLM judge comparing base and tuned replies pairwise (off by default)."""

    enabled: bool = Field(False, description="Ask a judge model which reply is better, base or tuned.")
    model: str | None = Field(None, description="Judge: a local path or hub id of a chat model, or the model name at `endpoint`.")
    endpoint: str | None = Field(None, description="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1); empty: load `model` locally.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key (if any).")
    max_prompts: int = Field(40, gt=0, description="Judge at most this many prompts (each is asked twice, A/B swapped).")


class EvaluateConfig(Strict):
    enabled: bool = Field(True, description="Run the evaluate stage as part of `mothertongue run`.")
    max_new_tokens: int = Field(128, gt=0, description="Longest reply in tokens.")
    preset: Literal["greedy", "beam", "sample"] = Field("greedy", description="Decoding preset (as in chat).")
    batch_size: int = Field(16, gt=0, description="Prompts generated together.")
    compare_base: bool = Field(True, description="Also score the untuned base model on the same prompts.")
    max_prompts: int | None = Field(None, gt=0, description="Score at most this many held-out prompts.")
    train_sample: int = Field(100, ge=0, description="Also measure recall on this many training examples.")
    suites: list[str] | None = Field(
        None,
        description="Prompt suites for fidelity and behaviour: shipped names (de, en) or .jsonl / .txt files; "
        "default: the target language's shipped suite (if there is one) and en.",
    )
    suite_max_prompts: int | None = Field(
        24, gt=0, description="Use at most this many prompts of each suite (keeps the quickstart fast); null: all."
    )
    expect_reply_in: Literal["prompt", "target"] = Field(
        "prompt", description="prompt: a reply should be in the prompt's language; target: always in `language`."
    )
    fidelity_languages: list[str] = Field(
        default_factory=lambda: ["en", "fr", "es", "it", "nl"],
        description="Candidate languages for language id besides the target (more load slower).",
    )
    min_letters: int = Field(10, ge=1, description="Replies/sentences with fewer letters are too short to judge.")
    perplexity_file: str | None = Field(
        None, description="Held-out target-language text (.txt one text per line, or .jsonl with `text`); default: held-out answers."
    )
    parallel_file: str | None = Field(
        None, description="Parallel file to score the model as translator: .tsv `source<TAB>reference` or .jsonl {source, reference}."
    )
    translate_prompt: str = Field(
        "Translate the following text into {language}:\n\n{source}", description="Prompt for the parallel file."
    )
    lm_eval_tasks: list[str] | None = Field(
        None,
        description="lm-evaluation-harness tasks in the target language (run when `benchmarks` is on); default: "
        "those of arc_XX, hellaswag_XX, m_mmlu_XX, truthfulqa_XX_mc2, belebele_<FLORES code>, xnli_XX that lm-eval has (for German the human-translated sets mmmlu_de_de, global_mmlu_de, ...).",
    )
    lm_eval_chat: Literal["auto", "on", "off"] = Field(
        "auto", description="Ask through the chat template with few-shot examples as turns (auto: when the tokenizer has one)."
    )
    lm_eval_english_tasks: list[str] = Field(
        default_factory=lambda: ["arc_easy", "hellaswag", "truthfulqa_mc2", "belebele_eng_Latn"],
        description="English lm-eval tasks, to show regression.",
    )
    benchmarks: bool = Field(False, description="Run the lm-eval tasks (needs `pip install lm-eval` and the datasets).")
    english_regression_max: float | None = Field(
        None, ge=0, description="English regression gate: the tuned model may lose at most this much against the "
        "base (relative rise of bits per byte on the held-out original English answers; absolute drop of each "
        "lm-eval English task). Over it, the scorecard flags it in red and evaluate says so. None: no gate.",
    )
    lm_eval_limit: int | None = Field(None, gt=0, description="At most this many examples per lm-eval task.")
    html: bool = Field(True, description="Also write scorecard.html with plots.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


class ChatConfig(Strict):
    preset: Literal["greedy", "beam", "sample"] = Field(
        "greedy", description="greedy (deterministic), beam (beam search), sample (temperature/top-p)."
    )
    max_new_tokens: int = Field(256, gt=0, description="Longest reply in tokens.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (preset sample).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass (preset sample).")
    num_beams: int = Field(4, gt=0, description="Beams (preset beam).")
    no_repeat_ngram_size: int = Field(3, ge=0, description="Ban repeated n-grams of this size (preset beam; 0: off).")


class ServeConfig(Strict):
    """`mothertongue serve`: the OpenAI-compatible HTTP server."""

    host: str = Field("127.0.0.1", description="Address to bind; loopback unless you mean to expose it.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port.")
    model_name: str | None = Field(None, description="Model id the API reports; default: the recipe name.")
    max_request_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies get HTTP 413.")
    max_new_tokens_limit: int = Field(1024, gt=0, description="Largest max_tokens a request may ask for.")
    max_prompt_tokens: int | None = Field(None, gt=0, description="Longest prompt; default: what fits the context.")
    max_batch_size: int = Field(8, gt=0, description="Queued requests with equal settings (streamed or not) answered in one batch.")
    max_queue: int = Field(256, gt=0, description="Requests waiting at once; more get HTTP 503.")
    request_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers, and again its body; slower gets HTTP 408."
    )
    allow_local_images: bool = Field(
        False, description="Vision models: accept image_url parts naming a local file (file:// or a path); data URLs are always accepted."
    )


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
