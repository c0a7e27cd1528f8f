"""Where a service's events live, from one URL: the eventsourcing library's settings.

``sqlite:///path`` or ``postgresql://user:pw@host:port/db``; each service names its own
recorder classes (which add its side tables to the events' transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore


class StoreUrlInvalid(ValueError):
    """The store URL is neither sqlite:///PATH nor postgresql://…."""


@dataclass(frozen=True, slots=True)
class RecorderTopics:
    """``module:Class`` of the service's SQLite and PostgreSQL recorders."""

    sqlite: str
    postgres: str


@dataclass(frozen=True, slots=True)
class EventStoreUrl:
    url: str

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def sqlite_path(self) -> str:
        parts = urlsplit(self.url)
        if parts.scheme != "sqlite" or not parts.path:
            raise StoreUrlInvalid(f"expected sqlite:///PATH or postgresql://…, got {self.url!r}")
        # sqlite:///relative/file.db or sqlite:////absolute/file.db
        return unquote(parts.path[1:])

    def redacted(self) -> str:
        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url

    def persistence_env(self, recorders: RecorderTopics, *, pool_size: int = 5) -> dict[str, str]:
        """PERSISTENCE_MODULE, the recorder and its connection settings."""
        if not self.is_postgres:
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "APPLICATION_RECORDER_TOPIC": recorders.sqlite,
                "SQLITE_DBNAME": self.sqlite_path(),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        unsupported = sorted(set(info) - {"dbname", "host", "port", "user", "password", "connect_timeout"})
        if unsupported:
            raise StoreUrlInvalid(
                f"the store URL may not carry {', '.join(unsupported)}: the event store's"
                " connections would ignore it (set libpq's PG* environment variables, e.g."
                " PGSSLMODE, instead)"
            )
        if not info.get("host"):
            raise StoreUrlInvalid("the store URL needs a host (or ?host=/socket/directory)")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": recorders.postgres,
            "POSTGRES_DBNAME": str(info.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(info.get("host") or "localhost"),
            "POSTGRES_PORT": str(info.get("port") or "5432"),
            "POSTGRES_USER": str(info.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(info.get("password") or ""),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size * 2),
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": str(info.get("connect_timeout") or "30"),
        }


class SQLiteRecorderSql:
    """Ad hoc statements on a SQLite recorder's own connection, with ``%s`` placeholders as on
    PostgreSQL (mixed into a service's recorder, before the library's class)."""

    datastore: SQLiteDatastore

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql.replace("%s", "?"), params)
            return [dict(row) for row in c.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(sql.replace("%s", "?"), params)


class PostgresRecorderSql:
    """The same on a PostgreSQL recorder's pool."""

    datastore: PostgresDatastore

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, params)  # type: ignore[arg-type]
            return [dict(row) for row in curs.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(sql, params)  # type: ignore[arg-type]
