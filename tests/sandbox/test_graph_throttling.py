"""Graph's own invitation limit (150 per 5 s per tenant), apart from injected faults."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import FRESH
from tests.sandbox_harness import SandboxHandle


def test_the_151st_invitation_within_five_seconds_is_throttled_with_retry_after(sandbox: SandboxHandle) -> None:
    session = sandbox.session()
    session.headers["Authorization"] = f"Bearer {sandbox.token(FRESH)}"
    url = f"{sandbox.base_url('graph')}/v1.0/invitations"

    def invite(i: int) -> tuple[int, str | None]:
        body = {"invitedUserEmailAddress": f"analyst{i}@mdr.example", "inviteRedirectUrl": "https://myapps.microsoft.com"}
        response = session.post(url, json=body, timeout=30)
        return response.status_code, response.headers.get("Retry-After")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(invite, range(170)))
    throttled = [retry for status, retry in results if status == 429]
    assert sum(1 for status, _ in results if status == 201) <= 150
    assert throttled and all(retry is not None and 1 <= int(retry) <= 5 for retry in throttled)


def test_a_throttle_fault_without_retry_after_sends_none_as_directory_429s_may(sandbox: SandboxHandle) -> None:
    session = sandbox.session()
    session.headers["Authorization"] = f"Bearer {sandbox.token(FRESH)}"
    sandbox.add_fault(service="graph", kind="throttle", count=1)
    response = session.get(f"{sandbox.base_url('graph')}/v1.0/organization")
    assert response.status_code == 429 and "Retry-After" not in response.headers
    assert response.json()["error"]["code"] == "TooManyRequests"
    entry = sandbox.request_log(service="graph")[-1]
    assert entry["fault"].startswith("throttle#") and entry["app_id"] == sandbox.client_id
