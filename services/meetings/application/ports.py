"""What the meetings use cases need from the outside world, as protocols and records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from services.meetings.domain.schedule import Decided
from vss_contracts.types import Principal

# The stored state's key (beside the hashed ones) of the case log position an event followed.
CASE_POSITION = "case_position"


def eligible_requests(pending: list[AdoptedRequest], through: int, *, unplaced: bool) -> list[AdoptedRequest]:
    """The adopted requests that may be applied now, in the order they were made: those placed
    at or before ``through`` (and, with ``unplaced``, those without a place), but within a case
    never one after an earlier request of it that must still wait."""
    waiting: set[UUID] = set()
    found = []
    for request in sorted(pending, key=lambda r: r.sequence):
        if request.case_id in waiting:
            continue
        placed = request.case_position
        if (placed is None and unplaced) or (placed is not None and placed <= through):
            found.append(request)
        else:
            waiting.add(request.case_id)
    return found


class AlreadyApplied(Exception):
    """The case event's stream sequence is recorded already (a redelivery): nothing changed."""


class ConcurrentWrite(Exception):
    """Another writer changed the schedule meanwhile: load it again and retry."""


@dataclass(frozen=True, slots=True)
class ScheduleWrite:
    """Everything one transaction records besides the events."""

    case_id: str
    revision: int  # the snapshot's, after this write
    expected_revision: int  # the snapshot's the writer loaded (0: none yet)
    snapshot: bytes
    next_due: str | None  # UTC, sortable text (see ``utc_key``)
    coordinators: tuple[str, ...] | None  # the case's coordinators; None: unchanged
    position: tuple[int, str | None] | None = None  # (case stream sequence, case event id)
    log_position: int | None = None  # the case event's position in the case store's log
    adopted_request: int | None = None  # an adopted request applied by this write (its sequence)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The consumer position a batch of case events moves to: its last event's."""

    stream_sequence: int
    event_id: str | None
    log_position: int | None = None


@dataclass(frozen=True, slots=True)
class ScheduleHead:
    """What a stored schedule says without loading it: its revision and next timer (UTC key)."""

    revision: int
    next_due: str | None


@dataclass(frozen=True, slots=True)
class AdoptedRequest:
    """A coordinator's request an empty store took over from the meetings stream, to apply
    again in its place in history (see ``MeetingsService._apply_adopted_requests``)."""

    sequence: int  # its stream sequence on the meetings stream: the order requests were made in
    case_id: UUID
    case_position: int | None  # the case log position it followed; None: not known (older event)
    recorded_at: datetime
    principal: Principal
    decided: Decided


class ScheduleStore(Protocol):
    lock: Any  # a re-entrant lock: one writer at a time in this process

    def write(self, states: Sequence[tuple[int, str, dict[str, Any]]], side: ScheduleWrite) -> list[int]: ...

    def write_batch(
        self,
        writes: Sequence[tuple[Sequence[tuple[int, str, dict[str, Any]]], ScheduleWrite]],
        position: Checkpoint | None = None,
    ) -> list[int]:
        """Several schedules' writes and the consumer position, in one transaction."""
        ...

    def snapshot(self, case_id: UUID) -> dict[str, Any] | None: ...

    def heads(self, case_ids: Sequence[str]) -> dict[str, ScheduleHead]: ...

    def due(self, now_utc_key: str, limit: int) -> list[UUID]: ...

    def cases_of_coordinator(self, user_id: str) -> list[UUID]: ...

    def applied_through(self) -> int: ...

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None: ...

    def applied_log_position(self) -> int: ...

    def adopted_requests(self, through: int, *, unplaced: bool = False) -> list[AdoptedRequest]:
        """Adopted requests not applied yet, in order: those that followed a case log position
        up to ``through`` (and, with ``unplaced``, those published without one)."""
        ...

    def has_adopted_requests(self) -> bool:
        """Whether adopted requests still wait to be applied (a rebuild is replaying)."""
        ...

    def drop_adopted_request(self, sequence: int) -> None:
        """Forget an adopted request that cannot be applied again (it was logged)."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


def utc_key(moment: datetime | None) -> str | None:
    """A sortable UTC text for a timer's due time (compares the same on SQLite and PostgreSQL)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
