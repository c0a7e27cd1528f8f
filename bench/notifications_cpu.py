"""CPU per case event of the notifications service: its case consumer path, or the whole process.

**apply** (the default): realistic case events (the generator's lifecycles,
``bench/common.py``'s cached SQLite case store) are rendered as the case relay renders them,
decoded as the durable consumer decodes a message (without a bus) and applied through the
service's case ``EventHandler`` to a fresh notifications store on SQLite (WAL,
``synchronous=FULL``, as deployed), in fetches of ``--fetch`` events: through
``apply_batch`` when the handler has one (as ``DurableConsumer`` does), else one at a time.
Nothing is sent: the sender, the relay and the meetings consumer do not run. The figure is
the process's CPU time (user + system) per event over the apply loop, and wall time per
event; ``--profile`` prints cProfile's top functions by cumulative time.

**--live**: the whole notifications process as it runs started alone (``bootstrap_notifications``
without the API: both durable consumers, the sender, the record's relay, and the embedded mail
sink in the same process, each message an fsync'd file; ``vss up`` runs the sink as a part of
its own, ADR 0033, so its figures include the sink's work), in a process of its own, on an
embedded nats-server of the bench's own. The generator's cases, dated up to today (so that
their consents are mostly in force and messages are sent, not withdrawn), are published to
``VSS_CASE`` as the case relay publishes them, ``--rate`` events/s; the meetings stream is
declared and stays empty (no meetings service). Measured: the process's CPU (``/proc``) from
the first publish until it has applied every event and settled every delivery, per case
event; with ``--profile``, cProfile of its event loop thread and of its worker threads.

Usage::

    .venv/bin/python bench/notifications_cpu.py                      # 40 cases (~3,000 events)
    .venv/bin/python bench/notifications_cpu.py --cases 40 --profile 30
    .venv/bin/python bench/notifications_cpu.py --live --cases 20 --rate 100 --profile 40
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing as mp
import os
import pstats
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import nats

from bench.common import generated_store, quiet_logs
from bench.relay import _process_cpu
from services.case.generator import GeneratorSettings, generate, generation_store
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.case.infrastructure.store import migrate as migrate_case_store
from services.meetings.infrastructure.bus import meeting_bus_names
from services.notifications.application.service import CASE_CONSUMER, NotificationsService, Signer
from services.notifications.bootstrap import bootstrap_notifications
from services.notifications.infrastructure.bus import CaseEventHandler, notification_bus_names
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.store import migrate as migrate_notifications
from services.notifications.infrastructure.templates import Templates
from services.notifications.settings import NotificationsSettings
from services.shared.bus.consumer import Delivery
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.bus.names import BusNames
from services.shared.bus.relay import OutboxMessage
from services.shared.bus.streams import case_stream_config, declare_if_missing
from services.shared.clock import SystemClock
from vss_contracts.envelope import CloudEvent

ROOT = Path(__file__).resolve().parent.parent


def messages(case_store_url: str) -> list[OutboxMessage]:
    """Every event of the case store as the case relay publishes it."""
    store = CaseEventStore(StoreConfig(case_store_url))
    log = CaseEventLog(store)
    out: list[OutboxMessage] = []
    after = 0
    try:
        while rows := log.fetch(after, 1000):
            out.extend(log.render(rows))
            after = rows[-1][0]
    finally:
        store.close()
    return out


def deliveries(case_store_url: str) -> list[Delivery]:
    """Every event of the case store as the case consumer receives it."""
    out: list[Delivery] = []
    for message in messages(case_store_url):
        event = CloudEvent.model_validate_json(message.body)
        out.append(
            Delivery(
                event=event,
                data=event.typed_data(),
                stream_sequence=message.position,
                subject=message.subject,
                headers=message.headers,
                delivered=1,
                body=message.body,
            )
        )
    return out


def apply_all(handler: CaseEventHandler, feed: Sequence[Delivery], fetch: int) -> None:
    apply_batch = getattr(handler, "apply_batch", None)
    for start in range(0, len(feed), fetch):
        batch = feed[start : start + fetch]
        if apply_batch is not None and len(batch) > 1:
            apply_batch(batch)
        else:
            for delivery in batch:
                handler.apply(delivery)


def decode_cost(feed: Sequence[Delivery]) -> float:
    """CPU seconds to decode the feed's bodies as the consumer does (CloudEvent + typed data)."""
    started = time.process_time()
    for delivery in feed:
        CloudEvent.model_validate_json(delivery.body).typed_data()
    return time.process_time() - started


# ------------------------------------------------------------------------------- --live
WORKERS = 8  # the service process's worker threads (asyncio.to_thread), each profiled on its own


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generated_until_today(tmp: Path, cases: int, seed: int) -> str:
    """A case store of ``cases`` generated cases whose timeline ends today (not cached)."""
    url = f"sqlite:///{tmp}/cases.sqlite"
    migrate_case_store(StoreConfig(url))
    store = generation_store(url, cases)
    try:
        generate(store, GeneratorSettings(cases=cases, seed=seed, span_days=400))
    finally:
        store.close()
    return url


def _service_process(settings: dict[str, Any], profile_to: str | None, stop: MpEvent) -> None:
    """The notifications service as ``vss up`` runs it (no HTTP API), optionally profiled."""
    quiet_logs()

    async def main() -> None:
        parts = bootstrap_notifications(
            NotificationsSettings(**settings),
            with_api=False,
            case_names=BusNames(),
            meeting_names=meeting_bus_names(),
            notification_names=notification_bus_names(),
        )
        workers: dict[int, cProfile.Profile] = {}
        main_profiler = cProfile.Profile(time.thread_time)  # CPU, not wall time

        def start_worker() -> None:
            profiler = workers[threading.get_ident()] = cProfile.Profile(time.thread_time)
            profiler.enable()

        executor = None
        if profile_to:
            executor = ThreadPoolExecutor(max_workers=WORKERS, initializer=start_worker)
            asyncio.get_running_loop().set_default_executor(executor)
            main_profiler.enable()
        stopping = asyncio.Event()
        task = asyncio.create_task(parts.run(stopping))
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        if profile_to:
            main_profiler.disable()
            assert executor is not None
            # One task on each worker thread (the barrier holds each until all have one).
            barrier = threading.Barrier(WORKERS)

            def stop_worker() -> None:
                barrier.wait(10)
                profiler = workers.get(threading.get_ident())
                if profiler is not None:
                    profiler.disable()

            await asyncio.gather(*(asyncio.to_thread(stop_worker) for _ in range(WORKERS)))
            stats = pstats.Stats(main_profiler)
            for profiler in workers.values():
                stats.add(profiler)
            stats.dump_stats(profile_to)
        stopping.set()
        await asyncio.wait_for(task, 30)
        parts.close()

    asyncio.run(main())


def _progress(path: Path, names: BusNames) -> tuple[int, int, int]:
    """(case events applied, deliveries not settled, record events) of the service's store."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        applied = conn.execute(
            "SELECT stream_sequence FROM consumer_positions WHERE consumer = ?", (CASE_CONSUMER,)
        ).fetchall()
        unsettled = conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending') AND next_attempt_at <= ?",
            (datetime.now(UTC).isoformat(timespec="microseconds"),),
        ).fetchone()[0]
        logged = conn.execute("SELECT COUNT(*) FROM notification_log").fetchone()[0]
    return (int(applied[0][0]) if applied else 0), int(unsettled), int(logged)


async def live(args: argparse.Namespace, tmp: Path) -> None:
    print(f"generating {args.cases} cases up to today ...", flush=True)
    feed = messages(generated_until_today(tmp, args.cases, args.seed))
    server = EmbeddedNatsServer(tmp / "jetstream", log_file=tmp / "nats-server.log")
    server.start()
    child = None
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await declare_if_missing(js, case_stream_config(BusNames()))
        await declare_if_missing(js, case_stream_config(meeting_bus_names()))
        store_path = tmp / "notifications.sqlite"
        migrate_notifications(f"sqlite:///{store_path}")
        settings = {
            "notifications_store_url": f"sqlite:///{store_path}",
            "nats_url": server.url,
            "smtp_host": "",  # the embedded mail sink, in the service's process
            "smtp_port": _free_port(),
            "data_dir": str(tmp / "notifications"),
        }
        profile_to = str(tmp / "profile.out") if args.profile else None
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        child = ctx.Process(target=_service_process, args=(settings, profile_to, stop), name="notifications")
        child.start()
        await asyncio.sleep(3)  # started, streams bound, idle
        idle_cpu = _process_cpu(child.pid)
        await asyncio.sleep(2)
        idle = (_process_cpu(child.pid) - idle_cpu) / 2
        cpu0, wall0 = _process_cpu(child.pid), time.perf_counter()
        for i, message in enumerate(feed):
            due = wall0 + i / args.rate
            if (ahead := due - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
            await js.publish(message.subject, message.body, headers=message.headers)
        published = time.perf_counter() - wall0
        names = notification_bus_names()
        while True:
            applied, unsettled, logged = await asyncio.to_thread(_progress, store_path, names)
            info = await js.stream_info(names.stream) if logged else None
            relayed = int(info.state.messages) if info is not None else 0
            if applied >= len(feed) and unsettled == 0 and relayed >= logged:
                break
            if time.perf_counter() - wall0 > published + 300:
                raise RuntimeError(
                    f"not done: applied {applied}, unsettled {unsettled}, relayed {relayed}/{logged}"
                )
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - wall0
        cpu = _process_cpu(child.pid) - cpu0
        with contextlib.closing(sqlite3.connect(store_path)) as conn:
            by_status = dict(
                conn.execute("SELECT status || '/' || channel, COUNT(*) FROM deliveries GROUP BY 1")
            )
        await nc.close()
        n = len(feed)
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); {args.cases} cases, {n:,} case events"
        )
        print(
            f"  published at {args.rate:g}/s in {published:.1f} s;"
            f" done {wall - published:.2f} s after the last"
        )
        print(f"  deliveries: {by_status}; record events {logged:,}")
        print(f"  idle (before the feed): {idle * 1e3:.1f} ms CPU per second")
        print(
            f"notifications process: CPU {cpu / n * 1e3:.2f} ms per case event"
            f" ({cpu:.2f} s over {wall:.1f} s; idle share {idle * wall / n * 1e3:.2f} ms per event)"
        )
    finally:
        if child is not None:
            stop.set()
            child.join(60)
            if child.is_alive():
                child.kill()
        server.stop()
    if profile_to and Path(profile_to).exists():
        stats = pstats.Stats(profile_to)
        stats.sort_stats("tottime").print_stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=40, help="generated cases (cached in .bench-cache/)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fetch", type=int, default=100, help="events per fetch (the consumer's batch)")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions (cProfile)")
    parser.add_argument("--live", action="store_true", help="the whole process, fed through NATS")
    parser.add_argument("--rate", type=float, default=100.0, help="--live: case events per second")
    args = parser.parse_args()
    quiet_logs()
    if args.live:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(live(args, Path(tmp)))
        return
    cached = generated_store(ROOT / ".bench-cache", args.cases, args.seed)
    feed = deliveries(cached.url)
    types = Counter(d.event.type.rsplit(".", 2)[-2] for d in feed)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/notifications.sqlite"
        migrate_notifications(url)
        store = NotificationStore(url)
        settings = NotificationsSettings(data_dir=Path(tmp))
        clock = SystemClock()
        service = NotificationsService(
            store,
            Templates(),
            {},
            clock,
            Signer(b"bench-key-bench-key"),
            settings.policy(),
        )
        handler = CaseEventHandler(service, store, CASE_CONSUMER)
        profiler = cProfile.Profile() if args.profile else None
        wall = time.perf_counter()
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        apply_all(handler, feed, args.fetch)
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        summary: dict[str, Any] = store.summary()
        store.close()
    decoding = decode_cost(feed)
    n = len(feed)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); {args.cases} cases, {n:,} case events")
    print(f"  event types: {', '.join(f'{t} {c}' for t, c in types.most_common(8))}, ...")
    print(f"  deliveries decided: {sum(summary['deliveries'].values()):,}")
    print(
        f"apply (fetches of {args.fetch}): CPU {cpu / n * 1e3:.3f} ms/event,"
        f" wall {wall / n * 1e3:.3f} ms/event"
    )
    print(f"decode (CloudEvent + typed data, not in the figure above): CPU {decoding / n * 1e3:.3f} ms/event")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
