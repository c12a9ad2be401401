"""App-only tokens with msal: one ``ConfidentialClientApplication`` per tenant, its cache reused.

msal reports token errors as dicts; this module turns them into typed errors so that no caller
has to remember to look for ``"error"``. It branches on the AADSTS codes; where msal gives only
text, :func:`_msal_says` is the one place that reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jwt
import msal
import requests

from clients.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    AppNotConsented,
    InvalidCredentials,
    TenantNotFound,
    Throttled,
)
from clients.http import VerifiedSession, connection_failure, forget_requests, is_timeout

logger = logging.getLogger("m365_onboarding.auth")

NOT_CONSENTED = {700016, 7000229, 500011}
BAD_CREDENTIAL = {7000215, 7000222, 700027, 700024, 7000218, 50027}
NO_TENANT = {90002, 900023}


def _msal_says(text: str) -> Literal["unknown_authority", "throttled"] | None:
    """What msal's text means where it gives no code: its authority discovery failed, or the service throttles."""
    if "Unable to get authority configuration" in text:
        return "unknown_authority"
    if "429" in text:
        return "throttled"
    return None


class TokenProvider:
    """Tokens for the provider's app in any customer tenant, for one resource audience at a time."""

    def __init__(
        self,
        login_base_url: str,
        client_id: str,
        credential: Callable[[], str | dict[str, Any]],
        *,
        ca_bundle: str | Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.login_base_url = login_base_url.rstrip("/")
        self.client_id = client_id
        self._credential = credential
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        app = self._apps.get(tenant_id)
        if app is not None:
            return app
        try:
            app = msal.ConfidentialClientApplication(
                self.client_id,
                authority=f"{self.login_base_url}/{tenant_id}",
                client_credential=self._credential(),
                # Instance discovery would ask the global host about a sovereign or sandbox authority.
                instance_discovery=False,
                # msal ignores its own timeout once given an http_client: the session applies it.
                http_client=VerifiedSession(self._ca_bundle, timeout_s=self._timeout_s),
                timeout=self._timeout_s,
            )
        except ValueError as exc:
            if _msal_says(str(exc)) == "unknown_authority":
                raise TenantNotFound(f"Tenant {tenant_id} was not found at {self.login_base_url} (OIDC discovery refused it).") from exc
            raise
        except requests.RequestException as exc:
            raise self._unanswered(f"login: cannot reach {self.login_base_url}", exc) from exc
        self._apps[tenant_id] = app
        return app

    def token(self, tenant_id: str, audience: str) -> str:
        """An access token for ``audience`` in ``tenant_id``, from msal's cache when still valid."""
        try:
            result = self._app(tenant_id).acquire_token_for_client(scopes=[f"{audience.rstrip('/')}/.default"])
        except requests.RequestException as exc:
            raise self._unanswered(f"login: token request for tenant {tenant_id} failed", exc) from exc
        except jwt.InvalidKeyError as exc:  # msal signs the assertion with the block's key only now
            raise InvalidCredentials(
                f"The provider's app certificate key cannot sign the login assertion for tenant {tenant_id}: "
                "it is not an unencrypted PEM private key of the certificate."
            ) from exc
        if "access_token" in result:
            return result["access_token"]
        error = _token_error(tenant_id, self.client_id, audience, result)
        if isinstance(error, AppNotConsented):
            # msal replays a 400 from its HTTP cache for 60 s; a fresh app sees consent as soon as it lands.
            self._apps.pop(tenant_id, None)
        raise error

    def _unanswered(self, what: str, exc: requests.RequestException) -> ApiConnectionError:
        """The error for a login request that got no answer; requests' copy of the request (the secret or assertion in its body) is dropped."""
        forget_requests(exc)
        if is_timeout(exc):
            return ApiTimeout(f"{what}: no answer within {self._timeout_s:g}s")
        return ApiConnectionError(f"{what}: {connection_failure(exc)}")

    def roles(self, tenant_id: str, audience: str, *, fresh: bool = False) -> list[str]:
        """Application permissions a token for ``audience`` carries (its ``roles`` claim).

        With ``fresh``, cached access tokens are dropped first: a token issued before a grant
        replicated lacks the new roles and msal would keep serving it for up to an hour.
        """
        if fresh:
            self.forget_tokens(tenant_id)
        claims = jwt.decode(self.token(tenant_id, audience), options={"verify_signature": False})
        return sorted(claims.get("roles") or [])

    def directory_role_ids(self, tenant_id: str, audience: str) -> list[str]:
        """Template ids of the Entra roles the app holds in the tenant (the token's ``wids`` claim)."""
        claims = jwt.decode(self.token(tenant_id, audience), options={"verify_signature": False})
        return sorted(claims.get("wids") or [])

    def forget_tokens(self, tenant_id: str) -> None:
        """Drop the cached access tokens of one tenant (the next call asks the token endpoint)."""
        app = self._apps.get(tenant_id)
        if app is None:
            return
        cache = app.token_cache
        for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(entry)

    def bearer(self, tenant_id: str, audience: str) -> Callable[[], str]:
        """An ``Authorization`` header factory for an :class:`~clients.http.ApiClient`."""
        return lambda: f"Bearer {self.token(tenant_id, audience)}"


def _token_error(tenant_id: str, client_id: str, audience: str, result: dict[str, Any]) -> Exception:
    codes = set(result.get("error_codes") or [])
    first_line = str(result.get("error_description", "")).split("\r\n")[0].split("\n")[0]
    if codes & NO_TENANT:
        return TenantNotFound(f"Tenant {tenant_id} was not found: {first_line}")
    if codes & NOT_CONSENTED:
        return AppNotConsented(f"The provider's app {client_id} is not consented in tenant {tenant_id} ({first_line.split(':')[0]}).")
    if codes & BAD_CREDENTIAL:
        return InvalidCredentials(f"The provider's app credential was refused for tenant {tenant_id}: {first_line}")
    error = result.get("error", "unknown_error")
    if error == "temporarily_unavailable" or _msal_says(str(result.get("error_description", ""))) == "throttled":
        return Throttled("login", 429, error, first_line, operation=f"token for {audience}")
    return ApiError("login", 400, error, first_line or error, operation=f"token for {audience}")
