"""The sharing store: kept case events, each case's access state, what each organisation has
received, and the outbox the relay publishes to ``VSS_SHARE``.

The service keeps its own copy of every case event body (``kept_events``), so history sent to
a newly covered organisation never depends on the case stream's retention or on a second
read of it. ``share_log`` is the outbox: one row per (organisation, body), its ``position``
the order the relay publishes in. SQLite (default) or PostgreSQL with the same SQL (``?``
rewritten for psycopg); one writer at a time (a process lock, and on PostgreSQL an advisory
lock) so the outbox's positions commit in order and the relay never passes one that commits
later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.shared.bus import checkpoint
from services.shared.sql import SqlStore, SqlTx
from services.sharing.application.service import KeptEvent, ShareMessage
from services.sharing.domain.coverage import CaseAccess

_WRITER_LOCK = 0x565353_534852  # "VSSSHR": the advisory lock of the sharing store's writers


class StoreNotMigrated(RuntimeError):
    """The sharing store has no tables: run ``vss migrate``."""


def _tables(serial: str, blob: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE IF NOT EXISTS kept_events (case_id TEXT NOT NULL, version BIGINT NOT NULL,"
        f" event_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, body {blob} NOT NULL,"
        " event_hash TEXT NOT NULL, PRIMARY KEY (case_id, version))",
        # Per case: what the access rule reads, and per organisation that ever received the case its
        # last version and whether it still shares (one row: one write per event, not one per organisation).
        "CREATE TABLE IF NOT EXISTS case_state (case_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        # The outbox. A case event's row names its kept version (the body is not copied per
        # organisation); a message of the service's own (SharingEnded) carries its body.
        f"CREATE TABLE IF NOT EXISTS share_log (position {serial}, organisation TEXT NOT NULL,"
        " case_id TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
        f" type TEXT NOT NULL, version BIGINT, body {blob})",
        checkpoint.CREATE_POSITIONS_TABLE,
    )


@dataclass(frozen=True, slots=True)
class LoggedShare:
    position: int
    organisation: str
    case_id: str
    message_id: str
    name: str
    type: str
    body: bytes


class Tx(SqlTx):
    """One transaction (implements the application's ``ShareTx``)."""

    def keep(self, event: KeptEvent) -> None:
        self.execute(
            "INSERT INTO kept_events (case_id, version, event_id, type, name, body, event_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (case_id, version) DO NOTHING",
            (
                event.case_id,
                event.version,
                event.event_id,
                event.type_name,
                event.event_name,
                event.body,
                event.event_hash,
            ),
        )

    def kept(self, case_id: str, first: int, last: int) -> list[KeptEvent]:
        rows = self.tuples(
            "SELECT case_id, version, event_id, type, name, body, event_hash FROM kept_events"
            " WHERE case_id = ? AND version >= ? AND version <= ? ORDER BY version",
            (case_id, first, last),
        )
        return [KeptEvent(r[0], int(r[1]), r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]

    def case_state(self, case_id: str) -> tuple[CaseAccess, dict[str, tuple[int, bool]]]:
        rows = self.tuples("SELECT state FROM case_state WHERE case_id = ?", (case_id,))
        if not rows:
            return CaseAccess(), {}
        state = orjson.loads(rows[0][0])
        received = {org: (int(last), bool(sharing)) for org, (last, sharing) in state["received"].items()}
        return CaseAccess.from_json(state["access"]), received

    def save_case_state(
        self, case_id: str, access: CaseAccess, received: dict[str, tuple[int, bool]]
    ) -> None:
        state = {"access": access.to_json(), "received": {org: list(r) for org, r in received.items()}}
        self.execute(
            "INSERT INTO case_state (case_id, state) VALUES (?, ?)"
            " ON CONFLICT (case_id) DO UPDATE SET state = excluded.state",
            (case_id, orjson.dumps(state).decode()),
        )

    def enqueue(self, messages: Sequence[ShareMessage]) -> None:
        if not messages:
            return
        # A message id queued before (only a redo past the position check could) is not queued again.
        sql = (
            "INSERT INTO share_log (organisation, case_id, message_id, name, type, version, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING"
        )
        self.executemany(
            sql,
            [
                (m.organisation, m.case_id, m.message_id, m.event_name, m.type_name, m.version, m.body)
                for m in messages
            ],
        )
        self.appended()


class SharingStore(SqlStore[Tx]):
    def __init__(self, url: str) -> None:
        super().__init__(url, writer_lock=_WRITER_LOCK, tx=Tx)

    # ---------------------------------------------------------------------------- schema
    def migrate(self) -> None:
        self.create(_tables(self.serial, self.blob))

    def check_migrated(self) -> None:
        error = self.missing_tables("share_log", "kept_events")
        if error is not None:
            raise StoreNotMigrated(
                f"the sharing store at {self.url.redacted()} has no tables: run `vss migrate` ({error})"
            )

    # ----------------------------------------------------------------------------- reads
    def last_position(self) -> int:
        """The outbox's last position (0: empty)."""
        (row,) = self.read_tuples("SELECT COALESCE(MAX(position), 0) FROM share_log")
        return int(row[0])

    def read_log(self, after: int, limit: int) -> list[LoggedShare]:
        rows = self.read_tuples(
            "SELECT s.position, s.organisation, s.case_id, s.message_id, s.name, s.type,"
            " COALESCE(s.body, k.body) FROM share_log s"
            " LEFT JOIN kept_events k ON k.case_id = s.case_id AND k.version = s.version"
            " WHERE s.position > ? ORDER BY s.position LIMIT ?",
            (after, limit),
        )
        return [LoggedShare(int(r[0]), r[1], r[2], r[3], r[4], r[5], bytes(r[6])) for r in rows]

    def summary(self) -> dict[str, Any]:
        """For operators: organisations and cases shared, the outbox's size, the consumer's position."""
        (queued,) = self.read_tuples("SELECT COALESCE(MAX(position), 0) FROM share_log")
        (organisations,) = self.read_tuples("SELECT COUNT(DISTINCT organisation) FROM share_log")
        return {
            "organisations": int(organisations[0]),
            "log_position": int(queued[0]),
            "applied_through": self.applied_through("sharing"),
        }


def migrate(url: str) -> None:
    """Create the sharing store's tables (idempotent)."""
    with contextlib.closing(SharingStore(url)) as store:
        store.migrate()
