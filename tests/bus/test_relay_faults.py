"""Fault runs: the relay killed with SIGKILL while commands are written, and a NATS restart.

Each ends with the stream holding every stored event exactly once, in the log's order
(so every case's events in version order).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.bus.names import BusNames
from tests.support.actors import ACTORS
from tests.support.bus import RelayProcess, StreamMessage, read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.nats import NatsServer, private_nats_server
from tests.support.scenario import (
    consent_command,
    drive_to_first_sip,
    new_request,
    open_case_command,
    worksheet_command,
)
from vss_contracts.types import Worksheet

pytestmark = pytest.mark.faults

TOTAL_EVENTS = 2000
WRITERS = 4
CASES_PER_WRITER = 10


def write_events(store_url: str, total: int, *, pause: float, stop: threading.Event) -> list[BaseException]:
    """``total`` events from concurrent writers (case openings and worksheets), paced by ``pause``."""
    errors: list[BaseException] = []
    per_writer = total // WRITERS

    def writer() -> None:
        store = CaseEventStore(StoreConfig(store_url))
        clock = FixedClock()
        service = CaseService(store, clock)
        try:
            cases = []
            consent = consent_command(clock.today())
            for _ in range(CASES_PER_WRITER):  # two events each
                case_id = service.open_case(
                    new_request(ACTORS.region), open_case_command(clock.today())
                ).case_id
                service.execute(new_request(ACTORS.region), case_id, lambda c: c.give_consent(consent))
                cases.append(case_id)
            command = worksheet_command(clock.today(), worksheet=Worksheet.ORDINARY_DAY)
            for i in range(per_writer - 2 * CASES_PER_WRITER):
                if stop.is_set():
                    return
                service.execute(
                    new_request(ACTORS.region), cases[i % len(cases)], lambda c: c.complete_worksheet(command)
                )
                time.sleep(pause)
        except BaseException as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_exactly_once_in_order(messages: list[StreamMessage], store: CaseEventStore) -> None:
    log = store.read_log(0, 100_000)
    ids = [m.event.id for m in messages]
    assert len(ids) == len(set(ids)), "a duplicate in the stream"
    assert [m.position for m in messages] == [n.id for n in log], "a gap or a reordering"
    versions: dict[str, int] = {}
    for message in messages:
        event = message.event
        assert event.caseversion == versions.get(event.subject, 0) + 1
        versions[event.subject] = event.caseversion


def test_relay_killed_at_random_moments_publishes_every_event_once_in_order(
    sqlite_url: str, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    migrate(StoreConfig(sqlite_url))
    relay = RelayProcess(sqlite_url, nats_url, bus_names, tmp_path)
    stop = threading.Event()
    outcome: list[list[BaseException]] = []
    writers = threading.Thread(
        target=lambda: outcome.append(write_events(sqlite_url, TOTAL_EVENTS, pause=0.012, stop=stop))
    )
    rng = random.Random(7)
    relay.start()
    writers.start()
    kills = 0
    try:
        while writers.is_alive() or kills < 5:
            time.sleep(rng.uniform(0.6, 1.6))
            relay.kill()
            kills += 1
            relay.start()
        writers.join()
        assert outcome == [[]], outcome
        store = CaseEventStore(StoreConfig(sqlite_url))
        try:
            expected = len(store.read_log(0, 100_000))
            assert expected == TOTAL_EVENTS

            def complete() -> bool:
                return (
                    len(asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))) >= expected
                )

            assert wait_until(complete, 30, interval=0.3), relay.logs()[-3000:]
            assert_exactly_once_in_order(
                asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects)), store
            )
        finally:
            store.close()
    finally:
        stop.set()
        writers.join(30)
        relay.stop()
    assert kills >= 5


def test_the_relay_catches_up_after_nats_is_stopped_and_restarted(
    sqlite_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    migrate(StoreConfig(sqlite_url))
    with private_nats_server() as server:
        relay = RelayProcess(sqlite_url, server.url, bus_names, tmp_path)
        relay.start()
        stop = threading.Event()
        writers = threading.Thread(
            target=write_events, args=(sqlite_url, 800), kwargs={"pause": 0.01, "stop": stop}
        )
        try:
            writers.start()
            time.sleep(0.8)
            assert writers.is_alive(), "the restart must fall while events are written"
            restart(server, down_for=1.5)
            writers.join()
            store = CaseEventStore(StoreConfig(sqlite_url))
            try:
                expected = len(store.read_log(0, 100_000))

                def complete() -> bool:
                    messages = asyncio.run(read_stream(server.url, bus_names.stream, bus_names.subjects))
                    return len(messages) >= expected

                assert wait_until(complete, 30, interval=0.3), relay.logs()[-3000:]
                assert_exactly_once_in_order(
                    asyncio.run(read_stream(server.url, bus_names.stream, bus_names.subjects)), store
                )
            finally:
                store.close()
            assert relay.process is not None
            assert relay.process.poll() is None, "the relay survived the restart"
        finally:
            stop.set()
            writers.join(30)
            relay.stop()


def restart(server: NatsServer, *, down_for: float) -> None:
    server.stop()
    time.sleep(down_for)
    assert server.embedded is not None
    server.embedded.start()


def test_the_relay_waits_for_a_nats_server_that_starts_late(
    service, store: CaseEventStore, clock: FixedClock, bus_names: BusNames, tmp_path: Path, sqlite_url: str
) -> None:
    drive_to_first_sip(service, clock)
    server = EmbeddedNatsServer(tmp_path / "jetstream", log_file=tmp_path / "nats.log")
    relay = RelayProcess(store.config.url, server.url, bus_names, tmp_path)
    relay.start()
    try:
        time.sleep(1.5)
        assert relay.process is not None
        assert relay.process.poll() is None, "the relay must not crash while NATS is away"
        server.start()

        def complete() -> bool:
            return len(asyncio.run(read_stream(server.url, bus_names.stream, bus_names.subjects))) == 14

        assert wait_until(complete, 20, interval=0.2), relay.logs()[-3000:]
    finally:
        relay.stop()
        server.stop()
