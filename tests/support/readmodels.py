"""Read models built in process from a case store's log (no bus): for API tests of the query side."""

from __future__ import annotations

from pathlib import Path

from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore
from services.projections.application.projector import Projector
from services.projections.infrastructure.database import ReadModelLocation, new_generation
from services.projections.infrastructure.decoding import decode
from services.projections.infrastructure.readmodels import ReadModels


def project(store: CaseEventStore, directory: Path) -> tuple[ReadModelLocation, int]:
    """Every event of ``store`` projected into a new generation under ``directory``, served.

    Returns the location and the last log position the read models reflect.
    """
    location = ReadModelLocation(f"sqlite:///{directory}/readmodels")
    generation = new_generation()
    models = ReadModels(location.connect(generation))
    models.create_tables()
    log = CaseEventLog(store)
    messages = log.render(log.fetch(0, 100_000))
    Projector(models).apply([decode(m.body, sequence) for sequence, m in enumerate(messages, start=1)])
    models.close()
    location.point_to(generation)
    return location, len(messages)
