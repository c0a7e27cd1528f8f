"""The unit tier: no server, no network, no file.

Every test here runs on in-memory fakes of the services' ports. Two guards keep it so:

- any attempt to reach the network (connect, bind, listen, a name lookup) fails the test;
  asyncio's own wake-up socket pair stays allowed, as it never leaves the process;
- a test that asks for a fixture giving a file, a database or a server fails at setup.

The project's server fixtures (``tests/conftest.py``) start their servers only when a test
asks for them, so none starts for this tier.
"""

from __future__ import annotations

import socket

import pytest

from tests.unit.guards import refuse_network

# Fixtures of tests/conftest.py and pytest that give a file, a database or a server.
NOT_IN_THIS_TIER = frozenset(
    {
        "tmp_path",
        "tmp_path_factory",
        "tmpdir",
        "tmpdir_factory",
        "sqlite_url",
        "postgres_url",
        "postgres_server",
        "store_url",
        "store",
        "open_store",
        "service",
        "nats_server",
        "nats_url",
        "bus_names",
    }
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for method in ("connect", "connect_ex", "bind", "listen", "sendto"):
        monkeypatch.setattr(socket.socket, method, refuse_network)
    for function in ("create_connection", "create_server", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, function, refuse_network)


@pytest.fixture(autouse=True)
def no_files_or_servers(request: pytest.FixtureRequest) -> None:
    asked = NOT_IN_THIS_TIER & set(request.fixturenames)
    if asked:
        pytest.fail(f"the unit tier takes no file, database or server: {sorted(asked)}", pytrace=False)
