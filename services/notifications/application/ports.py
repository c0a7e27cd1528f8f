"""What the notifications use cases need of the store and the clock."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


class AlreadyApplied(Exception):
    """The consumer's position is at or beyond this event: a redelivery, nothing changes."""


class Clock(Protocol):
    def now(self) -> datetime: ...


def iso(value: datetime) -> str:
    """A UTC timestamp that sorts as text (the store compares them as strings)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    delivery_key: str
    case_id: str
    cause_event_id: str
    cause_event_type: str
    template: str
    person: dict[str, Any]
    channel: str
    address: str
    context: dict[str, Any]
    calendar: str | None
    calendar_method: str | None
    urgent: bool
    warning_id: str | None
    message_id: str
    created_at: str


@dataclass(frozen=True, slots=True)
class DeliveryRow(NewDelivery):
    """A stored delivery: what was decided, and how its delivery has gone so far."""

    status: str  # pending | sending (claimed) | sent | failed | cancelled
    attempts: int
    next_attempt_at: str
    last_error: str | None
    sent_at: str | None
    acknowledged_at: str | None


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """A delivery record event for the log (NotificationSent …)."""

    event_id: str
    case_id: str
    type: str
    payload: dict[str, Any]
    recorded_at: str


@dataclass(frozen=True, slots=True)
class Decisions:
    """Everything one consumed event decided, stored in one transaction with its position."""

    consumer: str
    stream_sequence: int
    event_id: str
    case_id: str
    at: str
    audience: dict[str, Any] | None  # None: unchanged (not written again)
    deliveries: Sequence[NewDelivery] = ()
    cancelled: Sequence[tuple[str, RecordEvent]] = ()  # (delivery key, its NotificationFailed)
    alert_opened: tuple[str, str, str] | None = None  # (warning id, triggered at, escalate at)
    alert_closed: tuple[str, str] | None = None  # (warning id, closed at)
    log_position: int | None = None  # a case event's position in the case log
    history: dict[str, Any] | None = None  # the case's people and consent, changed at log_position
    history_in_force: int | None = None  # a meeting event was judged by the state kept at this position


@dataclass(frozen=True, slots=True)
class AdoptedOutcome:
    """How a delivery ended, as the delivery record on the bus says (a rebuilt store takes
    it over instead of sending the message again)."""

    delivery_key: str
    status: str  # sent | failed | cancelled
    attempts: int
    last_error: str | None = None
    sent_at: str | None = None
    acknowledged_at: str | None = None


@dataclass(frozen=True, slots=True)
class AdoptedAlert:
    """What became of an early warning's alert, as the delivery record says."""

    warning_id: str
    escalated_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None  # the acknowledged delivery's key


@dataclass(frozen=True, slots=True)
class Alert:
    warning_id: str
    case_id: str
    triggered_at: str
    escalate_at: str
    acknowledged_at: str | None = None
    escalated_at: str | None = None
    closed_at: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How one attempt to deliver ended."""

    status: str  # sent | retry | failed | cancelled
    attempts: int
    at: str
    error: str | None = None
    next_attempt_at: str | None = None
    record: RecordEvent | None = None


@dataclass
class Counters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    escalated: int = 0
    decided: int = 0


class Renderer(Protocol):
    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str]:
        """(subject, plain-text body) of a template in the configured language."""
        ...


class Store(Protocol):
    lock: Any

    def transaction(self) -> AbstractContextManager[Any]:
        """The writes inside (claim, finish, record_decisions …) commit together, or none of
        them; reads inside see them. Nested, an inner one that raises undoes its own only."""
        ...

    def audience(self, case_id: str) -> dict[str, Any] | None: ...
    def audience_at(self, case_id: str, case_position: int) -> tuple[int, dict[str, Any]] | None: ...
    def record_reached(self, consumer: str) -> int | None: ...
    def record_knows(self, delivery_key: str) -> bool: ...
    def record_decisions(self, decisions: Decisions) -> None: ...
    def pending_of_case(self, case_id: str) -> list[DeliveryRow]: ...
    def due(self, now: str, limit: int, channel: str | None = None) -> list[DeliveryRow]: ...
    def claimed(self) -> list[DeliveryRow]: ...
    def claim(self, delivery_key: str) -> bool: ...
    def release(self, delivery_key: str, note: str | None = None) -> bool: ...
    def finish(self, delivery_key: str, outcome: AttemptOutcome) -> bool: ...
    def delivery(self, delivery_key: str) -> DeliveryRow | None: ...
    def deliveries_of_case(self, case_id: str) -> list[DeliveryRow]: ...
    def due_alerts(self, now: str) -> list[Alert]: ...
    def escalate(
        self, warning_id: str, at: str, deliveries: Sequence[NewDelivery], record: RecordEvent
    ) -> bool: ...
    def acknowledge(self, delivery_key: str, at: str, record: RecordEvent | None) -> bool: ...
    def applied_through(self, consumer: str) -> int: ...
    def pass_over(self, consumer: str, stream_sequence: int, event_id: str | None) -> None: ...
    def summary(self) -> dict[str, Any]: ...
