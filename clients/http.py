"""HTTP plumbing shared by every client: a session that always verifies TLS against the right CA.

``requests`` lets the ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` environment variables override a
session's ``verify`` setting (psf/requests#3829), so a session configured for the sandbox CA would
silently verify against the system bundle on machines that set them, and fail. Passing ``verify``
with every request is the documented way round it.

A client's credential goes to its own base URL's scheme, host and port only: a next-page link
elsewhere is refused (:meth:`ApiClient.next_page`), and no error keeps requests' copy of a request
(its Authorization header, a token request's secret). ``Retry-After`` is read in one place,
:func:`retry_after_seconds`, in both of its forms (seconds or an HTTP-date).
"""

from __future__ import annotations

import email.utils
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol, Self, TypedDict
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util import parse_url
from urllib3.util.retry import Retry

from clients.errors import ApiConnectionError, ApiError, ApiTimeout, InvalidCredentials, Throttled, UntrustedNextLink, status_error_class


class VerifiedSession(requests.Session):
    """A ``requests.Session`` that sends its CA bundle (or True) with every request; never False.

    ``timeout_s``, when given, is the timeout of every request that names none: msal ignores its
    own ``timeout`` argument once it is handed an ``http_client``, so without it a token request
    that never answers would wait forever.
    """

    def __init__(self, ca_bundle: str | Path | None = None, timeout_s: float | None = None) -> None:
        super().__init__()
        self.ca_bundle: str | bool = str(ca_bundle) if ca_bundle else True
        self.verify = self.ca_bundle
        self.timeout_s = timeout_s

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify") is False:
            raise ValueError("TLS verification cannot be turned off")
        kwargs["verify"] = self.ca_bundle
        if self.timeout_s is not None and kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().request(method, url, *args, **kwargs)


# --- Retry-After -----------------------------------------------------------------------------------

# RFC 9110 §10.2.3: delay-seconds is a whole number; a decimal is read too, as some services send one.
_DELAY_SECONDS = re.compile(r"[ \t]*([0-9]{1,12}(?:\.[0-9]{1,6})?)[ \t]*")  # ASCII digits only: \d would take any script's


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value from requests', urllib3's (both case-insensitive) or a plain mapping."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


def retry_after_seconds(source: Any, *, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` asks to wait, in either of its forms: delay-seconds or an HTTP-date.

    ``source`` is a response (requests' or urllib3's), its headers, or the header's value. A date in
    the past is 0; a missing or unreadable value is None (the caller then backs off on its own).
    Every place the project reads Retry-After goes through here.
    """
    if source is None or isinstance(source, str):
        value = source
    else:
        value = _header(getattr(source, "headers", source), "Retry-After")
    if value is None:
        return None
    delay = _DELAY_SECONDS.fullmatch(value)
    if delay:
        return float(delay[1])
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # the obsolete RFC 850 and asctime forms carry no zone; HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- links: the credential goes to the client's own origin only ---------------------------------------
Origin = tuple[str, str, int | None]
_DEFAULT_PORTS = {"https": 443, "http": 80}


def url_origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an absolute URL, the port filled in; None when it is not one we can trust to mean that.

    A URL whose parsers could disagree about its host (user info, a backslash, spaces or control
    characters) has no origin here: requests (urllib3) and :func:`urllib.parse.urlsplit` must agree.
    """
    if "\\" in url or any(c.isspace() or not c.isprintable() for c in url):
        return None
    try:
        parts, parsed = urlsplit(url), parse_url(url)
        port = parts.port
    except (ValueError, LocationParseError):
        return None
    if parts.username is not None or parts.password is not None or not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    origin = (scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme))
    parsed_scheme = (parsed.scheme or "").lower()
    parsed_host = (parsed.host or "").lower().removeprefix("[").removesuffix("]")  # urllib3 keeps an IPv6 address's brackets
    return origin if origin == (parsed_scheme, parsed_host, parsed.port or _DEFAULT_PORTS.get(parsed_scheme)) else None


def describe_origin(url: str) -> str:
    """Where a URL points, for a message: ``scheme://host:port`` only (no path, query or user info), printable."""
    try:
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        where = url.split("/")[2] if url.count("/") >= 2 else url
    printable = "".join(c if c.isprintable() and not c.isspace() else "?" for c in where)
    return printable[:120] + ("…" if len(printable) > 120 else "")


def forget_requests(exc: BaseException) -> BaseException:
    """Drop the request and response that requests keeps on its exceptions, in all of ``exc``'s chain.

    The prepared request holds the Authorization header and the body (a token request's client
    secret or assertion); an error we raise from one must not hand them to whoever reads its cause.
    """
    for current in _causes(exc):
        if isinstance(current, requests.RequestException):
            current.request = None
            current.response = None
    return exc


class CallBudget(Protocol):
    """Spends one call of a shared budget before a request is sent: waits while it is spent.

    Raises :class:`~clients.errors.CallBudgetExhausted` when no slot came within its wait. The
    budget (Prefect rate limits, ``tasks/budget.py``) is shared by every process calling the service,
    so a 429's Retry-After held there (:meth:`hold`) holds the other processes' calls too.
    """

    def __call__(self, method: str, path: str) -> None: ...

    def hold(self, seconds: float, scope: str | None) -> None:
        """No call of any process through this budget before ``seconds``; ``scope`` is the 429's throttle scope, if it said one."""
        ...


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


def is_timeout(exc: requests.RequestException) -> bool:
    """True for a timeout, also when urllib3's retries wrapped it into a ConnectionError."""
    if isinstance(exc, requests.Timeout):
        return True
    first = exc.args[0] if exc.args else None
    if isinstance(first, ReadTimeoutError):  # the body stopped coming after the headers (requests wraps it bare)
        return True
    reason = getattr(first, "reason", None)
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


class ThrottleGate:
    """A service's "wait" holds every request of the client, not only the one it answered.

    Microsoft throttles per app, tenant and service; a Retry-After given to one thread's request
    would otherwise be ignored by the other steps of the run calling the same service meanwhile.
    """

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        while True:  # another answer may have asked for longer while this one slept
            with self._lock:
                remaining = self._until - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(remaining)


class CappedRetry(Retry):
    """urllib3's Retry that never retries before a Retry-After, and waits in-process only so long.

    A Retry-After up to ``max_retry_after_s`` is slept, then the request is sent again (a throttled
    write too: a 429 was refused before the service acted on it). A longer one is handed back at
    once, as :class:`~clients.errors.Throttled` with the service's wait, for the caller to honour
    (Prefect task retries sleep it; a wait's check counts it as not yet). The cap is
    an argument, kept by :meth:`new`: urllib3 makes a fresh Retry for every attempt, so a cap set on
    the first instance only would be lost after the first retry. Retry-After is read by
    :func:`retry_after_seconds`, so a value urllib3 cannot parse backs off instead of failing the call.
    """

    def __init__(self, *args: Any, max_retry_after_s: float = 120.0, gate: ThrottleGate | None = None,
                 on_throttled: Callable[[float, Any], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after_s = max_retry_after_s
        self.gate = gate
        self.on_throttled = on_throttled  # told of each 429's wait, with the response (its throttle scope)

    def new(self, **kw: Any) -> Self:
        kw.setdefault("max_retry_after_s", self.max_retry_after_s)
        kw.setdefault("gate", self.gate)
        kw.setdefault("on_throttled", self.on_throttled)
        return super().new(**kw)

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> Self:
        # A Retry-After longer than this process waits is the caller's to honour (a task retry or the
        # wait's next check, after the whole wait): retrying sooner would send it before its time.
        wait = retry_after_seconds(response) if response is not None else None
        if wait is not None and wait > self.max_retry_after_s:
            raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:g}s is longer than the {self.max_retry_after_s:g}s waited in-process"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        # A throttled request was refused before the service acted on it, so a write may be sent
        # again too (after its Retry-After); other errors are retried for idempotent methods only.
        if status_code == 429 and self.total:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def get_retry_after(self, response: Any) -> float | None:
        value = retry_after_seconds(response)  # never above the cap here: increment() hands longer ones back
        if value is None:
            return None
        capped = min(value, self.max_retry_after_s)
        if self.gate is not None:
            self.gate.hold(capped)  # the client's other requests wait as long as this retry does
        if self.on_throttled is not None and getattr(response, "status", None) == 429:
            self.on_throttled(capped, response)  # and so do other processes' (the shared budget)
        return capped


def make_retry(retries: int, max_retry_after_s: float, methods: frozenset[str] = IDEMPOTENT_METHODS,
               gate: ThrottleGate | None = None, on_throttled: Callable[[float, Any], None] | None = None) -> CappedRetry:
    return CappedRetry(
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
        max_retry_after_s=max_retry_after_s,
        gate=gate,
        on_throttled=on_throttled,
    )


# "<scheme> <credentials>" as one header value: printable ASCII, one space after the scheme, none elsewhere.
_VALID_CREDENTIAL = re.compile(r"[!-~]+ [!-~]+")


def _request_id(response: requests.Response) -> str | None:
    return response.headers.get("request-id") or response.headers.get("x-request-id") or response.headers.get("x-ms-request-id")


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
        budget: CallBudget | None = None,
    ) -> None:
        if not base_url.startswith("https://"):
            raise ValueError(f"{self.service} base URL must be https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        origin = url_origin(self.base_url)
        if origin is None:
            raise ValueError(f"{self.service} base URL is not a plain https://host[:port] URL: {describe_origin(self.base_url)}")
        self.origin: Origin = origin  # the only scheme, host and port the credential is ever sent to
        self.tenant_id = tenant_id
        self._authorization = authorization  # None: the service needs no credential (OIDC discovery)
        self.timeout_s = timeout_s
        self.max_retry_after_s = max_retry_after_s
        self.budget = budget  # None: calls are not budgeted (a unit test, a one-off read)
        self.gate = ThrottleGate()
        self.session = self._session(ca_bundle, make_retry(retries, max_retry_after_s, gate=self.gate, on_throttled=self._hold_budget))
        # For APIs whose reads are POSTs (Exchange's InvokeCommand): used only when a call says so.
        self.idempotent_post_session = self._session(
            ca_bundle, make_retry(retries, max_retry_after_s, IDEMPOTENT_METHODS | {"POST"}, self.gate, self._hold_budget))

    @staticmethod
    def _session(ca_bundle: str | Path | None, retry: Retry) -> VerifiedSession:
        session = VerifiedSession(ca_bundle)
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        session.mount("https://", HTTPAdapter(max_retries=retry))
        return session

    def _hold_budget(self, seconds: float, response: Any) -> None:
        """A 429's wait holds the shared budget too, so that no other process calls before it (Graph names the scope)."""
        if self.budget is not None and seconds > 0:
            self.budget.hold(seconds, _header(getattr(response, "headers", {}) or {}, "x-ms-throttle-scope"))

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

    # --- where requests go -----------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        """The URL for a path of this service, or an absolute URL on its own origin (a next link :meth:`next_page` accepted)."""
        if path_or_url.startswith("/") and not path_or_url.startswith("//"):
            return f"{self.base_url}{path_or_url}"
        if url_origin(path_or_url) != self.origin:
            # Never reached through next_page; a guard so that no future caller sends the credential elsewhere.
            raise ValueError(f"{self.service}: refusing to send a request to {describe_origin(path_or_url)}, which is not {self.base_url}")
        return path_or_url

    def next_page(self, link: Any, page: requests.Response, *, operation: str) -> str | None:
        """The absolute URL of ``page``'s next-page link, or None when there is none.

        The real services page on their own host, so a link to another scheme, host or port is
        refused (:class:`UntrustedNextLink`) rather than followed with the credential attached. A
        relative link is resolved against the page's URL; a JSON:API link object by its ``href``.
        """
        if isinstance(link, dict):
            link = link.get("href")
        if not link:
            return None
        url = urljoin(page.url or f"{self.base_url}/", link) if isinstance(link, str) else None
        if url is None or url_origin(url) != self.origin:
            where = describe_origin(url) if url else f"a {type(link).__name__}, not a URL"
            raise UntrustedNextLink(
                self.service, page.status_code, None, f"the next-page link points to {where}", operation=operation,
                request_id=_request_id(page), link_origin=where,
                explanation=f"the next-page link points to {where}, not to {self.base_url}: it was not followed, and no credential was sent there",
            )
        return url

    def _checked_authorization(self, operation: str) -> str:
        """The Authorization value, refused before it is sent if requests would reject it: its error would quote the credential."""
        assert self._authorization is not None
        value = self._authorization()
        if not _VALID_CREDENTIAL.fullmatch(value):
            raise InvalidCredentials(
                f"{self.service} {operation}: the credential has spaces, line breaks or control characters (pasted with a line end?); "
                "it was not sent.",
                next_action="Save the secret in its credentials block again, without surrounding spaces or line breaks.",
            )
        return value

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
        url = self._url(path_or_url)
        all_headers = {"client-request-id": str(uuid.uuid4()), **(headers or {})}
        if self._authorization is not None:
            all_headers["Authorization"] = self._checked_authorization(operation)
        if self.budget is not None:  # in-process retries (urllib3's, after a 429 or 5xx) are not charged again
            self.budget(method, urlsplit(url).path)
        self.gate.wait()  # a Retry-After the service gave this client holds this request too
        try:
            session = self.idempotent_post_session if idempotent_post else self.session
            response = session.request(method, url, params=params, json=json, headers=all_headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            forget_requests(exc)
            if is_timeout(exc):
                raise ApiTimeout(f"{self.service} {operation}: no answer within {self.timeout_s:g}s from {self.base_url}") from exc
            raise ApiConnectionError(f"{self.service} {operation}: cannot reach {self.base_url}: {connection_failure(exc)}") from exc
        request_id = _request_id(response)
        waited = retry_after_seconds(response) if response.status_code in RETRY_STATUSES else None
        if waited:
            self.gate.hold(min(waited, self.max_retry_after_s))  # retries ran out, or a POST is not retried: the next call waits
            if response.status_code == 429:
                self._hold_budget(waited, response)
        logger.debug("%s %s %s -> %s request-id=%s", self.service, method, operation, response.status_code, request_id)
        if response.status_code in expected:
            return response
        details = self.parse_error(response)
        cls = self.error_class(response.status_code, details.code)
        extra: dict[str, Any] = {}
        if issubclass(cls, Throttled):
            extra["retry_after"] = retry_after_seconds(response)  # the service's full wait, uncapped: the caller's to honour
        error = cls(self.service, response.status_code, details.code, details.message, request_id=request_id, operation=operation,
                    errors=details.errors, **extra)
        translated = self.translate(error)
        if translated is error:
            raise error
        raise translated from error
