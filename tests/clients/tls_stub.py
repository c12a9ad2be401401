"""A scripted HTTPS server on 127.0.0.1 for what the sandbox cannot be made to answer.

The sandbox always pages on its own host and sends Retry-After as whole seconds; these tests need
a page linking to another host and a Retry-After as an HTTP-date. The stub answers over real TLS
(its own CA, from the sandbox's TLS helper), so requests and urllib3 run exactly as in production:
retries, Retry-After sleeps and all. It records every request it gets, headers included, so a test
can prove a credential never reached it.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandbox.core.tls import TlsFiles


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status, headers and a JSON body (None: no body)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    at: float  # time.time() when it arrived


class StubServer:
    """Answers each path with its scripted answers in order (the last one repeats); 404 for any other path."""

    def __init__(self, tls: TlsFiles) -> None:
        self.received: list[Received] = []
        self._answers: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._answers[path] = list(answers)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_answer(self, path: str) -> Answer:
        with self._lock:
            answers = self._answers.get(path)
            if not answers:
                return Answer(404, {"error": {"code": "NotFound", "message": f"no script for {path}"}})
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                parts = urlsplit(self.path)
                with stub._lock:
                    stub.received.append(Received(self.command, parts.path, parts.query, dict(self.headers.items()), time.time()))
                answer = stub._next_answer(parts.path)
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads `received`
                pass

        return Handler
