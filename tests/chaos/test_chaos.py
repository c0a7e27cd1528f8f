"""The chaos suite: realistic load over HTTP while every process is killed at random.

Several coordinators' apps drive cases through their lifecycle against the case API and
the meetings API (tests/chaos/load.py) while the killer SIGKILLs, at random (seeded)
moments, every part `vss up` supervises and its nats-server, each at least
``VSS_CHAOS_MIN_KILLS`` times. Then, once every consumer has caught up, it checks and
prints as figures: store = stream; every accepted command's events stored; no 5xx but
while the case API was down; no message sent after its cancellation and at most one
duplicate per crash of the notifications service, with the same Message-ID; read models
equal a clean rebuild; the meetings schedule and every organisation's share equal a clean
replay.

Not in the default run (tests/conftest.py skips it): ``make chaos``, or
``pytest -m chaos -s tests/chaos``. Settings: ``VSS_CHAOS_MINUTES`` (10; load runs at least
this long, and on until every kind has been killed ``VSS_CHAOS_MIN_KILLS`` times, default 3),
``VSS_CHAOS_SEED`` (random, printed), ``VSS_CHAOS_CLIENTS`` (4), ``VSS_CHAOS_TOPOLOGY``
(``embedded``, the default, or ``cluster``: `vss up --cluster`, the production topology
with three nats-server nodes, every store on PostgreSQL and two case API processes, where
the node leading the case stream and PostgreSQL are killed too; ``make chaos-cluster``).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.chaos import checks, replay
from tests.chaos.checks import Report
from tests.chaos.killer import CASE_PARTS, LEADER, Killer
from tests.chaos.load import Client, Sent, Tokens
from tests.chaos.system import CLUSTER, EMBEDDED, System, Topology, running

pytestmark = pytest.mark.chaos

TOPOLOGIES = {topology.name: topology for topology in (EMBEDDED, CLUSTER)}
CHOSEN = [TOPOLOGIES[name] for name in os.environ.get("VSS_CHAOS_TOPOLOGY", "embedded").split(",")]
KILL_GAP = (2.0, 8.0)  # seconds between a part back healthy and the next kill


@pytest.fixture(params=CHOSEN, ids=lambda topology: topology.name)
def topology(request: pytest.FixtureRequest) -> Topology:
    return request.param  # type: ignore[no-any-return]


def _token(system: System, user: str, org: str, name: str, principal: str) -> str:
    options = {
        "--user": user,
        "--org": org,
        "--org-name": name,
        "--principal": principal,
        "--role": "coordinator",
    }
    return system.vss("token", *(word for option in options.items() for word in option)).stdout.strip()


def test_chaos(topology: Topology, tmp_path: Path) -> None:
    seed = int(os.environ.get("VSS_CHAOS_SEED") or random.SystemRandom().randrange(2**31))
    print(
        f"\nchaos: topology {topology.name}, seed {seed} (VSS_CHAOS_SEED={seed} repeats the choices)",
        flush=True,
    )
    report = Report()
    report.figure("topology", topology.name)
    report.figure("seed", seed)
    report.figure("started (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))
    try:
        _run(topology, tmp_path, seed, report)
    finally:  # the figures, whatever happened: they say how far it got
        figures = report.render()
        print(f"\nchaos figures:\n{figures}", flush=True)
        (tmp_path / "figures.txt").write_text(figures + "\n")
    assert not report.failures, f"seed {seed}: " + "\n".join(report.failures) + f"\n{figures}"


def _run(topology: Topology, tmp_path: Path, seed: int, report: Report) -> None:
    minutes = float(os.environ.get("VSS_CHAOS_MINUTES", "10"))
    min_kills = int(os.environ.get("VSS_CHAOS_MIN_KILLS", "3"))
    clients = int(os.environ.get("VSS_CHAOS_CLIENTS", "4"))
    rng = random.Random(seed)
    with running(tmp_path / "data", topology) as system:
        tokens = Tokens(
            _token(system, "anna.k", "vgr-psykiatri-nordost", "Psykiatri Nordost", "region"),
            _token(system, "omar.s", "goteborg-socialtjanst", "Socialtjänsten Göteborg", "municipality"),
        )
        apis = {"case": system.case_api, "meetings": system.meetings_api, "query": system.query_api}
        case_apis = system.case_apis
        log: list[Sent] = []
        lock = threading.Lock()
        drivers = [
            Client(n, rng.randrange(2**31), apis, tokens, log, lock, case_apis) for n in range(clients)
        ]
        killer = Killer(system, random.Random(rng.randrange(2**31)), KILL_GAP)
        kinds = killer.kinds()
        started = time.monotonic()
        for driver in drivers:
            driver.start()
        killer.start()
        # Load for the given minutes, and on until every kind has been killed often enough.
        while True:
            time.sleep(1)
            killed = Counter(k.kind for k in killer.kills)
            elapsed = time.monotonic() - started
            assert killer.error is None, f"seed {seed}: {killer.error}"
            assert not [d.error for d in drivers if d.error], f"seed {seed}: {[d.error for d in drivers]}"
            if elapsed >= minutes * 60 and all(killed[kind] >= min_kills for kind in kinds):
                break
            assert elapsed < minutes * 60 * 3 + 600, f"seed {seed}: too few kills in {elapsed:.0f}s: {killed}"
        killer.stop.set()
        killer.join(150)
        load_seconds = time.monotonic() - started
        for driver in drivers:
            driver.stop.set()
        for driver in drivers:
            driver.join(200)
        assert killer.error is None, f"seed {seed}: {killer.error}"
        assert not [d.name for d in drivers if d.is_alive()], "a client did not stop"
        killed = Counter(k.kind for k in killer.kills)
        report.figure("load (min)", round(load_seconds / 60, 1))
        report.figure("clients", clients)
        report.figure("cases driven", sum(d.cases for d in drivers))
        report.figure("kills per kind", dict(sorted(killed.items())))
        report.figure("kills", len(killer.kills))
        if system.topology.cluster:
            nodes = [k for k in killer.kills if k.part.startswith("nats-")]
            report.figure(
                "nats-server kills (of which the VSS_CASE leader)",
                f"{len(nodes)} ({sum(k.led_case_stream for k in nodes)})",
            )
            report.figure(
                f"{LEADER} kills: node killed",
                dict(sorted(Counter(k.part for k in killer.kills if k.kind == LEADER).items())),
            )
            report.expect(
                all(k.led_case_stream for k in killer.kills if k.kind == LEADER),
                "a nats-leader kill hit a node that did not lead VSS_CASE",
            )
        recovery = [k.back_at - k.at for k in killer.kills if k.back_at]
        report.figure(
            "back healthy after a kill (s, max)", f"{sum(recovery) / len(recovery):.1f} ({max(recovery):.1f})"
        )
        down = {part: killer.case_down(part) for part in CASE_PARTS if part in case_apis}
        postgres_down = killer.postgres_down()
        for part, windows in down.items():
            report.figure(f"{part} API down (s)", round(sum(end - start for start, end in windows), 1))
        if postgres_down:
            report.figure("postgres down (s)", round(sum(end - start for start, end in postgres_down), 1))
        abandoned = [a for d in drivers for a in d.abandoned]
        report.figure("requests refused (4xx) or unanswered", len(abandoned))
        report.expect(not abandoned, f"requests refused or unanswered: {abandoned[:5]}")
        report.expect(
            all(killed[kind] >= min_kills for kind in kinds),
            f"fewer than {min_kills} kills of a kind: {killed}",
        )
        settling = time.monotonic()
        due = checks.wait_deliveries_settled(system, 600)
        report.figure("deliveries' backlog sent after the load (s)", round(time.monotonic() - settling, 1))
        report.expect(due == 0, f"{due} deliveries still due or being sent 600 s after the load")
        lags = system.wait_caught_up(300)
        report.figure("consumers caught up (lag 0)", len(lags))
        stored = checks.store_equals_stream(system, report)
        checks.accepted_commands_stored(log, stored, report)
        checks.no_5xx_but_while_case_api_down(log, down, postgres_down, report)
        # A crash of the notifications service: a SIGKILL, or (on the cluster) an exit when
        # PostgreSQL went away under it; `vss up` counts both as a restart.
        report.figure("notifications SIGKILLs", killed["notifications"])
        checks.notifications_hold(system, int(system.parts()["notifications"]["restarts"]), report)
        checks.projections_equal_a_rebuild(system, report)
        before = replay.before_replay(system)
        replay.replay(system, before, report)
