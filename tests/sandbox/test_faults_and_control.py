"""The control plane tests rely on: fault injection, the request log, the clock and reset."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import CONFIGURED, FRESH
from tests.sandbox_harness import SandboxHandle

PARTNERS = "/v1.0/policies/crossTenantAccessPolicy/partners"


def _graph(sandbox: SandboxHandle, tenant: str = FRESH) -> requests.Session:
    session = sandbox.session()
    session.headers["Authorization"] = f"Bearer {sandbox.token(tenant)}"
    return session


def _organization(sandbox: SandboxHandle, session: requests.Session) -> requests.Response:
    return session.get(f"{sandbox.base_url('graph')}/v1.0/organization", timeout=30)


def test_unavailable_fault_answers_503_the_given_number_of_times(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="unavailable", count=2, retry_after="5s")
    statuses = [_organization(sandbox, graph) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "5"
    assert statuses[0].json()["error"]["code"] == "serviceNotAvailable"


def test_outage_window_follows_scenario_time(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="outage", starts_after="1h", lasts="30m")
    assert _organization(sandbox, graph).status_code == 200
    sandbox.advance("1h")
    assert _organization(sandbox, graph).status_code == 503
    sandbox.advance("31m")
    assert _organization(sandbox, graph).status_code == 200


def test_slow_fault_delays_then_serves(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="slow", delay="600ms", count=1)
    started = time.perf_counter()
    response = _organization(sandbox, graph)
    assert response.status_code == 200 and time.perf_counter() - started >= 0.6


def test_faults_match_only_their_method_and_tenant(sandbox: SandboxHandle) -> None:
    sandbox.add_fault(service="graph", kind="throttle", method="POST", tenant_id=CONFIGURED)
    fresh, configured = _graph(sandbox, FRESH), _graph(sandbox, CONFIGURED)
    assert _organization(sandbox, configured).status_code == 200
    body = {"tenantId": "12345678-1234-4234-8234-123456789012"}
    assert fresh.post(f"{sandbox.base_url('graph')}{PARTNERS}", json=body).status_code == 201
    assert configured.post(f"{sandbox.base_url('graph')}{PARTNERS}", json=body).status_code == 429


def test_fault_list_counts_hits_and_faults_can_be_removed(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    fault = sandbox.add_fault(service="graph", kind="throttle")
    _organization(sandbox, graph)
    listed = sandbox.admin("GET", "faults").json()
    assert [(f["id"], f["hits"]) for f in listed] == [(fault["id"], 1)]
    assert sandbox.admin("DELETE", f"faults/{fault['id']}").json() == {"removed": 1}
    assert _organization(sandbox, graph).status_code == 200
    assert sandbox.admin("DELETE", "faults/999").status_code == 404


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        ({"service": "teams", "kind": "throttle"}, "service"),
        ({"service": "graph", "kind": "explode"}, "kind"),
        ({"service": "graph", "kind": "slow", "delay": "a while"}, "not a duration"),
    ],
)
def test_an_invalid_fault_is_refused_with_the_reason(sandbox: SandboxHandle, spec: dict, mentions: str) -> None:
    response = sandbox.admin("POST", "faults", json=spec)
    assert response.status_code == 400 and mentions in response.json()["detail"]


def test_request_log_records_every_served_request_with_its_ids(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    graph.headers["client-request-id"] = "my-correlation-id"
    response = _organization(sandbox, graph)
    entries = sandbox.request_log(service="graph")
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/v1.0/organization", 200)
    assert entry["tenant_id"] == FRESH and entry["app_id"] == sandbox.client_id
    assert entry["request_id"] == response.headers["request-id"]
    assert entry["client_request_id"] == response.headers["client-request-id"] == "my-correlation-id"
    assert entry["operation"] == "list_organization"
    assert sandbox.request_log(service="graph", since=entry["seq"]) == []
    assert sandbox.request_log(service="graph", tenant=CONFIGURED) == []


def test_admin_calls_are_not_logged_nor_faulted(sandbox: SandboxHandle) -> None:
    sandbox.add_fault(service="login", kind="unavailable")
    assert sandbox.admin("GET", "tenants").status_code == 200
    assert sandbox.request_log() == []


def test_clock_only_moves_forward_and_refuses_nonsense(sandbox: SandboxHandle) -> None:
    assert sandbox.admin("POST", "clock/advance", json={"by": "later"}).status_code == 400
    assert sandbox.admin("POST", "clock/advance", json={"by": "-5m"}).status_code == 400


def test_reset_restores_the_scenario_state(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    assert graph.post(f"{sandbox.base_url('graph')}{PARTNERS}", json={"tenantId": "12345678-1234-4234-8234-123456789012"}).status_code == 201
    assert len(sandbox.tenant_state(FRESH)["directory"]["partners"]) == 1
    sandbox.reset()
    assert sandbox.tenant_state(FRESH)["directory"]["partners"] == []
    assert sandbox.admin("GET", "tenants/00000000-0000-4000-8000-000000000000").status_code == 404


def test_every_service_answers_unknown_paths_loudly_in_its_own_format(sandbox: SandboxHandle) -> None:
    session = sandbox.session()
    graph = session.get(f"{sandbox.base_url('graph')}/beta/users").json()
    login = session.get(f"{sandbox.base_url('login')}/common/oauth2/authorize").json()
    workbench = session.get(f"{sandbox.base_url('workbench')}/api/v3/things").json()
    assert graph["error"]["code"] == "NotEmulated"
    assert login["error"] == "not_emulated"
    assert workbench["errors"][0]["code"] == "ENOTEMULATED"
