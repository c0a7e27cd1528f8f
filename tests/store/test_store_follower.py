"""PostgreSQL: a follower tailing the log while writers commit sees every event once, in order.

Positions come from a sequence, so they are not issued in commit order unless inserts
serialise (the table lock): otherwise a follower asking for "greater than the last
position I saw" could pass over an event that commits later with a smaller position.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import timedelta
from uuid import UUID

import pytest

from services.case.application.service import CaseService, CommandResult
from services.case.infrastructure.store import StoreConfig, migrate
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario
from tests.support.stores import open_case_store
from vss_contracts.types import Worksheet

pytestmark = pytest.mark.postgres

WRITERS = 8
COMMANDS_PER_WRITER = 30
POOL_SIZE = 1
DEADLINE_SECONDS = 120.0
EXTRA_WORKSHEETS = (
    Worksheet.ORDINARY_DAY,
    Worksheet.EVERYDAY_FUNCTIONING,
    Worksheet.LIFESTYLE_AND_HEALTH,
    Worksheet.CONTACT_DETAILS,
    Worksheet.RELATIVE_INTERVIEW,
)


def write_one_case(url: str, commands: int) -> list[CommandResult]:
    """One writer: its own store instance and clock, one case, ``commands`` commands."""
    store = open_case_store(url, pool_size=POOL_SIZE)
    try:
        clock = FixedClock()
        scenario = CaseScenario(CaseService(store, clock), clock, step=timedelta(hours=1))
        scenario.to_first_sip()  # 11 commands; the summary stores 2 events, the SIP 3
        steps = (
            lambda i: scenario.complete_worksheet(EXTRA_WORKSHEETS[i % len(EXTRA_WORKSHEETS)]),
            lambda i: scenario.decide_sip(),  # a new SIP version: 2 events in one commit
            lambda i: scenario.hold_meeting(),
        )
        index = 0
        while len(scenario.results) < commands:
            steps[index % len(steps)](index)
            index += 1
        return scenario.results
    finally:
        store.close()


def test_a_follower_sees_every_event_once_in_log_order_while_writers_commit(postgres_url: str) -> None:
    migrate(StoreConfig(postgres_url))
    follower = open_case_store(postgres_url, pool_size=POOL_SIZE)
    results: dict[int, list[CommandResult]] = {}
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            results[index] = write_one_case(postgres_url, COMMANDS_PER_WRITER)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=writer, args=(i,), name=f"writer-{i}", daemon=True) for i in range(WRITERS)
    ]
    seen: list[tuple[UUID, int, int]] = []
    batches_during_writes = 0
    last = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        for thread in threads:
            thread.start()
        while True:
            assert time.monotonic() < deadline, f"follower stuck at position {last}"
            writers_done = not any(thread.is_alive() for thread in threads)
            batch = follower.read_log(last, limit=50)
            for notification in batch:
                assert notification.id > last, "the log went backwards"
                seen.append(
                    (UUID(str(notification.originator_id)), notification.originator_version, notification.id)
                )
                last = notification.id
            if batch:
                batches_during_writes += 0 if writers_done else 1
            elif writers_done and last >= follower.max_position():
                break
            else:
                time.sleep(0.002)
    finally:
        for thread in threads:
            thread.join(DEADLINE_SECONDS)
        follower.close()

    assert not errors, errors
    assert len(results) == WRITERS
    reported = {
        (result.case_id, event["version"], event["position"])
        for writer_results in results.values()
        for result in writer_results
        for event in result.events
    }
    # Every event exactly once, in strictly increasing log order.
    missing = reported - set(seen)
    assert not missing, f"the follower missed {len(missing)} of {len(reported)} events"
    assert len(seen) == len(set(seen)) == len(reported), "the follower saw an event twice"
    assert set(seen) == reported
    positions = [position for _, _, position in seen]
    assert positions == sorted(positions)
    # Each case's events arrive in version order, 1, 2, 3, …
    versions: defaultdict[UUID, list[int]] = defaultdict(list)
    for case_id, version, _ in seen:
        versions[case_id].append(version)
    assert len(versions) == WRITERS
    for case_versions in versions.values():
        assert case_versions == list(range(1, len(case_versions) + 1))
    # A commit of several events is contiguous in the log: nothing interleaves it.
    multi = [r for rs in results.values() for r in rs if len(r.events) > 1]
    assert {len(r.events) for r in multi} == {2, 3}
    for result in multi:
        event_positions = [event["position"] for event in result.events]
        assert event_positions == list(range(event_positions[0], event_positions[0] + len(event_positions)))
    assert all(len(rs) == COMMANDS_PER_WRITER for rs in results.values())
    assert batches_during_writes > 0, "the follower should have tailed the log while writers wrote"
