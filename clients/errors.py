"""Typed errors for every API the project calls, in two layers (as openai-python and httpx do).

Transport and status: :class:`ApiError` with ``service``, ``status``, ``code``, ``message`` and
``request_id``, subclassed per kind (not found, conflict, permission denied, throttled, …).
Domain: errors a person acts on (tenant not found, app not consented, consent incomplete, …), each
with a message that names the tenant and says what to do next. No error carries a secret: request
bodies and headers are never stored on them, so Prefect can persist them in task states safely.
"""

from __future__ import annotations

from typing import Any


class OnboardingError(Exception):
    """Base of every error this project raises on purpose."""

    next_action: str = ""

    def __init__(self, message: str, *, next_action: str | None = None) -> None:
        self.message = message
        if next_action is not None:
            self.next_action = next_action
        super().__init__(f"{message} Next: {self.next_action}" if self.next_action else message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep errors picklable for Prefect's persisted states; the stored args are text only.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[OnboardingError], state: dict[str, Any]) -> OnboardingError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, f"{error.message} Next: {error.next_action}" if error.next_action else error.message)
    return error


# --- transport and status ----------------------------------------------------------------------------
class ApiError(OnboardingError):
    """An API answered with an error status."""

    def __init__(
        self,
        service: str,
        status: int,
        code: str | None,
        message: str,
        *,
        request_id: str | None = None,
        operation: str | None = None,
        next_action: str | None = None,
    ) -> None:
        self.service = service
        self.status = status
        self.code = code
        self.request_id = request_id
        self.operation = operation
        where = f"{service} {operation}" if operation else service
        text = f"{where} failed: HTTP {status}{f' {code}' if code else ''}: {message}"
        if request_id:
            text += f" (request-id {request_id})"
        super().__init__(text, next_action=next_action)
        self.api_message = message


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


class ApiConnectionError(OnboardingError):
    """The request never got an HTTP answer (DNS, TLS, refused connection)."""


class ApiTimeout(ApiConnectionError):
    """No answer within the timeout."""


def status_error_class(status: int) -> type[ApiError]:
    """The most specific :class:`ApiError` subclass for an HTTP status."""
    if status == 400:
        return BadRequest
    if status == 401:
        return Unauthorized
    if status == 403:
        return PermissionDenied
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 429:
        return Throttled
    if status >= 500:
        return ServerError
    return ApiError


# --- domain ------------------------------------------------------------------------------------------
class TenantNotFound(OnboardingError):
    """The tenant id or domain does not exist in this cloud (AADSTS90002 / 900023)."""

    next_action = "Check the Directory (tenant) ID with the customer (Entra admin center > Overview) and the cloud setting."


class TenantNameMismatch(OnboardingError):
    """The organization name typed by the team differs from the tenant's display name."""

    next_action = "Confirm with the customer which tenant is meant; correct the organization name or the tenant id."


class AppNotConsented(OnboardingError):
    """The provider's app has no service principal in the tenant (AADSTS700016 / 7000229)."""

    next_action = "Send the customer's Global Administrator the admin-consent link and ask them to accept."


class ConsentIncomplete(OnboardingError):
    """Consent was given, but some required permissions were not granted."""

    next_action = "Ask the customer's admin to grant the missing permissions (re-open the admin-consent link and accept)."

    def __init__(self, message: str, missing: list[str], **kwargs: Any) -> None:
        self.missing = list(missing)
        super().__init__(message, **kwargs)


class MissingPermission(OnboardingError):
    """A call needed a permission the token does not carry; names it instead of a bare 403."""

    def __init__(self, message: str, permission: str, **kwargs: Any) -> None:
        self.permission = permission
        super().__init__(message, **kwargs)


class InvalidCredentials(OnboardingError):
    """The provider's own app credential was refused (wrong or expired secret, unknown certificate)."""

    next_action = "Check the provider app credentials block (client id, certificate or secret, expiry)."


class AuditLogOff(OnboardingError):
    """The tenant's unified audit log is off or not yet in effect."""

    next_action = "Enable auditing (Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true) and allow up to 60 minutes."


class AuditLogDehydrated(OnboardingError):
    """The Exchange organization is dehydrated: Enable-OrganizationCustomization must run first."""

    next_action = "Run Enable-OrganizationCustomization in Exchange Online PowerShell, then enable auditing."


class DeviceRejected(OnboardingError):
    """Workbench refused to register the security device; ``detail`` is its JSON:API detail."""

    next_action = "Fix the device settings named in the detail (tenant id, organization name) and re-run the step."

    def __init__(self, message: str, detail: str, **kwargs: Any) -> None:
        self.detail = detail
        super().__init__(message, **kwargs)


class StepNotConverged(OnboardingError):
    """A step applied its changes but reads never showed the desired state within the deadline."""

    next_action = "Re-run the step later; if it persists, compare the fields below in the admin center."

    def __init__(self, message: str, fields: list[str], **kwargs: Any) -> None:
        self.fields = list(fields)
        super().__init__(message, **kwargs)
