"""The killer: SIGKILL of one supervised process at a time, at random (seeded) moments.

The targets are every process `vss up` reports in ``up.json`` (the parts and the
nats-server), in rounds: each round is every kind once, shuffled, so a run that completes
``rounds`` rounds has killed each kind ``rounds`` times. After a kill it waits (bounded)
until `vss up` has started the process again and `vss status` reports every part healthy;
a process that does not come back fails the run. While the case API is down, the window
is recorded: the only time a client may see it fail.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass

import httpx

from services.cli.supervisor import QUICK, pid_alive
from tests.chaos.system import System

BACK_WITHIN = 120.0  # seconds for a killed process to be running and healthy again


@dataclass
class Kill:
    part: str
    pid: int
    at: float  # time.time() of the SIGKILL
    back_at: float = 0.0  # when `vss status` showed every part healthy again
    api_back_at: float = 0.0  # for the case API: when it answered /health again


class Killer(threading.Thread):
    def __init__(self, system: System, rng: random.Random, gap: tuple[float, float]) -> None:
        super().__init__(daemon=True, name="chaos-killer")
        self.system = system
        self.rng = rng
        self.gap = gap
        self.kills: list[Kill] = []
        self.stop = threading.Event()
        self.error: str | None = None
        self.restarted_at: dict[str, float] = {}

    def targets(self) -> list[str]:
        """Every kind once, shuffled, never the last one killed first (a part is given time)."""
        kinds = sorted(self.system.killable())
        while True:
            self.rng.shuffle(kinds)
            if not self.kills or kinds[0] != self.kills[-1].part:
                return list(kinds)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for part in self.targets():
                    if self.stop.wait(self.rng.uniform(*self.gap)):
                        return
                    # A process killed again within QUICK seconds of its start counts as
                    # crashing at start (longer restart pauses, then failing): not what is tested.
                    settle = self.restarted_at.get(part, 0.0) + QUICK + 1 - time.monotonic()
                    if settle > 0 and self.stop.wait(settle):
                        return
                    self.kill(part)
        except Exception as error:  # reported by the test
            self.error = f"{type(error).__name__}: {error}"

    def kill(self, part: str) -> None:
        before = self.system.parts()[part]
        kill = Kill(part, int(before["pid"]), time.time())
        os.kill(kill.pid, signal.SIGKILL)
        self.kills.append(kill)
        deadline = time.monotonic() + BACK_WITHIN
        while True:
            now = self.system.parts()[part]
            if now["restarts"] > before["restarts"] and now.get("pid") and pid_alive(int(now["pid"])):
                break
            self._check(deadline, part)
            time.sleep(0.1)
        self.restarted_at[part] = time.monotonic()
        if part == "case":
            while not _answers(f"{self.system.case_api}/health"):
                self._check(deadline, part)
                time.sleep(0.05)
            kill.api_back_at = time.time()
        while self.system.status()[0] != 0:
            self._check(deadline, part)
            time.sleep(0.5)
        kill.back_at = time.time()

    def _check(self, deadline: float, part: str) -> None:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{part} not back and healthy {BACK_WITHIN:.0f}s after its SIGKILL: {self.system.status()[1]}"
            )

    def case_down(self) -> list[tuple[float, float]]:
        """When the case API was down: from its SIGKILL until it answered again."""
        return [(k.at, k.api_back_at or k.back_at or time.time()) for k in self.kills if k.part == "case"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
