"""Management Activity API errors: ``{"error": {"code": "AF…", "message": …}}`` (skeleton)."""

from __future__ import annotations

from sandbox.core.errors import SandboxHTTPError


class ManagementError(SandboxHTTPError):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, {"error": {"code": code, "message": message}}, headers)


class _Errors:
    request_id_header = "request-id"

    def throttled(self, retry_after_s: int | None) -> SandboxHTTPError:
        return ManagementError(429, "AF429", "Too many requests.", {"Retry-After": str(retry_after_s or 1)})

    def unavailable(self, retry_after_s: int | None) -> SandboxHTTPError:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        return ManagementError(503, "AF50000", "An internal server error occurred. Retry the request.", headers)

    def not_emulated(self, method: str, path: str) -> SandboxHTTPError:
        return ManagementError(501, "NotEmulated", f"{method} {path} is not emulated by the sandbox.")

    def bad_request(self, message: str) -> SandboxHTTPError:
        return ManagementError(400, "AF20001", message)


ERRORS = _Errors()
