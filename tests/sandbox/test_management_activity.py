"""Office 365 Management Activity API as the sandbox emulates it, seen from a client over HTTPS.

Each test checks what a client sees: status, ``error.code`` and message (reference §8), headers
(``NextPageUri``, ``Retry-After``, ``request-id``) and the response shapes of the API reference.
Delays (audit activation, first content, the 15-minute start rule) are crossed with
``sandbox.advance``, never by sleeping. Tokens come from msal; only tokens msal cannot produce
(for a tenant the sandbox does not know) are minted with the sandbox's signing key.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from sandbox.core.tokens import TokenSigner
from tests.conftest import CONFIGURED, DEHYDRATED, FRESH, PARTIAL, PROVIDER_TENANT
from tests.sandbox_harness import SandboxHandle, start_sandbox

MANAGE = "https://manage.office.com"
EXCHANGE = "https://outlook.office365.com"
AUDIT_ANCHOR = "APP:SystemMailbox{8cc370d3-822a-4ab8-a926-bb94bd0641a9}@"
PUBLISHER = PROVIDER_TENANT
CONTENT_TYPES = ["Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"]
UNKNOWN_TENANT = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
BUSY = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
WINDOW_RULE = "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart"


# --- helpers ------------------------------------------------------------------------------------------
class Feed:
    """The activity feed of one tenant, called as a client does (PublisherIdentifier on every call)."""

    def __init__(self, sandbox: SandboxHandle, tenant: str, token: str | None = None, *, use_token: bool = True) -> None:
        self.sandbox, self.tenant = sandbox, tenant
        self.root = f"{sandbox.base_url('management_activity')}/api/v1.0/{tenant}/activity/feed"
        self.http = sandbox.session()
        if use_token:
            self.http.headers["Authorization"] = f"Bearer {token or sandbox.token(tenant, MANAGE)}"

    def call(self, method: str, op: str, **params: Any) -> requests.Response:
        json = params.pop("json", None)
        return self.http.request(method, f"{self.root}/{op}", params={"PublisherIdentifier": PUBLISHER, **params}, json=json, timeout=30)

    def start(self, content_type: str = "Audit.General", **kwargs: Any) -> requests.Response:
        return self.call("POST", "subscriptions/start", contentType=content_type, **kwargs)

    def stop(self, content_type: str = "Audit.General") -> requests.Response:
        return self.call("POST", "subscriptions/stop", contentType=content_type)

    def list(self) -> requests.Response:
        return self.call("GET", "subscriptions/list")

    def content(self, content_type: str = "Audit.General", **window: Any) -> requests.Response:
        return self.call("GET", "subscriptions/content", contentType=content_type, **window)

    def blobs(self, content_type: str = "Audit.General", **window: Any) -> builtins.list[dict[str, Any]]:  # `list` here is Feed.list
        response = self.content(content_type, **window)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, url: str) -> requests.Response:
        return self.http.get(url, params={"PublisherIdentifier": PUBLISHER}, timeout=30)


def enable_auditing(sandbox: SandboxHandle, tenant: str) -> None:
    """Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true through the Exchange port."""
    session = sandbox.session()
    response = session.post(
        f"{sandbox.base_url('exchange')}/adminapi/beta/{tenant}/InvokeCommand",
        json={"CmdletInput": {"CmdletName": "Set-AdminAuditLogConfig", "Parameters": {"UnifiedAuditLogIngestionEnabled": True}}},
        headers={"Authorization": f"Bearer {sandbox.token(tenant, EXCHANGE)}", "X-AnchorMailbox": f"{AUDIT_ANCHOR}{tenant}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def activated_feed(sandbox: SandboxHandle, tenant: str = FRESH) -> Feed:
    """A tenant whose auditing was switched on and has taken effect (FRESH: 45 min activation delay)."""
    enable_auditing(sandbox, tenant)
    sandbox.advance("61m")
    return Feed(sandbox, tenant)


def wire_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def created(blob: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(blob["contentCreated"].replace("Z", "+00:00"))


def sandbox_now(sandbox: SandboxHandle) -> datetime:
    return datetime.fromisoformat(sandbox.admin("GET", "clock").json()["now"].replace("Z", "+00:00"))


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["request-id"]
    error = response.json()["error"]
    assert error["code"] == code, error
    if message is not None:
        assert message in error["message"], error["message"]
    return error


# --- subscriptions -------------------------------------------------------------------------------------
def test_list_shows_a_configured_tenants_subscriptions(sandbox: SandboxHandle) -> None:
    listed = Feed(sandbox, CONFIGURED).list()
    assert listed.status_code == 200
    assert listed.json() == [{"contentType": ct, "status": "enabled", "webhook": None} for ct in CONTENT_TYPES]


def test_list_is_empty_before_any_start(sandbox: SandboxHandle) -> None:
    assert Feed(sandbox, FRESH).list().json() == []


def test_start_while_auditing_is_off_fails_with_the_data_service_exception(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, FRESH).start("Audit.Exchange")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"].startswith("StartSubscription [") and error["code"].endswith("] failed. Exception")
    assert f"TenantId={FRESH},ContentType=Audit.Exchange,ApplicationId={sandbox.client_id},PublisherId={PUBLISHER}" in error["code"]
    assert error["message"].startswith(f"Microsoft.Office.Compliance.Audit.DataServiceException: Tenant {FRESH} does not exist.")


def test_start_keeps_failing_until_the_audit_setting_takes_effect(sandbox: SandboxHandle) -> None:
    enable_auditing(sandbox, FRESH)
    feed = Feed(sandbox, FRESH)
    assert "DataServiceException" in feed.start().json()["error"]["message"]
    sandbox.advance("61m")
    started = feed.start()
    assert started.status_code == 200
    assert started.json() == {"contentType": "Audit.General", "status": "enabled", "webhook": None}
    assert feed.list().json() == [{"contentType": "Audit.General", "status": "enabled", "webhook": None}]


def test_dehydrated_tenant_needs_customization_then_an_hour(sandbox: SandboxHandle) -> None:
    exo = sandbox.session()
    url = f"{sandbox.base_url('exchange')}/adminapi/beta/{DEHYDRATED}/InvokeCommand"
    headers = {"Authorization": f"Bearer {sandbox.token(DEHYDRATED, EXCHANGE)}", "X-AnchorMailbox": f"{AUDIT_ANCHOR}{DEHYDRATED}"}
    body = {"CmdletInput": {"CmdletName": "Enable-OrganizationCustomization", "Parameters": {}}}
    assert exo.post(url, json=body, headers=headers, timeout=30).status_code == 200
    enable_auditing(sandbox, DEHYDRATED)
    feed = Feed(sandbox, DEHYDRATED)
    sandbox.advance("59m")  # the tenant's activation delay is 60 minutes
    assert feed.start().status_code == 400
    sandbox.advance("2m")
    assert feed.start().status_code == 200


def test_start_of_an_enabled_subscription_is_af20024(sandbox: SandboxHandle) -> None:
    assert_error(Feed(sandbox, CONFIGURED).start(), 400, "AF20024", "The subscription is already enabled. No property change.")


def test_a_second_start_within_15_minutes_is_throttled(sandbox: SandboxHandle) -> None:
    feed = activated_feed(sandbox)
    assert feed.start().status_code == 200
    sandbox.advance("5m")
    throttled = feed.start()
    assert_error(throttled, 429, "AF429", "Too many frequent subscription start requests. Please retry again after 10m")
    assert 590 <= int(throttled.headers["Retry-After"]) <= 600
    sandbox.advance("11m")
    assert_error(feed.start(), 400, "AF20024")


def test_stop_disables_the_subscription(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    stopped = feed.stop("Audit.Exchange")
    assert stopped.status_code == 200 and stopped.content == b""
    statuses = {s["contentType"]: s["status"] for s in feed.list().json()}
    assert statuses["Audit.Exchange"] == "disabled" and statuses["Audit.General"] == "enabled"


def test_content_of_a_stopped_subscription_is_af20023(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    url = feed.blobs()[0]["contentUri"]
    feed.stop()
    assert_error(feed.content(), 400, "AF20023", "The subscription was disabled.")
    assert_error(feed.get(url), 400, "AF20023")


def test_a_restart_within_15_minutes_of_stop_answers_enabled_but_stays_disabled_until_then(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    feed.stop()
    sandbox.advance("1m")
    restarted = feed.start()
    assert restarted.status_code == 200 and restarted.json()["status"] == "enabled"
    assert_error(feed.content(), 400, "AF20023")
    sandbox.advance("15m")
    assert feed.content().status_code == 200


def test_stop_of_a_subscription_never_started_is_af20022(sandbox: SandboxHandle) -> None:
    assert_error(Feed(sandbox, FRESH).stop(), 400, "AF20022", "No subscription found for the specified content type.")


def test_start_with_a_webhook_echoes_it_and_lists_it(sandbox: SandboxHandle) -> None:
    feed = activated_feed(sandbox)
    webhook = {"address": "https://webhook.mdr.example/o365", "authId": "o365notify", "expiration": ""}
    started = feed.start(json={"webhook": webhook})
    expected = {"status": "enabled", "address": webhook["address"], "authId": "o365notify", "expiration": None}
    assert started.json() == {"contentType": "Audit.General", "status": "enabled", "webhook": expected}
    assert feed.list().json()[0]["webhook"] == expected


def test_a_plain_http_webhook_is_af20021(sandbox: SandboxHandle) -> None:
    feed = activated_feed(sandbox)
    response = feed.start(json={"webhook": {"address": "http://webhook.mdr.example/o365"}})
    assert_error(response, 400, "AF20021", "The address must begin with HTTPS.")


@pytest.mark.parametrize(("content_type", "code"), [(None, "AF20001"), ("Audit.Everything", "AF20020")])
def test_start_needs_a_valid_content_type(sandbox: SandboxHandle, content_type: str | None, code: str) -> None:
    feed = Feed(sandbox, CONFIGURED)
    response = feed.call("POST", "subscriptions/start", **({"contentType": content_type} if content_type else {}))
    assert_error(response, 400, code)


def test_content_types_are_matched_case_insensitively(sandbox: SandboxHandle) -> None:
    assert Feed(sandbox, CONFIGURED).content("audit.general").status_code == 200


# --- content -------------------------------------------------------------------------------------------
def test_content_before_any_start_is_af20022(sandbox: SandboxHandle) -> None:
    assert_error(Feed(sandbox, FRESH).content(), 400, "AF20022", "No subscription found for the specified content type.")


def test_configured_tenant_lists_the_last_24_hours_of_content(sandbox: SandboxHandle) -> None:
    blobs = Feed(sandbox, CONFIGURED).blobs()
    assert len(blobs) == 24  # one per hour (content_interval 1h)
    first = blobs[0]
    assert set(first) == {"contentType", "contentId", "contentUri", "contentCreated", "contentExpiration"}
    assert first["contentType"] == "Audit.General"
    assert first["contentId"].endswith("$audit_general$Audit_General")
    assert first["contentUri"] == f"{sandbox.base_url('management_activity')}/api/v1.0/{CONFIGURED}/activity/feed/audit/{first['contentId']}"
    assert datetime.fromisoformat(first["contentExpiration"].replace("Z", "+00:00")) - created(first) == timedelta(days=7)
    assert [created(b) for b in blobs] == sorted(created(b) for b in blobs)


def test_new_subscription_gets_content_after_the_first_content_delay_then_every_interval(sandbox: SandboxHandle) -> None:
    feed = activated_feed(sandbox)
    assert feed.start().status_code == 200
    assert feed.blobs() == []
    sandbox.advance("119m")  # first_content_delay is 2 h after the later of activation and start
    assert feed.blobs() == []
    sandbox.advance("2m")
    assert len(feed.blobs()) == 1
    sandbox.advance("60m")  # content_interval is 1 h
    assert len(feed.blobs()) == 2


def test_a_blob_holds_realistic_deterministic_records(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    blob = feed.blobs("Audit.Exchange")[-1]
    response = feed.get(blob["contentUri"])
    assert response.status_code == 200
    records = response.json()
    assert 2 <= len(records) <= 5
    for record in records:
        assert {"CreationTime", "Id", "Operation", "OrganizationId", "RecordType", "UserId", "Workload", "UserType", "ResultStatus"} <= set(record)
        assert record["OrganizationId"] == CONFIGURED and record["Workload"] == "Exchange"
        assert record["UserId"].endswith("@configured.onmicrosoft.com")
        assert datetime.fromisoformat(record["CreationTime"]).replace(tzinfo=UTC) < created(blob)
    assert feed.get(blob["contentUri"]).json() == records  # the same blob always holds the same records


def test_window_returns_content_created_from_start_up_to_but_not_including_end(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    blobs = feed.blobs()
    first, last = created(blobs[3]), created(blobs[6])
    inside = feed.blobs(startTime=first.isoformat(), endTime=last.isoformat())
    assert [b["contentId"] for b in inside] == [b["contentId"] for b in blobs[3:6]]


def test_a_window_with_only_a_start_time_is_af20030(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, CONFIGURED).content(startTime=wire_time(sandbox_now(sandbox) - timedelta(hours=2)))
    assert_error(response, 400, "AF20030", WINDOW_RULE)


def test_a_window_longer_than_24_hours_is_af20055(sandbox: SandboxHandle) -> None:
    now = sandbox_now(sandbox)
    response = Feed(sandbox, CONFIGURED).content(startTime=wire_time(now - timedelta(hours=25)), endTime=wire_time(now))
    assert_error(response, 400, "AF20055", WINDOW_RULE)


def test_a_window_starting_more_than_7_days_back_is_af20055(sandbox: SandboxHandle) -> None:
    now = sandbox_now(sandbox)
    response = Feed(sandbox, CONFIGURED).content(startTime=wire_time(now - timedelta(days=9)), endTime=wire_time(now - timedelta(days=8, hours=12)))
    assert_error(response, 400, "AF20055")


def test_a_time_that_is_not_a_date_is_af20002(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, CONFIGURED).content(startTime="yesterday", endTime="today")
    assert_error(response, 400, "AF20002", "Invalid parameter type: startTime. Expected type: datetime")


def test_date_only_windows_are_accepted(sandbox: SandboxHandle) -> None:
    today = sandbox_now(sandbox).date()
    response = Feed(sandbox, CONFIGURED).content(startTime=(today - timedelta(days=1)).isoformat(), endTime=today.isoformat())
    assert response.status_code == 200 and len(response.json()) == 24


@pytest.mark.parametrize(
    ("content_id", "code"),
    [
        ("not-a-content-id", "AF20052"),
        ("20200101000000000000001$20200101000000000000001$audit_general$Audit_General", "AF20050"),
    ],
)
def test_bad_or_unknown_content_ids_are_refused(sandbox: SandboxHandle, content_id: str, code: str) -> None:
    feed = Feed(sandbox, CONFIGURED)
    assert_error(feed.get(f"{feed.root}/audit/{content_id}"), 400, code, content_id)


def test_content_older_than_7_days_is_af20051(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    now = sandbox_now(sandbox)
    oldest = feed.blobs(startTime=wire_time(now - timedelta(days=7)), endTime=wire_time(now - timedelta(days=6)))[0]
    sandbox.advance("3h")
    assert_error(feed.get(oldest["contentUri"]), 400, "AF20051", "Content older than 7 days cannot be retrieved.")


# --- paging ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def busy_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """A tenant producing a blob every 2 minutes: 720 a day, more than one page."""
    scenario = {
        "tenants": [
            {
                "id": BUSY,
                "display_name": "Busy Tenant",
                "initial_domain": "busy.onmicrosoft.com",
                "audit": {"enabled": True, "content_interval": "2m"},
                "existing": {"subscriptions": ["Audit.SharePoint"]},
            }
        ]
    }
    handle = start_sandbox(tmp_path_factory.mktemp("busy"), scenario)
    yield handle
    handle.stop()


def test_long_listings_come_in_pages_linked_by_next_page_uri(busy_sandbox: SandboxHandle) -> None:
    feed = Feed(busy_sandbox, BUSY)
    response = feed.content("Audit.SharePoint")
    pages = [response.json()]
    while "NextPageUri" in response.headers:
        assert response.headers["NextPageUri"].startswith(f"{feed.root}/subscriptions/content?contentType=Audit.SharePoint&startTime=")
        response = feed.http.get(response.headers["NextPageUri"], timeout=30)
        assert response.status_code == 200
        pages.append(response.json())
    ids = [b["contentId"] for page in pages for b in page]
    assert [len(page) for page in pages] == [200, 200, 200, 120]
    assert len(set(ids)) == 720


def test_a_next_page_token_from_elsewhere_is_af20031(busy_sandbox: SandboxHandle) -> None:
    response = Feed(busy_sandbox, BUSY).content("Audit.SharePoint", nextPage="2015101900R022885001761")
    assert_error(response, 400, "AF20031", "Invalid nextPage Input: 2015101900R022885001761.")


# --- authentication and authorization -------------------------------------------------------------------
def test_no_token_is_the_frameworks_401(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, CONFIGURED, use_token=False).list()
    assert response.status_code == 401
    assert response.json() == {"Message": "Authorization has been denied for this request."}
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_graph_token_is_the_frameworks_401(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, CONFIGURED, sandbox.token(CONFIGURED)).list()
    assert response.status_code == 401 and "Authorization has been denied" in response.json()["Message"]


def test_a_token_without_activity_feed_read_is_af10001(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, PARTIAL).list()  # the admin withheld ActivityFeed.Read
    assert_error(response, 401, "AF10001", "The permission set () sent in the request does not include the expected permission.")


def test_a_token_for_another_tenant_is_af20010(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, CONFIGURED, sandbox.token(FRESH, MANAGE)).list()
    assert_error(response, 400, "AF20010", f"The tenant ID passed in the URL ({CONFIGURED}) does not match the tenant ID passed in the access token ({FRESH}).")


def test_a_tenant_that_is_not_a_guid_is_af20013(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, "configured.onmicrosoft.com", sandbox.token(CONFIGURED, MANAGE)).list()
    assert_error(response, 400, "AF20013", "The tenant ID passed in the URL (configured.onmicrosoft.com) is not a valid GUID.")


def test_an_unknown_tenant_is_af20011(sandbox: SandboxHandle) -> None:
    signer = TokenSigner(sandbox.state_dir / "token-signing-key.pem")
    token = signer.issue({"aud": MANAGE, "tid": UNKNOWN_TENANT, "appid": sandbox.client_id, "roles": ["ActivityFeed.Read"]}, issuer="https://sts.windows.net/x/")
    assert_error(Feed(sandbox, UNKNOWN_TENANT, token).list(), 400, "AF20011", f"Specified tenant ID ({UNKNOWN_TENANT}) does not exist")


def test_a_publisher_identifier_that_is_not_a_guid_is_af20002(sandbox: SandboxHandle) -> None:
    response = Feed(sandbox, CONFIGURED).call("GET", "subscriptions/list", PublisherIdentifier="expel")
    assert_error(response, 400, "AF20002", "Invalid parameter type: PublisherIdentifier. Expected type: guid")


# --- faults, the log and the admin view -------------------------------------------------------------------
def test_throttling_is_af429_with_http_403_naming_method_and_publisher(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    sandbox.add_fault(service="management_activity", kind="throttle", count=1, retry_after="30s")
    throttled = feed.list()
    assert_error(throttled, 403, "AF429", f"Too many requests. Method=ListSubscriptions, PublisherId={PUBLISHER}")
    assert throttled.headers["Retry-After"] == "30"
    assert feed.list().status_code == 200


def test_a_throttled_blob_download_names_get_blob(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    url = feed.blobs()[0]["contentUri"]
    sandbox.add_fault(service="management_activity", kind="throttle", count=1)
    throttled = feed.get(url)
    assert_error(throttled, 403, "AF429", f"Method=GetBlob, PublisherId={PUBLISHER}")
    assert "Retry-After" not in throttled.headers


def test_request_log_records_each_operation_with_tenant_and_app(sandbox: SandboxHandle) -> None:
    feed = Feed(sandbox, CONFIGURED)
    feed.list()
    feed.start()
    blob = feed.blobs()[0]
    feed.get(blob["contentUri"])
    logged = sandbox.request_log(service="management_activity")
    assert [(e["method"], e["operation"], e["status"]) for e in logged] == [
        ("GET", "subscriptions/list", 200),
        ("POST", "subscriptions/start", 400),
        ("GET", "subscriptions/content", 200),
        ("GET", "audit/blob", 200),
    ]
    assert {e["tenant_id"] for e in logged} == {CONFIGURED} and {e["app_id"] for e in logged} == {sandbox.client_id}
    assert f"PublisherIdentifier={PUBLISHER}" in logged[0]["query"]


def test_tenant_state_shows_subscriptions_and_available_content(sandbox: SandboxHandle) -> None:
    activity = sandbox.tenant_state(CONFIGURED)["activity"]
    assert activity["auditActive"] is True
    general = next(s for s in activity["subscriptions"] if s["contentType"] == "Audit.General")
    assert general["status"] == "enabled" and general["availableContent"] == 167
    assert sandbox.tenant_state(FRESH)["activity"] == {"auditActive": False, "subscriptions": []}
