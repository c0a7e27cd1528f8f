"""Fixtures of the bus tests: a relay running in this process on the test's own stream, and
cases driven through the case service and relayed to it (``published``)."""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

import pytest

from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from tests.support.bus import read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.scenario import drive_to_first_sip


class Runner(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class RelayThread:
    """A Relay, or any ``run(stop)`` part, on its own event loop in a thread (tests act meanwhile)."""

    def __init__(self, relay: Runner) -> None:
        self.relay = relay
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None
        self._ready = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def run() -> None:
            self.stop_event = asyncio.Event()
            self._ready.set()
            await self.relay.run(self.stop_event)

        try:
            self.loop.run_until_complete(run())
        except BaseException as error:
            self.error = error
        finally:
            self.loop.close()

    def start(self) -> RelayThread:
        self.thread.start()
        self._ready.wait(5)
        return self

    def _stacks(self) -> str:
        """Where the relay's thread and its tasks are stuck (for a failure message)."""
        frame = sys._current_frames().get(self.thread.ident or 0)
        lines = ["thread:", *traceback.format_stack(frame)] if frame is not None else []
        for task in asyncio.all_tasks(self.loop):
            lines.append(f"task {task.get_name()} awaits:\n")
            awaiting: object = task.get_coro()
            while awaiting is not None:  # follow the chain of awaits down to the innermost
                frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
                if frame is not None:
                    lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
                awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "gi_yieldfrom", None)
        return "".join(lines)

    def stop(self) -> None:
        if not self.thread.is_alive() and self.error is None:
            return
        if self.stop_event is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)
        assert not self.thread.is_alive(), f"the relay did not stop:\n{self._stacks()}"
        if self.error is not None:
            raise self.error


class Parts(Runner, Protocol):
    def close(self) -> None: ...


P = TypeVar("P", bound=Parts)


class PartsThread(RelayThread, Generic[P]):
    """A service's composed parts (``run(stop)``, ``close()``) on their own loop in a thread:
    ``with PartsThread(parts) as running:`` … stopped and closed at the end."""

    def __init__(self, parts: P) -> None:
        super().__init__(parts)
        self.parts = parts

    def __enter__(self) -> PartsThread[P]:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.stop()
        finally:
            self.parts.close()


@pytest.fixture
def run_relay(nats_url: str, bus_names: BusNames):  # type: ignore[no-untyped-def]
    """``with run_relay(store, **settings) as relay_thread:`` a relay on the test's stream."""

    @contextmanager
    def runner(store: CaseEventStore, **settings: object) -> Iterator[RelayThread]:
        relay = Relay(
            CaseEventLog(store, bus_names),
            nats_url,
            settings=RelaySettings(names=bus_names, lease_ttl=1.0, ack_timeout=2.0, **settings),  # type: ignore[arg-type]
        )
        thread = RelayThread(relay).start()
        try:
            yield thread
        finally:
            thread.stop()

    return runner


@pytest.fixture
def published(
    service, store: CaseEventStore, clock: FixedClock, nats_url: str, bus_names: BusNames, run_relay
):  # type: ignore[no-untyped-def]
    """``published(cases)``: drive that many cases to their first SIP and relay them; returns the count."""

    def publish(cases: int) -> int:
        for _ in range(cases):
            drive_to_first_sip(service, clock)
        total = len(store.read_log(0, 100_000))
        with run_relay(store):
            assert wait_until(
                lambda: (
                    len(asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))) == total
                ),
                20,
            )
        return total

    return publish
