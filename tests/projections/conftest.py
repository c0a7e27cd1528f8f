"""Fixtures of the projections tests: generated history on a real stream, and projectors on it.

``history`` (once per module): cases generated through the case application into an
SQLite store (generated once per run, copied for each module), published by the real relay
to a stream of the module's own on the test NATS server. Tests then project that stream
into read models of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from services.case.generator import GenerationReport, GeneratorSettings, generate, generation_store
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.projections.application.deliveries import DELIVERIES_CONSUMER
from services.projections.application.meetings import MEETINGS_CONSUMER
from services.projections.bootstrap import meeting_data, notification_data
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.live import LiveDeliveries, LiveMeetings, LiveProjection
from services.projections.infrastructure.readmodels import CONSUMER
from services.shared.bus.consumer import ConsumerSettings
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, run_subscribers, service_broker
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings, lease_bucket
from tests.bus.conftest import RelayThread, run_relay  # noqa: F401 - a fixture these tests use
from tests.support.bus import wait_until
from tests.support.nats import NatsServer, delete_streams
from tests.support.postgres import fresh_database

GENERATED_END = date(2026, 6, 30)


@dataclass
class History:
    store: CaseEventStore
    store_url: str
    report: GenerationReport
    nats_url: str
    names: BusNames
    last_sequence: int


async def _last_sequence(url: str, stream: str) -> int:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.last_seq)
    except NotFoundError:  # the relay has not declared it yet
        return 0
    finally:
        await nc.close()


def publish(store: CaseEventStore, nats_url: str, names: BusNames) -> int:
    """Run the relay until every stored event is on the stream; the stream's last sequence."""
    expected = len(store.read_log(0, limit=10_000_000))
    relay = Relay(CaseEventLog(store, names), nats_url, settings=RelaySettings(names=names, lease_ttl=1.0))
    thread = RelayThread(relay).start()
    try:
        assert wait_until(lambda: asyncio.run(_last_sequence(nats_url, names.stream)) >= expected, 60, 0.2)
    finally:
        thread.stop()
    return asyncio.run(_last_sequence(nats_url, names.stream))


@pytest.fixture(scope="session")
def generated_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationReport]:
    """The generated cases' store, made once per run (the generation is most of a module's
    set-up), and the generator's report of it."""
    path = tmp_path_factory.mktemp("generated-history") / "events.sqlite"
    migrate(StoreConfig(f"sqlite:///{path}"))
    store = generation_store(f"sqlite:///{path}", 40)
    try:
        report = generate(store, GeneratorSettings(cases=40, seed=11, end=GENERATED_END, span_days=900))
    finally:
        store.close()
    return path, report


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory,
    nats_server: NatsServer,
    generated_history: tuple[Path, GenerationReport],
) -> Iterator[History]:
    source, report = generated_history
    path = tmp_path_factory.mktemp("history") / "events.sqlite"
    # A module's own copy: nothing one module does to its store reaches another.
    with contextlib.closing(sqlite3.connect(source)) as read, contextlib.closing(sqlite3.connect(path)) as to:
        read.backup(to)
    url = f"sqlite:///{path}"
    store = generation_store(url, 40)
    names = BusNames.unique()
    last = publish(store, nats_server.url, names)
    try:
        yield History(store, url, report, nats_server.url, names, last)
    finally:
        store.close()
        lease = f"KV_{lease_bucket(names)}"
        asyncio.run(delete_streams(nats_server.url, [names.stream, names.dead_letter_stream, lease]))


class ProjectorThread:
    """The live projector (the kit's subscribers on one broker + read models) on its own loop in a thread.

    With ``notifications`` (the delivery record's stream names) it runs the second
    consumer too, and with ``meetings`` (the meetings stream's names) the third, as the
    projector process does.
    """

    def __init__(
        self,
        location: ReadModelLocation,
        nats_url: str,
        names: BusNames,
        *,
        notifications: BusNames | None = None,
        meetings: BusNames | None = None,
    ) -> None:
        self.projection = LiveProjection(location)
        self.broker = service_broker(nats_url, name="projector")
        self.consumer = FastStreamSubscriber(
            self.broker, self.projection, ConsumerSettings(durable=CONSUMER, names=names)
        )
        self.consumers = [self.consumer]
        self.deliveries: LiveDeliveries | None = None
        self.deliveries_consumer: FastStreamSubscriber | None = None
        if notifications is not None:
            self.deliveries = LiveDeliveries(ReadModelLocation(location.url))
            self.deliveries_consumer = FastStreamSubscriber(
                self.broker,
                self.deliveries,
                ConsumerSettings(
                    durable=DELIVERIES_CONSUMER, names=notifications, decode_data=notification_data
                ),
            )
            self.consumers.append(self.deliveries_consumer)
        self.meetings: LiveMeetings | None = None
        self.meetings_consumer: FastStreamSubscriber | None = None
        if meetings is not None:
            self.meetings = LiveMeetings(ReadModelLocation(location.url))
            self.meetings_consumer = FastStreamSubscriber(
                self.broker,
                self.meetings,
                ConsumerSettings(durable=MEETINGS_CONSUMER, names=meetings, decode_data=meeting_data),
            )
            self.consumers.append(self.meetings_consumer)
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(run_subscribers(self.broker, self.consumers, self.stop_event))
        except BaseException as error:
            self.error = error

    def start(self) -> ProjectorThread:
        self.thread.start()
        return self

    def wait_for(self, sequence: int, timeout: float = 60) -> None:
        reached = wait_until(lambda: self.consumer._position >= sequence, timeout, 0.05)
        assert reached, f"the projector reached {self.consumer._position}, not {sequence} ({self.error!r})"

    def wait_for_deliveries(self, sequence: int, timeout: float = 60) -> None:
        consumer = self.deliveries_consumer
        assert consumer is not None, "started without the notifications stream"
        reached = wait_until(lambda: consumer._position >= sequence, timeout, 0.05)
        assert reached, (
            f"the deliveries consumer reached {consumer._position}, not {sequence} ({self.error!r})"
        )

    def wait_for_meetings(self, sequence: int, timeout: float = 60) -> None:
        consumer = self.meetings_consumer
        assert consumer is not None, "started without the meetings stream"
        reached = wait_until(lambda: consumer._position >= sequence, timeout, 0.05)
        assert reached, f"the meetings consumer reached {consumer._position}, not {sequence} ({self.error!r})"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive(), "the projector did not stop"
        self.projection.close()
        if self.deliveries is not None:
            self.deliveries.close()
        if self.meetings is not None:
            self.meetings.close()
        if self.error is not None:
            raise self.error


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def read_model_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelLocation]:
    """Read models on SQLite files, and on PostgreSQL (a schema per generation)."""
    url = f"sqlite:///{tmp_path}/readmodels"
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    location = ReadModelLocation(url)
    yield location
    location.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def projected_once(
    request: pytest.FixtureRequest, history: History, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReadModelLocation]:
    """Read models built live from the whole generated history once per module and backend,
    for the tests that only read them (a projection of the history takes seconds)."""
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path_factory.mktemp('readmodels')}/readmodels"
        if request.param == "postgres":
            server = request.getfixturevalue("postgres_server")
            url = stack.enter_context(fresh_database(server.url))
        location = ReadModelLocation(url)
        stack.callback(location.close)
        projector = ProjectorThread(location, history.nats_url, history.names).start()
        try:
            projector.wait_for(history.last_sequence)
        finally:
            projector.stop()
        yield location


@pytest.fixture
def projected(history: History, read_model_location: ReadModelLocation) -> Iterator[ReadModelLocation]:
    """Read models built live from the whole generated history (then the projector stops)."""
    projector = ProjectorThread(read_model_location, history.nats_url, history.names).start()
    try:
        projector.wait_for(history.last_sequence)
    finally:
        projector.stop()
    return read_model_location
