"""One way for a service's own store to speak SQLite and PostgreSQL with the same SQL.

Statements are written once, with ``?`` placeholders, and rewritten to ``%s`` for psycopg.
A store subclasses :class:`SqlStore` for its connection handling and its transactions, and
:class:`SqlTx` for the statements that belong in one transaction:

- one connection per thread; on PostgreSQL a connection the server ended (a restart, a
  failover) is replaced on the next call instead of failing for as long as the process runs;
- SQLite in WAL mode with ``synchronous=FULL`` (a committed decision survives a crash of the
  machine) and a busy timeout, transactions ``BEGIN IMMEDIATE``;
- one writer at a time: a lock in the process, and on PostgreSQL an advisory lock per store,
  so positions of an outbox table commit in order and a relay never passes one that commits
  later;
- the consumer's checkpoint (:mod:`services.shared.bus.checkpoint`) in the same transaction
  as the state change it belongs to;
- on SQLite, a transaction that appended to the store's outbox (:meth:`SqlTx.appended`)
  wakes its relay once committed (:func:`services.shared.bus.wake.store_bell`; ADR 0004,
  decision 9).

The case and meetings stores are eventsourcing recorders and keep the library's
connections; this is for the services' own tables.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg

from services.shared.bus import checkpoint
from services.shared.bus.wake import store_bell
from services.shared.eventstore import EventStoreUrl

__all__ = ["DatabaseErrors", "SqlStore", "SqlTx"]

# What a statement on either database raises when a table is missing, a constraint fails …
DatabaseErrors = (sqlite3.Error, psycopg.Error)


class SqlTx:
    """One transaction's cursor, with ``?`` placeholders on both databases."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self.cursor = cursor
        self.postgres = postgres
        self.p = "%s" if postgres else "?"
        self.wakes_relay = False

    def appended(self) -> None:
        """This transaction added to the outbox: its relay is woken when it commits."""
        self.wakes_relay = True

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        self.cursor.execute(self._sql(sql), params)
        return int(self.cursor.rowcount)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.cursor.executemany(self._sql(sql), params)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cursor.execute(self._sql(sql), params)
        return list(self.cursor.fetchall())

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The result as dicts by column name."""
        self.cursor.execute(self._sql(sql), params)
        names = [d[0] for d in self.cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in self.cursor.fetchall()]

    def advance(
        self, consumer: str, stream_sequence: int, event_id: str | None, *, log_position: int | None = None
    ) -> bool:
        """Record the consumer's position (and its source log position, if given); False if the
        sequence was applied already."""
        return checkpoint.advance(
            self.cursor, consumer, stream_sequence, event_id, p=self.p, log_position=log_position
        )


TxT = TypeVar("TxT", bound=SqlTx)


class SqlStore(Generic[TxT]):
    """A service's own tables on SQLite or PostgreSQL, from one URL."""

    def __init__(self, url: str, *, writer_lock: int, tx: Callable[[Any, bool], TxT]) -> None:
        self.url = EventStoreUrl(url)
        self.postgres = self.url.is_postgres
        self._writer_lock = writer_lock  # pg_advisory_xact_lock key: one writer across processes
        self._tx = tx
        self.lock = threading.RLock()  # one writer at a time in this process
        self._local = threading.local()
        self._opened: list[Any] = []  # every thread's connection, for close()
        self._opened_lock = threading.Lock()
        self.bell = store_bell(self.url)  # SQLite: a commit that appended wakes the relay

    # ------------------------------------------------------------------------ connection
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self.postgres and conn.closed:
            conn = None
        if conn is None:
            if self.postgres:
                conn = psycopg.connect(self.url.url)
            else:
                conn = sqlite3.connect(self.url.sqlite_path(), isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._opened_lock:  # a connection the server ended is dropped from the list here
                self._opened = [c for c in self._opened if not getattr(c, "closed", False)]
                self._opened.append(conn)
        return conn

    def _reconnect(self) -> Any:
        """This thread's connection again, new: the server ended the old one (a restart)."""
        with contextlib.suppress(psycopg.Error):
            self._local.conn.close()
        self._local.conn = None
        return self._conn()

    def _begin(self, stack: contextlib.ExitStack, *, writer: bool) -> Any:
        """BEGIN (and the writer lock) in ``stack``. A connection whose server restarted fails
        here, before anything of the caller's ran: that is retried once on a new connection,
        so each thread's stale connection costs no failed request."""
        for retry in (False, True):
            conn = self._reconnect() if retry else self._conn()
            attempt = contextlib.ExitStack()
            try:
                attempt.enter_context(conn.transaction())
                cursor = attempt.enter_context(conn.cursor())
                if writer:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self._writer_lock,))
            except psycopg.OperationalError:
                with contextlib.suppress(psycopg.Error):
                    attempt.close()
                if retry:
                    raise
                continue
            stack.push(attempt)
            return cursor
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def transaction(self) -> Iterator[TxT]:
        """One write transaction. Inside another one of the same thread it is a savepoint of
        it: its writes commit with the outer transaction, and an exception out of it undoes
        its own writes only (psycopg nests transaction blocks so; on SQLite, ``SAVEPOINT``).
        Reads (:meth:`read`) inside see the open transaction's writes."""
        with self.lock:
            if self.postgres:
                with contextlib.ExitStack() as stack:
                    yield self._tx(self._begin(stack, writer=True), True)
                return
            conn = self._conn()
            cursor = conn.cursor()
            if conn.in_transaction:
                cursor.execute("SAVEPOINT nested")
                try:
                    yield self._tx(cursor, False)
                except BaseException:
                    cursor.execute("ROLLBACK TO nested")
                    cursor.execute("RELEASE nested")
                    raise
                cursor.execute("RELEASE nested")
                return
            cursor.execute("BEGIN IMMEDIATE")
            try:
                tx = self._tx(cursor, False)
                yield tx
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            if tx.wakes_relay:
                self.bell.ring()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read outside any write transaction, as dicts by column name."""
        if self.postgres:
            with contextlib.ExitStack() as stack:
                return SqlTx(self._begin(stack, writer=False), True).rows(sql, params)
        return SqlTx(self._conn().cursor(), False).rows(sql, params)

    def read_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            with contextlib.ExitStack() as stack:
                return SqlTx(self._begin(stack, writer=False), True).tuples(sql, params)
        return SqlTx(self._conn().cursor(), False).tuples(sql, params)

    def close(self) -> None:
        """Close every thread's connection (worker threads' too: they are not reused after)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()
        self.bell.close()

    # ---------------------------------------------------------------------------- schema
    @property
    def serial(self) -> str:
        """The column type of an outbox's position: assigned in commit order by one writer."""
        return "BIGSERIAL PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"

    @property
    def blob(self) -> str:
        return "BYTEA" if self.postgres else "BLOB"

    def create(self, statements: Sequence[str]) -> None:
        """Run ``CREATE … IF NOT EXISTS`` statements in one transaction (the SQLite file's
        directory is created first)."""
        if not self.postgres:
            Path(self.url.sqlite_path()).parent.mkdir(parents=True, exist_ok=True)
        with self.transaction() as tx:
            for statement in statements:
                tx.execute(statement)

    def missing_tables(self, *tables: str) -> str | None:
        """None if every table exists; else the database's error, for a one-line message."""
        try:
            for table in tables:
                self.read(f"SELECT 1 FROM {table} LIMIT 1")
        except DatabaseErrors as error:
            self.close()
            return str(error)
        return None

    # ----------------------------------------------------------------------- checkpoints
    def applied_through(self, consumer: str) -> int:
        rows = self.read("SELECT stream_sequence FROM consumer_positions WHERE consumer = ?", (consumer,))
        return int(rows[0]["stream_sequence"]) if rows else 0

    def applied_log_position(self, consumer: str) -> int:
        """The source log position of the last event ``consumer`` applied (0: none or not kept)."""
        rows = self.read("SELECT log_position FROM consumer_positions WHERE consumer = ?", (consumer,))
        return int(rows[0]["log_position"] or 0) if rows else 0

    def pass_over(self, consumer: str, stream_sequence: int, event_id: str | None) -> None:
        """Record a message as passed (dead-lettered or not the service's): nothing else changes."""
        with self.transaction() as tx:
            tx.advance(consumer, stream_sequence, event_id)
