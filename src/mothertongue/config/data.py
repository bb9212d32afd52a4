"""Recipe sections of the data stages: ingest, translate, vocab, build."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mothertongue.config.base import Strict


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


class QualityEstimationConfig(Strict):
    """Score every translated segment with an LLM judge, reference-free (translate/qe.py)."""

    enabled: bool = Field(False, description="Ask a judge model for a 0-100 quality score of every translated segment.")
    url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the judge's OpenAI-compatible API (vLLM, TGI, `mothertongue serve`, a hosted API).")
    model: str = Field("judge", description="The model name the judge server knows.")
    api_key_env: str | None = Field(None, description="Environment variable holding the judge's API key (sent as a Bearer token).")
    prompt: str | None = Field(None, description="User message with {src_name}, {tgt_name}, {source}, {translation}; default: a GEMBA-DA style request for a 0-100 score.")
    min_score: float = Field(50.0, ge=0, le=100, description="Segments the judge scores under this are flagged like gate failures.")
    concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    requests_per_second: float | None = Field(None, gt=0, description="Rate limit over all requests (none: unlimited).")
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for the judge.")
    retries: int = Field(4, ge=0, description="Retries of a request that failed with a connection error, timeout, 429 or 5xx.")


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
    quality_estimation: QualityEstimationConfig = Field(
        default_factory=QualityEstimationConfig, description="Optional LLM-judge quality score per segment."
    )
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
    fidelity_pairs: Literal["off", "original", "base_model", "both"] = Field(
        "off",
        description="Add preference pairs that prefer the target-language answer (chosen) over: the original-language "
        "answer the translate stage kept (original; `true` means this), the base model's own reply where it is in another "
        "language (base_model), or both.",
    )
    fidelity_max_prompts: int = Field(
        500, gt=0, description="fidelity_pairs base_model/both: ask the base model for at most this many replies.")
    fidelity_max_new_tokens: int = Field(
        128, gt=0, description="fidelity_pairs base_model/both: the longest base-model reply in tokens.")

    @field_validator("fidelity_pairs", mode="before")
    @classmethod
    def _fidelity_bool(cls, v):
        return {True: "original", False: "off"}.get(v, v) if isinstance(v, bool) else v
    mix: MixConfig = Field(default_factory=MixConfig)


