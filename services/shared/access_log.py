"""The access log (*åtkomstlogg*): durable, append-only, kept apart from the read models.

Read models can be dropped and rebuilt; this cannot, so it has its own database. Each
record is written before the data it describes is returned, and later published to
the bus (stream ``VSS_ACCESS``) by :class:`AccessLogPublisher`, which marks what the
stream acknowledged. Records older than the retention (at least five years) are only
removed by an explicit purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import psycopg
import structlog
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from services.shared.access import AccessRecord
from services.shared.bus.streams import connect, declare_if_missing
from vss_contracts.access_events import ACCESS_EVENT_SOURCE, CaseDataAccessed, access_subject
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_MSG_ID

log = structlog.get_logger("vss.access_log")

_COLUMNS = (
    "record_id, recorded_at, user_id, organisation_id, roles, case_id, resource, outcome, reason, principal"
)


class AccessLogStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_postgres = not url.startswith("sqlite")
        self._local = threading.local()
        if not self.is_postgres:
            Path(unquote(urlsplit(url).path)).parent.mkdir(parents=True, exist_ok=True)
        self._create()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self.is_postgres and conn.closed:  # the server ended it (a restart)
            conn = None
        if conn is None:
            if self.is_postgres:
                conn = psycopg.connect(self.url, autocommit=True)
            else:
                conn = sqlite3.connect(unquote(urlsplit(self.url).path), isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # an acknowledged record survives a crash
                conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s") if self.is_postgres else query

    def _create(self) -> None:
        serial = "BIGSERIAL PRIMARY KEY" if self.is_postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        conn = self._conn()
        for statement in (
            f"CREATE TABLE IF NOT EXISTS access_log (seq {serial}, record_id TEXT NOT NULL UNIQUE,"
            " recorded_at TEXT NOT NULL, user_id TEXT NOT NULL, organisation_id TEXT NOT NULL,"
            " roles TEXT NOT NULL, case_id TEXT, resource TEXT NOT NULL, outcome TEXT NOT NULL,"
            " reason TEXT, published INTEGER NOT NULL DEFAULT 0, principal TEXT)",
            "CREATE INDEX IF NOT EXISTS access_log_case ON access_log (case_id, seq)",
            "CREATE INDEX IF NOT EXISTS access_log_user ON access_log (user_id, seq)",
            "CREATE INDEX IF NOT EXISTS access_log_unpublished ON access_log (published, seq)",
        ):
            conn.execute(statement)
        self._add_principal(conn)

    def _add_principal(self, conn: Any) -> None:
        """A log made before records named the principal gets the column; its old rows keep NULL."""
        if self.is_postgres:
            conn.execute("ALTER TABLE access_log ADD COLUMN IF NOT EXISTS principal TEXT")
            return
        columns = {row[1] for row in conn.execute("PRAGMA table_info(access_log)").fetchall()}
        if "principal" not in columns:
            try:
                conn.execute("ALTER TABLE access_log ADD COLUMN principal TEXT")
            except sqlite3.OperationalError as error:  # another process added it meanwhile
                if "duplicate column" not in str(error):
                    raise

    def record(self, records: Sequence[AccessRecord]) -> None:
        if not records:
            return
        rows = [
            (
                r.record_id,
                r.recorded_at,
                r.user_id,
                r.organisation_id,
                ",".join(r.roles),
                r.case_id,
                r.resource,
                r.outcome,
                r.reason,
                r.principal,
            )
            for r in records
        ]
        query = self._sql(f"INSERT INTO access_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        if self.is_postgres:
            for retry in (False, True):
                conn = self._conn()
                try:
                    with conn.transaction(), conn.cursor() as cursor:
                        cursor.executemany(query, rows)
                    return
                except psycopg.OperationalError:
                    # A connection the server ended (a restart) is opened again, once: the
                    # reader's request is not refused for it, and record_id being unique, a
                    # record committed before the loss cannot be stored twice.
                    if retry or not conn.closed:
                        raise
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(query, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _select(self, where: str, params: tuple[Any, ...], limit: int) -> list[tuple[int, AccessRecord]]:
        rows = self._conn().execute(
            self._sql(f"SELECT seq, {_COLUMNS} FROM access_log WHERE {where} ORDER BY seq LIMIT ?"),
            (*params, limit),
        )
        return [(int(row[0]), _record(row[1:])) for row in rows.fetchall()]

    def for_case(self, case_id: str, after: int, limit: int) -> list[tuple[int, AccessRecord]]:
        return self._select("case_id = ? AND seq > ?", (case_id, after), limit)

    def latest_for_case(self, case_id: str, limit: int) -> list[tuple[int, AccessRecord]]:
        """The case's ``limit`` latest records, newest first (a page shows these, not all)."""
        rows = self._conn().execute(
            self._sql(f"SELECT seq, {_COLUMNS} FROM access_log WHERE case_id = ? ORDER BY seq DESC LIMIT ?"),
            (case_id, limit),
        )
        return [(int(row[0]), _record(row[1:])) for row in rows.fetchall()]

    def for_user(
        self, user_id: str, organisation_id: str, after: int, limit: int
    ) -> list[tuple[int, AccessRecord]]:
        """The reads of one person: (organisation, user id), never a user id alone."""
        return self._select(
            "user_id = ? AND organisation_id = ? AND seq > ?", (user_id, organisation_id, after), limit
        )

    def unpublished(self, limit: int) -> list[tuple[int, AccessRecord]]:
        return self._select("published = 0", (), limit)

    def mark_published(self, seqs: Sequence[int]) -> None:
        self._conn().executemany(
            self._sql("UPDATE access_log SET published = 1 WHERE seq = ?"), [(s,) for s in seqs]
        )

    def purge(self, retention_days: int, now: datetime | None = None) -> int:
        """Delete records older than the retention; returns how many."""
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).isoformat()
        cursor = self._conn().execute(
            self._sql("DELETE FROM access_log WHERE recorded_at < ? AND published = 1"), (cutoff,)
        )
        return int(cursor.rowcount)

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM access_log").fetchone()[0])


def _record(row: Sequence[Any]) -> AccessRecord:
    return AccessRecord(
        record_id=row[0],
        recorded_at=row[1],
        user_id=row[2],
        organisation_id=row[3],
        roles=tuple(filter(None, str(row[4]).split(","))),
        case_id=row[5],
        resource=row[6],
        outcome=row[7],
        reason=row[8],
        principal=row[9],
    )


def published_body(record: AccessRecord) -> bytes:
    """The record as a CloudEvent (structured JSON) of type ``se.vss.access.CaseDataAccessed.v1``."""
    data = CaseDataAccessed(
        record_id=record.record_id,
        at=datetime.fromisoformat(record.recorded_at),
        user_id=record.user_id,
        organisation_id=record.organisation_id,
        roles=list(record.roles),
        case_id=record.case_id,
        read=record.resource,
        outcome=record.outcome,  # type: ignore[arg-type]
        reason=record.reason,
        principal=record.principal,
    )
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": record.record_id,
            "source": ACCESS_EVENT_SOURCE,
            "type": CaseDataAccessed.TYPE,
            "subject": record.case_id,
            "time": record.recorded_at,
            "datacontenttype": "application/json",
            "data": data.model_dump(mode="json"),
        }
    )


class AccessLogPublisher:
    """Publishes unpublished records in order; JetStream drops a repeat by its Nats-Msg-Id."""

    def __init__(
        self,
        store: AccessLogStore,
        nats_url: str,
        stream: str,
        prefix: str,
        retention_days: int,
        replicas: int = 1,
    ) -> None:
        self.store = store
        self.nats_url = nats_url
        self.stream = stream
        self.prefix = prefix
        self.retention_days = retention_days
        self.replicas = replicas
        self.published = 0
        self.wake = asyncio.Event()

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=float(self.retention_days * 86400),
            duplicate_window=120.0,
            num_replicas=self.replicas,
            description="VSS access log: every read of a case's data and every refused attempt",
        )

    async def run(self, stop: asyncio.Event) -> None:
        nc = await connect(self.nats_url, name="projections-access-log", stopping=stop.is_set)
        try:
            js = nc.jetstream()
            await declare_if_missing(js, self.stream_config())
            while not stop.is_set():
                pending = await asyncio.to_thread(self.store.unpublished, 500)
                done = []
                try:
                    for seq, record in pending:
                        await js.publish(
                            access_subject(record.case_id, record.outcome, prefix=self.prefix),
                            published_body(record),
                            headers={
                                HEADER_MSG_ID: record.record_id,
                                HEADER_EVENT_TYPE: CaseDataAccessed.TYPE,
                            },
                            timeout=5,
                        )
                        done.append(seq)
                except Exception as error:  # the bus is away: keep the records, try again
                    log.warning("access_log.publish_failed", error=str(error) or type(error).__name__)
                    await asyncio.sleep(1.0)
                if done:
                    await asyncio.to_thread(self.store.mark_published, done)
                    self.published += len(done)
                if len(pending) < 500:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                        async with asyncio.timeout(0.2):
                            await self.wake.wait()
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
