"""Query API latency: a case overview and a caseload, with 100,000 cases in the read models.

How the 100,000 cases are made (generating them all through the case application would
take about half an hour, and a million events more to publish):

1. ``--base`` cases (default 2,000) are generated through the case application
   (``services.case.generator``, the same seed, end date and span as ``bench/rebuild.py``;
   cached in ``--cache``), published by the real relay to a stream on an embedded
   nats-server (the stream is cached too), and the read models are built from it once by
   the real rebuild.
2. The rows are then replicated in the read-model database to ``--cases`` cases: copy
   ``k`` of a case gets a new case id (``uuid5`` of the original id and ``k``), and every
   coordinator's user id ``u`` in it becomes a new coordinator ``u~j``: the copies get
   coordinators of their own, so caseloads do not grow with the copies. A generated set
   of 2,000 cases spreads them thinly over the coordinator pools (many coordinators with a
   handful of active cases), so ``round(25 / c)`` consecutive copies of a coordinator with
   ``c`` active cases share one new coordinator, who then carries about 25 (``--caseload``;
   the distributions before and after are printed).
   The case id and the user ids are rewritten inside the ``doc`` JSON of ``case_views``
   (and ``case_facts``), and the copies of ``case_grants``, ``case_coordinator_people``,
   ``open_actions`` and ``journal`` rows get the new case id (and mapped user ids in
   ``case_coordinator_people.user_id`` and ``journal.actor_id``). Organisations stay the same.
   PostgreSQL is then ``ANALYZE``d (autovacuum would do it after such a load); SQLite is
   not (nothing in the service runs ``ANALYZE`` on it either).

Measured, sequentially, with one keep-alive ``httpx`` client:

- **HTTP** ``GET /v1/cases/{id}`` as a coordinator of the case (so their organisation may
  see it) and ``GET /v1/coordinators/{user_id}/caseload`` as that coordinator themself,
  against the real query API (``bootstrap_query_api(..., publish=False)``) under uvicorn
  in a separate process, logging as ``python -m services.projections.main api`` does (to a
  file here). Tokens are minted with the settings' embedded key (as ``vss token`` does).
  Each read writes its access-log record before answering (SQLite: ``synchronous=FULL``).
- **in-process**: the same reads through :class:`Queries` directly (the use case with its
  access-log record, no HTTP, no token check, no position lookup), in this process.

Cases and coordinators are drawn at random (fixed seed) from all 100,000 cases and all
coordinators with active cases; "today" is the generated timeline's last day.

Usage::

    .venv/bin/python bench/query.py                             # SQLite
    .venv/bin/python bench/query.py --postgres                  # SQLite, then PostgreSQL
    .venv/bin/python bench/query.py --postgres --skip-sqlite    # PostgreSQL only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    END,
    SEED,
    drop_postgres_database,
    fresh_postgres_database,
    generated_store,
    postgres_server,
    quiet_logs,
)
from bench.rebuild import embedded_nats, published_stream
from services.projections.application.queries import Queries, QueryPolicy, Reader
from services.projections.infrastructure.database import Connection, ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import rebuild
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from services.shared.bus.embedded import free_port
from services.shared.settings import AuthSettings

TARGET_P99_MS = 20.0
COPY_NAMESPACE = uuid.UUID("6f1c2a52-3d0e-4c53-9d1e-5b0c1a7e9f10")


# --------------------------------------------------------------------------- percentiles
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Latencies:
    name: str
    ms: list[float]

    def row(self) -> str:
        return (
            f"  {self.name:<58}{len(self.ms):>7}{pct(self.ms, 0.5):>8.2f}{pct(self.ms, 0.95):>8.2f}"
            f"{pct(self.ms, 0.99):>8.2f}{max(self.ms):>8.2f}{statistics.fmean(self.ms):>8.2f}"
        )


HEADER = f"  {'':<58}{'n':>7}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'mean':>8}   (ms)"


# ---------------------------------------------------------------------------- replication
def _rewrite(value: Any, case_id: str, new_case: str, users: dict[str, str]) -> Any:
    """``value`` (a view's JSON) with the case id and every coordinator's ``user_id`` replaced."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "user_id" and isinstance(item, str):
                out[key] = users.get(item, item)
            else:
                out[key] = _rewrite(item, case_id, new_case, users)
        return out
    if isinstance(value, list):
        return [_rewrite(item, case_id, new_case, users) for item in value]
    if value == case_id:
        return new_case
    return value


def copy_id(case_id: str, k: int) -> str:
    return str(uuid.uuid5(COPY_NAMESPACE, f"{case_id}/{k}"))


def copy_user(user_id: str, k: int, group: int) -> str:
    """Copy ``k`` (1, 2, …) of a coordinator's cases belongs to coordinator ``user_id~j``.

    ``group`` copies share one new coordinator: a generated coordinator with ``c`` active
    cases has ``group = round(caseload / c)`` (at least 1), so the new ones carry about
    ``caseload`` active cases each.
    """
    return f"{user_id}~{(k - 1) // group + 1}"


def replicate(conn: Connection, target: int, caseload: int) -> dict[str, Any]:
    """Copy the read-model rows of the generated cases until there are ``target`` cases."""
    started = time.perf_counter()
    columns = (
        "case_id, doc, status, phase, municipality_code, region_code, next_follow_up_on, opened_on,"
        " version, log_position"
    )
    originals = conn.fetchall(f"SELECT {columns} FROM case_views ORDER BY case_id")
    base = len(originals)
    coordinators = {str(r[0]) for r in conn.fetchall("SELECT DISTINCT user_id FROM case_coordinator_people")}
    active = dict(
        conn.fetchall(
            "SELECT c.user_id, COUNT(*) FROM case_coordinator_people c"
            " JOIN case_views v ON v.case_id = c.case_id"
            " WHERE v.status = 'active' GROUP BY c.user_id"
        )
    )
    group = {u: max(1, round(caseload / int(active[u]))) if active.get(u) else 1 for u in coordinators}
    facts_with_id = sum(1 for c, f in conn.fetchall("SELECT case_id, facts FROM case_facts") if c in f)
    case_map: list[tuple[str, int, str]] = []
    user_map: list[tuple[str, int, str]] = []
    copies = 0
    k = 0
    while base + copies < target:
        k += 1
        user_map.extend((u, k, copy_user(u, k, group[u])) for u in sorted(coordinators))
        for row in originals[: target - base - copies]:
            case_map.append((str(row[0]), k, copy_id(str(row[0]), k)))
        copies = len(case_map)
    users_of = {k_: {u: copy_user(u, k_, group[u]) for u in coordinators} for k_ in range(1, k + 1)}
    by_id = {str(r[0]): r for r in originals}
    view_rows = []
    for orig, k_, new in case_map:
        row = by_id[orig]
        doc = _rewrite(orjson.loads(row[1]), orig, new, users_of[k_])
        view_rows.append((new, orjson.dumps(doc).decode(), *row[2:]))
    with conn.transaction() as cursor:
        cursor.execute(conn.sql("CREATE TEMP TABLE case_map (orig TEXT, k INTEGER, new TEXT)"))
        cursor.execute(conn.sql("CREATE TEMP TABLE user_map (orig TEXT, k INTEGER, new TEXT)"))
        cursor.executemany(conn.sql("INSERT INTO case_map VALUES (?, ?, ?)"), case_map)
        cursor.executemany(conn.sql("INSERT INTO user_map VALUES (?, ?, ?)"), user_map)
        cursor.execute(conn.sql("CREATE INDEX case_map_orig ON case_map (orig)"))
        cursor.execute(conn.sql("CREATE INDEX user_map_orig ON user_map (orig, k)"))
        cursor.executemany(
            conn.sql(f"INSERT INTO case_views ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), view_rows
        )
        statements = (
            "INSERT INTO case_facts (case_id, facts) SELECT m.new, f.facts FROM case_facts f"
            " JOIN case_map m ON m.orig = f.case_id",
            "INSERT INTO case_grants (case_id, organisation_id, valid_until)"
            " SELECT m.new, g.organisation_id, g.valid_until FROM case_grants g"
            " JOIN case_map m ON m.orig = g.case_id",
            "INSERT INTO case_coordinator_people (case_id, user_id, organisation_id)"
            " SELECT m.new, COALESCE(u.new, c.user_id), c.organisation_id FROM case_coordinator_people c"
            " JOIN case_map m ON m.orig = c.case_id LEFT JOIN user_map u ON u.orig = c.user_id AND u.k = m.k",
            "INSERT INTO open_actions (case_id, action_id, due_on, organisation_id)"
            " SELECT m.new, a.action_id, a.due_on, a.organisation_id FROM open_actions a"
            " JOIN case_map m ON m.orig = a.case_id",
            "INSERT INTO journal (case_id, version, log_position, event_id, type, time, actor_id, actor_org,"
            " actor_principal, summary, verified)"
            " SELECT m.new, j.version, j.log_position, j.event_id, j.type, j.time,"
            " COALESCE(u.new, j.actor_id), j.actor_org, j.actor_principal, j.summary, j.verified"
            " FROM journal j JOIN case_map m ON m.orig = j.case_id"
            " LEFT JOIN user_map u ON u.orig = j.actor_id AND u.k = m.k",
            "DROP TABLE case_map",
            "DROP TABLE user_map",
        )
        for statement in statements:
            cursor.execute(statement)
    if conn.is_postgres:
        conn.execute("ANALYZE")
    else:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {
        table: int(conn.fetchone(f"SELECT COUNT(*) FROM {table}")[0])
        for table in (
            "case_views",
            "case_grants",
            "case_coordinator_people",
            "open_actions",
            "case_facts",
            "journal",
        )
    }
    base_loads = sorted(int(n) for n in active.values())
    return {
        "base_caseloads": (
            f"median {statistics.median(base_loads)}, p10 {pct([float(n) for n in base_loads], 0.1):.0f},"
            f" p90 {pct([float(n) for n in base_loads], 0.9):.0f}, max {max(base_loads)}"
            f" over {len(base_loads):,} coordinators"
        ),
        "base": base,
        "copies": k,
        "seconds": time.perf_counter() - started,
        "counts": counts,
        "facts_with_case_id": int(facts_with_id),
    }


# ------------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Person:
    user_id: str
    organisation_id: str
    organisation_name: str
    principal: str


def samples(
    models: ReadModels, n: int, seed: int
) -> tuple[list[tuple[str, Person]], list[tuple[Person, int]], dict[str, Any]]:
    """(case id, a coordinator of it) and (coordinator, active cases) pairs, drawn at random."""
    rng = random.Random(seed)
    case_ids = [str(r[0]) for r in models.conn.fetchall("SELECT case_id FROM case_views")]
    overviews: list[tuple[str, Person]] = []
    no_coordinator = 0
    while len(overviews) < n:
        case_id = rng.choice(case_ids)
        view = models.overview(case_id)
        assert view is not None
        if not view["coordinators"]:
            no_coordinator += 1
            continue
        c = rng.choice(view["coordinators"])
        org = c["organisation"]
        overviews.append((case_id, Person(c["user_id"], org["id"], org["name"], org["principal"])))
    loads = models.conn.fetchall(
        "SELECT c.user_id, c.organisation_id, COUNT(*) FROM case_coordinator_people c"
        " JOIN case_views v ON v.case_id = c.case_id WHERE v.status = 'active'"
        " GROUP BY c.user_id, c.organisation_id ORDER BY c.user_id"
    )
    sizes = [int(r[2]) for r in loads]
    picked = [rng.choice(loads) for _ in range(n)]
    caseloads: list[tuple[Person, int]] = []
    for user_id, organisation_id, size in picked:
        view = models.coordinator_cases(str(user_id), str(organisation_id))[0]
        c = next(c for c in view["coordinators"] if c["user_id"] == user_id)
        org = c["organisation"]
        caseloads.append((Person(str(user_id), org["id"], org["name"], org["principal"]), int(size)))
    info = {
        "cases": len(case_ids),
        "no_coordinator_draws": no_coordinator,
        "coordinators": len(sizes),
        "caseload_median": statistics.median(sizes),
        "caseload_p10": pct([float(s) for s in sizes], 0.10),
        "caseload_p90": pct([float(s) for s in sizes], 0.90),
        "caseload_max": max(sizes),
        "sampled_caseload_mean": statistics.fmean(s for _, s in caseloads),
    }
    return overviews, caseloads, info


# --------------------------------------------------------------------------- the server
def _serve(
    data_dir: str, read_models: str, access_log: str, port: int, today: date, log_file: str, ready: Any
) -> None:
    """The query API as ``python -m services.projections.main api`` runs it, but publish=False."""
    import uvicorn  # noqa: PLC0415

    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # its log lines (one per request) go to a file
    os.dup2(fd, 2)

    from services.projections.bootstrap import bootstrap_query_api  # noqa: PLC0415
    from services.projections.settings import ProjectionsSettings  # noqa: PLC0415
    from services.shared.logging import configure_logging  # noqa: PLC0415

    settings = ProjectionsSettings(
        data_dir=Path(data_dir), read_model_url=read_models, access_log_url=access_log, query_port=port
    )
    parts = bootstrap_query_api(settings, today=lambda: today, publish=False)
    configure_logging(settings.log_level, json=settings.log_json)
    ready.set()
    uvicorn.run(parts.app, host=settings.query_host, port=settings.query_port, log_config=None)


@contextlib.contextmanager
def query_api(
    data_dir: Path, read_models: str, access_log: str, today: date, log_file: Path
) -> Iterator[tuple[str, int]]:
    ctx = mp.get_context("spawn")
    port = free_port()
    ready = ctx.Event()
    process = ctx.Process(
        target=_serve,
        args=(str(data_dir), read_models, access_log, port, today, str(log_file), ready),
        daemon=True,
    )
    process.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError(f"the query API did not start (see {log_file})")
            time.sleep(0.1)
        assert process.pid is not None
        yield url, process.pid
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)


# ---------------------------------------------------------------------------- measuring
def timed_http(
    client: httpx.Client, requests: list[tuple[str, str]], check: Callable[[dict[str, Any]], None]
) -> list[float]:
    ms = []
    for path, token in requests:
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
        check(response.json())
        ms.append(elapsed * 1000)
    return ms


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def bench_store(
    label: str,
    read_models_url: str,
    access_log_url: str,
    nats_url: str,
    stream_names: Any,
    args: argparse.Namespace,
    tmp: Path,
) -> None:
    print(f"\n=== {label}")
    location = ReadModelLocation(read_models_url)
    try:
        report = asyncio.run(rebuild(location, nats_url, stream_names))
        print(
            f"rebuilt the read models of {args.base:,} generated cases: {report.events:,} events"
            f" in {report.seconds:.1f} s"
        )
        conn = location.connect(report.generation)
        replicated = replicate(conn, args.cases, args.caseload)
        conn.close()
        print(
            f"replicated to {replicated['counts']['case_views']:,} cases ({replicated['copies']} copies of"
            f" each generated case, the last partial) in {replicated['seconds']:.1f} s; rows:"
            f" {', '.join(f'{t} {n:,}' for t, n in replicated['counts'].items())}"
        )
        print(f"  active cases per coordinator in the generated set: {replicated['base_caseloads']}")
        if replicated["facts_with_case_id"]:
            print(f"  note: {replicated['facts_with_case_id']} case_facts rows mention their case id")
        models = ReadModels(location.connect(report.generation))
        try:
            overviews, caseloads, info = samples(models, args.requests + args.warmup, args.seed)
            print(
                f"after: coordinators with active cases: {info['coordinators']:,}; active cases each: median"
                f" {info['caseload_median']}, p10 {info['caseload_p10']:.0f}, p90 {info['caseload_p90']:.0f},"
                f" max {info['caseload_max']}; sampled caseloads average {info['sampled_caseload_mean']:.1f}"
            )
            today = END
            data_dir = tmp / f"data-{label.lower()}"
            data_dir.mkdir()
            tokens = TokenService.from_settings(AuthSettings(), data_dir)
            minted: dict[str, str] = {}

            def token(p: Person) -> str:
                if p.user_id not in minted:
                    minted[p.user_id] = tokens.mint(
                        user_id=p.user_id,
                        organisation_id=p.organisation_id,
                        organisation_name=p.organisation_name,
                        principal=p.principal,
                        roles=["coordinator"],
                        lifetime=timedelta(hours=2),
                    )
                return minted[p.user_id]

            overview_requests = [(f"/v1/cases/{c}", token(p)) for c, p in overviews]
            caseload_requests = [(f"/v1/coordinators/{p.user_id}/caseload", token(p)) for p, _ in caseloads]
            log_file = tmp / f"query-api-{label.lower()}.log"
            w = args.warmup
            rows = []
            with (
                query_api(data_dir, read_models_url, access_log_url, today, log_file) as (url, pid),
                httpx.Client(base_url=url, timeout=30) as client,
            ):

                def check_overview(body: dict[str, Any]) -> None:
                    assert body["case"]["case_id"]

                def check_caseload(body: dict[str, Any]) -> None:
                    assert body["active_cases"] >= 1

                timed_http(client, overview_requests[:w], check_overview)
                timed_http(client, caseload_requests[:w], check_caseload)
                cpu = _cpu_seconds(pid)
                wall = time.perf_counter()
                rows.append(
                    Latencies(
                        "HTTP GET /v1/cases/{id}", timed_http(client, overview_requests[w:], check_overview)
                    )
                )
                rows.append(
                    Latencies(
                        "HTTP GET /v1/coordinators/{user_id}/caseload",
                        timed_http(client, caseload_requests[w:], check_caseload),
                    )
                )
                server_cpu = (_cpu_seconds(pid) - cpu) / (2 * args.requests) * 1000
                wall_ms = (time.perf_counter() - wall) / (2 * args.requests) * 1000
            # In-process: the use case alone, over its own connection and access-log store.
            access = AccessLogStore(access_log_url)
            queries = Queries(models, access, lambda: today, QueryPolicy())

            def readers(p: Person) -> Reader:
                return Reader(p.user_id, p.organisation_id, frozenset({"coordinator"}))

            def run(items: list[Any], call: Callable[[Any], Any]) -> list[float]:
                ms = []
                for item in items:
                    started = time.perf_counter()
                    call(item)
                    ms.append((time.perf_counter() - started) * 1000)
                return ms

            def overview(item: tuple[str, Person]) -> Any:
                return queries.overview(readers(item[1]), item[0])

            def caseload(item: tuple[Person, int]) -> Any:
                return queries.caseload(readers(item[0]), item[0].user_id)

            def record(item: tuple[str, Person]) -> None:
                queries._record(readers(item[1]), "overview", "granted", [item[0]])

            run(overviews[:w], overview)
            run(caseloads[:w], caseload)
            rows += [
                Latencies("in-process Queries.overview (+ access-log record)", run(overviews[w:], overview)),
                Latencies("in-process Queries.caseload (+ access-log record)", run(caseloads[w:], caseload)),
                # Where the time goes: the access-log write alone, and the read-model queries alone.
                Latencies("  of which: access-log record alone (1 row)", run(overviews[w:], record)),
                Latencies(
                    "  of which: read-model query alone (overview)",
                    run(overviews[w:], lambda item: models.overview(item[0])),
                ),
                Latencies(
                    "  of which: read-model query alone (caseload)",
                    run(
                        caseloads[w:],
                        lambda item: models.coordinator_cases(item[0].user_id, item[0].organisation_id),
                    ),
                ),
            ]
        finally:
            models.close()
    finally:
        location.close()
    print(
        f"{args.requests:,} requests each after {w} warm-up requests each, sequential, one keep-alive"
        f" client; today = {today}"
    )
    print(HEADER)
    for row in rows:
        print(row.row())
    print(
        f"  server process CPU per HTTP request: {server_cpu:.2f} ms (of {wall_ms:.2f} ms wall per request)"
    )
    for row in rows[:2]:
        p99 = pct(row.ms, 0.99)
        verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
        print(f"  {row.name}: p99 {p99:.2f} ms, {verdict} the p99 < {TARGET_P99_MS:.0f} ms target")
    lines = log_file.read_text(errors="replace").splitlines()
    levels = Counter(m.group(1) for ln in lines if (m := re.search(r"\[(\w+)\s*\]", ln)))
    print(f"  query API log: {len(lines):,} lines, by level {dict(levels)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000, help="cases in the read models")
    parser.add_argument("--base", type=int, default=2_000, help="cases generated through the application")
    parser.add_argument(
        "--caseload", type=int, default=25, help="active cases per coordinator the copies aim at"
    )
    parser.add_argument("--requests", type=int, default=2_000, help="measured requests of each kind")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests of each kind")
    parser.add_argument(
        "--cache", type=Path, default=Path(".bench-cache"), help="where generated stores are kept"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="the generator's seed (and the sampling's)")
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL read models and access log")
    parser.add_argument("--skip-sqlite", action="store_true", help="only PostgreSQL (with --postgres)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    quiet_logs()
    stored = generated_store(args.cache.resolve(), args.base, args.seed)
    with tempfile.TemporaryDirectory(prefix="vss-bench-query-") as tmp_name:
        tmp = Path(tmp_name)
        stream, store_dir = published_stream(stored, tmp, republish=False)
        with embedded_nats(store_dir, tmp / "nats-server.log") as nats_url:
            if not args.skip_sqlite:
                bench_store(
                    "SQLite",
                    f"sqlite:///{tmp / 'readmodels'}",
                    f"sqlite:///{tmp / 'access-log.sqlite'}",
                    nats_url,
                    stream.names,
                    args,
                    tmp,
                )
            if args.postgres:
                with postgres_server() as pg:
                    urls = [fresh_postgres_database(pg), fresh_postgres_database(pg)]
                    try:
                        bench_store("PostgreSQL", urls[0], urls[1], nats_url, stream.names, args, tmp)
                    finally:
                        for url in urls:
                            drop_postgres_database(pg, url)


if __name__ == "__main__":
    main()
