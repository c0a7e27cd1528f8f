"""The durable-consumer base against a real nats-server and the real relay."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import nats
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.shared.bus import checkpoint
from services.shared.bus.consumer import ConsumerSettings, Delivery, DurableConsumer
from services.shared.bus.names import BusNames
from services.shared.metrics import ProcessMetrics, server_lags
from services.shared.settings import BusSettings
from tests.support.bus import ROOT, read_stream, wait_until
from tests.support.projection import EventTable
from vss_contracts.subjects import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ORIGINAL_MSG_ID,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
    HEADER_EVENT_TYPE,
    HEADER_MSG_ID,
)


def stream(nats_url: str, names: BusNames) -> list:  # type: ignore[type-arg]
    return asyncio.run(read_stream(nats_url, names.stream, names.subjects))


def rows(db: Path) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT * FROM applied ORDER BY stream_sequence").fetchall()
        except sqlite3.OperationalError:
            return []


def start_consumer(
    nats_url: str,
    names: BusNames,
    db: Path,
    durable: str,
    log: Path,
    *,
    slow: float = 0.0,
    faststream: bool = False,
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.support.consumer_process", "--db", str(db), "--nats", nats_url,
            "--stream", names.stream, "--prefix", names.subject_prefix,
            "--dlq-stream", names.dead_letter_stream, "--dlq-prefix", names.dead_letter_prefix,
            "--durable", durable, "--slow", str(slow), *(["--faststream"] if faststream else [])]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=out)


def run_consumer_until(consumer: DurableConsumer, done) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        for _ in range(400):
            if done():
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


@pytest.mark.parametrize("faststream", [False, True], ids=["DurableConsumer", "FastStream-kit"])
def test_a_consumer_killed_mid_batch_resumes_and_applies_every_event_exactly_once(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, faststream: bool
) -> None:
    total = published(20)
    db = tmp_path / "killed.sqlite"
    log = tmp_path / "consumer.log"
    process = start_consumer(nats_url, bus_names, db, "projection", log, slow=0.004, faststream=faststream)
    try:
        assert wait_until(lambda: len(rows(db)) > 60, 30), log.read_text()
        process.send_signal(signal.SIGKILL)  # mid-batch: it fetches 50 at a time and is slow
        process.wait()
        applied_before = len(rows(db))
        assert 60 < applied_before < total
        process = start_consumer(nats_url, bus_names, db, "projection", log, faststream=faststream)
        assert wait_until(lambda: len(rows(db)) == total, 30), log.read_text()[-3000:]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode == 0, log.read_text()[-3000:]

    replay_db = tmp_path / "replay.sqlite"
    replay = EventTable(replay_db, "replay")
    consumer = DurableConsumer(nats_url, replay, ConsumerSettings(durable="replay", names=bus_names))
    run_consumer_until(consumer, lambda: len(replay.rows()) == total)
    assert rows(db) == replay.rows()  # the same state as a clean replay
    assert [r[4] for r in replay.rows()] == list(range(1, total + 1))
    replay.close()


def test_a_redelivered_message_changes_nothing(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(2)
    table = EventTable(tmp_path / "state.sqlite", "projection")
    consumer = DurableConsumer(nats_url, table, ConsumerSettings(durable="projection", names=bus_names))
    run_consumer_until(consumer, lambda: len(table.rows()) == total)
    before = table.rows()

    async def redeliver() -> None:
        # The same messages again, through a second consumer of the stream, to the same handler.
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        consumer._js = js
        sub = await js.pull_subscribe(bus_names.subjects, stream=bus_names.stream)
        messages = await sub.fetch(total, timeout=5)
        consumer._position = 0  # past the in-memory check: the stored position must refuse them
        for msg in messages:
            await consumer.handle(msg)
        await nc.close()

    skipped_before = consumer.skipped
    asyncio.run(redeliver())
    assert table.rows() == before
    assert consumer.skipped - skipped_before == total
    assert table.applied_through() == total
    table.close()


def test_malformed_and_always_failing_messages_go_to_the_dead_letter_stream_and_the_consumer_goes_on(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(3)
    events = stream(nats_url, bus_names)
    failing_case = events[20].event.subject  # the second case: its handler always fails
    failing = [m for m in events if m.event.subject == failing_case]

    async def publish_malformed() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().publish(
            bus_names.subject(uuid.uuid4(), "CaseOpened"), b"{not json", headers={HEADER_MSG_ID: "bad-1"}
        )
        await nc.close()

    asyncio.run(publish_malformed())
    table = EventTable(tmp_path / "state.sqlite", "projection", fail_case=failing_case)
    settings = ConsumerSettings(durable="projection", names=bus_names, max_attempts=3, backoff=(0.01,))
    consumer = DurableConsumer(nats_url, table, settings)
    run_consumer_until(consumer, lambda: consumer.dead_lettered == len(failing) + 1)

    assert len(table.rows()) == total - len(failing)
    assert table.applied_through() == total + 1  # past the malformed one too
    assert all(table.attempts[m.event.id] == 3 for m in failing)
    dead = asyncio.run(
        read_stream(nats_url, bus_names.dead_letter_stream, f"{bus_names.dead_letter_prefix}.>")
    )
    assert len(dead) == len(failing) + 1
    for letter, original in zip(dead[:-1], failing, strict=True):
        assert letter.body == original.body
        assert letter.subject == bus_names.dead_letter_subject("projection", original.subject)
        assert letter.headers[HEADER_DLQ_REASON].startswith(
            "failed 3 times, last: RuntimeError: cannot apply"
        )
        assert letter.headers[HEADER_DLQ_SEQUENCE] == str(original.sequence)
        assert letter.headers[HEADER_DLQ_STREAM] == bus_names.stream
        assert letter.headers[HEADER_DLQ_CONSUMER] == "projection"
        assert letter.headers[HEADER_DLQ_ORIGINAL_MSG_ID] == original.headers[HEADER_MSG_ID]
        assert letter.headers[HEADER_MSG_ID] == f"projection:{bus_names.stream}:{original.sequence}"
        assert letter.headers[HEADER_EVENT_TYPE] == original.headers[HEADER_EVENT_TYPE]
    assert dead[-1].body == b"{not json"
    assert dead[-1].headers[HEADER_DLQ_REASON].startswith("undecodable: ValidationError")

    async def lag() -> int:
        nc = await nats.connect(nats_url)
        consumer._js = nc.jetstream()
        result = await consumer.lag()
        await nc.close()
        return result.total

    assert asyncio.run(lag()) == 0


def test_a_fetch_that_times_out_with_the_builtin_timeout_error_is_not_a_reconnect(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's fetch raises the built-in TimeoutError when its deadline runs out between its
    quick check and its long poll: that means "nothing yet", not a broken connection."""
    from nats.js.client import JetStreamContext  # noqa: PLC0415

    total = published(1)
    fetch = JetStreamContext.PullSubscription.fetch
    calls = {"fetch": 0, "repoint": 0}

    async def flaky(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["fetch"] += 1
        if calls["fetch"] % 2:  # every other call: the deadline ran out in between
            raise TimeoutError
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", flaky)
    table = EventTable(tmp_path / "state.sqlite", "projection")
    consumer = DurableConsumer(nats_url, table, ConsumerSettings(durable="projection", names=bus_names))
    repoint = consumer._point_durable_at_state

    async def counted() -> None:
        calls["repoint"] += 1
        await repoint(consumer._js)  # type: ignore[arg-type]

    consumer._point_durable_at_state = lambda js: counted()  # type: ignore[method-assign,assignment,misc]
    run_consumer_until(consumer, lambda: len(table.rows()) == total and calls["fetch"] > 6)
    assert len(table.rows()) == total
    assert calls["repoint"] == 1  # bound once: no reconnect, no backoff
    table.close()


class BatchTable(EventTable):
    """The test projection with the base's batch path: one transaction per fetched batch.

    ``fail_batches``: how many batch calls fail first (the base then takes those messages one
    at a time, through ``apply``).
    """

    def __init__(self, path: Path, consumer: str, *, fail_batches: int = 0) -> None:
        super().__init__(path, consumer)
        self.fail_batches = fail_batches
        self.batches: list[int] = []

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        if self.fail_batches:
            self.fail_batches -= 1
            raise RuntimeError("this batch fails (the base takes it one by one)")
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            applied = 0
            for delivery in deliveries:
                event = delivery.event
                if not checkpoint.advance(cur, self.consumer, delivery.stream_sequence, event.id):
                    continue
                row = cur.execute("SELECT version FROM cases WHERE case_id = ?", (event.subject,)).fetchone()
                assert (row[0] if row else 0) + 1 == event.caseversion, "out of order"
                cur.execute(
                    "INSERT INTO applied VALUES (?, ?, ?, ?, ?)",
                    (event.id, event.subject, event.caseversion, event.type, delivery.stream_sequence),
                )
                cur.execute(
                    "INSERT INTO cases VALUES (?, ?)"
                    " ON CONFLICT (case_id) DO UPDATE SET version = excluded.version",
                    (event.subject, event.caseversion),
                )
                applied += 1
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.batches.append(len(deliveries))
        return applied


def test_a_batch_handler_applies_each_fetch_in_one_call_and_a_failed_batch_goes_one_by_one(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(6)
    table = BatchTable(tmp_path / "batched.sqlite", "batched", fail_batches=1)
    consumer = DurableConsumer(
        nats_url, table, ConsumerSettings(durable="batched", names=bus_names, fetch_batch=20)
    )
    run_consumer_until(consumer, lambda: len(table.rows()) == total)
    rows_ = table.rows()
    assert [r[4] for r in rows_] == list(range(1, total + 1))  # each once, in stream order
    assert table.batches, "the batch path was used"
    assert max(table.batches) > 1
    assert sum(table.batches) < total  # the failed batch's messages went one by one
    assert consumer.applied == total
    table.close()


def test_each_delivery_names_its_log_position_and_the_consumer_knows_when_it_has_caught_up(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(1)
    table = EventTable(tmp_path / "state.sqlite", "watching")
    seen: list[tuple[int | None, bool]] = []

    class Watching:
        def applied_through(self) -> int:
            return table.applied_through()

        def apply(self, delivery: Delivery) -> bool:
            seen.append((delivery.log_position, consumer.caught_up))
            return table.apply(delivery)

        def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
            table.pass_over(stream_sequence, event_id)

    consumer = DurableConsumer(
        nats_url, Watching(), ConsumerSettings(durable="watching", names=bus_names, fetch_batch=1)
    )
    assert not consumer.caught_up  # not known before the first look
    run_consumer_until(consumer, lambda: len(table.rows()) == total and consumer.caught_up)
    assert consumer.caught_up
    assert [position for position, _ in seen] == list(range(1, total + 1))  # the store's log order
    assert not any(caught_up for _, caught_up in seen)  # behind while events were left
    table.close()


def test_metrics_read_a_stopped_consumers_lag_from_the_server(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    first = published(1)
    table = EventTable(tmp_path / "state.sqlite", "stopped")
    consumer = DurableConsumer(nats_url, table, ConsumerSettings(durable="stopped", names=bus_names))
    run_consumer_until(consumer, lambda: len(table.rows()) == first)  # then it stops
    total = published(1)  # more events while nothing consumes them
    metrics = ProcessMetrics("test", server_lags(BusSettings(nats_url=nats_url))).watch(consumers=[consumer])
    app = FastAPI()
    metrics.route(app)
    asyncio.run(metrics.refresh())
    text = TestClient(app).get("/metrics").text
    lags = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "vss_consumer_lag"
    ]
    assert [(s.labels["consumer"], s.value) for s in lags] == [("stopped", total - first)]
    applied = f'vss_consumer_applied_total{{consumer="stopped",service="test",stream="{bus_names.stream}"}}'
    assert f"{applied} {float(first)}" in text
    table.close()


class BlockingTable(EventTable):
    """An EventTable whose apply waits at one stream sequence until released."""

    def __init__(self, path: Path, consumer: str, at: int) -> None:
        super().__init__(path, consumer)
        self.at = at
        self.waiting = threading.Event()
        self.release = threading.Event()

    def apply(self, delivery: Delivery) -> bool:
        if delivery.stream_sequence == self.at and not self.release.is_set():
            self.waiting.set()
            self.release.wait(10)
        return super().apply(delivery)


async def lose_a_pull_while_applying(
    nats_url: str,
    stream: str,
    table: BlockingTable,
    run: Callable[[asyncio.Event], Awaitable[None]],
    lost_sequence: int,
    total: int,
) -> None:
    """Run a consumer of the durable ``projection`` until ``table`` holds ``total`` rows, with
    a pull taken from under it while its apply waits: ``lost_sequence`` is handed out to
    another client and never acknowledged (a node killed with a pull in flight)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        while not table.waiting.is_set():
            await asyncio.sleep(0.01)
        nc = await nats.connect(nats_url)
        try:  # the pull whose answer never arrives
            thief = await nc.jetstream().pull_subscribe_bind("projection", stream)
            lost = await thief.fetch(1, timeout=5)
            assert [m.metadata.sequence.stream for m in lost] == [lost_sequence]
        finally:
            await nc.close()
        table.release.set()
        for _ in range(200):  # well within ack_wait (30 s): no redelivery helps
            if len(table.rows()) == total:
                break
            await asyncio.sleep(0.05)
    finally:
        table.release.set()
        stop.set()
        await asyncio.wait_for(task, 10)


def test_messages_a_fetch_lost_on_the_way_are_applied_in_order_not_passed_over(
    published: Callable[[int], int], nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    """A node killed with a pull in flight: the server took the message as delivered, the
    consumer never got it, and its next fetch brings later ones. JetStream would redeliver
    the lost one only after ack_wait, behind them, when it looks applied already (a share
    stream lost events so under the chaos suite on the cluster). The consumer sees the jump
    in the stream sequences, re-points and applies every event once, in order."""
    total = published(1)
    table = BlockingTable(tmp_path / "state.sqlite", "projection", at=3)
    settings = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=1)
    consumer = DurableConsumer(nats_url, table, settings)

    # Applying sequence 3, with no pull of its own in flight: sequence 4 is the one lost.
    asyncio.run(lose_a_pull_while_applying(nats_url, bus_names.stream, table, consumer.run, 4, total))
    assert [row[4] for row in table.rows()] == list(range(1, total + 1))
    assert consumer.dead_lettered == 0
    table.close()
