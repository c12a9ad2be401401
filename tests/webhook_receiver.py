"""A local webhook receiver for tests: what Prefect's CustomWebhookNotificationBlock posts, by channel (the URL's path)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Accepts every POST on 127.0.0.1 and keeps its body; ``url(channel)`` is where a block posts one channel's messages."""

    def __init__(self) -> None:
        received: list[tuple[str, bytes]] = []
        self._received = received

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append((self.path.strip("/"), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, channel: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{channel}"

    def save_block(self, channel: str) -> str:
        """A custom-webhook block named ``channel`` posting subject and body as JSON to that channel (needs a Prefect API); returns its slug."""
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        CustomWebhookNotificationBlock(name=channel, url=self.url(channel), json_data={"subject": "{{subject}}", "body": "{{body}}"}).save(channel)
        return f"custom-webhook/{channel}"

    @property
    def raw(self) -> list[tuple[str, bytes]]:
        """(channel, body as sent) of every message, in order."""
        return list(self._received)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message's JSON body with its ``channel``, in order."""
        return [{"channel": channel, **json.loads(body)} for channel, body in self._received]

    def stop(self) -> None:
        self._server.shutdown()
