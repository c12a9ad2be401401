"""Entra login's OIDC discovery: does a tenant exist in this cloud, and what is its GUID?

Discovery needs no credential, so it works before the customer's admin has consented. It goes
through :class:`~clients.http.ApiClient` like every other call: TLS against the configured CA,
retries on 429 and 5xx, typed errors. The token requests themselves are msal's (``clients/auth.py``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict

from clients.errors import ApiError, BadRequest, UnknownTenant
from clients.http import ApiClient, ErrorDetails

NO_TENANT = {90002, 900023}  # AADSTS: no such tenant; not a valid tenant identifier


class OpenIdConfiguration(BaseModel):
    """The parts of a tenant's OpenID configuration onboarding reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    token_endpoint: str
    issuer: str

    @property
    def tenant_id(self) -> str:
        """The tenant's GUID, from ``https://<login>/<tenant GUID>/oauth2/v2.0/token``."""
        return self.token_endpoint.split("/")[3]


class LoginClient(ApiClient):
    """OIDC discovery on one cloud's login host."""

    service = "login"

    def __init__(self, base_url: str, *, ca_bundle: str | Path | None = None, timeout_s: float = 30.0, retries: int = 4,
                 max_retry_after_s: float = 120.0) -> None:
        super().__init__(base_url, authorization=None, ca_bundle=ca_bundle, timeout_s=timeout_s, retries=retries,
                         max_retry_after_s=max_retry_after_s)

    def parse_error(self, response: requests.Response) -> ErrorDetails:
        """Entra's OAuth error body: ``error``, ``error_description`` (AADSTS… first) and ``error_codes``."""
        try:
            body = response.json()
        except ValueError:
            return super().parse_error(response)
        if not isinstance(body, dict) or "error" not in body:
            return super().parse_error(response)
        codes = body.get("error_codes") or []
        description = str(body.get("error_description") or body["error"]).splitlines()[0]
        return ErrorDetails(f"AADSTS{codes[0]}" if codes else str(body["error"]), description)

    def translate(self, error: ApiError) -> ApiError:
        if isinstance(error, BadRequest) and error.code in {f"AADSTS{c}" for c in NO_TENANT}:
            return UnknownTenant.from_error(error, f"tenant not found at {self.base_url} ({error.api_message})")
        return error

    def get_openid_configuration(self, tenant: str) -> OpenIdConfiguration:
        """The tenant's OpenID configuration; :class:`UnknownTenant` when this cloud does not know it."""
        path = f"/{quote(tenant, safe='')}/v2.0/.well-known/openid-configuration"
        return OpenIdConfiguration.model_validate(self.request("GET", path, operation="openid-configuration").json())
