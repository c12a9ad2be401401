"""HTTP plumbing shared by every client: a session that always verifies TLS against the right CA.

``requests`` lets the ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` environment variables override a
session's ``verify`` setting (psf/requests#3829), so a session configured for the sandbox CA would
silently verify against the system bundle on machines that set them, and fail. Passing ``verify``
with every request is the documented way round it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests


class VerifiedSession(requests.Session):
    """A ``requests.Session`` that sends its CA bundle (or True) with every request; never False."""

    def __init__(self, ca_bundle: str | Path | None = None) -> None:
        super().__init__()
        self.ca_bundle: str | bool = str(ca_bundle) if ca_bundle else True
        self.verify = self.ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("verify") is False:
            raise ValueError("TLS verification cannot be turned off")
        kwargs["verify"] = self.ca_bundle
        return super().request(method, url, *args, **kwargs)
