"""Credential blocks: the provider's multi-tenant app and the Workbench API key.

Secrets are ``SecretStr`` and are unwrapped only where a client is built, so they never appear in
parameters, logs, artifacts or exceptions. A value that fails validation is never quoted either:
``hide_input_in_errors`` keeps it out of the error's text, and :func:`_without_inputs` out of its
``errors()`` and ``json()`` (which pydantic fills regardless), so a block loaded from a bad document
cannot put a secret into a task log. Register the block types with
``prefect block register -m blocks.credentials`` and load them by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, ModelWrapValidatorHandler, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from clients.errors import WorkbenchOrganizationMismatch

HIDDEN = "<hidden>"  # what a validation error shows in place of the value it refused


def _without_inputs(exc: ValidationError) -> ValidationError:
    """``exc`` with every error's input replaced by :data:`HIDDEN`; the messages (ours, never quoting a secret) are kept."""
    errors = exc.errors(include_url=False)
    try:
        details = [_hidden_detail(e["type"], e["loc"], e.get("ctx")) for e in errors]
        return ValidationError.from_exception_data(exc.title, details, hide_input=True)
    except (KeyError, TypeError, ValueError):  # an error type pydantic cannot rebuild: keep its message as a custom error
        custom = [InitErrorDetails(type=PydanticCustomError(e["type"], "{message}", {"message": e["msg"]}), loc=e["loc"], input=HIDDEN)
                  for e in errors]
        return ValidationError.from_exception_data(exc.title, custom, hide_input=True)


def _hidden_detail(kind: str, loc: tuple[int | str, ...], ctx: dict[str, Any] | None) -> InitErrorDetails:
    detail = InitErrorDetails(type=kind, loc=loc, input=HIDDEN)
    if ctx is not None:
        detail["ctx"] = ctx
    return detail


def _validated_hiding_inputs(title: str, data: Any, handler: ModelWrapValidatorHandler[Any], check: Callable[[Any], None]) -> Any:
    """The model ``handler`` builds from ``data``, then ``check``-ed; any failure as a ValidationError without inputs.

    The model-wide ``check`` runs here rather than as an "after" validator, whose errors pydantic
    raises outside this wrapper, with the whole input (every secret) as their ``input``.
    """
    try:
        model = handler(data)
        check(model)
        return model
    except ValidationError as exc:
        failure = _without_inputs(exc)
    except ValueError as exc:
        failure = ValidationError.from_exception_data(title, [_hidden_detail("value_error", (), {"error": exc})], hide_input=True)
    # Raised outside the except block on purpose: as its cause or context, the original error would
    # carry the secret it was given (its errors() hold the raw input) to whoever reads the chain.
    raise failure


def _plain_secret(value: SecretStr | None, name: str) -> SecretStr | None:
    """A secret as pasted, without surrounding whitespace; refused when empty or with whitespace or control characters inside."""
    if value is None:
        return None
    secret = value.get_secret_value().strip()
    if not secret:
        raise ValueError(f"{name} is empty")
    if any(c.isspace() or not c.isprintable() for c in secret):
        raise ValueError(f"{name} has spaces, line breaks or control characters inside (was more than the value pasted?)")
    return SecretStr(secret)


def _guid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


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

    @model_validator(mode="wrap")
    @classmethod
    def _hide_inputs(cls, data: Any, handler: ModelWrapValidatorHandler[ProviderAppCredentials]) -> ProviderAppCredentials:
        return _validated_hiding_inputs(cls.__name__, data, handler, ProviderAppCredentials._one_credential)

    @field_validator("client_id")
    @classmethod
    def _client_id_guid(cls, value: str) -> str:
        guid = _guid(value)
        if guid is None:
            # The value is not quoted: a secret pasted into the wrong field is the usual cause.
            raise ValueError(f"client_id must be a GUID (the app's Application (client) ID, 8-4-4-4-12 hex digits); got {len(value)} characters")
        return guid

    @field_validator("client_secret")
    @classmethod
    def _secret_value(cls, value: SecretStr | None) -> SecretStr | None:
        secret = _plain_secret(value, "client_secret")
        if secret is not None and _guid(secret.get_secret_value()) is not None:
            raise ValueError("client_secret is a GUID: that is the secret's ID; give the secret's Value (shown once, when it was added)")
        return secret

    @field_validator("certificate_private_key")
    @classmethod
    def _key_value(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else SecretStr(value.get_secret_value().strip() + "\n")

    def _one_credential(self) -> None:
        """Valid: certificate_pem with certificate_private_key (a certificate and its own key); or client_secret alone."""
        has_cert = self.certificate_pem is not None or self.certificate_private_key is not None
        if has_cert and (self.certificate_pem is None or self.certificate_private_key is None):
            raise ValueError("a certificate credential needs both certificate_pem and certificate_private_key")
        if has_cert == (self.client_secret is not None):
            raise ValueError("give exactly one credential: a certificate (preferred) or a client_secret")
        if self.certificate_pem is not None and self.certificate_private_key is not None:
            _check_certificate(self.certificate_pem, self.certificate_private_key)

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


def _check_certificate(certificate_pem: str, private_key: SecretStr) -> None:
    """Refuse, now rather than at the first token request, a certificate or key msal cannot use, or a key of another certificate.

    cryptography's own errors are not passed on: they are generic, and nothing of the key may be quoted.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.strip().encode())
    except ValueError as exc:
        raise ValueError("certificate_pem is not a PEM certificate (-----BEGIN CERTIFICATE----- …)") from exc
    try:
        key = serialization.load_pem_private_key(private_key.get_secret_value().encode(), password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted, and msal is given no passphrase
        raise ValueError("certificate_private_key is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY----- …)") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != certificate.public_key().public_bytes(serialization.Encoding.DER, public):
        raise ValueError("certificate_private_key is not the key of certificate_pem (their public keys differ)")


class WorkbenchCredentials(Block):
    """A Workbench service-account API key (Organization Admin, not read-only, to register devices).

    ``organization_id``, when set, is the one organization this key may act for: a request for any
    other provider organization is refused (:meth:`check_organization`) before anything is written.

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

    @model_validator(mode="wrap")
    @classmethod
    def _hide_inputs(cls, data: Any, handler: ModelWrapValidatorHandler[WorkbenchCredentials]) -> WorkbenchCredentials:
        return _validated_hiding_inputs(cls.__name__, data, handler, lambda _: None)

    @field_validator("api_key")
    @classmethod
    def _key_value(cls, value: SecretStr) -> SecretStr:
        key = _plain_secret(value, "api_key")
        assert key is not None
        return key

    @field_validator("organization_id")
    @classmethod
    def _organization_guid(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        guid = _guid(value)
        if guid is None:
            raise ValueError(f"organization_id must be a Workbench organization GUID (8-4-4-4-12 hex digits); got {len(value)} characters")
        return guid

    def check_organization(self, provider_org_id: str) -> None:
        """Refuse a provider organization other than the block's own, when the block names one.

        Raises:
            WorkbenchOrganizationMismatch: ``provider_org_id`` is not ``organization_id``.
        """
        if self.organization_id is not None and _guid(provider_org_id) != self.organization_id:
            raise WorkbenchOrganizationMismatch(provider_org_id, self.organization_id)

    def authorization_header(self) -> str:
        """The ``Authorization`` header value; the only place the key is unwrapped."""
        return f"Bearer {self.api_key.get_secret_value()}"
