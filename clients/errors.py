"""Typed errors for every API the project calls, in two layers (as openai-python and httpx do).

Transport and status: :class:`ApiError` with ``service``, ``status``, ``code``, ``message``,
``request_id`` and the body's ``errors`` list, subclassed per kind of status (not found,
permission denied, throttled, …); :class:`ApiConnectionError` when no answer came at all.

Translated: what a person acts on (a missing permission, a dehydrated organization, a refused
device, …). A client translates a status error in one place (its ``translate`` method); the
translated class subclasses the status class it came from and keeps its status, request id and
code, so ``except PermissionDenied`` still catches a missing permission. Errors from msal's token
dictionaries (no HTTP status reaches us) are domain errors with the AADSTS code in their message.

No error carries a secret: request bodies and headers are never stored on them, so Prefect can
persist them in task states safely.
"""

from __future__ import annotations

from typing import Any, Self

from core.errors import OnboardingError


# --- transport and status ----------------------------------------------------------------------------
class ApiError(OnboardingError):
    """An API answered with an error status.

    ``api_message`` is what the service said; ``explanation``, where a client translated the error,
    is what it means for the onboarding, and takes its place in the message.
    """

    def __init__(
        self,
        service: str,
        status: int,
        code: str | None,
        message: str,
        *,
        request_id: str | None = None,
        operation: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        explanation: str | None = None,
        next_action: str | None = None,
    ) -> None:
        self.service = service
        self.status = status
        self.code = code
        self.request_id = request_id
        self.operation = operation
        self.api_message = message
        self.errors = list(errors or [])  # the body's error objects, where it lists several (JSON:API)
        where = f"{service} {operation}" if operation else service
        text = f"{where} failed: HTTP {status}{f' {code}' if code else ''}: {explanation or message}"
        if request_id:
            text += f" (request-id {request_id})"
        super().__init__(text, next_action=next_action)

    @classmethod
    def from_error(cls, error: ApiError, explanation: str | None = None, *, next_action: str | None = None, **extra: Any) -> Self:
        """This kind of error for ``error``: the same service, status, code, request id, operation and body errors."""
        return cls(
            error.service, error.status, error.code, error.api_message, request_id=error.request_id, operation=error.operation,
            errors=error.errors, explanation=explanation, next_action=next_action or error.next_action or None, **extra,
        )


class BadRequest(ApiError):
    """400: the request was malformed or refused by validation."""


class Unauthorized(ApiError):
    """401: the token or key was missing, invalid or expired."""


class PermissionDenied(ApiError):
    """403: authenticated, but not allowed."""


class NotFound(ApiError):
    """404: the object does not exist (or has not replicated yet)."""


class Conflict(ApiError):
    """409 or a documented 'already exists' error."""


class Throttled(ApiError):
    """429 (or the service's throttling code): wait ``retry_after`` seconds."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerError(ApiError):
    """5xx: the service failed; retry later."""


class UntrustedNextLink(ApiError):
    """A page linked its next page off the service's own scheme, host and port: not followed, no credential sent.

    The real services page on their own host, so such a link is a misconfiguration or an attack,
    not something a retry fixes. ``status`` and ``request_id`` are those of the page that carried
    the link; ``link_origin`` names where it pointed (scheme, host and port only).
    """

    next_action = (
        "Nothing was sent to that host. Check the service's base URL setting; if it is right, report the link to the service "
        "(with the request id) before re-running the step."
    )

    def __init__(self, *args: Any, link_origin: str, **kwargs: Any) -> None:
        self.link_origin = link_origin
        super().__init__(*args, **kwargs)


def status_error_class(status: int) -> type[ApiError]:
    """The most specific :class:`ApiError` subclass for an HTTP status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


_BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: PermissionDenied, 404: NotFound, 409: Conflict, 429: Throttled}


class ApiConnectionError(OnboardingError):
    """The request never got an HTTP answer (DNS, TLS, refused connection); the message says which, the cause is kept."""


class ApiTimeout(ApiConnectionError):
    """No answer within the timeout."""


class CallBudgetExhausted(ApiConnectionError):
    """The call budget had no slot for this call within its wait: nothing was sent; retry later."""

    next_action = "Nothing to fix if it passes: the budget spreads the calls of many tenants; if it persists, see M365_ONBOARD_BUDGET__*."


# --- the tenant and the provider's app (login) ---------------------------------------------------------
class TenantNotFound(OnboardingError):
    """The tenant id or domain does not exist in this cloud (AADSTS90002 / 900023)."""

    next_action = "Check the Directory (tenant) ID with the customer (Entra admin center > Overview) and the cloud setting."


class UnknownTenant(TenantNotFound, BadRequest):
    """OIDC discovery answered 400 with AADSTS90002 or 900023: no such tenant in this cloud."""


class AppNotConsented(OnboardingError):
    """The provider's app has no service principal in the tenant (AADSTS700016 / 7000229)."""

    next_action = "Send the customer's Global Administrator the admin-consent link and ask them to accept."


class InvalidCredentials(OnboardingError):
    """The provider's own app credential was refused (wrong or expired secret, unknown certificate)."""

    next_action = "Check the provider app credentials block (client id, certificate or secret, expiry)."


# --- permissions ---------------------------------------------------------------------------------------
class MissingPermission(ApiError):
    """A call was refused because the provider's app lacks a permission or Entra role; ``permission`` names it.

    Raised as :class:`PermissionNotGranted` (a 403) or :class:`AppPermissionNotGranted` (a 401), so
    it is also the status error it came with; :func:`missing_permission` picks the one.
    """

    def __init__(self, *args: Any, permission: str, **kwargs: Any) -> None:
        self.permission = permission
        super().__init__(*args, **kwargs)


class PermissionNotGranted(MissingPermission, PermissionDenied):
    """403: the token carries no permission (or the app no Entra role) that allows the call."""


class AppPermissionNotGranted(MissingPermission, Unauthorized):
    """401: the service refuses the token outright because it lacks an application permission."""


def missing_permission(error: ApiError, permission: str, explanation: str, next_action: str) -> MissingPermission:
    """The :class:`MissingPermission` for a 401 or 403 ``error``."""
    kind: type[MissingPermission] = AppPermissionNotGranted if isinstance(error, Unauthorized) else PermissionNotGranted
    return kind.from_error(error, explanation, next_action=next_action, permission=permission)


# --- Graph -------------------------------------------------------------------------------------------
class RoleAlreadyAssigned(BadRequest):
    """Graph refused a role assignment that already exists (400 "conflicting object"): it is there."""


# --- Exchange Online and the Management Activity API -------------------------------------------------
class AuditLogOff(BadRequest):
    """The Management Activity API refuses the tenant: its unified audit log is off or not yet in effect."""

    next_action = "Enable auditing (Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true) and allow up to 60 minutes."


class NoSubscription(BadRequest):
    """AF20022: no subscription of that content type is enabled."""


class SubscriptionAlreadyEnabled(BadRequest):
    """AF20024: the subscription is enabled already, which is what starting it asked for."""


class AuditLogDehydrated(BadRequest):
    """The Exchange organization is dehydrated: Enable-OrganizationCustomization must run first."""

    next_action = "Run Enable-OrganizationCustomization in Exchange Online PowerShell, then enable auditing."


class AlreadyCustomized(BadRequest):
    """Enable-OrganizationCustomization refused because the organization is customized already."""


# --- Workbench -----------------------------------------------------------------------------------------
class DeviceRejected(BadRequest):
    """Workbench refused to register or change the security device; ``detail`` is its JSON:API detail."""

    next_action = "Fix the device settings named in the detail (tenant id, organization name) and re-run the step."

    def __init__(self, *args: Any, detail: str, **kwargs: Any) -> None:
        self.detail = detail
        super().__init__(*args, **kwargs)


class WorkbenchRoleRequired(PermissionDenied):
    """403 on a security-device write: the key's role or read-only flag forbids it."""

    next_action = (
        "Use an API key of a Workbench service account with the Organization Admin role that is not read-only, "
        "in the customer's organization (Organization Settings > Service Accounts)."
    )


class WorkbenchOrganizationMismatch(OnboardingError):
    """The request's provider organization is not the one the Workbench credentials are for: refused before any write.

    A mistyped provider-organization GUID that the key can also see would otherwise register the
    tenant under another customer (and invite the SOC guest under the wrong address).
    """

    next_action = (
        "Check the tenant's provider organization GUID (--provider-org, or provider_org_id in the CSV) with the customer's Workbench "
        "organization, or name the Workbench credentials block of that organization (--workbench-block)."
    )

    def __init__(self, requested: str, allowed: str) -> None:
        self.requested = requested
        self.allowed = allowed
        super().__init__(
            f"provider organization {requested} is not {allowed}, the organization the Workbench credentials are for: "
            "refused before anything was written."
        )


class PluginNotFound(OnboardingError):
    """The Workbench plugin to register is missing from ``/plugins`` (or is ambiguous)."""

    next_action = "Check the setting provider.workbench_plugin_name against the plugins Workbench lists."


def jsonapi_errors(error: BaseException) -> list[dict[str, Any]]:
    """The JSON:API ``errors[]`` an API error carried (empty for other errors)."""
    return list(error.errors) if isinstance(error, ApiError) else []
