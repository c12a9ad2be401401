"""The one exception type emulated routes raise; each service's ``errors.py`` builds the real bodies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SandboxHTTPError(Exception):
    """An HTTP error response with the real service's status, body and headers.

    Routes raise it; the service's exception handler renders it. ``body`` is JSON unless
    ``media_type`` says otherwise (the admin-consent page answers with HTML).
    """

    def __init__(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        media_type: str = "application/json",
    ) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.media_type = media_type


@dataclass(frozen=True)
class ErrorSet:
    """A :class:`ServiceErrors` made of four builders, for services whose builders are plain classes."""

    request_id_header: str
    throttled: Callable[[int | None], SandboxHTTPError]
    unavailable: Callable[[int | None], SandboxHTTPError]
    not_emulated_builder: Callable[[str], SandboxHTTPError]
    bad_request: Callable[[str], SandboxHTTPError]
    not_emulated_hint: str = ""

    def not_emulated(self, method: str, path: str) -> SandboxHTTPError:
        return self.not_emulated_builder(f"{method} {path} is not emulated by the sandbox.{self.not_emulated_hint}")
