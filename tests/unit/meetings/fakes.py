"""An in-memory ``ScheduleStore`` (``services.meetings.application.ports``).

One write is all or nothing, as the real store's transaction: the consumer's position
(a redelivered case event raises ``AlreadyApplied``), the snapshot's revision (a writer
that loaded an older one raises ``ConcurrentWrite``), the case's meeting events and the
coordinators' rows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from services.meetings.application.ports import (
    AdoptedRequest,
    AlreadyApplied,
    Checkpoint,
    ConcurrentWrite,
    ScheduleHead,
    ScheduleWrite,
    eligible_requests,
)
from tests.unit.checkpoints import Positions

CONSUMER = "meetings"


@dataclass(frozen=True, slots=True)
class StoredMeetingEvent:
    position: int
    case_id: str
    version: int
    type: str
    state: dict[str, Any]

    @property
    def name(self) -> str:
        """``MeetingScheduled`` for ``se.vss.meetings.MeetingScheduled.v1``."""
        return self.type.rsplit(".", 2)[-2]


class InMemoryScheduleStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.schedules: dict[
            str, tuple[int, bytes, str | None]
        ] = {}  # case id -> (revision, snapshot, next due)
        self.coordinators: dict[str, set[str]] = {}  # case id -> user ids
        self.log: list[StoredMeetingEvent] = []
        self.positions = Positions()
        self.interfere: Any = None  # called once before the next write: another writer's turn
        self.requests: list[AdoptedRequest] = []  # taken over from the meetings stream, not yet applied

    def write(self, states: Sequence[tuple[int, str, dict[str, Any]]], side: ScheduleWrite) -> list[int]:
        with self.lock:
            if self.interfere is not None:
                interfere, self.interfere = self.interfere, None
                interfere()
            if side.position is not None and not self.positions.can_advance(CONSUMER, side.position[0]):
                raise AlreadyApplied(f"sequence {side.position[0]} is applied already")
            current = self.schedules.get(side.case_id)
            if (current[0] if current else 0) != side.expected_revision:
                raise ConcurrentWrite(f"schedule {side.case_id} is not at revision {side.expected_revision}")
            known = [e.version for e in self.log if e.case_id == side.case_id]
            if states and states[0][0] != len(known) + 1:
                raise ConcurrentWrite(f"version {states[0][0]} of {side.case_id} is taken")
            if side.position is not None:
                self.positions.advance(CONSUMER, *side.position, side.log_position)
            if side.adopted_request is not None:
                self.requests = [r for r in self.requests if r.sequence != side.adopted_request]
            self.schedules[side.case_id] = (side.revision, side.snapshot, side.next_due)
            if side.coordinators is not None:
                self.coordinators[side.case_id] = set(side.coordinators)
            positions = []
            for version, type_name, state in states:
                position = len(self.log) + 1
                self.log.append(StoredMeetingEvent(position, side.case_id, version, type_name, state))
                positions.append(position)
            return positions

    def write_batch(
        self,
        writes: Sequence[tuple[Sequence[tuple[int, str, dict[str, Any]]], ScheduleWrite]],
        position: Checkpoint | None = None,
    ) -> list[int]:
        """All or nothing, as one transaction: every check before any change."""
        with self.lock:
            if self.interfere is not None:
                interfere, self.interfere = self.interfere, None
                interfere()
            if position is not None and not self.positions.can_advance(CONSUMER, position.stream_sequence):
                raise AlreadyApplied(f"sequence {position.stream_sequence} is applied already")
            for states, side in writes:
                current = self.schedules.get(side.case_id)
                if (current[0] if current else 0) != side.expected_revision:
                    raise ConcurrentWrite(
                        f"schedule {side.case_id} is not at revision {side.expected_revision}"
                    )
                known = [e.version for e in self.log if e.case_id == side.case_id]
                if states and states[0][0] != len(known) + 1:
                    raise ConcurrentWrite(f"version {states[0][0]} of {side.case_id} is taken")
            if position is not None:
                self.positions.advance(
                    CONSUMER, position.stream_sequence, position.event_id, position.log_position
                )
            return [p for states, side in writes for p in self.write(states, side)]

    def heads(self, case_ids: Sequence[str]) -> dict[str, ScheduleHead]:
        return {
            case_id: ScheduleHead(found[0], found[2])
            for case_id in case_ids
            if (found := self.schedules.get(case_id)) is not None
        }

    def snapshot(self, case_id: UUID) -> dict[str, Any] | None:
        found = self.schedules.get(str(case_id))
        return dict(orjson.loads(found[1])) if found else None

    def due(self, now_utc_key: str, limit: int) -> list[UUID]:
        due = sorted(
            (next_due, case_id)
            for case_id, (_, _, next_due) in self.schedules.items()
            if next_due is not None and next_due <= now_utc_key
        )
        return [UUID(case_id) for _, case_id in due[:limit]]

    def cases_of_coordinator(self, user_id: str) -> list[UUID]:
        return sorted(UUID(case_id) for case_id, users in self.coordinators.items() if user_id in users)

    def applied_through(self) -> int:
        return self.positions.position(CONSUMER)

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        with self.lock:
            self.positions.advance(CONSUMER, stream_sequence, event_id)

    def applied_log_position(self) -> int:
        return self.positions.log_positions.get(CONSUMER, 0)

    def adopted_requests(self, through: int, *, unplaced: bool = False) -> list[AdoptedRequest]:
        return eligible_requests(self.requests, through, unplaced=unplaced)

    def has_adopted_requests(self) -> bool:
        return bool(self.requests)

    def drop_adopted_request(self, sequence: int) -> None:
        with self.lock:
            self.requests = [r for r in self.requests if r.sequence != sequence]

    def events(self, case_id: UUID) -> list[StoredMeetingEvent]:
        return [e for e in self.log if e.case_id == str(case_id)]
