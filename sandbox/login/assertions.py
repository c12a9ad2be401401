"""Verification of a certificate client assertion (RFC 7523 JWT) against the app's registered certificates."""

from __future__ import annotations

from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sandbox.login import errors
from sandbox.login.models import AppRegistration, Certificate

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The public key types PyJWT verifies with; a certificate may hold others (DSA, X25519, X448).
_JWT_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)


def verify_client_assertion(
    app: AppRegistration, assertion: str, assertion_type: str | None, token_paths: set[str], login_hosts: set[str]
) -> Certificate:
    """Return the certificate that signed ``assertion``; raise the AADSTS error a bad assertion gets.

    ``token_paths`` are the accepted audience paths (the tenant's token endpoint, by id or domain)
    and ``login_hosts`` the accepted hosts (the sandbox's login host and the real one).
    """
    if assertion_type != JWT_BEARER:
        raise errors.assertion_claims(f"client_assertion_type must be '{JWT_BEARER}'.")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise errors.assertion_claims("The client assertion is not a JWT.") from exc
    cert = app.certificate_for(header.get("x5t"), header.get("x5t#S256"))
    if cert is None:
        raise errors.assertion_invalid(
            f"The key was not found. Key Id: {header.get('x5t') or header.get('x5t#S256')}, please visit the Azure "
            f"Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{app.client_id}'."
        )
    public_key = cert.certificate.public_key()
    if not isinstance(public_key, _JWT_KEY_TYPES):
        # a DSA or X25519/X448 key: PyJWT would refuse it with this same TypeError
        raise TypeError(f"Certificate '{cert.name}' has a {type(public_key).__name__}, which cannot verify a JWT.")
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=["RS256", "PS256"],
            options={"verify_aud": False, "require": ["exp", "aud", "iss", "sub"]},
            leeway=300,  # Entra tolerates clock skew of a few minutes
        )
    except jwt.ExpiredSignatureError as exc:
        raise errors.assertion_expired() from exc
    except jwt.InvalidSignatureError as exc:
        raise errors.assertion_invalid("Signature is invalid.") from exc
    except jwt.PyJWTError as exc:
        raise errors.assertion_claims(str(exc)) from exc
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise errors.assertion_claims("The 'iss' and 'sub' claims must both be the client id.")
    audience = claims["aud"] if isinstance(claims["aud"], str) else next(iter(claims["aud"]), "")
    parts = urlsplit(audience)
    if parts.netloc.lower() not in login_hosts or parts.path not in token_paths:
        raise errors.assertion_claims(f"The audience '{audience}' is not this tenant's token endpoint.")
    return cert
