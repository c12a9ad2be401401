"""Microsoft's published throttling limits, enforced per app, per app and tenant, or per tenant.

A limit counts requests in a sliding window of real (monotonic) seconds, as throttling is about
request rate, not scenario time; over it, the service answers its own 429 with the Retry-After until
the oldest counted request leaves the window. The scenario's ``rate_limits`` default to the
published figures (Graph's throttling-limits page, the Management Activity API reference), which
a few tenants never reach; a benchmark scales them down to show what a fleet does at the limit.
The invitations limit (150 per 5 s per tenant, all apps) is the Graph directory's own
(``Directory.invitation_limit``), checked by the invitations route.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.core.faults import ServiceName

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class SlidingWindowLimit:
    """At most ``limit`` requests in any ``window_s`` real seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> int | None:
        """Record a request and return None, or return the Retry-After (whole seconds) when over the limit."""
        now = time.monotonic()
        with self._lock:
            while self._hits and now - self._hits[0] >= self.window_s:
                self._hits.popleft()
            if len(self._hits) >= self.limit:
                return max(1, math.ceil(self.window_s - (now - self._hits[0])))
            self._hits.append(now)
            return None


class RateLimitSpec(BaseModel):
    """At most ``requests`` requests in any ``per_s`` real seconds, counted per ``per``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    service: ServiceName
    per: Literal["app", "app_tenant", "tenant"] = Field(
        description="app: the caller's app (or API key) across tenants; app_tenant: the app in one tenant; tenant: all apps in one tenant.")
    requests: int = Field(gt=0)
    per_s: float = Field(gt=0, description="The window, in real seconds.")
    writes_only: bool = Field(default=False, description="Count only POST, PATCH, PUT and DELETE.")
    name: str = Field(default="", description="For the request log: which limit answered 429.")


PUBLISHED_LIMITS: list[RateLimitSpec] = [
    RateLimitSpec(service="graph", per="app", requests=130_000, per_s=10, name="graph global per app"),
    RateLimitSpec(service="graph", per="app_tenant", requests=3_500, per_s=10, name="identity per app and tenant (small tenant)"),
    RateLimitSpec(service="graph", per="app_tenant", requests=3_000, per_s=150, writes_only=True, name="identity writes per app and tenant"),
    RateLimitSpec(service="management_activity", per="tenant", requests=2_000, per_s=60, name="Management Activity per tenant"),
]


def caller_of(app_id: str | None, authorization: str | None) -> str | None:
    """Who is calling: the token's app id, else a digest of the credential (a Workbench key has no app id)."""
    if app_id:
        return app_id.lower()
    if authorization:
        return hashlib.sha256(authorization.encode()).hexdigest()[:16]
    return None


class RateLimits:
    """The scenario's limits, each with one sliding window per key it counts by."""

    def __init__(self, specs: list[RateLimitSpec]) -> None:
        self.specs = list(specs)
        self._windows: dict[tuple[int, str], SlidingWindowLimit] = {}
        self._lock = threading.Lock()

    def _key(self, spec: RateLimitSpec, caller: str | None, tenant_id: str | None) -> str | None:
        if spec.per == "app":
            return caller
        if spec.per == "tenant":
            return tenant_id.lower() if tenant_id else None
        return f"{caller}/{tenant_id.lower()}" if caller and tenant_id else None

    def acquire(self, service: str, method: str, caller: str | None, tenant_id: str | None) -> tuple[RateLimitSpec, int] | None:
        """Count the request against every limit it falls under; the first limit over, with its Retry-After, else None.

        A refused request is not counted, as a 429 does not use the budget it was refused by.
        """
        for index, spec in enumerate(self.specs):
            if spec.service != service or (spec.writes_only and method.upper() not in WRITE_METHODS):
                continue
            key = self._key(spec, caller, tenant_id)
            if key is None:
                continue
            with self._lock:
                window = self._windows.setdefault((index, key), SlidingWindowLimit(spec.requests, spec.per_s))
            retry_after = window.acquire()
            if retry_after is not None:
                return spec, retry_after
        return None
