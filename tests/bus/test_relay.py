"""The relay against a real nats-server: order, commits, resume, lease, lost tail."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import nats
import pytest

from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore
from services.shared.bus.names import BusNames
from services.shared.bus.relay import OutboxMessage, Relay, cancel_and_wait, group_commits, pack_commits
from tests.support.bus import read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.scenario import FIRST_SIP_EVENT_TYPES, drive_to_first_sip
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID


def stream(nats_url: str, names: BusNames, start: int = 1):  # type: ignore[no-untyped-def]
    return asyncio.run(read_stream(nats_url, names.stream, names.subjects, start=start))


def test_every_event_is_published_once_in_log_order_as_its_cloudevent(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
) -> None:
    drive_to_first_sip(service, clock)
    drive_to_first_sip(service, clock)
    log = store.read_log(0, 1000)
    with run_relay(store):
        assert wait_until(lambda: len(stream(nats_url, bus_names)) >= len(log), 10)
    messages = stream(nats_url, bus_names)
    assert [m.position for m in messages] == [n.id for n in log]
    assert [m.sequence for m in messages] == list(range(1, len(log) + 1))
    assert [m.event.type for m in messages[: len(FIRST_SIP_EVENT_TYPES)]] == list(FIRST_SIP_EVENT_TYPES)
    for message, notification in zip(messages, log, strict=True):
        expected = store.cloud_event(notification)
        assert message.event == expected
        assert message.headers[HEADER_MSG_ID] == expected.id
        assert message.headers[HEADER_EVENT_TYPE] == expected.type
        assert message.headers[HEADER_LOG_POSITION] == str(notification.id)
        assert message.subject == bus_names.subject(expected.subject, expected.type.split(".")[-2])


def test_a_restarted_relay_resumes_from_the_stream_tail_without_duplicates(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
) -> None:
    drive_to_first_sip(service, clock)
    with run_relay(store):
        assert wait_until(lambda: len(stream(nats_url, bus_names)) == 14, 10)
    drive_to_first_sip(service, clock)  # written while no relay runs
    with run_relay(store):
        assert wait_until(lambda: len(stream(nats_url, bus_names)) == 28, 10)
    messages = stream(nats_url, bus_names)
    assert len({m.event.id for m in messages}) == 28
    assert [m.position for m in messages] == [n.id for n in store.read_log(0, 100)]


def test_a_stream_that_lost_its_tail_is_refilled_from_the_store(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
) -> None:
    drive_to_first_sip(service, clock)
    with run_relay(store):
        assert wait_until(lambda: len(stream(nats_url, bus_names)) == 14, 10)

    async def lose_tail() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for sequence in (12, 13, 14):  # the SIP's commit
            await js.delete_msg(bus_names.stream, sequence)
        await nc.close()

    asyncio.run(lose_tail())
    assert len(stream(nats_url, bus_names)) == 11
    with run_relay(store):
        assert wait_until(lambda: len(stream(nats_url, bus_names)) == 14, 10)
    messages = stream(nats_url, bus_names)
    assert [m.position for m in messages] == [n.id for n in store.read_log(0, 100)]
    assert [m.sequence for m in messages][-3:] == [15, 16, 17]  # refilled after the gap


def test_only_one_relay_publishes_and_a_second_takes_over_when_the_first_stops(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
) -> None:
    drive_to_first_sip(service, clock)
    with run_relay(store) as first:
        assert wait_until(lambda: first.relay.published == 14, 10)
        with run_relay(store) as second:
            drive_to_first_sip(service, clock)
            assert wait_until(lambda: first.relay.published == 28, 10)
            time.sleep(0.5)
            assert second.relay.published == 0  # it waits for the lease
            first.stop()
            drive_to_first_sip(service, clock)
            assert wait_until(lambda: second.relay.published == 14, 10)  # took over, from the tail
    messages = stream(nats_url, bus_names)
    assert [m.position for m in messages] == [n.id for n in store.read_log(0, 100)]


def test_the_whole_history_is_read_in_order_from_sequence_1(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
) -> None:
    """VSS_CASE keeps every event from sequence 1 (the services' replays; organisations read
    VSS_SHARE, through examples/subscriber/, tested in tests/contracts/test_example_subscriber.py)."""
    for _ in range(3):
        drive_to_first_sip(service, clock)
    log = store.read_log(0, 1000)
    with run_relay(store):
        assert wait_until(lambda: len(stream(nats_url, bus_names)) == len(log), 10)
    messages = stream(nats_url, bus_names)
    assert [m.sequence for m in messages] == list(range(1, len(log) + 1))
    assert [m.event.id for m in messages] == [store.cloud_event(n).id for n in log]


def test_small_pages_keep_commits_whole_and_the_log_order(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
) -> None:
    for _ in range(3):
        drive_to_first_sip(service, clock)
    log = store.read_log(0, 1000)
    with run_relay(store, read_limit=4):  # pages end inside commits (the SIP's three events)
        assert wait_until(lambda: len(stream(nats_url, bus_names)) == len(log), 10)
    messages = stream(nats_url, bus_names)
    assert [m.position for m in messages] == [n.id for n in log]
    assert [m.event for m in messages] == [store.cloud_event(n) for n in log]


def test_grouping_holds_back_a_run_cut_by_the_page_end() -> None:
    def message(position: int, case: str) -> OutboxMessage:
        return OutboxMessage(position, f"e{position}", "s", b"", {}, case)

    page = [message(1, "a"), message(2, "a"), message(3, "b"), message(4, "b")]
    assert [[m.position for m in run] for run in group_commits(page, complete=False)] == [[1, 2]]
    assert [[m.position for m in run] for run in group_commits(page, complete=True)] == [[1, 2], [3, 4]]
    one_run = [message(1, "a"), message(2, "a")]
    assert [[m.position for m in run] for run in group_commits(one_run, complete=False)] == [[1, 2]]


def test_commits_are_packed_whole_into_batches_only_when_one_has_several_events() -> None:
    def commit(case: str, *positions: int) -> list[OutboxMessage]:
        return [OutboxMessage(p, f"e{p}", "s", b"", {}, case) for p in positions]

    def shape(groups: list[list[OutboxMessage]]) -> list[list[int]]:
        return [[m.position for m in group] for group in groups]

    singles = [commit("a", 1), commit("b", 2), commit("a", 3)]
    assert shape(pack_commits(singles)) == [[1], [2], [3]]  # no batch to pay for
    mixed = [commit("a", 1), commit("b", 2, 3, 4), commit("c", 5), commit("a", 6, 7), commit("d", 8)]
    assert shape(pack_commits(mixed)) == [[1, 2, 3, 4, 5, 6, 7, 8]]
    # At the limit a batch closes before the commit that would not fit: never split.
    assert shape(pack_commits(mixed, limit=4)) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert shape(pack_commits(mixed, limit=3)) == [[1], [2, 3, 4], [5, 6, 7], [8]]
    assert shape(mixed) == [[1], [2, 3, 4], [5], [6, 7], [8]]  # the commits given are left as they were


def test_a_task_that_slips_a_cancel_is_cancelled_again_until_it_stops() -> None:
    # Python 3.11's asyncio.wait_for swallows a cancel that lands as its future completes;
    # the relay's stop must not hang on a publisher that lost one that way.
    async def main() -> int:
        swallowed = 0

        async def slippery() -> None:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed += 1

        task = asyncio.create_task(slippery())
        await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await cancel_and_wait(task)
        assert task.cancelled()
        return swallowed

    assert asyncio.run(main()) == 1


@pytest.mark.parametrize("local", [True, False], ids=["local", "network"])
def test_the_relay_renders_in_its_loop_and_fetches_there_only_from_a_local_log(local: bool) -> None:
    class ThreadNoting:
        def __init__(self) -> None:
            self.local = local
            self.threads: dict[str, int] = {}

        def fetch(self, after: int, limit: int) -> Sequence[int]:
            self.threads["fetch"] = threading.get_ident()
            return [1]

        def render(self, rows: Sequence[int]) -> Sequence[OutboxMessage]:
            self.threads["render"] = threading.get_ident()
            return []

    log = ThreadNoting()

    async def read_once() -> int:
        await Relay(log, "nats://unused")._read(0)
        return threading.get_ident()

    loop_thread = asyncio.run(read_once())
    assert log.threads["render"] == loop_thread
    assert (log.threads["fetch"] == loop_thread) is local


def test_the_case_log_is_local_on_sqlite_only(store: CaseEventStore, bus_names: BusNames) -> None:
    assert CaseEventLog(store, bus_names).local is (not store.config.is_postgres)
