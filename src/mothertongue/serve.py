"""OpenAI-compatible HTTP server for a tuned model (FastAPI + uvicorn), loopback by default.

    mothertongue serve runs/quickstart                          # http://127.0.0.1:8000/v1
    mothertongue serve runs/quickstart --port 9000 --api-key s3cret
    curl http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \\
         -d '{"model": "quickstart", "messages": [{"role": "user", "content": "Nenne drei Farben."}]}'

Endpoints: `POST /v1/chat/completions` (with `stream: true` as server-sent events in the OpenAI
chunk format), `GET /v1/models`, `GET /health`. Bad requests get HTTP 4xx with an OpenAI-style
JSON error body and the server keeps serving. Requests are queued and answered by one generation
worker, which batches waiting requests with equal settings (`serve.max_batch_size`), streamed ones
too (each row streams to its own client); a full queue answers 503. For production scale serve the merged export with vLLM (see README).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at
# runtime, and they are imported inside create_app to keep `import mothertongue` light.
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

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ----------------------------------------------------------------------- request schema
class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(pattern="^(system|user|assistant|developer)$")
    content: str | list[dict[str, Any]]


class ChatRequest(BaseModel):
    # Unknown OpenAI fields (user, logprobs=false, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    style: str | None = Field(None, max_length=64, description="mothertongue extension: a style tag, as /style in chat.")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


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
    key: str = field(init=False)

    def __post_init__(self) -> None:
        # Only jobs with equal settings share a batch; a seeded job is answered alone.
        self.key = json.dumps(self.gen_kwargs, sort_keys=True) + (f"#{uuid.uuid4()}" if self.seed is not None else "")


class Engine:
    """Owns the model; one worker thread answers queued jobs (torch generation is not
    thread-safe on one model, and one batched forward pass beats several competing ones)."""

    def __init__(self, model, tokenizer, stop_ids, chat_cfg, cfg, name: str, system: str | None,
                 language: str = "en"):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
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
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

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
        msgs = []
        for m in req.messages:
            role = "system" if m.role == "developer" else m.role
            msgs.append({"role": role, "content": _text(m.content)})
        if msgs[-1]["role"] != "user":
            raise ApiError(400, "the last message must have role user", param="messages")
        return self.messages_for(msgs, req.style)

    def messages_for(self, msgs: list[dict], style: str | None = None) -> list[dict]:
        """The run's default system prompt goes first unless the client sent its own (as chat);
        a style tag turns it into the style's system prompt, as `/style` does in chat."""
        from mothertongue.chat import style_system

        has_own = msgs[0]["role"] == "system"
        base = msgs[0]["content"] if has_own else self.system
        system = style_system(self.language, style, base) if style else base
        rest = msgs[1:] if has_own else msgs
        return [{"role": "system", "content": system}, *rest] if system else rest

    def check_prompt(self, msgs: list[dict], max_new: int) -> int:
        from mothertongue.generation import prompt_ids

        try:
            n = len(prompt_ids(self.tokenizer, msgs))
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

            torch.manual_seed(batch[0].seed)  # the same seed gives the same sampled reply

        def sink(job: Job):
            if not job.stream:
                return None
            return lambda t: job.loop.call_soon_threadsafe(job.chunks.put_nowait, t)

        streamed = sum(j.stream for j in batch)
        self.largest_batch["requests"] = max(self.largest_batch["requests"], len(batch))
        self.largest_batch["streamed"] = max(self.largest_batch["streamed"], streamed)
        reps = stream_generate_batch(self.model, self.tokenizer, [j.messages for j in batch], self.stop_ids,
                                     [sink(j) for j in batch], **batch[0].gen_kwargs)
        for j, r in zip(batch, reps, strict=True):
            self._finish(j, r)

    def _finish(self, job: Job, rep=None, exc: Exception | None = None) -> None:
        self.served += 1
        if job.stream:
            job.loop.call_soon_threadsafe(job.chunks.put_nowait, exc if exc else rep)
        else:
            def _set():
                if not job.future.done():
                    (job.future.set_exception(exc) if exc else job.future.set_result(rep))

            job.loop.call_soon_threadsafe(_set)


# ---------------------------------------------------------------------------- the app
def create_app(engine: Engine, api_key: str | None = None):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    cfg = engine.cfg
    app = FastAPI(title="mothertongue", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(404)
    async def _not_found(request: Request, e):
        return JSONResponse(ApiError(404, f"no route {request.method} {request.url.path}").body(), 404)

    @app.exception_handler(405)
    async def _bad_method(request: Request, e):
        return JSONResponse(ApiError(405, f"method {request.method} not allowed on {request.url.path}").body(), 405)

    def auth(request: Request) -> None:
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                           code="invalid_api_key")

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_request_bytes:
            raise ApiError(413, f"request body over {cfg.max_request_bytes} bytes", code="request_too_large")
        body = bytearray()
        async for chunk in request.stream():  # bounded even without a content-length header
            body += chunk
            if len(body) > cfg.max_request_bytes:
                raise ApiError(413, f"request body over {cfg.max_request_bytes} bytes", code="request_too_large")
        return bytes(body)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.name, "queued": engine.jobs.qsize(), "served": engine.served,
                "largest_batch": engine.largest_batch}

    @app.get("/v1/models")
    async def models(request: Request):
        auth(request)
        return {"object": "list", "data": [
            {"id": engine.name, "object": "model", "created": engine.created, "owned_by": "mothertongue",
             "max_model_len": engine.context_length}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        auth(request)
        raw = await read_body(request)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        try:
            req = ChatRequest.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise ApiError(400, f"{where}: {err['msg']}", param=where) from None
        if req.model not in (None, engine.name):
            raise ApiError(404, f"model {req.model!r} not served here; GET /v1/models lists {engine.name!r}",
                           param="model", code="model_not_found")
        if req.stop:
            raise ApiError(400, "stop sequences are not supported; replies end at the end-of-turn token",
                           param="stop")
        kw = engine.gen_kwargs(req)
        msgs = engine.messages(req)
        n_prompt = engine.check_prompt(msgs, kw["max_new_tokens"])
        loop = asyncio.get_running_loop()
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if not req.stream:
            job = Job(msgs, kw, False, loop, future=loop.create_future(), seed=req.seed)
            engine.submit(job)
            rep = await job.future
            return {
                "id": cid, "object": "chat.completion", "created": created, "model": engine.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": rep.text},
                             "finish_reason": "stop" if rep.ended else "length", "logprobs": None}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": rep.new_tokens,
                          "total_tokens": n_prompt + rep.new_tokens},
            }
        job = Job(msgs, kw, True, loop, chunks=asyncio.Queue(), seed=req.seed)
        engine.submit(job)
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": engine.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            while True:
                item = await job.chunks.get()
                if isinstance(item, str):
                    yield chunk({"content": item})
                    continue
                if isinstance(item, Exception):
                    err = {"error": {"message": f"generation failed: {item}", "type": "server_error"}}
                    yield f"data: {json.dumps(err)}\n\n"
                else:
                    yield chunk({}, "stop" if item.ended else "length")
                    if include_usage:
                        usage = {"prompt_tokens": n_prompt, "completion_tokens": item.new_tokens,
                                 "total_tokens": n_prompt + item.new_tokens}
                        body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                "model": engine.name, "choices": [], "usage": usage}
                        yield f"data: {json.dumps(body)}\n\n"
                yield "data: [DONE]\n\n"
                return

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return app


def build_engine(path: Path, which: str = "tuned", cfg=None, name: str | None = None,
                 system: str | None = None) -> Engine:
    """Load the model of a run directory (or an exported model folder) behind an Engine."""
    from mothertongue.config import ChatConfig, ServeConfig
    from mothertongue.models import load_model

    path = Path(path)
    model, tokenizer, stop_ids, info = load_model(path, which)
    recipe = info.recipe
    cfg = cfg or (recipe.serve if recipe else ServeConfig())
    chat_cfg = recipe.chat if recipe else ChatConfig()
    name = name or cfg.model_name or (recipe.name if recipe else path.name)
    return Engine(model, tokenizer, stop_ids, chat_cfg, cfg, name,
                  system if system is not None else info.system_prompt,
                  info.language)


def serve(path: Path, which: str = "tuned", host: str | None = None, port: int | None = None,
          api_key: str | None = None, name: str | None = None, sock=None) -> None:
    """Load the model and serve until interrupted (`sock`: an already bound socket, for tests)."""
    import uvicorn

    engine = build_engine(path, which, name=name)
    host = host or engine.cfg.host
    port = port if port is not None else engine.cfg.port
    if host not in LOOPBACK and not api_key:
        print(f"warning: serving on {host} without an API key; anyone who can reach it can use it")
    app = create_app(engine, api_key)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if sock is None:
        print(f"serving {engine.name!r} on http://{host}:{port}/v1  (Ctrl-C stops)", flush=True)
    server.run(sockets=[sock] if sock is not None else None)
