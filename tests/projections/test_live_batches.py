"""The live projector applies a pull of case events in one transaction, as one at a time would.

A pull that cannot be applied whole (an event of a case never opened here) changes nothing,
so that the consumer can apply it event by event and dead-letter only that one; a pull that
overlaps what is applied already adds only what is new.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from services.case.generator import GeneratorSettings, generate, generation_store
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.projections.application.projector import EventOfUnknownCase
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.live import LiveProjection
from services.shared.bus.consumer import Delivery
from vss_contracts.envelope import CloudEvent


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Delivery]]:
    """A few cases through the method, as the case stream delivers them (sequence = log order)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('batches') / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store: CaseEventStore = generation_store(url, 8)
    try:
        generate(store, GeneratorSettings(cases=8, seed=3, end=date(2026, 6, 30), span_days=600))
        out: list[Delivery] = []
        after = 0
        while rows := store.log_rows(after, 500):
            for row in rows:
                message = store.published(row)
                event = CloudEvent.model_validate_json(message.body)
                subject = f"vss.case.{message.case_id}.{message.type_name}"
                out.append(Delivery(event, None, len(out) + 1, subject, {}, 1, message.body))
            after = rows[-1][0]
        yield out
    finally:
        store.close()


def _projection(path: Path) -> LiveProjection:
    return LiveProjection(ReadModelLocation(f"sqlite:///{path}/readmodels"))


def _state(projection: LiveProjection, deliveries: list[Delivery]) -> tuple[int, list[object]]:
    cases = sorted({d.event.subject for d in deliveries})
    return projection.applied_through(), [projection.models.overview(case) for case in cases]


def test_pulls_applied_whole_equal_one_event_at_a_time(deliveries: list[Delivery], tmp_path: Path) -> None:
    assert len(deliveries) > 100
    one_by_one = _projection(tmp_path / "one")
    whole = _projection(tmp_path / "whole")
    try:
        assert all(one_by_one.apply(d) for d in deliveries)
        applied = sum(whole.apply_batch(deliveries[i : i + 37]) for i in range(0, len(deliveries), 37))
        assert applied == len(deliveries)
        assert _state(whole, deliveries) == _state(one_by_one, deliveries)
        assert _state(whole, deliveries)[0] == len(deliveries)
    finally:
        one_by_one.close()
        whole.close()


def test_a_pull_overlapping_what_is_applied_adds_only_the_new_events(
    deliveries: list[Delivery], tmp_path: Path
) -> None:
    reference = _projection(tmp_path / "reference")
    projection = _projection(tmp_path / "overlap")
    try:
        assert all(reference.apply(d) for d in deliveries)
        assert projection.apply_batch(deliveries[:60]) == 60
        assert projection.apply_batch(deliveries[:60]) == 0  # a redelivered pull
        assert projection.apply_batch(deliveries[40:]) == len(deliveries) - 60
        assert _state(projection, deliveries) == _state(reference, deliveries)
    finally:
        reference.close()
        projection.close()


def test_a_pull_with_an_event_of_a_case_never_opened_changes_nothing(
    deliveries: list[Delivery], tmp_path: Path
) -> None:
    first_case = deliveries[0].event.subject
    later = next(d for d in deliveries if d.event.subject != first_case and d.event.caseversion > 1)
    projection = _projection(tmp_path / "orphan")
    try:
        opening = [d for d in deliveries if d.event.subject == first_case][:3]
        # The later event's case was never opened in this projection.
        pull = [*opening, later]
        with pytest.raises(EventOfUnknownCase):
            projection.apply_batch(pull)
        assert projection.applied_through() == 0
        assert projection.models.overview(first_case) is None
    finally:
        projection.close()
