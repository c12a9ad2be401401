"""Office 365 Management Activity API errors: ``{"error": {"code": "AF…", "message": …}}``.

Codes and messages are the API reference's error table (reference §8). HTTP statuses confirmed in
the wild: AF10001 401 (CoE starter kit #3192), AF20023 and AF20024 400, AF429 403 (Microsoft's
troubleshooting page), 429 for too-frequent starts (elastic/integrations #15476). The rest are the
sandbox's choice: 400 for every AF2xxxx code (including AF20010 and AF20050), 500 for AF50000.
A request without a usable token gets ASP.NET's own 401 body, not an AF code (CoE kit #300).
"""

from __future__ import annotations

from contextvars import ContextVar

from sandbox.core.errors import ErrorSet, SandboxHTTPError
from sandbox.core.tokens import new_guid

NO_PUBLISHER = "00000000-0000-0000-0000-000000000000"

# (API method name, PublisherIdentifier) of the request being served, for AF429's message.
current_call: ContextVar[tuple[str, str]] = ContextVar("management_current_call", default=("Unknown", NO_PUBLISHER))


class ActivityError(SandboxHTTPError):
    """One Management Activity API error; subclasses fix the status and the AF code."""

    status_code = 400
    code = "AF50000"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status_code, {"error": {"code": self.code, "message": message}}, headers)
        self.message = message


class AuthorizationDenied(SandboxHTTPError):
    """401 for a missing, expired or foreign token: the web framework's body, not an AF code."""

    def __init__(self) -> None:
        super().__init__(401, {"Message": "Authorization has been denied for this request."}, {"WWW-Authenticate": "Bearer"})


class PermissionMissing(ActivityError):
    status_code = 401
    code = "AF10001"

    def __init__(self, roles: list[str]) -> None:
        super().__init__(f"The permission set ({','.join(roles)}) sent in the request does not include the expected permission.")


class MissingParameter(ActivityError):
    code = "AF20001"

    def __init__(self, name: str) -> None:
        super().__init__(f"Missing parameter: {name}.")


class InvalidParameterType(ActivityError):
    code = "AF20002"

    def __init__(self, name: str, expected: str) -> None:
        super().__init__(f"Invalid parameter type: {name}. Expected type: {expected}")


class ExpirationInPast(ActivityError):
    code = "AF20003"

    def __init__(self, expiration: str) -> None:
        super().__init__(f"Expiration {expiration} provided is set to past date and time.")


class TenantMismatch(ActivityError):
    code = "AF20010"

    def __init__(self, url_tenant: str, token_tenant: str) -> None:
        super().__init__(f"The tenant ID passed in the URL ({url_tenant}) does not match the tenant ID passed in the access token ({token_tenant}).")


class TenantNotFound(ActivityError):
    code = "AF20011"

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"Specified tenant ID ({tenant_id}) does not exist in the system or has been deleted.")


class TenantNotGuid(ActivityError):
    code = "AF20013"

    def __init__(self, tenant_ref: str) -> None:
        super().__init__(f"The tenant ID passed in the URL ({tenant_ref}) is not a valid GUID.")


class InvalidContentType(ActivityError):
    code = "AF20020"

    def __init__(self) -> None:
        super().__init__("The specified content type is not valid.")


class WebhookNotValidated(ActivityError):
    code = "AF20021"

    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"The webhook endpoint {{{address}) could not be validated. {why}")


class NoSubscription(ActivityError):
    code = "AF20022"

    def __init__(self) -> None:
        super().__init__("No subscription found for the specified content type.")


class SubscriptionDisabled(ActivityError):
    """Observed text is "The subscription was disabled." (the table's "by {0}" is not sent)."""

    code = "AF20023"

    def __init__(self) -> None:
        super().__init__("The subscription was disabled.")


class AlreadyEnabled(ActivityError):
    code = "AF20024"

    def __init__(self) -> None:
        super().__init__("The subscription is already enabled. No property change.")


WINDOW_RULE = (
    "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours "
    "apart, with the start time no more than 7 days in the past."
)


class InvalidWindow(ActivityError):
    """Only one of startTime/endTime given."""

    code = "AF20030"

    def __init__(self) -> None:
        super().__init__(WINDOW_RULE)


class WindowOutOfRange(ActivityError):
    """Window longer than 24 h, reversed, or starting too far back (observed code, same text)."""

    code = "AF20055"

    def __init__(self) -> None:
        super().__init__(WINDOW_RULE)


class InvalidNextPage(ActivityError):
    code = "AF20031"

    def __init__(self, value: str) -> None:
        super().__init__(f"Invalid nextPage Input: {value}.")


class ContentNotFound(ActivityError):
    code = "AF20050"

    def __init__(self, content_id: str) -> None:
        super().__init__(f"The specified content ({content_id}) does not exist.")


class ContentExpired(ActivityError):
    code = "AF20051"

    def __init__(self, content_id: str) -> None:
        super().__init__(f"Content requested with the key {content_id} has already expired. Content older than 7 days cannot be retrieved.")


class InvalidContentId(ActivityError):
    code = "AF20052"

    def __init__(self, content_id: str) -> None:
        super().__init__(f"Content ID {content_id} in the URL is invalid.")


class TooManyRequests(ActivityError):
    """Tenant/publisher quota exceeded: AF429 comes with HTTP 403 (sic) in Microsoft's own example."""

    status_code = 403
    code = "AF429"

    def __init__(self, retry_after_s: int | None) -> None:
        method, publisher = current_call.get()
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        super().__init__(f"Too many requests. Method={method}, PublisherId={publisher}", headers)


class StartTooSoon(ActivityError):
    """A start less than 15 minutes after the previous one for the content type (HTTP 429, as observed)."""

    status_code = 429
    code = "AF429"

    def __init__(self, wait_s: int) -> None:
        minutes, seconds = divmod(max(wait_s, 1), 60)
        super().__init__(
            f"Too many frequent subscription start requests. Please retry again after {minutes}m {seconds}s",
            {"Retry-After": str(max(wait_s, 1))},
        )


class AuditNotEnabled(SandboxHTTPError):
    """Start while the unified audit log is off (or not yet in effect): 400 with a non-AF code.

    The service's exception text is split over ``code`` and ``message`` as observed; callers detect
    it by ``DataServiceException`` / ``does not exist`` in the message.
    """

    def __init__(self, tenant_id: str, content_type: str, app_id: str, publisher: str) -> None:
        code = (
            f"StartSubscription [CorrId={new_guid()}][TenantId={tenant_id},ContentType={content_type},"
            f"ApplicationId={app_id},PublisherId={publisher}][AppId={app_id}] failed. Exception"
        )
        message = (
            f"Microsoft.Office.Compliance.Audit.DataServiceException: Tenant {tenant_id} does not exist.\r\n"
            "   at Microsoft.Office.Compliance.Audit.API.AzureManager.<GetSubscriptionTableClientForTenantAsync>d__52.MoveNext()\r\n"
            "--- End of stack trace from previous location where exception was thrown ---\r\n"
            "   at System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw()\r\n"
            "   at Microsoft.Office.Compliance.Audit.API.AzureManager.<GetAPISubscriptionAsync>d__22.MoveNext()"
        )
        super().__init__(400, {"error": {"code": code, "message": message}})


class ServiceUnavailable(ActivityError):
    status_code = 503
    code = "AF50000"

    def __init__(self, retry_after_s: int | None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        super().__init__("An internal error occurred. Retry the request.", headers)


class NotEmulated(ActivityError):
    """Loud refusal for a path the sandbox does not emulate (moto's NotYetImplemented)."""

    status_code = 501
    code = "NotEmulated"


ERRORS = ErrorSet(
    request_id_header="request-id",
    throttled=TooManyRequests,
    unavailable=ServiceUnavailable,
    not_emulated_builder=NotEmulated,
    bad_request=lambda message: InvalidParameterType("body", f"JSON object ({message})"),
)

