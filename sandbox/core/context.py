"""Per-request values that error builders need without threading them through every call."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
current_client_request_id: ContextVar[str | None] = ContextVar("current_client_request_id", default=None)


def request_id() -> str:
    """The id of the request being served (a fresh one outside a request)."""
    return current_request_id.get() or str(uuid.uuid4())
