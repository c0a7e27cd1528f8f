"""A small real consumer for the bus tests: an SQLite table of applied events.

It keeps what a downstream read model keeps (one row per event, each case's last
version) and records its stream position in the same transaction, through the shared
checkpoint helper. It refuses an event that would break a case's version order, so a
test notices any reordering, and the event-id primary key would expose any double apply.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from services.shared.bus import checkpoint
from services.shared.bus.consumer import Delivery


class OutOfOrder(Exception):
    pass


class EventTable:
    def __init__(self, path: Path, consumer: str, *, fail_case: str | None = None, slow: float = 0.0) -> None:
        self.path = path
        self.consumer = consumer
        self.fail_case = fail_case
        self.slow = slow
        self.attempts: dict[str, int] = {}
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(checkpoint.CREATE_POSITIONS_TABLE)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY, case_id TEXT NOT NULL,"
            " case_version INTEGER NOT NULL, type TEXT NOT NULL, stream_sequence INTEGER NOT NULL)"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS cases (case_id TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    def applied_through(self) -> int:
        return checkpoint.position(self.conn.cursor(), self.consumer)

    def apply(self, delivery: Delivery) -> bool:
        event = delivery.event
        if event.subject == self.fail_case:
            self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
            raise RuntimeError(
                f"cannot apply {event.type} of case {event.subject} (this handler always fails)"
            )
        if self.slow:
            time.sleep(self.slow)
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if not checkpoint.advance(cur, self.consumer, delivery.stream_sequence, event.id):
                cur.execute("ROLLBACK")
                return False
            row = cur.execute("SELECT version FROM cases WHERE case_id = ?", (event.subject,)).fetchone()
            if (row[0] if row else 0) + 1 != event.caseversion:
                raise OutOfOrder(f"case {event.subject}: version {event.caseversion} after {row}")
            cur.execute(
                "INSERT INTO applied VALUES (?, ?, ?, ?, ?)",
                (event.id, event.subject, event.caseversion, event.type, delivery.stream_sequence),
            )
            cur.execute(
                "INSERT INTO cases VALUES (?, ?)"
                " ON CONFLICT (case_id) DO UPDATE SET version = excluded.version",
                (event.subject, event.caseversion),
            )
            cur.execute("COMMIT")
            return True
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        checkpoint.advance(cur, self.consumer, stream_sequence, event_id)
        cur.execute("COMMIT")

    def rows(self) -> list[tuple[str, str, int, str, int]]:
        return self.conn.execute("SELECT * FROM applied ORDER BY stream_sequence").fetchall()

    def close(self) -> None:
        self.conn.close()
