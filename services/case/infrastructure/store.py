"""The case event store: the eventsourcing library over SQLite or PostgreSQL.

- Stored topics are the contracts' stable type names (``se.vss.case.SipDecided.v1``),
  never module paths; states are orjson with sorted keys, exactly the bytes hashed.
- Each write also records the case's head (version, hash, and the commit's signature),
  so that deleting or editing the last event is detected, and the Idempotency-Key record,
  in the same transaction: on SQLite written by :class:`SQLiteCommitWriter` on a
  connection of its own, on PostgreSQL by the library's ``insert_events``.
- Each commit is signed (Ed25519, :mod:`.signing`) over its last event's hash, once per
  commit; the signature is kept in that event's stored state (beside the hash, not hashed)
  and in the head row, and published with the event (``vsssig``, ``vsskeyid``).
- Tables are created by :func:`migrate` (``vss migrate``), never at process start
  (``CREATE_TABLE=n``); the library's PostgreSQL DB functions stay off, so inserts take
  the table lock that makes commit order equal notification-id order.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

import orjson
import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    Mapper,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLITE3_DEFAULT_LOCK_TIMEOUT, SQLiteApplicationRecorder
from eventsourcing.utils import Environment
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from services.case.application.ports import (
    CaseNotFound,
    ConcurrentWrite,
    HistoryEntry,
    IdempotencyRecord,
    SaveResult,
    StoredEventRef,
)
from services.case.domain.case import Case
from services.case.domain.events import (
    CaseEvent,
    ChainBreak,
    CommitSeal,
    EventMetadata,
    RawEvent,
    canonical_bytes,
    verify_chain,
)
from services.case.infrastructure.signing import CommitSigner
from services.shared import tracing
from services.shared.bus.outbox import PublishedEvent, published_event
from services.shared.bus.wake import store_bell
from services.shared.eventstore import (
    EventStoreUrl,
    PostgresRecorderSql,
    RecorderTopics,
    SQLiteRecorderSql,
    StoreUrlInvalid,
)
from services.shared.tracing import TRACEPARENT
from vss_contracts.envelope import CloudEvent
from vss_contracts.registry import decode_event
from vss_contracts.signing import PublicKeys
from vss_contracts.subjects import CASE_EVENT_SOURCE
from vss_contracts.types import ActorPrincipal

# {without_rowid}: on SQLite the key is the table itself (one B-tree, not a table and an index).
SIDE_TABLES_SQL = (
    "CREATE TABLE IF NOT EXISTS case_heads ("
    " case_id TEXT PRIMARY KEY, version BIGINT NOT NULL, hash TEXT NOT NULL,"
    " key_id TEXT, signature TEXT){without_rowid}",
    "CREATE TABLE IF NOT EXISTS idempotency_keys ("
    " key_hash TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, case_id TEXT NOT NULL,"
    " result TEXT NOT NULL, recorded_at TEXT NOT NULL){without_rowid}",
)
# Columns added since the first schema: (table, column, type), added by `vss migrate`.
ADDED_COLUMNS = (("case_heads", "key_id", "TEXT"), ("case_heads", "signature", "TEXT"))
UPSERT_HEAD = (
    "INSERT INTO case_heads (case_id, version, hash, key_id, signature) VALUES ({p}, {p}, {p}, {p}, {p})"
    " ON CONFLICT (case_id) DO UPDATE SET version = excluded.version, hash = excluded.hash,"
    " key_id = excluded.key_id, signature = excluded.signature"
)
SEAL_HEAD = (
    "UPDATE case_heads SET key_id = %s, signature = %s"
    " WHERE case_id = %s AND version = %s AND hash = %s AND signature IS NULL"
)
INSERT_IDEMPOTENCY = (
    "INSERT INTO idempotency_keys (key_hash, fingerprint, case_id, result, recorded_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p})"
)
# PostgreSQL NOTIFY channel raised by every commit of events (the relay LISTENs on it).
LOG_CHANNEL = "vss_case_log"
_PG_NOTIFY_LOG = f"NOTIFY {LOG_CHANNEL}"
R = TypeVar("R")

_SQLITE_UPSERT_HEAD, _PG_UPSERT_HEAD = UPSERT_HEAD.format(p="?"), UPSERT_HEAD.format(p="%s")
_SQLITE_INSERT_IDEMPOTENCY = INSERT_IDEMPOTENCY.format(p="?")
_PG_INSERT_IDEMPOTENCY = INSERT_IDEMPOTENCY.format(p="%s")
MIGRATION_LOCK_ID = 7_460_001  # pg_advisory_lock key for `vss migrate`


__all__ = [
    "CaseEventStore",
    "MigrationReport",
    "StoreConfig",
    "StoreNotMigrated",
    "StoreUrlInvalid",
    "migrate",
]


class StoreNotMigrated(RuntimeError):
    """The store's tables do not exist: run ``vss migrate`` first."""


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True, slots=True)
class StoreConfig(EventStoreUrl):
    """Where the case events live, from one URL (``sqlite:///path`` or ``postgresql://…``)."""

    def eventsourcing_env(
        self, *, create_table: bool = False, pool_size: int = 5, cache_size: int = 1000
    ) -> dict[str, str]:
        return {
            "CREATE_TABLE": "y" if create_table else "n",
            # An optimistic cache: a command runs on a copy of the cached case without
            # reading the store first. If another process wrote meanwhile, the insert hits
            # the (case, version) key, the copy is forgotten and the command retried on a
            # fresh load; so a stale cache can cost a retry but never a wrong decision.
            "AGGREGATE_CACHE_MAXSIZE": str(cache_size),
            "AGGREGATE_CACHE_FASTFORWARD": "n",
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
            **self.persistence_env(
                RecorderTopics(f"{__name__}:SQLiteCaseRecorder", f"{__name__}:PostgresCaseRecorder"),
                pool_size=pool_size,
            ),
        }


# ----------------------------------------------------------------------------------- mapper
class CaseEventMapper(Mapper[UUID]):
    """Case events to stored events and back, with upcasting of old payload versions."""

    def __init__(self, *, compressor: Any = None, cipher: Any = None) -> None:
        super().__init__(transcoder=JSONTranscoder(), compressor=compressor, cipher=cipher)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event = cast(CaseEvent, domain_event)
        state = canonical_bytes(event.state)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=event.type,
            state=state,
        )

    def decode_state(self, stored: StoredEvent) -> dict[str, Any]:
        return self.decode_state_bytes(stored.state)

    def decode_state_bytes(self, state: bytes) -> dict[str, Any]:
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        return cast(dict[str, Any], orjson.loads(state))

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = self.decode_state(stored_event)
        return CaseEvent(
            originator_id=_uuid(stored_event.originator_id),
            originator_version=stored_event.originator_version,
            timestamp=datetime.fromisoformat(state["recorded_at"]),
            data=decode_event(stored_event.topic, state["data"]),
            meta=EventMetadata(
                event_id=UUID(state["event_id"]),
                actor_id=state["actor_id"],
                actor_organisation=state["actor_organisation"],
                principal=ActorPrincipal(state["principal"]),
                correlation_id=state["correlation_id"],
                causation_id=state["causation_id"],
                prev_hash=state["prev_hash"],
                hash=state["hash"],
            ),
            state=state,
        )


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


LogRow = tuple[int, str, int, str, bytes]  # position, case id (str(UUID)), version, type name, state


# -------------------------------------------------------------------------------- recorders
def _idempotency_row(record: IdempotencyRecord) -> tuple[str, str, str, str, str]:
    return (
        record.key_hash,
        record.fingerprint,
        str(record.case_id),
        orjson.dumps(record.result).decode(),
        datetime.now().astimezone().isoformat(),
    )


class SQLiteCommitWriter:
    """Writes each commit on SQLite: its events, the case head and the Idempotency-Key record
    in one transaction, on a connection of its own kept for writing.

    What the library's ``insert_events`` did for a commit, without its per-call pool
    checkout, wrappers and objects, and with the statements kept prepared (the library's
    connections cache one statement, so a commit's three were parsed again each time). The
    connection is as the library's: the same file, WAL (set when the store was created), the
    same busy timeout and SQLite's default ``synchronous=FULL``, so a commit is as durable.
    One commit at a time in the process (as the pool's writer lock did); other processes
    wait on SQLite's lock.
    """

    def __init__(self, recorder: SQLiteCaseRecorder) -> None:
        pool = recorder.datastore.pool
        self.db_name = pool.db_name
        self.lock_timeout = pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT
        self.insert_event = f"INSERT INTO {recorder.events_table_name} VALUES (?,?,?,?)"
        self.on_connect: list[str] = []  # statements run on each new connection (its PRAGMAs)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None  # opened on the first commit

    def configure(self, statement: str) -> None:
        """Run ``statement`` (a PRAGMA) on the connection now and on any later one."""
        with self._lock:
            self.on_connect.append(statement)
            if self._connection is not None:
                self._connection.execute(statement)

    def setting(self, pragma: str) -> Any:
        """The connection's value of ``pragma`` (e.g. ``synchronous``)."""
        with self._lock:
            return self._connected().execute(f"PRAGMA {pragma}").fetchone()[0]

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.db_name,
                uri=True,
                check_same_thread=False,  # used by one thread at a time, under the lock
                isolation_level=None,  # transactions begun and ended explicitly
                cached_statements=16,
                timeout=self.lock_timeout,
            )
            # Durable whatever SQLite's compiled-in default: a commit is on disk when it returns
            # (an on_connect statement, the generator's, may relax it).
            connection.execute("PRAGMA synchronous=FULL")
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                connection.close()
                raise PersistenceError(f"the case store {self.db_name} is in journal mode {mode}, not WAL")
            for statement in self.on_connect:
                connection.execute(statement)
            self._connection = connection
        return self._connection

    def commit(
        self,
        stored_events: Sequence[StoredEvent],
        head: tuple[str, int, str, str | None, str | None],
        idempotency: IdempotencyRecord | None,
    ) -> list[int]:
        """The events' log positions (their rowids, in commit order).

        Raises the library's IntegrityError when a (case, version) is taken, and its other
        persistence errors as its recorders do, the transaction rolled back.
        """
        rows = [(_uuid(s.originator_id).hex, s.originator_version, s.topic, s.state) for s in stored_events]
        with self._lock:
            connection = self._connected()
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN")
                positions = []
                for row in rows:
                    cursor.execute(self.insert_event, row)
                    positions.append(cast(int, cursor.lastrowid))
                cursor.execute(_SQLITE_UPSERT_HEAD, head)
                if idempotency is not None:
                    cursor.execute(_SQLITE_INSERT_IDEMPOTENCY, _idempotency_row(idempotency))
                connection.commit()
            except sqlite3.Error as error:
                self._roll_back(connection)
                raise _persistence_error(error) from error
            except BaseException:
                self._roll_back(connection)
                raise
            return positions

    def _roll_back(self, connection: sqlite3.Connection) -> None:
        """Undo the commit's transaction; a connection left in it is closed, so that the next
        commit opens another instead of failing on a transaction still open."""
        with contextlib.suppress(sqlite3.Error):
            connection.rollback()
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.close()
            self._connection = None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _persistence_error(error: sqlite3.Error) -> PersistenceError:
    """sqlite3's error as the library's recorders raise it."""
    for sqlite_class, library_class in (
        (sqlite3.IntegrityError, IntegrityError),
        (sqlite3.OperationalError, OperationalError),
        (sqlite3.InterfaceError, InterfaceError),
        (sqlite3.DatabaseError, DatabaseError),
    ):
        if isinstance(error, sqlite_class):
            return library_class(error)
    return PersistenceError(error)


class SQLiteCaseRecorder(SQLiteRecorderSql, SQLiteApplicationRecorder):
    """The case events' table on SQLite; its commits are written by :class:`SQLiteCommitWriter`."""

    def create_side_tables(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for statement in SIDE_TABLES_SQL:
                c.execute(statement.format(without_rowid=" WITHOUT ROWID"))
            for table, column, kind in ADDED_COLUMNS:
                c.execute(f"PRAGMA table_info({table})")
                if column not in {row[1] for row in c.fetchall()}:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def case_notifications(self, case_id: UUID, after_version: int, limit: int) -> list[Notification]:
        rows = self.query(
            f"SELECT rowid AS position, topic, state, originator_version FROM {self.events_table_name}"
            " WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version LIMIT %s",
            (case_id.hex, after_version, limit),
        )
        return [
            Notification(
                id=row["position"],
                originator_id=case_id,
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
            )
            for row in rows
        ]

    def log_rows(self, after: int, limit: int) -> list[LogRow]:
        """The log after ``after`` as plain rows: the relay's hot path, without the library's objects."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor  # this transaction's own cursor
            cursor.row_factory = None  # plain tuples, not sqlite3.Row
            cursor.execute(
                "SELECT rowid, originator_id, originator_version, topic, state"
                f" FROM {self.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            rows = cursor.fetchall()
        # SQLite holds the case id as 32 hex digits: hyphenate it as str(UUID) would, without one.
        return [(p, f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", v, t, s) for p, h, v, t, s in rows]


class PostgresCaseRecorder(PostgresRecorderSql, PostgresApplicationRecorder):
    def _insert_events(
        self, curs: psycopg.Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Runs in the same transaction as the event insert, before its table lock: bound
        # the wait for the head's row lock as the library bounds the table lock's.
        curs.execute(SQL("SET LOCAL lock_timeout = '{0}s'").format(self.datastore.lock_timeout))
        head = kwargs.get("head")
        if head is not None:
            curs.execute(_PG_UPSERT_HEAD, head)  # type: ignore[arg-type]
        curs.execute(_PG_NOTIFY_LOG)  # delivered at commit: wakes the relay (LISTEN) at once
        record = kwargs.get("idempotency")
        if record is not None:
            curs.execute(_PG_INSERT_IDEMPOTENCY, _idempotency_row(record))  # type: ignore[arg-type]

    def create_side_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for statement in SIDE_TABLES_SQL:
                curs.execute(statement.format(without_rowid=""))  # type: ignore[arg-type]
            for table, column, kind in ADDED_COLUMNS:
                curs.execute(  # type: ignore[arg-type]
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}"
                )

    def case_notifications(self, case_id: UUID, after_version: int, limit: int) -> list[Notification]:
        rows = self.query(
            "SELECT notification_id AS position, topic, state, originator_version"
            f" FROM {self.events_table_name}"
            " WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version LIMIT %s",
            (case_id, after_version, limit),
        )
        return [
            Notification(
                id=row["position"],
                originator_id=case_id,
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]

    def log_rows(self, after: int, limit: int) -> list[LogRow]:
        """The log after ``after`` as plain rows: the relay's hot path, without the library's objects."""
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {schema}.{table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, (after, limit), prepare=True)
            rows = curs.fetchall()
        return [(p, str(case_id), v, t, bytes(s)) for p, case_id, v, t, s in rows]


CaseRecorder = SQLiteCaseRecorder | PostgresCaseRecorder


# --------------------------------------------------------------------------- the store
def _project(case: Case | None, events: Iterable[Any]) -> Case | None:
    """Fold events into a case (the library's default checks a runtime Protocol per event, slowly)."""
    for event in events:
        case = Case.evolve(case, event)
    return case


class CaseApplication(Application[UUID]):
    """The eventsourcing application of the case store: our mapper, our recorders."""

    name = "case"

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Configuration comes from our settings only, never from stray process variables.
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        return CaseEventMapper(compressor=self.factory.compressor(), cipher=self.factory.cipher())


class CaseEventStore:
    """Implements the application's ``CaseStore`` port with the eventsourcing library."""

    def __init__(
        self, config: StoreConfig, *, create_table: bool = False, signer: CommitSigner | None = None
    ) -> None:
        self.config = config
        # Without a signer commits are stored unsigned (tests, tools that only read); the
        # case service and `vss generate` always have one, and `vss verify` fails unsigned heads.
        self.signer = signer
        self.app = CaseApplication(env=config.eventsourcing_env(create_table=create_table))
        self.recorder = self.app.recorder
        self.repository = self.app.repository
        self.case_recorder = cast(CaseRecorder, self.app.recorder)
        self.case_mapper = cast(CaseEventMapper, self.app.mapper)
        self._cache_lock = threading.Lock()
        # SQLite: each commit wakes the relay (a datagram; PostgreSQL NOTIFYs in the transaction).
        self.bell = store_bell(config)
        # SQLite: commits on a connection of their own (PostgreSQL: the library's insert_events).
        recorder = self.case_recorder
        self.writer: SQLiteCommitWriter | None = None
        # (Not an in-memory database: a connection of its own would open another one.)
        if isinstance(recorder, SQLiteCaseRecorder) and not recorder.datastore.pool.is_sqlite_memory_mode:
            self.writer = SQLiteCommitWriter(recorder)

    def close(self) -> None:
        self.bell.close()
        if self.writer is not None:
            self.writer.close()
        self.app.close()

    # ------------------------------------------------------------------------ CaseStore port
    def load(self, case_id: UUID) -> Case:
        """A copy of the case: of the cached one, copied under the cache's lock (so never while a
        command has taken it), else read from the store, a copy of it cached."""
        cache = self.repository.cache
        if cache is not None:
            with self._cache_lock, contextlib.suppress(KeyError):
                return deepcopy(cast(Case, cache.get(case_id)))
        case = self._read(case_id)
        self._cache_if_newer(deepcopy(case))
        return case

    def take(self, case_id: UUID) -> Case:
        """The case for one command (the ``CaseStore`` port): the cached case itself, taken
        out of the cache under its lock, instead of a copy of it; else read from the store.

        While the command changes it nothing else can reach it: a load copies only what is in
        the cache, under the same lock, and :meth:`read_cached` reads only that. :meth:`save`
        caches it again, so nothing is copied per command, and a command that fails after
        changing it leaves no trace in the cache.
        """
        cache = self.repository.cache
        if cache is not None:
            with self._cache_lock, contextlib.suppress(KeyError):
                return cast(Case, cache.get(case_id, evict=True))
        return self._read(case_id)

    def _read(self, case_id: UUID) -> Case:
        """The case from its stored events, outside the cache (the store keeps no snapshots)."""
        case = _project(None, self.app.events.get(originator_id=case_id))
        if case is None:
            raise CaseNotFound(case_id)
        return case

    def put_back(self, case: Case) -> None:
        if case.pending_events:
            return  # changed by the command and not saved: never cached
        self._cache_if_newer(case)

    def load_version(self, case_id: UUID, version: int) -> Case:
        """The case as it was after its event number ``version`` (never from the cache)."""
        try:
            case: Case = self.repository.get(case_id, version=version, projector_func=_project)
            return case
        except AggregateNotFoundError:
            raise CaseNotFound(case_id) from None

    def _cache_if_newer(self, case: Case) -> None:
        # Another thread may have cached a later version meanwhile: never replace it.
        cache = self.repository.cache
        if cache is None:
            return
        with self._cache_lock:
            try:
                cached_version = cache.get(case.id).version
            except KeyError:
                cached_version = 0
            if cached_version < case.version:
                cache.put(case.id, case)

    def forget(self, case_id: UUID) -> None:
        """Drop any cached copy, so the next load reads the store."""
        cache = self.repository.cache
        if cache is not None:
            with self._cache_lock, contextlib.suppress(KeyError):
                cache.get(case_id, evict=True)

    def read_cached(self, case_id: UUID, read: Callable[[Case], R]) -> R | None:
        """``read`` of the cached case itself, under the cache's lock, so no command takes it
        meanwhile; None if not cached or the lock is busy (the caller then asks the store).
        ``read`` must not change it."""
        cache = self.repository.cache
        if cache is None:
            return None
        # Asked on an API's event loop: never wait there for a worker thread copying a case.
        if not self._cache_lock.acquire(blocking=False):
            return None
        try:
            case = cast(Case, cache.get(case_id))
        except KeyError:
            return None
        else:
            return read(case)
        finally:
            self._cache_lock.release()

    def cached(self, case_id: UUID) -> Case | None:
        """The cached case itself, for tests to compare identities (read it, never change it)."""
        cache = self.repository.cache
        if cache is None:
            return None
        with self._cache_lock:
            try:
                return cast(Case, cache.get(case_id))
            except KeyError:
                return None

    def exists(self, case_id: UUID) -> bool:
        return bool(self.recorder.select_events(case_id, limit=1))

    def save(self, case: Case, idempotency: IdempotencyRecord | None = None) -> SaveResult:
        pending = cast(list[CaseEvent], list(case.pending_events))
        last = pending[-1]
        key_id = signature = None
        if self.signer is not None:
            # Once per commit: the last event's hash chains to every event before it.
            seal = self.signer.seal(last.meta.hash)
            last.state["signature"] = seal.as_state()
            key_id, signature = seal.key_id, seal.value
        traceparent = tracing.current_traceparent()
        if traceparent is not None:  # tracing on: the relay carries the request's trace on
            for event in pending:
                event.state[TRACEPARENT] = traceparent
        head = (str(case.id), last.originator_version, last.meta.hash, key_id, signature)
        try:
            if self.writer is not None:
                stored = [self.case_mapper.to_stored_event(event) for event in pending]
                positions = self.writer.commit(stored, head, idempotency)
            else:
                # The event store directly (what Application.save does for us, minus its
                # snapshot and notify hooks that we do not use and its runtime Protocol checks).
                recordings = self.app.events.put(pending, head=head, idempotency=idempotency)
                positions = [r.notification.id for r in recordings]
        except IntegrityError as error:
            self.forget(case.id)
            raise ConcurrentWrite(str(error)) from error
        self.bell.ring()  # committed: the relay may publish it now
        case.collect_events()
        self._cache_if_newer(case)
        refs = tuple(
            StoredEventRef(
                event_id=event.meta.event_id,
                type=event.type,
                version=event.originator_version,
                position=position,
            )
            for event, position in zip(pending, positions, strict=True)
        )
        return SaveResult(
            case_id=case.id, version=last.originator_version, position=refs[-1].position, events=refs
        )

    def find_idempotency(self, key_hash: str) -> IdempotencyRecord | None:
        rows = self.case_recorder.query(
            "SELECT fingerprint, case_id, result FROM idempotency_keys WHERE key_hash = %s", (key_hash,)
        )
        if not rows:
            return None
        row = rows[0]
        return IdempotencyRecord(
            key_hash=key_hash,
            fingerprint=row["fingerprint"],
            case_id=UUID(row["case_id"]),
            result=orjson.loads(row["result"]),
        )

    def history(self, case_id: UUID, after_version: int, limit: int) -> list[HistoryEntry]:
        entries = []
        for n in self.case_recorder.case_notifications(case_id, after_version, limit):
            state = self.case_mapper.decode_state(n)
            data = decode_event(n.topic, state["data"])
            entries.append(
                HistoryEntry(
                    position=n.id,
                    version=n.originator_version,
                    type=data.TYPE,
                    event_id=UUID(state["event_id"]),
                    recorded_at=datetime.fromisoformat(state["recorded_at"]),
                    actor_id=state["actor_id"],
                    actor_organisation=state["actor_organisation"],
                    principal=state["principal"],
                    correlation_id=state["correlation_id"],
                    causation_id=state["causation_id"],
                    prev_hash=state["prev_hash"],
                    hash=state["hash"],
                    data=data.model_dump(mode="json"),
                )
            )
        return entries

    # --------------------------------------------------------------------- the global log
    def read_log(self, after: int, limit: int = 500) -> Sequence[Notification]:
        """Events with a log position greater than ``after``, in log order.

        Positions may have gaps (PostgreSQL burns ids on failed inserts): a follower
        keeps the last position it saw and asks for what is greater, never for last + 1.
        """
        return self.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def log_rows(self, after: int, limit: int = 500) -> list[LogRow]:
        """:meth:`read_log` as plain rows (the relay's fetch: no objects built, no decoding)."""
        return self.case_recorder.log_rows(after, limit)

    def published_log(self, after: int, limit: int = 500) -> list[PublishedEvent]:
        """:meth:`read_log` rendered as the relay publishes it."""
        return [self.published(row) for row in self.log_rows(after, limit)]

    def published(self, row: LogRow) -> PublishedEvent:
        """A stored event's CloudEvent JSON, built straight from its stored row.

        No model: the payload and metadata were validated when the event was stored and
        the hash chain guards the bytes since. A test holds each body equal, key for key,
        to ``cloud_event(...).model_dump_json()``.
        """
        position, case_id, version, topic, stored = row
        state = self.case_mapper.decode_state_bytes(stored)
        seal = state.get("signature")
        return published_event(
            source=CASE_EVENT_SOURCE,
            type_name=topic,
            case_id=case_id,
            version=version,
            position=position,
            state=state,
            # The commit's last event: its signature, as the envelope names it.
            extensions=None if seal is None else {"vsssig": seal["value"], "vsskeyid": seal["key_id"]},
        )

    def cloud_event(self, notification: Notification) -> CloudEvent:
        """A stored event as the public CloudEvent (what the relay publishes).

        The payload is as stored (its own version); subscribers upcast with
        ``CloudEvent.typed_data()``, so the published bytes never depend on this code's version.
        """
        state = self.case_mapper.decode_state(notification)
        seal = state.get("signature") or {}
        return CloudEvent.for_event(
            event_id=UUID(state["event_id"]),
            case_id=_uuid(notification.originator_id),
            case_version=notification.originator_version,
            time=datetime.fromisoformat(state["recorded_at"]),
            data=state["data"],
            type_name=notification.topic,
            actor_id=state["actor_id"],
            actor_org=state["actor_organisation"],
            actor_principal=ActorPrincipal(state["principal"]),
            correlation_id=state["correlation_id"],
            causation_id=state["causation_id"],
            prev_hash=state["prev_hash"],
            event_hash=state["hash"],
            log_position=notification.id,
            signature=seal.get("value"),
            key_id=seal.get("key_id"),
        )

    # ------------------------------------------------------------------------- verification
    def raw_events(self, case_id: UUID) -> Iterator[RawEvent]:
        for stored in self.recorder.select_events(case_id):
            yield RawEvent(
                case_id=case_id,
                version=stored.originator_version,
                type=stored.topic,
                state=self.case_mapper.decode_state(stored),
            )

    def head(self, case_id: UUID) -> tuple[int, str] | None:
        rows = self.case_recorder.query(
            "SELECT version, hash FROM case_heads WHERE case_id = %s", (str(case_id),)
        )
        return (int(rows[0]["version"]), rows[0]["hash"]) if rows else None

    def head_seal(self, case_id: UUID) -> CommitSeal | None:
        """The signature recorded with the case's head (None: not signed)."""
        rows = self.case_recorder.query(
            "SELECT key_id, signature FROM case_heads WHERE case_id = %s", (str(case_id),)
        )
        if not rows or rows[0]["signature"] is None:
            return None
        return CommitSeal(str(rows[0]["key_id"]), str(rows[0]["signature"]))

    def verify(self, case_id: UUID, keys: PublicKeys | None = None) -> ChainBreak | None:
        """Recompute the case's hash chain from the stored bytes; with ``keys``, check its
        signatures too (each commit's, and the head's, which must be there)."""
        return verify_chain(
            case_id,
            self.raw_events(case_id),
            self.head(case_id),
            keys=keys,
            head_seal=self.head_seal(case_id) if keys is not None else None,
        )

    def seal_unsigned_heads(self, signer: CommitSigner) -> MigrationReport:
        """Sign the head of every case stored before commits were signed (once: `vss migrate`).

        A head is signed only if its chain verifies first: signing a tampered case would
        make the forgery look genuine. Those that do not verify are reported, not sealed.
        """
        rows = self.case_recorder.query(
            "SELECT case_id, version, hash FROM case_heads WHERE signature IS NULL ORDER BY case_id"
        )
        sealed, refused = 0, []
        for row in rows:
            case_id, version, digest = UUID(row["case_id"]), int(row["version"]), str(row["hash"])
            broken = self.verify(case_id)
            if broken is not None:
                refused.append(broken)
                continue
            seal = signer.seal(digest)
            self.case_recorder.execute(SEAL_HEAD, (seal.key_id, seal.value, str(case_id), version, digest))
            sealed += 1
        return MigrationReport(sealed=sealed, not_sealed=tuple(refused))

    def case_ids(self) -> list[UUID]:
        rows = self.case_recorder.query("SELECT case_id FROM case_heads ORDER BY case_id")
        return [UUID(row["case_id"]) for row in rows]

    def ping(self) -> None:
        self.case_recorder.query("SELECT 1")

    def check_migrated(self) -> None:
        try:
            self.case_recorder.query("SELECT key_id, signature FROM case_heads LIMIT 1")
            self.recorder.max_notification_id()
        except Exception as error:
            raise StoreNotMigrated(
                f"the case store at {self.config.redacted()} has no tables: run `vss migrate` ({error})"
            ) from error


@contextmanager
def _migration_lock(config: StoreConfig) -> Iterator[None]:
    if not config.is_postgres:
        yield
        return
    with psycopg.connect(config.url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


@dataclass(frozen=True, slots=True)
class MigrationReport:
    sealed: int = 0  # heads of cases stored unsigned, signed now
    not_sealed: tuple[ChainBreak, ...] = ()  # cases whose chain does not verify: left unsigned


def migrate(config: StoreConfig, signer: CommitSigner | None = None) -> MigrationReport:
    """Create the store's tables and add new columns (idempotent; safe when several run at
    once on PostgreSQL); with ``signer``, seal the heads of cases stored unsigned."""
    if not config.is_postgres:
        Path(config.sqlite_path()).parent.mkdir(parents=True, exist_ok=True)
    with _migration_lock(config):
        store = CaseEventStore(config, create_table=True)
        try:
            store.case_recorder.create_side_tables()
            return store.seal_unsigned_heads(signer) if signer is not None else MigrationReport()
        finally:
            store.close()
