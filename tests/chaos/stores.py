"""Reading a service's store after the chaos, by its URL: a SQLite file (the embedded
topology) or a PostgreSQL database (the cluster), with the same SQL (``?`` placeholders).

The checks read the tables directly, not through the service's store classes: what is
compared is what is on disk, whatever the service would make of it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from services.shared.eventstore import EventStoreUrl


def rows(url: str, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Every row the statement returns, as a dict by column name."""
    store = EventStoreUrl(url)
    if store.is_postgres:
        with psycopg.connect(url, connect_timeout=10, row_factory=dict_row) as conn:
            return list(conn.execute(statement.replace("?", "%s"), params).fetchall())  # type: ignore[arg-type]
    with contextlib.closing(sqlite3.connect(store.sqlite_path())) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(statement, params).fetchall()]


def create_database(server_url: str, database: str) -> None:
    """A new, empty database on the server (a clean replay's store); an old one of that name goes."""
    with psycopg.connect(server_url, connect_timeout=10, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
