"""`remote` engine: any OpenAI-compatible chat server as a translator (vLLM, TGI, llama.cpp server,
`mothertongue serve`, a hosted API).

    translate:
      engine: remote
      model: Qwen/Qwen2.5-7B-Instruct              # the model name the server knows
      options: {url: "http://localhost:8000/v1", api_key_env: OPENAI_API_KEY, concurrency: 16}

Each segment is one chat request (the prompt in `options.prompt`, greedy unless `temperature` is
set), sent with `concurrency` requests in flight, at most `requests_per_second` over all of them,
each waiting at most `timeout` seconds for the server. A connection error, a timeout, a 429 or a
5xx is retried `retries` times with exponential backoff (a 429's Retry-After is honoured). A
segment that still fails stops the stage with one line; the translation memory keeps only the
batches that came back whole, so a rerun continues there. The URL, prompt, system message and
decoding settings are part of the memory key (the model is a key column of its own); the API key
is read from the environment variable named by `api_key_env`, never from the recipe, and is
stored nowhere. This is how an LLM translator scales: a vLLM fleet behind one URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field

from mothertongue.engines import Engine, EngineOptions
from mothertongue.engines.llm import DEFAULT_PROMPT
from mothertongue.errors import RecipeError, StageError
from mothertongue.languages import english_name
from mothertongue.text.segment import approx_tokens

# Worth asking again: the server is busy, overloaded or restarting; anything else will not change.
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 60.0


class RemoteOptions(EngineOptions):
    url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="Base URL of the OpenAI-compatible API (ends in /v1).",
    )
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the API key (sent as a Bearer token).",
    )
    prompt: str = Field(
        DEFAULT_PROMPT,
        description="User message with {src_name}, {tgt_name}, {src}, {tgt}, {text}.",
    )
    system: str | None = Field(
        None, description="System message sent before the prompt (none by default)."
    )
    max_tokens: int = Field(512, gt=0, description="Longest translation in tokens.")
    temperature: float = Field(
        0.0, ge=0, description="Sampling temperature; 0 is greedy (reproducible)."
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="More request fields (e.g. top_p, seed, repetition_penalty); part of the memory key.",
    )
    concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    requests_per_second: float | None = Field(
        None, gt=0, description="Rate limit over all requests (none: unlimited)."
    )
    timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds to wait for the server (connect, and each read of the answer).",
    )
    retries: int = Field(
        4,
        ge=0,
        description="Retries of a request that failed with a connection error, timeout, 429 or 5xx.",
    )
    backoff: float = Field(
        0.5, gt=0, description="First retry delay in seconds; doubles on each retry."
    )


class RateLimit:
    """At most `rate` request starts per second over all threads (None: no limit)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class RemoteEngine(Engine):
    name = "remote"
    Options = RemoteOptions
    local_model = False
    label = "translate (remote engine"  # errors read "<label>, <url>): ..."
    section = "translate.options"  # the recipe section of these options, named in errors

    def _load(self) -> None:
        o = self.opts
        if not o.url.startswith(("http://", "https://")):
            raise RecipeError(
                f"{self.section}.url must start with http:// or https://, got {o.url!r}"
            )
        self.endpoint = o.url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if o.api_key_env:
            key = os.environ.get(o.api_key_env)
            if not key:
                raise RecipeError(
                    f"{self.section}.api_key_env: environment variable {o.api_key_env} is not set"
                )
            self.headers["Authorization"] = f"Bearer {key}"
        self.limit = RateLimit(o.requests_per_second)
        self.stop = threading.Event()

    @property
    def retry_helps(self) -> bool:
        return self.opts.temperature > 0  # the same greedy request gets the same answer

    def count_tokens(self, text: str) -> int:
        return approx_tokens(
            text
        )  # the server's tokenizer is not at hand; an estimate cuts segments well enough

    def settings_key(self, beam_size: int) -> str:
        o = self.opts
        spec = json.dumps([o.url.rstrip("/"), o.prompt, o.system, o.max_tokens, o.temperature, o.extra_body],
                          ensure_ascii=False, sort_keys=True)  # fmt: skip
        return f"remote:{hashlib.sha1(spec.encode()).hexdigest()[:12]}"

    def request_body(self, text: str, src: str, tgt: str) -> dict:
        """The chat-completions request for one segment."""
        o = self.opts
        prompt = o.prompt.format(
            src=src, tgt=tgt, text=text, src_name=english_name(src), tgt_name=english_name(tgt)
        )
        return self.chat_body(prompt)

    def chat_body(self, prompt: str) -> dict:
        """The chat-completions request for one user message, with the system message and decoding."""
        o = self.opts
        messages = ([{"role": "system", "content": o.system}] if o.system else []) + [
            {"role": "user", "content": prompt}
        ]
        return {**o.extra_body, "model": self.model, "messages": messages, "temperature": o.temperature,
                "max_tokens": o.max_tokens}  # fmt: skip

    def _ask(self, request: dict) -> str:
        o = self.opts
        body = json.dumps(request, ensure_ascii=False).encode()
        delay, why = o.backoff, ""
        for attempt in range(o.retries + 1):
            if self.stop.is_set():  # another segment of the batch failed for good: stop asking
                raise StageError("cancelled")
            self.limit.wait()
            req = urllib.request.Request(
                self.endpoint, data=body, headers=self.headers, method="POST"
            )
            wait = delay
            try:
                with urllib.request.urlopen(req, timeout=o.timeout) as resp:
                    payload = resp.read()
            except urllib.error.HTTPError as e:
                why = f"HTTP {e.code} {_error_text(e)}".strip()
                if e.code not in RETRYABLE:
                    break
                wait = max(delay, _retry_after(e))
            except (TimeoutError, ConnectionError, urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                why = (
                    f"no answer within {o.timeout:g} s"
                    if _timed_out(reason)
                    else f"connection failed ({reason})"
                )
            else:
                return _content(payload, f"{self.label}, {self.endpoint})")
            if attempt < o.retries:
                time.sleep(wait)
                delay *= 2
        raise StageError(
            f"{self.label}, {self.endpoint}): {why} after {attempt + 1} attempt(s); "
            f"nothing of this batch was stored, rerun to continue (see {self.section} timeout/retries)"
        )

    def translate(self, texts: list[str], src: str, tgt: str, beam_size: int = 1) -> list[str]:
        """Translations in order (beam_size is the server's business; requests are greedy)."""
        return self._ask_all([self.request_body(t, src, tgt) for t in texts])

    def complete(self, prompts: list[str]) -> list[str]:
        """The server's answers to user messages, in order (a judge's use of the same client)."""
        return self._ask_all([self.chat_body(p) for p in prompts])

    def _ask_all(self, requests: list[dict]) -> list[str]:
        self.stop.clear()
        pool = ThreadPoolExecutor(min(self.opts.concurrency, max(1, len(requests))))
        try:
            futures = [pool.submit(self._ask, r) for r in requests]
            return [f.result() for f in futures]
        except BaseException:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _content(payload: bytes, where: str) -> str:
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        raise StageError(
            f"{where}: the answer is not an OpenAI chat completion: {payload[:120]!r}"
        )
    return content.strip()


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read() or b"{}")
        msg = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
    except (ValueError, AttributeError, OSError):
        msg = ""
    return f"({str(msg).splitlines()[0][:120]})" if msg else ""


def _retry_after(e: urllib.error.HTTPError) -> float:
    try:
        return min(float(e.headers.get("Retry-After", 0)), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return 0.0


def _timed_out(reason: object) -> bool:
    return isinstance(reason, TimeoutError) or "timed out" in str(reason)
