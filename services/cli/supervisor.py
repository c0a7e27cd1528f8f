"""What `vss up` starts, keeps running and stops: child processes with a name, a URL and a
health check.

A part that dies is started again, after a pause that grows while it keeps dying soon after
its start (1 s, 2 s, 4 s … up to 30 s), so one part's crash never takes the others down
(the case API keeps taking commands while a consumer restarts, and every part reconnects
to a nats-server that was restarted). A part that died within :data:`QUICK` seconds of
its start :data:`FAILING_AFTER` times in a row is reported as failing (``vss status``
exits non-zero); it is still tried again, once every :data:`FAILING_RETRY` seconds, so it
recovers by itself once its cause is gone (a database back, a port free).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.shared.files import append_private
from services.shared.processes import stop_process, wait_ready

BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # seconds before a restart, by crashes in a row
QUICK = 10.0  # a part that dies this soon after its start crashed at start
FAILING_AFTER = 5  # crashes at start in a row that make a part failing
FAILING_RETRY = 60.0  # seconds between the tries of a failing part


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


def as_user(user: str | None) -> dict[str, Any]:
    """Popen's arguments to run as ``user`` with its own group only (not root's: a directory
    that is 0701 must be traversed as "other")."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


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
    user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Supervision: what `vss status` shows.
    restarts: int = 0
    last_exit: int | None = None  # the exit code of its last death (negative: killed by that signal)
    crashes_in_a_row: int = 0  # deaths soon after a start, since it last ran for QUICK seconds
    failing: bool = False
    started_at: float = 0.0
    restart_at: float | None = None  # when it is started again (None: running, or not yet seen dead)

    def start(self, env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        env = {**env, **self.env}
        if self.log_file is not None:
            with append_private(self.log_file) as out:  # 0600: logs name clients and addresses
                self.process = subprocess.Popen(
                    self.command, env=env, stdout=out, stderr=subprocess.STDOUT, **as_user(self.user)
                )
        else:
            self.process = subprocess.Popen(self.command, env=env, **as_user(self.user))

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        if not self.running():
            return False
        if self.ready is not None and not self.ready():
            return False
        return self.health_url is None or http_ok(self.health_url)

    def wait_healthy(self, stopped: Callable[[], bool], timeout: float = 30.0) -> bool:
        return wait_ready(self.healthy, lambda: self.running() and not stopped(), timeout, 0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT first (what Ctrl-C sends), then SIGKILL if it hangs."""
        if self.process is not None:
            stop_process(self.process, signal.SIGINT, timeout)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "pid": self.process.pid if self.process else None,
            "log": str(self.log_file) if self.log_file else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "failing": self.failing,
        }

    # ---------------------------------------------------------------------------- supervision
    def supervise(self, env: dict[str, str], now: float, say: Callable[[str], None]) -> bool:
        """Restart the part if it died and its pause is over; True if its state changed."""
        if self.running():
            if self.crashes_in_a_row and now - self.started_at >= QUICK:
                self.crashes_in_a_row, self.failing = 0, False  # it runs again: recovered
                say(f"{self.name} runs again")
                return True
            return False
        if self.restart_at is None:  # found dead just now
            self.last_exit = self.process.returncode if self.process is not None else None
            quick = now - self.started_at < QUICK
            self.crashes_in_a_row = self.crashes_in_a_row + 1 if quick else 1
            self.failing = self.crashes_in_a_row >= FAILING_AFTER
            pause = FAILING_RETRY if self.failing else BACKOFF[min(self.crashes_in_a_row, len(BACKOFF)) - 1]
            self.restart_at = now + pause
            state = "failing: keeps dying at start" if self.failing else "stopped"
            say(f"{self.name} {state} (exit {self.last_exit}); started again in {pause:.0f} s")
            return True
        if now < self.restart_at:
            return False
        self.restart_at = None
        self.restarts += 1
        self.start(env)
        return True
