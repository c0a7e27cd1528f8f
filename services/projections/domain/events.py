"""One case event as the projections see it: the published CloudEvent, decoded once.

The payload is upcast to the current version of its type. Whether the event's own
hash recomputes (``hash_ok``) is decided on the payload *as published*, before any
upcast, because that is what was hashed when it was stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


class CaseEventRecord(NamedTuple):
    """Immutable; a named tuple rather than a frozen dataclass because a rebuild makes one per
    event, and a tuple is made from the reader's fields in one step where a frozen dataclass
    checks fourteen assignments (ADR 0030). A copy with changes is ``record._replace(...)``."""

    case_id: str
    version: int  # caseversion: 1, 2, 3 … in the case's own stream
    type: str  # the current type name (after upcasting)
    data: dict[str, Any]  # the payload in the current version of its type
    event_id: str
    time: str  # ISO 8601, UTC: when the case service recorded it
    actor_id: str
    actor_org: str
    actor_principal: str
    log_position: int  # the case store's log position (read-your-writes)
    stream_sequence: int  # the bus stream's sequence (the consumer's checkpoint)
    prev_hash: str
    event_hash: str
    hash_ok: bool  # eventhash recomputes from the published event

    @property
    def name(self) -> str:
        """``SipDecided`` for ``se.vss.case.SipDecided.v1``."""
        return self.type.rsplit(".", 2)[-2]


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One event of a case's delivery record (stream ``VSS_NOTIFICATIONS``), decoded once.

    The notifications service chains its record of each case as the case service chains
    the case's events (``version`` 1, 2, 3 …, ``prev_hash`` → ``event_hash``), so the
    same check applies.
    """

    case_id: str
    version: int  # the event's place in the case's delivery record (caseversion)
    type: str  # se.vss.notifications.NotificationSent.v1 … (after upcasting)
    data: dict[str, Any]
    event_id: str
    time: str  # ISO 8601, UTC: when the notifications service recorded it
    stream_sequence: int
    prev_hash: str
    event_hash: str
    hash_ok: bool


@dataclass(frozen=True, slots=True)
class MeetingRecord:
    """One event of a case's meeting schedule (stream ``VSS_MEETINGS``), decoded once.

    The meetings service chains each case's schedule as the case service chains the case's
    events (``version`` 1, 2, 3 …, ``prev_hash`` → ``event_hash``), so the same check applies.
    ``actor_id`` and ``actor_org`` are the envelope's (``actorid``, ``actororg``, in the hash):
    the coordinator who made a request and their organisation, or the service itself.
    """

    case_id: str
    version: int  # the event's place in the case's meeting schedule (caseversion)
    type: str  # se.vss.meetings.MeetingScheduled.v1 … (after upcasting)
    data: dict[str, Any]
    event_id: str
    time: str  # ISO 8601, UTC: when the meetings service recorded it
    stream_sequence: int
    prev_hash: str
    event_hash: str
    hash_ok: bool
    actor_id: str  # a user id, or the service's own (vss-meetings)
    actor_org: str  # that user's organisation, or the service's own (vss)
