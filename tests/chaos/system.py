"""The system under test: `vss up` as a user starts it, from this checkout, on ports of its own.

The topology is a parameter (:class:`Topology`: extra arguments of `vss up` and extra
environment), and what may be killed is read from what `vss up` itself reports
(``up.json``: every part it started, with its pid), so a cluster topology (several
nats-server nodes, PostgreSQL) only adds a topology, not a new suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.errors import NotFoundError

from services.cli.postgres import DATABASES, with_database
from services.cli.supervisor import pid_alive
from services.shared.bus.authorization import InternalRole, NatsAuth, credentials_dir, internal_seed_path
from services.shared.bus.embedded import free_ports, port_is_free
from services.shared.bus.streams import server_urls

ROOT = Path(__file__).resolve().parents[2]
# This checkout's CLI (not the installed entry point, which may import another checkout's code).
VSS = (sys.executable, "-m", "services.cli.main")


@dataclass(frozen=True)
class Topology:
    """How `vss up` is started: the embedded default, or the production topology (``--cluster``:
    three nats-server nodes, every store on PostgreSQL, two case API processes)."""

    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def cluster(self) -> bool:
        return "--cluster" in self.args


EMBEDDED = Topology("embedded")
CLUSTER = Topology("cluster", ("--cluster",))
# What a machine's environment may set that would point `vss up --cluster` elsewhere.
CLUSTER_SETTINGS = ("VSS_NATS_REPLICAS", "VSS_POSTGRES_DSN", *DATABASES)


class System:
    """One `vss up` process and the environment every `vss` command of the test uses."""

    def __init__(self, data_dir: Path, topology: Topology, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.topology = topology
        # Distinct ports: two free_port() calls may return the same one.
        ports = iter(free_ports(13))
        self.case_port = next(ports)
        self.nats_port = next(ports)
        self.nats_monitor_port = next(ports)
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'contracts'}",
            "VSS_DATA_DIR": str(data_dir),
            "VSS_CASE_PORT": str(self.case_port),
            "VSS_QUERY_PORT": str(next(ports)),
            "VSS_MEETINGS_PORT": str(next(ports)),
            "VSS_NOTIFICATIONS_PORT": str(next(ports)),
            "VSS_SMTP_PORT": str(next(ports)),  # the local mail sink's
            "VSS_RELAY_METRICS_PORT": str(next(ports)),
            "VSS_PROJECTOR_METRICS_PORT": str(next(ports)),
            "VSS_SHARING_METRICS_PORT": str(next(ports)),
            # The embedded nats-server, on ports of this test's own (never a machine's NATS).
            "VSS_NATS_PORT": str(self.nats_port),
            "VSS_NATS_MONITOR_PORT": str(self.nats_monitor_port),
            **topology.env,
        }
        if topology.cluster:
            # Node i listens on VSS_NATS_PORT + i (and so on): three ports in a row, each.
            taken = {int(value) for name, value in self.env.items() if name.endswith("_PORT")}
            for name in ("VSS_NATS_PORT", "VSS_NATS_MONITOR_PORT", "VSS_NATS_ROUTE_PORT"):
                base = consecutive_free(3, taken)
                taken |= {base, base + 1, base + 2}
                self.env[name] = str(base)
            self.nats_port, self.nats_monitor_port = (
                int(self.env["VSS_NATS_PORT"]),
                int(self.env["VSS_NATS_MONITOR_PORT"]),
            )
            self.env["VSS_CASE_PORT_2"] = str(next(ports))
            self.env["VSS_POSTGRES_PORT"] = str(next(ports))
        for name in ("VSS_CASE_STORE_URL", "VSS_NATS_URL", "VSS_NATS_NKEY_SEED_FILE", *CLUSTER_SETTINGS):
            if name not in topology.env:
                self.env.pop(name, None)
        self.env.update(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.output = data_dir.parent / f"vss-up-{data_dir.name}.log"

    # ------------------------------------------------------------------------- addresses
    @property
    def case_api(self) -> str:
        return f"http://127.0.0.1:{self.case_port}"

    @property
    def query_api(self) -> str:
        return f"http://127.0.0.1:{self.env['VSS_QUERY_PORT']}"

    @property
    def meetings_api(self) -> str:
        return f"http://127.0.0.1:{self.env['VSS_MEETINGS_PORT']}"

    @property
    def case_apis(self) -> dict[str, str]:
        """Each case API process by part name (two on the cluster: `case` and `case-2`)."""
        urls = [str(url) for url in self.up_state().get("case_apis") or [self.case_api]]
        return dict(zip(("case", "case-2"), urls, strict=False))

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated (one on the embedded topology)."""
        return str(self.up_state()["nats_url"])

    def postgres_url(self, database: str) -> str:
        """A database on the cluster's PostgreSQL (the server `vss up --cluster` reports)."""
        return with_database(str(self.up_state()["postgres_url"]), database)

    def store_url(self, setting: str, sqlite_file: str) -> str:
        """Where a store is: its database on the cluster's PostgreSQL, or its SQLite file."""
        if self.topology.cluster:
            return self.postgres_url(DATABASES[setting])
        return self.env.get(setting) or f"sqlite:///{(self.data_dir / sqlite_file).resolve()}"

    def operator_env(self) -> dict[str, str]:
        """What an operator exports to run `vss` commands against the running cluster: every
        node, the operator's credentials and every store's database (`vss up --cluster` sets
        them for its parts only). Not given to `vss up` itself: with VSS_NATS_URL set it would
        start no nats-server."""
        if not self.topology.cluster:
            return {}
        return {
            "VSS_NATS_URL": self.nats_url,
            "VSS_NATS_REPLICAS": str(self.up_state().get("nats_replicas") or 3),
            "VSS_NATS_NKEY_SEED_FILE": str(self.operator().seed_file),
            **{setting: self.postgres_url(database) for setting, database in DATABASES.items()},
        }

    def stream_leader(self, stream: str, timeout: float = 30.0) -> str:
        """The part running the node that leads ``stream`` (the server's own answer to
        ``$JS.API.STREAM.INFO``: cluster.leader, a node's server name `vss-<i>`). Asked again
        while the nodes are electing one (no leader, or no answer), for at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                leader = asyncio.run(_stream_leader(self.nats_url, self.operator(), stream))
            except Exception as error:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"no leader of {stream} named in {timeout:.0f} s: {error}"
                    ) from error
                time.sleep(0.5)
                continue
            return f"nats-{leader.rpartition('-')[2]}"

    def operator(self) -> NatsAuth:
        return NatsAuth(seed_file=internal_seed_path(credentials_dir(self.data_dir), InternalRole.OPERATOR))

    # ----------------------------------------------------------------------- the process
    def start(self, timeout: float = 90.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as log:
            self.process = subprocess.Popen(
                [*VSS, "up", *self.topology.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not (self.data_dir / "up.json").exists():  # written once every part is up
            assert self.process.poll() is None, f"vss up exited: {self.output.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"vss up not up in {timeout:.0f}s: {self.output}"
            time.sleep(0.2)

    def stop(self) -> None:
        """Ctrl-C, as a user stops it; every part it started must be gone afterwards."""
        if self.process is None:
            return
        pids = [part["pid"] for part in self.parts().values() if part.get("pid")]
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            self.process = None
        assert code == 0, f"vss up exited {code}: {self.output}"
        assert not [pid for pid in pids if pid_alive(int(pid))], "a part outlived vss up"

    # -------------------------------------------------------------------------- reading
    def vss(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*VSS, *args],
            cwd=ROOT,
            env={**self.env, **self.operator_env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"vss {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def up_state(self) -> dict[str, Any]:
        # Rewritten in place by `vss up` (atomically): a read never sees half a file.
        return dict(json.loads((self.data_dir / "up.json").read_text()))

    def parts(self) -> dict[str, dict[str, Any]]:
        """What `vss up` started, by name: pid, restarts, last exit, failing."""
        return {part["name"]: part for part in self.up_state()["parts"]}

    def killable(self) -> list[str]:
        """Every process of VSS that `vss up` started and supervises (nats-server nodes
        included). Not the local mail sink: it stands in for the organisation's SMTP relay
        (ADR 0033), as it did inside the notifications process before."""
        return [name for name, part in self.parts().items() if part.get("pid") and name != "mail-sink"]

    def status(self) -> tuple[int, dict[str, dict[str, Any]]]:
        done = self.vss("status", "--json", check=False, timeout=60)
        try:
            report = json.loads(done.stdout)
        except ValueError:
            return done.returncode, {}
        return done.returncode, {part["name"]: part for part in report["parts"]}

    def wait_caught_up(self, timeout: float) -> dict[str, int | None]:
        """Until every part is healthy and every durable consumer's lag is 0; the lags."""
        deadline = time.monotonic() + timeout
        lags: dict[str, int | None] = {}
        while True:
            code, parts = self.status()
            lags = {d: n for part in parts.values() for d, n in (part.get("lag") or {}).items()}
            if code == 0 and lags and all(n == 0 for n in lags.values()):
                return lags
            assert time.monotonic() < deadline, f"not caught up in {timeout:.0f}s: lags {lags}, {parts}"
            time.sleep(1)


@contextlib.contextmanager
def running(data_dir: Path, topology: Topology, extra_env: dict[str, str] | None = None) -> Iterator[System]:
    system = System(data_dir, topology, extra_env)
    system.start()
    try:
        yield system
    finally:
        system.stop()


def consecutive_free(count: int, taken: set[int]) -> int:
    """The first of ``count`` free ports in a row, none of them ``taken``."""
    for _ in range(500):
        base = random.randrange(20_000, 60_000)
        ports = {base + i for i in range(count)}
        if not ports & taken and all(port_is_free(port) for port in ports):
            return base
    raise AssertionError(f"no {count} free ports in a row")


async def _stream_leader(url: str, auth: NatsAuth, stream: str) -> str:
    nc = await nats.connect(server_urls(url), connect_timeout=2, max_reconnect_attempts=3, **auth.options())
    try:
        info = await nc.jetstream().stream_info(stream)
        leader = info.cluster.leader if info.cluster is not None else None
        assert leader, f"{stream} has no leader: {info.cluster}"
        return str(leader)
    finally:
        await nc.close()


async def delete_stream_and_bucket(url: str, auth: NatsAuth, stream: str, bucket: str) -> None:
    """The documented way to have the sharing service decide and publish again from the start."""
    nc = await nats.connect(server_urls(url), connect_timeout=2, max_reconnect_attempts=3, **auth.options())
    try:
        js = nc.jetstream()
        for name in (stream, f"KV_{bucket}"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


def delete_share_stream(system: System, stream: str, bucket: str) -> None:
    asyncio.run(delete_stream_and_bucket(system.nats_url, system.operator(), stream, bucket))
