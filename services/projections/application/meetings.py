"""Apply each case's meeting schedule (stream ``VSS_MEETINGS``) to the meetings read model.

The third consumer of the projector process, with its own position
(:data:`MEETINGS_CONSUMER` in ``consumer_positions``), moved in the same transaction as
the rows. Live, a pull per transaction; a rebuild hands over a batch at a time.
Either way it is the same code, so a rebuild gives the rows the live consumer gave.

Idempotent per event, as the delivery record is: an event at or below the version the
case's schedule has reached here (a redelivery, or a copy the relay republished)
changes nothing but the position.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import structlog

from services.projections.domain import meetings
from services.projections.domain.events import MeetingRecord
from services.projections.domain.meetings import Head, Meeting

MEETINGS_CONSUMER = "projections-meetings"

log = structlog.get_logger("vss.projections.meetings")


class MeetingWriter(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...

    def advance(self, cursor: Any, consumer: str, stream_sequence: int, event_id: str | None) -> bool: ...

    def meeting_head(self, cursor: Any, case_id: str) -> Head | None: ...

    def load_meeting(self, cursor: Any, case_id: str, meeting_id: str) -> Meeting | None: ...

    def write_meetings(
        self, cursor: Any, changed: Sequence[Meeting], heads: Sequence[tuple[str, Head]]
    ) -> None: ...


class _AlreadyApplied(Exception):
    pass


class MeetingProjector:
    def __init__(self, models: MeetingWriter) -> None:
        self.models = models
        self.applied = 0  # events of a schedule applied (whether they changed a meeting or not)
        self.duplicates = 0
        self.chain_breaks = 0
        self.orphans = 0  # changes of a meeting never seen scheduled

    def apply(self, records: Sequence[MeetingRecord], *, stream_sequence: int, event_id: str | None) -> bool:
        """Apply ``records`` and move the position to ``stream_sequence``, in one transaction.
        False, changing nothing, if the position is there already."""
        try:
            with self.models.transaction() as cursor:
                if not self.models.advance(cursor, MEETINGS_CONSUMER, stream_sequence, event_id):
                    raise _AlreadyApplied
                heads: dict[str, Head | None] = {}
                loaded: dict[tuple[str, str], Meeting | None] = {}
                changed: set[tuple[str, str]] = set()
                moved: dict[str, Head] = {}
                applied = 0
                for record in records:
                    case_id = record.case_id
                    if case_id not in heads:
                        heads[case_id] = self.models.meeting_head(cursor, case_id)
                    head = heads[case_id]
                    if head is not None and record.version <= head[0]:
                        self.duplicates += 1
                        continue
                    verified = meetings.continues_chain(record, head)
                    self.chain_breaks += not verified
                    heads[case_id] = moved[case_id] = (
                        record.version,
                        record.event_hash,
                        verified and (head is None or head[2]),
                    )
                    applied += 1
                    meeting_id = meetings.meeting_id_of(record)
                    if meeting_id is None:
                        continue
                    key = (case_id, meeting_id)
                    if key not in loaded:
                        loaded[key] = self.models.load_meeting(cursor, case_id, meeting_id)
                    after = meetings.apply(loaded[key], record, verified)
                    if after is None:
                        self.orphans += 1
                        log.warning(
                            "projections.meeting_unknown",
                            case_id=case_id,
                            meeting_id=meeting_id,
                            type=record.type,
                            stream_sequence=record.stream_sequence,
                        )
                        continue
                    loaded[key] = after
                    changed.add(key)
                self.models.write_meetings(
                    cursor,
                    [m for k, m in loaded.items() if k in changed and m is not None],
                    list(moved.items()),
                )
        except _AlreadyApplied:
            return False
        self.applied += applied
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        """Move the position past an event that was not applied (dead-lettered)."""
        self.apply((), stream_sequence=stream_sequence, event_id=event_id)
