"""Next-page links are followed only on the client's own scheme, host and port; elsewhere no credential is ever sent.

The sandbox pages on its own host (the lists that follow links there are tested against it in
``test_workbench_client.py`` and ``tests/sandbox``); a scripted stub stands in for a service whose
page links to another origin: a second stub on the same host but another port, which records
whether anything, above all the credential, reached it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest
import requests

from clients.errors import ApiError, UntrustedNextLink
from clients.exchange import ExchangeAdminClient
from clients.graph import GraphClient
from clients.http import ApiClient, url_origin
from clients.management_activity import ManagementActivityClient
from clients.workbench import API, WorkbenchClient
from sandbox.core.tls import TlsFiles
from tests.clients.tls_stub import Answer, StubServer
from tests.conftest import FRESH, PROVIDER_TENANT

TOKEN = "Bearer secret-token-for-the-service-only"
USER = {"id": "u1", "displayName": "One"}
BLOB = {"contentType": "Audit.General", "contentId": "c1", "contentUri": "https://x.invalid/c1", "contentCreated": "2026-01-01T00:00:00Z"}
CONTENT = f"/api/v1.0/{FRESH}/activity/feed/subscriptions/content"
INVOKE = f"/adminapi/beta/{FRESH}/InvokeCommand"


def _options(tls: TlsFiles) -> dict[str, Any]:
    return {"authorization": lambda: TOKEN, "ca_bundle": tls.ca_cert, "retries": 0}


# Each client, how to script one page of its list with a next link, and the call that follows it.
Pager = tuple[Callable[[str, TlsFiles], ApiClient], Callable[[StubServer, str], None], Callable[[Any], object], str]
PAGERS: dict[str, Pager] = {
    "graph @odata.nextLink": (
        lambda url, tls: GraphClient(url, tenant_id=FRESH, **_options(tls)),
        lambda stub, link: stub.script("/v1.0/users", Answer(200, {"value": [USER], "@odata.nextLink": link})),
        lambda client: client.find_users_by_address("a@b.example"), "find_users"),
    "management activity NextPageUri": (
        lambda url, tls: ManagementActivityClient(url, tenant_id=FRESH, publisher_id=PROVIDER_TENANT, **_options(tls)),
        lambda stub, link: stub.script(CONTENT, Answer(200, [BLOB], {"NextPageUri": link})),
        lambda client: client.list_content("Audit.General"), "subscriptions/content"),
    "workbench links.next": (
        lambda url, tls: WorkbenchClient(url, **_options(tls)),
        lambda stub, link: stub.script(f"{API}/organizations", Answer(200, {"data": [{"id": "o1", "attributes": {"name": "Org"}}], "links": {"next": link}})),
        lambda client: client.list_organizations(), "list_organizations"),
    "exchange @odata.nextLink": (
        lambda url, tls: ExchangeAdminClient(url, tenant_id=FRESH, **_options(tls)),
        lambda stub, link: stub.script(INVOKE, Answer(200, {"value": [{"Name": "x"}], "@odata.nextLink": link})),
        lambda client: client.invoke("Get-OrganizationConfig"), "Get-OrganizationConfig"),
}


def _foreign_links(foreign: StubServer, stub: StubServer) -> dict[str, str]:
    own = stub.base_url.removeprefix("https://")
    return {
        "another port": f"{foreign.base_url}/next?page=2",
        "another host": "https://evil.example/next?page=2",
        "plain http": f"http://{own}/next?page=2",
        "user info naming the service": f"https://{own}@evil.example/next",
        "a backslash parsers disagree on": f"https://evil.example\\@{own}/next",
        "scheme-relative": f"//{foreign.base_url.removeprefix('https://')}/next",
    }


@pytest.mark.parametrize("pager", list(PAGERS))
def test_a_next_link_to_another_origin_is_refused_and_nothing_is_sent_there(stub: StubServer, foreign: StubServer, stub_tls: TlsFiles,
                                                                            pager: str) -> None:
    build, script, call, operation = PAGERS[pager]
    client = build(stub.base_url, stub_tls)
    for kind, link in _foreign_links(foreign, stub).items():
        script(stub, link)
        with pytest.raises(UntrustedNextLink) as caught:
            call(client)
        error = caught.value
        assert isinstance(error, ApiError) and error.operation == operation and error.status == 200, kind
        assert "not followed" in str(error) and "no credential was sent" in str(error) and error.next_action, kind
        assert error.link_origin in str(error) and "page=2" not in str(error), kind  # the host is named; the rest of the link is not
    assert foreign.received == [], "the foreign origin was contacted"
    assert all(r.headers.get("Authorization") == TOKEN for r in stub.received)
    assert len(stub.received) == len(_foreign_links(foreign, stub))  # one page each time, never the next one


def test_the_error_names_the_host_the_link_pointed_to(stub: StubServer, stub_tls: TlsFiles) -> None:
    build, script, call, _ = PAGERS["graph @odata.nextLink"]
    script(stub, "https://graph.evil.example:8443/v1.0/users?$skiptoken=abc")
    with pytest.raises(UntrustedNextLink) as caught:
        call(build(stub.base_url, stub_tls))
    assert caught.value.link_origin == "https://graph.evil.example:8443"
    assert "https://graph.evil.example:8443" in str(caught.value) and "skiptoken" not in str(caught.value)
    restored = pickle.loads(pickle.dumps(caught.value))  # Prefect keeps it in the task's state
    assert type(restored) is UntrustedNextLink and str(restored) == str(caught.value) and restored.link_origin == caught.value.link_origin


@pytest.mark.parametrize("pager", list(PAGERS))
def test_a_next_link_on_the_same_origin_is_followed_with_the_credential(stub: StubServer, stub_tls: TlsFiles, pager: str) -> None:
    build, script, call, _ = PAGERS[pager]
    base = stub.base_url.replace("127.0.0.1", "localhost")  # the stub's certificate names localhost too
    script(stub, f"{base.replace('localhost', 'LocalHost')}/page-2")  # a host's case does not make it another origin
    stub.script("/page-2", Answer(200, {"value": [], "data": []}) if "nextLink" in pager or "links" in pager else Answer(200, []))
    call(build(base, stub_tls))
    assert [r.path for r in stub.received][-1] == "/page-2"
    assert all(r.headers.get("Authorization") == TOKEN for r in stub.received)


def test_a_relative_next_link_resolves_against_the_page(stub: StubServer, stub_tls: TlsFiles) -> None:
    stub.script(f"{API}/organizations", Answer(200, {"data": [{"id": "o1", "attributes": {"name": "A"}}], "links": {"next": f"{API}/organizations-2"}}))
    stub.script(f"{API}/organizations-2", Answer(200, {"data": [{"id": "o2", "attributes": {"name": "B"}}], "links": {"next": {"href": "organizations-3"}}}))
    stub.script(f"{API}/organizations-3", Answer(200, {"data": [{"id": "o3", "attributes": {"name": "C"}}], "links": {}}))
    client = WorkbenchClient(stub.base_url, **_options(stub_tls))
    assert [o.name for o in client.list_organizations()] == ["A", "B", "C"]  # a path, and a JSON:API link object with a relative href


def test_a_next_link_that_is_not_a_url_is_refused(stub: StubServer, stub_tls: TlsFiles) -> None:
    stub.script("/v1.0/users", Answer(200, {"value": [USER], "@odata.nextLink": ["https://evil.example"]}))
    with pytest.raises(UntrustedNextLink, match="a list, not a URL"):
        GraphClient(stub.base_url, tenant_id=FRESH, **_options(stub_tls)).find_users_by_address("a@b.example")


def test_no_caller_can_send_the_credential_to_another_origin(stub: StubServer, foreign: StubServer, stub_tls: TlsFiles) -> None:
    client = GraphClient(stub.base_url, tenant_id=FRESH, **_options(stub_tls))
    for url in (f"{foreign.base_url}/v1.0/organization", "//evil.example/v1.0/organization", "relative/path"):
        with pytest.raises(ValueError, match="refusing to send"):
            client.request("GET", url, operation="get_organization")
    assert foreign.received == [] and stub.received == []


@pytest.mark.parametrize(("url", "origin"), [
    ("https://graph.microsoft.com/v1.0/users?$skiptoken=x", ("https", "graph.microsoft.com", 443)),
    ("https://GRAPH.microsoft.com:443/v1.0", ("https", "graph.microsoft.com", 443)),
    ("https://127.0.0.1:8444/x", ("https", "127.0.0.1", 8444)),
    ("HTTPS://[::1]:8444/x", ("https", "::1", 8444)),
    ("https://graph.microsoft.com@evil.example/", None),
    ("https://evil.example\\@graph.microsoft.com/", None),
    ("https://graph.microsoft.com\r\nX: y/", None),
    ("https://graph.microsoft.com:99999/", None),
    ("/v1.0/users", None),
])
def test_what_counts_as_an_origin(url: str, origin: tuple[str, str, int] | None) -> None:
    assert url_origin(url) == origin


def test_a_redirect_is_not_a_way_round_it(stub: StubServer, foreign: StubServer, stub_tls: TlsFiles) -> None:
    """requests drops the Authorization header on a redirect to another host (should_strip_auth); pinned here."""
    foreign.script("/v1.0/organization", Answer(200, {"value": [{"id": FRESH, "displayName": "Elsewhere"}]}))
    stub.script("/v1.0/organization", Answer(307, None, {"Location": f"{foreign.base_url}/v1.0/organization"}))
    try:
        GraphClient(stub.base_url, tenant_id=FRESH, **_options(stub_tls)).get_organization()
    except (ApiError, requests.RequestException):
        pass
    assert all("Authorization" not in r.headers for r in foreign.received)
