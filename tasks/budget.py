"""The call budget: Prefect rate limits sized to Microsoft's published limits, shared by every process.

Every tenant's run, its resumed executions and its checks call the same services with the same
provider app; only the Prefect server sees all of them. So each call first takes a slot of every
limit that applies to it (the app's across tenants, the app's in this tenant, this tenant's writes,
its invitations) through ``prefect.concurrency.sync.rate_limit``, which waits while they are spent.
A CSV of many tenants then queues at the budget instead of meeting a storm of 429s. A 429 that
comes anyway holds the limits of its scope for its Retry-After (:func:`hold_limit`), so that no
other process sends before it either.

The limits are created on first use (observed, created or resized to the settings: the same
observe → change-what-differs shape as the steps), named after the app's client id, the tenant id
or the Workbench block's name, never a secret, and visible on the Prefect UI's Concurrency page.

A Prefect rate limit is a token bucket (``limit`` slots, refilled at ``slot_decay_per_second``);
Microsoft's windows slide. A bucket of ``B`` calls refilled at ``(S - B) / W`` lets through at most
``S`` calls in any ``W`` seconds: ``S`` is ``share`` of the published ``N``, ``B`` is ``burst`` of ``S``.
The server decays a limit in whole slots since its last change (a denied attempt is a change too),
so a stream of calls faster than one slot's decay would never let the bucket drain: each call takes
``SLOTS_PER_CALL`` slots, so what a change can lose is a thousandth of a call (measured: 20 calls per 10 s, 8 threads, 1 slot per call gave 0.75 calls/s,
1,000 slots per call 1.5 of the 1.6 configured).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

from clients.errors import CallBudgetExhausted
from core.settings import BudgetSettings, Rate

logger = logging.getLogger("m365_onboarding.budget")

PREFIX = "m365-budget"
SLOTS_PER_CALL = 1000
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# The Prefect server not answering (down, or SQLite's "database is locked" 503 under load): tried again
# after these pauses, then the call goes out unbudgeted. The budget spares Microsoft a storm; it must
# not stop a days-long run that Prefect's own outage would otherwise let go on (the service's
# Retry-After is still honoured by the client).
UNREACHABLE_RETRY_DELAYS_S = (1.0, 2.0, 4.0)
UNREACHABLE = (ConcurrencySlotAcquisitionError, PrefectHTTPStatusError, httpx.HTTPError, OSError)


Scope = Literal["app", "tenant"]


@dataclass(frozen=True)
class BudgetLimit:
    """One Prefect rate limit: its name, its size in slots (``SLOTS_PER_CALL`` per call), and what it counts.

    ``scope`` is ``app`` for a limit across tenants (the app's, a Workbench key's), ``tenant`` for one
    tenant's: a 429 holds the limits of its scope.
    """

    name: str
    limit: int
    slot_decay_per_second: float
    scope: Scope = "tenant"

    @classmethod
    def of(cls, name: str, rate: Rate, share: float, burst: float, scope: Scope) -> BudgetLimit:
        spent = rate.requests * share  # at most this many calls in any window
        burst_calls = max(1, math.floor(spent * burst))
        return cls(name, burst_calls * SLOTS_PER_CALL, (spent - burst_calls) / rate.per_s * SLOTS_PER_CALL, scope)

    def held_slots(self, seconds: float) -> int:
        """Active slots that let no call through for ``seconds``: the bucket spent, and that long's refill on top."""
        return self.limit + math.ceil(seconds * self.slot_decay_per_second)


# Limits this process has seen at their size: each is observed once per process, not once per call.
_ensured: dict[str, BudgetLimit] = {}
_ensure_lock = threading.Lock()


def ensure_limit(limit: BudgetLimit) -> None:
    """Create the rate limit, or resize it to ``limit``, unless it already is so (another process may race us)."""
    with _ensure_lock:
        if _ensured.get(limit.name) == limit:
            return
        with get_client(sync_client=True) as client:
            try:
                current = client.read_global_concurrency_limit_by_name(limit.name)
            except ObjectNotFound:
                current = None
            if current is None:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                        name=limit.name, limit=limit.limit, slot_decay_per_second=limit.slot_decay_per_second))
                    logger.info("call budget %s created: %d calls burst, %.3g calls/s", limit.name, limit.limit // SLOTS_PER_CALL,
                                limit.slot_decay_per_second / SLOTS_PER_CALL)
                except ObjectAlreadyExists:
                    pass  # created by another process meanwhile, from the same settings
            elif (current.limit, current.slot_decay_per_second) != (limit.limit, limit.slot_decay_per_second) or not current.active:
                client.update_global_concurrency_limit(limit.name, GlobalConcurrencyLimitUpdate(
                    limit=limit.limit, slot_decay_per_second=limit.slot_decay_per_second, active=True))
                logger.info("call budget %s resized to %d calls burst, %.3g calls/s", limit.name, limit.limit // SLOTS_PER_CALL,
                            limit.slot_decay_per_second / SLOTS_PER_CALL)
        _ensured[limit.name] = limit


def hold_limit(limit: BudgetLimit, seconds: float) -> None:
    """Spend the whole limit and that long's refill: no process gets a slot before ``seconds``.

    Prefect lets active slots exceed the limit and decays them from the update on, so the limit
    reopens when the Retry-After has passed. Two holds at once keep the later one (a lost race
    shortens a hold to the other 429's wait, which the client itself still honours).
    """
    ensure_limit(limit)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(limit.name, GlobalConcurrencyLimitUpdate(active_slots=limit.held_slots(seconds)))
    logger.info("call budget %s held for %.3gs: a 429's Retry-After", limit.name, seconds)


class ServiceBudget:
    """The budget of one service's calls for one tenant: which limits a call spends, and spending them.

    ``throttles`` is the scope a 429 of the service holds when it does not say one: ``tenant`` for
    Microsoft's services (Graph throttles per app and tenant unless ``x-ms-throttle-scope`` says
    otherwise), ``app`` for Workbench (one key for every tenant).
    """

    def __init__(self, service: str, limits_for: Callable[[str, str], list[BudgetLimit]], wait_s: float, throttles: Scope = "tenant") -> None:
        self.service = service
        self._limits_for = limits_for
        self._wait_s = wait_s
        self._throttles = throttles

    def hold(self, seconds: float, scope: str | None) -> None:
        """After a 429: no process calls the service in its scope before ``seconds`` (``tasks/budget.py``'s hold_limit)."""
        # Graph's x-ms-throttle-scope reads like "Tenant_Application/ReadWrite/{app}/{tenant}"; one without a tenant is the app's.
        wanted: Scope = self._throttles if scope is None else ("tenant" if "tenant" in scope.lower() else "app")
        for limit in self.limits("GET", "/"):
            if limit.scope == wanted:
                try:
                    hold_limit(limit, seconds)
                except Exception as exc:  # best effort: this process's own gate still holds its calls, and the call must go on
                    _warn_unreachable(self.service, exc)

    def limits(self, method: str, path: str) -> list[BudgetLimit]:
        """The limits a call spends: none when no limit applies to it."""
        return self._limits_for(method.upper(), path)

    def __call__(self, method: str, path: str) -> None:
        limits = self.limits(method, path)
        if not limits:
            return
        for delay in (*UNREACHABLE_RETRY_DELAYS_S, None):
            try:
                for limit in limits:
                    ensure_limit(limit)
                rate_limit([limit.name for limit in limits], occupy=SLOTS_PER_CALL, timeout_seconds=self._wait_s, strict=True)
                return
            except TimeoutError as exc:  # before UNREACHABLE: a timed-out acquisition is a TimeoutError, not an OSError
                raise CallBudgetExhausted(
                    f"{self.service} {method} {path}: no slot of the call budget within {self._wait_s:g}s "
                    f"({', '.join(limit.name for limit in limits)}); the call was not sent."
                ) from exc
            except UNREACHABLE as exc:
                if delay is None:
                    _warn_unreachable(self.service, exc)
                    return
                time.sleep(delay)


_last_warning = 0.0


def _warn_unreachable(service: str, exc: BaseException) -> None:
    """One line a minute at most: the budget could not be reached (or held), calls go out unbudgeted meanwhile."""
    global _last_warning
    if time.monotonic() - _last_warning >= 60:
        _last_warning = time.monotonic()
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        logger.warning("call budget unreachable (%s): %s calls go out unbudgeted until it answers", reason, service)


def service_budgets(settings: BudgetSettings, *, client_id: str, tenant_id: str, workbench_key: str | None) -> dict[str, ServiceBudget]:
    """Each service's budget for the provider app ``client_id`` in ``tenant_id``; empty when the budget is off.

    ``workbench_key`` names the Workbench key's block (the key itself never leaves it).
    """
    if not settings.enabled:
        return {}

    def sized(name: str, rate: Rate | None, scope: Scope = "tenant") -> list[BudgetLimit]:
        return [BudgetLimit.of(f"{PREFIX}:{name}", rate, settings.share, settings.burst, scope)] if rate is not None else []

    graph_app = sized(f"graph:app:{client_id}", settings.graph_per_app, "app")
    graph_tenant = sized(f"graph:tenant:{client_id}:{tenant_id}", settings.graph_per_tenant)
    graph_writes = sized(f"graph-writes:tenant:{client_id}:{tenant_id}", settings.graph_writes_per_tenant)
    invitations = sized(f"graph-invitations:tenant:{tenant_id}", settings.invitations_per_tenant)

    def graph(method: str, path: str) -> list[BudgetLimit]:
        limits = graph_app + graph_tenant
        if method in WRITE_METHODS:
            limits = limits + graph_writes
        if path.rstrip("/").endswith("/invitations"):
            limits = limits + invitations
        return limits

    management = sized(f"management-activity:tenant:{tenant_id}", settings.management_activity_per_tenant)
    exchange = sized(f"exchange:tenant:{tenant_id}", settings.exchange_per_tenant)
    workbench = sized(f"workbench:key:{workbench_key}", settings.workbench_per_key, "app") if workbench_key else []
    wait_s = settings.wait_s
    return {
        "graph": ServiceBudget("graph", graph, wait_s),
        "management_activity": ServiceBudget("management_activity", lambda method, path: management, wait_s),
        "exchange": ServiceBudget("exchange", lambda method, path: exchange, wait_s),
        "workbench": ServiceBudget("workbench", lambda method, path: workbench, wait_s, throttles="app"),
    }
