"""`vss up --cluster`: the production topology (deploy/README.md) on one machine.

Three nats-server nodes as one JetStream cluster (the case stream at three replicas), every
store on the embedded PostgreSQL, two case API processes. One case is written through both
processes (a conflicting pair of writes: one wins, the other gets 409, never a 5xx), read
through the query API at the position written, and found in PostgreSQL. Then a NATS node
and PostgreSQL are killed with SIGKILL: both are restarted and writes go through again.
Ctrl-C stops it all: no process of it is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
import pytest

from services.cli.postgres import with_database
from services.cli.supervisor import pid_alive
from services.shared.bus.authorization import InternalRole, NatsAuth, credentials_dir, internal_seed_path
from services.shared.bus.embedded import free_port, port_is_free
from vss_contracts.subjects import CASE_STREAM

pytestmark = [pytest.mark.faults, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
# This checkout's code, not whatever an installed `vss` entry point imports.
VSS = [sys.executable, "-m", "services.cli.main"]
ANNA = ["--user", "anna.k", "--org", "vgr-psykiatri-nordost", "--principal", "region"]
ANNA += ["--role", "coordinator"]
OPENING = {
    "client": {"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
    "municipality": {"code": "1480", "name": "Göteborg"},
    "region": {"code": "14", "name": "Västra Götalandsregionen"},
    "opened_on": "2026-01-05",
}
REGION = {"id": "vgr-psykiatri-nordost", "name": "Psykiatri Nordost", "principal": "region"}
MUNICIPALITY = {"id": "goteborg-socialtjanst", "name": "Socialtjänsten Göteborg", "principal": "municipality"}


def _coordinator(user: str, organisation: dict[str, str]) -> dict[str, Any]:
    return {
        "assigned_on": "2026-01-06",
        "coordinator": {
            "user_id": user,
            "name": user,
            "organisation": organisation,
            "contact": {"email": f"{user}@example.org"},
        },
    }


def _consecutive_free(count: int) -> int:
    """The first of ``count`` free ports in a row (node i of the cluster listens on base + i)."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise AssertionError(f"no {count} free ports in a row")


@contextmanager
def cluster_up(data: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts"), os.environ.get("PYTHONPATH", "")]),
        "VSS_DATA_DIR": str(data),
        "VSS_CASE_PORT": str(free_port()),
        "VSS_CASE_PORT_2": str(free_port()),
        "VSS_QUERY_PORT": str(free_port()),
        "VSS_MEETINGS_PORT": str(free_port()),
        "VSS_NOTIFICATIONS_PORT": str(free_port()),
        "VSS_SMTP_PORT": str(free_port()),
        "VSS_RELAY_METRICS_PORT": str(free_port()),
        "VSS_PROJECTOR_METRICS_PORT": str(free_port()),
        "VSS_SHARING_METRICS_PORT": str(free_port()),
        "VSS_NATS_PORT": str(_consecutive_free(3)),
        "VSS_NATS_MONITOR_PORT": str(_consecutive_free(3)),
        "VSS_NATS_ROUTE_PORT": str(_consecutive_free(3)),
        "VSS_POSTGRES_PORT": str(free_port()),
    }
    for name in ("VSS_NATS_URL", "VSS_NATS_REPLICAS", "VSS_POSTGRES_DSN", "VSS_CASE_STORE_URL"):
        env.pop(name, None)
    process = subprocess.Popen(
        [*VSS, "up", "--cluster"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    started: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not (data / "up.json").exists():  # written once every part is up
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "vss up --cluster did not come up in 90 s"
            time.sleep(0.3)
        yield env
    finally:
        if (data / "up.json").exists():
            started = [part["pid"] for part in _supervised(data).values() if part["pid"]]
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=90)[0].decode()
        assert process.returncode == 0, output
        assert "VSS stopped." in output
    # No process of it is left: PostgreSQL, the three nodes, both case APIs and the rest.
    assert started
    assert [pid for pid in started if pid_alive(pid)] == []


def _supervised(data: Path) -> dict[str, dict[str, Any]]:
    return {part["name"]: part for part in json.loads((data / "up.json").read_text())["parts"]}


def _status(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    done = subprocess.run([*VSS, "status", "--json"], env=env, capture_output=True, text=True, check=False)
    return done.returncode, {part["name"]: part for part in json.loads(done.stdout)["parts"]}


def _healthy(env: dict[str, str]) -> bool:
    """`vss status` exits 0; else the parts not healthy are printed (shown if the test fails)."""
    code, parts = _status(env)
    if code != 0:
        print("not healthy:", {name: part for name, part in parts.items() if not part["healthy"]})
    return code == 0


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.5)


async def _replicas(url: str, auth: NatsAuth) -> dict[str, int]:
    """Per stream on the cluster (the lease buckets' too), its replicas."""
    nc = await nats.connect(url.split(","), connect_timeout=2, **auth.options())
    try:
        js = nc.jetstream()
        replicas = {}
        for stream in await js.streams_info():
            info = await js.stream_info(stream.config.name or "")
            replicas[str(info.config.name)] = int(info.config.num_replicas or 0)
        return replicas
    finally:
        await nc.close()


@pytest.fixture
def data() -> Iterator[Path]:
    """Not under pytest's base directory: run as root, PostgreSQL runs as its own user, which
    must traverse the parents, and every pytest session makes that base 0700 again."""
    base = Path(tempfile.mkdtemp(prefix="vss-cluster-"))
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_production_topology_on_one_machine(data: Path) -> None:
    with cluster_up(data) as env:
        code, parts = _status(env)
        assert code == 0, parts
        assert {"postgres", "nats-0", "nats-1", "nats-2", "case", "case-2"} <= set(parts)
        assert all(part["healthy"] for part in parts.values())
        first = f"http://127.0.0.1:{env['VSS_CASE_PORT']}/v1/cases"
        second = f"http://127.0.0.1:{env['VSS_CASE_PORT_2']}/v1/cases"
        query = f"http://127.0.0.1:{env['VSS_QUERY_PORT']}/v1/cases"
        token = subprocess.run([*VSS, "token", *ANNA], env=env, capture_output=True, text=True, check=True)
        auth = {"Authorization": f"Bearer {token.stdout.strip()}"}
        with httpx.Client(timeout=10, headers=auth) as client:
            # One case, written through both processes.
            opened = client.post(first, json=OPENING)
            assert opened.status_code == 201, opened.text
            case_id = opened.json()["case_id"]
            assigned = client.post(f"{second}/{case_id}/coordinators", json=_coordinator("anna.k", REGION))
            assert assigned.status_code in (200, 201), assigned.text
            version = assigned.json()["version"]
            # Two writes at the same version, one per process, at once: one wins, one is refused.
            answers: list[httpx.Response] = []

            def write(api: str, user: str, organisation: dict[str, str]) -> None:
                with httpx.Client(timeout=10, headers={**auth, "If-Match": f'"{version}"'}) as own:
                    body = _coordinator(user, organisation)
                    answers.append(own.post(f"{api}/{case_id}/coordinators", json=body))

            writers = [
                threading.Thread(target=write, args=(first, "omar.s", MUNICIPALITY)),
                threading.Thread(target=write, args=(second, "eva.l", MUNICIPALITY)),
            ]
            for writer in writers:
                writer.start()
            for writer in writers:
                writer.join(20)
            codes = sorted(answer.status_code for answer in answers)
            assert len(codes) == 2, answers
            assert codes[0] in (200, 201), [(a.status_code, a.text) for a in answers]
            assert codes[1] in (409, 412), [(a.status_code, a.text) for a in answers]
            won = next(answer for answer in answers if answer.status_code in (200, 201)).json()
            # Read back through the query API at the position written.
            read = client.get(f"{query}/{case_id}", params={"position": won["position"]})
            assert read.status_code == 200, read.text
            assert read.json()["case"]["version"] == won["version"]

            # The case stream has three replicas, as has every other stream.
            up = json.loads((data / "up.json").read_text())
            operator = NatsAuth(seed_file=internal_seed_path(credentials_dir(data), InternalRole.OPERATOR))
            replicas = asyncio.run(_replicas(up["nats_url"], operator))
            assert replicas[CASE_STREAM] == 3
            assert set(replicas.values()) == {3}, replicas  # every stream and lease bucket
            # Every store is in PostgreSQL: the case's head, and its reads in the access log.
            server = up["postgres_url"]
            with psycopg.connect(with_database(server, "vss_case")) as conn:
                row = conn.execute("SELECT version FROM case_heads WHERE case_id = %s", (case_id,)).fetchone()
                assert row is not None
                assert row[0] == won["version"]
            with psycopg.connect(with_database(server, "vss_access_log")) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM access_log WHERE case_id = %s", (case_id,)
                ).fetchone()
                assert row is not None
                assert row[0] >= 1
            databases = {name for name in up["stores"].values() if name.startswith("127.0.0.1")}
            # case, meetings, notifications, sharing, read models, access log
            assert len(databases) == 6, up["stores"]

            # A NATS node and PostgreSQL killed: both restarted, and writes go through again.
            before = _supervised(data)
            for name in ("nats-1", "postgres"):
                os.kill(before[name]["pid"], signal.SIGKILL)
            for name in ("nats-1", "postgres"):
                _until(
                    f"{name} restarted",
                    lambda name=name: (
                        _supervised(data)[name]["restarts"] == before[name]["restarts"] + 1
                        and pid_alive(_supervised(data)[name]["pid"])
                    ),
                )
            _until("vss status healthy again", lambda: _healthy(env), timeout=90)
            parts = _status(env)[1]
            assert parts["postgres"]["last_exit"] == -signal.SIGKILL
            assert parts["nats-1"]["last_exit"] == -signal.SIGKILL

            def writes_again() -> httpx.Response | None:
                answer = client.post(second, json=OPENING)
                return answer if answer.status_code == 201 else None

            again = _until("a write after the restarts", writes_again)
            moved = client.post(
                f"{first}/{again.json()['case_id']}/coordinators", json=_coordinator("anna.k", REGION)
            )
            assert moved.status_code in (200, 201), moved.text
            # A connection the restart ended is opened again inside the query API: no 500. The
            # read is retried while it answers 503 (the read models not at the position yet).
            reread = f"{query}/{again.json()['case_id']}"
            position = {"position": moved.json()["position"]}
            seen: list[int] = []

            def read_again() -> httpx.Response | None:
                answer = client.get(reread, params=position)
                seen.append(answer.status_code)
                return answer if answer.is_success else None

            read = _until("a read after the restarts", read_again)
            assert set(seen) <= {200, 503}, seen
            assert read.json()["case"]["version"] == moved.json()["version"]
