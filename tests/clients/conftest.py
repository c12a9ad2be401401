"""Scripted HTTPS servers for the client tests that need answers the sandbox does not give."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.core.tls import TlsFiles, ensure_tls_files
from tests.clients.tls_stub import StubServer


@pytest.fixture(scope="session")
def stub_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a certificate for 127.0.0.1, shared by every stub server, so a client trusts them all."""
    return ensure_tls_files(tmp_path_factory.mktemp("stub-tls"))


@pytest.fixture
def stub(stub_tls: TlsFiles) -> Iterator[StubServer]:
    """The service a client is configured for."""
    server = StubServer(stub_tls)
    yield server
    server.close()


@pytest.fixture
def foreign(stub_tls: TlsFiles) -> Iterator[StubServer]:
    """Another origin (same host, another port): a next link there must never be followed."""
    server = StubServer(stub_tls)
    yield server
    server.close()
