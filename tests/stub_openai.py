"""A tiny OpenAI-compatible chat server on loopback (stdlib only) for tests of the remote engine
and of anything translated through it: it answers `[de] <text>` for the text after the prompt's
last blank line, and can fail, stall or count what it is sent.

    stub = Stub(fail_first=2); ...; stub.close()
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stub(ThreadingHTTPServer):
    """Answers `[de] <text>` for the text after the prompt's last blank line; `fail_first` 500s first,
    `hang` never answers. Records requests, the most in flight at once and Authorization headers."""

    daemon_threads = True

    def __init__(self, fail_first: int = 0, hang: bool = False, delay: float = 0.0, answer=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.fail_first, self.hang, self.delay = fail_first, hang, delay
        self.answer = answer  # prompt -> reply, instead of `[de] <text>` (e.g. a judge)
        self.requests = self.in_flight = self.max_in_flight = 0
        self.auth: set[str] = set()
        self.texts: list[str] = []  # the text of every request that was answered
        self.lock = threading.Lock()
        self.release = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        s: Stub = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with s.lock:
            s.requests += 1
            n = s.requests
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
            s.auth.add(self.headers.get("Authorization", ""))
        try:
            if s.hang:
                s.release.wait(30)
                return
            time.sleep(s.delay)
            if n <= s.fail_first:
                self.reply(500, {"error": {"message": "overloaded"}})
                return
            prompt = body["messages"][-1]["content"]
            text = prompt.rsplit("\n\n", 1)[-1]
            with s.lock:
                s.texts.append(text)
            content = s.answer(prompt) if s.answer else f"[de] {text}"
            self.reply(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})
        finally:
            with s.lock:
                s.in_flight -= 1

    def reply(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
