"""Credential blocks: the provider's multi-tenant app and the Workbench API key.

Secrets are ``SecretStr`` and are unwrapped only where a client is built, so they never appear in
parameters, logs, artifacts or exceptions. Register the block types with
``prefect block register -m blocks.credentials`` and load them by name.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator


class ProviderAppCredentials(Block):
    """The MDR provider's multi-tenant Entra app: its client id and a certificate (preferred) or secret.

    Example:
        ```python
        from blocks.credentials import ProviderAppCredentials

        app = ProviderAppCredentials.load("BLOCK_NAME")
        ```
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # a validation error must not quote a secret it was given

    _block_type_name = "M365 Provider App Credentials"
    _block_type_slug = "m365-provider-app-credentials"
    _documentation_url = "https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow"  # type: ignore[assignment]
    _description = "Client id and certificate or secret of the MDR provider's multi-tenant app."

    client_id: str = Field(description="Application (client) id of the provider's multi-tenant app.")
    certificate_pem: str | None = Field(default=None, description="Public certificate (PEM) registered on the app.")
    certificate_private_key: SecretStr | None = Field(default=None, description="Private key (PEM) of that certificate.")
    client_secret: SecretStr | None = Field(default=None, description="A client secret value, when no certificate is used.")

    @field_validator("client_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError as exc:
            raise ValueError(f"client_id must be a GUID, got {value!r}") from exc

    @model_validator(mode="after")
    def _one_credential(self) -> ProviderAppCredentials:
        """Valid: certificate_pem with certificate_private_key; or client_secret alone."""
        has_cert = self.certificate_pem is not None or self.certificate_private_key is not None
        if has_cert and (self.certificate_pem is None or self.certificate_private_key is None):
            raise ValueError("a certificate credential needs both certificate_pem and certificate_private_key")
        if has_cert == (self.client_secret is not None):
            raise ValueError("give exactly one credential: a certificate (preferred) or a client_secret")
        return self

    def msal_credential(self) -> str | dict[str, Any]:
        """The ``client_credential`` argument for msal; the only place the secret is unwrapped."""
        if self.client_secret is not None:
            return self.client_secret.get_secret_value()
        assert self.certificate_pem is not None and self.certificate_private_key is not None
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        return {
            "private_key": self.certificate_private_key.get_secret_value(),
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
            "public_certificate": self.certificate_pem,
        }


class WorkbenchCredentials(Block):
    """A Workbench service-account API key (Organization Admin, not read-only, to register devices).

    Example:
        ```python
        from blocks.credentials import WorkbenchCredentials

        workbench = WorkbenchCredentials.load("BLOCK_NAME")
        ```
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "Expel Workbench Credentials"
    _block_type_slug = "expel-workbench-credentials"
    _documentation_url = "https://support.expel.io/hc/en-us/articles/17165510512659"  # type: ignore[assignment]
    _description = "API key of a Workbench service account."

    api_key: SecretStr = Field(description="The service account's API key, as shown once when generated.")
    organization_id: str | None = Field(default=None, description="Workbench organization GUID, when the key sees several.")

    def authorization_header(self) -> str:
        """The ``Authorization`` header value; the only place the key is unwrapped."""
        return f"Bearer {self.api_key.get_secret_value()}"
