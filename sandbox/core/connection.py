"""Dropping a connection without an answer, which an ASGI app by itself cannot do.

An ASGI app can only answer: when it raises or returns before answering, uvicorn sends a 500. A
``reset`` fault must look to the client like a proxy that died or a load balancer that reset the
connection (``requests.ConnectionError``), so each service app runs inside :class:`ConnectionFaults`,
outside every Starlette layer, where ``send`` is still uvicorn's own and its transport can be reached.
A handler calls :func:`request_reset`; the response it then returns is swallowed and the socket is
aborted with a TCP RST instead.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

RESET_KEY = "sandbox.reset_connection"
_DISCONNECT_WAIT_S = 1.0


def request_reset(scope: Scope) -> None:
    """Drop this request's connection instead of sending the response the handler returns."""
    if RESET_KEY not in scope:
        raise RuntimeError("a reset fault needs the app wrapped in ConnectionFaults (sandbox/server.py does it)")
    scope[RESET_KEY] = True


class ConnectionFaults:
    """ASGI wrapper that aborts the connection of a request marked with :func:`request_reset`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[RESET_KEY] = False

        async def guarded_send(message: Message) -> None:
            if not scope[RESET_KEY]:
                await send(message)
            elif message["type"] == "http.response.start":
                await _abort(send)
            # after a reset every further message goes nowhere

        await self.app(scope, receive, guarded_send)


async def _abort(send: Send) -> None:
    # uvicorn's send is a bound method of its per-request cycle, which holds the transport; no ASGI
    # message closes a connection without a response, so this reaches past the interface on purpose.
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("a reset fault needs uvicorn (its transport is not reachable from this server)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # linger 0: close with RST, not FIN, so the client gets "connection reset" at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # uvicorn learns of the loss a few loop turns later; until then it would answer the dead
    # connection with a 500 of its own when the app returns
    deadline = time.monotonic() + _DISCONNECT_WAIT_S
    while not getattr(cycle, "disconnected", True) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
