"""The relay wakes on commit on SQLite (ADR 0004, decision 9): a datagram per commit on
``<store>.relay-wake``, with polling as the fallback that correctness rests on."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.log_waiter import waiter_for
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.names import BusNames
from services.shared.bus.relay import PollingWaiter, Relay, RelaySettings
from services.shared.bus.wake import BUSY, MAX_SOCKET_PATH, WAITING, CommitBell, WakeWaiter, wake_path
from tests.bus.conftest import RelayThread
from tests.support.bus import RelayProcess, read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario

LONG = 30.0  # a fallback poll far longer than any wait below: only a wake explains a quick return


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a path short enough for a socket address (pytest's tmp_path may not be)."""
    directory = Path(tempfile.mkdtemp(prefix="vss-wake-", dir="/tmp")).resolve()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def wake_store(short_dir: Path) -> Iterator[CaseEventStore]:
    url = f"sqlite:///{short_dir}/events.sqlite"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    try:
        yield store
    finally:
        store.close()


def socket_path(store: CaseEventStore) -> str:
    path = wake_path(store.config.sqlite_path())
    assert path is not None
    return path


def open_a_case(store: CaseEventStore) -> None:
    clock = FixedClock()
    CaseScenario(CaseService(store, clock), clock).open()


async def timed_wait(waiter: WakeWaiter, timeout: float) -> float:
    started = time.monotonic()
    await waiter.wait(timeout)
    return time.monotonic() - started


def test_the_wake_socket_sits_beside_the_store_file_unless_its_path_is_too_long(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wake_path(f"{short_dir}/events.sqlite") == f"{short_dir}/events.sqlite.relay-wake"
    monkeypatch.chdir(short_dir)  # a relative store path: beside the file the process opens
    assert wake_path("data/events.sqlite") == f"{short_dir}/data/events.sqlite.relay-wake"
    assert wake_path("/" + "d" * MAX_SOCKET_PATH + "/events.sqlite") is None
    assert wake_path(":memory:") is None


def test_a_commit_wakes_the_waiter_long_before_its_fallback_poll(wake_store: CaseEventStore) -> None:
    waiter = WakeWaiter(socket_path(wake_store), bound_wait=LONG)

    async def scenario() -> tuple[float, float]:
        first = await timed_wait(waiter, 0.01)  # binds, and returns at once: read the store again
        assert waiter.bound
        assert await timed_wait(waiter, 0.01) < 1.0  # arms (writers ring now): read once more
        committer = threading.Timer(0.2, open_a_case, args=(wake_store,))
        committer.start()
        try:
            woken = await timed_wait(waiter, 0.01)
        finally:
            committer.join()
        return first, woken

    try:
        first, woken = asyncio.run(scenario())
    finally:
        waiter.release()
    assert first < 1.0
    assert 0.1 < woken < 5.0, f"woke after {woken:.3f} s (fallback {LONG} s)"
    assert waiter.wakes == 1


def test_a_commit_while_the_relay_is_busy_ends_its_next_wait_at_once(wake_store: CaseEventStore) -> None:
    waiter = WakeWaiter(socket_path(wake_store), bound_wait=LONG)

    async def scenario() -> tuple[float, float]:
        await waiter.wait(0.01)  # bound
        open_a_case(wake_store)  # committed while the relay reads or publishes: rings no one
        busy = await timed_wait(waiter, 0.01)  # arms, and returns for the read that finds it
        open_a_case(wake_store)  # committed after the relay armed, while it reads: rings
        armed = await timed_wait(waiter, 0.01)
        return busy, armed

    try:
        busy, armed = asyncio.run(scenario())
    finally:
        waiter.release()
    assert busy < 1.0
    assert armed < 1.0
    assert waiter.wakes == 1


def flag(path: str) -> int:
    """The lock file's first byte: whether writers ring (ADR 0032)."""
    return Path(path + ".lock").read_bytes()[0]


def test_a_writer_rings_only_while_the_relay_waits(short_dir: Path) -> None:
    path = f"{short_dir}/events.sqlite.relay-wake"
    waiter = WakeWaiter(path, bound_wait=LONG)
    bell = CommitBell(path)

    async def scenario() -> None:
        await waiter.wait(0.01)  # binds: the relay reads the store next, so no one need ring
        assert flag(path) == BUSY
        bell.ring()
        assert await timed_wait(waiter, 0.01) < 1.0  # arms, and returns for one more read
        assert (waiter.wakes, flag(path)) == (0, WAITING)
        bell.ring()
        assert await timed_wait(waiter, 0.01) < 1.0  # the datagram ends the wait at once
        assert (waiter.wakes, flag(path)) == (1, BUSY)
        for _ in range(3):
            bell.ring()  # the relay reads and publishes: no datagram
        assert waiter._drain(waiter._sock) is False  # type: ignore[arg-type]
        assert await timed_wait(waiter, 0.01) < 1.0  # arms again
        assert flag(path) == WAITING

    try:
        asyncio.run(scenario())
    finally:
        waiter.release()
        bell.close()
    assert flag(path) == BUSY, "released: no relay waits"


def test_a_flag_a_killed_relay_left_waiting_is_reset_by_the_next_relay(short_dir: Path) -> None:
    path = f"{short_dir}/events.sqlite.relay-wake"
    holder = subprocess.Popen(
        [sys.executable, "-c", KILLED_WHILE_WAITING.format(path=path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None
        lines = iter(holder.stdout.readline, "")  # its log lines first
        assert any(line.strip() == "armed" for line in lines), "the holder never armed"
        assert flag(path) == WAITING
    finally:
        holder.kill()
        holder.wait()
    assert flag(path) == WAITING, "a SIGKILL leaves the flag as it was"
    bell = CommitBell(path)
    bell.ring()  # to a socket no one reads: no error, nothing lost
    waiter = WakeWaiter(path, bound_wait=LONG)
    try:
        asyncio.run(waiter.wait(0.01))
        assert waiter.bound
        assert flag(path) == BUSY, "the next relay has not read the store yet"
    finally:
        waiter.release()
        bell.close()


KILLED_WHILE_WAITING = """
import asyncio
from services.shared.bus.wake import WakeWaiter

waiter = WakeWaiter({path!r}, bound_wait=60)

async def main():
    await waiter.wait(0.01)  # binds
    await waiter.wait(0.01)  # arms
    print("armed", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_bell_that_found_no_relay_looks_again_after_a_while(short_dir: Path) -> None:
    path = f"{short_dir}/events.sqlite.relay-wake"
    bell = CommitBell(path, look_again=0.3)
    waiter = WakeWaiter(path, bound_wait=LONG)

    async def scenario() -> None:
        bell.ring()  # no lock file yet: the bell looks again in 0.3 s
        await waiter.wait(0.01)
        await waiter.wait(0.01)  # bound and armed
        bell.ring()
        assert waiter._drain(waiter._sock) is False  # type: ignore[arg-type]
        await asyncio.sleep(0.35)
        bell.ring()
        assert await timed_wait(waiter, 0.01) < 1.0
        assert waiter.wakes == 1

    try:
        asyncio.run(scenario())
    finally:
        waiter.release()
        bell.close()


def test_with_no_relay_listening_a_commit_succeeds(wake_store: CaseEventStore) -> None:
    assert not os.path.exists(socket_path(wake_store))
    open_a_case(wake_store)
    assert wake_store.max_position() == 1


def test_a_bell_with_a_full_queue_does_not_block_the_commit(short_dir: Path) -> None:
    path = f"{short_dir}/full.relay-wake"
    waiter = WakeWaiter(path, bound_wait=LONG)

    async def bind_and_arm() -> None:
        await waiter.wait(0.01)
        await waiter.wait(0.01)

    asyncio.run(bind_and_arm())  # waiting, as writers see it, and never reading
    bell = CommitBell(path)
    try:
        started = time.monotonic()
        for _ in range(5000):  # far more than a datagram queue holds
            bell.ring()
        assert time.monotonic() - started < 5.0
    finally:
        bell.close()
        waiter.release()


def test_a_socket_left_by_a_dead_relay_is_replaced(wake_store: CaseEventStore) -> None:
    path = socket_path(wake_store)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(path)
    dead.close()  # its file stays, with no one bound
    waiter = WakeWaiter(path, bound_wait=LONG)

    async def scenario() -> float:
        await waiter.wait(0.01)
        open_a_case(wake_store)
        return await timed_wait(waiter, 0.01)

    try:
        assert asyncio.run(scenario()) < 1.0
        assert waiter.bound
    finally:
        waiter.release()
    assert not os.path.exists(path), "released: the socket file is removed"


def test_a_file_that_is_not_a_socket_is_left_alone_and_the_waiter_polls(short_dir: Path) -> None:
    path = f"{short_dir}/events.sqlite.relay-wake"
    Path(path).write_text("not a socket")
    waiter = WakeWaiter(path, bound_wait=LONG)
    assert asyncio.run(timed_wait(waiter, 0.05)) < 1.0
    assert not waiter.bound
    assert Path(path).read_text() == "not a socket"


def test_a_second_waiter_polls_until_the_first_releases_then_binds(wake_store: CaseEventStore) -> None:
    path = socket_path(wake_store)
    first = WakeWaiter(path, bound_wait=LONG)
    second = WakeWaiter(path, bound_wait=LONG, retry_bind=0.1)

    async def scenario() -> None:
        await first.wait(0.01)
        assert first.bound
        # Not bound: it sleeps the relay's short timeout, as polling does.
        assert await timed_wait(second, 0.05) < 1.0
        assert not second.bound
        first.release()
        await asyncio.sleep(0.15)
        await second.wait(0.01)
        assert second.bound
        open_a_case(wake_store)
        assert await timed_wait(second, 0.01) < 1.0

    try:
        asyncio.run(scenario())
    finally:
        first.release()
        second.release()


def test_the_bootstrap_waiter_on_sqlite_is_the_wake_socket_or_polling(wake_store: CaseEventStore) -> None:
    waiter = waiter_for(wake_store.config, wake_poll_interval=0.5)
    assert isinstance(waiter, WakeWaiter)
    assert waiter.path == socket_path(wake_store)
    assert waiter.bound_wait == 0.5
    assert isinstance(waiter_for(wake_store.config, wake=False), PollingWaiter)


# ------------------------------------------------------------------------ with the relay
def relay_on(store: CaseEventStore, nats_url: str, names: BusNames, waiter: WakeWaiter) -> Relay:
    return Relay(
        CaseEventLog(store, names),
        nats_url,
        settings=RelaySettings(names=names, lease_ttl=1.0, ack_timeout=2.0),
        waiter=waiter,
    )


def stream_length(nats_url: str, names: BusNames) -> int:
    return len(asyncio.run(read_stream(nats_url, names.stream, names.subjects)))


def test_the_relay_publishes_a_commit_on_its_wake_not_its_poll(
    wake_store: CaseEventStore, nats_url: str, bus_names: BusNames
) -> None:
    open_a_case(wake_store)
    waiter = WakeWaiter(socket_path(wake_store), bound_wait=LONG)
    thread = RelayThread(relay_on(wake_store, nats_url, bus_names, waiter)).start()
    try:
        assert wait_until(lambda: stream_length(nats_url, bus_names) == 1, 10)
        assert wait_until(lambda: waiter.bound, 5)
        for expected in (2, 3):
            time.sleep(0.3)  # the relay is in its (long) idle wait
            started = time.monotonic()
            open_a_case(wake_store)

            def arrived(n: int = expected) -> bool:
                return stream_length(nats_url, bus_names) == n

            assert wait_until(arrived, 5, 0.01)
            assert time.monotonic() - started < 5.0 < LONG
    finally:
        thread.stop()
    assert waiter.wakes >= 2
    assert not os.path.exists(socket_path(wake_store)), "a stopped relay gives the socket up"


def test_bursts_committed_while_the_relay_publishes_arrive_without_the_fallback_poll(
    wake_store: CaseEventStore, nats_url: str, bus_names: BusNames
) -> None:
    """Commits that see the relay busy ring no one; its read before it waits again finds
    them, so none waits for the fallback poll (ADR 0032)."""
    waiter = WakeWaiter(socket_path(wake_store), bound_wait=LONG)
    thread = RelayThread(relay_on(wake_store, nats_url, bus_names, waiter)).start()

    def burst() -> None:
        for _ in range(15):
            open_a_case(wake_store)

    try:
        assert wait_until(lambda: waiter.bound, 5)
        for _ in range(3):  # bursts from two writers at once, the relay idle between them
            writers = [threading.Thread(target=burst) for _ in range(2)]
            for writer in writers:
                writer.start()
            for writer in writers:
                writer.join()
            committed = wake_store.max_position()

            def published(n: int = committed) -> bool:
                return stream_length(nats_url, bus_names) == n

            assert wait_until(published, 10, 0.05), f"{committed} events not all out in 10 s (poll {LONG} s)"
            time.sleep(0.2)
    finally:
        thread.stop()


def test_a_commit_that_rang_no_one_is_found_by_the_fallback_poll(
    wake_store: CaseEventStore, nats_url: str, bus_names: BusNames
) -> None:
    silent = CaseEventStore(wake_store.config)
    silent.bell.close()  # a writer whose wake-ups are lost
    waiter = WakeWaiter(socket_path(wake_store), bound_wait=0.3)
    thread = RelayThread(relay_on(wake_store, nats_url, bus_names, waiter)).start()
    try:
        assert wait_until(lambda: waiter.bound, 5)
        open_a_case(silent)
        open_a_case(silent)
        assert wait_until(lambda: stream_length(nats_url, bus_names) == 2, 10)
    finally:
        thread.stop()
        silent.close()
    assert waiter.wakes == 0


def test_only_the_leading_relay_holds_the_socket_and_a_standby_takes_it_over(
    wake_store: CaseEventStore, nats_url: str, bus_names: BusNames
) -> None:
    path = socket_path(wake_store)
    waiters = [WakeWaiter(path, bound_wait=LONG, retry_bind=0.2) for _ in range(2)]
    relays = [relay_on(wake_store, nats_url, bus_names, w) for w in waiters]
    threads = [RelayThread(r).start() for r in relays]
    try:
        assert wait_until(lambda: sum(w.bound for w in waiters) == 1, 10)
        leader = next(i for i, w in enumerate(waiters) if w.bound)
        standby = 1 - leader
        threads[leader].stop()
        assert wait_until(lambda: waiters[standby].bound, 10), "the new leader binds the socket"
        open_a_case(wake_store)
        assert wait_until(lambda: stream_length(nats_url, bus_names) == 1, 5)
        assert waiters[standby].wakes >= 1
    finally:
        for thread in threads:
            thread.stop()


@pytest.mark.faults
def test_a_killed_relay_process_leaves_its_socket_and_the_next_one_replaces_it(
    wake_store: CaseEventStore, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    path = socket_path(wake_store)
    # The fallback poll far longer than the waits below: a quick publish is the wake's doing.
    relay = RelayProcess(
        wake_store.config.url, nats_url, bus_names, tmp_path, VSS_RELAY_WAKE_POLL_INTERVAL="5"
    )
    try:
        relay.start()
        assert wait_until(lambda: "relay.wake_bound" in relay.logs(), 20), relay.logs()
        open_a_case(wake_store)
        assert wait_until(lambda: stream_length(nats_url, bus_names) == 1, 4), relay.logs()
        relay.kill()
        assert stat_is_socket(path), "a SIGKILL leaves the socket file"
        relay.start()
        assert wait_until(lambda: relay.logs().count("relay.wake_bound") == 2, 20), relay.logs()
        time.sleep(0.3)
        open_a_case(wake_store)
        assert wait_until(lambda: stream_length(nats_url, bus_names) == 2, 4), relay.logs()
    finally:
        assert relay.stop() == 0
    assert not os.path.exists(path), "a relay stopped by SIGTERM removes its socket"


def stat_is_socket(path: str) -> bool:
    return os.path.exists(path) and stat.S_ISSOCK(os.lstat(path).st_mode)
