"""Meetings benchmark: the case events of generated cases into the meetings service, against the raw parts.

The events: ``--cases`` cases (default 100,000) generated through the case application
(``services.case.generator``, fixed seed, timeline ending 2026-06-30 over 1,095 days;
about 62 events per case) into an SQLite case store, cached in ``--cache``
(``.bench-cache/``, git-ignored) per (cases, seed, end, span) as ``bench/rebuild.py``
caches it (``bench/common.py``). On 2026-11-24 generating ran at 3,689 events/s for 300
cases, 2,264/s for 5,000 (the other core busy) and more slowly for 100,000 (see
docs/performance.md).

With ``--overlap``, a store that must be generated is applied while it is generated: the
generator runs in a process of its own and the first round's SQLite service run follows
the growing store (as a consumer follows the stream), its waits for new events left out
of its time; the raw read, decode and library write of that round run once the store is
complete, on the core the generator freed. So a first run takes about as long as the
longer of the two, not their sum; its service figure is taken with the other core busy.

Measured in the same run, each in a fresh process (``spawn``, so its peak RSS is its own),
from the same case store read in log order in pages of ``--page``:

- **raw read**: the case store's log (``CaseEventStore.read_log``), nothing else done;
- **raw read + decode**: each stored event decoded into what
  :meth:`MeetingsService.apply_case_event` takes (case id, event id, recorded time, the
  typed payload of the current contract version via ``decode_event``) — the service's
  input, with no meetings work. The ratios are against this;
- **raw library write**: read + decode, then the eventsourcing library's own write path
  at the service's transaction rate, over the first ``--library-sample`` case events
  (default 1,000,000; the service's time over the same events is reported beside it):
  one ``insert_events`` transaction per case event,
  storing that case event's stored bytes (as a consumer that only kept what it received
  would), into a fresh store with the same recorder settings as the meetings store's
  (the library's plain application recorder, no side tables);
- **service**: read + decode, then ``MeetingsService.apply_case_events`` of every case event,
  ``--batch`` (default 100, what one fetch of the durable consumer brings) per call, into a
  fresh meetings store (SQLite; with ``--postgres`` also a fresh database on an
  embedded PostgreSQL of the bench's own), as ``bootstrap_meetings`` composes it (default
  settings: the method's rules, Swedish working days). Each batch is one transaction (the
  timers of its cases due by each event, the meeting events they decide, each touched
  schedule's snapshot and next timer, its coordinators, the consumer position of the last);
  ``--batch 1`` is ``apply_case_event``, one transaction per case event. Then, timed
  separately, ``fire_due`` at the end of the timeline (midnight after 2026-06-30,
  Stockholm) fires every timer due by then. Reported: case events/s, meeting events
  emitted, the timers held at the end (the pending timers of every schedule, and the
  schedules with a next timer), the store's size on disk, peak RSS.

The case events go straight to the service: NATS and the durable consumer
(pull, CloudEvent validation, acks) are not in this path; ``bench/rebuild.py`` and
``bench/relay.py`` measure the bus's share. Rounds are interleaved (read, read + decode,
library, service, then again) and the best round of each counts.

Usage::

    .venv/bin/python bench/meetings.py --overlap               # 100,000 cases, SQLite (hours)
    .venv/bin/python bench/meetings.py --cases 5000 --rounds 1 # ~10 minutes here
    .venv/bin/python bench/meetings.py --cases 2000 --postgres # also PostgreSQL
    .venv/bin/python bench/meetings.py --cases 2000 --profile  # + cProfile of one SQLite run

Figures are printed as a table with ratios; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import Notification, StoredEvent

from bench.common import (
    END,
    SEED,
    Generation,
    Result,
    best,
    cached_store,
    drop_postgres_database,
    finish_generation,
    fresh_postgres_database,
    generated_store,
    in_fresh_process,
    peak_rss_mib,
    postgres_server,
    profiled,
    quiet_logs,
    start_generation,
)
from services.case.infrastructure.store import CaseEventMapper, CaseEventStore, StoreConfig
from services.meetings.application.service import CaseEventIn, MeetingsService
from services.meetings.domain.calendar import WorkingDays, local_datetime
from services.meetings.domain.schedule import restore
from services.meetings.infrastructure.store import MeetingsApplication, MeetingStore, migrate
from services.meetings.settings import MeetingsSettings
from services.shared.eventstore import EventStoreUrl, RecorderTopics
from vss_contracts.case_events import CaseEventData
from vss_contracts.registry import decode_event

# Every timer due by the end of the generated timeline fires.
TIMELINE_END = local_datetime(END + timedelta(days=1), clock_time(0, 0))
LIBRARY_RECORDERS = RecorderTopics(
    "eventsourcing.sqlite:SQLiteApplicationRecorder", "eventsourcing.postgres:PostgresApplicationRecorder"
)


# ------------------------------------------------------------------------------ the input
@dataclass(frozen=True, slots=True)
class CaseInput:
    """One case event as ``apply_case_event`` takes it (and its stored form, for the library)."""

    case_id: UUID
    event_id: str
    recorded_at: datetime
    data: CaseEventData
    sequence: int
    stored: Notification


class Waits:
    """Seconds spent waiting for a store that is still being generated (not the service's time)."""

    seconds = 0.0


def pages(
    case_url: str, page: int, *, follow: Any = None, waits: Waits | None = None
) -> Iterator[tuple[CaseEventMapper, Sequence[Notification]]]:
    """The case store's log in log order, a page at a time (with the mapper that decodes it).

    With ``follow`` (the generation's ``done`` event), the log is followed as it grows
    until the generation is done and everything is read, as a consumer follows the stream.
    """
    store = CaseEventStore(StoreConfig(case_url))
    try:
        after = 0
        while True:
            notifications = store.read_log(after, page)
            if notifications:
                yield store.case_mapper, notifications
                after = notifications[-1].id
                continue
            if follow is None:
                return
            if follow.is_set():  # every event was committed before it was set: one last look
                if not store.read_log(after, 1):
                    return
                continue
            started = time.perf_counter()
            follow.wait(0.2)
            if waits is not None:
                waits.seconds += time.perf_counter() - started
    finally:
        store.close()


def decoded(mapper: CaseEventMapper, notifications: Sequence[Notification]) -> list[CaseInput]:
    inputs = []
    for n in notifications:
        state = mapper.decode_state(n)
        inputs.append(
            CaseInput(
                case_id=n.originator_id if isinstance(n.originator_id, UUID) else UUID(str(n.originator_id)),
                event_id=state["event_id"],
                recorded_at=datetime.fromisoformat(state["recorded_at"]),
                data=decode_event(n.topic, state["data"]),
                sequence=n.id,  # a fresh stream of this store: stream sequence = log position
                stored=n,
            )
        )
    return inputs


class EndOfTimeline:
    """The service's clock (used by coordinators' requests only, none here)."""

    def now(self) -> datetime:
        return TIMELINE_END


# ------------------------------------------------------------------------- measurements
def raw_read(case_url: str, page: int, *, decoding: bool) -> Result:
    started = time.perf_counter()
    events = 0
    for mapper, notifications in pages(case_url, page):
        if decoding:
            decoded(mapper, notifications)
        events += len(notifications)
    seconds = time.perf_counter() - started
    return Result("raw read + decode" if decoding else "raw read only", events, seconds, peak_rss_mib(), {})


class Progress:
    """A line every minute on a long measurement: where it is, its rate, and the time left."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total = name, total
        self.started = self.shown = time.perf_counter()

    def __call__(self, events: int) -> None:
        now = time.perf_counter()
        if now - self.shown < 60:
            return
        self.shown = now
        rate = events / (now - self.started)
        left = (self.total - events) / rate / 60 if rate else 0.0
        print(
            f"    {self.name}: {events:,} of {self.total:,} events, {rate:,.0f}/s, ~{left:.0f} min left",
            flush=True,
        )


def library_write(case_url: str, target: str, page: int, total: int, sample: int) -> Result:
    """Read + decode, and one library ``insert_events`` transaction per case event (the first ``sample``)."""
    location = EventStoreUrl(target)
    app = MeetingsApplication(env={"CREATE_TABLE": "y", **location.persistence_env(LIBRARY_RECORDERS)})
    recorder = app.recorder
    progress = Progress(f"raw library write, {_label(target)}", min(total, sample))
    started = time.perf_counter()
    events = 0
    try:
        for mapper, notifications in pages(case_url, page):
            for item in decoded(mapper, notifications[: sample - events]):
                n = item.stored
                recorder.insert_events([StoredEvent(item.case_id, n.originator_version, n.topic, n.state)])
            events += min(len(notifications), sample - events)
            progress(events)
            if events >= sample:
                break
        seconds = time.perf_counter() - started
    finally:
        app.close()
    return Result(
        f"raw library write, {_label(target)}",
        events,
        seconds,
        peak_rss_mib(),
        {"bytes": store_bytes(target)},
    )


def service_run(
    case_url: str, target: str, page: int, total: int, sample: int, follow: Any = None, batch: int = 100
) -> Result:
    """Every case event through ``apply_case_events`` in batches of ``batch`` (as the consumer
    applies what one fetch brings; 1: ``apply_case_event``, one transaction per case event),
    then ``fire_due`` at the timeline's end.

    Also noted: the time the first ``sample`` case events took (the library write's sample).
    With ``follow``, the case store is followed while it is generated; the time spent
    waiting for it is left out.
    """
    waits = Waits()
    migrate(target)
    store = MeetingStore(target)
    settings = MeetingsSettings()  # VSS_MEETINGS_KEPT_SCHEDULES applies, as in the service
    service = MeetingsService(
        store,
        settings.rules(),
        WorkingDays(),
        EndOfTimeline(),
        kept_schedules=settings.meetings_kept_schedules,
    )
    progress = Progress(_service_name(target, batch), total)
    sampled: tuple[int, float] | None = None
    try:
        started = time.perf_counter()
        events = applied = 0
        pending: list[CaseEventIn] = []
        for mapper, notifications in pages(case_url, page, follow=follow, waits=waits):
            for item in decoded(mapper, notifications):
                if batch == 1:
                    applied += service.apply_case_event(
                        case_id=item.case_id,
                        event_id=item.event_id,
                        recorded_at=item.recorded_at,
                        data=item.data,
                        stream_sequence=item.sequence,
                    )
                else:
                    pending.append(
                        CaseEventIn(item.case_id, item.event_id, item.recorded_at, item.data, item.sequence)
                    )
                    if len(pending) < batch:
                        continue
                    applied += service.apply_case_events(pending)
                    pending = []
                if sampled is None and applied >= sample:  # the library write's sample (a batch's end)
                    sampled = (applied, time.perf_counter() - started - waits.seconds)
            events += len(notifications)
            progress(events)
        if pending:
            applied += service.apply_case_events(pending)
        apply_seconds = time.perf_counter() - started - waits.seconds
        if applied != events:  # a fresh store has applied none of them: every one must apply
            raise RuntimeError(
                f"{events - applied:,} of {events:,} case events were not applied (the service"
                " returned False, as for a redelivery, in a fresh store): the figures would be wrong"
            )
        emitted_applying = store.recorder.max_notification_id() or 0
        started = time.perf_counter()
        fired = service.fire_due(TIMELINE_END)
        fire_seconds = time.perf_counter() - started
        rss = peak_rss_mib()  # the service's; counting the timers below loads every snapshot
        extra = {
            "applied": applied,
            "waited": waits.seconds,
            "sample": sampled or (events, apply_seconds),
            "emitted_applying": emitted_applying,
            "fired": fired,
            "fire_seconds": fire_seconds,
            **held_timers(store),
            "emitted_by_type": emitted_by_type(store),
        }
    finally:
        store.close()
    extra["bytes"] = store_bytes(target)
    return Result(_service_name(target, batch), events, apply_seconds, rss, extra)


def _service_name(target: str, batch: int) -> str:
    if batch == 1:
        return f"service apply_case_event, {_label(target)}"
    return f"service apply_case_events ({batch}), {_label(target)}"


def held_timers(store: MeetingStore) -> dict[str, Any]:
    """The timers every schedule holds at the end (after ``fire_due``), and the snapshots' sizes."""
    rules, calendar = MeetingsSettings().rules(), WorkingDays()
    rows = store.recorder.query("SELECT snapshot FROM schedules")
    kinds: Counter[str] = Counter()
    overdue = sizes = largest = 0
    for row in rows:
        text = row["snapshot"]
        sizes += len(text)
        largest = max(largest, len(text))
        timers = restore(orjson.loads(text), rules, calendar).timers()
        kinds.update(key.split("/", 1)[0] for _, key in timers)
        overdue += sum(1 for at, _ in timers if at <= TIMELINE_END)
    return {
        "schedules": len(rows),
        "with_next_due": store.timer_count(),
        "timers": sum(kinds.values()),
        "timer_kinds": dict(kinds),
        "due_not_fired": overdue,
        "snapshot_mean_bytes": sizes / len(rows) if rows else 0.0,
        "snapshot_max_bytes": largest,
    }


def emitted_by_type(store: MeetingStore) -> dict[str, int]:
    table = store.recorder.events_table_name
    rows = store.recorder.query(f"SELECT topic, COUNT(*) AS n FROM {table} GROUP BY topic")
    return {str(row["topic"]).rsplit(".", 2)[-2]: int(row["n"]) for row in rows}


def store_bytes(target: str) -> int:
    location = EventStoreUrl(target)
    if location.is_postgres:
        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) if row else 0
    path = location.sqlite_path()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # fold the WAL in: the file's own size
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(
        Path(f"{path}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{path}{suffix}").exists()
    )


def _label(target: str) -> str:
    return "PostgreSQL" if EventStoreUrl(target).is_postgres else "SQLite"


def _measure(
    kind: str,
    case_url: str,
    target: str,
    page: int,
    profile: bool,
    total: int = 0,
    sample: int = 0,
    follow: Any = None,
    batch: int = 100,
) -> Result:
    """One measurement in this (fresh) process."""
    quiet_logs()
    run: Callable[[], Result]
    if kind in ("read", "decode"):
        run = lambda: raw_read(case_url, page, decoding=kind == "decode")  # noqa: E731
    elif kind == "library":
        run = lambda: library_write(case_url, target, page, total, sample)  # noqa: E731
    else:
        run = lambda: service_run(case_url, target, page, total, sample, follow, batch)  # noqa: E731
    return profiled(run) if profile else run()


# -------------------------------------------------------------------------------- runner
def table(rows: list[tuple[Result, float | None, float | None]]) -> None:
    print(
        f"  {'path':<40}{'events':>11}{'s':>9}{'events/s':>11}{'µs/event':>10}"
        f"{'× read+decode':>15}{'× library':>11}{'peak RSS':>10}"
    )
    for result, decode_ratio, library_ratio in rows:
        print(
            f"  {result.name:<40}{result.events:>11,}{result.seconds:>9.2f}{result.rate:>11,.0f}"
            f"{1e6 / result.rate:>10.1f}{_ratio(decode_ratio):>15}{_ratio(library_ratio):>11}"
            + (f"{result.peak_rss_mib:>7.0f} MiB" if result.peak_rss_mib else f"{'—':>11}")
        )


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def report_service(r: Result) -> None:
    x = r.extra
    fired, fire_s = x["fired"], x["fire_seconds"]
    print(
        f"\n  {r.name}: {r.events:,} case events applied in {r.seconds:.1f} s;"
        f" {x['emitted_applying']:,} meeting events emitted while applying"
        f"\n    fire_due at {TIMELINE_END.isoformat()}: {fired:,} meeting events in {fire_s:.2f} s"
        f" ({fired / fire_s if fire_s else 0:,.0f}/s)"
        f"\n    meeting events in the store: {sum(x['emitted_by_type'].values()):,}"
        f" ({', '.join(f'{k} {v:,}' for k, v in sorted(x['emitted_by_type'].items()))})"
        f"\n    timers held at the end: {x['timers']:,} in {x['schedules']:,} schedules"
        f" ({', '.join(f'{k} {v:,}' for k, v in sorted(x['timer_kinds'].items()))});"
        f" {x['with_next_due']:,} schedules with a next_due; {x['due_not_fired']} due and not fired"
        f"\n    snapshots: mean {x['snapshot_mean_bytes']:,.0f} B, max {x['snapshot_max_bytes']:,} B;"
        f" store on disk {x['bytes'] / 2**20:,.0f} MiB; peak RSS {r.peak_rss_mib:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000, help="generated cases (default 100,000)")
    parser.add_argument(
        "--cache", type=Path, default=Path(".bench-cache"), help="where generated stores are kept"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="the generator's seed")
    parser.add_argument("--page", type=int, default=500, help="case events read per page of the log")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds of each (default 2; 1 from 20,000 cases)"
    )
    parser.add_argument(
        "--library-sample",
        type=int,
        default=1_000_000,
        help="case events the raw library write covers (the first ones; default 1,000,000)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="case events the service applies per transaction (default 100, the consumer's fetch;"
        " 1: apply_case_event, one transaction each)",
    )
    parser.add_argument("--postgres", action="store_true", help="also into PostgreSQL")
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite runs (with --postgres)")
    parser.add_argument("--profile", action="store_true", help="also one SQLite service run under cProfile")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="if the case store must be generated, apply it while it is generated (SQLite, first round)",
    )
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.cases < 20_000 else 1
    for name in ("cases", "rounds", "page", "library_sample", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    quiet_logs()
    cache = args.cache.resolve()
    stored = cached_store(cache, args.cases, args.seed)
    generation: Generation | None = None
    if stored is None and args.overlap and not args.skip_sqlite:
        generation = start_generation(cache, args.cases, args.seed, background=True)
    elif stored is None:
        stored = generated_store(cache, args.cases, args.seed)
    expected = stored.events if stored is not None else round(args.cases * 62)  # ~62 events a case
    sample = args.library_sample  # the library write stops there, or at the end of the log

    with (
        tempfile.TemporaryDirectory(prefix="vss-bench-meetings-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        targets: list[tuple[str, Callable[[], str], Callable[[str], None]]] = []
        if not args.skip_sqlite:

            def sqlite_target() -> str:
                return f"sqlite:///{tempfile.mkdtemp(prefix='m-', dir=tmp)}/meetings.sqlite"

            targets.append(("SQLite", sqlite_target, _remove_sqlite))
        if args.postgres:
            pg = stack.enter_context(postgres_server())
            targets.append(
                (
                    "PostgreSQL",
                    lambda: fresh_postgres_database(pg),
                    lambda url: drop_postgres_database(pg, url),
                )
            )

        found: dict[str, list[Result]] = {}

        def measure(key: str, kind: str, target: str = "", *, follow: Any = None) -> Result:
            url = generation.url if generation is not None else stored.url  # type: ignore[union-attr]
            result = in_fresh_process(
                _measure,
                kind,
                url,
                target,
                args.page,
                False,
                stored.events if stored else expected,
                sample,
                follow,
                args.batch,
            )
            found.setdefault(key, []).append(result)
            print(f"  {result.name}: {result.rate:,.0f} events/s ({result.seconds:.1f} s)", flush=True)
            return result

        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds} ...", flush=True)
            remaining = targets
            if generation is not None:
                remaining = targets[1:]  # SQLite is measured here, the rest once the store is cached
                _overlapped_round(generation, targets[0], measure)
                stored, generation = finish_generation(generation), None
            else:
                measure("read", "read")
                measure("decode", "decode")
            for label, make, remove in remaining:
                for kind in ("library", "service"):
                    target = make()
                    try:
                        measure(f"{kind} {label}", kind, target)
                    finally:
                        remove(target)
        if stored is None:
            raise RuntimeError("the case store was not cached after the first round")
        profiled = None
        if args.profile and not args.skip_sqlite:
            print("profiling one SQLite service run ...", flush=True)
            label, make, remove = targets[0]
            target = make()
            try:
                profiled = in_fresh_process(
                    _measure,
                    "service",
                    stored.url,
                    target,
                    args.page,
                    True,
                    stored.events,
                    sample,
                    None,
                    args.batch,
                )
            finally:
                remove(target)

    decode = best(found["decode"])
    print(
        f"\n{stored.events:,} case events from {stored.cases:,} generated cases (seed {args.seed},"
        f" timeline to {END}); pages of {args.page}; best of {args.rounds} interleaved round(s),"
        " each measurement in a fresh process"
    )
    rows: list[tuple[Result, float | None, float | None]] = [
        (best(found["read"]), None, None),
        (decode, 1.0, None),
    ]
    services = []
    sampled_rows = []
    for label, _, _ in targets:
        library, service = best(found[f"library {label}"]), best(found[f"service {label}"])
        services.append(service)
        sample_events, sample_seconds = service.extra["sample"]
        rows.append((library, library.rate / decode.rate, 1.0))
        rows.append((service, service.rate / decode.rate, service.rate / library.rate))
        if library.events < service.events:  # the library covered a sample: compare like with like
            name = f"  the same, first {sample_events:,} only"
            on_sample = Result(name, sample_events, sample_seconds, 0.0, {})
            sampled_rows.append((on_sample, on_sample.rate / decode.rate, on_sample.rate / library.rate))
            rows.append(sampled_rows[-1])
    table(rows)
    if sampled_rows:
        print(
            f"  the raw library write covered the first {sampled_rows[0][0].events:,} case events"
            " (--library-sample): its ratio is against the service over the same events"
        )
    for key, results in found.items():
        print(f"  {key} rounds: {', '.join(f'{r.rate:,.0f}' for r in results)} events/s")
    for label, _, _ in targets:
        library = best(found[f"library {label}"])
        print(f"  raw library write, {label}: store on disk {library.extra['bytes'] / 2**20:,.0f} MiB")
    for service in services:
        report_service(service)
    if profiled is not None:
        print(f"\n{profiled.name}: {profiled.rate:,.0f} events/s\n{profiled.extra['profile']}")


def _overlapped_round(
    generation: Generation,
    sqlite: tuple[str, Callable[[], str], Callable[[str], None]],
    measure: Callable[..., Result],
) -> None:
    """The service follows the case store while it is generated; the raw parts run once it is complete.

    The generator and the service each take a core; the raw read, decode and library write
    run on the generator's core after it finishes, while the service is still applying.
    """
    label, make, remove = sqlite
    print("  the SQLite service follows the case store while it is generated", flush=True)
    service_target = make()
    try:
        with ThreadPoolExecutor(1) as pool:
            service = pool.submit(
                measure, f"service {label}", "service", service_target, follow=generation.done
            )

            def service_failed_early() -> None:
                if service.done():
                    service.result()  # raises its error now, not after the generation

            generation.wait(service_failed_early)  # raises (and stops it) if it failed: nothing measured
            measure("read", "read")
            measure("decode", "decode")
            library_target = make()
            try:
                measure(f"library {label}", "library", library_target)
            finally:
                remove(library_target)
            service.result()
    finally:
        remove(service_target)


def _remove_sqlite(url: str) -> None:
    path = Path(EventStoreUrl(url).sqlite_path())
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
