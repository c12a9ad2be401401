"""The four emulated cmdlets: parameter checks, the org's rules, and the objects they return.

Each cmdlet is a function ``(CmdletCall) -> CmdletResult`` registered in :data:`CMDLETS`. Object
properties follow what the cmdlets print on a real tenant (a realistic subset); collections and
GUIDs carry the ``@odata.type`` annotations the REST endpoint adds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.core.world import Tenant
from sandbox.exchange.errors import AlreadyCustomized, InvalidParameters, NeedsProxy, OrganizationDehydrated, ParameterTransformation
from sandbox.exchange.models import org_guid

# Parameters every cmdlet here accepts and ignores (PowerShell's common confirmation switches).
_COMMON = ("Confirm", "Force")
NO_CHANGE_WARNING = "The command completed successfully but no settings of '{0}' have been modified."
AUDIT_SETTINGS_NAME = "Admin Audit Log Settings"


@dataclass
class CmdletCall:
    """One InvokeCommand request, parsed."""

    tenant: Tenant
    parameters: dict[str, Any]
    now: datetime
    anchor_mailbox: str | None


@dataclass
class CmdletResult:
    """What the cmdlet wrote to its output and warning streams."""

    value: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if value else None


def _named(parameters: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Parameters by canonical name (PowerShell matches them case-insensitively); refuse unknown ones."""
    canonical = {name.lower(): name for name in (*allowed, *_COMMON)}
    unknown = [name for name in parameters if name.lower() not in canonical]
    if unknown:
        raise InvalidParameters(unknown)
    return {canonical[name.lower()]: value for name, value in parameters.items()}


def _boolean(name: str, value: Any) -> bool:
    # PowerShell binds booleans and the numbers 0/1; a string such as "true" is refused.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ParameterTransformation(name, value, "System.Boolean")


def get_admin_audit_log_config(call: CmdletCall) -> CmdletResult:
    _named(call.parameters, ())
    org, tenant_id = call.tenant.exchange, call.tenant.id
    return CmdletResult(
        [
            {
                "AdminAuditLogEnabled": True,
                "UnifiedAuditLogIngestionEnabled": org.ingestion_enabled,
                "UnifiedAuditLogFirstOptInDate": _iso(org.first_opt_in_at),
                "AdminAuditLogCmdlets@odata.type": "#Collection(String)",
                "AdminAuditLogCmdlets": ["*"],
                "AdminAuditLogParameters@odata.type": "#Collection(String)",
                "AdminAuditLogParameters": ["*"],
                "AdminAuditLogExcludedCmdlets@odata.type": "#Collection(String)",
                "AdminAuditLogExcludedCmdlets": [],
                "AdminAuditLogAgeLimit": "90.00:00:00",
                "LogLevel": "None",
                "TestCmdletLoggingEnabled": False,
                "LoadBalancerCount": 3,
                "RefreshInterval": 10,
                "Identity": AUDIT_SETTINGS_NAME,
                "Name": AUDIT_SETTINGS_NAME,
                "Guid@odata.type": "#Guid",
                "Guid": org_guid(tenant_id, "admin-audit-log-config"),
                "IsValid": True,
                "ObjectState": "Unchanged",
            }
        ]
    )


def get_organization_config(call: CmdletCall) -> CmdletResult:
    _named(call.parameters, ())
    spec, org = call.tenant.spec, call.tenant.exchange
    domain = spec.initial_domain
    return CmdletResult(
        [
            {
                "Name": domain,
                "DisplayName": spec.display_name,
                "Identity": domain,
                "IsDehydrated": org.dehydrated,
                "OrganizationId": (
                    f"NAMPR01A001.prod.outlook.com/Microsoft Exchange Hosted Organizations/{domain}"
                    f" - NAMPR01A001.prod.outlook.com/ConfigurationUnits/{domain}/Configuration"
                ),
                "Guid@odata.type": "#Guid",
                "Guid": org_guid(call.tenant.id, "organization"),
                "ExchangeObjectId@odata.type": "#Guid",
                "ExchangeObjectId": org_guid(call.tenant.id, "organization"),
                "AuditDisabled": False,
                "DefaultPublicFolderAgeLimit": None,
                "IsMixedMode": False,
                "IsValid": True,
                "ObjectState": "Unchanged",
            }
        ]
    )


def set_admin_audit_log_config(call: CmdletCall) -> CmdletResult:
    parameters = _named(call.parameters, ("UnifiedAuditLogIngestionEnabled",))
    enable = None
    if "UnifiedAuditLogIngestionEnabled" in parameters:
        enable = _boolean("UnifiedAuditLogIngestionEnabled", parameters["UnifiedAuditLogIngestionEnabled"])
    org = call.tenant.exchange
    if org.writes_blocked(call.now):
        raise OrganizationDehydrated()
    if enable and not call.anchor_mailbox:
        # Observed: disabling works from any server, enabling must reach the mailbox server.
        raise NeedsProxy()
    changed = enable is not None and org.set_ingestion(enable, call.now)
    return CmdletResult([], [] if changed else [NO_CHANGE_WARNING.format(AUDIT_SETTINGS_NAME)])


def enable_organization_customization(call: CmdletCall) -> CmdletResult:
    _named(call.parameters, ())
    if not call.tenant.exchange.enable_customization(call.now):
        raise AlreadyCustomized()
    return CmdletResult()


CMDLETS: dict[str, Callable[[CmdletCall], CmdletResult]] = {
    "Get-AdminAuditLogConfig": get_admin_audit_log_config,
    "Get-OrganizationConfig": get_organization_config,
    "Set-AdminAuditLogConfig": set_admin_audit_log_config,
    "Enable-OrganizationCustomization": enable_organization_customization,
}


def find_cmdlet(name: str) -> str | None:
    """The canonical name of an emulated cmdlet (PowerShell names are case-insensitive)."""
    return next((known for known in CMDLETS if known.lower() == name.lower()), None)
