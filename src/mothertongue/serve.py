"""OpenAI-compatible HTTP server for a tuned model (FastAPI + uvicorn), loopback by default.

    mothertongue serve runs/quickstart                          # http://127.0.0.1:8000/v1
    mothertongue serve runs/quickstart --port 9000 --api-key s3cret
    curl http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \\
         -d '{"model": "quickstart", "messages": [{"role": "user", "content": "Nenne drei Farben."}]}'

Endpoints: `POST /v1/chat/completions` (with `stream: true` as server-sent events in the OpenAI
chunk format), `GET /v1/models`, `GET /health`. Bad requests get HTTP 4xx with an OpenAI-style
JSON error body and the server keeps serving. Requests are checked and their prompts rendered off
the event loop, then queued for one generation worker (serve_engine.py), which batches waiting
requests with equal settings (`serve.max_batch_size`), streamed ones too (each row streams to its
own client); a full queue answers 503. Connections that send their request too slowly are closed
(`serve.request_timeout`). For production scale serve the merged export with vLLM (see README).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at
# runtime, and they are imported inside create_app to keep `import mothertongue` light.
import asyncio
import functools
import json
import socket
import time
import uuid
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mothertongue.errors import UsageError
from mothertongue.serve_engine import ApiError, Engine, Job, build_engine, serve_settings

__all__ = ["ApiError", "Engine", "build_engine", "create_app", "serve", "bind", "uvicorn_server"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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

        async def receive() -> None:
            async for chunk in request.stream():  # bounded even without a content-length header
                body.extend(chunk)
                if len(body) > cfg.max_request_bytes:
                    raise ApiError(413, f"request body over {cfg.max_request_bytes} bytes",
                                   code="request_too_large")

        try:  # a client trickling its body must not hold a connection (and its memory) forever
            await asyncio.wait_for(receive(), cfg.request_timeout)
        except TimeoutError:
            raise ApiError(408, f"request body not received within {cfg.request_timeout:g} s",
                           code="request_timeout") from None
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
        # Parsing, the chat template and the tokenizer are CPU work (seconds for a large body):
        # off the event loop, so /health and other clients are answered meanwhile.
        prep = await asyncio.to_thread(engine.prepare, raw)
        req, msgs, kw, n_prompt = prep.req, prep.messages, prep.gen_kwargs, prep.prompt_tokens
        loop = asyncio.get_running_loop()
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if not req.stream:
            job = Job(msgs, kw, False, loop, future=loop.create_future(), seed=req.seed, images=prep.images)
            engine.submit(job)
            rep = await job.future
            return {
                "id": cid, "object": "chat.completion", "created": created, "model": engine.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": rep.text},
                             "finish_reason": "stop" if rep.ended else "length", "logprobs": None}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": rep.new_tokens,
                          "total_tokens": n_prompt + rep.new_tokens},
            }
        job = Job(msgs, kw, True, loop, chunks=asyncio.Queue(), seed=req.seed, images=prep.images)
        engine.submit(job)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

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


# ------------------------------------------------------------------------- the network
class RequestHeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers.

    uvicorn times out only idle keep-alive connections, and any byte received resets that,
    so a client sending its headers slowly holds a connection forever (slowloris). Here a
    connection whose request headers are not complete `timeout` seconds after it opened (or
    after the previous response) is closed: with 408 if a request had begun, silently if the
    connection was idle (a 408 could cross a request the client is just sending)."""

    def __init__(self, *args, timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_timeout, self.head_timer, self.head_begun = timeout, None, False

    def _arm(self) -> None:
        self._disarm()
        self.head_begun = False
        self.head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        if self.head_timer is not None:
            self.head_begun = True
        super().data_received(data)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.head_begun:
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n"
                                 b"content-length: 0\r\n\r\n")
        self.transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived: its handler owns it now
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # the next request on this connection gets its own deadline
        super().on_response_complete()


def uvicorn_server(app, cfg) -> uvicorn.Server:
    """A uvicorn Server for `app` with the header deadline `serve.request_timeout` (run it with
    `server.run(sockets=[bind(...)])`)."""
    protocol = functools.partial(RequestHeadDeadlineProtocol, timeout=cfg.request_timeout)
    return uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning", access_log=False))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error (busy port, bad address) before
    anything is loaded or announced."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e} "
                         "(choose another --port / --host)") from None


def serve(path: Path, which: str = "tuned", host: str | None = None, port: int | None = None,
          api_key: str | None = None, name: str | None = None, sock=None,
          trust_remote_code: bool = False) -> None:
    """Load the model and serve until interrupted (`sock`: an already bound socket, for tests)."""
    _, cfg, _ = serve_settings(path)
    host = host or cfg.host
    port = port if port is not None else cfg.port
    if sock is None:
        sock = bind(host, port)  # a busy port fails now, not after loading the model
        port = sock.getsockname()[1]
    engine = build_engine(path, which, cfg=cfg, name=name, trust_remote_code=trust_remote_code)
    if host not in LOOPBACK and not api_key:
        print(f"warning: serving on {host} without an API key; anyone who can reach it can use it")
    server = uvicorn_server(create_app(engine, api_key), cfg)
    print(f"serving {engine.name!r} on http://{host}:{port}/v1  (Ctrl-C stops)", flush=True)
    server.run(sockets=[sock])
