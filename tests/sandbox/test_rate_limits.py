"""The scenario's throttling limits: counted per app, per app and tenant, or per tenant, in real seconds."""

from __future__ import annotations

import pytest

from sandbox.core.rate_limits import PUBLISHED_LIMITS, RateLimits, RateLimitSpec, caller_of
from sandbox.core.scenario import Scenario

APP_A, APP_B = "app-a", "app-b"
T1, T2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def _limits(**spec: object) -> RateLimits:
    return RateLimits([RateLimitSpec(service="graph", requests=2, per_s=60, name="test", **spec)])


def test_a_per_app_limit_counts_one_app_across_tenants_and_names_itself_with_a_retry_after() -> None:
    limits = _limits(per="app")
    assert limits.acquire("graph", "GET", APP_A, T1) is None
    assert limits.acquire("graph", "GET", APP_A, T2) is None
    over = limits.acquire("graph", "GET", APP_A, T1)
    assert over is not None and over[0].name == "test" and 1 <= over[1] <= 60
    assert limits.acquire("graph", "GET", APP_B, T1) is None  # another app has its own window
    assert limits.acquire("exchange", "GET", APP_A, T1) is None  # another service is not counted


def test_a_per_app_and_tenant_limit_counts_each_tenant_apart() -> None:
    limits = _limits(per="app_tenant")
    for _ in range(2):
        assert limits.acquire("graph", "GET", APP_A, T1) is None
    assert limits.acquire("graph", "GET", APP_A, T1) is not None
    assert limits.acquire("graph", "GET", APP_A, T2) is None


def test_a_per_tenant_limit_counts_every_app_together() -> None:
    limits = _limits(per="tenant")
    assert limits.acquire("graph", "GET", APP_A, T1) is None
    assert limits.acquire("graph", "GET", APP_B, T1) is None
    assert limits.acquire("graph", "GET", APP_A, T1) is not None


def test_a_writes_limit_lets_reads_through() -> None:
    limits = _limits(per="app_tenant", writes_only=True)
    for _ in range(5):
        assert limits.acquire("graph", "GET", APP_A, T1) is None
    assert limits.acquire("graph", "POST", APP_A, T1) is None
    assert limits.acquire("graph", "PATCH", APP_A, T1) is None
    assert limits.acquire("graph", "DELETE", APP_A, T1) is not None


def test_a_key_without_app_id_is_counted_by_its_credential_never_kept_in_clear() -> None:
    assert caller_of(None, "Bearer secret-key-1") == caller_of(None, "Bearer secret-key-1")
    assert caller_of(None, "Bearer secret-key-1") != caller_of(None, "Bearer secret-key-2")
    assert "secret" not in (caller_of(None, "Bearer secret-key-1") or "")
    assert caller_of("App-A", "Bearer x") == "app-a"


def test_scenarios_default_to_the_published_limits_and_an_empty_list_turns_them_off() -> None:
    assert Scenario().rate_limits == PUBLISHED_LIMITS
    assert {(s.service, s.per, s.requests, s.per_s) for s in PUBLISHED_LIMITS} >= {("graph", "app", 130_000, 10), ("management_activity", "tenant", 2_000, 60)}
    assert Scenario(rate_limits=[]).rate_limits == []
    with pytest.raises(ValueError, match="per"):
        Scenario.model_validate({"rate_limits": [{"service": "graph", "per": "planet", "requests": 1, "per_s": 1}]})
