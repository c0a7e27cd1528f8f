"""The live projector: the durable consumers' handlers, on the generation that serves.

Three consumers in one process, each with its own position in the serving generation:
:class:`LiveProjection` (the case stream: views and journal), :class:`LiveDeliveries`
(the notifications stream: the delivery rows of the journal) and :class:`LiveMeetings`
(the meetings stream: each case's meetings). Each follows the pointer before each event,
so after a rebuild's switch each resumes from the new generation's position for its
stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

import structlog

from services.projections.application.deliveries import DeliveryProjector
from services.projections.application.meetings import MeetingProjector
from services.projections.application.projector import EventOfUnknownCase, Projector
from services.projections.domain.events import MeetingRecord, NotificationRecord
from services.projections.infrastructure.database import ReadModelLocation, new_generation
from services.projections.infrastructure.decoding import (
    UndecodableEvent,
    decode,
    decode_meeting,
    decode_notification,
)
from services.projections.infrastructure.readmodels import ReadModels
from services.shared.bus.consumer import Delivery, PermanentFailure, StateReplaced

log = structlog.get_logger("vss.projections")

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


class _RecordProjector(Protocol[R_contra]):
    applied: int

    def apply(self, records: Sequence[R_contra], *, stream_sequence: int, event_id: str | None) -> bool: ...

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None: ...


def open_current(location: ReadModelLocation) -> ReadModels:
    """The generation that serves; the first one is created (empty) when there is none."""
    generation = location.current()
    if generation is None:
        generation = new_generation()
        models = ReadModels(location.connect(generation))
        models.create_tables()
        location.point_to(generation)
        return models
    models = ReadModels(location.connect(generation))
    models.create_tables()
    if missing := models.missing_columns():
        # Not a stop: the system keeps running so that `vss projections rebuild` (which reads
        # the streams) can build a current generation, which the projector then follows.
        log.error(
            "projections.read_models_outdated",
            generation=generation,
            missing=missing,
            fix="vss projections rebuild (until then writes to these tables fail)",
        )
    return models


class _Following:
    """The serving generation's tables, re-opened when the pointer moves."""

    def __init__(self, location: ReadModelLocation) -> None:
        self.location = location
        # SQLite: an event's transaction is a short local write, cheaper than the consumer's
        # hop to a worker thread and back; PostgreSQL: a network round trip, kept off the
        # event loop.
        self.applies_in_loop = not location.is_postgres
        self.models = open_current(location)
        self._opened()

    def _opened(self) -> None:
        """Build what works on ``self.models`` (after opening or switching)."""

    def _follow_pointer(self) -> bool:
        """Switch to the generation the pointer names; True if it moved."""
        current = self.location.current()
        if current is None or current == self.models.generation:
            return False
        log.info(
            "projections.switched", consumer=type(self).__name__, old=self.models.generation, new=current
        )
        self.models.close()
        self.models = ReadModels(self.location.connect(current))
        self.models.create_tables()
        self._opened()
        return True

    def _check_pointer(self) -> None:
        if self._follow_pointer():
            raise StateReplaced(f"read models now served from generation {self.models.generation}")

    def close(self) -> None:
        self.models.close()
        self.location.close()


class LiveProjection(_Following):
    """Implements the case-stream consumer's BatchHandler: a pull per transaction, or one
    event per transaction when a pull cannot be applied whole."""

    projector: Projector

    def _opened(self) -> None:
        self.projector = Projector(self.models)

    def applied_through(self) -> int:
        self._follow_pointer()
        return self.models.applied_through()

    def apply(self, delivery: Delivery) -> bool:
        self._check_pointer()
        try:
            record = decode(delivery.body, delivery.stream_sequence)
        except UndecodableEvent as error:
            raise PermanentFailure(str(error)) from error
        try:
            return self.projector.apply([record])
        except EventOfUnknownCase as error:
            raise PermanentFailure(str(error)) from error

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """What one pull brought, in one transaction (one commit instead of one per event).

        Raises, changing nothing, if any event does not decode or is of a case never opened
        here: the consumer then applies the pull one event at a time, dead-lettering that one.
        """
        self._check_pointer()
        records = [decode(delivery.body, delivery.stream_sequence) for delivery in deliveries]
        before = self.projector.applied
        if not self.projector.apply(records):
            return 0
        return self.projector.applied - before

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.projector.pass_over(stream_sequence, event_id)


class _RecordStream(_Following, Generic[R]):
    """A consumer of another service's stream: a pull's decoded records per transaction."""

    projector: _RecordProjector[R]

    def _decode(self, body: bytes, stream_sequence: int) -> R:
        raise NotImplementedError

    def _applied_through(self) -> int:
        raise NotImplementedError

    def applied_through(self) -> int:
        self._follow_pointer()
        return self._applied_through()

    def apply(self, delivery: Delivery) -> bool:
        self._check_pointer()
        try:
            record = self._decode(delivery.body, delivery.stream_sequence)
        except UndecodableEvent as error:
            raise PermanentFailure(str(error)) from error
        return self.projector.apply(
            [record], stream_sequence=delivery.stream_sequence, event_id=delivery.event.id
        )

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """What one pull brought, in one transaction; raises, changing nothing, if an event
        does not decode (the consumer then goes event by event and dead-letters that one)."""
        self._check_pointer()
        records = [self._decode(delivery.body, delivery.stream_sequence) for delivery in deliveries]
        last = deliveries[-1]
        before = self.projector.applied
        if not self.projector.apply(records, stream_sequence=last.stream_sequence, event_id=last.event.id):
            return 0
        return self.projector.applied - before

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.projector.pass_over(stream_sequence, event_id)


class LiveDeliveries(_RecordStream[NotificationRecord]):
    """Implements the notifications-stream consumer's Handler."""

    def _opened(self) -> None:
        self.projector = DeliveryProjector(self.models)

    def _decode(self, body: bytes, stream_sequence: int) -> NotificationRecord:
        return decode_notification(body, stream_sequence)

    def _applied_through(self) -> int:
        return self.models.deliveries_applied_through()


class LiveMeetings(_RecordStream[MeetingRecord]):
    """Implements the meetings-stream consumer's Handler."""

    def _opened(self) -> None:
        self.projector = MeetingProjector(self.models)

    def _decode(self, body: bytes, stream_sequence: int) -> MeetingRecord:
        return decode_meeting(body, stream_sequence)

    def _applied_through(self) -> int:
        return self.models.meetings_applied_through()
