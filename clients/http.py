"""HTTP plumbing shared by every client: a session that always verifies TLS against the right CA.

``requests`` lets the ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` environment variables override a
session's ``verify`` setting (psf/requests#3829), so a session configured for the sandbox CA would
silently verify against the system bundle on machines that set them, and fail. Passing ``verify``
with every request is the documented way round it.
"""

from __future__ import annotations

import logging
import socket
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from clients.errors import ApiConnectionError, ApiError, ApiTimeout, Throttled, status_error_class


class VerifiedSession(requests.Session):
    """A ``requests.Session`` that sends its CA bundle (or True) with every request; never False."""

    def __init__(self, ca_bundle: str | Path | None = None) -> None:
        super().__init__()
        self.ca_bundle: str | bool = str(ca_bundle) if ca_bundle else True
        self.verify = self.ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify") is False:
            raise ValueError("TLS verification cannot be turned off")
        kwargs["verify"] = self.ca_bundle
        return super().request(method, url, *args, **kwargs)


# --- the JSON client every API client builds on ------------------------------------------------------

logger = logging.getLogger("m365_onboarding.http")

# PATCH is in the list because every PATCH this project sends sets absolute values (idempotent in
# effect). POST never is: a failed create is followed by a lookup, never by a blind retry.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "m365-onboarding/0.1 (+https://github.com/; python-requests)"


def error_envelope(response: requests.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Microsoft error body, or None when the body has none."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, dict) else None


def _is_timeout(exc: requests.RequestException) -> bool:
    """True for a timeout, also when urllib3's retries wrapped it into a ConnectionError."""
    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NewConnectionError):  # urllib3 makes it a ConnectTimeoutError subclass
        return False
    return isinstance(reason, TimeoutError | ReadTimeoutError | ConnectTimeoutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: its cause and context, and urllib3's ``reason`` and first argument."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args[:1]]
        todo.extend(e for e in linked if isinstance(e, BaseException))


def connection_failure(exc: BaseException) -> str:
    """Why no answer came, for people: a refused certificate reads differently from a refused connection."""
    causes = list(_causes(exc))
    certificate = next((e for e in causes if isinstance(e, ssl.SSLCertVerificationError)), None)
    if certificate is not None:
        return f"TLS certificate verification failed ({certificate.verify_message or certificate.reason}): is the CA bundle the service's?"
    handshake = next((e for e in causes if isinstance(e, ssl.SSLError)), None)
    if handshake is not None:
        return f"TLS handshake failed ({handshake})"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "connection refused (nothing listens there)"
    if any(isinstance(e, NameResolutionError | socket.gaierror) for e in causes):
        return "the host name does not resolve"
    innermost = causes[-1]
    return f"{type(innermost).__name__}: {str(innermost).splitlines()[0] if str(innermost) else ''}".rstrip(": ")


class CappedRetry(Retry):
    """urllib3's Retry, with Retry-After capped so that one throttled call cannot sleep for minutes.

    A longer wait is left to the caller (Prefect task retries) once the retries run out.
    """

    max_retry_after_s: float = 120.0

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_retry_after_s)


def make_retry(retries: int, max_retry_after_s: float, methods: frozenset[str] = IDEMPOTENT_METHODS) -> Retry:
    retry = CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=methods,
        status_forcelist=RETRY_STATUSES,
        respect_retry_after_header=True,
        backoff_factor=0.5,
        backoff_max=30,
        backoff_jitter=0.5,
        raise_on_status=False,
    )
    retry.max_retry_after_s = max_retry_after_s
    return retry


class ClientOptions(TypedDict):
    """How every client of a tenant talks to its service: TLS, timeout, retries."""

    ca_bundle: str | Path | None
    timeout_s: float
    retries: int
    max_retry_after_s: float


@dataclass(frozen=True)
class ErrorDetails:
    """What a service's error body says: its code, a readable message, and its error objects (JSON:API)."""

    code: str | None
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)


class ApiClient:
    """JSON over HTTPS for one service: timeouts, TLS, idempotent retries, typed errors, readable logs.

    Subclasses set ``service``, may read their service's error body in :meth:`parse_error`, and
    turn a status error into what it means in :meth:`translate`: the one place a client decides
    what kind of error it met.
    """

    service = "api"

    def __init__(
        self,
        base_url: str,
        *,
        authorization: Callable[[], str] | None,
        ca_bundle: str | Path | None = None,
        timeout_s: float = 30.0,
        retries: int = 4,
        max_retry_after_s: float = 120.0,
        tenant_id: str | None = None,
    ) -> None:
        if not base_url.startswith("https://"):
            raise ValueError(f"{self.service} base URL must be https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self._authorization = authorization  # None: the service needs no credential (OIDC discovery)
        self.timeout_s = timeout_s
        self.session = self._session(ca_bundle, make_retry(retries, max_retry_after_s))
        # For APIs whose reads are POSTs (Exchange's InvokeCommand): used only when a call says so.
        self.idempotent_post_session = self._session(ca_bundle, make_retry(retries, max_retry_after_s, IDEMPOTENT_METHODS | {"POST"}))

    @staticmethod
    def _session(ca_bundle: str | Path | None, retry: Retry) -> VerifiedSession:
        session = VerifiedSession(ca_bundle)
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        session.mount("https://", HTTPAdapter(max_retries=retry))
        return session

    # --- for subclasses -----------------------------------------------------------------------------
    def parse_error(self, response: requests.Response) -> ErrorDetails:
        """Microsoft's ``{"error": {"code", "message"}}`` envelope, else the start of the body."""
        error = error_envelope(response)
        if error is not None:
            return ErrorDetails(error.get("code"), error.get("message") or response.reason)
        return ErrorDetails(None, response.text[:500] or response.reason)

    def error_class(self, status: int, code: str | None) -> type[ApiError]:
        """The status error for an answer; a service that signals a kind by code (AF429 as a 403) overrides it."""
        return status_error_class(status)

    def translate(self, error: ApiError) -> ApiError:
        """What a status error means for the onboarding (a missing permission, a refused device, …); as is by default."""
        return error

    # --- requests -----------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        operation: str,
        params: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        expected: tuple[int, ...] = (200, 201, 204),
        idempotent_post: bool = False,
    ) -> requests.Response:
        """Send one request and return the response, or raise the typed error for it.

        ``idempotent_post`` marks a POST that may be repeated safely (a read, or a write of an
        absolute value), so it gets the same retries as a GET.
        """
        url = path_or_url if path_or_url.startswith("https://") else f"{self.base_url}{path_or_url}"
        all_headers = {"client-request-id": str(uuid.uuid4()), **(headers or {})}
        if self._authorization is not None:
            all_headers["Authorization"] = self._authorization()
        try:
            session = self.idempotent_post_session if idempotent_post else self.session
            response = session.request(method, url, params=params, json=json, headers=all_headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            if _is_timeout(exc):
                raise ApiTimeout(f"{self.service} {operation}: no answer within {self.timeout_s:g}s from {self.base_url}") from exc
            raise ApiConnectionError(f"{self.service} {operation}: cannot reach {self.base_url}: {connection_failure(exc)}") from exc
        request_id = response.headers.get("request-id") or response.headers.get("x-request-id") or response.headers.get("x-ms-request-id")
        logger.debug("%s %s %s -> %s request-id=%s", self.service, method, operation, response.status_code, request_id)
        if response.status_code in expected:
            return response
        details = self.parse_error(response)
        cls = self.error_class(response.status_code, details.code)
        extra: dict[str, Any] = {}
        if issubclass(cls, Throttled):
            retry_after = response.headers.get("Retry-After")
            extra["retry_after"] = float(retry_after) if retry_after and retry_after.isdigit() else None
        error = cls(self.service, response.status_code, details.code, details.message, request_id=request_id, operation=operation,
                    errors=details.errors, **extra)
        translated = self.translate(error)
        if translated is error:
            raise error
        raise translated from error
