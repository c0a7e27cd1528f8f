"""Idempotency keys: a retried command is answered from its first result, never run twice."""

from __future__ import annotations

import pytest

from services.case.application.service import CaseService, CommandResult, IdempotencyKeyReused
from services.case.domain.events import Actor
from services.case.infrastructure.store import CaseEventStore
from tests.support.clock import FixedClock
from tests.support.concurrency import barrier, run_concurrently
from tests.support.scenario import (
    Action,
    CaseScenario,
    new_request,
    open_case_command,
    summarise_mapping_command,
    worksheet_command,
)
from tests.support.stores import GatedStore, StoreFactory
from vss_contracts import case_events as ev
from vss_contracts.types import Worksheet


def summarise(clock: FixedClock) -> Action:
    return lambda case: case.summarise_mapping(summarise_mapping_command(clock.today()))


def same(a: CommandResult, b: CommandResult) -> tuple[object, ...]:
    """What a client sees of a result (all but ``replayed``)."""
    return (a.case_id, a.version, a.position, a.events, a.created_id)


def test_a_retry_with_the_same_key_appends_nothing_and_returns_the_first_result(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    case_id = consented.case_id
    assert case_id is not None
    consented.complete_worksheet()
    first = consented.run(summarise(clock), idempotency_key="summary-1", fingerprint="sha256:aa")
    position, history = store.max_position(), store.history(case_id, 0, 100)

    again = consented.service.execute(
        new_request(consented.actors.region, idempotency_key="summary-1", fingerprint="sha256:aa"),
        case_id,
        summarise(clock),
    )

    assert (first.replayed, again.replayed) == (False, True)
    assert same(again, first)
    assert [e["type"] for e in again.events] == [ev.MappingSummarised.TYPE, ev.PhaseChanged.TYPE]
    assert [e["position"] for e in again.events] == [e.position for e in history[-2:]]
    assert store.max_position() == position
    assert store.history(case_id, 0, 100) == history


def test_a_retried_open_case_opens_one_case(
    service: CaseService, store: CaseEventStore, clock: FixedClock, actor: Actor
) -> None:
    def open_case() -> CommandResult:
        # A new case id each time: only the key makes the retry the same request.
        request = new_request(actor, idempotency_key="open-7f3a", fingerprint="sha256:bb")
        return service.open_case(request, open_case_command(clock.today()))

    first, again = open_case(), open_case()

    assert (first.replayed, again.replayed) == (False, True)
    assert same(again, first)
    assert again.created_id == str(first.case_id)
    assert store.case_ids() == [first.case_id]
    assert store.max_position() == first.position


def test_the_same_key_with_another_request_is_refused(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    case_id = consented.case_id
    assert case_id is not None
    consented.run(
        lambda case: case.complete_worksheet(worksheet_command(clock.today())),
        idempotency_key="ws-1",
        fingerprint="sha256:interview",
    )
    position = store.max_position()

    with pytest.raises(IdempotencyKeyReused):
        consented.service.execute(
            new_request(consented.actors.region, idempotency_key="ws-1", fingerprint="sha256:ordinary-day"),
            case_id,
            lambda case: case.complete_worksheet(
                worksheet_command(clock.today(), worksheet=Worksheet.ORDINARY_DAY)
            ),
        )

    assert store.max_position() == position
    assert [e.data["worksheet"] for e in store.history(case_id, 4, 10)] == ["interview"]


def test_keys_belong_to_their_user(consented: CaseScenario, store: CaseEventStore, clock: FixedClock) -> None:
    case_id = consented.case_id
    assert case_id is not None

    def complete(actor: Actor) -> CommandResult:
        return consented.service.execute(
            new_request(actor, idempotency_key="ws-1", fingerprint="sha256:x"),
            case_id,
            lambda case: case.complete_worksheet(worksheet_command(clock.today())),
        )

    by_region, by_municipality = complete(consented.actors.region), complete(consented.actors.municipality)

    assert (by_region.replayed, by_municipality.replayed) == (False, False)
    assert by_municipality.version == by_region.version + 1
    assert len(store.history(case_id, 4, 10)) == 2


def test_two_racing_requests_with_the_same_key_store_one_event_and_get_one_result(
    consented: CaseScenario, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    position = store.max_position()
    meet = barrier(2)  # both have checked the key and loaded the case before either saves
    services = [CaseService(GatedStore(open_store(), meet), clock) for _ in range(2)]

    def send(index: int) -> CommandResult:
        return services[index].execute(
            new_request(consented.actors.region, idempotency_key="ws-race", fingerprint="sha256:cc"),
            case_id,
            lambda case: case.complete_worksheet(worksheet_command(clock.today())),
        )

    outcomes = run_concurrently(lambda: send(0), lambda: send(1))

    assert all(isinstance(o, CommandResult) for o in outcomes), outcomes
    first, second = outcomes
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert same(first, second)
    assert first.version == version + 1
    assert store.max_position() == position + 1 == first.position
    (stored,) = store.history(case_id, version, 10)
    assert str(stored.event_id) == first.events[0]["id"]


def test_two_racing_opens_with_the_same_key_open_one_case(
    store: CaseEventStore, open_store: StoreFactory, clock: FixedClock, actor: Actor
) -> None:
    meet = barrier(2)
    services = [CaseService(GatedStore(open_store(), meet), clock) for _ in range(2)]

    def send(index: int) -> CommandResult:
        request = new_request(actor, idempotency_key="open-race", fingerprint="sha256:dd")
        return services[index].open_case(request, open_case_command(clock.today()))

    outcomes = run_concurrently(lambda: send(0), lambda: send(1))

    assert all(isinstance(o, CommandResult) for o in outcomes), outcomes
    first, second = outcomes
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert same(first, second)
    assert store.case_ids() == [first.case_id]
    assert store.max_position() == first.position
    assert [n.originator_id for n in store.read_log(0)] == [first.case_id]
