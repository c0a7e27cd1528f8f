"""`vss up` keeps the system up: a part that dies is started again, the rest keeps running.

Each part of a running system is killed with SIGKILL in turn, the nats-server among them,
while a client keeps opening cases through the case API; each comes back healthy, the case
API takes every command but while it is itself down, and every accepted command reaches the
case stream once. A part that cannot start is reported failing by `vss status`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cli.supervisor import FAILING_AFTER, pid_alive
from services.shared.bus.authorization import InternalRole, NatsAuth, credentials_dir, internal_seed_path
from services.shared.bus.embedded import free_port
from tests.e2e.test_readme_walkthrough import running_system
from tests.support.bus import read_stream
from vss_contracts.subjects import CASE_STREAM, CASE_SUBJECTS

# About 45 s each: `make test-slow`, not the default suite.
pytestmark = pytest.mark.slow

VSS = str(Path(sys.executable).parent / "vss")
OPENING = {
    "client": {"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
    "municipality": {"code": "1480", "name": "Göteborg"},
    "region": {"code": "14", "name": "Västra Götalandsregionen"},
    "opened_on": "2026-01-05",
}


def _status(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    done = subprocess.run([VSS, "status", "--json"], env=env, capture_output=True, text=True, check=False)
    return done.returncode, {part["name"]: part for part in json.loads(done.stdout)["parts"]}


def _supervised(data: Path) -> dict[str, dict[str, Any]]:
    return {part["name"]: part for part in json.loads((data / "up.json").read_text())["parts"]}


class Writer(threading.Thread):
    """A client opening cases, one every 50 ms, noting what was accepted and what failed when."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/v1/cases"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.accepted: list[str] = []
        self.failed: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post(self.url, json=OPENING, headers=self.headers)
                except httpx.HTTPError as error:
                    self.failed.append(repr(error))
                else:
                    if answer.status_code == 201:
                        self.accepted.append(answer.json()["case_id"])
                    else:
                        self.failed.append(f"{answer.status_code} {answer.text}")
                time.sleep(0.05)


def test_each_part_killed_comes_back_while_the_case_api_keeps_taking_commands(tmp_path: Path) -> None:
    data, port, nats_port = tmp_path / "data", free_port(), free_port()
    with running_system(data, port, nats_port) as (_, env):
        mint = [VSS, "token", "--user", "anna.k", "--org", "vgr-psyk", "--principal", "region"]
        token = subprocess.run(
            [*mint, "--role", "coordinator"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        writer = Writer(port, token)
        writer.start()
        # The case API last: while it is down, commands cannot be taken (the writer stops first).
        parts = ("relay", "projector", "query", "meetings", "mail-sink", "notifications", "sharing", "nats")
        for name in (*parts, "case"):
            if name == "case":
                writer.stop.set()
                writer.join(10)
            before = _supervised(data)[name]
            os.kill(before["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, f"{name} did not come back: {_status(env)}"
                now = _supervised(data)[name]
                if now["restarts"] == before["restarts"] + 1 and pid_alive(now["pid"]):
                    code, parts = _status(env)
                    if code == 0:
                        break
                time.sleep(0.5)
            assert now["last_exit"] == -signal.SIGKILL
            assert parts[name]["restarts"] == 1
            assert parts[name]["failing"] is False
        assert writer.failed == []  # not one command refused while other parts were down
        assert len(writer.accepted) > 50
        # Every accepted command is on the case stream once (the relay republished what it had
        # not published when the nats-server died).
        operator = NatsAuth(seed_file=internal_seed_path(credentials_dir(data), InternalRole.OPERATOR))
        deadline = time.monotonic() + 30
        while True:
            streamed = asyncio.run(
                read_stream(f"nats://127.0.0.1:{nats_port}", CASE_STREAM, CASE_SUBJECTS, auth=operator)
            )
            if len(streamed) >= len(writer.accepted) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(m.event.subject for m in streamed) == sorted(writer.accepted)
        # Every durable consumer caught up with it: status shows each one's lag, down to 0.
        deadline = time.monotonic() + 60
        while True:
            parts = _status(env)[1]
            lags = {durable: lag for part in parts.values() for durable, lag in part.get("lag", {}).items()}
            if all(lag == 0 for lag in lags.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert lags == dict.fromkeys(
            ["projections", "projections-notifications", "projections-meetings", "meetings",
             "notifications-case", "notifications-meetings", "sharing"], 0,
        )  # fmt: skip


def test_a_part_that_cannot_start_is_reported_failing_and_the_rest_runs(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    with socket.socket() as taken:  # the query API's port, held by someone else
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        query_port = taken.getsockname()[1]
        with running_system(data, port, extra_env={"VSS_QUERY_PORT": str(query_port)}) as (_, env):
            started = time.monotonic()
            while True:
                code, parts = _status(env)
                if parts["query"]["failing"]:
                    break
                assert time.monotonic() - started < 90, parts["query"]
                time.sleep(1)
            assert code == 1
            assert parts["query"]["restarts"] >= FAILING_AFTER - 1
            assert parts["query"]["healthy"] is False
            assert all(part["healthy"] for name, part in parts.items() if name != "query")
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
