"""Sizing the call budget: never more than its share of a published limit in any window."""

from __future__ import annotations

import logging

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.settings import BudgetSettings, Rate
from tasks import budget
from tasks.budget import SLOTS_PER_CALL, BudgetLimit, service_budgets
from tests.sandbox_harness import free_port_block


def _most_in_any_window(limit: BudgetLimit, window_s: float, horizon_s: float, step_s: float = 0.01) -> int:
    """Calls a greedy caller gets from the token bucket in its worst window (the bucket full at the start)."""
    tokens, granted, t = float(limit.limit), [], 0.0
    while t < horizon_s:
        tokens = min(limit.limit, tokens + limit.slot_decay_per_second * step_s)
        while tokens >= SLOTS_PER_CALL:
            tokens -= SLOTS_PER_CALL
            granted.append(t)
        t += step_s
    return max(sum(1 for g in granted if start <= g < start + window_s) for start in granted)


@pytest.mark.parametrize("rate", [Rate(requests=150, per_s=5), Rate(requests=3_000, per_s=150), Rate(requests=30, per_s=10)])
def test_the_bucket_never_lets_more_than_its_share_through_in_a_sliding_window(rate: Rate) -> None:
    settings = BudgetSettings()
    limit = BudgetLimit.of("m365-budget:test", rate, settings.share, settings.burst, "tenant")
    most = _most_in_any_window(limit, rate.per_s, horizon_s=rate.per_s * 3)
    assert most <= rate.requests * settings.share + 1  # +1: a grant exactly on the window's edge
    assert most >= rate.requests * settings.share * 0.9  # and it does not starve


def test_a_graph_write_to_invitations_spends_the_app_tenant_writes_and_invitations_limits() -> None:
    budgets = service_budgets(BudgetSettings(), client_id="app-1", tenant_id="t-1", workbench_key="wb")
    graph = budgets["graph"]
    names = [limit.name for limit in graph.limits("POST", "/v1.0/invitations")]
    assert names == ["m365-budget:graph:app:app-1", "m365-budget:graph:tenant:app-1:t-1",
                     "m365-budget:graph-writes:tenant:app-1:t-1", "m365-budget:graph-invitations:tenant:t-1"]
    reads = [limit.name for limit in graph.limits("GET", "/v1.0/organization")]
    assert reads == names[:2]
    assert budgets["workbench"].limits("GET", "/api/v2/x") == []  # no published figure: unbudgeted


def test_the_budget_off_budgets_nothing() -> None:
    assert service_budgets(BudgetSettings(enabled=False), client_id="a", tenant_id="t", workbench_key=None) == {}


def test_an_unreachable_prefect_server_lets_the_call_go_out_unbudgeted_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                                                 caplog: pytest.LogCaptureFixture) -> None:
    # A days-long run must not stop because Prefect is down or its SQLite is locked: Microsoft's
    # own Retry-After still holds the client (clients/http.py).
    monkeypatch.setattr(budget, "UNREACHABLE_RETRY_DELAYS_S", (0.01,))
    monkeypatch.setattr(budget, "_last_warning", 0.0)
    graph = service_budgets(BudgetSettings(), client_id="app-1", tenant_id="t-1", workbench_key=None)["graph"]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port_block(1)}/api"}), caplog.at_level(logging.WARNING, "m365_onboarding.budget"):
        graph("GET", "/v1.0/organization")  # returns: the call may be sent
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages  # one line, not one per attempt
    assert "call budget unreachable" in messages[0] and "graph calls go out unbudgeted" in messages[0]
