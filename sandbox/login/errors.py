"""Entra login errors: the OAuth error body with an AADSTS code, and the HTML error page of the browser flows."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime

from sandbox.core.context import request_id
from sandbox.core.errors import SandboxHTTPError


class OAuthError(SandboxHTTPError):
    """``{"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}``.

    The description embeds the trace id, correlation id and timestamp lines, as Entra's does;
    clients must branch on ``error`` and ``error_codes``, not on the text.
    """

    def __init__(self, status: int, error: str, aadsts: int, message: str, headers: dict[str, str] | None = None):
        trace_id = request_id()
        correlation_id = str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body = {
            "error": error,
            "error_description": (
                f"AADSTS{aadsts}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {stamp}"
            ),
            "error_codes": [aadsts],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
        }
        super().__init__(status, body, headers)
        self.aadsts = aadsts


def tenant_not_found(tenant: str) -> OAuthError:
    return OAuthError(
        400,
        "invalid_tenant",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
        "correct cloud. Check with your subscription administrator, this may happen if there are no active "
        "subscriptions for the tenant.",
    )


def tenant_identifier_invalid(tenant: str) -> OAuthError:
    return OAuthError(
        400, "invalid_tenant", 900023, f"Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."
    )


def empty_guid_tenant(tenant: str) -> OAuthError:
    return OAuthError(
        400, "invalid_tenant", 90002, f"Requested tenant identifier '{tenant}' is not valid. Tenant identifiers may not be an empty GUID."
    )


def app_not_in_directory(client_id: str, tenant: str) -> OAuthError:
    return OAuthError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the "
        "application has not been installed by the administrator of the tenant or consented to by any user in the "
        "tenant. You may have sent your authentication request to the wrong tenant.",
    )


def missing_service_principal(client_id: str, tenant: str) -> OAuthError:
    return OAuthError(401, "invalid_client", 7000229, f"The client application {client_id} is missing service principal in the tenant {tenant}.")


def invalid_secret(client_id: str) -> OAuthError:
    return OAuthError(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "
        f"not the client secret ID, for a secret added to app '{client_id}'.",
    )


def expired_secret(client_id: str) -> OAuthError:
    return OAuthError(401, "invalid_client", 7000222, f"The provided client secret keys for app '{client_id}' are expired.")


def missing_credential() -> OAuthError:
    return OAuthError(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")


def assertion_invalid(reason: str) -> OAuthError:
    return OAuthError(401, "invalid_client", 700027, f"Client assertion failed signature validation. {reason}")


def assertion_expired() -> OAuthError:
    return OAuthError(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")


def assertion_claims(reason: str) -> OAuthError:
    return OAuthError(400, "invalid_request", 50027, f"JWT token is invalid or malformed. {reason}")


def missing_parameter(name: str) -> OAuthError:
    return OAuthError(400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'.")


def unsupported_grant(grant: str) -> OAuthError:
    return OAuthError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'.")


def invalid_scope(scope: str) -> OAuthError:
    return OAuthError(
        400,
        "invalid_scope",
        1002012,
        f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with "
        "/.default suffixed to the resource identifier (application ID URI).",
    )


def resource_not_found(resource: str, tenant: str) -> OAuthError:
    return OAuthError(
        400, "invalid_resource", 500011, f"The resource principal named {resource} was not found in the tenant named {tenant}."
    )


class ErrorPage(SandboxHTTPError):
    """The HTML page the browser flows (admin consent) show for an error."""

    def __init__(self, status: int, aadsts: int, message: str):
        body = (
            "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sorry, but we're having trouble signing you in.</h1><p id='error'>AADSTS{aadsts}: {html.escape(message)}</p>"
            f"<p>Request Id: {request_id()}</p></body></html>"
        )
        super().__init__(status, body, media_type="text/html")
        self.aadsts = aadsts


class _Errors:
    """Faults and unknown paths on the login port, in the OAuth error format."""

    request_id_header = "x-ms-request-id"

    def throttled(self, retry_after_s: int | None) -> SandboxHTTPError:
        return OAuthError(
            429,
            "temporarily_unavailable",
            50196,
            "The server terminated an operation because it encountered a client request loop.",
            {"Retry-After": str(retry_after_s or 1)},
        )

    def unavailable(self, retry_after_s: int | None) -> SandboxHTTPError:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        return OAuthError(503, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.", headers)

    def not_emulated(self, method: str, path: str) -> SandboxHTTPError:
        return OAuthError(404, "not_emulated", 90001, f"{method} {path} is not emulated by the sandbox.")

    def bad_request(self, message: str) -> SandboxHTTPError:
        return OAuthError(400, "invalid_request", 90014, message)


ERRORS = _Errors()
