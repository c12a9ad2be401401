"""Fault injection: throttling, unavailability, slowness, outage windows, dropped connections and
dripped responses, per service.

A fault matches requests by service and optionally method, path fragment and tenant. It can be
limited to a number of requests (``count``), to a window of scenario time (``starts_after`` and
``lasts``, counted from when the fault was registered) and to a share of the matching requests
(``probability``, drawn from the fault's own seeded generator so that the same requests in the same
order get the same hits). The admin API and the scenario file add them; the service middleware asks
:meth:`FaultRegistry.match` before routing.
"""

from __future__ import annotations

import itertools
import random
import threading
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from sandbox.core.clock import parse_duration

ServiceName = Literal["login", "graph", "exchange", "management_activity", "workbench"]
SERVICES: tuple[ServiceName, ...] = ("login", "graph", "exchange", "management_activity", "workbench")
FaultKind = Literal["throttle", "unavailable", "slow", "outage", "reset", "drip"]
RETRY_AFTER_KINDS: frozenset[str] = frozenset({"throttle", "unavailable", "outage"})
_KIND_OPTIONS: dict[str, frozenset[str]] = {
    "retry_after_format": RETRY_AFTER_KINDS,
    "after_apply": frozenset({"reset"}),
    "chunks": frozenset({"drip"}),
}


class FaultSpec(BaseModel):
    """What a fault does and which requests it hits."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName = Field(description="Emulated service the fault applies to.")
    kind: FaultKind = Field(
        description=(
            "throttle: 429 with Retry-After; unavailable and outage: 503; slow: delay, then serve; "
            "reset: close the connection without a response (see after_apply); drip: send status and "
            "headers at once, then the body in `chunks` pieces spread over `delay`."
        )
    )
    method: str | None = Field(default=None, description="Only this HTTP method, e.g. POST.")
    path_contains: str | None = Field(default=None, description="Only paths containing this text.")
    tenant_id: str | None = Field(default=None, description="Only requests for this tenant.")
    count: int | None = Field(default=None, ge=1, description="Hit at most this many requests.")
    probability: float = Field(
        default=1.0,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Hit each matching request with this probability; misses do not count towards `count`.",
    )
    seed: int | None = Field(
        default=None,
        description="Seed of this fault's own random draws (default: its id), so a rerun gets the same hits.",
    )
    retry_after: timedelta | None = Field(
        default=None,
        description=(
            "Retry-After sent with 429/503, in real seconds: sent as given, not divided by the time "
            "scale, because the client sleeps in real time."
        ),
    )
    retry_after_format: Literal["seconds", "http-date"] = Field(
        default="seconds",
        description=(
            "How Retry-After is written: delay-seconds, or an HTTP-date of real (wall-clock) now + "
            "retry_after, rounded up to the whole second so that waiting until it waits at least retry_after."
        ),
    )
    after_apply: bool = Field(
        default=False,
        description=(
            "kind=reset: False drops the connection before the request is handled (nothing changes); "
            "True handles it fully (writes applied, logged with the real status), then drops the "
            "connection instead of sending the response."
        ),
    )
    delay: timedelta | None = Field(
        default=None, description="Real-time delay for kind=slow (default 1s), and the time kind=drip takes (default 1s)."
    )
    chunks: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="kind=drip: the body is sent in this many pieces, one every delay/chunks (real time).",
    )
    starts_after: timedelta = Field(default=timedelta(), description="Scenario time before it starts.")
    lasts: timedelta | None = Field(default=None, description="Scenario time it lasts once started.")

    @field_validator("retry_after", "delay", "starts_after", "lasts", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None or isinstance(value, timedelta):
            return value
        return parse_duration(value)  # type: ignore[arg-type]

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @model_validator(mode="after")
    def _options_fit_kind(self) -> FaultSpec:
        # An option the kind ignores, set to anything but its default, is a mistake in the test, not to pass silently.
        for option, kinds in _KIND_OPTIONS.items():
            changed = getattr(self, option) != type(self).model_fields[option].default
            if changed and self.kind not in kinds:
                raise ValueError(f"{option} applies to kind {' / '.join(sorted(kinds))} only, not {self.kind}")
        return self


class ActiveFault(BaseModel):
    """A registered fault with its window and how often it has fired."""

    id: int
    spec: FaultSpec
    seed: int = Field(description="The seed in use: the spec's, or the fault's id.")
    active_from: datetime
    active_until: datetime | None
    hits: int = 0
    _random: random.Random = PrivateAttr()

    def model_post_init(self, context: object, /) -> None:
        self._random = random.Random(self.seed)

    def exhausted(self) -> bool:
        return self.spec.count is not None and self.hits >= self.spec.count

    def draw(self) -> bool:
        """Whether this matching request is hit. Draws only when it can miss, so p=1 costs nothing."""
        return self.spec.probability >= 1.0 or self._random.random() < self.spec.probability


class FaultRegistry:
    """Thread-safe list of faults; ``match`` consumes one hit of the first matching fault that draws a hit."""

    def __init__(self) -> None:
        self._faults: list[ActiveFault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, spec: FaultSpec, now: datetime) -> ActiveFault:
        start = now + spec.starts_after
        with self._lock:
            fault_id = next(self._ids)
            fault = ActiveFault(
                id=fault_id,
                spec=spec,
                seed=spec.seed if spec.seed is not None else fault_id,
                active_from=start,
                active_until=start + spec.lasts if spec.lasts is not None else None,
            )
            self._faults.append(fault)
        return fault.model_copy()

    def list(self) -> list[ActiveFault]:
        with self._lock:
            return [f.model_copy() for f in self._faults]

    def remove(self, fault_id: int | None = None) -> int:
        """Remove one fault, or all of them when ``fault_id`` is None; return how many went."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    def clear(self) -> None:
        """Remove every fault and number the next ones from 1 again, so default seeds repeat after a reset."""
        with self._lock:
            self._faults = []
            self._ids = itertools.count(1)

    def match(
        self, service: str, method: str, path: str, tenant_id: str | None, now: datetime
    ) -> ActiveFault | None:
        with self._lock:
            for fault in self._faults:
                spec = fault.spec
                if (
                    spec.service != service
                    or fault.exhausted()
                    or now < fault.active_from
                    or (fault.active_until is not None and now >= fault.active_until)
                    or (spec.method and spec.method != method)
                    or (spec.path_contains and spec.path_contains not in path)
                    or (spec.tenant_id and (tenant_id or "").lower() != spec.tenant_id.lower())
                    or not fault.draw()
                ):
                    continue
                fault.hits += 1
                return fault.model_copy()
        return None
