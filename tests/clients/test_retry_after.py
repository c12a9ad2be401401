"""Retry-After, in both of its forms (RFC 9110 §10.2.3), is honoured, capped by MAX_RETRY_AFTER_S on every retry."""

from __future__ import annotations

import email.utils
import itertools
import math
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from clients.errors import ApiTimeout, Throttled
from clients.graph import GraphClient
from clients.http import CappedRetry, make_retry, retry_after_seconds
from sandbox.core.tls import TlsFiles
from tasks.context import TenantContext
from tests.clients.tls_stub import Answer, StubServer
from tests.conftest import FRESH
from tests.sandbox_harness import SandboxHandle

NOW = 1_790_000_000.0  # a fixed "now" for the pure parsing cases
THROTTLED = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
ORGANIZATION = {"value": [{"id": FRESH, "displayName": "Fresh Corp"}]}


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


# --- parsing -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("1.5", 1.5),  # not RFC delay-seconds, but some services send it: read rather than dropped
    (_http_date(NOW + 90), 90.0),  # IMF-fixdate: Wed, 21 Oct 2026 07:28:00 GMT
    (email.utils.formatdate(NOW + 30, localtime=False).replace("-0000", "+0000"), 30.0),
    (_http_date(NOW - 3600), 0.0),  # a date in the past: no wait
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    (time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(NOW + 60)), 60.0),  # RFC 850, obsolete but allowed
    (time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(NOW + 45)), 45.0),  # asctime: no zone, read as GMT
])
def test_both_forms_of_retry_after_are_read(value: str, seconds: float) -> None:
    assert retry_after_seconds(value, now=NOW) == pytest.approx(seconds, abs=0.001)


@pytest.mark.parametrize("value", ["", "soon", "-5", "5 seconds", "1e3", "inf", "nan", "Wed, 99 Oct 2026 07:28:00 GMT", "0x10"])
def test_garbage_is_none(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) is None


def test_it_reads_a_response_or_any_kind_of_headers() -> None:
    value = _http_date(NOW + 10)
    for headers in (CaseInsensitiveDict({"retry-after": value}), HTTPHeaderDict({"Retry-After": value}), {"RETRY-AFTER": value}):
        assert retry_after_seconds(headers, now=NOW) == pytest.approx(10.0)
    assert retry_after_seconds({}, now=NOW) is None and retry_after_seconds(None) is None


def test_the_real_date_of_rfc_9110s_example() -> None:
    seconds = retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT")
    expected = max(0.0, 1792567680 - time.time())  # 2026-10-21T07:28:00Z
    assert seconds == pytest.approx(expected, abs=2)


# --- the cap survives urllib3's copies -----------------------------------------------------------------
def test_every_retry_urllib3_makes_keeps_the_configured_cap() -> None:
    retry = make_retry(4, max_retry_after_s=3.0)
    for _ in range(4):
        retry = retry.increment(method="GET", url="/v1.0/organization")
        assert isinstance(retry, CappedRetry) and retry.max_retry_after_s == 3.0
    assert retry.new(total=1).max_retry_after_s == 3.0
    assert retry.new(max_retry_after_s=9.0).max_retry_after_s == 9.0


def test_a_capped_wait_is_min_of_cap_and_header() -> None:
    class Response:
        headers = HTTPHeaderDict({"Retry-After": "600"})

    retry = make_retry(2, max_retry_after_s=5.0)
    assert retry.get_retry_after(Response()) == 5.0
    Response.headers = HTTPHeaderDict({"Retry-After": "garbage"})  # urllib3 itself would raise InvalidHeader
    assert retry.get_retry_after(Response()) is None


def test_a_retry_after_longer_than_max_retry_after_is_handed_back_at_once_never_retried_early(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    """The sandbox asks for 30 s; with MAX_RETRY_AFTER_S=0.3 the call is not sent again 0.3 s later: Throttled, with the 30 s."""
    ctx = make_context(FRESH, timing={"http_retries": 3, "max_retry_after_s": 0.3})
    ctx.tokens.token(FRESH, "https://graph.microsoft.com")  # the token request is not what is timed
    step_sandbox.add_fault(service="graph", kind="throttle", retry_after="30s", count=3)
    started = time.monotonic()
    with pytest.raises(Throttled) as throttled:
        ctx.graph.get_organization()
    assert time.monotonic() - started < 5
    assert throttled.value.retry_after == 30
    assert [r["status"] for r in step_sandbox.request_log(service="graph")] == [429]


def test_a_short_retry_after_is_slept_then_the_request_is_sent_again_a_throttled_write_too(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    """A 429 was refused before Graph acted on it: the invitation POST is sent again after 1 s, and only one guest exists."""
    ctx = make_context(FRESH, timing={"http_retries": 3})
    ctx.tokens.token(FRESH, "https://graph.microsoft.com")
    step_sandbox.add_fault(service="graph", kind="throttle", method="POST", retry_after="1s", count=2)
    ctx.graph.create_invitation("someone@partner.example", "Someone", "https://myapps.microsoft.com", send_message=False)
    posts = step_sandbox.request_log(service="graph", method="POST")
    assert [r["status"] for r in posts] == [429, 429, 201]
    gaps = [(datetime.fromisoformat(b["received_at"]) - datetime.fromisoformat(a["received_at"])).total_seconds() for a, b in itertools.pairwise(posts)]
    assert all(gap >= 1.0 for gap in gaps), gaps


# --- an HTTP-date Retry-After over a real connection ------------------------------------------------------
def _graph(stub: StubServer, tls: TlsFiles, retries: int) -> GraphClient:
    return GraphClient(stub.base_url, authorization=lambda: "Bearer stub-token", tenant_id=FRESH, ca_bundle=tls.ca_cert, retries=retries)


def test_an_http_date_retry_after_is_waited_for_before_the_retry(stub: StubServer, stub_tls: TlsFiles) -> None:
    until = math.ceil(time.time()) + 2  # whole seconds, as an HTTP-date has
    stub.script("/v1.0/organization", Answer(429, THROTTLED, {"Retry-After": _http_date(until)}), Answer(200, ORGANIZATION))
    assert _graph(stub, stub_tls, retries=2).get_organization().display_name == "Fresh Corp"
    first, second = stub.received
    assert second.at >= until - 0.05, f"retried {until - second.at:.2f}s before the date the service named"
    assert second.at - first.at < 5


def test_a_throttled_error_carries_an_http_date_as_seconds(stub: StubServer, stub_tls: TlsFiles) -> None:
    stub.script("/v1.0/organization", Answer(429, THROTTLED, {"Retry-After": _http_date(time.time() + 600)}))
    with pytest.raises(Throttled) as caught:
        _graph(stub, stub_tls, retries=0).get_organization()
    assert caught.value.retry_after is not None and 590 <= caught.value.retry_after <= 600  # the service's whole wait, uncapped


@pytest.mark.parametrize(("header", "expected"), [(_http_date(time.time() - 60), 0.0), ("whenever", None)],
                         ids=["a-minute-ago", "garbage"])  # fixed ids: every pytest-xdist worker must collect the same tests
def test_a_past_date_is_no_wait_and_garbage_is_backoff_not_a_crash(stub: StubServer, stub_tls: TlsFiles, header: str, expected: float | None) -> None:
    stub.script("/v1.0/organization", Answer(429, THROTTLED, {"Retry-After": header}))
    started = time.monotonic()
    with pytest.raises(Throttled) as caught:
        _graph(stub, stub_tls, retries=1).get_organization()
    assert caught.value.retry_after == expected
    assert len(stub.received) == 2 and time.monotonic() - started < 5


def test_an_answer_that_drips_in_slower_than_the_read_timeout_is_a_timeout(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    """The headers come at once, then the body stops: a timeout (retried as one), not a refused connection."""
    ctx = make_context(FRESH, timing={"http_retries": 0, "http_timeout_s": 0.3})
    ctx.tokens.token(FRESH, "https://graph.microsoft.com")  # the token request is not what drips
    step_sandbox.add_fault(service="graph", kind="drip", delay="4s", chunks=4, count=1)  # a piece every second
    with pytest.raises(ApiTimeout):
        ctx.graph.get_organization()


def test_a_retry_after_holds_every_request_of_the_client_not_only_the_one_it_answered(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    """Microsoft throttles per app, tenant and service: the run's other calls to Graph wait too."""
    ctx = make_context(FRESH, timing={"http_retries": 0})
    ctx.tokens.token(FRESH, "https://graph.microsoft.com")
    step_sandbox.add_fault(service="graph", kind="throttle", retry_after="1s", count=1)
    with pytest.raises(Throttled):
        ctx.graph.get_organization()
    ctx.graph.find_users_by_address("nobody@fresh.example")  # another call, at once
    throttled, after = step_sandbox.request_log(service="graph")[-2:]
    assert throttled["status"] == 429 and after["status"] == 200
    gap = (datetime.fromisoformat(after["received_at"]) - datetime.fromisoformat(throttled["received_at"])).total_seconds()
    assert gap >= 1.0, f"the next request came {gap:.2f}s after a Retry-After of 1 s"
