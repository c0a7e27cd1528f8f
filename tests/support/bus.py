"""Helpers for bus tests: read a whole stream back, run the relay as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.names import BusNames
from services.shared.bus.streams import server_urls
from vss_contracts.envelope import CloudEvent
from vss_contracts.subjects import HEADER_LOG_POSITION

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class StreamMessage:
    sequence: int
    subject: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> CloudEvent:
        return CloudEvent.model_validate_json(self.body)

    @property
    def position(self) -> int:
        return int(self.headers[HEADER_LOG_POSITION])


async def read_stream(
    url: str, stream: str, subjects: str, *, start: int = 1, auth: NatsAuth | None = None
) -> list[StreamMessage]:
    """Every message of the stream from ``start``, in order (an ephemeral, ack-less consumer).

    ``url``: a server, or a cluster's nodes comma-separated. ``auth``: credentials, for a server
    with the generated authorization (`vss up`'s).
    """
    nc = await nats.connect(
        server_urls(url), connect_timeout=2, max_reconnect_attempts=3, **(auth.options() if auth else {})
    )
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
        if info.state.messages == 0 or info.state.last_seq < start:
            return []
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            inactive_threshold=30,
        )
        sub = await js.pull_subscribe(subjects, stream=stream, config=config)
        out: list[StreamMessage] = []
        while not out or out[-1].sequence < info.state.last_seq:
            try:
                batch = await sub.fetch(500, timeout=2)
            except nats.errors.TimeoutError:
                break
            for msg in batch:
                headers = dict(msg.headers or {})
                out.append(StreamMessage(msg.metadata.sequence.stream, msg.subject, headers, msg.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


class RelayProcess:
    """``python -m services.case.relay_main`` on a store and a test's own stream."""

    command: tuple[str, ...] = ("-m", "services.case.relay_main")
    log_name = "relay"

    def __init__(self, store_url: str, nats_url: str, names: BusNames, log_dir: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "VSS_CASE_STORE_URL": store_url,
            "VSS_NATS_URL": nats_url,
            "VSS_BUS_STREAM": names.stream,
            "VSS_BUS_SUBJECT_PREFIX": names.subject_prefix,
            "VSS_RELAY_LEASE_TTL": "1",
            "VSS_RELAY_ACK_TIMEOUT": "2",
            "VSS_LOG_LEVEL": "INFO",
            **env,
        }
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"{self.log_name}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *self.command], env=self.env, cwd=ROOT, stdout=log, stderr=log
        )
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def current_log(self) -> str:
        """What the process started last has logged so far."""
        return (self.log_dir / f"{self.log_name}-{self.starts}.log").read_text(errors="replace")

    def logs(self) -> str:
        logs = sorted(self.log_dir.glob(f"{self.log_name}-*.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
