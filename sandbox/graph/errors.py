"""Graph error responses with the real body: ``{"error": {"code", "message", "innerError"}}``.

Clients must branch on ``error.code`` and the status, never on the message (reference §9).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox.core.context import current_client_request_id, request_id
from sandbox.core.errors import SandboxHTTPError


class GraphError(SandboxHTTPError):
    """One Graph error; subclasses fix the status and code."""

    status_code = 400
    code = "BadRequest"

    def __init__(self, message: str, headers: dict[str, str] | None = None, details: list[dict] | None = None):
        rid = request_id()
        inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": rid}
        client_rid = current_client_request_id.get()
        if client_rid:
            inner["client-request-id"] = client_rid
        error: dict = {"code": self.code, "message": message, "innerError": inner}
        if details:
            error["details"] = details
        super().__init__(self.status_code, {"error": error}, headers)
        self.message = message


class BadRequest(GraphError):
    code = "BadRequest"


class RequestBadRequest(GraphError):
    code = "Request_BadRequest"


class UnsupportedQuery(GraphError):
    code = "Request_UnsupportedQuery"


class ResourceNotFound(GraphError):
    status_code = 404
    code = "Request_ResourceNotFound"


class MultipleObjectsWithSameKeyValue(GraphError):
    status_code = 409
    code = "Request_MultipleObjectsWithSameKeyValue"


class AuthorizationRequestDenied(GraphError):
    status_code = 403
    code = "Authorization_RequestDenied"

    def __init__(self, message: str = "Insufficient privileges to complete the operation.") -> None:
        super().__init__(message)


class InvitationUnauthorized(GraphError):
    """The invitation API's own 403 for a missing User.Invite.All (reference §1, observed in public issues)."""

    status_code = 403
    code = "Unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "Insufficient privileges to perform requested operation by the application "
            "'00000003-0000-0000-c000-000000000000'. ControllerName=MSGraphInviteAPI, ActionName=CreateInvite, "
            "URL absolute path=/api/invites"
        )


class InvalidAuthenticationToken(GraphError):
    status_code = 401
    code = "InvalidAuthenticationToken"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'})


class TooManyRequests(GraphError):
    status_code = 429
    code = "TooManyRequests"

    def __init__(self, retry_after_s: int | None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        super().__init__("Please retry again later.", headers=headers)
        self.body["error"]["innerError"].update({"code": "429", "status": "429", "message": "Please retry after"})


class ServiceUnavailable(GraphError):
    status_code = 503
    code = "serviceNotAvailable"

    def __init__(self, retry_after_s: int | None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        super().__init__("The service is temporarily unavailable. Please retry later.", headers=headers)


class NotEmulated(GraphError):
    """Loud refusal for a path the sandbox does not emulate (moto's NotYetImplemented)."""

    status_code = 501
    code = "NotEmulated"
