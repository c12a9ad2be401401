"""The Workbench client against the sandbox: paging, JSON:API models, error mapping, no POST retry."""

from __future__ import annotations

import pickle
from typing import Any
from urllib.parse import unquote

import pytest

from clients.errors import DeviceRejected, NotFound, PermissionDenied, PluginNotFound, ServerError, Unauthorized, WorkbenchRoleRequired, jsonapi_errors
from clients.workbench import WorkbenchClient
from tests.conftest import CONFIGURED, FRESH, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle
from tests.support import present

M365 = "o365"
SPEC = {"tenant_id": FRESH, "tenant_name": "Fresh Corp"}


def _client(sandbox: SandboxHandle, key: str = "onboarding", **kwargs: Any) -> WorkbenchClient:
    secret = sandbox.workbench_key(key) if key in ("onboarding", "readonly", "other") else key
    return WorkbenchClient(sandbox.base_url("workbench"), authorization=lambda: f"Bearer {secret}", ca_bundle=sandbox.ca_bundle, retries=1, **kwargs)


def _log(sandbox: SandboxHandle) -> list[tuple[str, str, int]]:
    return [(r["method"], r["operation"], r["status"]) for r in sandbox.request_log(service="workbench")]


def test_lists_follow_links_next_in_creation_order(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox, page_limit=2)
    created = [client.create_security_device(WORKBENCH_ORG, f"device {i}", M365, SPEC).id for i in range(3)]
    found = client.find_security_devices(WORKBENCH_ORG, M365)
    assert [d.id for d in found] == created
    lists = [r for r in step_sandbox.request_log(service="workbench") if r["operation"] == "list_security_devices"]
    assert len(lists) == 2
    assert "page[offset]=2" in unquote(lists[1]["query"]) and "sort=+created_at" in unquote(lists[1]["query"])


def test_models_carry_the_attributes_and_linkage(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox)
    plugin = client.find_plugin("microsoft 365")
    assert (plugin.plugin_slug, plugin.vendor_name) == (M365, "Microsoft") and plugin.required_spec_keys == ["tenant_id", "tenant_name"]
    device = client.create_security_device(WORKBENCH_ORG, "M365", plugin.plugin_slug, SPEC)
    assert (device.status, device.is_verifying_status, device.organization_id, device.tenant_id) == (None, True, WORKBENCH_ORG, FRESH)
    assert [o.name for o in client.list_organizations()] == ["Test Customers"]
    client.list_plugins()
    assert [op for _, op, _ in _log(step_sandbox)].count("list_plugins") == 1  # the catalogue is cached


def test_a_plugin_name_that_matches_nothing_lists_the_catalogue(step_sandbox: SandboxHandle) -> None:
    with pytest.raises(PluginNotFound, match=r"no active plugin.*'Microsoft'.*Microsoft Entra ID Protection"):
        _client(step_sandbox).find_plugin("Microsoft")


def test_expel_alert_by_device_is_the_same_through_the_fallback(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox)
    device = client.create_security_device(WORKBENCH_ORG, "M365", M365, {"tenant_id": CONFIGURED, "tenant_name": "Configured Inc"})
    assert client.first_vendor_alert(device.id) is None
    step_sandbox.advance("90m")
    step_sandbox.advance("48h")
    vendor = client.first_vendor_alert(device.id)
    nested = client.first_expel_alert(device.id)
    assert vendor is not None and vendor.security_device_id == device.id and client.nested_alert_filter is True
    fallback_client = _client(step_sandbox)
    fallback_client.nested_alert_filter = False  # as if the server had refused the two-level filter
    fallback = fallback_client.first_expel_alert(device.id)
    assert nested is not None and fallback == nested and nested.created_at > vendor.created_at
    assert "include=expel_alerts" in step_sandbox.request_log(service="workbench")[-1]["query"]


# --- errors ------------------------------------------------------------------------------------------
def test_an_invalid_filter_keeps_status_code_and_errors(step_sandbox: SandboxHandle) -> None:
    with pytest.raises(PermissionDenied) as caught:
        _client(step_sandbox).request("GET", "/api/v2/security_devices", operation="list_security_devices", params={"filter[organization_id]": WORKBENCH_ORG})
    error = caught.value
    assert (error.status, error.code) == (403, "EFORBIDDEN") and not isinstance(error, WorkbenchRoleRequired)
    assert jsonapi_errors(error)[0]["title"] == "Invalid filter" and "organization_id" in str(error)


def test_an_unknown_device_is_not_found_with_request_id(step_sandbox: SandboxHandle) -> None:
    missing = "12345678-1234-4234-8234-123456789012"
    with pytest.raises(NotFound) as caught:
        _client(step_sandbox).get_security_device(missing)
    assert jsonapi_errors(caught.value)[0]["code"] == "ENOTFOUND" and present(caught.value.request_id) in str(caught.value)


def test_a_wrong_key_is_unauthorized_and_never_shown(step_sandbox: SandboxHandle) -> None:
    secret = "not-a-real-key-but-secret"
    with pytest.raises(Unauthorized) as caught:
        _client(step_sandbox, secret).list_organizations()
    assert "WorkbenchCredentials" in str(caught.value)
    assert secret not in str(caught.value) and secret.encode() not in pickle.dumps(caught.value)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


def test_a_refused_device_is_device_rejected_with_the_detail(step_sandbox: SandboxHandle) -> None:
    with pytest.raises(DeviceRejected) as caught:
        _client(step_sandbox).create_security_device(WORKBENCH_ORG, "M365", M365, {"tenant_id": FRESH})
    assert caught.value.detail == "device_spec.tenant_name is required (Tenant organization name)"
    assert caught.value.detail in str(caught.value) and caught.value.status == 400 and caught.value.code == "EINVALID"


def test_writes_with_a_read_only_key_name_the_role(step_sandbox: SandboxHandle) -> None:
    device = _client(step_sandbox).create_security_device(WORKBENCH_ORG, "M365", M365, SPEC)
    readonly = _client(step_sandbox, "readonly")
    assert readonly.get_security_device(device.id).id == device.id
    for write in (lambda: readonly.delete_security_device(device.id), lambda: readonly.create_security_device(WORKBENCH_ORG, "x", M365, SPEC)):
        with pytest.raises(WorkbenchRoleRequired, match=r"Organization Admin.*not read-only"):
            write()


def test_update_and_delete(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox)
    device = client.create_security_device(WORKBENCH_ORG, "M365", M365, SPEC)
    assert client.update_security_device(device.id, {"name": "Renamed"}).name == "Renamed"
    client.delete_security_device(device.id)  # returns None (its signature says so, and the type checker holds it to that)
    with pytest.raises(NotFound):
        client.get_security_device(device.id)
    with pytest.raises(ValueError, match=r"device_id"):
        client.delete_security_device(" ")


def test_a_failed_post_is_never_retried_but_reads_are(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox)
    step_sandbox.add_fault(service="workbench", kind="unavailable", count=1)
    assert client.list_organizations()  # retried once
    step_sandbox.add_fault(service="workbench", kind="unavailable", method="POST", count=1)
    with pytest.raises(ServerError):
        client.create_security_device(WORKBENCH_ORG, "M365", M365, SPEC)
    assert [(m, s) for m, _, s in _log(step_sandbox)] == [("GET", 503), ("GET", 200), ("POST", 503)]
