"""The emulated Expel Workbench API v2, driven over HTTPS with requests as production code will drive it.

One behaviour per test; each asserts what a client sees: status, JSON:API shape, error code and detail.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import (
    CONFIGURED,
    FRESH,
    NEVER_CONSENTS,
    OTHER_ORG,
    OTHER_WORKBENCH_ORG,
    PARTIAL,
    QUIET,
    UNHEALTHY,
    WORKBENCH_ORG,
)
from tests.sandbox_harness import SandboxHandle, start_sandbox

M365 = "o365"
UNKNOWN_TENANT = "12345678-1234-4234-8234-123456789012"
NULL = "\u2400"


# --- helpers -----------------------------------------------------------------------------------------
def _client(sandbox: SandboxHandle, key: str | None = "onboarding") -> requests.Session:
    session = sandbox.session()
    session.headers["Content-Type"] = "application/vnd.api+json"
    if key is not None:
        session.headers["Authorization"] = f"Bearer {sandbox.workbench_key(key)}"
    return session


def _url(sandbox: SandboxHandle, path: str) -> str:
    return f"{sandbox.base_url('workbench')}/api/v2/{path.lstrip('/')}"


def _device_body(
    tenant_id: str, name: str = "Microsoft 365", org: str = WORKBENCH_ORG, slug: str = M365, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A create body; ``spec`` overrides device_spec keys (``None`` values drop the key)."""
    device_spec = {"tenant_id": tenant_id, "tenant_name": "Contoso"} | (spec or {})
    return {
        "data": {
            "type": "security_devices",
            "attributes": {
                "name": name,
                "location": "Microsoft cloud",
                "plugin_slug": slug,
                "device_spec": {k: v for k, v in device_spec.items() if v is not None},
                "device_type": "CLOUD",
                "task_source": "EXPEL_TASKPOOL",
            },
            "relationships": {"organization": {"data": {"type": "organizations", "id": org}}},
        }
    }


def _create(
    sandbox: SandboxHandle, tenant_id: str, name: str = "Microsoft 365", key: str = "onboarding", org: str = WORKBENCH_ORG
) -> dict[str, Any]:
    response = _client(sandbox, key).post(_url(sandbox, "security_devices"), json=_device_body(tenant_id, name, org))
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _device(sandbox: SandboxHandle, device_id: str) -> dict[str, Any]:
    response = _client(sandbox).get(_url(sandbox, f"security_devices/{device_id}"), params={"flag[raw_status]": "true"})
    assert response.status_code == 200, response.text
    return response.json()["data"]["attributes"]


def _list(sandbox: SandboxHandle, path: str, params: Any = None, key: str = "onboarding") -> dict[str, Any]:
    response = _client(sandbox, key).get(_url(sandbox, path), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _error(response: requests.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    body = response.json()
    assert body["jsonapi"] == {"version": "1.0"}
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["status"] == str(response.status_code)
    return error


# --- authentication and scoping -------------------------------------------------------------------------
def test_request_without_api_key_is_401(sandbox: SandboxHandle) -> None:
    response = _client(sandbox, key=None).get(_url(sandbox, "organizations"))
    assert response.status_code == 401
    assert _error(response)["code"] == "EUNAUTHORIZED"
    assert response.headers["x-request-id"]


def test_unknown_api_key_is_401(sandbox: SandboxHandle) -> None:
    session = _client(sandbox, key=None)
    response = session.get(_url(sandbox, "security_devices"), headers={"Authorization": "Bearer not-a-key"})
    assert response.status_code == 401
    assert "invalid" in _error(response)["detail"].lower()


def test_organizations_lists_only_the_keys_own_organization(sandbox: SandboxHandle) -> None:
    body = _list(sandbox, "organizations")
    assert [o["id"] for o in body["data"]] == [WORKBENCH_ORG]
    assert body["data"][0]["type"] == "organizations"
    assert body["data"][0]["attributes"]["name"] == "Test Customers"
    assert body["meta"]["page"]["total"] == 1


def test_another_organization_is_not_found_by_id(sandbox: SandboxHandle) -> None:
    assert _client(sandbox).get(_url(sandbox, f"organizations/{WORKBENCH_ORG}")).status_code == 200
    response = _client(sandbox).get(_url(sandbox, f"organizations/{OTHER_WORKBENCH_ORG}"))
    assert response.status_code == 404
    error = _error(response)
    assert error["code"] == "ENOTFOUND"
    assert error["detail"] == f"There is no organizations with id {OTHER_WORKBENCH_ORG}"


def test_devices_of_another_organization_are_invisible(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, OTHER_ORG, key="other", org=OTHER_WORKBENCH_ORG)
    assert _list(sandbox, "security_devices")["data"] == []
    assert _client(sandbox).get(_url(sandbox, f"security_devices/{device['id']}")).status_code == 404
    assert [d["id"] for d in _list(sandbox, "security_devices", key="other")["data"]] == [device["id"]]


def test_creating_a_device_in_another_organization_is_403(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).post(_url(sandbox, "security_devices"), json=_device_body(FRESH, org=OTHER_WORKBENCH_ORG))
    assert response.status_code == 403
    assert _error(response)["code"] == "EFORBIDDEN"


def test_read_only_key_reads_but_cannot_write(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, FRESH)
    assert [d["id"] for d in _list(sandbox, "security_devices", key="readonly")["data"]] == [device["id"]]
    readonly = _client(sandbox, "readonly")
    created = readonly.post(_url(sandbox, "security_devices"), json=_device_body(FRESH))
    deleted = readonly.delete(_url(sandbox, f"security_devices/{device['id']}"))
    assert (created.status_code, deleted.status_code) == (403, 403)
    assert "read-only" in _error(created)["detail"]


# --- catalogue -------------------------------------------------------------------------------------------
def test_plugins_offer_microsoft_365_with_its_device_spec_schema(sandbox: SandboxHandle) -> None:
    plugins = _list(sandbox, "plugins")["data"]
    microsoft = [p["attributes"] for p in plugins if p["attributes"]["vendor_name"] == "Microsoft"]
    assert len(microsoft) > 1  # selecting by vendor alone is ambiguous
    m365 = next(p for p in microsoft if p["display_name"] == "Microsoft 365")
    schema = m365["device_spec_json"]
    assert m365["plugin_slug"] == M365
    assert set(schema["required"]) == {"tenant_id", "tenant_name"}
    assert schema["properties"]["tenant_id"]["title"] == "Directory (tenant) ID"
    assert schema["properties"]["tenant_name"]["title"] == "Tenant organization name"


def test_vendors_can_be_found_by_name(sandbox: SandboxHandle) -> None:
    body = _list(sandbox, "vendors", {"filter[name]": "Microsoft"})
    assert [v["attributes"]["name"] for v in body["data"]] == ["Microsoft"]
    assert body["data"][0]["id"] == _list(sandbox, "vendors", {"filter[name]": "Microsoft"})["data"][0]["id"]


# --- create ---------------------------------------------------------------------------------------------
def test_created_device_is_verifying_with_null_status(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).post(_url(sandbox, "security_devices"), json=_device_body(FRESH, "M365 Fresh"))
    assert response.status_code == 201
    data = response.json()["data"]
    assert response.headers["location"].endswith(f"/api/v2/security_devices/{data['id']}")
    assert data["type"] == "security_devices"
    assert data["attributes"]["status"] is None
    assert data["attributes"]["is_verifying_status"] is True
    assert data["attributes"]["device_spec"] == {"tenant_id": FRESH, "tenant_name": "Contoso"}
    assert data["relationships"]["organization"]["data"] == {"type": "organizations", "id": WORKBENCH_ORG}
    assert data["relationships"]["vendor"]["data"]["type"] == "vendors"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"tenant_id": None}, "device_spec.tenant_id"),
        ({"tenant_id": "freshcorp.onmicrosoft.com"}, "device_spec.tenant_id"),
        ({"tenant_name": None}, "device_spec.tenant_name"),
        ({"client_secret": "s3cret"}, "device_spec.client_secret"),
    ],
    ids=["missing-tenant-id", "tenant-id-not-a-guid", "missing-tenant-name", "unknown-key"],
)
def test_invalid_device_spec_is_400_naming_the_field(sandbox: SandboxHandle, spec: dict[str, Any], field: str) -> None:
    response = _client(sandbox).post(_url(sandbox, "security_devices"), json=_device_body(FRESH, spec=spec))
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "EINVALID"
    assert field in error["detail"]


def test_unknown_plugin_slug_is_400(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).post(_url(sandbox, "security_devices"), json=_device_body(FRESH, slug="office365"))
    assert response.status_code == 400
    assert "plugin_slug 'office365'" in _error(response)["detail"]


def test_create_without_data_is_request_validation_failed(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).post(_url(sandbox, "security_devices"), json={"type": "security_devices"})
    assert response.status_code == 403
    assert _error(response)["title"] == "Request validation failed"


def test_a_second_device_for_the_same_tenant_is_accepted(sandbox: SandboxHandle) -> None:
    first = _create(sandbox, FRESH)
    second = _create(sandbox, FRESH)
    assert first["id"] != second["id"]
    assert _list(sandbox, "security_devices", {"filter[plugin_slug]": M365})["meta"]["page"]["total"] == 2


# --- list: filters, sort, paging ---------------------------------------------------------------------------
def test_list_filters_by_organization_plugin_and_name(sandbox: SandboxHandle) -> None:
    wanted = _create(sandbox, FRESH, "M365 Fresh Corp")
    _create(sandbox, CONFIGURED, "M365 Configured Inc")
    params = {"filter[organization][id]": WORKBENCH_ORG, "filter[plugin_slug]": M365, "filter[name]": "M365 Fresh Corp"}
    assert [d["id"] for d in _list(sandbox, "security_devices", params)["data"]] == [wanted["id"]]
    assert [d["id"] for d in _list(sandbox, "security_devices", {"filter[name]": ":fresh"})["data"]] == [wanted["id"]]
    assert [d["id"] for d in _list(sandbox, "security_devices", {"filter[name]": "^M365 F"})["data"]] == [wanted["id"]]


def test_list_filters_by_created_at_window_and_null_tests(sandbox: SandboxHandle) -> None:
    early = _create(sandbox, FRESH, "early")
    created = datetime.fromisoformat(early["attributes"]["created_at"].replace("Z", "+00:00"))
    sandbox.advance("1m")
    late = _create(sandbox, CONFIGURED, "late")
    after = {"filter[created_at]": f">{created.isoformat()}"}
    assert [d["id"] for d in _list(sandbox, "security_devices", after)["data"]] == [late["id"]]
    window = [("filter[created_at]", f">{created.isoformat()}"), ("filter[created_at]", "<2999-01-01T00:00:00Z")]
    assert [d["id"] for d in _list(sandbox, "security_devices", window)["data"]] == [late["id"]]
    assert _list(sandbox, "security_devices", {"filter[status]": f"{NULL}true"})["meta"]["page"]["total"] == 2
    assert _list(sandbox, "security_devices", {"filter[status]": f"{NULL}false"})["data"] == []


def test_list_sorts_by_repeated_sort_keys(sandbox: SandboxHandle) -> None:
    for name in ("b", "c", "a"):
        _create(sandbox, FRESH, name)

    def names(sort: list[str]) -> list[str]:
        return [d["attributes"]["name"] for d in _list(sandbox, "security_devices", [("sort", s) for s in sort])["data"]]

    assert names(["+name", "+id"]) == ["a", "b", "c"]
    assert names(["-name"]) == ["c", "b", "a"]
    assert names(["+created_at", "+id"]) == ["b", "c", "a"]


def test_list_pages_with_offset_limit_and_links_next(sandbox: SandboxHandle) -> None:
    ids = [_create(sandbox, FRESH, f"device {i}")["id"] for i in range(3)]
    session = _client(sandbox)
    first = session.get(_url(sandbox, "security_devices"), params=[("sort", "+created_at"), ("sort", "+id"), ("page[limit]", "2")]).json()
    assert first["meta"]["page"] == {"offset": 0, "limit": 2, "total": 3}
    second = session.get(first["links"]["next"]).json()
    assert second["meta"]["page"] == {"offset": 2, "limit": 2, "total": 3}
    assert "next" not in second["links"]
    assert [d["id"] for d in first["data"] + second["data"]] == ids
    assert _list(sandbox, "security_devices", {"page[limit]": "0"})["meta"]["page"]["total"] == 3


def test_unknown_filter_key_is_403_invalid_filter(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).get(_url(sandbox, "security_devices"), params={"filter[organization_id]": WORKBENCH_ORG})
    assert response.status_code == 403
    error = _error(response)
    assert (error["code"], error["title"]) == ("EFORBIDDEN", "Invalid filter")
    assert error["detail"] == "security_devices do not have attribute or relationship 'organization_id'"


def test_filter_value_outside_the_enum_is_403(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).get(_url(sandbox, "security_devices"), params={"filter[status]": "Healthy"})
    assert response.status_code == 403
    assert "Filter value for key 'status' is invalid" in _error(response)["detail"]


# --- health lifecycle ------------------------------------------------------------------------------------
def test_fresh_tenant_device_turns_healthy_at_its_first_check(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, FRESH)
    sandbox.advance("10m")
    attributes = _device(sandbox, device["id"])
    assert attributes["status"] == "healthy"
    assert attributes["is_verifying_status"] is False
    assert attributes["status_details"] is None
    assert attributes["status_updated_at"] > device["attributes"]["created_at"]


def test_device_that_stays_unhealthy_reports_its_reason(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, UNHEALTHY)
    sandbox.advance("3h")
    attributes = _device(sandbox, device["id"])
    assert attributes["status"] == "unhealthy"
    assert "ActivityFeed.Read" in attributes["status_details"]["message"]


def test_device_of_a_tenant_that_never_consents_is_unhealthy_for_consent(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, NEVER_CONSENTS)
    sandbox.advance("10m")
    attributes = _device(sandbox, device["id"])
    assert attributes["status"] == "unhealthy"
    assert "admin consent" in attributes["status_details"]["message"].lower()


def test_device_of_a_partial_grant_names_the_missing_permissions(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, PARTIAL)
    sandbox.advance("10m")
    message = _device(sandbox, device["id"])["status_details"]["message"]
    assert "User.Invite.All" in message and "ActivityFeed.Read" in message


def test_device_for_a_tenant_that_does_not_exist_is_unhealthy_not_found(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, UNKNOWN_TENANT)
    sandbox.advance("10m")
    attributes = _device(sandbox, device["id"])
    assert attributes["status"] == "unhealthy"
    assert "not found" in attributes["status_details"]["message"]


def test_unhealthy_devices_can_be_polled_by_status_updated_at(sandbox: SandboxHandle) -> None:
    unhealthy = _create(sandbox, NEVER_CONSENTS)
    _create(sandbox, FRESH)
    since = unhealthy["attributes"]["created_at"]
    sandbox.advance("10m")
    params = {"filter[status_updated_at]": f">{since}", "filter[status]": "!healthy", "flag[raw_status]": "true"}
    assert [d["id"] for d in _list(sandbox, "security_devices", params)["data"]] == [unhealthy["id"]]


LATE_SCENARIO = {
    "workbench": {
        "organizations": [{"id": WORKBENCH_ORG, "name": "Test Customers"}],
        "api_keys": [{"name": "onboarding", "organization": WORKBENCH_ORG, "generate": True}],
    },
    "tenants": [
        {
            "id": "55555555-5555-4555-8555-555555555555",
            "display_name": "Late Consent GmbH",
            "initial_domain": "lateconsent.onmicrosoft.com",
            "consent": {"given": "late", "after": "2h"},
        }
    ],
}


def test_late_consent_turns_an_unhealthy_device_healthy(tmp_path: Path) -> None:
    # Own sandbox: scheduled consent counts from sandbox start, which the shared sandbox passed long ago.
    late = start_sandbox(tmp_path, LATE_SCENARIO)
    try:
        device = _create(late, "55555555-5555-4555-8555-555555555555")
        late.advance("10m")
        assert _device(late, device["id"])["status"] == "unhealthy"
        late.advance("3h")
        late.advance("10m")  # the next check after the grants have replicated
        attributes = _device(late, device["id"])
        assert attributes["status"] == "healthy"
        assert attributes["status_updated_at"] > device["attributes"]["created_at"]
    finally:
        late.stop()


# --- alerts ----------------------------------------------------------------------------------------------
def test_vendor_alerts_start_after_the_data_delay(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, CONFIGURED)
    params = {"filter[security_device][id]": device["id"], "page[limit]": "1"}
    sandbox.advance("10m")
    assert _list(sandbox, "vendor_alerts", params)["meta"]["page"]["total"] == 0
    sandbox.advance("75m")
    body = _list(sandbox, "vendor_alerts", params)
    assert body["meta"]["page"]["total"] == 1
    alert = body["data"][0]
    assert alert["relationships"]["security_device"]["data"] == {"type": "security_devices", "id": device["id"]}
    assert _list(sandbox, "vendor_alerts", params)["data"][0]["id"] == alert["id"]  # stable ids


def test_expel_alerts_follow_the_first_vendor_alert(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, CONFIGURED)
    by_device = {"filter[vendor_alerts][security_device][id]": device["id"]}
    sandbox.advance("90m")
    assert _list(sandbox, "expel_alerts", by_device)["data"] == []
    sandbox.advance("48h")
    alerts = _list(sandbox, "expel_alerts", by_device)["data"]
    assert len(alerts) == 1
    assert alerts[0]["attributes"]["status"] == "OPEN"
    by_org = {"filter[organization][id]": WORKBENCH_ORG, "filter[created_at]": f">{device['attributes']['created_at']}"}
    assert [a["id"] for a in _list(sandbox, "expel_alerts", by_org)["data"]] == [alerts[0]["id"]]


def test_quiet_tenant_gets_vendor_alerts_but_never_expel_alerts(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, QUIET)
    sandbox.advance("90m")
    sandbox.advance("72h")
    assert _list(sandbox, "vendor_alerts", {"filter[security_device][id]": device["id"]})["meta"]["page"]["total"] > 0
    assert _list(sandbox, "expel_alerts", {"filter[organization][id]": WORKBENCH_ORG})["data"] == []


# --- update and delete -----------------------------------------------------------------------------------
def test_patch_changes_name_and_location(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, FRESH)
    body = {"data": {"type": "security_devices", "id": device["id"], "attributes": {"name": "Renamed", "location": "EU"}}}
    response = _client(sandbox).patch(_url(sandbox, f"security_devices/{device['id']}"), json=body)
    assert response.status_code == 200
    assert (response.json()["data"]["attributes"]["name"], _device(sandbox, device["id"])["location"]) == ("Renamed", "EU")


def test_patching_the_device_spec_verifies_the_device_again(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, NEVER_CONSENTS)
    sandbox.advance("10m")
    assert _device(sandbox, device["id"])["status"] == "unhealthy"
    spec = {"tenant_id": FRESH, "tenant_name": "Fresh Corp"}
    body = {"data": {"type": "security_devices", "id": device["id"], "attributes": {"device_spec": spec}}}
    patched = _client(sandbox).patch(_url(sandbox, f"security_devices/{device['id']}"), json=body).json()["data"]
    assert patched["attributes"]["is_verifying_status"] is True
    sandbox.advance("10m")
    assert _device(sandbox, device["id"])["status"] == "healthy"


def test_patch_of_a_read_only_attribute_is_400(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, FRESH)
    body = {"data": {"type": "security_devices", "id": device["id"], "attributes": {"status": "healthy"}}}
    response = _client(sandbox).patch(_url(sandbox, f"security_devices/{device['id']}"), json=body)
    assert response.status_code == 400
    assert _error(response)["detail"] == "status is read-only"


def test_delete_is_204_and_the_device_disappears(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, FRESH)
    session = _client(sandbox)
    assert session.delete(_url(sandbox, f"security_devices/{device['id']}")).status_code == 204
    assert session.get(_url(sandbox, f"security_devices/{device['id']}")).status_code == 404
    assert _list(sandbox, "security_devices")["data"] == []
    deleted = next(d for d in sandbox.admin("GET", "workbench").json()["security_devices"] if d["id"] == device["id"])
    assert deleted["deleted_at"] is not None


# --- service behaviour -----------------------------------------------------------------------------------
def test_throttle_fault_answers_429_with_retry_after_then_serves(sandbox: SandboxHandle) -> None:
    sandbox.add_fault(service="workbench", kind="throttle", retry_after="3s", count=1)
    session = _client(sandbox)
    throttled = session.get(_url(sandbox, "security_devices"))
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "3"
    assert _error(throttled)["code"] == "ETOOMANYREQUESTS"
    assert session.get(_url(sandbox, "security_devices")).status_code == 200


def test_request_log_records_each_call_with_key_and_operation(sandbox: SandboxHandle) -> None:
    device = _create(sandbox, FRESH)
    _device(sandbox, device["id"])
    log = sandbox.request_log(service="workbench")
    assert [(e["method"], e["status"], e["operation"], e["app_id"]) for e in log] == [
        ("POST", 201, "create_security_device", "onboarding"),
        ("GET", 200, "get_security_device", "onboarding"),
    ]
    assert all(e["tenant_id"] == FRESH for e in log)


def test_unemulated_resource_is_501(sandbox: SandboxHandle) -> None:
    response = _client(sandbox).get(_url(sandbox, "investigations"))
    assert response.status_code == 501
    assert _error(response)["code"] == "ENOTEMULATED"
