"""Signed access tokens, as Entra issues them for the client-credentials grant.

Tokens are RS256 JWTs with the claims resource APIs read: ``aud`` (the resource, e.g.
``https://graph.microsoft.com``), ``tid``, ``appid``, ``oid`` (the service principal), ``roles``
(application permissions granted for that resource; omitted when none, as Entra does) and ``wids``
(directory role template ids held by the service principal, which Exchange Online reads).
The public key is published as JWKS on the login port.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.core.tls import generate_rsa_key, write_private_key

TOKEN_LIFETIME_S = 3599  # msal treats a token with < 5 min left as expired; keep it well above that


class TokenError(Exception):
    """The bearer token cannot be used: ``reason`` says why, in the API's own words."""

    def __init__(self, kind: Literal["missing", "malformed", "expired", "audience", "signature"], reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenSigner:
    """Issues and verifies the sandbox's access tokens with one persisted RSA key."""

    def __init__(self, key_path: Path) -> None:
        if key_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{key_path} is not an RSA private key")
            self._key = loaded
        else:
            self._key = generate_rsa_key()
            write_private_key(key_path, self._key)
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = _b64url(hashlib.sha1(public_der).digest())

    def issue(self, claims: dict[str, Any], issuer: str, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
        now = int(time.time())
        payload = {
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
            "idtyp": "app",
            **claims,
        }
        if not payload.get("roles"):
            payload.pop("roles", None)  # Entra omits the claim when nothing is granted
        if not payload.get("wids"):
            payload.pop("wids", None)
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def verify(self, token: str | None, audience: str) -> dict[str, Any]:
        """Return the claims of a valid token for ``audience``; raise :class:`TokenError` otherwise."""
        if not token:
            raise TokenError("missing", "Access token is empty.")
        try:
            return jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=audience,
                options={"require": ["exp", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("expired", "Lifetime validation failed, the token is expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("audience", "Invalid audience.") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("signature", "Access token validation failure. Invalid signature.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("malformed", "CompactToken parsing failed with error code: 80049217") from exc

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")  # noqa: E731
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "n": _b64url(as_bytes(numbers.n)),
                    "e": _b64url(as_bytes(numbers.e)),
                }
            ]
        }


def bearer_token(authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer …`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def new_guid() -> str:
    return str(uuid.uuid4())
