"""The model behind `mothertongue serve`: request schema and checks, the queue, the batching worker.

    from mothertongue.serve_engine import build_engine
    engine = build_engine(Path("runs/quickstart"))        # loads the model, starts the worker thread
    prep = engine.prepare(b'{"messages": [{"role": "user", "content": "Sag hallo."}]}')

`Engine.prepare` turns a request body into checked messages, generation settings and the prompt's
token count (or an `ApiError` with an HTTP status); it renders and tokenizes the prompt, so the
HTTP layer (serve.py) calls it off the event loop. Jobs are queued and answered by one generation
worker, which batches waiting jobs with equal settings.
"""

# No `from __future__ import annotations`: pydantic reads the schema's annotations at runtime.
import asyncio
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mothertongue.prompts import split_system, style_system_prompt, with_system

# A chat request is a few levels deep (body > messages > message > content parts > part); anything
# far deeper is an attack or a mistake, and deep enough nesting overflows the recursion limit.
MAX_JSON_DEPTH = 32
INT64 = 2**63  # OpenAI's `seed` is a signed 64-bit integer


# ----------------------------------------------------------------------- request schema
class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(pattern="^(system|user|assistant|developer)$")
    content: str | list[dict[str, Any]]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    # Unknown OpenAI fields (user, logprobs=false, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    style: str | None = Field(None, max_length=64, description="mothertongue extension: a style tag, as /style in chat.")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            todo += [(x, d + 1) for x in (v.values() if isinstance(v, dict) else v)]
    return deepest


def parse_request(raw: bytes) -> ChatRequest:
    """The request body as a checked ChatRequest, or an ApiError 400 naming what is wrong."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None
    except RecursionError:
        data = None
    if data is None or _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, f"body is nested deeper than {MAX_JSON_DEPTH} levels", code="nested_too_deep")
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ApiError(400, f"{where}: {err['msg']}", param=where) from None


def _text(content) -> str:
    if isinstance(content, str):
        return content
    # OpenAI content parts: only text parts can be answered by a text model.
    parts = []
    for p in content:
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise ApiError(400, "only text content parts are supported", param="messages")
        parts.append(p["text"])
    return "".join(parts)


def _vision_content(content, processor, allow_local: bool) -> tuple[str, list]:
    """Text with the image token where each image part was, and the images (PIL), for a vision
    model; an image that cannot be used is a 400 naming why."""
    from mothertongue.vision.images import ImageProblem, open_image_url

    if isinstance(content, str):
        return content, []
    text, images = "", []
    for p in content:
        kind = p.get("type")
        if kind == "text" and isinstance(p.get("text"), str):
            text += p["text"]
        elif kind == "image_url":
            url = p.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise ApiError(400, "image_url part without a url string", param="messages")
            try:
                images.append(open_image_url(url, allow_local))
            except ImageProblem as e:
                raise ApiError(400, str(e), param="messages", code="invalid_image") from None
            text += f"{processor.image_token}\n"
        else:
            raise ApiError(400, f"content part type {kind!r} is not supported (text, image_url)", param="messages")
    return text, images


@dataclass
class Prepared:
    """A request checked and ready to queue."""

    req: ChatRequest
    messages: list[dict]
    gen_kwargs: dict
    prompt_tokens: int
    images: list = field(default_factory=list)  # PIL images, for a vision model


# ------------------------------------------------------------------------- the engine
@dataclass
class Job:
    messages: list[dict]
    gen_kwargs: dict
    stream: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future | None = None
    chunks: asyncio.Queue | None = None
    seed: int | None = None
    images: list = field(default_factory=list)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        # Only jobs with equal settings share a batch; a seeded job, or one with images, is answered alone.
        alone = self.seed is not None or self.images
        self.key = json.dumps(self.gen_kwargs, sort_keys=True) + (f"#{uuid.uuid4()}" if alone else "")


class Engine:
    """Owns the model; one worker thread answers queued jobs (torch generation is not
    thread-safe on one model, and one batched forward pass beats several competing ones)."""

    def __init__(self, model, tokenizer, stop_ids, chat_cfg, cfg, name: str, system: str | None,
                 language: str = "en", processor=None):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.processor = processor  # a vision-language model's: image_url parts are accepted
        self.language = language
        self.chat_cfg, self.cfg, self.name, self.system = chat_cfg, cfg, name, system
        self.created = int(time.time())
        self.jobs: queue.Queue = queue.Queue(maxsize=cfg.max_queue)
        self.served = 0
        self.largest_batch = {"requests": 0, "streamed": 0}  # most requests answered by one generate
        self.worker = threading.Thread(target=self._work, name="mothertongue-generate", daemon=True)
        self.worker.start()

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return int(getattr(cfg, "max_position_embeddings", 2048))

    def prepare(self, raw: bytes) -> Prepared:
        """Parse and check a request body; render and count its prompt (CPU work: call it off
        the event loop)."""
        req = parse_request(raw)
        if req.model not in (None, self.name):
            raise ApiError(404, f"model {req.model!r} not served here; GET /v1/models lists {self.name!r}",
                           param="model", code="model_not_found")
        if req.stop:
            raise ApiError(400, "stop sequences are not supported; replies end at the end-of-turn token",
                           param="stop")
        kw = self.gen_kwargs(req)
        msgs, images = self.messages_and_images(req)
        n = self.check_prompt(msgs, kw["max_new_tokens"], len(images))
        return Prepared(req, msgs, kw, n, images)

    def gen_kwargs(self, req: ChatRequest) -> dict:
        from mothertongue.generation import generation_kwargs

        limit = self.cfg.max_new_tokens_limit
        want = req.max_completion_tokens or req.max_tokens or min(self.chat_cfg.max_new_tokens, limit)
        if want > limit:
            raise ApiError(400, f"max_tokens {want} is over this server's limit of {limit}",
                           param="max_tokens", code="max_tokens_too_large")
        if req.temperature is None and req.top_p is None:
            preset = self.chat_cfg.preset  # the recipe's own choice when the client says nothing
        elif req.temperature == 0:
            preset = "greedy"
        else:
            preset = "sample"
        kw = generation_kwargs(preset, self.chat_cfg, want)
        if preset == "sample":
            if req.temperature is not None:
                kw["temperature"] = req.temperature
            if req.top_p is not None:
                kw["top_p"] = req.top_p
        return kw

    def messages(self, req: ChatRequest) -> list[dict]:
        return self.messages_and_images(req)[0]

    def messages_and_images(self, req: ChatRequest) -> tuple[list[dict], list]:
        msgs, images = [], []
        for m in req.messages:
            role = "system" if m.role == "developer" else m.role
            if self.processor is None:
                msgs.append({"role": role, "content": _text(m.content)})
                continue
            text, imgs = _vision_content(m.content, self.processor, self.cfg.allow_local_images)
            msgs.append({"role": role, "content": text})
            images += imgs
        if msgs[-1]["role"] != "user":
            raise ApiError(400, "the last message must have role user", param="messages")
        return self.messages_for(msgs, req.style), images

    def messages_for(self, msgs: list[dict], style: str | None = None) -> list[dict]:
        """The run's default system prompt goes first unless the client sent its own (as chat);
        a style tag turns it into the style's system prompt, as `/style` does in chat."""
        own, rest = split_system(msgs)
        base = own if own is not None else self.system
        return with_system(rest, style_system_prompt(self.language, style, base) if style else base)

    def check_prompt(self, msgs: list[dict], max_new: int, images: int = 0) -> int:
        from mothertongue.generation import prompt_ids

        try:
            # each image token becomes the encoder's image_seq_length positions
            n = len(prompt_ids(self.tokenizer, msgs)) + images * (getattr(self.model.config, "image_seq_length", 1) - 1)
        except Exception as e:  # a template may reject an order of roles (e.g. two users in a row)
            raise ApiError(400, f"the chat template rejected these messages: {e}", param="messages") from None
        limit = min(self.cfg.max_prompt_tokens or self.context_length, self.context_length - max_new)
        if n > limit:
            raise ApiError(400, f"prompt is {n} tokens; at most {limit} fit with max_tokens {max_new}",
                           param="messages", code="context_length_exceeded")
        return n

    def submit(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(503, f"server busy: {self.cfg.max_queue} requests already queued; retry later",
                           type_="server_error", code="queue_full") from None

    def _work(self) -> None:
        deferred: list[Job] = []  # taken from the queue while batching, answered next in order
        while True:
            job = deferred.pop(0) if deferred else self.jobs.get()
            batch = [job]
            # Batch the waiting jobs that share the generation settings, streamed or not.
            while len(batch) < self.cfg.max_batch_size:
                nxt = next((j for j in deferred if j.key == job.key), None)
                if nxt is not None:
                    deferred.remove(nxt)
                    batch.append(nxt)
                    continue
                try:
                    j = self.jobs.get_nowait()
                except queue.Empty:
                    break
                (batch if j.key == job.key else deferred).append(j)
            try:
                self._run(batch)
            except Exception as e:  # one bad generation must not stop the worker
                for j in batch:
                    self._finish(j, exc=e)

    def _run(self, batch: list[Job]) -> None:
        from mothertongue.generation import stream_generate_batch

        if batch[0].seed is not None and batch[0].gen_kwargs.get("do_sample"):
            import torch

            # torch takes 0..2**64-1; a negative int64 seed maps onto that range one to one.
            torch.manual_seed(batch[0].seed % 2**64)  # the same seed gives the same sampled reply

        def sink(job: Job):
            if not job.stream:
                return None
            return lambda t: job.loop.call_soon_threadsafe(job.chunks.put_nowait, t)

        if self.processor is not None:
            self._run_vision(batch, sink)
            return
        streamed = sum(j.stream for j in batch)
        self.largest_batch["requests"] = max(self.largest_batch["requests"], len(batch))
        self.largest_batch["streamed"] = max(self.largest_batch["streamed"], streamed)
        reps = stream_generate_batch(self.model, self.tokenizer, [j.messages for j in batch], self.stop_ids,
                                     [sink(j) for j in batch], **batch[0].gen_kwargs)
        for j, r in zip(batch, reps, strict=True):
            self._finish(j, r)

    def _run_vision(self, batch: list[Job], sink) -> None:
        """Vision models answer one request at a time (images differ per request), unstreamed:
        a streamed request gets its reply as one piece."""
        from mothertongue.vision.infer import answer

        for j in batch:
            rep = answer(self.model, self.processor, j.messages, j.images, self.stop_ids, **j.gen_kwargs)
            out = sink(j)
            if out is not None and rep.text:
                out(rep.text)
            self._finish(j, rep)

    def _finish(self, job: Job, rep=None, exc: Exception | None = None) -> None:
        self.served += 1
        if job.stream:
            job.loop.call_soon_threadsafe(job.chunks.put_nowait, exc if exc else rep)
        else:
            def _set():
                if not job.future.done():
                    (job.future.set_exception(exc) if exc else job.future.set_result(rep))

            job.loop.call_soon_threadsafe(_set)


def serve_settings(path: Path):
    """(recipe or None, serve config, chat config) of a run directory or a model folder."""
    from mothertongue.config import ChatConfig, ServeConfig
    from mothertongue.runs import RunDir

    recipe = RunDir(Path(path)).recipe_or_none()
    return recipe, (recipe.serve if recipe else ServeConfig()), (recipe.chat if recipe else ChatConfig())


def build_engine(path: Path, which: str = "tuned", cfg=None, name: str | None = None,
                 system: str | None = None, trust_remote_code: bool = False) -> Engine:
    """Load the model of a run directory (or an exported model folder) behind an Engine.

    `trust_remote_code` is the user's flag only; nothing in the folder can turn it on."""
    from mothertongue.models import load_model

    path = Path(path)
    recipe, recipe_cfg, chat_cfg = serve_settings(path)
    cfg = cfg or recipe_cfg
    model, tokenizer, stop_ids, info = load_model(path, which, trust_remote_code, vision=True)
    name = name or cfg.model_name or (recipe.name if recipe else path.name)
    return Engine(model, tokenizer, stop_ids, chat_cfg, cfg, name,
                  system if system is not None else info.system_prompt, info.language, info.processor)
