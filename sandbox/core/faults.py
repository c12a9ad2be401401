"""Fault injection: throttling, unavailability, slowness and outage windows, per service.

A fault matches requests by service and optionally method, path fragment and tenant. It can be
limited to a number of requests (``count``) and to a window of scenario time (``starts_after`` and
``lasts``, counted from when the fault was registered). The admin API and the scenario file add
them; the service middleware asks :meth:`FaultRegistry.match` before routing.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.core.clock import parse_duration

ServiceName = Literal["login", "graph", "exchange", "management_activity", "workbench"]
SERVICES: tuple[ServiceName, ...] = ("login", "graph", "exchange", "management_activity", "workbench")


class FaultSpec(BaseModel):
    """What a fault does and which requests it hits."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName = Field(description="Emulated service the fault applies to.")
    kind: Literal["throttle", "unavailable", "slow", "outage"] = Field(
        description="throttle: 429 with Retry-After; unavailable and outage: 503; slow: delay, then serve."
    )
    method: str | None = Field(default=None, description="Only this HTTP method, e.g. POST.")
    path_contains: str | None = Field(default=None, description="Only paths containing this text.")
    tenant_id: str | None = Field(default=None, description="Only requests for this tenant.")
    count: int | None = Field(default=None, ge=1, description="Hit at most this many requests.")
    retry_after: timedelta | None = Field(default=None, description="Retry-After sent with 429/503.")
    delay: timedelta | None = Field(default=None, description="Real-time delay for kind=slow.")
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


class ActiveFault(BaseModel):
    """A registered fault with its window and how often it has fired."""

    id: int
    spec: FaultSpec
    active_from: datetime
    active_until: datetime | None
    hits: int = 0

    def exhausted(self) -> bool:
        return self.spec.count is not None and self.hits >= self.spec.count


class FaultRegistry:
    """Thread-safe list of faults; ``match`` consumes one hit of the first matching fault."""

    def __init__(self) -> None:
        self._faults: list[ActiveFault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, spec: FaultSpec, now: datetime) -> ActiveFault:
        start = now + spec.starts_after
        fault = ActiveFault(
            id=next(self._ids),
            spec=spec,
            active_from=start,
            active_until=start + spec.lasts if spec.lasts is not None else None,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def list(self) -> list[ActiveFault]:
        with self._lock:
            return [f.model_copy() for f in self._faults]

    def remove(self, fault_id: int | None = None) -> int:
        """Remove one fault, or all of them when ``fault_id`` is None; return how many went."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

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
                ):
                    continue
                fault.hits += 1
                return fault.model_copy()
        return None
