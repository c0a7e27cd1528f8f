"""What `vss up` starts and stops: child processes with a name, a URL and a health check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.shared.files import append_private


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Part:
    """One started process."""

    name: str
    command: list[str]
    url: str
    health_url: str | None = None  # None: healthy while running (and ready(), if given)
    log_file: Path | None = None
    ready: Callable[[], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)  # this part's own variables (its NATS user)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        env = {**env, **self.env}
        if self.log_file is not None:
            with append_private(self.log_file) as out:  # 0600: logs name clients and addresses
                self.process = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT)
        else:
            self.process = subprocess.Popen(self.command, env=env)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        if not self.running():
            return False
        if self.ready is not None and not self.ready():
            return False
        return self.health_url is None or http_ok(self.health_url)

    def wait_healthy(self, stopped: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running() or stopped():
                return False
            if self.healthy():
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT first (what Ctrl-C sends), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "pid": self.process.pid if self.process else None,
            "log": str(self.log_file) if self.log_file else None,
        }
