"""Faults the reliability suite needs, seen the way a client sees them: probabilistic hits, an
HTTP-date Retry-After, a connection dropped before or after the write, a body that trickles in,
and a request log that tells whether a client waited out its Retry-After.
"""

from __future__ import annotations

import email.utils
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from urllib3.exceptions import ReadTimeoutError

from clients.http import retry_after_seconds
from tests.conftest import FRESH
from tests.sandbox_harness import SandboxHandle, sent_before_retry_after

ORGANIZATION = "/v1.0/organization"
INVITATIONS = "/v1.0/invitations"
GUEST = "reset-analyst@mdr.example"


def _graph(sandbox: SandboxHandle) -> requests.Session:
    session = sandbox.session()
    session.headers["Authorization"] = f"Bearer {sandbox.token(FRESH)}"
    return session


def _get(sandbox: SandboxHandle, session: requests.Session, timeout: float = 30, **kwargs: object) -> requests.Response:
    return session.get(f"{sandbox.base_url('graph')}{ORGANIZATION}", timeout=timeout, **kwargs)  # type: ignore[arg-type]


def _invite(sandbox: SandboxHandle, session: requests.Session) -> requests.Response:
    body = {"invitedUserEmailAddress": GUEST, "inviteRedirectUrl": "https://myapps.microsoft.com"}
    return session.post(f"{sandbox.base_url('graph')}{INVITATIONS}", json=body, timeout=30)


def _guests(sandbox: SandboxHandle) -> list[dict]:
    return sandbox.tenant_state(FRESH)["directory"]["users"]


# --- probability --------------------------------------------------------------------------------------


def _hit_pattern(sandbox: SandboxHandle, requests_sent: int, **spec: object) -> list[bool]:
    """Which of ``requests_sent`` identical GETs a throttle fault with ``spec`` hit, from a fresh sandbox."""
    sandbox.reset()
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="throttle", path_contains=ORGANIZATION, **spec)
    return [_get(sandbox, graph).status_code == 429 for _ in range(requests_sent)]


def test_a_probability_hits_about_that_share_and_a_seed_repeats_the_same_hits(sandbox: SandboxHandle) -> None:
    first = _hit_pattern(sandbox, 500, probability=0.2, seed=2024)
    second = _hit_pattern(sandbox, 500, probability=0.2, seed=2024)
    assert 70 <= sum(first) <= 130
    assert second == first  # the same requests in the same order: the same hits, not just as many
    (fault,) = sandbox.admin("GET", "faults").json()
    assert (fault["hits"], fault["seed"]) == (sum(second), 2024)


def test_without_a_seed_the_fault_id_seeds_it_and_a_reset_numbers_faults_from_one(sandbox: SandboxHandle) -> None:
    first = _hit_pattern(sandbox, 100, probability=0.5)
    (fault,) = sandbox.admin("GET", "faults").json()
    assert (fault["id"], fault["seed"]) == (1, 1)
    assert _hit_pattern(sandbox, 100, probability=0.5) == first
    assert _hit_pattern(sandbox, 100, probability=0.5, seed=1) == first


def test_count_still_caps_the_hits_of_a_probable_fault(sandbox: SandboxHandle) -> None:
    assert sum(_hit_pattern(sandbox, 60, probability=0.5, count=3, seed=5)) == 3


# --- Retry-After formats and the request log -------------------------------------------------------------


def test_an_http_date_retry_after_is_real_now_plus_retry_after(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="throttle", count=1, retry_after="30s", retry_after_format="http-date")
    response = _get(sandbox, graph)
    received = datetime.now(UTC)
    assert response.status_code == 429
    header = response.headers["Retry-After"]
    assert header.endswith(" GMT") and not header.isdigit()
    wait = (email.utils.parsedate_to_datetime(header) - received).total_seconds()
    assert 29 <= wait <= 31  # rounded up to the whole second the date can carry
    assert 29 <= (retry_after_seconds(response) or 0) <= 31  # the project's own reader agrees
    assert sandbox.request_log(service="graph")[-1]["retry_after_s"] == 30


def test_an_http_date_also_replaces_the_retry_after_a_service_sends_by_default(sandbox: SandboxHandle) -> None:
    sandbox.add_fault(service="login", kind="throttle", count=1, retry_after_format="http-date")
    token_url = f"{sandbox.base_url('login')}/{FRESH}/oauth2/v2.0/token"
    response = sandbox.session().post(token_url, data={"grant_type": "client_credentials"}, timeout=30)
    assert response.status_code == 429
    assert 0 <= (email.utils.parsedate_to_datetime(response.headers["Retry-After"]) - datetime.now(UTC)).total_seconds() <= 2
    assert sandbox.request_log(service="login")[-1]["retry_after_s"] == 1


def test_the_log_has_real_receipt_times_beside_scenario_times(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    _get(sandbox, graph)
    sandbox.advance("2h")
    time.sleep(0.3)
    _get(sandbox, graph)
    first, second = sandbox.request_log(service="graph")
    real = datetime.fromisoformat(second["received_at"]) - datetime.fromisoformat(first["received_at"])
    scenario = datetime.fromisoformat(second["at"]) - datetime.fromisoformat(first["at"])
    assert 0.3 <= real.total_seconds() < 60 <= 7200 <= scenario.total_seconds()
    assert abs((datetime.now(UTC) - datetime.fromisoformat(second["received_at"])).total_seconds()) < 30
    assert (first["retry_after_s"], first["fault"], first["response_sent"]) == (None, None, True)


def test_the_log_tells_a_request_sent_before_its_retry_after_from_one_sent_after(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="unavailable", count=1, retry_after="1s")
    assert _get(sandbox, graph).status_code == 503
    assert _get(sandbox, graph).status_code == 200  # at once: too early
    impatient = sandbox.request_log(service="graph")
    assert [(a["status"], e["seq"]) for a, e in sent_before_retry_after(impatient)] == [(503, impatient[1]["seq"])]
    assert impatient[0]["retry_after_s"] == 1 and impatient[0]["fault"].startswith("unavailable#")

    sandbox.reset()
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="unavailable", count=1, retry_after="1s", retry_after_format="http-date")
    response = _get(sandbox, graph)
    time.sleep(retry_after_seconds(response) or 0)
    assert _get(sandbox, graph).status_code == 200
    assert sent_before_retry_after(sandbox.request_log(service="graph")) == []


def test_graphs_own_throttling_is_logged_with_its_retry_after(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    url = f"{sandbox.base_url('graph')}{INVITATIONS}"

    def invite(i: int) -> int:
        body = {"invitedUserEmailAddress": f"analyst{i}@mdr.example", "inviteRedirectUrl": "https://myapps.microsoft.com"}
        return graph.post(url, json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:  # 150 per 5 s must be passed even on a busy machine
        statuses = list(pool.map(invite, range(170)))
    throttled = [e for e in sandbox.request_log(service="graph", method="POST") if e["status"] == 429]
    assert statuses.count(429) == len(throttled) >= 1
    assert all(1 <= e["retry_after_s"] <= 5 and e["fault"] is None for e in throttled)


# --- reset ---------------------------------------------------------------------------------------------------


def test_a_reset_before_the_request_is_handled_changes_nothing_and_is_a_connection_error(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="reset", method="POST", path_contains=INVITATIONS, count=1)
    with pytest.raises(requests.ConnectionError) as raised:
        _invite(sandbox, graph)
    assert not isinstance(raised.value, requests.Timeout)
    assert _guests(sandbox) == []
    (entry,) = sandbox.request_log(service="graph", method="POST")
    assert (entry["status"], entry["response_sent"], entry["operation"]) == (0, False, None)
    assert entry["fault"].startswith("reset#")
    assert _invite(sandbox, graph).status_code == 201  # the same session carries on, on a new connection


def test_a_reset_after_apply_makes_the_write_but_the_client_never_learns_it(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="reset", after_apply=True, method="POST", path_contains=INVITATIONS, count=1)
    with pytest.raises(requests.ConnectionError):
        _invite(sandbox, graph)
    (user,) = _guests(sandbox)
    assert user["mail"] == GUEST
    (entry,) = sandbox.request_log(service="graph", method="POST")
    assert (entry["status"], entry["response_sent"], entry["operation"]) == (201, False, "create_invitation")
    assert entry["fault"].startswith("reset#")


# --- drip ------------------------------------------------------------------------------------------------


def test_a_dripped_body_arrives_whole_for_a_patient_client(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    expected = _get(sandbox, graph).json()
    sandbox.add_fault(service="graph", kind="drip", delay="1s", chunks=4, count=1)
    started = time.perf_counter()
    response = _get(sandbox, graph, timeout=5, stream=True)
    headers_after = time.perf_counter() - started
    assert response.status_code == 200 and int(response.headers["Content-Length"]) > 4
    assert response.json() == expected
    assert headers_after < 0.2 <= 0.9 <= time.perf_counter() - started  # status at once, the body over the delay


def test_a_dripped_body_times_out_a_client_whose_read_timeout_is_shorter_than_the_gap(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="drip", delay="2s", chunks=4, count=1)  # a piece every 0.5 s
    with pytest.raises(requests.ConnectionError) as raised:
        _get(sandbox, graph, timeout=0.1)
    # The status line came in time, so requests reports the stall while reading the body as a
    # ConnectionError wrapping urllib3's ReadTimeoutError, not as requests.ReadTimeout.
    assert isinstance(raised.value.args[0], ReadTimeoutError)
    assert not isinstance(raised.value, requests.Timeout)


def test_a_slow_fault_longer_than_the_read_timeout_is_a_read_timeout(sandbox: SandboxHandle) -> None:
    graph = _graph(sandbox)
    sandbox.add_fault(service="graph", kind="slow", delay="1s", count=1)
    with pytest.raises(requests.ReadTimeout):  # nothing arrived yet, unlike drip
        _get(sandbox, graph, timeout=0.2)


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        ({"service": "graph", "kind": "throttle", "probability": 0}, "probability"),
        ({"service": "graph", "kind": "throttle", "probability": 1.5}, "probability"),
        ({"service": "graph", "kind": "throttle", "retry_after_format": "rfc850"}, "retry_after_format"),
        ({"service": "graph", "kind": "slow", "retry_after_format": "http-date"}, "retry_after_format applies"),
        ({"service": "graph", "kind": "throttle", "after_apply": True}, "after_apply applies"),
        ({"service": "graph", "kind": "slow", "chunks": 3}, "chunks applies"),
        ({"service": "graph", "kind": "drip", "chunks": 0}, "chunks"),
    ],
)
def test_an_invalid_new_fault_option_is_refused(sandbox: SandboxHandle, spec: dict, mentions: str) -> None:
    response = sandbox.admin("POST", "faults", json=spec)
    assert response.status_code == 400 and mentions in response.json()["detail"]
