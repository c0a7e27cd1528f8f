"""Rebuild benchmark: all read models from ~1,000,000 generated events, against the raw read.

Measured in the same run, from the same stream on the same nats-server:

- **raw read**: every message of the stream read as the rebuild's reader process reads
  it (:func:`services.projections.infrastructure.stream_reader.read_stream`: an ordered
  push consumer, ephemeral, ``AckPolicy.NONE``, flow control; the client skipping data
  messages' headers; uvloop), each message's stream sequence from its reply subject, in
  one process; once with nothing else done (read only), once decoding each message with
  :func:`services.projections.infrastructure.decoding.decode` into a per-batch list
  (read + decode in one process);
- **the rebuild's reader**: :func:`services.projections.infrastructure.stream_reader.read_decoded`
  to the end, as the rebuild consumes it: the reader process reads and decodes
  (the hash check included), this process makes the records, no projection and no
  writes (read + decode on two cores: the rebuild's input);
- **rebuild**: :func:`services.projections.infrastructure.rebuild.rebuild` into a fresh
  SQLite directory (and with ``--postgres`` into a fresh PostgreSQL database), timed as
  its own :class:`RebuildReport` times it: from creating the generation's tables to the
  last view flushed (the pointer switch after it is not counted).

Each measurement runs in a fresh process (``spawn``), so its peak RSS is its own; rounds
are interleaved (raw, raw + decode, the rebuild's reader, rebuild SQLite, rebuild
PostgreSQL, then again) and the best round of each counts. The ratio is events/s over
the faster of the two read + decode measurements; a second column gives it over the raw
read alone (the rebuild's target is half of that). CPU per event is printed for each
measurement's process and, where there is one, its reader process.

The events: cases generated through the case application (``services.case.generator``,
fixed seed, timeline ending 2026-06-30 over 1,095 days) into an SQLite case store, enough
cases for at least ``--events`` events (about 62 events per case). Generating a million
events takes several minutes, so the store is cached in ``--cache`` (``.bench-cache/``,
git-ignored) per (cases, seed, end, span) and reused by later runs. The store is then
published by the real relay (``Relay`` + ``CaseEventLog``, default settings) to a stream
of its own (``BusNames.unique()``) on an embedded nats-server of its own (free port,
JetStream in a directory of its own); the relay's rate is printed for information. That
takes minutes too, so the server's JetStream directory is cached beside the case store
after it stopped, and later runs copy it into their temporary directory and start their
own nats-server on the copy (``--republish`` publishes again). The case store is SQLite
in every run: ``--postgres`` is about where the read models are written.

Usage::

    .venv/bin/python bench/rebuild.py                           # 1M events, SQLite read models
    .venv/bin/python bench/rebuild.py --postgres                # also PostgreSQL read models
    .venv/bin/python bench/rebuild.py --postgres --skip-sqlite  # PostgreSQL only
    .venv/bin/python bench/rebuild.py --events 50000            # a quick run
    .venv/bin/python bench/rebuild.py --republish               # publish with the relay again
    .venv/bin/python bench/rebuild.py --profile                 # + cProfile of one SQLite rebuild

Figures are printed as a table with ratios; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.errors import NotFoundError

from bench.common import (
    SEED,
    CachedStore,
    Result,
    best,
    case_store,
    drop_postgres_database,
    fresh_postgres_database,
    in_fresh_process,
    peak_rss_mib,
    postgres_server,
    profiled,
    quiet_logs,
)
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.projections.application.projector import KEPT_VIEWS
from services.projections.domain.events import CaseEventRecord
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.decoding import decode
from services.projections.infrastructure.rebuild import rebuild
from services.projections.infrastructure.stream_reader import read_decoded, read_stream, run_loop
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings, lease_bucket

TARGET = 30_000.0  # events/s, on this 2-core machine


# ------------------------------------------------------------------------------ the stream
async def stream_last_sequence(nats_url: str, stream: str) -> tuple[int, int]:
    nc = await nats.connect(nats_url)
    try:
        state = (await nc.jetstream().stream_info(stream)).state
        return int(state.messages), int(state.last_seq)
    finally:
        await nc.close()


async def delete_streams(nats_url: str, names: BusNames) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for stream in (names.stream, f"KV_{lease_bucket(names)}", names.dead_letter_stream):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await nc.close()


async def publish(url: str, nats_url: str, names: BusNames, expected: int) -> Result:
    """The real relay, from its start until the stream holds every stored event."""
    store = CaseEventStore(StoreConfig(url))
    relay = Relay(CaseEventLog(store, names), nats_url, settings=RelaySettings(names=names), name="bench")
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    shown = time.monotonic()
    try:
        # Log positions 1 … expected (SQLite rowids): the relay's position is what the stream
        # holds, also after a lost lease, whose unacknowledged publishes landed.
        while relay.position < expected:
            if task.done():
                task.result()
                raise RuntimeError(f"the relay stopped at position {relay.position:,} of {expected:,}")
            await asyncio.sleep(0.01)
            if time.monotonic() - shown >= 30:
                shown = time.monotonic()
                print(f"  relay: position {relay.position:,} of {expected:,}", flush=True)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        store.close()
    messages, last = await stream_last_sequence(nats_url, names.stream)
    if messages != expected or last != expected:
        raise RuntimeError(f"the stream holds {messages:,} messages (last {last:,}), expected {expected:,}")
    # One lease term: the lease was never lost while publishing.
    print(f"  relay: {relay.terms} lease term(s), {relay.published:,} acked to it", flush=True)
    return Result("relay: case store → acked in JetStream", expected, seconds, peak_rss_mib(), {})


def _publish(url: str, nats_url: str, names: BusNames, expected: int) -> Result:
    quiet_logs()
    return asyncio.run(publish(url, nats_url, names, expected))


# ------------------------------------------------------------------------- measurements
def usage() -> dict[str, float]:
    """CPU seconds of this process and of its ended children (the reader), the children's peak RSS."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu": own.ru_utime + own.ru_stime,
        "cpu_children": children.ru_utime + children.ru_stime,
        "rss_children": children.ru_maxrss / 1024,  # KiB on Linux
    }


def spent(before: dict[str, float]) -> dict[str, float]:
    after = usage()
    return {
        "cpu": after["cpu"] - before["cpu"],
        "cpu_children": after["cpu_children"] - before["cpu_children"],
        "rss_children": after["rss_children"],
    }


async def raw_read(nats_url: str, names: BusNames, batch: int, *, decoding: bool) -> Result:
    """The rebuild reader's reading in one process: same consumer, same client, same loop.

    :func:`read_stream` (an ordered push consumer, bodies only, on uvloop), each message's
    stream sequence from its reply subject; with ``decoding``, :func:`decode` of each
    message into a list of ``batch`` records (read + decode in one process, no projection).
    The cyclic garbage collector is off, as in the reader process.
    """
    gc.freeze()
    gc.disable()
    before = usage()
    started = time.perf_counter()
    events = 0
    records: list[CaseEventRecord] = []

    def consume(sequence: int, body: bytes, target: int) -> None:
        nonlocal events
        events += 1
        if decoding:
            records.append(decode(body, sequence))
            if len(records) >= batch or sequence >= target:
                records.clear()

    await read_stream(nats_url, names, consume, description="VSS bench raw read (ephemeral)")
    seconds = time.perf_counter() - started
    name = "raw read + decode() in one process" if decoding else "raw read only (no decode)"
    return Result(name, events, seconds, peak_rss_mib(), spent(before))


async def reader_pipeline(nats_url: str, names: BusNames, batch: int) -> Result:
    """The rebuild's own input: :func:`read_decoded` (reader process + records here), no projection.

    The cyclic garbage collector is off here too, as during a rebuild.
    """
    gc.freeze()
    gc.disable()
    before = usage()
    started = time.perf_counter()
    events = skipped = 0
    async with read_decoded(nats_url, names, batch) as batches:
        async for decoded in batches:
            events += len(decoded.records) + len(decoded.undecodable)
            skipped += len(decoded.undecodable)
    seconds = time.perf_counter() - started
    return Result(
        "raw read + decode, the rebuild's reader",
        events,
        seconds,
        peak_rss_mib(),
        {"skipped": skipped, **spent(before)},
    )


async def rebuild_into(
    url: str, label: str, nats_url: str, names: BusNames, batch: int, kept_views: int | None
) -> Result:
    location = ReadModelLocation(url)
    before = usage()
    try:
        report = await rebuild(location, nats_url, names, batch=batch, kept_views=kept_views)
        cost = spent(before)
        generation = report.generation
        models_connection = location.connect(generation)
        try:
            counts = {
                table: int(models_connection.fetchone(f"SELECT COUNT(*) FROM {table}")[0])
                for table in ("case_views", "journal")
            }
        finally:
            models_connection.close()
    finally:
        location.close()
    return Result(
        f"rebuild into {label}",
        report.events,
        report.seconds,
        peak_rss_mib(),
        {
            "skipped": report.skipped,
            "position": report.position,
            **counts,
            "views kept": f"{kept_views:,}" if kept_views else "all",
            "written out": report.views_written_out,
            "read back": report.views_read_back,
            **cost,
        },
    )


def _measure(
    kind: str, target: str, nats_url: str, names: BusNames, batch: int, profile: bool, kept_views: int | None
) -> Result:
    """One measurement in this (fresh) process."""
    quiet_logs()
    if kind == "raw":
        return run_loop(raw_read(nats_url, names, batch, decoding=False))
    if kind == "decode":
        return run_loop(raw_read(nats_url, names, batch, decoding=True))
    if kind == "pipeline":
        return asyncio.run(reader_pipeline(nats_url, names, batch))
    label = "PostgreSQL" if target.startswith("postgres") else "SQLite"

    def run() -> Result:
        return asyncio.run(rebuild_into(target, label, nats_url, names, batch, kept_views))

    return profiled(run) if profile else run()


def measure_in_process(
    kind: str,
    target: str,
    nats_url: str,
    names: BusNames,
    batch: int,
    *,
    profile: bool = False,
    kept_views: int | None = KEPT_VIEWS,
) -> Result:
    return in_fresh_process(_measure, kind, target, nats_url, names, batch, profile, kept_views)


# -------------------------------------------------------------------------------- runner
@dataclass(frozen=True)
class Stream:
    names: BusNames
    events: int
    relay: Result | None  # the relay's publishing, if this run published
    note: str


def _names_of(stream: str) -> BusNames:
    tag = stream.removeprefix("T").removesuffix("_CASE").lower()
    return BusNames(f"T{tag}_CASE", f"t{tag}.vss.case", f"T{tag}_DLQ", f"t{tag}.vss.dlq")


def published_stream(stored: CachedStore, tmp: Path, *, republish: bool) -> tuple[Stream, Path]:
    """A JetStream store directory holding the case store on a stream: from the cache, else published.

    Publishing with the relay takes long (every multi-event commit is an atomic batch,
    which this nats-server syncs to disk one at a time), so the server's store directory
    is cached beside the case store after a publishing run, and copied into this run's
    temporary directory (the cache is never served from directly).
    """
    cached = stored.path.with_suffix(".jetstream")
    meta = stored.path.with_suffix(".stream.json")
    if republish or not (cached.exists() and meta.exists()):
        partial = cached.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        server = EmbeddedNatsServer(partial, log_file=tmp / "nats-server-publish.log")
        server.start()
        names = BusNames.unique()
        try:
            print(
                f"publishing {stored.events:,} events with the relay to stream {names.stream} ...", flush=True
            )
            # In a fresh process, as every measurement: not in the one that just generated the
            # store (its heap made for a 10 s pause of the event loop, and a lost lease).
            relay = in_fresh_process(_publish, stored.url, server.url, names, stored.events)
            asyncio.run(delete_lease(server.url, names))
        finally:
            server.stop()
        shutil.rmtree(cached, ignore_errors=True)
        partial.rename(cached)
        meta.write_text(
            json.dumps(
                {
                    "stream": names.stream,
                    "events": stored.events,
                    "relay_seconds": relay.seconds,
                    "published_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
        )
        print(
            f"  {relay.events:,} events in {relay.seconds:.1f} s: {relay.rate:,.0f} events/s (stream cached)"
        )
        stream = Stream(names, stored.events, relay, "published by the relay in this run")
    else:
        info = json.loads(meta.read_text())
        names = _names_of(info["stream"])
        stream = Stream(
            names,
            int(info["events"]),
            None,
            f"published by the relay on {info['published_at']} in {info['relay_seconds']:.0f} s"
            f" ({int(info['events']) / info['relay_seconds']:,.0f} events/s); its JetStream store cached",
        )
        print(f"stream {names.stream}: {stream.note}")
    store_dir = tmp / "jetstream"
    shutil.copytree(cached, store_dir)
    return stream, store_dir


async def delete_lease(nats_url: str, names: BusNames) -> None:
    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(f"KV_{lease_bucket(names)}")
    finally:
        await nc.close()


@contextlib.contextmanager
def embedded_nats(store_dir: Path, log_file: Path) -> Iterator[str]:
    server = EmbeddedNatsServer(store_dir, log_file=log_file)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def table(rows: list[tuple[Result, float | None]], raw: Result) -> None:
    """Each row with its ratio over read + decode and over the raw read alone (the target's)."""
    print(
        f"  {'path':<46}{'events':>11}{'s':>9}{'events/s':>11}{'µs/event':>10}"
        f"{'× read+decode':>15}{'× raw read':>12}{'peak RSS':>10}"
    )
    for result, ratio in rows:
        over_raw = f"{result.rate / raw.rate:.2f}" if ratio is not None else "—"
        print(
            f"  {result.name:<46}{result.events:>11,}{result.seconds:>9.2f}{result.rate:>11,.0f}"
            f"{1e6 / result.rate:>10.1f}{(f'{ratio:.2f}' if ratio is not None else '—'):>15}"
            f"{over_raw:>12}{result.peak_rss_mib:>7.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="at least this many events (default 1M)"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(".bench-cache"), help="where generated stores are kept"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="the generator's seed")
    parser.add_argument(
        "--batch",
        type=int,
        default=1000,
        help="events per batch (transaction) of the rebuild and of the reads",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each measurement")
    parser.add_argument(
        "--kept-views",
        type=int,
        default=KEPT_VIEWS,
        help=f"case views the rebuild keeps in memory (0: all; default {KEPT_VIEWS:,}, the service's)",
    )
    parser.add_argument("--postgres", action="store_true", help="also rebuild into PostgreSQL")
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite rebuild (with --postgres)")
    parser.add_argument("--profile", action="store_true", help="also one SQLite rebuild under cProfile")
    parser.add_argument(
        "--republish", action="store_true", help="publish with the relay even if the stream is cached"
    )
    args = parser.parse_args()
    kept = args.kept_views or None
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    quiet_logs()
    stored = case_store(args.cache.resolve(), args.events, args.seed)

    with tempfile.TemporaryDirectory(prefix="vss-bench-rebuild-") as tmp_name:
        tmp = Path(tmp_name)
        stream, store_dir = published_stream(stored, tmp, republish=args.republish)
        log_file = tmp / "nats-server.log"
        with embedded_nats(store_dir, log_file) as nats_url, contextlib.ExitStack() as stack:
            messages, last = asyncio.run(stream_last_sequence(nats_url, stream.names.stream))
            if messages != stored.events or last != stored.events:
                raise RuntimeError(
                    f"the stream holds {messages:,} messages (last {last:,}), not {stored.events:,}"
                )
            targets: list[tuple[str, Callable[[], str]]] = []
            if not args.skip_sqlite:
                targets.append(("SQLite", lambda: f"sqlite:///{tempfile.mkdtemp(prefix='rm-', dir=tmp)}"))
            if args.postgres:
                pg = stack.enter_context(postgres_server())
                pg_urls: list[str] = []

                def drop_all() -> None:
                    for url in pg_urls:
                        drop_postgres_database(pg, url)

                def pg_target() -> str:
                    pg_urls.append(fresh_postgres_database(pg))
                    return pg_urls[-1]

                stack.callback(drop_all)
                targets.append(("PostgreSQL", pg_target))

            found: dict[str, list[Result]] = {}
            for round_ in range(1, args.rounds + 1):
                print(f"round {round_} of {args.rounds} ...", flush=True)
                for kind in ("raw", "decode", "pipeline"):
                    result = measure_in_process(kind, "", nats_url, stream.names, args.batch)
                    found.setdefault(kind, []).append(result)
                    print(
                        f"  {result.name}: {result.rate:,.0f} events/s ({result.seconds:.1f} s)", flush=True
                    )
                for label, make in targets:
                    result = measure_in_process(
                        "rebuild", make(), nats_url, stream.names, args.batch, kept_views=kept
                    )
                    found.setdefault(label, []).append(result)
                    print(
                        f"  {result.name}: {result.rate:,.0f} events/s ({result.seconds:.1f} s)", flush=True
                    )
            profiled = None
            if args.profile and not args.skip_sqlite:
                print("profiling one SQLite rebuild ...", flush=True)
                profiled = measure_in_process(
                    "rebuild",
                    targets[0][1](),
                    nats_url,
                    stream.names,
                    args.batch,
                    profile=True,
                    kept_views=kept,
                )

        # The ratios are over the faster way to read and decode, whichever it was.
        decoded = max(best(found["decode"]), best(found["pipeline"]), key=lambda r: r.rate)
        print(
            f"\n{stored.events:,} events from {stored.cases:,} generated cases (seed {args.seed}), stream"
            f" {stream.note}; batch {args.batch}; best of {args.rounds} interleaved round(s),"
            f" each measurement in a fresh process; × read + decode is over the faster of the"
            f" two ways to read and decode ({decoded.name})"
        )
        rows: list[tuple[Result, float | None]] = []
        if stream.relay is not None:
            rows.append((stream.relay, None))
        rows.append((best(found["raw"]), None))
        rows += [(r, r.rate / decoded.rate) for r in (best(found["decode"]), best(found["pipeline"]))]
        rebuilds = [best(found[label]) for label, _ in targets]
        rows += [(r, r.rate / decoded.rate) for r in rebuilds]
        table(rows, best(found["raw"]))
        for result, _ in rows[1:] if stream.relay is not None else rows:
            if "cpu" in result.extra:
                x = result.extra
                print(
                    f"  {result.name}: CPU {x['cpu'] / result.events * 1e6:.1f} µs/event in its process"
                    + (
                        f", {x['cpu_children'] / result.events * 1e6:.1f} µs/event in the reader process"
                        f" (peak RSS {x['rss_children']:.0f} MiB)"
                        if x["cpu_children"]
                        else ""
                    )
                )
        print(f"  read only rounds: {', '.join(f'{r.rate:,.0f}' for r in found['raw'])} events/s")
        print(f"  read + decode rounds: {', '.join(f'{r.rate:,.0f}' for r in found['decode'])} events/s")
        print(
            "  the rebuild's reader rounds:"
            f" {', '.join(f'{r.rate:,.0f}' for r in found['pipeline'])} events/s"
        )
        for label, _ in targets:
            print(f"  {label} rebuild rounds: {', '.join(f'{r.rate:,.0f}' for r in found[label])} events/s")
        for r in rebuilds:
            verdict = "meets" if r.rate >= TARGET else "MISSES"
            print(
                f"  {r.name}: {r.rate:,.0f} events/s, {verdict} the ≥ {TARGET:,.0f} events/s target;"
                f" {r.extra['case_views']:,} case views, {r.extra['journal']:,} journal rows,"
                f" {r.extra['skipped']} skipped; views kept {r.extra['views kept']}, written out"
                f" {r.extra['written out']:,} times, read back {r.extra['read back']:,} times"
            )
        if profiled is not None:
            print(f"\n{profiled.name}: {profiled.rate:,.0f} events/s\n{profiled.extra['profile']}")
        lines = [
            ln for ln in log_file.read_text(errors="replace").splitlines() if "[WRN]" in ln or "[ERR]" in ln
        ]
        # While it recovers the stream at start-up, the server fails its health check: expected.
        starting = [ln for ln in lines if "Healthcheck failed" in ln]
        lines = [ln for ln in lines if ln not in starting]
        print(
            f"\nnats-server log: {len(lines)} warning/error lines"
            f" (besides {len(starting)} failed health checks while it loaded the stream)"
        )
        for line in lines[:10]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
