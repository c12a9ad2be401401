"""Workbench JSON:API error documents (skeleton)."""

from __future__ import annotations

from sandbox.core.errors import SandboxHTTPError


class WorkbenchError(SandboxHTTPError):
    def __init__(self, status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None):
        body = {"jsonapi": {"version": "1.0"}, "errors": [{"status": str(status), "code": code, "title": title, "detail": detail}]}
        super().__init__(status, body, headers, media_type="application/vnd.api+json")


class _Errors:
    request_id_header = "x-request-id"

    def throttled(self, retry_after_s: int | None) -> SandboxHTTPError:
        return WorkbenchError(429, "ETOOMANYREQUESTS", "Too Many Requests", "Rate limit exceeded.", {"Retry-After": str(retry_after_s or 1)})

    def unavailable(self, retry_after_s: int | None) -> SandboxHTTPError:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        return WorkbenchError(503, "EUNAVAILABLE", "Service Unavailable", "Workbench is temporarily unavailable.", headers)

    def not_emulated(self, method: str, path: str) -> SandboxHTTPError:
        return WorkbenchError(501, "ENOTEMULATED", "Not emulated", f"{method} {path} is not emulated by the sandbox.")

    def bad_request(self, message: str) -> SandboxHTTPError:
        return WorkbenchError(400, "EINVALID", "Invalid request", message)


ERRORS = _Errors()
