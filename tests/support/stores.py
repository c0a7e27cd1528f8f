"""Store helpers: more store instances, a store that makes racers meet, raw SQL on its tables."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import psycopg

from services.case.application.ports import IdempotencyRecord, SaveResult
from services.case.domain.case import Case
from services.case.infrastructure.store import CaseEventStore, StoreConfig


class StoreFactory(Protocol):
    def __call__(self, url: str | None = None, *, pool_size: int | None = None) -> CaseEventStore: ...


@dataclass(frozen=True, slots=True)
class SizedPoolStoreConfig(StoreConfig):
    """A ``StoreConfig`` with a PostgreSQL pool of ``pool_size`` connections (tests open many stores)."""

    pool_size: int = 1

    def eventsourcing_env(self, **kwargs: Any) -> dict[str, str]:
        kwargs["pool_size"] = self.pool_size
        # (explicit base class: zero-argument super() fails in a slots dataclass)
        return StoreConfig.eventsourcing_env(self, **kwargs)


def open_case_store(url: str, *, pool_size: int | None = None) -> CaseEventStore:
    """A new store instance on ``url`` (the caller closes it)."""
    if pool_size is None:
        return CaseEventStore(StoreConfig(url))
    return CaseEventStore(SizedPoolStoreConfig(url, pool_size=pool_size))


class GatedStore:
    """A ``CaseStore`` whose first ``gated_saves`` saves wait at ``barrier``.

    Give each racing thread its own ``GatedStore`` around its own store and the same
    barrier: every racer has loaded the case (and checked its idempotency key) before
    any of them saves.
    """

    def __init__(self, inner: CaseEventStore, barrier: threading.Barrier, *, gated_saves: int = 1) -> None:
        self.inner = inner
        self.barrier = barrier
        self.gated_saves = gated_saves
        self.saves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, case: Case, idempotency: IdempotencyRecord | None = None) -> SaveResult:
        self.saves += 1
        if self.saves <= self.gated_saves:
            self.barrier.wait()
        return self.inner.save(case, idempotency)


# ---------------------------------------------------------------------------------- raw SQL
def stored_originator_id(url: str, case_id: UUID) -> UUID | str:
    """How the events table keys a case: uuid on PostgreSQL, ``uuid.hex`` text on SQLite."""
    return case_id if StoreConfig(url).is_postgres else case_id.hex


def raw_execute(url: str, statement: str, params: Sequence[Any] = ()) -> int:
    """Run one statement on the store's database behind the library's back; rows affected.

    Write ``%s`` placeholders; they become ``?`` on SQLite.
    """
    config = StoreConfig(url)
    if config.is_postgres:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(statement, params).rowcount
    lite = sqlite3.connect(config.sqlite_path())
    try:
        with lite:
            return lite.execute(statement.replace("%s", "?"), tuple(params)).rowcount
    finally:
        lite.close()


def raw_query(url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    config = StoreConfig(url)
    if config.is_postgres:
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(statement, params).fetchall())
    lite = sqlite3.connect(config.sqlite_path())
    try:
        return list(lite.execute(statement.replace("%s", "?"), tuple(params)).fetchall())
    finally:
        lite.close()


def end_other_connections(url: str) -> None:
    """As a PostgreSQL restart does: every other connection to the database ended by the server."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
