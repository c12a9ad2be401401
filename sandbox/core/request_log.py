"""Every request the sandbox served, in order, for tests and benchmarks to assert on."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class LoggedRequest(BaseModel):
    """One served request. Bodies are not kept: they may carry secrets."""

    seq: int
    at: datetime = Field(description="Scenario time the request was received.")
    received_at: datetime = Field(
        description="Real (wall-clock) UTC time it was received: compare it with Retry-After, which is real time."
    )
    service: str
    method: str
    path: str
    query: str
    status: int = Field(description="Status of the response; 0 when a reset fault dropped the request unhandled.")
    response_sent: bool = Field(default=True, description="False when a reset fault dropped the connection instead.")
    retry_after_s: int | None = Field(
        default=None, description="Seconds of the Retry-After the response carried, whichever format it was sent in."
    )
    request_id: str
    client_request_id: str | None = None
    tenant_id: str | None = None
    app_id: str | None = None
    operation: str | None = None
    fault: str | None = Field(default=None, description="The fault that hit it, as kind#id (e.g. reset#3).")
    duration_ms: float = Field(description="Until the response was ready; a dripped body takes longer to arrive.")


class RequestLog:
    """A bounded, thread-safe append-only log."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=max_entries)
        self._lock = threading.Lock()
        self._seq = 0

    def append(self, **fields: Any) -> LoggedRequest:
        with self._lock:
            self._seq += 1
            entry = LoggedRequest(seq=self._seq, **fields)
            self._entries.append(entry)
            return entry

    def query(
        self,
        service: str | None = None,
        method: str | None = None,
        tenant_id: str | None = None,
        path_contains: str | None = None,
        since_seq: int = 0,
    ) -> list[LoggedRequest]:
        with self._lock:
            entries = list(self._entries)
        return [
            e
            for e in entries
            if e.seq > since_seq
            and (service is None or e.service == service)
            and (method is None or e.method == method.upper())
            and (tenant_id is None or (e.tenant_id or "").lower() == tenant_id.lower())
            and (path_contains is None or path_contains in e.path)
        ]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
