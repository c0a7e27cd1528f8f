"""The killer: SIGKILL of one supervised process at a time, at random (seeded) moments.

The targets are every process `vss up` reports in ``up.json`` (the parts and the
nats-server; on the cluster the three nodes, PostgreSQL and both case API processes), in
rounds: each round is every kind once, shuffled, so a run that completes ``rounds`` rounds
has killed each kind ``rounds`` times. On the cluster one more kind, ``nats-leader``, is the
node the servers name as the case stream's leader at that moment (asked each time). After
a kill it waits (bounded) until `vss up` has started the process again and `vss status`
reports every part healthy; a process that does not come back fails the run. While a case
API process is down, and while PostgreSQL is (it takes both case API processes' writes
down with it), the window is recorded: the only time a client may see a case API fail.
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
from vss_contracts.subjects import CASE_STREAM

BACK_WITHIN = 120.0  # seconds for a killed process to be running and healthy again
LEADER = "nats-leader"  # the kind: whichever node leads the case stream when it is killed
CASE_PARTS = ("case", "case-2")


@dataclass
class Kill:
    part: str
    pid: int
    at: float  # time.time() of the SIGKILL
    back_at: float = 0.0  # when `vss status` showed every part healthy again
    api_back_at: float = 0.0  # for a case API process: when it answered /health again
    kind: str = ""  # what was chosen: the part, or LEADER
    led_case_stream: bool = False  # a node that led VSS_CASE when it was killed

    def __post_init__(self) -> None:
        self.kind = self.kind or self.part


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

    def kinds(self) -> list[str]:
        """What is killed: every process `vss up` supervises, and on the cluster the node
        leading the case stream."""
        return sorted(self.system.killable()) + ([LEADER] if self.system.topology.cluster else [])

    def targets(self) -> list[str]:
        """Every kind once, shuffled, never the last one killed first (a part is given time)."""
        kinds = self.kinds()
        while True:
            self.rng.shuffle(kinds)
            if not self.kills or kinds[0] not in (self.kills[-1].kind, self.kills[-1].part):
                return list(kinds)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for kind in self.targets():
                    if self.stop.wait(self.rng.uniform(*self.gap)):
                        return
                    part = self.system.stream_leader(CASE_STREAM) if kind == LEADER else kind
                    # A process killed again within QUICK seconds of its start counts as
                    # crashing at start (longer restart pauses, then failing): not what is tested.
                    settle = self.restarted_at.get(part, 0.0) + QUICK + 1 - time.monotonic()
                    if settle > 0 and self.stop.wait(settle):
                        return
                    self.kill(part, kind)
        except Exception as error:  # reported by the test
            self.error = f"{type(error).__name__}: {error}"

    def kill(self, part: str, kind: str = "") -> None:
        before = self.system.parts()[part]
        leader = self.system.stream_leader(CASE_STREAM) if part.startswith("nats-") else ""
        kill = Kill(part, int(before["pid"]), time.time(), kind=kind, led_case_stream=leader == part)
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
        if part in CASE_PARTS:
            while not _answers(f"{self.system.case_apis[part]}/health"):
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

    def case_down(self, part: str = "case") -> list[tuple[float, float]]:
        """When that case API process was down: from its SIGKILL until it answered again."""
        return [(k.at, k.api_back_at or k.back_at or time.time()) for k in self.kills if k.part == part]

    def postgres_down(self) -> list[tuple[float, float]]:
        """When PostgreSQL was down, for the case API processes: from its SIGKILL until
        `vss status` showed every part healthy again (PostgreSQL answering queries again, and
        every part it took down running again)."""
        return [(k.at, k.back_at or time.time()) for k in self.kills if k.part == "postgres"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
