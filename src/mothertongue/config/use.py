"""Recipe sections of using the tuned model: evaluate, chat, serve."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mothertongue.config.base import Strict


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

