"""A consumer's position, stored with the service's own state in one transaction.

Every downstream service keeps, beside its tables, the last stream sequence (and event
id) it applied. Writing it in the same transaction as the state change is what makes
delivery effectively exactly once: a redelivered message finds its sequence already
recorded, the transaction is rolled back, and the message is acknowledged and skipped.
Works on a DB-API cursor of sqlite3 or psycopg (``placeholder`` ``?`` or ``%s``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

CREATE_POSITIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS consumer_positions ("
    " consumer TEXT PRIMARY KEY,"
    " stream_sequence BIGINT NOT NULL,"
    " event_id TEXT,"
    " applied_at TEXT NOT NULL)"
)


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...


def advance(
    cursor: Cursor, consumer: str, stream_sequence: int, event_id: str | None, *, p: str = "?"
) -> bool:
    """Move ``consumer`` to ``stream_sequence`` in the caller's transaction.

    False if it is already there or beyond (a redelivery): the caller rolls back.
    """
    cursor.execute(
        "INSERT INTO consumer_positions (consumer, stream_sequence, event_id, applied_at)"
        f" VALUES ({p}, {p}, {p}, {p})"
        " ON CONFLICT (consumer) DO UPDATE SET stream_sequence = excluded.stream_sequence,"
        " event_id = excluded.event_id, applied_at = excluded.applied_at"
        " WHERE consumer_positions.stream_sequence < excluded.stream_sequence"
        " RETURNING stream_sequence",
        (consumer, stream_sequence, event_id, datetime.now(UTC).isoformat()),
    )
    # A returned row, not rowcount: in psycopg's pipeline mode (eventsourcing's PostgreSQL
    # recorder writes in one) rowcount is -1 until the pipeline syncs; fetching syncs it.
    return cursor.fetchone() is not None


def position(cursor: Cursor, consumer: str, *, p: str = "?") -> int:
    """The last stream sequence ``consumer`` applied (0: none)."""
    cursor.execute(f"SELECT stream_sequence FROM consumer_positions WHERE consumer = {p}", (consumer,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0
