"""The sandbox's own certificate authority and its server certificate.

Clients keep TLS verification on and trust ``ca.pem``; nothing ever turns verification off. The CA
is created on first start and kept under the state folder, so a client configured once keeps
working across sandbox restarts. The server certificate is re-issued when it is near expiry.
Written with ``cryptography`` directly (already a dependency of msal) because the CA must persist
between runs, which test-only helpers such as ``trustme`` do not aim for.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
_RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA bundle and the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(key: rsa.RSAPrivateKey, common_name: str, days: int = 730) -> x509.Certificate:
    """A plain self-signed certificate, as an app registration's certificate credential is."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def _load_or_create_ca(directory: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key_path, cert_path = directory / "ca-key.pem", directory / "ca.pem"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if isinstance(key, rsa.RSAPrivateKey) and cert.not_valid_after_utc > datetime.now(UTC) + _RENEW_BEFORE:
            return key, cert
    key = generate_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m365-onboarding sandbox CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _server_cert_is_current(cert_path: Path, ca_cert: x509.Certificate) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.issuer == ca_cert.subject and cert.not_valid_after_utc > datetime.now(UTC) + _RENEW_BEFORE


def ensure_tls_files(directory: Path) -> TlsFiles:
    """Create (or reuse) the CA and a server certificate for 127.0.0.1, ::1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _load_or_create_ca(directory)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    if _server_cert_is_current(files.server_cert, ca_cert) and files.server_key.exists():
        return files
    key = generate_rsa_key()
    now = datetime.now(UTC)
    san = [x509.DNSName(n) for n in SERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(i)) for i in SERVER_IPS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(files.server_key, _key_pem(key))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """Write a private key readable by its owner only."""
    _write_private(path, _key_pem(key))
