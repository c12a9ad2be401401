"""A private mail relay for tests: aiosmtpd on 127.0.0.1 that requires STARTTLS, with a test CA.

It can be started late or stopped and started again on the same port, as a mail server that is
down for a while; every message it accepted stays in :attr:`MailRelay.messages`.
"""

from __future__ import annotations

import socket
import ssl
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from prefect_email import EmailServerCredentials

from sandbox.core.tls import ensure_tls_files


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))  # type: ignore[attr-defined]
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MailRelay:
    """The relay on one port; ``ca_cert`` is what a client trusts it with (``SSL_CERT_FILE``)."""

    def __init__(self, folder: Path) -> None:
        tls = ensure_tls_files(folder / "tls")
        self.ca_cert = tls.ca_cert
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(tls.server_cert, tls.server_key)
        self._inbox = _Inbox()
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self._inbox, hostname="127.0.0.1", port=self.port, tls_context=self._context, require_starttls=True)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return list(self._inbox.messages)

    def mails(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self._inbox.messages]

    def save_block(self, name: str, **options: object) -> str:
        """An email-server-credentials block for this relay; returns its slug."""
        EmailServerCredentials(smtp_server="127.0.0.1", smtp_port=self.port, smtp_type="STARTTLS", username=None, **options).save(name, overwrite=True)
        return f"email-server-credentials/{name}"
