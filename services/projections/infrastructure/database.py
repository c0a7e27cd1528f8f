"""Where the read models live: SQLite files by default, PostgreSQL schemas when configured.

Read models are disposable: each *generation* is a complete copy built from the
start of history (a file ``readmodels-<generation>.sqlite`` or a schema
``rm_<generation>``). A pointer names the one that serves (a file ``CURRENT`` written
atomically, or a row of ``vss_projections.current``). A rebuild fills a new generation
while the current one keeps serving, then moves the pointer; readers and the live
projector follow the pointer.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg

from services.projections.application.ports import NoReadModels

__all__ = ["NoReadModels", "ReadModelLocation", "ReadModelUrlInvalid", "new_generation"]

GENERATION = re.compile(r"^[a-z0-9_]{1,40}$")
POINTER_SCHEMA = "vss_projections"
# The pointer file is read again at least this often even if its stat looks unchanged (an
# inode number reused within one timestamp tick could hide a switch; this bounds how long).
POINTER_RECHECK_SECONDS = 1.0

# What identifies one version of the pointer file: os.replace installs a new inode each time.
_FileVersion = tuple[int, int, int, int]


class ReadModelUrlInvalid(ValueError):
    """The read-model URL is neither sqlite:///DIRECTORY nor postgresql://…"""


class ReadModelLocation:
    """``sqlite:///DIRECTORY`` (one file per generation) or a PostgreSQL URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pointer: psycopg.Connection[Any] | None = None  # PostgreSQL: kept for frequent reads
        self._pointer_file = self.directory() / "CURRENT"  # SQLite's pointer (parsed once)
        # SQLite: the pointer file's version, what it named, and until when that may be trusted.
        self._pointer_read: tuple[_FileVersion, str | None, float] | None = None
        scheme = urlsplit(self.url).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ReadModelUrlInvalid(
                "VSS_READ_MODEL_URL must be sqlite:///DIRECTORY or postgresql://…,"
                f" not {scheme or self.url!r}"
            )

    @property
    def is_postgres(self) -> bool:
        return not self.url.startswith("sqlite")

    def directory(self) -> Path:
        return Path(unquote(urlsplit(self.url).path))

    # ------------------------------------------------------------------- the pointer
    def current(self) -> str | None:
        """The generation that serves, or None before the first one."""
        if not self.is_postgres:
            return self._current_in_file()
        if self._pointer is None or self._pointer.closed:
            self._pointer = psycopg.connect(self.url, autocommit=True)
            _ensure_pointer_table(self._pointer)
        row = self._pointer.execute(
            f"SELECT generation FROM {POINTER_SCHEMA}.current WHERE id = 1"
        ).fetchone()
        return str(row[0]) if row else None

    def _current_in_file(self) -> str | None:
        """The pointer file's generation, read only when the file changed: the live projector
        asks before every event, and a stat costs a fraction of an open and a read."""
        path = self._pointer_file
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self._pointer_read = None
            return None
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        now = time.monotonic()
        known = self._pointer_read
        if known is not None and known[0] == version and now < known[2]:
            return known[1]
        # Stat before read: a switch in between gives the newer name under the older
        # version, which the next stat (a new inode) reads again.
        try:
            generation = path.read_text().strip() or None
        except FileNotFoundError:
            self._pointer_read = None
            return None
        self._pointer_read = (version, generation, now + POINTER_RECHECK_SECONDS)
        return generation

    def close(self) -> None:
        if self._pointer is not None:
            self._pointer.close()

    def point_to(self, generation: str) -> None:
        _check(generation)
        if not self.is_postgres:
            directory = self.directory()
            temporary = directory / f".CURRENT.{os.getpid()}"
            temporary.write_text(generation)
            _stamp_after(temporary, directory / "CURRENT")
            os.replace(temporary, directory / "CURRENT")  # atomic: a reader sees old or new
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            _ensure_pointer_table(conn)
            conn.execute(
                f"INSERT INTO {POINTER_SCHEMA}.current (id, generation) VALUES (1, %s)"
                " ON CONFLICT (id) DO UPDATE SET generation = excluded.generation",
                (generation,),
            )

    def generations(self) -> list[str]:
        if not self.is_postgres:
            return sorted(
                path.stem.removeprefix("readmodels-") for path in self.directory().glob("readmodels-*.sqlite")
            )
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'rm\\_%'"
            ).fetchall()
            return sorted(str(row[0]).removeprefix("rm_") for row in rows)

    def drop(self, generation: str) -> None:
        _check(generation)
        if not self.is_postgres:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (self.directory() / f"readmodels-{generation}.sqlite{suffix}").unlink()
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS rm_{generation} CASCADE")

    # ------------------------------------------------------------------ connections
    def connect(self, generation: str) -> Connection:
        _check(generation)
        if not self.is_postgres:
            self.directory().mkdir(parents=True, exist_ok=True)
            path = self.directory() / f"readmodels-{generation}.sqlite"
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a read model can always be rebuilt
            conn.execute("PRAGMA busy_timeout=5000")
            return Connection(conn, "?", generation)
        pg = psycopg.connect(self.url, autocommit=True)
        pg.execute(f"CREATE SCHEMA IF NOT EXISTS rm_{generation}")
        pg.execute(f"SET search_path TO rm_{generation}")
        return Connection(pg, "%s", generation)


def new_generation() -> str:
    """A fresh, sortable generation name: g<UTC time>_<random>."""
    return f"g{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(3)}"


def _check(generation: str) -> None:
    if not GENERATION.match(generation):
        raise ValueError(f"generation names are [a-z0-9_]{{1,40}}, not {generation!r}")


def _stamp_after(new: Path, old: Path) -> None:
    """Give the new pointer file a modification time after the old one's, to the nanosecond,
    so that a reader comparing stats sees a switch even when the new file reuses the old
    one's inode within one tick of the file system's clock."""
    try:
        before = os.stat(old).st_mtime_ns
    except FileNotFoundError:
        return
    stamp = max(time.time_ns(), before + 1)
    os.utime(new, ns=(stamp, stamp))


def _ensure_pointer_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {POINTER_SCHEMA}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {POINTER_SCHEMA}.current"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), generation TEXT NOT NULL)"
    )


class Connection:
    """A DB-API connection in autocommit mode, with explicit transactions."""

    def __init__(self, raw: Any, placeholder: str, generation: str) -> None:
        self.raw = raw
        self.p = placeholder
        self.generation = generation
        self.is_postgres = placeholder == "%s"

    def sql(self, query: str) -> str:
        """Queries are written with ``?``; PostgreSQL gets ``%s``."""
        return query.replace("?", "%s") if self.is_postgres else query

    def execute(self, query: str, params: Any = ()) -> Any:
        return self.raw.execute(self.sql(query), params)

    def fetchall(self, query: str, params: Any = ()) -> list[Any]:
        return list(self.raw.execute(self.sql(query), params).fetchall())

    def fetchone(self, query: str, params: Any = ()) -> Any:
        return self.raw.execute(self.sql(query), params).fetchone()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in one transaction (committed on success, rolled back on error)."""
        if self.is_postgres:
            with self.raw.transaction(), self.raw.cursor() as cursor:
                yield cursor
            return
        cursor = self.raw.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    @property
    def closed(self) -> bool:
        """PostgreSQL: the server ended it (a restart); it has to be opened again."""
        return bool(self.is_postgres and self.raw.closed)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()
