"""Workbench JSON:API error documents: ``{"jsonapi", "errors": [{"status", "code", "title", "detail"}]}``.

Codes and titles follow Expel's backend, a fork of ``holidayextras/jsonapi-server`` (reference §2f):
``ENOTFOUND`` "Requested resource does not exist", ``EFORBIDDEN`` "Invalid filter" / "Param validation
failed" / "Request validation failed", plus 401/400/409/429/503 in the same style. Clients must branch
on the status and ``errors[0].code``; ``detail`` is for people (and, for a rejected device, names the
field).
"""

from __future__ import annotations

from sandbox.core.errors import SandboxHTTPError

MEDIA_TYPE = "application/vnd.api+json"


class WorkbenchError(SandboxHTTPError):
    """One JSON:API error response."""

    def __init__(self, status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None):
        body = {
            "jsonapi": {"version": "1.0"},
            "meta": {},
            "errors": [{"status": str(status), "code": code, "title": title, "detail": detail}],
        }
        super().__init__(status, body, headers, media_type=MEDIA_TYPE)
        self.code = code
        self.detail = detail


class Unauthorized(WorkbenchError):
    """401: no API key, or one Workbench does not know (revoked keys look the same)."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, "EUNAUTHORIZED", "Unauthorized", detail, {"WWW-Authenticate": 'Bearer realm="workbench"'})


class Forbidden(WorkbenchError):
    """403 ``EFORBIDDEN`` with a title saying which check refused the request."""

    def __init__(self, detail: str, title: str = "Forbidden") -> None:
        super().__init__(403, "EFORBIDDEN", title, detail)


class InvalidFilter(Forbidden):
    """403 for a filter on an unknown key or with a value the attribute cannot hold (upstream ``filter.js``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, title="Invalid filter")


class ParamValidationFailed(Forbidden):
    """403 for a malformed query parameter (upstream Joi validation of ``page``, ``sort``, ``include``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, title="Param validation failed")


class InvalidInclusion(Forbidden):
    """403 for ``include`` of something that is not a relationship (upstream ``include.js``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, title="Invalid inclusion")


class NotFound(WorkbenchError):
    """404 for an id that does not exist or belongs to an organization the key cannot see."""

    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(
            404, "ENOTFOUND", "Requested resource does not exist", f"There is no {resource_type} with id {resource_id}"
        )


class InvalidResource(WorkbenchError):
    """400 for a create or update whose attributes Workbench rejects; ``detail`` names the field."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, "EINVALID", "Invalid resource", detail)


class Conflict(WorkbenchError):
    """409 when the body's ``type`` or ``id`` does not match the endpoint (JSON:API §Updating Resources)."""

    def __init__(self, detail: str) -> None:
        super().__init__(409, "ECONFLICT", "Conflict", detail)


class NotEmulated(WorkbenchError):
    """501 for anything the sandbox does not emulate, so a gap is loud rather than silently wrong."""

    def __init__(self, detail: str) -> None:
        super().__init__(501, "ENOTEMULATED", "Not emulated", detail)


class _Errors:
    """The :class:`sandbox.core.service.ServiceErrors` of Workbench."""

    request_id_header = "x-request-id"

    def throttled(self, retry_after_s: int | None) -> SandboxHTTPError:
        return WorkbenchError(
            429, "ETOOMANYREQUESTS", "Too Many Requests", "Rate limit exceeded.", {"Retry-After": str(retry_after_s or 1)}
        )

    def unavailable(self, retry_after_s: int | None) -> SandboxHTTPError:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        return WorkbenchError(503, "EUNAVAILABLE", "Service Unavailable", "Workbench is temporarily unavailable.", headers)

    def not_emulated(self, method: str, path: str) -> SandboxHTTPError:
        return NotEmulated(f"{method} {path} is not emulated by the sandbox.")

    def bad_request(self, message: str) -> SandboxHTTPError:
        return WorkbenchError(400, "EINVALID", "Invalid request", message)


ERRORS = _Errors()
