"""Optimistic concurrency: of two writes at the same version of a case, exactly one lands."""

from __future__ import annotations

from typing import cast
from uuid import UUID

import pytest

from services.case.application.ports import ConcurrentWrite, IdempotencyRecord, SaveResult
from services.case.application.service import CaseService, CommandResult, VersionConflict
from services.case.domain.case import Case
from services.case.domain.events import CaseEvent
from services.case.infrastructure.store import CaseEventStore
from tests.support.clock import FixedClock
from tests.support.concurrency import barrier, run_concurrently
from tests.support.scenario import Action, CaseScenario, consent_command, new_request, worksheet_command
from tests.support.stores import GatedStore, StoreFactory
from vss_contracts import case_events as ev
from vss_contracts.types import Worksheet

WORKSHEETS = (Worksheet.INTERVIEW, Worksheet.ORDINARY_DAY)


def complete(worksheet: Worksheet, clock: FixedClock) -> Action:
    return lambda case: case.complete_worksheet(worksheet_command(clock.today(), worksheet=worksheet))


def test_two_stores_saving_the_same_version_one_wins_the_other_gets_concurrent_write(
    consented: CaseScenario, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    before = store.max_position()
    racers = [open_store(), open_store()]
    context = consented.service.context(new_request(consented.actors.region))
    # Both load (and decide) before either saves.
    cases: list[Case] = [racer.load(case_id) for racer in racers]
    for case, worksheet in zip(cases, WORKSHEETS, strict=True):
        complete(worksheet, clock)(case.handling(context))
        assert case.version == version + 1
    event_ids = [cast(CaseEvent, case.pending_events[0]).meta.event_id for case in cases]
    meet = barrier(2)

    def save(index: int) -> SaveResult:
        meet.wait()
        return racers[index].save(cases[index])

    outcomes = run_concurrently(lambda: save(0), lambda: save(1))

    wins = [o for o in outcomes if isinstance(o, SaveResult)]
    losses = [o for o in outcomes if isinstance(o, ConcurrentWrite)]
    assert (len(wins), len(losses)) == (1, 1), outcomes
    (won,) = wins
    winner, loser = outcomes.index(won), 1 - outcomes.index(won)
    assert won.version == version + 1
    assert store.max_position() == before + 1 == won.position
    (stored,) = store.history(case_id, version, 10)
    assert (stored.version, stored.position) == (version + 1, won.position)
    assert stored.event_id == won.events[0].event_id == event_ids[winner]
    assert stored.data["worksheet"] == WORKSHEETS[winner].value
    assert event_ids[loser] not in {e.event_id for e in store.history(case_id, 0, 100)}
    assert store.head(case_id) == (version + 1, stored.hash)
    assert store.verify(case_id) is None
    # The loser's store does not keep its refused copy: it loads what was stored.
    assert racers[loser].load(case_id).head_hash == stored.hash


def test_a_refused_commit_writes_nothing_and_the_same_store_commits_the_next(
    consented: CaseScenario, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    loser = open_store()
    context = consented.service.context(new_request(consented.actors.region))
    stale = loser.load(case_id)
    complete(Worksheet.INTERVIEW, clock)(stale.handling(context))
    store.save(complete_once(store.load(case_id), Worksheet.ORDINARY_DAY, clock, consented))
    key = IdempotencyRecord(key_hash="k" * 64, fingerprint="f", case_id=case_id, result={"version": 0})

    with pytest.raises(ConcurrentWrite):
        loser.save(stale, key)

    # Rolled back whole: neither its Idempotency-Key record nor a head of its own.
    assert loser.find_idempotency(key.key_hash) is None
    (stored,) = store.history(case_id, version, 10)
    assert store.head(case_id) == (version + 1, stored.hash)
    # Its connection is not left in the refused transaction: its next commit lands.
    fresh = complete_once(loser.load(case_id), Worksheet.INTERVIEW, clock, consented)
    assert loser.save(fresh, key).version == version + 2
    assert store.find_idempotency(key.key_hash) is not None
    assert store.verify(case_id) is None


def complete_once(case: Case, worksheet: Worksheet, clock: FixedClock, scenario: CaseScenario) -> Case:
    complete(worksheet, clock)(case.handling(scenario.service.context(new_request(scenario.actors.region))))
    return case


def test_two_commands_with_the_same_expected_version_one_gets_version_conflict(
    consented: CaseScenario, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    before = store.max_position()
    meet = barrier(2)
    services = [CaseService(GatedStore(open_store(), meet), clock) for _ in range(2)]

    def command(index: int) -> CommandResult:
        request = new_request(consented.actors.region, expected_version=version)
        return services[index].execute(request, case_id, complete(WORKSHEETS[index], clock))

    outcomes = run_concurrently(lambda: command(0), lambda: command(1))

    results = [o for o in outcomes if isinstance(o, CommandResult)]
    conflicts = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert (len(results), len(conflicts)) == (1, 1), outcomes
    (result,), (conflict,) = results, conflicts
    assert (result.version, result.replayed) == (version + 1, False)
    assert (conflict.case_id, conflict.expected, conflict.actual) == (case_id, version, version + 1)
    assert store.max_position() == before + 1
    (stored,) = store.history(case_id, version, 10)
    assert (str(stored.event_id), stored.position) == (result.events[0]["id"], result.position)
    assert store.verify(case_id) is None


def test_without_expected_version_the_later_command_is_retried_on_the_stored_case(
    consented: CaseScenario, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    meet = barrier(2)
    services = [CaseService(GatedStore(open_store(), meet), clock) for _ in range(2)]

    def command(index: int) -> CommandResult:
        request = new_request(consented.actors.region)
        return services[index].execute(request, case_id, complete(WORKSHEETS[index], clock))

    outcomes = run_concurrently(lambda: command(0), lambda: command(1))

    assert all(isinstance(o, CommandResult) for o in outcomes), outcomes
    assert sorted(o.version for o in outcomes) == [version + 1, version + 2]
    history = store.history(case_id, version, 10)
    assert [e.type for e in history] == [ev.WorksheetCompleted.TYPE] * 2
    assert {e.data["worksheet"] for e in history} == {w.value for w in WORKSHEETS}
    assert history[1].prev_hash == history[0].hash
    assert store.verify(case_id) is None


def _second_store_writes(consented: CaseScenario, other: CaseEventStore, clock: FixedClock) -> UUID:
    """Cache the case in the scenario's store, then write a new version through ``other``."""
    case_id = consented.case_id
    assert case_id is not None
    consented.service.store.load(case_id)
    CaseService(other, clock).execute(
        new_request(consented.actors.region), case_id, complete(Worksheet.ORDINARY_DAY, clock)
    )
    return case_id


def test_a_stale_cached_case_costs_a_retry_not_a_wrong_write(
    consented: CaseScenario, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    version = consented.version
    case_id = _second_store_writes(consented, open_store(), clock)

    # A client that saw the other write: its expected version is the stored one.
    current = consented.service.execute(
        new_request(consented.actors.region, expected_version=version + 1),
        case_id,
        complete(Worksheet.INTERVIEW, clock),
    )
    # A client that did not: refused, with the stored version.
    with pytest.raises(VersionConflict) as conflict:
        consented.service.execute(
            new_request(consented.actors.region, expected_version=version + 1),
            case_id,
            complete(Worksheet.EVERYDAY_FUNCTIONING, clock),
        )

    assert current.version == version + 2
    assert (conflict.value.expected, conflict.value.actual) == (version + 1, version + 2)
    assert [e.data["worksheet"] for e in store.history(case_id, version, 10)] == ["ordinary_day", "interview"]
    assert store.verify(case_id) is None


def test_a_stale_cached_case_does_not_refuse_a_valid_command(
    service: CaseService, store: CaseEventStore, open_store: StoreFactory, clock: FixedClock
) -> None:
    scenario = CaseScenario(service, clock)
    scenario.open()
    scenario.assign_coordinators()  # the service's store now caches the case without consent
    case_id = scenario.case_id
    assert case_id is not None
    CaseService(open_store(), clock).execute(
        new_request(scenario.actors.municipality),
        case_id,
        lambda case: case.give_consent(consent_command(clock.today())),
    )

    # Consent is stored, so the worksheet may be completed.
    result = service.execute(
        new_request(scenario.actors.region), case_id, complete(Worksheet.INTERVIEW, clock)
    )

    assert result.version == 5
    assert [e.type for e in store.history(case_id, 3, 10)] == [
        ev.ConsentGiven.TYPE,
        ev.WorksheetCompleted.TYPE,
    ]


def test_commands_on_one_case_in_one_process_take_turns_and_none_conflicts(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    """As many callers as may wait for one case (``CaseTurns.most_waiting``, 8) and the one
    holding it, none sending If-Match, 9 commands each on the same case through one service
    (one API process): every command lands, one version each, and no caller gets a conflict."""
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    service = consented.service
    callers = service.turns.most_waiting + 1
    start = barrier(callers)

    def caller(index: int) -> list[int]:
        start.wait()
        worksheet = WORKSHEETS[index % 2]
        request = new_request(consented.actors.region)
        return [service.execute(request, case_id, complete(worksheet, clock)).version for _ in range(9)]

    outcomes = run_concurrently(*(lambda index=index: caller(index) for index in range(callers)))

    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    versions = sorted(v for versions in outcomes for v in versions)
    assert versions == list(range(version + 1, version + 9 * callers + 1))
    assert store.load(case_id).version == version + 9 * callers
    assert len(service.turns) == 0  # nothing held once all are done
