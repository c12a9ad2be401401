"""Exchange Online admin API (``/adminapi/beta/{tenant}/InvokeCommand``): the audit-log cmdlets.

This REST surface is what the Exchange Online PowerShell module uses; Microsoft documents only the
module, so the shapes follow public code (CIPP's New-ExoRequest) and are pinned by tests against
the sandbox. Every cmdlet here can be repeated safely, so its POST is retried like a read.

A failed cmdlet says what went wrong only in its text: :func:`_cmdlet_failure` is the one place
that reads it (a dehydrated organization, one customized already).
"""

from __future__ import annotations

from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from clients.errors import (
    AlreadyCustomized,
    ApiError,
    AuditLogDehydrated,
    BadRequest,
    PermissionDenied,
    Unauthorized,
    missing_permission,
)
from clients.http import ApiClient, ErrorDetails, error_envelope

# Anchor mailboxes used by the module (CIPP): one for most cmdlets, another for Set-AdminAuditLogConfig,
# which otherwise fails with "Cmdlet needs proxy".
DEFAULT_ANCHOR = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"
AUDIT_CONFIG_ANCHOR = "APP:SystemMailbox{8cc370d3-822a-4ab8-a926-bb94bd0641a9}@"
# Entra roles of the app that Exchange Online honours: a read role for Get-*, a write role for changes.
READ_ROLE = "Global Reader"
WRITE_ROLE = "Exchange Administrator"
CUSTOMIZE = "Enable-OrganizationCustomization"


def _cmdlet_failure(message: str) -> Literal["dehydrated", "already_customized"] | None:
    """What a failed cmdlet's text says, where it says something onboarding acts on."""
    lowered = message.lower()
    if "already enabled" in lowered or "not required" in lowered:
        return "already_customized"
    if CUSTOMIZE.lower() in lowered:
        return "dehydrated"
    return None


class AdminAuditLogConfig(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    unified_audit_log_ingestion_enabled: bool = Field(alias="UnifiedAuditLogIngestionEnabled")


class OrganizationConfig(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    is_dehydrated: bool = Field(alias="IsDehydrated")
    name: str | None = Field(default=None, alias="Name")


class ExchangeAdminClient(ApiClient):
    """Cmdlets run as the provider's app in one tenant (the token must be for that tenant)."""

    service = "exchange"

    def parse_error(self, response: requests.Response) -> ErrorDetails:
        """Message order as the module's callers read it: details, inner exception, message.

        Details read ``|Exception.Type|text``; the type is dropped. The inner exception key is
        ``internalexception`` on the wire (CIPP spells it ``internalException``), so both are read.
        """
        error = error_envelope(response)
        if error is None:
            return super().parse_error(response)
        details = [str(d.get("message")).split("|")[-1].strip() for d in error.get("details") or [] if d.get("message")]
        inner = error.get("innererror") or {}
        internal = inner.get("internalexception") or inner.get("internalException") or {}
        return ErrorDetails(error.get("code"), (details[0] if details else None) or internal.get("message") or error.get("message") or response.reason)

    def translate(self, error: ApiError) -> ApiError:
        cmdlet = error.operation or ""
        if isinstance(error, Unauthorized):  # the token lacks the app role Exchange.ManageAsApp
            return missing_permission(
                error, "Exchange.ManageAsApp", f"the provider's app needs Exchange.ManageAsApp in tenant {self.tenant_id}",
                next_action="Have the customer's admin grant Exchange.ManageAsApp (re-open the admin-consent link).",
            )
        if isinstance(error, PermissionDenied):  # the app's Entra role does not allow the cmdlet
            role = WRITE_ROLE if cmdlet.split("-", 1)[0] in ("Set", "Enable") else READ_ROLE
            return missing_permission(
                error, role, f"the provider's app needs the {role} role in tenant {self.tenant_id} to run {cmdlet}",
                next_action=f"Have the customer's admin add the provider's app to the {role} role (Entra ID > Roles & admins), or use guide mode.",
            )
        if isinstance(error, BadRequest):
            failure = _cmdlet_failure(error.api_message)
            if failure == "already_customized" and cmdlet == CUSTOMIZE:
                return AlreadyCustomized.from_error(error, "the organization is customized already")
            if failure == "dehydrated" and cmdlet != CUSTOMIZE:
                return AuditLogDehydrated.from_error(error, f"tenant {self.tenant_id}: {cmdlet} refused because the organization is dehydrated")
        return error

    def invoke(self, cmdlet: str, parameters: dict[str, Any] | None = None, *, anchor: str = DEFAULT_ANCHOR) -> list[dict[str, Any]]:
        """Run one cmdlet and return its ``value`` list (following ``@odata.nextLink`` on Exchange's own host only)."""
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
        headers = {"X-AnchorMailbox": f"{anchor}{self.tenant_id}", "Prefer": "odata.maxpagesize=1000"}
        url: str | None = f"/adminapi/beta/{self.tenant_id}/InvokeCommand"
        values: list[dict[str, Any]] = []
        while url:
            response = self.request("POST", url, operation=cmdlet, json=body, headers=headers, idempotent_post=True)
            data = response.json()
            values.extend(data.get("value") or [])
            url = self.next_page(data.get("@odata.nextLink"), response, operation=cmdlet)
        return values

    def get_admin_audit_log_config(self) -> AdminAuditLogConfig:
        return AdminAuditLogConfig.model_validate(self.invoke("Get-AdminAuditLogConfig")[0])

    def set_unified_audit_log_ingestion(self, enabled: bool) -> None:
        self.invoke("Set-AdminAuditLogConfig", {"UnifiedAuditLogIngestionEnabled": enabled}, anchor=AUDIT_CONFIG_ANCHOR)

    def get_organization_config(self) -> OrganizationConfig:
        return OrganizationConfig.model_validate(self.invoke("Get-OrganizationConfig")[0])

    def enable_organization_customization(self) -> bool:
        """Run it once; False when the organization was already customized (the cmdlet then errors)."""
        try:
            self.invoke(CUSTOMIZE)
        except AlreadyCustomized:
            return False
        return True
