"""Exchange Online admin API (``InvokeCommand``) as the sandbox emulates it, seen from a client over HTTPS.

Tokens come from msal against the sandbox's login port; only tokens msal cannot produce (no app
role, no directory role, an unknown tenant) are minted with the sandbox's signing key. Errors are
read the way callers read them (reference §7): ``details[].message``, then
``innererror.internalexception.message``, then ``message``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests

from clients.errors import AuditLogDehydrated
from clients.exchange import ExchangeAdminClient
from sandbox.core.catalog import DIRECTORY_ROLES
from sandbox.core.tokens import TokenSigner
from sandbox.exchange.auth import HELPDESK_ADMINISTRATOR
from sandbox.exchange.models import ExchangeOrg
from tests.conftest import CONFIGURED, DEHYDRATED, FRESH, OTHER_ORG
from tests.sandbox_harness import SandboxHandle

EXCHANGE = "https://outlook.office365.com"
DEFAULT_ANCHOR = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"
AUDIT_ANCHOR = "APP:SystemMailbox{8cc370d3-822a-4ab8-a926-bb94bd0641a9}@"
EXCHANGE_ADMIN = DIRECTORY_ROLES["Exchange Administrator"]
UNKNOWN_TENANT = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
DEHYDRATED_TEXT = "isn't currently allowed in your organization. To run this command, you first need to run the command: Enable-OrganizationCustomization."


# --- helpers ------------------------------------------------------------------------------------------
class Exo:
    """InvokeCommand for one tenant, as the Exchange Online module's REST calls make it."""

    def __init__(self, sandbox: SandboxHandle, tenant: str, token: str | None = None, *, version: str = "beta", use_token: bool = True) -> None:
        self.sandbox, self.tenant, self.version = sandbox, tenant, version
        self.http = sandbox.session()
        if use_token:
            self.http.headers["Authorization"] = f"Bearer {token or sandbox.token(tenant, EXCHANGE)}"

    def invoke(
        self,
        cmdlet: str,
        parameters: dict[str, Any] | None = None,
        *,
        anchor: str | None = DEFAULT_ANCHOR,
        path_tenant: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        tenant = path_tenant or self.tenant
        headers = {"X-AnchorMailbox": f"{anchor}{tenant}"} if anchor else {}
        body = kwargs.pop("json", {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}})
        url = f"{self.sandbox.base_url('exchange')}/adminapi/{self.version}/{tenant}/InvokeCommand"
        return self.http.post(url, json=body, headers=headers, timeout=30, **kwargs)

    def value(self, cmdlet: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        response = self.invoke(cmdlet, parameters, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()["value"][0]

    def set_ingestion(self, enabled: bool) -> requests.Response:
        return self.invoke("Set-AdminAuditLogConfig", {"UnifiedAuditLogIngestionEnabled": enabled}, anchor=AUDIT_ANCHOR)


def mint(sandbox: SandboxHandle, tenant: str, roles: list[str], wids: list[str], **claims: Any) -> str:
    """An Exchange token signed with the sandbox's key, carrying exactly ``roles`` and ``wids``."""
    signer = TokenSigner(sandbox.state_dir / "token-signing-key.pem")
    body = {"aud": EXCHANGE, "tid": tenant, "appid": sandbox.client_id, "roles": roles, "wids": wids, **claims}
    return signer.issue(body, issuer=f"https://sts.windows.net/{tenant}/")


def readable_message(error: dict[str, Any]) -> str:
    """The text callers show: details first, then the inner exception, then the message."""
    details = [d["message"] for d in error.get("details") or [] if d.get("message")]
    inner = ((error.get("innererror") or {}).get("internalexception") or {}).get("message")
    return details[0] if details else inner or error["message"]


def assert_error(response: requests.Response, status: int, code: str, text: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["request-id"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert text in readable_message(error), error
    return error


# --- reading ------------------------------------------------------------------------------------------
def test_get_admin_audit_log_config_answers_in_the_odata_envelope(sandbox: SandboxHandle) -> None:
    body = Exo(sandbox, FRESH).invoke("Get-AdminAuditLogConfig").json()
    assert body["@odata.context"] == f"https://outlook.office365.com/adminapi/beta/{FRESH}/$metadata#Collection(Exchange.GenericHashTable)"
    assert body["adminapi.warnings@odata.type"] == "#Collection(String)"
    assert body["@adminapi.warnings"] == []
    config = body["value"][0]
    assert config["UnifiedAuditLogIngestionEnabled"] is False
    assert config["AdminAuditLogEnabled"] is True
    assert config["Name"] == "Admin Audit Log Settings"
    assert config["UnifiedAuditLogFirstOptInDate"] is None


def test_get_admin_audit_log_config_reads_on_for_a_configured_tenant(sandbox: SandboxHandle) -> None:
    config = Exo(sandbox, CONFIGURED).value("Get-AdminAuditLogConfig")
    assert config["UnifiedAuditLogIngestionEnabled"] is True
    assert config["UnifiedAuditLogFirstOptInDate"].endswith("Z")


def test_v1_0_and_the_initial_domain_reach_the_same_org(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, FRESH, version="v1.0")
    config = exo.value("Get-OrganizationConfig", path_tenant="freshcorp.onmicrosoft.com")
    assert config["Name"] == "freshcorp.onmicrosoft.com"
    assert config["DisplayName"] == "Fresh Corp"


def test_select_keeps_only_the_named_properties(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, DEHYDRATED)
    assert exo.value("Get-OrganizationConfig", params={"$select": "IsDehydrated,Name"}) == {"IsDehydrated": True, "Name": "dehydrated.onmicrosoft.com"}


def test_cmdlet_names_are_case_insensitive(sandbox: SandboxHandle) -> None:
    assert Exo(sandbox, FRESH).invoke("get-adminauditlogconfig").status_code == 200


# --- enabling auditing ---------------------------------------------------------------------------------
def test_set_is_read_back_as_true_at_once(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, FRESH)
    response = exo.set_ingestion(True)
    assert response.status_code == 200 and response.json()["value"] == []
    config = exo.value("Get-AdminAuditLogConfig")
    assert config["UnifiedAuditLogIngestionEnabled"] is True and config["UnifiedAuditLogFirstOptInDate"]
    assert sandbox.tenant_state(FRESH)["exchange"]["auditActive"] is False  # takes effect after the delay


def test_set_to_the_current_value_warns_that_nothing_changed(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, CONFIGURED).set_ingestion(True)
    assert response.status_code == 200
    assert response.json()["@adminapi.warnings"] == [
        "The command completed successfully but no settings of 'Admin Audit Log Settings' have been modified."
    ]


def test_enabling_without_an_anchor_mailbox_needs_proxy(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH).invoke("Set-AdminAuditLogConfig", {"UnifiedAuditLogIngestionEnabled": True}, anchor=None)
    assert_error(response, 400, "BadRequest", "Cmdlet needs proxy.")


def test_disabling_works_without_an_anchor_mailbox(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, CONFIGURED)
    assert exo.invoke("Set-AdminAuditLogConfig", {"UnifiedAuditLogIngestionEnabled": False}, anchor=None).status_code == 200
    assert exo.value("Get-AdminAuditLogConfig")["UnifiedAuditLogIngestionEnabled"] is False


def test_set_on_a_dehydrated_org_asks_for_enable_organization_customization(sandbox: SandboxHandle) -> None:
    error = assert_error(Exo(sandbox, DEHYDRATED).set_ingestion(True), 400, "BadRequest", DEHYDRATED_TEXT)
    assert error["message"] == "Error executing cmdlet"
    assert error["details"][0]["message"].startswith("|Microsoft.Exchange.Configuration.Tasks.InvalidOperationInDehydratedContextException|")
    assert error["innererror"]["type"] == "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
    assert error["innererror"]["internalexception"]["type"].endswith("DirectInvokeCmdletExecutionException")
    assert Exo(sandbox, DEHYDRATED).value("Get-AdminAuditLogConfig")["UnifiedAuditLogIngestionEnabled"] is False


def test_enable_organization_customization_hydrates_the_org_so_set_succeeds(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, DEHYDRATED)
    enabled = exo.invoke("Enable-OrganizationCustomization")
    assert enabled.status_code == 200 and enabled.json()["value"] == []
    assert exo.value("Get-OrganizationConfig")["IsDehydrated"] is False
    assert exo.set_ingestion(True).status_code == 200
    assert exo.value("Get-AdminAuditLogConfig")["UnifiedAuditLogIngestionEnabled"] is True


def test_enable_organization_customization_errors_when_not_required(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH).invoke("Enable-OrganizationCustomization")
    error = assert_error(response, 400, "BadRequest", "This operation is not required. Organization is already enabled for customization.")
    assert error["details"][0]["message"].startswith("|System.InvalidOperationException|")


def test_writes_can_stay_blocked_for_a_while_after_customization() -> None:
    # Off by default; a scenario can set the org's hydration_delay to reproduce the observed lag.
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    org = ExchangeOrg.create(enabled=False, dehydrated=True, activation_delay=timedelta(minutes=60), now=now)
    org.hydration_delay = timedelta(minutes=30)
    assert org.enable_customization(now) and not org.dehydrated
    assert org.writes_blocked(now + timedelta(minutes=29)) and not org.writes_blocked(now + timedelta(minutes=30))


# --- bad requests --------------------------------------------------------------------------------------
def test_unknown_cmdlet_is_a_400_command_not_found(sandbox: SandboxHandle) -> None:
    error = assert_error(Exo(sandbox, FRESH).invoke("Get-Mailbox"), 400, "BadRequest", "The term 'Get-Mailbox' is not recognized as a name of a cmdlet")
    assert "CommandNotFoundException" in error["details"][0]["message"]
    assert "The sandbox emulates Get-AdminAuditLogConfig" in error["message"]


def test_unknown_parameter_is_a_400_naming_it(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH).invoke("Get-AdminAuditLogConfig", {"BogusParameter": 1})
    assert_error(
        response,
        400,
        "BadRequest",
        "Parameter set cannot be resolved using the specified named parameters. Invalid cmdlet parameters specified. BogusParameter",
    )


def test_a_string_for_a_boolean_parameter_is_a_400_transformation_error(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH).invoke("Set-AdminAuditLogConfig", {"UnifiedAuditLogIngestionEnabled": "yes"}, anchor=AUDIT_ANCHOR)
    error = assert_error(response, 400, "BadRequest", "Cannot process argument transformation on parameter 'UnifiedAuditLogIngestionEnabled'")
    assert "details" not in error
    assert error["innererror"]["internalexception"]["type"].endswith("ParameterTransformationException")


def test_a_body_without_cmdlet_input_is_a_400(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH).invoke("", json={"CmdletName": "Get-AdminAuditLogConfig"})
    assert_error(response, 400, "BadRequest", "CmdletInput")


def test_other_paths_are_refused_loudly(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, FRESH)
    response = exo.http.get(f"{sandbox.base_url('exchange')}/adminapi/v1.0/{FRESH}/EXOModuleFile", timeout=30)
    assert_error(response, 501, "NotEmulated", "is not emulated by the sandbox")


# --- authentication and authorization -------------------------------------------------------------------
def test_no_token_is_a_401_with_a_bearer_challenge(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH, use_token=False).invoke("Get-AdminAuditLogConfig")
    assert_error(response, 401, "Unauthorized", "no bearer token")
    assert response.headers["WWW-Authenticate"].startswith('Bearer client_id="00000002-0000-0ff1-ce00-000000000000"')
    assert response.headers["x-ms-diagnostics"].startswith("2000000;")


def test_a_graph_token_is_a_401_for_the_wrong_audience(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, FRESH, sandbox.token(FRESH)).invoke("Get-AdminAuditLogConfig")
    assert_error(response, 401, "Unauthorized", "audience claim value is invalid")
    assert 'error_category="invalid_resource"' in response.headers["x-ms-diagnostics"]


def test_a_token_for_another_tenant_is_a_401(sandbox: SandboxHandle) -> None:
    response = Exo(sandbox, CONFIGURED, sandbox.token(FRESH, EXCHANGE)).invoke("Get-AdminAuditLogConfig")
    assert_error(response, 401, "Unauthorized", f"issued for tenant {FRESH}")


def test_a_token_without_exchange_manage_as_app_is_a_401(sandbox: SandboxHandle) -> None:
    token = mint(sandbox, FRESH, roles=[], wids=[EXCHANGE_ADMIN])
    response = Exo(sandbox, FRESH, token).invoke("Get-AdminAuditLogConfig")
    assert_error(response, 401, "Unauthorized", "The token contains no permissions")
    assert response.headers["x-ms-diagnostics"].startswith("2000008;")


def test_the_app_role_without_an_entra_role_is_a_403(sandbox: SandboxHandle) -> None:
    token = mint(sandbox, FRESH, roles=["Exchange.ManageAsApp"], wids=[])
    response = Exo(sandbox, FRESH, token).invoke("Get-AdminAuditLogConfig")
    assert_error(response, 403, "Forbidden", "holds no Microsoft Entra role that Exchange Online supports")


def test_global_reader_reads_the_audit_setting(sandbox: SandboxHandle) -> None:
    assert Exo(sandbox, OTHER_ORG).value("Get-AdminAuditLogConfig")["UnifiedAuditLogIngestionEnabled"] is False


@pytest.mark.parametrize("cmdlet", ["Set-AdminAuditLogConfig", "Enable-OrganizationCustomization"])
def test_global_reader_may_not_run_write_cmdlets(sandbox: SandboxHandle, cmdlet: str) -> None:
    response = Exo(sandbox, OTHER_ORG).invoke(cmdlet, {"UnifiedAuditLogIngestionEnabled": True} if cmdlet.startswith("Set") else {}, anchor=AUDIT_ANCHOR)
    error = assert_error(response, 403, "Unauthorized", f"User is not allowed to call {cmdlet}")
    assert "details" not in error


@pytest.mark.parametrize(
    ("role", "cmdlet", "status"),
    [
        (DIRECTORY_ROLES["Compliance Administrator"], "Set-AdminAuditLogConfig", 200),
        (DIRECTORY_ROLES["Global Administrator"], "Set-AdminAuditLogConfig", 200),
        (DIRECTORY_ROLES["Security Reader"], "Get-AdminAuditLogConfig", 200),
        (DIRECTORY_ROLES["Security Reader"], "Set-AdminAuditLogConfig", 403),
        (HELPDESK_ADMINISTRATOR, "Get-OrganizationConfig", 200),
        (HELPDESK_ADMINISTRATOR, "Get-AdminAuditLogConfig", 403),
    ],
)
def test_directory_roles_decide_which_cmdlets_run(sandbox: SandboxHandle, role: str, cmdlet: str, status: int) -> None:
    token = mint(sandbox, FRESH, roles=["Exchange.ManageAsApp"], wids=[role])
    parameters = {"UnifiedAuditLogIngestionEnabled": True} if cmdlet.startswith("Set") else {}
    assert Exo(sandbox, FRESH, token).invoke(cmdlet, parameters, anchor=AUDIT_ANCHOR).status_code == status


def test_a_tenant_without_an_exchange_org_is_a_404(sandbox: SandboxHandle) -> None:
    token = mint(sandbox, UNKNOWN_TENANT, roles=["Exchange.ManageAsApp"], wids=[EXCHANGE_ADMIN])
    response = Exo(sandbox, UNKNOWN_TENANT, token).invoke("Get-AdminAuditLogConfig")
    assert_error(response, 404, "NotFound", "has no Exchange Online organization")


# --- faults, request ids and the log ---------------------------------------------------------------------
def test_throttle_fault_is_a_429_with_retry_after(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, FRESH)
    sandbox.add_fault(service="exchange", kind="throttle", count=1, retry_after="7s")
    throttled = exo.invoke("Get-AdminAuditLogConfig")
    assert_error(throttled, 429, "TooManyRequests", "throttled")
    assert throttled.headers["Retry-After"] == "7"
    assert exo.invoke("Get-AdminAuditLogConfig").status_code == 200


def test_every_answer_carries_a_fresh_request_id(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, FRESH)
    ids = {exo.invoke("Get-AdminAuditLogConfig").headers["request-id"], exo.invoke("Get-Nothing").headers["request-id"]}
    assert len(ids) == 2


def test_request_log_names_the_cmdlet_tenant_and_app(sandbox: SandboxHandle) -> None:
    exo = Exo(sandbox, FRESH)
    exo.invoke("Get-AdminAuditLogConfig")
    exo.invoke("Set-AdminAuditLogConfig", {"UnifiedAuditLogIngestionEnabled": True}, anchor=None)
    logged = sandbox.request_log(service="exchange")
    assert [(e["method"], e["operation"], e["status"]) for e in logged] == [
        ("POST", "Get-AdminAuditLogConfig", 200),
        ("POST", "Set-AdminAuditLogConfig", 400),
    ]
    assert {e["tenant_id"] for e in logged} == {FRESH} and {e["app_id"] for e in logged} == {sandbox.client_id}
    assert logged[0]["path"] == f"/adminapi/beta/{FRESH}/InvokeCommand"


# --- the project's client against the sandbox ------------------------------------------------------------
def _client(sandbox: SandboxHandle, tenant: str) -> ExchangeAdminClient:
    token = sandbox.token(tenant, EXCHANGE)
    return ExchangeAdminClient(sandbox.base_url("exchange"), authorization=lambda: f"Bearer {token}", ca_bundle=sandbox.ca_bundle, retries=0, tenant_id=tenant)


def test_client_reports_a_dehydrated_org_as_such(sandbox: SandboxHandle) -> None:
    with pytest.raises(AuditLogDehydrated):
        _client(sandbox, DEHYDRATED).set_unified_audit_log_ingestion(True)


def test_client_treats_already_customized_as_done(sandbox: SandboxHandle) -> None:
    client = _client(sandbox, DEHYDRATED)
    assert client.enable_organization_customization() is True
    assert client.enable_organization_customization() is False
    client.set_unified_audit_log_ingestion(True)
    assert client.get_admin_audit_log_config().unified_audit_log_ingestion_enabled is True
