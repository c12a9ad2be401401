"""The provider's app registration, its credentials, and each tenant's consent. No HTTP here."""

from __future__ import annotations

import base64
import hashlib
import secrets as pysecrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.core.catalog import find_permission
from sandbox.core.scenario import AppSpec, ConsentSpec
from sandbox.core.tls import generate_rsa_key, self_signed_certificate, write_private_key


@dataclass
class ClientSecret:
    name: str
    value: str
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass
class Certificate:
    name: str
    certificate: x509.Certificate
    pem_path: Path | None = None
    key_path: Path | None = None

    @property
    def sha1_thumbprint(self) -> str:
        return self.certificate.fingerprint(hashes_sha1()).hex().upper()



def hashes_sha1():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA1()


def hashes_sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


@dataclass
class AppRegistration:
    """The provider's multi-tenant app as registered in the provider's tenant."""

    client_id: str
    display_name: str
    owner_tenant_id: str
    redirect_uris: list[str]
    permissions: list[str]
    unconsented_error: str
    secrets: list[ClientSecret] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)

    def required_grants(self, withhold: list[str] | None = None) -> dict[str, list[str]]:
        """App role ids per resource key for the app's required permissions, less ``withhold``."""
        grants: dict[str, list[str]] = {}
        for name in self.permissions:
            if withhold and name in withhold:
                continue
            found = find_permission(name)
            assert found is not None  # validated with the scenario
            resource, role_id = found
            grants.setdefault(resource.key, []).append(role_id)
        return grants

    def certificate_for(self, x5t: str | None, x5t_s256: str | None) -> Certificate | None:
        """The certificate a client assertion's ``x5t`` (SHA-1) or ``x5t#S256`` header names.

        Clients encode the thumbprint with either base64 alphabet, padded or not (msal sends
        ``x5t`` in standard base64 with padding), so compare the digests, not the text.
        """
        sha1, sha256 = _b64_any(x5t), _b64_any(x5t_s256)
        for cert in self.certificates:
            if (sha1 and cert.certificate.fingerprint(hashes_sha1()) == sha1) or (
                sha256 and cert.certificate.fingerprint(hashes_sha256()) == sha256
            ):
                return cert
        return None


def _b64_any(value: str | None) -> bytes | None:
    if not value:
        return None
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def _read_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = pysecrets.token_urlsafe(30)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(value + "\n", encoding="utf-8")
    return value


def _load_or_create_certificate(name: str, credentials_dir: Path) -> Certificate:
    pem_path = credentials_dir / f"app-cert-{name}.pem"
    key_path = credentials_dir / f"app-cert-{name}-key.pem"
    if pem_path.exists() and key_path.exists():
        return Certificate(name, x509.load_pem_x509_certificate(pem_path.read_bytes()), pem_path, key_path)
    key = generate_rsa_key()
    cert = self_signed_certificate(key, f"m365-onboarding sandbox app ({name})")
    write_private_key(key_path, key)
    pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Certificate(name, cert, pem_path, key_path)


def build_app_registration(spec: AppSpec, owner_tenant_id: str, credentials_dir: Path, now: datetime) -> AppRegistration:
    """Turn the scenario's app into a registration, generating credentials into the state folder."""
    app = AppRegistration(
        client_id=spec.client_id,
        display_name=spec.display_name,
        owner_tenant_id=owner_tenant_id,
        redirect_uris=list(spec.redirect_uris),
        permissions=list(spec.permissions),
        unconsented_error=spec.unconsented_error,
    )
    for secret in spec.secrets:
        value = secret.value if secret.value is not None else _read_or_create_secret(credentials_dir / f"app-secret-{secret.name}.txt")
        expires = now if secret.expired else (now + secret.expires_after if secret.expires_after is not None else None)
        app.secrets.append(ClientSecret(secret.name, value, expires))
    for cert in spec.certificates:
        if cert.path is not None:
            app.certificates.append(Certificate(cert.name, x509.load_pem_x509_certificate(cert.path.read_bytes()), cert.path))
        else:
            app.certificates.append(_load_or_create_certificate(cert.name, credentials_dir))
    return app


def secret_matches(app: AppRegistration, presented: str) -> ClientSecret | None:
    for secret in app.secrets:
        if pysecrets.compare_digest(secret.value.encode(), presented.encode()):
            return secret
    return None


@dataclass
class ConsentState:
    """Where the customer's admin stands on consenting to the provider's app."""

    spec: ConsentSpec
    granted_at: datetime | None = None
    refused_at: datetime | None = None
    scheduled_action_done: bool = False
    consent_page_views: int = 0

    @property
    def status(self) -> str:
        if self.granted_at is not None:
            return "granted"
        if self.refused_at is not None:
            return "refused"
        return "pending"


def thumbprint_sha1_hex(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
