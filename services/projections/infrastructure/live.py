"""The live projector: the durable consumer's handler, on the generation that serves."""

from __future__ import annotations

import structlog

from services.projections.application.projector import EventOfUnknownCase, Projector
from services.projections.infrastructure.database import ReadModelLocation, new_generation
from services.projections.infrastructure.decoding import UndecodableEvent, decode
from services.projections.infrastructure.readmodels import ReadModels
from services.shared.bus.consumer import Delivery, PermanentFailure, StateReplaced

log = structlog.get_logger("vss.projections")


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
    return models


class LiveProjection:
    """Implements the consumer's Handler: one event per transaction, following the pointer."""

    def __init__(self, location: ReadModelLocation) -> None:
        self.location = location
        self.models = open_current(location)
        self.projector = Projector(self.models)

    def _follow_pointer(self) -> bool:
        """Switch to the generation the pointer names; True if it moved."""
        current = self.location.current()
        if current is None or current == self.models.generation:
            return False
        log.info("projections.switched", old=self.models.generation, new=current)
        self.models.close()
        self.models = ReadModels(self.location.connect(current))
        self.models.create_tables()
        self.projector = Projector(self.models)
        return True

    def applied_through(self) -> int:
        self._follow_pointer()
        return self.models.applied_through()

    def apply(self, delivery: Delivery) -> bool:
        if self._follow_pointer():
            raise StateReplaced(f"read models now served from generation {self.models.generation}")
        try:
            record = decode(delivery.body, delivery.stream_sequence)
        except UndecodableEvent as error:
            raise PermanentFailure(str(error)) from error
        try:
            return self.projector.apply([record])
        except EventOfUnknownCase as error:
            raise PermanentFailure(str(error)) from error

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.projector.pass_over(stream_sequence, event_id)

    def close(self) -> None:
        self.models.close()
        self.location.close()
