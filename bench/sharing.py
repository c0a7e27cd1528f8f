"""Sharing benchmark: case events from VSS_CASE into each organisation's share on VSS_SHARE.

Measured in the same run, against the same (embedded) nats-server:

- **the sharing service**: ``--cases`` cases, each opened, with a coordinator and a consent
  naming ``--organisations`` organisations (10), then ``--worksheets`` worksheets, written
  through ``CaseService`` into an SQLite case store and published to a fresh case stream by
  the real relay (not timed). Then ``bootstrap_sharing`` (its durable consumer and relay, a
  fresh SQLite store, in this process, as ``services.sharing.main`` runs it) is timed from its
  start until its relay has published every message the outbox holds once the consumer has
  applied the whole case stream: case events in per second, share messages out per second.
- **raw nats-py**: the same share messages (subjects, bodies, headers as the sharing relay
  rendered them, read back from its outbox, not timed) published with ``publish_async``
  pipelined into a fresh stream of the same config, timed from connect until every ack is in.

Best of ``--rounds`` rounds each, interleaved. The ratio is share messages/s against raw
messages/s (target ≥ 0.5).

``--latency``: commit -> an organisation's subscriber instead. ``--cases`` cases set up as
above; then one worksheet command every 1/``--rate`` s for ``--seconds`` s from a process of
its own; the case relay and the sharing service each in their own process (as ``vss up``
starts them); here an ordered push subscriber filtered to one organisation's subjects (and
one on the case stream, for where the time goes). Per event, from the command's return to
the subscriber (CLOCK_MONOTONIC, one clock for all processes); the first second is warm-up.

Usage::

    .venv/bin/python bench/sharing.py                     # 40 cases x 10 organisations (~30 s)
    .venv/bin/python bench/sharing.py --cases 100 --rounds 3  # the figures in docs/performance.md
    .venv/bin/python bench/sharing.py --latency --cases 50    # 200 commands/s for 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from operator import methodcaller
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.js.api import DeliverPolicy

from bench.common import quiet_logs
from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.bus.faststream_subscriber import subscriber_of
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from services.shared.bus.streams import case_stream_config
from services.sharing.bootstrap import bootstrap_sharing, subscriptions
from services.sharing.infrastructure.bus import ShareLog, share_bus_names
from services.sharing.infrastructure.store import migrate as migrate_sharing
from services.sharing.settings import SharingSettings
from tests.support.actors import ACTORS, coordinator_for, organisation_of
from tests.support.clock import FixedClock
from tests.support.scenario import new_request, open_case_command, worksheet_command
from vss_contracts.types import OrganisationRef, Principal, Worksheet


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    events_in: int
    messages_out: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages_out / self.seconds


def write_cases(url: str, cases: int, organisations: int, worksheets: int) -> tuple[int, list[str]]:
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    clock = FixedClock()
    service = CaseService(store, clock)
    region = organisation_of(ACTORS.region)
    others = [
        OrganisationRef(id=f"bench-org-{i:02d}", name=f"Organisation {i}", principal=Principal.OTHER)
        for i in range(organisations - 1)
    ]
    case_ids: list[str] = []
    try:
        for _ in range(cases):
            request = new_request(ACTORS.region)
            case_id = service.open_case(request, open_case_command(clock.today())).case_id
            case_ids.append(str(case_id))
            assign = cmd.AssignCoordinator(
                coordinator=coordinator_for(ACTORS.region), assigned_on=clock.today()
            )
            service.execute(request, case_id, methodcaller("assign_coordinator", assign))
            consent = cmd.GiveConsent(
                organisations=[region, *others], covers_relatives=False, signed_on=clock.today()
            )
            service.execute(request, case_id, methodcaller("give_consent", consent))
            sheet = worksheet_command(clock.today(), worksheet=Worksheet.ORDINARY_DAY)
            for _ in range(worksheets):
                service.execute(request, case_id, methodcaller("complete_worksheet", sheet))
        return len(store.read_log(0, 10_000_000)), case_ids
    finally:
        store.close()


async def relay_case_stream(store_url: str, nats_url: str, names: BusNames, events: int) -> None:
    store = CaseEventStore(StoreConfig(store_url))
    relay = Relay(CaseEventLog(store, names), nats_url, settings=RelaySettings(names=names, lease_ttl=2))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    while relay.published < events:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    store.close()


async def sharing_round(
    nats_url: str, case_names: BusNames, events: int, workdir: Path
) -> tuple[Figure, str]:
    url = f"sqlite:///{workdir / f'sharing-{uuid.uuid4().hex[:6]}.sqlite'}"
    migrate_sharing(url)
    share_names = share_bus_names(f"B{uuid.uuid4().hex[:6]}_", case_names)
    settings = SharingSettings(sharing_store_url=url, nats_url=nats_url, data_dir=workdir)
    parts = bootstrap_sharing(
        settings,
        case_names=case_names,
        share_names=share_names,
        relay_settings=replace(settings.relay_settings(), names=share_names, lease_ttl=2),
    )
    # A durable of the round's own: a second subscriber on the service's broker (the first never starts).
    (case_events,) = subscriptions(settings, case_names=case_names)
    durable = replace(case_events, durable=f"bench{uuid.uuid4().hex[:6]}")
    parts.consumer = subscriber_of(parts.broker, settings, parts.consumer.handler, durable)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(parts.run(stop))
    applied_at = None
    while True:
        await asyncio.sleep(0.01)
        if parts.consumer.applied + parts.consumer.skipped >= events:
            applied_at = applied_at or time.perf_counter() - started
            total = parts.store.summary()["log_position"]
            if parts.relay.published >= total:
                break
    elapsed = time.perf_counter() - started
    print(f"  (round: consumer applied all at {applied_at:.2f} s, relay published all at {elapsed:.2f} s)")
    stop.set()
    await task
    parts.close()
    return Figure("sharing service (consumer + outbox + relay)", events, int(total), elapsed), url


async def raw_round(nats_url: str, sharing_url: str, events: int) -> Figure:
    from services.sharing.infrastructure.store import SharingStore  # noqa: PLC0415

    store = SharingStore(sharing_url)
    names = share_bus_names(f"R{uuid.uuid4().hex[:6]}_")
    log = ShareLog(store, names)
    rendered = log.render(store.read_log(0, 10_000_000))
    store.close()
    started = time.perf_counter()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(names))
        futures = [await js.publish_async(m.subject, m.body, headers=dict(m.headers)) for m in rendered]
        acks = await asyncio.wait_for(asyncio.gather(*futures), 300)
        elapsed = time.perf_counter() - started
        if len(acks) != len(rendered) or any(a.duplicate for a in acks):
            raise RuntimeError("raw round: an ack missing or a duplicate")
        await js.delete_stream(names.stream)
    finally:
        await nc.close()
    return Figure("raw nats-py publish_async (same messages)", events, len(rendered), elapsed)


# ------------------------------------------------------------------------------ latency
def write_at_rate(url: str, case_ids: list[str], rate: float, seconds: float, out: str) -> None:
    """In a process of its own (as the case API would be): one worksheet command every 1/rate s,
    round-robin over the cases; each event id with the monotonic time its command returned."""
    store = CaseEventStore(StoreConfig(url))
    service = CaseService(store, FixedClock())
    sheet = worksheet_command(FixedClock().today(), worksheet=Worksheet.ORDINARY_DAY)
    committed: list[tuple[str, float]] = []
    started = time.monotonic()
    try:
        for i in range(int(rate * seconds)):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            result = service.execute(
                new_request(ACTORS.region),
                uuid.UUID(case_ids[i % len(case_ids)]),
                methodcaller("complete_worksheet", sheet),
            )
            at = time.monotonic()
            committed += [(str(event["id"]), at) for event in result.events]
    finally:
        store.close()
    Path(out).write_text("\n".join(f"{e} {t}" for e, t in committed))


def start_process(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=out)


async def latency_run(args: argparse.Namespace, nats_url: str, workdir: Path) -> None:
    """Commit -> an organisation's subscriber, at a steady rate, each part in its own process."""
    store_url = f"sqlite:///{workdir / 'latency-case.sqlite'}"
    _, case_ids = write_cases(store_url, args.cases, args.organisations, 0)
    sharing_url = f"sqlite:///{workdir / 'latency-sharing.sqlite'}"
    migrate_sharing(sharing_url)
    case_names = BusNames.unique()
    prefix = f"L{uuid.uuid4().hex[:6]}_"
    share_names = share_bus_names(prefix, case_names)
    env = {
        **os.environ,
        "VSS_CASE_STORE_URL": store_url,
        "VSS_SHARING_STORE_URL": sharing_url,
        "VSS_NATS_URL": nats_url,
        "VSS_BUS_STREAM": case_names.stream,
        "VSS_BUS_SUBJECT_PREFIX": case_names.subject_prefix,
        "VSS_BUS_DEAD_LETTER_STREAM": case_names.dead_letter_stream,
        "VSS_BUS_DEAD_LETTER_PREFIX": case_names.dead_letter_prefix,
        "VSS_SHARE_STREAM_PREFIX": prefix,
        "VSS_DATA_DIR": str(workdir),
        "VSS_LOG_LEVEL": "WARNING",
    }
    relay = start_process("services.case.relay_main", env, workdir / "latency-relay.log")
    sharing = start_process("services.sharing.main", env, workdir / "latency-sharing.log")
    received: dict[str, float] = {}
    on_case: dict[str, float] = {}  # when each event reached VSS_CASE (where the time goes)
    organisation = "bench-org-00"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for _ in range(200):  # the relay and the sharing service declare the streams
            with contextlib.suppress(Exception):
                await js.stream_info(case_names.stream)
                await js.stream_info(share_names.stream)
                break
            await asyncio.sleep(0.05)

        async def on_message(msg: Any) -> None:
            received[orjson.loads(msg.data)["id"]] = time.monotonic()

        async def on_case_message(msg: Any) -> None:
            on_case[orjson.loads(msg.data)["id"]] = time.monotonic()

        case_sub = await js.subscribe(
            case_names.subjects,
            stream=case_names.stream,
            cb=on_case_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        sub = await js.subscribe(
            f"{share_names.subject_prefix}.{organisation}.>",
            stream=share_names.stream,
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        await asyncio.sleep(2.0)  # the setup's events shared, the parts warm
        out = workdir / "latency-commits.txt"
        writer = mp.get_context("spawn").Process(
            target=write_at_rate, args=(store_url, case_ids, args.rate, args.seconds, str(out))
        )
        writer.start()
        while writer.is_alive():
            await asyncio.sleep(0.1)
        committed = {line.split()[0]: float(line.split()[1]) for line in out.read_text().splitlines() if line}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not set(committed) <= set(received):
            await asyncio.sleep(0.1)
        await sub.unsubscribe()
        await case_sub.unsubscribe()
    finally:
        await nc.close()
        for process in (sharing, relay):
            process.send_signal(signal.SIGTERM)
            process.wait(20)
    warm = int(args.rate)  # the first second is warm-up
    ordered = sorted(committed.items(), key=lambda item: item[1])[warm:]
    missing = [e for e, _ in ordered if e not in received]
    delays = sorted((received[e] - t) * 1000 for e, t in ordered if e in received)
    if not delays:
        raise RuntimeError("nothing reached the subscriber")

    def pct(p: float, values: list[float] | None = None) -> float:
        values = delays if values is None else values
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    to_case = sorted((on_case[e] - t) * 1000 for e, t in ordered if e in on_case)

    print(
        f"latency: commit -> {organisation}'s subscriber on VSS_SHARE, {args.rate:g} commands/s for"
        f" {args.seconds:g} s ({len(delays):,} events after 1 s warm-up; {len(missing)} missing):"
        f" p50 {pct(50):.1f} ms, p90 {pct(90):.1f} ms, p99 {pct(99):.1f} ms, max {delays[-1]:.1f} ms"
        " (target p99 < 60 ms)"
    )
    if to_case:
        print(
            f"  of which commit -> VSS_CASE (the case relay): p50 {pct(50, to_case):.1f} ms,"
            f" p99 {pct(99, to_case):.1f} ms"
        )


async def main_async(args: argparse.Namespace) -> None:
    quiet_logs()
    workdir = Path(tempfile.mkdtemp(prefix="vss-bench-sharing-"))
    server = EmbeddedNatsServer(workdir / "jetstream", log_file=workdir / "nats.log")
    server.start()
    try:
        if args.latency:
            await latency_run(args, server.url, workdir)
            return
        store_url = f"sqlite:///{workdir / 'case.sqlite'}"
        events, _ = write_cases(store_url, args.cases, args.organisations, args.worksheets)
        case_names = BusNames.unique()
        await relay_case_stream(store_url, server.url, case_names, events)
        figures: dict[str, list[Figure]] = {"sharing": [], "raw": []}
        for _ in range(args.rounds):
            figure, sharing_url = await sharing_round(server.url, case_names, events, workdir)
            figures["sharing"].append(figure)
            figures["raw"].append(await raw_round(server.url, sharing_url, events))
        sharing = max(figures["sharing"], key=lambda f: f.rate)
        raw = max(figures["raw"], key=lambda f: f.rate)
        print(
            f"{args.cases} cases, {events:,} case events, {args.organisations} organisations per case,"
            f" {sharing.messages_out:,} share messages; best of {args.rounds}; cpus {os.cpu_count()}"
        )
        for f in (sharing, raw):
            print(
                f"  {f.name:<48} {f.seconds:7.2f} s  {f.messages_out / f.seconds:9,.0f} msgs/s"
                f"  {f.events_in / f.seconds:9,.0f} case events/s"
            )
        print(f"  ratio (share msgs/s ÷ raw msgs/s): {sharing.rate / raw.rate:.2f}  (target ≥ 0.5)")
        print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--organisations", type=int, default=10)
    parser.add_argument("--worksheets", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", action="store_true", help="measure commit -> subscriber instead")
    parser.add_argument("--rate", type=float, default=200.0, help="commands/s in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    args: Any = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
