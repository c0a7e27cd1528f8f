"""``CaseService`` over an in-memory case store: concurrency, idempotency, refusals, time travel.

The case's own rules are the domain specs' (``tests/domain``); here is what the
application adds around one command, seen through what the store ends up holding.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from uuid import UUID

import pytest

from services.case.application.ports import CaseAlreadyExists, CaseNotFound, CaseNotYetOpened
from services.case.application.service import (
    CaseService,
    CaseTurns,
    IdempotencyKeyReused,
    Request,
    VersionConflict,
)
from services.case.domain import errors
from services.case.domain.case import coordinator_key
from services.case.domain.events import Actor
from tests.domain import specs
from tests.support.clock import FixedClock
from vss_contracts import case_events as ev
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.types import Principal, Worksheet

from .fakes import EventLog, InMemoryCaseStore

OUTSIDER = Actor(
    user_id="maria.holm",
    organisation_id=specs.UNRELATED_ORG.id,
    organisation_name=specs.UNRELATED_ORG.name,
    principal=Principal.MUNICIPALITY,
    roles=frozenset({"coordinator"}),
)


def request(
    actor: Actor = specs.ACTOR,
    *,
    expected_version: int | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> Request:
    return Request(
        actor=actor,
        correlation_id="req-1",
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )


def case_service(store: InMemoryCaseStore) -> CaseService:
    return CaseService(store, FixedClock(specs.NOW))


def opened(*steps: specs.Step) -> tuple[CaseService, InMemoryCaseStore]:
    store = InMemoryCaseStore()
    service = case_service(store)
    service.open_case(request(), specs.open_case())
    for step in steps:
        service.execute(request(), specs.CASE_ID, step)
    return service, store


def stored_types(store: InMemoryCaseStore) -> list[str]:
    return [event.data.event_name() for event in store.log.events(specs.CASE_ID)]


def test_opening_a_case_stores_its_first_event_at_the_first_log_position() -> None:
    store = InMemoryCaseStore()
    result = case_service(store).open_case(request(), specs.open_case())
    assert (result.case_id, result.version, result.position) == (specs.CASE_ID, 1, 1)
    assert result.created_id == str(specs.CASE_ID)
    [event] = store.log.events(specs.CASE_ID)
    assert isinstance(event.data, ev.CaseOpened)
    assert event.meta.prev_hash == GENESIS_HASH
    assert event.data.opened_by_organisation.id == specs.ACTOR.organisation_id


def test_a_case_id_taken_already_is_refused() -> None:
    service, store = opened()
    with pytest.raises(CaseAlreadyExists):
        service.open_case(request(), specs.open_case())
    assert len(store.log.events(specs.CASE_ID)) == 1


def test_a_command_and_the_facts_that_follow_from_it_are_stored_in_one_commit() -> None:
    service, store = opened(*specs.CONSENTED, specs.worksheet(Worksheet.INTERVIEW))
    before = store.log.last_position
    result = service.execute(request(), specs.CASE_ID, specs.summarise())
    assert [e["type"] for e in result.events] == [ev.MappingSummarised.TYPE, ev.PhaseChanged.TYPE]
    assert [e["position"] for e in result.events] == [before + 1, before + 2]
    assert result.position == before + 2
    events = store.log.events(specs.CASE_ID)
    assert [e.meta.prev_hash for e in events[1:]] == [e.meta.hash for e in events[:-1]]


def test_a_command_refused_by_a_rule_stores_nothing() -> None:
    service, store = opened(*specs.COORDINATED)
    saved, position = store.saves, store.log.last_position
    with pytest.raises(errors.ConsentRequired):
        service.execute(request(), specs.CASE_ID, specs.worksheet(Worksheet.INTERVIEW))
    assert (store.saves, store.log.last_position) == (saved, position)
    assert stored_types(store) == ["CaseOpened", "CoordinatorAssigned", "CoordinatorAssigned"]


def test_an_organisation_not_involved_in_the_case_may_not_write_it() -> None:
    service, store = opened(*specs.CONSENTED)
    with pytest.raises(errors.ActorNotInvolved):
        service.ensure_may_write(specs.CASE_ID, OUTSIDER)
    with pytest.raises(errors.ActorNotInvolved):
        service.execute(request(OUTSIDER), specs.CASE_ID, specs.withdraw())
    assert "ConsentWithdrawn" not in stored_types(store)


def test_the_cached_case_answers_who_may_write_without_the_store() -> None:
    service, store = opened(*specs.CONSENTED)
    assert service.may_write_by_cache(specs.CASE_ID, specs.ACTOR)
    assert service.may_write_by_cache(specs.CASE_ID, specs.CLIENT_ACTOR)
    assert not service.may_write_by_cache(specs.CASE_ID, OUTSIDER)  # refused: ask ensure_may_write
    assert not service.may_write_by_cache(specs.CASE_ID, specs.SOMEONE_ELSE)
    store.forget(specs.CASE_ID)
    assert not service.may_write_by_cache(specs.CASE_ID, specs.ACTOR)  # not cached: ask the store
    assert not service.may_write_by_cache(UUID(int=7), specs.ACTOR)


def test_an_expected_version_that_is_not_the_cases_is_a_conflict_and_stores_nothing() -> None:
    service, store = opened(*specs.COORDINATED)
    with pytest.raises(VersionConflict) as conflict:
        service.execute(request(expected_version=2), specs.CASE_ID, specs.consent())
    assert (conflict.value.expected, conflict.value.actual) == (2, 3)
    assert len(store.log.events(specs.CASE_ID)) == 3
    result = service.execute(request(expected_version=3), specs.CASE_ID, specs.consent())
    assert result.version == 4


def test_a_retry_with_the_same_idempotency_key_replays_the_first_result_and_stores_nothing_more() -> None:
    service, store = opened(*specs.COORDINATED)
    first = service.execute(
        request(idempotency_key="k-1", fingerprint="give consent"), specs.CASE_ID, specs.consent()
    )
    again = service.execute(
        request(idempotency_key="k-1", fingerprint="give consent"), specs.CASE_ID, specs.consent()
    )
    assert again.replayed
    assert not first.replayed
    assert (again.version, again.position, again.events) == (first.version, first.position, first.events)
    assert again.created_id == first.created_id
    assert stored_types(store).count("ConsentGiven") == 1


def test_an_idempotency_key_reused_for_another_request_is_refused() -> None:
    service, store = opened(*specs.COORDINATED)
    service.execute(
        request(idempotency_key="k-1", fingerprint="give consent"), specs.CASE_ID, specs.consent()
    )
    with pytest.raises(IdempotencyKeyReused):
        service.execute(
            request(idempotency_key="k-1", fingerprint="withdraw"), specs.CASE_ID, specs.withdraw()
        )
    assert "ConsentWithdrawn" not in stored_types(store)


def test_a_write_from_another_instance_is_caught_and_the_command_retried_on_the_stored_case() -> None:
    log = EventLog()
    one, other = InMemoryCaseStore(log), InMemoryCaseStore(log)
    first, second = case_service(one), case_service(other)
    first.open_case(request(), specs.open_case())
    first.execute(request(), specs.CASE_ID, specs.assign(specs.ANNA))  # cached by the first instance
    second.execute(request(), specs.CASE_ID, specs.assign(specs.ERIK))  # the first's copy is now stale
    result = first.execute(request(), specs.CASE_ID, specs.consent())
    assert result.version == 4
    assert [e.originator_version for e in log.events(specs.CASE_ID)] == [1, 2, 3, 4]
    assert [e.data.event_name() for e in log.events(specs.CASE_ID)][-1] == "ConsentGiven"


def test_a_refusal_on_an_outdated_copy_is_decided_again_on_the_stored_case() -> None:
    log = EventLog()
    one, other = InMemoryCaseStore(log), InMemoryCaseStore(log)
    first, second = case_service(one), case_service(other)
    first.open_case(request(), specs.open_case())
    first.execute(request(), specs.CASE_ID, specs.assign(specs.ANNA))
    first.execute(request(), specs.CASE_ID, specs.assign(specs.ERIK))
    second.execute(request(), specs.CASE_ID, specs.consent())  # the first's copy has no consent
    result = first.execute(request(), specs.CASE_ID, specs.worksheet(Worksheet.INTERVIEW))
    assert [e["type"] for e in result.events] == [ev.WorksheetCompleted.TYPE]


def test_with_an_expected_version_a_concurrent_write_is_a_conflict_not_a_retry() -> None:
    log = EventLog()
    first, second = case_service(InMemoryCaseStore(log)), case_service(InMemoryCaseStore(log))
    first.open_case(request(), specs.open_case())
    first.execute(request(), specs.CASE_ID, specs.assign(specs.ANNA))
    second.execute(request(), specs.CASE_ID, specs.assign(specs.ERIK))
    with pytest.raises(VersionConflict):
        first.execute(request(expected_version=2), specs.CASE_ID, specs.consent())
    assert len(log.events(specs.CASE_ID)) == 3


def test_the_case_as_it_stood_at_a_moment_is_folded_from_the_events_recorded_until_then() -> None:
    store = InMemoryCaseStore()
    clock = FixedClock(specs.NOW)
    service = CaseService(store, clock)
    service.open_case(request(), specs.open_case())
    service.execute(request(), specs.CASE_ID, specs.assign(specs.ANNA))
    between = clock.advance(hours=1)
    clock.advance(hours=1)
    service.execute(request(), specs.CASE_ID, specs.assign(specs.ERIK))
    then = service.as_of(specs.CASE_ID, between)
    assert then.version == 2
    assert set(then.state.coordinators) == {coordinator_key(specs.ANNA)}
    assert set(service.get(specs.CASE_ID).state.coordinators) == {
        coordinator_key(specs.ANNA),
        coordinator_key(specs.ERIK),
    }
    with pytest.raises(CaseNotYetOpened):
        service.as_of(specs.CASE_ID, specs.NOW - timedelta(seconds=1))
    with pytest.raises(ValueError, match="time zone"):
        service.as_of(specs.CASE_ID, specs.NOW.replace(tzinfo=None))


def test_the_history_of_an_unknown_case_is_not_found_not_empty() -> None:
    service, _ = opened(*specs.COORDINATED)
    with pytest.raises(CaseNotFound):
        service.history(UUID(int=7))
    page = service.history(specs.CASE_ID, after_version=1, limit=1)
    assert [(e.version, e.type) for e in page] == [(2, ev.CoordinatorAssigned.TYPE)]
    assert page[0].actor_organisation == specs.ACTOR.organisation_id


def test_commands_on_one_case_take_turns_and_other_cases_do_not_wait() -> None:
    turns = CaseTurns()
    one, other = uuid.uuid4(), uuid.uuid4()
    inside = threading.Event()
    let_go = threading.Event()
    order: list[str] = []

    def first() -> None:
        with turns.of(one):
            inside.set()
            let_go.wait(5)
            order.append("first")

    def second() -> None:
        inside.wait(5)
        with turns.of(one):
            order.append("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(5)
    with turns.of(other):  # another case: not held up by the first
        order.append("other")
        assert len(turns) == 2  # the first case (held, perhaps waited for) and this one
    let_go.set()
    for thread in threads:
        thread.join(5)
    assert order == ["other", "first", "second"]
    assert len(turns) == 0


def test_beyond_the_most_waiting_a_command_goes_ahead_on_optimistic_concurrency() -> None:
    turns = CaseTurns(most_waiting=1)
    case = uuid.uuid4()
    holding, waiting_in, let_go = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def holder() -> None:
        with turns.of(case):
            holding.set()
            let_go.wait(5)
            order.append("holder")

    def waiter() -> None:
        waiting_in.set()
        with turns.of(case):
            order.append("waiter")

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    holding.wait(5)
    threads.append(threading.Thread(target=waiter))
    threads[1].start()
    waiting_in.wait(5)
    deadline = time.monotonic() + 5
    while turns._held[case][1][0] < 2 and time.monotonic() < deadline:  # the waiter queued
        time.sleep(0.001)
    with turns.of(case):  # a third: the queue is full, so it does not wait
        order.append("third")
    let_go.set()
    for thread in threads:
        thread.join(5)
    assert order == ["third", "holder", "waiter"]
    assert len(turns) == 0
