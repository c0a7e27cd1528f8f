"""``SharingService`` over an in-memory store: who receives which case events, and when sharing ends."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from uuid import UUID

import orjson
import pytest

from services.sharing.application.service import CONSUMER, IncomingEvent, SharingService, message_id
from services.sharing.domain.coverage import CaseAccess
from tests.domain import specs
from tests.unit.stories import Stream, story
from vss_contracts.sharing_events import SharingEnded, SharingEndReason

from .fakes import InMemorySharingStore, StoreFailed

REGION, MUNICIPALITY, OTHER = specs.REGION_ORG.id, specs.MUNICIPALITY_ORG.id, specs.OTHER_ORG.id


def incoming(*steps: specs.Step, stream: Stream | None = None) -> list[IncomingEvent]:
    """The case's events as the sharing consumer receives them."""
    events = []
    for record in (stream or Stream()).records(story(*steps)):
        body = {"id": record.event_id, "type": record.type, "subject": record.case_id, "data": record.data}
        events.append(
            IncomingEvent(
                case_id=record.case_id,
                version=record.version,
                event_id=record.event_id,
                type_name=record.type,
                event_name=record.name,
                current_type=record.type,
                data=record.data,
                time=datetime.fromisoformat(record.time),
                log_position=record.log_position,
                correlation_id="req-1",
                event_hash=record.event_hash,
                body=orjson.dumps(body),
                stream_sequence=record.stream_sequence,
            )
        )
    return events


def shared(*steps: specs.Step) -> tuple[SharingService, InMemorySharingStore, list[IncomingEvent]]:
    store = InMemorySharingStore()
    service = SharingService(store)
    events = incoming(*steps)
    for event in events:
        assert service.apply(event)
    return service, store, events


def test_a_coordinators_organisation_receives_the_case_from_its_first_event() -> None:
    _, store, _ = shared(*specs.COORDINATED)
    assert store.sent_versions(REGION) == [1, 2, 3]  # history at its assignment, then each event
    assert store.sent_versions(MUNICIPALITY) == [1, 2, 3]
    assert [m.message_id for m in store.outbox(REGION)][:1] == [
        message_id(REGION, store.tables.kept[(str(specs.CASE_ID), 1)].event_id)
    ]


def test_an_organisation_the_consent_covers_receives_what_it_missed_and_nobody_else_anything() -> None:
    _, store, events = shared(
        *specs.COORDINATED, specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG)
    )
    assert store.sent_versions(OTHER) == [1, 2, 3, 4]
    assert store.outbox(specs.UNRELATED_ORG.id) == []
    assert len(store.tables.kept) == len(events)


def test_a_withdrawal_for_one_organisation_ends_its_share_with_the_reason_and_its_last_hash() -> None:
    _, store, events = shared(
        *specs.COORDINATED,
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG),
        specs.withdraw(OTHER),
    )
    *received, ended = store.outbox(OTHER)
    assert [m.version for m in received] == [1, 2, 3, 4]
    assert (ended.type_name, ended.version) == (SharingEnded.TYPE, None)
    assert ended.body is not None
    body = orjson.loads(ended.body)
    assert body["data"]["reason"] == SharingEndReason.CONSENT_WITHDRAWN_FOR_ORGANISATION.value
    assert body["data"]["last_version"] == 4
    assert body["prevhash"] == events[3].event_hash
    assert store.sent_versions(REGION)[-1] == 5  # the coordinators' organisations go on


def test_a_redelivered_event_changes_nothing() -> None:
    service, store, events = shared(*specs.COORDINATED)
    before = list(store.outbox())
    assert service.apply(events[-1]) is False
    assert store.outbox() == before
    assert service.applied_through() == events[-1].stream_sequence


def test_a_consent_past_its_end_ends_sharing_at_the_cases_next_event() -> None:
    store = InMemorySharingStore()
    service = SharingService(store)
    *before, after = incoming(
        *specs.COORDINATED,
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG, valid_until=specs.TODAY),
        specs.unassign(specs.ERIK.user_id),
    )
    for event in before:
        service.apply(event)
    assert store.sent_versions(OTHER) == [1, 2, 3, 4]
    service.apply(replace(after, time=after.time + timedelta(days=1)))  # the day after the consent's last
    [ended] = [m for m in store.outbox(OTHER) if m.version is None]
    assert orjson.loads(ended.body or b"{}")["data"]["reason"] == SharingEndReason.CONSENT_EXPIRED.value
    assert 5 not in store.sent_versions(OTHER)
    assert store.sent_versions(REGION)[-1] == 5  # a coordinator's organisation needs no consent


def test_events_applied_together_are_one_transaction_and_a_failure_leaves_nothing() -> None:
    events = incoming(*specs.COORDINATED)
    probe = InMemorySharingStore()  # how many times the batch writes the outbox
    probe.fail_next_enqueue, probe.fail_at_enqueue = True, 10**6
    SharingService(probe).apply_many(events)
    assert probe.enqueues >= 2  # earlier writes exist for the failure to undo
    assert probe.outbox()
    store = InMemorySharingStore()
    service = SharingService(store)
    store.fail_next_enqueue, store.fail_at_enqueue = True, probe.enqueues  # fails at the last write
    with pytest.raises(StoreFailed):
        service.apply_many(events)
    assert (store.outbox(), store.tables.kept, service.applied_through()) == ([], {}, 0)
    assert service.apply_many(events) == len(events)
    assert service.apply_many(events) == 0


def test_the_access_state_is_kept_per_case_between_events() -> None:
    _, store, _ = shared(*specs.COORDINATED, specs.consent(specs.OTHER_ORG))
    access, received = _state(store, specs.CASE_ID)
    assert access.consent == [OTHER]
    assert received == {REGION: (4, True), MUNICIPALITY: (4, True), OTHER: (4, True)}


def _state(store: InMemorySharingStore, case_id: UUID) -> tuple[CaseAccess, dict[str, tuple[int, bool]]]:
    with store.transaction() as tx:
        return tx.case_state(str(case_id))


def test_a_dead_lettered_event_is_passed_over() -> None:
    store = InMemorySharingStore()
    service = SharingService(store)
    service.pass_over(9, "event-9")
    assert store.applied_through(CONSUMER) == 9
    assert store.outbox() == []


def test_an_organisation_covered_again_receives_what_it_missed_meanwhile() -> None:
    _, store, _ = shared(
        *specs.COORDINATED,
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG),
        specs.withdraw(OTHER),
        specs.unassign(specs.ERIK.user_id),
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG, on=date(2025, 3, 1)),
    )
    assert store.sent_versions(OTHER) == [1, 2, 3, 4, None, 5, 6, 7]
