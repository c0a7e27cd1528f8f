"""The notifications store: audiences, the delivery outbox, alerts and the record's log.

One transaction (:meth:`NotificationStore.transaction`) holds a consumer's position, the
case's audience and the deliveries decided for the event: a redelivered event finds its
sequence applied and changes nothing, and a crash loses no decision. The sender later
marks a delivery sent or failed and appends the matching record event
(NotificationSent …) to ``notification_log`` in one transaction; the relay publishes
that log to ``VSS_NOTIFICATIONS`` in order.

A delivery's status: ``pending`` -> ``sending`` (claimed by the sender, just before it is
handed to its channel) -> ``sent`` / ``failed`` / ``cancelled``, or back to ``pending``
for a retry. Each step is a conditional UPDATE whose row count decides: a cancellation
changes only a pending row, so it and the claim cannot both win, and what the record
says matches what left the system. A claim left by a process that died is released (or
cancelled) when the sender starts again (:meth:`NotificationStore.claimed`).

SQLite (default) or PostgreSQL, with the same SQL (``?`` placeholders, rewritten for
psycopg). One process writes (the notifications service); its lock serialises writers,
so the log's positions are in commit order on PostgreSQL too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from services.notifications.application.ports import (
    AdoptedAlert,
    AdoptedOutcome,
    Alert,
    AlreadyApplied,
    AttemptOutcome,
    Decisions,
    DeliveryRow,
    NewDelivery,
    RecordEvent,
)
from services.shared.bus import checkpoint
from services.shared.bus.outbox import LoggedEvent
from services.shared.sql import DatabaseErrors, SqlStore, SqlTx
from vss_contracts.chain import GENESIS_HASH, chain_hash
from vss_contracts.types import Principal

SERVICE_ACTOR = "vss-notifications"
SERVICE_ORGANISATION = "vss"


_WRITER_LOCK = 0x565353_4E4F54  # "VSSNOT": the advisory lock of the notifications store's writers


class StoreNotMigrated(RuntimeError):
    """The notifications store has no tables: run ``vss migrate``."""


def _tables(serial: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE IF NOT EXISTS audiences ("
        " case_id TEXT PRIMARY KEY, snapshot TEXT NOT NULL, updated_at TEXT NOT NULL)",
        # The case's people and consent as they stood after the case event at each case log
        # position where they changed: a meeting event is judged as of the case position it
        # followed (live and replay alike). Rows no later meeting event can need are pruned.
        "CREATE TABLE IF NOT EXISTS audience_history ("
        " case_id TEXT NOT NULL, case_position BIGINT NOT NULL, snapshot TEXT NOT NULL,"
        " PRIMARY KEY (case_id, case_position))",
        "CREATE TABLE IF NOT EXISTS deliveries ("
        " delivery_key TEXT PRIMARY KEY, case_id TEXT NOT NULL,"
        " cause_event_id TEXT NOT NULL, cause_event_type TEXT NOT NULL, template TEXT NOT NULL,"
        " person TEXT NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL,"
        " context TEXT NOT NULL, calendar TEXT, calendar_method TEXT, urgent INTEGER NOT NULL,"
        " warning_id TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at TEXT NOT NULL, last_error TEXT, message_id TEXT NOT NULL,"
        " created_at TEXT NOT NULL, sent_at TEXT, acknowledged_at TEXT)",
        "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at)",
        "CREATE INDEX IF NOT EXISTS deliveries_case ON deliveries (case_id, created_at)",
        "CREATE INDEX IF NOT EXISTS deliveries_warning ON deliveries (warning_id)",
        "CREATE TABLE IF NOT EXISTS alerts ("
        " warning_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, triggered_at TEXT NOT NULL,"
        " escalate_at TEXT NOT NULL, acknowledged_at TEXT, acknowledged_by TEXT,"
        " escalated_at TEXT, closed_at TEXT)",
        "CREATE INDEX IF NOT EXISTS alerts_due ON alerts (escalate_at)",
        f"CREATE TABLE IF NOT EXISTS notification_log (position {serial}, event_id TEXT NOT NULL UNIQUE,"
        " case_id TEXT NOT NULL, version BIGINT NOT NULL, type TEXT NOT NULL, state TEXT NOT NULL,"
        " UNIQUE (case_id, version))",
        # A store rebuilt from history takes over what the delivery record on the bus says
        # became of each delivery and alert (see NotificationStore.adopt_record).
        "CREATE TABLE IF NOT EXISTS adopted_outcomes (delivery_key TEXT PRIMARY KEY,"
        " status TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, sent_at TEXT,"
        " acknowledged_at TEXT)",
        "CREATE TABLE IF NOT EXISTS adopted_alerts (warning_id TEXT PRIMARY KEY,"
        " escalated_at TEXT, acknowledged_at TEXT, acknowledged_by TEXT)",
        # How far the adopted record's history went: per consumer, the last log position of
        # its stream whose event the record's deliveries were decided for.
        "CREATE TABLE IF NOT EXISTS adopted_positions (consumer TEXT PRIMARY KEY,"
        " log_position BIGINT NOT NULL)",
        checkpoint.CREATE_POSITIONS_TABLE,
    )


@dataclass(frozen=True, slots=True)
class _Adoption:
    """What the store took over from the delivery record (empty if it adopted none)."""

    outcomes: dict[str, AdoptedOutcome]
    alerts: dict[str, AdoptedAlert]
    reached: dict[str, int]


class Tx(SqlTx):
    """One transaction: the service's statements besides the shared ones."""

    def log(self, event_id: str, case_id: str, type_name: str, payload: dict[str, Any], at: str) -> None:
        """Append a record event to the case's chain (an id stored already adds nothing)."""
        if self.rows("SELECT 1 AS x FROM notification_log WHERE event_id = ?", (event_id,)):
            return
        last = self.rows(
            "SELECT version, state FROM notification_log WHERE case_id = ? ORDER BY version DESC LIMIT 1",
            (case_id,),
        )
        version = int(last[0]["version"]) + 1 if last else 1
        state: dict[str, Any] = {
            "event_id": event_id,
            "recorded_at": datetime.fromisoformat(at).isoformat(),
            "actor_id": SERVICE_ACTOR,
            "actor_organisation": SERVICE_ORGANISATION,
            "principal": Principal.OTHER.value,
            "correlation_id": payload.get("cause_event_id") or event_id,
            "causation_id": payload.get("cause_event_id"),
            "prev_hash": orjson.loads(last[0]["state"])["hash"] if last else GENESIS_HASH,
            "data": payload,
        }
        state["hash"] = chain_hash(case_id, version, type_name, state)
        self.execute(
            "INSERT INTO notification_log (event_id, case_id, version, type, state) VALUES (?, ?, ?, ?, ?)",
            (event_id, case_id, version, type_name, orjson.dumps(state).decode()),
        )
        self.appended()


class NotificationStore(SqlStore[Tx]):
    def __init__(self, url: str) -> None:
        super().__init__(url, writer_lock=_WRITER_LOCK, tx=Tx)
        # Written only by adopt_record, before anything is decided: read once, then kept.
        self._adopted: _Adoption | None = None

    # ---------------------------------------------------------------------------- schema
    def migrate(self) -> None:
        self.create(_tables(self.serial))
        with self.transaction() as tx:  # a store made before the case log position was kept
            checkpoint.add_log_position(tx.cursor, postgres=self.postgres)

    def check_migrated(self) -> None:
        error = self.missing_tables(
            "deliveries", "notification_log", "audience_history", "adopted_outcomes", "adopted_positions"
        )
        if error is None:
            try:
                self.read("SELECT log_position FROM consumer_positions LIMIT 1")
            except DatabaseErrors as missing:
                self.close()
                error = str(missing)
        if error is not None:
            raise StoreNotMigrated(
                f"the notifications store at {self.url.redacted()} has no tables: run `vss migrate` ({error})"
            )

    # ----------------------------------------------------------------------------- reads
    def audience(self, case_id: str) -> dict[str, Any] | None:
        rows = self.read("SELECT snapshot FROM audiences WHERE case_id = ?", (case_id,))
        return dict(orjson.loads(rows[0]["snapshot"])) if rows else None

    def audience_at(self, case_id: str, case_position: int) -> tuple[int, dict[str, Any]] | None:
        """The case's people and consent as of ``case_position`` (the latest change at or
        before it, with its position); None if none is kept."""
        rows = self.read(
            "SELECT case_position, snapshot FROM audience_history WHERE case_id = ? AND case_position <= ?"
            " ORDER BY case_position DESC LIMIT 1",
            (case_id, case_position),
        )
        return (int(rows[0]["case_position"]), dict(orjson.loads(rows[0]["snapshot"]))) if rows else None

    def pending_of_case(self, case_id: str) -> list[DeliveryRow]:
        return self._deliveries("WHERE case_id = ? AND status = 'pending'", (case_id,))

    def deliveries_of_case(self, case_id: str) -> list[DeliveryRow]:
        return self._deliveries("WHERE case_id = ? ORDER BY created_at, delivery_key", (case_id,))

    def delivery(self, delivery_key: str) -> DeliveryRow | None:
        found = self._deliveries("WHERE delivery_key = ?", (delivery_key,))
        return found[0] if found else None

    def due(self, now: str, limit: int, channel: str | None = None) -> list[DeliveryRow]:
        """Pending deliveries whose time has come (of one channel, if given): urgent ones first."""
        where, params = ("", [now, limit]) if channel is None else (" AND channel = ?", [now, channel, limit])
        return self._deliveries(
            f"WHERE status = 'pending' AND next_attempt_at <= ?{where}"
            " ORDER BY urgent DESC, next_attempt_at LIMIT ?",
            params,
        )

    def claimed(self) -> list[DeliveryRow]:
        """Deliveries claimed for sending and not settled: at start, those a dead process left."""
        return self._deliveries("WHERE status = 'sending' ORDER BY urgent DESC, next_attempt_at", ())

    def _deliveries(self, where: str, params: Sequence[Any]) -> list[DeliveryRow]:
        rows = self.read(f"SELECT * FROM deliveries {where}", params)
        return [
            DeliveryRow(
                **{
                    **row,
                    "person": orjson.loads(row["person"]),
                    "context": orjson.loads(row["context"]),
                    "urgent": bool(row["urgent"]),
                }
            )
            for row in rows
        ]

    def summary(self) -> dict[str, Any]:
        """For operators: deliveries by status, open urgent alerts, the consumers' positions."""
        by_status = {
            str(r["status"]): int(r["n"])
            for r in self.read("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
        }
        alerts = self.read(
            "SELECT COUNT(*) AS n FROM alerts WHERE acknowledged_at IS NULL AND closed_at IS NULL"
        )
        positions = {
            str(r["consumer"]): int(r["stream_sequence"])
            for r in self.read("SELECT consumer, stream_sequence FROM consumer_positions")
        }
        return {"deliveries": by_status, "open_alerts": int(alerts[0]["n"]), "positions": positions}

    def due_alerts(self, now: str) -> list[Alert]:
        rows = self.read(
            "SELECT * FROM alerts WHERE escalate_at <= ? AND acknowledged_at IS NULL"
            " AND escalated_at IS NULL AND closed_at IS NULL ORDER BY escalate_at",
            (now,),
        )
        return [Alert(**{k: v for k, v in row.items() if k != "acknowledged_by"}) for row in rows]

    # ---------------------------------------------------------------------------- writes
    def record_decisions(self, decisions: Decisions) -> None:
        """A consumed event's decisions and the consumer's position, in one transaction."""
        d = decisions
        with self.transaction() as tx:
            if not tx.advance(d.consumer, d.stream_sequence, d.event_id, log_position=d.log_position):
                raise AlreadyApplied(f"{d.consumer} applied sequence {d.stream_sequence} already")
            if d.audience is not None:
                tx.execute(
                    "INSERT INTO audiences (case_id, snapshot, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (case_id) DO UPDATE SET snapshot = excluded.snapshot,"
                    " updated_at = excluded.updated_at",
                    (d.case_id, orjson.dumps(d.audience).decode(), d.at),
                )
            if d.history is not None and d.log_position is not None:
                tx.execute(
                    "INSERT INTO audience_history (case_id, case_position, snapshot) VALUES (?, ?, ?)"
                    " ON CONFLICT (case_id, case_position) DO NOTHING",
                    (d.case_id, d.log_position, orjson.dumps(d.history).decode()),
                )
            if d.history_in_force is not None:
                # Meeting events follow the case log in order: older states are needed no more.
                tx.execute(
                    "DELETE FROM audience_history WHERE case_id = ? AND case_position < ?",
                    (d.case_id, d.history_in_force),
                )
            _insert_deliveries(tx, d.deliveries, self._adopted_outcomes())
            for key, record in d.cancelled:
                if tx.execute(  # the row says what its record says
                    "UPDATE deliveries SET status = 'cancelled', last_error = ?, attempts = ?"
                    " WHERE delivery_key = ? AND status = 'pending'",
                    (record.payload["reason"], record.payload["attempts"], key),
                ):
                    tx.log(record.event_id, record.case_id, record.type, record.payload, record.recorded_at)
            if d.alert_opened is not None:
                warning_id, triggered_at, escalate_at = d.alert_opened
                # An acknowledgement the record holds is taken over. An escalation is not: a
                # rebuilt store escalates again when due, deciding the same delivery keys, so
                # those already settled stay settled and those not yet sent are sent.
                adopted = self._adopted_alerts().get(warning_id, AdoptedAlert(warning_id))
                tx.execute(
                    "INSERT INTO alerts (warning_id, case_id, triggered_at, escalate_at,"
                    " acknowledged_at, acknowledged_by) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (warning_id) DO NOTHING",
                    (
                        warning_id,
                        d.case_id,
                        triggered_at,
                        escalate_at,
                        adopted.acknowledged_at,
                        adopted.acknowledged_by,
                    ),
                )
            if d.alert_closed is not None:
                tx.execute(
                    "UPDATE alerts SET closed_at = ? WHERE warning_id = ? AND closed_at IS NULL",
                    (d.alert_closed[1], d.alert_closed[0]),
                )

    def claim(self, delivery_key: str) -> bool:
        """Take a pending delivery for sending; False if it is not pending (a cancellation won)."""
        with self.transaction() as tx:
            return bool(
                tx.execute(
                    "UPDATE deliveries SET status = 'sending' WHERE delivery_key = ? AND status = 'pending'",
                    (delivery_key,),
                )
            )

    def release(self, delivery_key: str, note: str | None = None) -> bool:
        """Give a claimed delivery back (a claim a dead sender left: sent again), with ``note``
        as its last error if given (what a later cancellation must still say)."""
        with self.transaction() as tx:
            return bool(
                tx.execute(
                    "UPDATE deliveries SET status = 'pending', last_error = COALESCE(?, last_error)"
                    " WHERE delivery_key = ? AND status = 'sending'",
                    (note, delivery_key),
                )
            )

    def finish(self, delivery_key: str, outcome: AttemptOutcome) -> bool:
        """Record the end of an attempt on a claimed delivery; False if it is not claimed."""
        o = outcome
        with self.transaction() as tx:
            if o.status == "retry":
                changed = tx.execute(
                    "UPDATE deliveries SET status = 'pending', attempts = ?, next_attempt_at = ?,"
                    " last_error = ? WHERE delivery_key = ? AND status = 'sending'",
                    (o.attempts, o.next_attempt_at, o.error, delivery_key),
                )
            else:
                changed = tx.execute(
                    "UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, sent_at = ?"
                    " WHERE delivery_key = ? AND status = 'sending'",
                    (o.status, o.attempts, o.error, o.at if o.status == "sent" else None, delivery_key),
                )
            if changed and o.record is not None:
                r = o.record
                tx.log(r.event_id, r.case_id, r.type, r.payload, r.recorded_at)
            return bool(changed)

    def escalate(
        self, warning_id: str, at: str, deliveries: Sequence[NewDelivery], record: RecordEvent
    ) -> bool:
        with self.transaction() as tx:
            if not tx.execute(
                "UPDATE alerts SET escalated_at = ? WHERE warning_id = ? AND escalated_at IS NULL"
                " AND acknowledged_at IS NULL AND closed_at IS NULL",
                (at, warning_id),
            ):
                return False
            _insert_deliveries(tx, deliveries, self._adopted_outcomes())
            tx.log(record.event_id, record.case_id, record.type, record.payload, record.recorded_at)
            return True

    def acknowledge(self, delivery_key: str, at: str, record: RecordEvent | None) -> bool:
        """The first acknowledgement of a delivery counts; False for a repeated one."""
        with self.transaction() as tx:
            if not tx.execute(
                "UPDATE deliveries SET acknowledged_at = ?"
                " WHERE delivery_key = ? AND acknowledged_at IS NULL",
                (at, delivery_key),
            ):
                return False
            rows = tx.rows("SELECT warning_id FROM deliveries WHERE delivery_key = ?", (delivery_key,))
            if rows and rows[0]["warning_id"]:
                tx.execute(
                    "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?"
                    " WHERE warning_id = ? AND acknowledged_at IS NULL",
                    (at, delivery_key, rows[0]["warning_id"]),
                )
            if record is not None:
                tx.log(record.event_id, record.case_id, record.type, record.payload, record.recorded_at)
            return True

    # --------------------------------------------------------------- rebuilt from history
    def is_empty(self) -> bool:
        """Nothing decided, recorded or consumed yet (a new store, or one moved away)."""
        return not any(
            self.read(f"SELECT 1 AS x FROM {table} LIMIT 1")
            for table in ("consumer_positions", "deliveries", "notification_log", "adopted_outcomes")
        )

    def adopt_record(
        self,
        events: Sequence[LoggedEvent],
        outcomes: Sequence[AdoptedOutcome],
        alerts: Sequence[AdoptedAlert],
        reached: Mapping[str, int] | None = None,
    ) -> None:
        """Before an empty store replays history: take over the delivery record on the bus.

        Its events go into the log at their positions (so the relay publishes nothing of
        them again and each case's record chain continues from its last event), and what
        they say became of each delivery and alert is applied when the replay decides it
        again (:func:`_insert_deliveries`): nothing already sent, failed or withdrawn is
        sent again, and an alert acknowledged is not escalated (one escalated is escalated
        again with the same delivery keys, so only what had not gone yet goes). ``reached``:
        per consumer, the last log position of its stream that the record's deliveries were
        decided for (:meth:`record_reached`). One transaction: an adoption cut short leaves
        the store empty, to adopt again.
        """
        if not self.is_empty():
            raise RuntimeError("only an empty notifications store adopts the delivery record")
        with self.transaction() as tx:
            tx.executemany(
                "INSERT INTO notification_log (position, event_id, case_id, version, type, state)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (e.position, e.event_id, e.case_id, e.version, e.type, orjson.dumps(e.state).decode())
                    for e in events
                ],
            )
            if self.postgres and events:  # new records continue after the adopted ones
                tx.execute(
                    "SELECT setval(pg_get_serial_sequence('notification_log', 'position'),"
                    " (SELECT MAX(position) FROM notification_log))"
                )
            tx.executemany(
                "INSERT INTO adopted_outcomes (delivery_key, status, attempts, last_error, sent_at,"
                " acknowledged_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (o.delivery_key, o.status, o.attempts, o.last_error, o.sent_at, o.acknowledged_at)
                    for o in outcomes
                ],
            )
            tx.executemany(
                "INSERT INTO adopted_alerts (warning_id, escalated_at, acknowledged_at, acknowledged_by)"
                " VALUES (?, ?, ?, ?)",
                [(a.warning_id, a.escalated_at, a.acknowledged_at, a.acknowledged_by) for a in alerts],
            )
            tx.executemany(
                "INSERT INTO adopted_positions (consumer, log_position) VALUES (?, ?)",
                sorted((reached or {}).items()),
            )
        self._adopted = None

    def record_reached(self, consumer: str) -> int | None:
        """The last log position of ``consumer``'s stream whose event the adopted record's
        deliveries were decided for; None if no record was adopted (or none of its
        deliveries came from that stream). The old store had decided every event up to it."""
        return self._adoption().reached.get(consumer)

    def record_knows(self, delivery_key: str) -> bool:
        """Whether the adopted record says what became of this delivery."""
        return delivery_key in self._adoption().outcomes

    def _adopted_outcomes(self) -> dict[str, AdoptedOutcome]:
        return self._adoption().outcomes

    def _adopted_alerts(self) -> dict[str, AdoptedAlert]:
        return self._adoption().alerts

    def _adoption(self) -> _Adoption:
        if self._adopted is None:
            outcomes = {
                str(r["delivery_key"]): AdoptedOutcome(**r)
                for r in self.read("SELECT * FROM adopted_outcomes")
            }
            alerts = {
                str(r["warning_id"]): AdoptedAlert(**r) for r in self.read("SELECT * FROM adopted_alerts")
            }
            reached = {
                str(r["consumer"]): int(r["log_position"])
                for r in self.read("SELECT consumer, log_position FROM adopted_positions")
            }
            self._adopted = _Adoption(outcomes, alerts, reached)
        return self._adopted

    def read_log(self, after: int, limit: int) -> list[LoggedEvent]:
        rows = self.read(
            "SELECT position, case_id, version, type, state FROM notification_log"
            " WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [LoggedEvent(**{**row, "state": orjson.loads(row["state"])}) for row in rows]


_DELIVERY_COLUMNS = (
    "delivery_key, case_id, cause_event_id, cause_event_type, template, person, channel, address,"
    " context, calendar, calendar_method, urgent, warning_id, status, attempts, next_attempt_at,"
    " message_id, created_at"
)


def _insert_deliveries(tx: Tx, deliveries: Sequence[NewDelivery], adopted: dict[str, AdoptedOutcome]) -> None:
    for d in deliveries:
        # A key decided before (a replay that got past the position check) is not added again.
        tx.execute(
            f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
            " ON CONFLICT (delivery_key) DO NOTHING",
            (
                d.delivery_key,
                d.case_id,
                d.cause_event_id,
                d.cause_event_type,
                d.template,
                orjson.dumps(d.person).decode(),
                d.channel,
                d.address,
                orjson.dumps(d.context).decode(),
                d.calendar,
                d.calendar_method,
                int(d.urgent),
                d.warning_id,
                d.created_at,
                d.message_id,
                d.created_at,
            ),
        )
        outcome = adopted.get(d.delivery_key)
        if outcome is not None:  # already sent, failed or withdrawn: as the record says, not again
            tx.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, sent_at = ?,"
                " acknowledged_at = ? WHERE delivery_key = ? AND status = 'pending'",
                (
                    outcome.status,
                    outcome.attempts,
                    outcome.last_error,
                    outcome.sent_at,
                    outcome.acknowledged_at,
                    d.delivery_key,
                ),
            )


def migrate(url: str) -> None:
    """Create the notifications store's tables (idempotent)."""
    with contextlib.closing(NotificationStore(url)) as store:
        store.migrate()
