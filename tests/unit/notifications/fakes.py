"""In-memory ports of the notifications service (``services.notifications.application``).

- :class:`InMemoryNotificationStore` implements ``Store``: audiences, the delivery outbox,
  alerts, the consumers' positions and the record's log, each write all or nothing, with
  the real store's conditional status changes (a cancellation changes only a pending
  delivery, a claim only a pending one, an outcome only a claimed one). Writes inside
  ``transaction()`` commit together (an exception undoes them; nested, its own only); each
  commit's claims and outcomes are noted in ``timeline``, where a channel may note its sends.
- :class:`PlainRenderer` implements ``Renderer`` without template files.
- :class:`RecordingChannel` implements ``ChannelSender``: it keeps what it was handed, and
  fails on cue as a mail server or a webhook receiver would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from services.notifications.application.channels import (
    Channel,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from services.notifications.application.ports import (
    Alert,
    AlreadyApplied,
    AttemptOutcome,
    Decisions,
    DeliveryRow,
    NewDelivery,
    RecordEvent,
)
from tests.unit.checkpoints import Positions


@dataclass
class _Delivery:
    decided: NewDelivery
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: str = ""
    last_error: str | None = None
    sent_at: str | None = None
    acknowledged_at: str | None = None

    def row(self) -> DeliveryRow:
        return DeliveryRow(
            **asdict(self.decided),
            status=self.status,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at or self.decided.created_at,
            last_error=self.last_error,
            sent_at=self.sent_at,
            acknowledged_at=self.acknowledged_at,
        )


@dataclass
class _Alert:
    warning_id: str
    case_id: str
    triggered_at: str
    escalate_at: str
    acknowledged_at: str | None = None
    escalated_at: str | None = None
    closed_at: str | None = None


class InMemoryNotificationStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.audiences: dict[str, dict[str, Any]] = {}
        self.history: dict[str, dict[int, dict[str, Any]]] = {}  # by case, by case position
        self.outbox: dict[str, _Delivery] = {}
        self.alerts: dict[str, _Alert] = {}
        self.records: list[RecordEvent] = []  # the record's log, in order
        self.positions = Positions()
        # ("commit", (("claim", key) | ("finish", key, status), ...)) per commit that claimed or
        # settled a delivery, and what channels note (("send", key) …), in the order it happened.
        self.timeline: list[tuple[Any, ...]] = []
        self._open: list[tuple[Any, ...]] | None = None  # the open transaction's claims and outcomes

    # ----------------------------------------------------------------------- transactions
    _STATE = ("audiences", "history", "outbox", "alerts", "records", "positions")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            saved = {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}
            outer = self._open is None
            if outer:
                self._open = []
            noted = len(self._open or [])
            try:
                yield
            except BaseException:
                for name, value in saved.items():
                    setattr(self, name, value)
                if outer:
                    self._open = None
                elif self._open is not None:
                    del self._open[noted:]
                raise
            if outer:
                done, self._open = self._open or [], None
                if done:
                    self.timeline.append(("commit", tuple(done)))

    def _note(self, *change: Any) -> None:
        if self._open is not None:
            self._open.append(change)
        else:
            self.timeline.append(("commit", (change,)))

    # ------------------------------------------------------------------------------ reads
    def audience(self, case_id: str) -> dict[str, Any] | None:
        found = self.audiences.get(case_id)
        return dict(found) if found is not None else None

    def audience_at(self, case_id: str, case_position: int) -> tuple[int, dict[str, Any]] | None:
        kept = [p for p in self.history.get(case_id, {}) if p <= case_position]
        return (max(kept), dict(self.history[case_id][max(kept)])) if kept else None

    def record_reached(self, consumer: str) -> int | None:
        return None  # no delivery record adopted (tests/notifications: the SQL store)

    def record_knows(self, delivery_key: str) -> bool:
        return False

    def pending_of_case(self, case_id: str) -> list[DeliveryRow]:
        return [
            d.row() for d in self.outbox.values() if d.decided.case_id == case_id and d.status == "pending"
        ]

    def due(self, now: str, limit: int, channel: str | None = None) -> list[DeliveryRow]:
        rows = [
            d.row()
            for d in self.outbox.values()
            if d.status == "pending" and channel in (None, d.decided.channel)
        ]
        due = [r for r in rows if r.next_attempt_at <= now]
        return sorted(due, key=lambda r: (not r.urgent, r.next_attempt_at))[:limit]

    def claimed(self) -> list[DeliveryRow]:
        return [d.row() for d in self.outbox.values() if d.status == "sending"]

    def delivery(self, delivery_key: str) -> DeliveryRow | None:
        found = self.outbox.get(delivery_key)
        return found.row() if found is not None else None

    def deliveries_of_case(self, case_id: str) -> list[DeliveryRow]:
        rows = [d.row() for d in self.outbox.values() if d.decided.case_id == case_id]
        return sorted(rows, key=lambda r: (r.created_at, r.delivery_key))

    def due_alerts(self, now: str) -> list[Alert]:
        due = [
            a
            for a in self.alerts.values()
            if a.escalate_at <= now
            and a.acknowledged_at is None
            and a.escalated_at is None
            and a.closed_at is None
        ]
        return [Alert(**asdict(a)) for a in sorted(due, key=lambda a: a.escalate_at)]

    def applied_through(self, consumer: str) -> int:
        return self.positions.position(consumer)

    def summary(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for d in self.outbox.values():
            by_status[d.status] = by_status.get(d.status, 0) + 1
        open_alerts = sum(
            1 for a in self.alerts.values() if a.acknowledged_at is None and a.closed_at is None
        )
        return {
            "deliveries": by_status,
            "open_alerts": open_alerts,
            "positions": dict(self.positions.sequences),
        }

    # ----------------------------------------------------------------------------- writes
    def record_decisions(self, decisions: Decisions) -> None:
        d = decisions
        with self.lock:
            if not self.positions.advance(d.consumer, d.stream_sequence, d.event_id):
                raise AlreadyApplied(f"{d.consumer} applied sequence {d.stream_sequence} already")
            if d.audience is not None:
                self.audiences[d.case_id] = dict(d.audience)
            if d.history is not None and d.log_position is not None:
                self.history.setdefault(d.case_id, {}).setdefault(d.log_position, dict(d.history))
            if d.history_in_force is not None:
                kept = self.history.get(d.case_id, {})
                for position in [p for p in kept if p < d.history_in_force]:
                    del kept[position]
            self._insert(d.deliveries)
            for key, record in d.cancelled:
                delivery = self.outbox.get(key)
                if delivery is not None and delivery.status == "pending":
                    delivery.status, delivery.last_error = "cancelled", record.payload["reason"]
                    delivery.attempts = record.payload["attempts"]
                    self._log(record)
            if d.alert_opened is not None:
                warning_id, triggered_at, escalate_at = d.alert_opened
                self.alerts.setdefault(warning_id, _Alert(warning_id, d.case_id, triggered_at, escalate_at))
            if d.alert_closed is not None:
                alert = self.alerts.get(d.alert_closed[0])
                if alert is not None and alert.closed_at is None:
                    alert.closed_at = d.alert_closed[1]

    def claim(self, delivery_key: str) -> bool:
        with self.lock:
            claimed = self._move(delivery_key, "pending", "sending")
            if claimed:
                self._note("claim", delivery_key)
            return claimed

    def release(self, delivery_key: str, note: str | None = None) -> bool:
        released = self._move(delivery_key, "sending", "pending")
        if released and note is not None:
            self.outbox[delivery_key].last_error = note
        return released

    def finish(self, delivery_key: str, outcome: AttemptOutcome) -> bool:
        with self.lock:
            delivery = self.outbox.get(delivery_key)
            if delivery is None or delivery.status != "sending":
                return False
            delivery.attempts, delivery.last_error = outcome.attempts, outcome.error
            if outcome.status == "retry":
                delivery.status = "pending"
                delivery.next_attempt_at = outcome.next_attempt_at or delivery.next_attempt_at
            else:
                delivery.status = outcome.status
                delivery.sent_at = outcome.at if outcome.status == "sent" else None
            if outcome.record is not None:
                self._log(outcome.record)
            self._note("finish", delivery_key, outcome.status)
            return True

    def escalate(
        self, warning_id: str, at: str, deliveries: Sequence[NewDelivery], record: RecordEvent
    ) -> bool:
        with self.lock:
            alert = self.alerts.get(warning_id)
            if alert is None or alert.escalated_at or alert.acknowledged_at or alert.closed_at:
                return False
            alert.escalated_at = at
            self._insert(deliveries)
            self._log(record)
            return True

    def acknowledge(self, delivery_key: str, at: str, record: RecordEvent | None) -> bool:
        with self.lock:
            delivery = self.outbox.get(delivery_key)
            if delivery is None or delivery.acknowledged_at is not None:
                return False
            delivery.acknowledged_at = at
            warning_id = delivery.decided.warning_id
            alert = self.alerts.get(warning_id) if warning_id else None
            if alert is not None and alert.acknowledged_at is None:
                alert.acknowledged_at = at
            if record is not None:
                self._log(record)
            return True

    def pass_over(self, consumer: str, stream_sequence: int, event_id: str | None) -> None:
        with self.lock:
            self.positions.advance(consumer, stream_sequence, event_id)

    # ---------------------------------------------------------------------------- helpers
    def _insert(self, deliveries: Sequence[NewDelivery]) -> None:
        for new in deliveries:
            self.outbox.setdefault(new.delivery_key, _Delivery(new))

    def _move(self, delivery_key: str, before: str, after: str) -> bool:
        with self.lock:
            delivery = self.outbox.get(delivery_key)
            if delivery is None or delivery.status != before:
                return False
            delivery.status = after
            return True

    def _log(self, record: RecordEvent) -> None:
        if all(r.event_id != record.event_id for r in self.records):
            self.records.append(record)

    def record_types(self) -> list[str]:
        return [r.type.rsplit(".", 2)[-2] for r in self.records]


class PlainRenderer:
    """Renders every template as its name and the context's keys (no template files)."""

    def __init__(self) -> None:
        self.broken: set[str] = set()  # templates that fail to render, as an edited copy might

    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str]:
        if template in self.broken:
            raise KeyError(f"{template} names something the context lacks")
        lines = [f"{key}: {context[key]}" for key in sorted(context)]
        return f"[{context.get('case_reference')}] {template}", "\n".join(lines)


@dataclass
class RecordingChannel:
    """A channel that keeps each message it is handed; ``failures`` says how the next sends end."""

    channel: Channel
    concurrency: int = 1
    sent: list[OutgoingMessage] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def prepare(self, message: OutgoingMessage) -> None:
        pass

    async def send(self, message: OutgoingMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)

    def refuse_for_a_while(self, times: int) -> None:
        self.failures.extend(TemporaryFailure("421 try again later") for _ in range(times))

    def refuse_for_good(self) -> None:
        self.failures.append(PermanentFailure("550 no such mailbox"))
