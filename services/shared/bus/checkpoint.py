"""A consumer's position, stored with the service's own state in one transaction.

Every downstream service keeps, beside its tables, the last stream sequence (and event
id) it applied. Writing it in the same transaction as the state change is what makes
delivery effectively exactly once: a redelivered message finds its sequence already
recorded, the transaction is rolled back, and the message is acknowledged and skipped.
Works on a DB-API cursor of sqlite3 or psycopg (``placeholder`` ``?`` or ``%s``).

A consumer may also keep the source log position of the last event it applied (the
relay's ``Vss-Log-Position`` header): what an API's ``?position=`` waits for. The column
came later; a store gains it in its migration (:func:`add_log_position`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

CREATE_POSITIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS consumer_positions ("
    " consumer TEXT PRIMARY KEY,"
    " stream_sequence BIGINT NOT NULL,"
    " event_id TEXT,"
    " applied_at TEXT NOT NULL,"
    " log_position BIGINT)"
)


def add_log_position(cursor: Cursor, *, postgres: bool) -> None:
    """Add the ``log_position`` column to a store made before it existed (idempotent)."""
    if postgres:
        cursor.execute("ALTER TABLE consumer_positions ADD COLUMN IF NOT EXISTS log_position BIGINT")
        return
    cursor.execute("PRAGMA table_info(consumer_positions)")
    if "log_position" not in {row[1] for row in cursor.fetchall()}:
        cursor.execute("ALTER TABLE consumer_positions ADD COLUMN log_position BIGINT")


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


def advance(
    cursor: Cursor,
    consumer: str,
    stream_sequence: int,
    event_id: str | None,
    *,
    p: str = "?",
    log_position: int | None = None,
) -> bool:
    """Move ``consumer`` to ``stream_sequence`` in the caller's transaction.

    False if it is already there or beyond (a redelivery): the caller rolls back. With a
    ``log_position`` the consumer's log position moves too (never back); without one it
    stays (a store without the column never names it).
    """
    params: tuple[Any, ...] = (consumer, stream_sequence, event_id, datetime.now(UTC).isoformat())
    columns, values, also = "", "", ""
    if log_position is not None:
        columns, values = ", log_position", f", {p}"
        also = (
            ", log_position = CASE WHEN consumer_positions.log_position IS NULL"
            " OR consumer_positions.log_position < excluded.log_position"
            " THEN excluded.log_position ELSE consumer_positions.log_position END"
        )
        params = (*params, log_position)
    cursor.execute(
        f"INSERT INTO consumer_positions (consumer, stream_sequence, event_id, applied_at{columns})"
        f" VALUES ({p}, {p}, {p}, {p}{values})"
        " ON CONFLICT (consumer) DO UPDATE SET stream_sequence = excluded.stream_sequence,"
        f" event_id = excluded.event_id, applied_at = excluded.applied_at{also}"
        " WHERE consumer_positions.stream_sequence < excluded.stream_sequence"
        " RETURNING stream_sequence",
        params,
    )
    # A returned row, not rowcount: in psycopg's pipeline mode (eventsourcing's PostgreSQL
    # recorder writes in one) rowcount is -1 until the pipeline syncs; fetching syncs it.
    return cursor.fetchone() is not None


def position(cursor: Cursor, consumer: str, *, p: str = "?") -> int:
    """The last stream sequence ``consumer`` applied (0: none)."""
    cursor.execute(f"SELECT stream_sequence FROM consumer_positions WHERE consumer = {p}", (consumer,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0
