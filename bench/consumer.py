"""Consumer benchmark: events/s applied through the kit's FastStream subscriber, against raw nats-py.

One stream holds N real case events (cases opened and consented, then worksheets, through
``CaseService``; rendered as the relay renders them and published once). Then, in the same
run and against the same nats-server, each contender reads the whole stream through a
durable of its own, rounds interleaved, best of ``--rounds``:

- **raw nats-py fetch + ack**: a pull consumer, ``fetch(100)``, ``ack()`` each message; no
  decoding, no handler (the floor: what the bus alone costs);
- **raw nats-py + handler**: the same loop, each message decoded into the CloudEvent and
  applied by the checkpointing handler before its ack (the least a consumer with the
  guarantees could do, with no framework);
- **kit FastStream subscriber**: :class:`FastStreamSubscriber` as the services configure it
  (``service_broker``, pulls of up to 100 handled one message at a time in stream order,
  manual acks, the handler in a worker thread), with the Prometheus middleware on;
- **DurableConsumer** (the nats-py base the services use today), with the same handler;
- the kit and DurableConsumer again with a **batch handler** (``BatchHandler``: the events of
  one pull in one transaction, each sequence recorded), as the sharing service's handler is;
- with ``--bare-kit``, the kit's per-event path again **without the Prometheus middleware**:
  what is left of its distance to DurableConsumer is FastStream's own per-message path.

The handler is an SQLite file (WAL, ``synchronous=NORMAL`` as the read models) that records
each event and the stream sequence in one transaction (``services.shared.bus.checkpoint``), as
the services' handlers do. Each round starts with an empty file and a new durable; it is
timed from the start of the consumer until the handler holds all N.

Usage::

    .venv/bin/python bench/consumer.py                 # 5,000 events, 3 rounds (~30 s)
    .venv/bin/python bench/consumer.py --n 20000 --rounds 2
    .venv/bin/python bench/consumer.py --n 3000 --bare-kit
    .venv/bin/python bench/consumer.py --nats-url nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.append import Figure
from bench.relay import _nats, capture_logs, delete_streams, fill_store, read_everything
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.shared.bus import checkpoint
from services.shared.bus.authorization import NatsAuth
from services.shared.bus.consumer import ConsumerSettings, Delivery, DurableConsumer, decode
from services.shared.bus.faststream_metrics import BusMetrics
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, service_broker
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config

FETCH = 100
KIT = "kit FastStream subscriber + handler"
KIT_BATCH = "kit FastStream subscriber + batch handler"
KIT_BARE = "kit FastStream subscriber + handler, no middleware"


class CheckpointTable:
    """The services' handler shape on SQLite: the event and its sequence in one transaction."""

    def __init__(self, path: Path, consumer: str) -> None:
        self.consumer = consumer
        self.count = 0
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(checkpoint.CREATE_POSITIONS_TABLE)
        self.conn.execute(
            "CREATE TABLE applied (event_id TEXT PRIMARY KEY, case_id TEXT NOT NULL,"
            " case_version INTEGER NOT NULL, type TEXT NOT NULL)"
        )

    def applied_through(self) -> int:
        return checkpoint.position(self.conn.cursor(), self.consumer)

    def apply(self, delivery: Delivery) -> bool:
        event = delivery.event
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if not checkpoint.advance(cur, self.consumer, delivery.stream_sequence, event.id):
                cur.execute("ROLLBACK")
                return False
            cur.execute(
                "INSERT INTO applied VALUES (?, ?, ?, ?)",
                (event.id, event.subject, event.caseversion, event.type),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.count += 1
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        checkpoint.advance(cur, self.consumer, stream_sequence, event_id)
        cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class BatchCheckpointTable(CheckpointTable):
    """The same, and a pull applied in one transaction, each sequence recorded (a ``BatchHandler``)."""

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            applied = 0
            for delivery in deliveries:
                event = delivery.event
                if not checkpoint.advance(cur, self.consumer, delivery.stream_sequence, event.id):
                    continue
                cur.execute(
                    "INSERT INTO applied VALUES (?, ?, ?, ?)",
                    (event.id, event.subject, event.caseversion, event.type),
                )
                applied += 1
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.count += applied
        return applied


# ------------------------------------------------------------------------------ the stream
async def publish_stream(nats_url: str, names: BusNames, store_url: str) -> int:
    store = CaseEventStore(StoreConfig(store_url))
    try:
        messages = read_everything(CaseEventLog(store, names))
    finally:
        store.close()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(names))
        for m in messages:
            await js.publish(m.subject, m.body, headers=dict(m.headers))
    finally:
        await nc.close()
    return len(messages)


async def until(done: Callable[[], bool]) -> None:
    while not done():
        await asyncio.sleep(0.002)


# ------------------------------------------------------------------------------ contenders
async def raw_round(
    nats_url: str, names: BusNames, n: int, durable: str, table: CheckpointTable | None
) -> float:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=1000,
            filter_subject=names.subjects,
        )
        started = time.perf_counter()
        await js.add_consumer(names.stream, config)
        sub = await js.pull_subscribe_bind(durable, names.stream)
        seen = 0
        while seen < n:
            for msg in await sub.fetch(FETCH, timeout=5):
                if table is not None:
                    table.apply(decode(msg))
                await msg.ack()
                seen += 1
        await nc.flush()
        return time.perf_counter() - started
    finally:
        await nc.close()


async def kit_round(
    nats_url: str,
    names: BusNames,
    n: int,
    durable: str,
    table: CheckpointTable | None,
    *,
    metrics: bool = True,
) -> float:
    assert table is not None
    middlewares = (BusMetrics("bench").middleware,) if metrics else ()
    broker = service_broker(nats_url, name="bench", middlewares=middlewares, auth=NatsAuth())
    kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable=durable, names=names))
    await broker.connect()  # before the clock, as the raw contenders connect before theirs
    started = time.perf_counter()
    await kit.prepare()
    await broker.start()
    try:
        await until(lambda: table.count == n)
        return time.perf_counter() - started
    finally:
        await broker.stop()


async def durable_consumer_round(
    nats_url: str, names: BusNames, n: int, durable: str, table: CheckpointTable | None
) -> float:
    assert table is not None
    consumer = DurableConsumer(nats_url, table, ConsumerSettings(durable=durable, names=names))
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: table.count == n or task.done())
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


Round = Callable[[str, CheckpointTable | None], Awaitable[float]]


async def bench(
    nats_url: str, store_url: str, tmp: Path, rounds: int, bare_kit: bool = False
) -> list[Figure]:
    names = BusNames.unique()
    n = await publish_stream(nats_url, names, store_url)
    contenders: list[tuple[str, type[CheckpointTable] | None, Round]] = [
        ("raw nats-py fetch + ack", None, lambda d, t: raw_round(nats_url, names, n, d, t)),
        (
            "raw nats-py fetch + handler + ack",
            CheckpointTable,
            lambda d, t: raw_round(nats_url, names, n, d, t),
        ),
        (
            "kit FastStream subscriber + handler",
            CheckpointTable,
            lambda d, t: kit_round(nats_url, names, n, d, t),
        ),
        (
            "DurableConsumer + handler",
            CheckpointTable,
            lambda d, t: durable_consumer_round(nats_url, names, n, d, t),
        ),
        *(
            [(KIT_BARE, CheckpointTable, lambda d, t: kit_round(nats_url, names, n, d, t, metrics=False))]
            if bare_kit
            else []
        ),
        (KIT_BATCH, BatchCheckpointTable, lambda d, t: kit_round(nats_url, names, n, d, t)),
        (
            "DurableConsumer + batch handler",
            BatchCheckpointTable,
            lambda d, t: durable_consumer_round(nats_url, names, n, d, t),
        ),
    ]
    best: dict[str, float] = {}
    try:
        for r in range(rounds):
            for i, (name, handler, run) in enumerate(contenders):
                durable = f"bench-{r}-{i}"
                table = handler(tmp / f"{durable}.sqlite", durable) if handler else None
                try:
                    seconds = await run(durable, table)
                finally:
                    if table is not None:
                        table.close()
                best[name] = min(best.get(name, seconds), seconds)
    finally:
        await delete_streams(nats_url, names)
    return [Figure(name, n, seconds) for name, seconds in best.items()]


def report(figures: Sequence[Figure]) -> None:
    by_name = {f.name: f for f in figures}
    width = max(len(f.name) for f in figures)
    print(f"\n{'contender':<{width}}  {'events':>7}  {'seconds':>8}  {'events/s':>9}")
    for f in figures:
        print(f"{f.name:<{width}}  {f.ops:>7,}  {f.seconds:>8.3f}  {f.rate:>9,.0f}")
    raw = by_name["raw nats-py fetch + ack"].rate
    raw_handler = by_name["raw nats-py fetch + handler + ack"].rate
    print()
    kits = [(KIT, "DurableConsumer + handler"), (KIT_BATCH, "DurableConsumer + batch handler")]
    if KIT_BARE in by_name:
        kits.insert(1, (KIT_BARE, "DurableConsumer + handler"))
    for name, base in kits:
        kit = by_name[name].rate
        verdict = "meets" if kit >= 0.8 * raw else "misses"
        print(f"{name}:")
        print(f"  / raw fetch + ack            = {kit / raw:.2f} ({verdict} the 0.8× target)")
        print(f"  / raw fetch + handler + ack  = {kit / raw_handler:.2f}")
        print(f"  / {base:<26} = {kit / by_name[base].rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5_000, help="case events in the stream")
    parser.add_argument("--cases", type=int, default=50, help="cases the events are spread over")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender (best is kept)")
    parser.add_argument("--nats-url", default=None, help="a NATS server to use (default: an embedded one)")
    parser.add_argument(
        "--bare-kit",
        action="store_true",
        help="also the kit's per-event path without its Prometheus middleware",
    )
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), {args.n:,} events, best of {args.rounds}"
    )
    tally = capture_logs()
    with (
        tempfile.TemporaryDirectory(prefix="vss-bench-consumer-") as tmp_name,
        _nats(args.nats_url, Path(tmp_name)) as server,
    ):
        tmp = Path(tmp_name)
        store_url = f"sqlite:///{tmp}/cases.sqlite"
        started = time.perf_counter()
        fill_store(store_url, args.n, args.cases)
        print(f"case store filled in {time.perf_counter() - started:.1f} s")
        figures = asyncio.run(bench(server.url, store_url, tmp, args.rounds, args.bare_kit))
    report(figures)
    with contextlib.suppress(Exception):
        print(f"\nconsumer log: {tally.summary()}")


if __name__ == "__main__":
    main()
