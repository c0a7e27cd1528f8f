"""The store through the application: what a scenario stores, reloading, history, the log."""

from __future__ import annotations

from itertools import pairwise
from uuid import UUID

from services.case.application.service import CaseService
from services.case.infrastructure.store import CaseEventStore
from tests.support.clock import FixedClock
from tests.support.scenario import FIRST_SIP_EVENT_TYPES, CaseScenario, drive_to_first_sip
from tests.support.stores import StoreFactory
from vss_contracts import case_events as ev
from vss_contracts.types import Phase


def test_first_sip_scenario_stores_the_expected_events_in_order(
    service: CaseService, store: CaseEventStore, clock: FixedClock
) -> None:
    scenario = drive_to_first_sip(service, clock)
    assert scenario.case_id is not None

    history = store.history(scenario.case_id, 0, 100)

    assert [entry.type for entry in history] == list(FIRST_SIP_EVENT_TYPES)
    assert [entry.version for entry in history] == list(range(1, len(FIRST_SIP_EVENT_TYPES) + 1))
    positions = [entry.position for entry in history]
    assert positions == sorted(set(positions))
    # What each command reported is what was stored, event for event.
    reported = [(e["id"], e["type"], e["version"], e["position"]) for r in scenario.results for e in r.events]
    stored = [(str(e.event_id), e.type, e.version, e.position) for e in history]
    assert reported == stored
    # The summary and the SIP each stored their consequences in the same command.
    assert [len(r.events) for r in scenario.results] == [1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 3]
    sip = scenario.results[-1]
    assert [e["type"] for e in sip.events] == [
        ev.SipDecided.TYPE,
        ev.ConsentRenewed.TYPE,
        ev.PhaseChanged.TYPE,
    ]
    assert (sip.version, sip.position) == (history[-1].version, history[-1].position)
    # Metadata survives the round trip: actor, organisation, chain.
    assert history[0].actor_id == scenario.actors.region.user_id
    assert history[3].actor_organisation == scenario.actors.municipality.organisation_id
    assert history[-1].prev_hash == history[-2].hash
    assert store.head(scenario.case_id) == (history[-1].version, history[-1].hash)
    assert store.case_ids() == [scenario.case_id]


def test_a_new_store_instance_loads_an_equal_case(
    service: CaseService, store: CaseEventStore, clock: FixedClock, open_store: StoreFactory
) -> None:
    scenario = drive_to_first_sip(service, clock)
    case_id = scenario.case_id
    assert case_id is not None
    original = store.load(case_id)

    reloaded = open_store().load(case_id)

    assert reloaded is not original
    assert reloaded.state == original.state
    assert reloaded.version == original.version == len(FIRST_SIP_EVENT_TYPES)
    assert reloaded.head_hash == original.head_hash == store.history(case_id, 0, 100)[-1].hash
    assert reloaded.state.phase is Phase.WORKING
    assert reloaded.state.sip is not None
    assert reloaded.state.sip.version == 1
    assert {(c.organisation.id, c.user_id) for c in reloaded.state.coordinators.values()} == {
        (a.organisation_id, a.user_id) for a in scenario.actors.coordinators
    }
    assert set(reloaded.state.members.keys()) == set(scenario.member_ids.values())
    assert reloaded.created_on == original.created_on
    assert reloaded.modified_on == original.modified_on == clock.now()


def test_history_pages_by_version_with_increasing_positions(
    service: CaseService, store: CaseEventStore, clock: FixedClock
) -> None:
    scenario = drive_to_first_sip(service, clock)
    case_id = scenario.case_id
    assert case_id is not None
    everything = store.history(case_id, 0, 1000)

    pages = []
    after = 0
    while page := store.history(case_id, after, 4):
        pages.append(page)
        after = page[-1].version

    assert [len(page) for page in pages] == [4, 4, 4, 2]
    assert [entry for page in pages for entry in page] == everything
    for page in pages:
        versions = [entry.version for entry in page]
        assert versions == list(range(versions[0], versions[0] + len(page)))
    positions = [entry.position for entry in everything]
    assert all(a < b for a, b in pairwise(positions))
    assert store.history(case_id, 6, 2) == everything[6:8]
    assert store.history(case_id, len(everything), 10) == []
    assert store.history(UUID(int=0), 0, 10) == []


def test_read_log_returns_what_follows_a_position_in_log_order(
    service: CaseService, store: CaseEventStore, clock: FixedClock
) -> None:
    # Two cases written in turns, so the log interleaves them.
    first, second = CaseScenario(service, clock), CaseScenario(service, clock)
    first.open()
    second.open()
    first.assign_coordinators()
    second.assign_coordinators()
    first.give_consent()
    second.give_consent()
    first.complete_worksheet()
    second.complete_worksheet()
    first.summarise_mapping()
    assert first.case_id is not None
    assert second.case_id is not None

    log = store.read_log(0)
    by_case = {
        case_id: {(e.version, e.position) for e in store.history(case_id, 0, 100)}
        for case_id in (first.case_id, second.case_id)
    }
    assert len(log) == sum(len(v) for v in by_case.values()) == 12
    assert [n.id for n in log] == sorted({n.id for n in log})
    assert {(n.originator_id, n.originator_version, n.id) for n in log} == {
        (case_id, version, position) for case_id, pairs in by_case.items() for version, position in pairs
    }
    assert {n.originator_id for n in log[:2]} == {first.case_id, second.case_id}
    assert log[-1].topic == ev.PhaseChanged.TYPE
    assert store.max_position() == log[-1].id

    for index, notification in enumerate(log):
        assert list(store.read_log(notification.id)) == log[index + 1 :]
    assert list(store.read_log(log[2].id, limit=3)) == log[3:6]
    assert list(store.read_log(store.max_position())) == []
