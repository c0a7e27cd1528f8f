"""examples/subscriber: another organisation's subscriber, run as its user runs it, on real JetStream."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from services.shared.bus.names import BusNames
from vss_contracts import CaseEventData, CloudEvent
from vss_contracts import case_events as ev
from vss_contracts.subjects import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
    HEADER_EVENT_TYPE,
    HEADER_LOG_POSITION,
    HEADER_MSG_ID,
)
from vss_contracts.types import Principal

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "subscriber" / "subscriber.py"
GOLDEN = Path(__file__).parent / "golden"
CASE_A = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01")
CASE_B = UUID("0b8e4c1d-7a2f-4f3e-8c5d-2e9a6b1f4c02")


@dataclass(frozen=True)
class Published:
    sequence: int
    event: CloudEvent
    subject: str


def _event(case_id: UUID, version: int, cls: type[CaseEventData], position: int) -> CloudEvent:
    payload = json.loads((GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
    event_id = uuid4()
    return CloudEvent.for_event(
        event_id=event_id,
        case_id=case_id,
        case_version=version,
        time=datetime(2025, 3, 14, 8, 45, tzinfo=UTC) + timedelta(minutes=position),
        data=cls.model_validate(payload),
        actor_id="anna.lindqvist",
        actor_org="vgr-psykiatri-nordost",
        actor_principal=Principal.REGION,
        correlation_id=f"req-{position}",
        causation_id=None,
        prev_hash="0" * 64,
        event_hash=hashlib.sha256(event_id.bytes).hexdigest(),
        log_position=position,
    )


class Bus:
    """Publishes to the test's stream as the relay does (the CloudEvent body, the contract's headers)."""

    def __init__(self, url: str, names: BusNames) -> None:
        self.url, self.names = url, names

    async def _run(self, work: Any) -> Any:
        nc = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    def create_stream(self) -> None:
        async def work(js: Any) -> None:
            await js.add_stream(
                StreamConfig(name=self.names.stream, subjects=[self.names.subjects], allow_atomic=True)
            )

        asyncio.run(self._run(work))

    def publish(self, event: CloudEvent, *, msg_id: bool = True) -> Published:
        """Store one event; ``msg_id=False`` leaves out Nats-Msg-Id, so a copy is stored again."""
        subject = self.names.subject(event.subject, event.type.split(".")[-2])
        headers = {HEADER_EVENT_TYPE: event.type, HEADER_LOG_POSITION: str(event.logposition)}
        if msg_id:
            headers[HEADER_MSG_ID] = event.id

        async def work(js: Any) -> Any:
            return await js.publish(subject, event.model_dump_json().encode(), headers=headers)

        ack = asyncio.run(self._run(work))
        assert not ack.duplicate
        return Published(ack.seq, event, subject)

    def publish_again(self, event: CloudEvent) -> bool:
        """The same event with its Nats-Msg-Id: True if JetStream dropped it as a duplicate."""
        subject = self.names.subject(event.subject, event.type.split(".")[-2])
        headers = {HEADER_MSG_ID: event.id, HEADER_EVENT_TYPE: event.type}

        async def work(js: Any) -> bool:
            ack = await js.publish(subject, event.model_dump_json().encode(), headers=headers)
            return bool(ack.duplicate)

        return bool(asyncio.run(self._run(work)))

    def publish_raw(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        async def work(js: Any) -> int:
            ack = await js.publish(subject, body, headers=headers)
            assert not ack.duplicate
            return int(ack.seq)

        return int(asyncio.run(self._run(work)))

    def stream_exists(self) -> bool:
        async def work(js: Any) -> bool:
            try:
                await js.stream_info(self.names.stream)
            except NotFoundError:
                return False
            return True

        return bool(asyncio.run(self._run(work)))

    def consumer(self, name: str) -> Any:
        async def work(js: Any) -> Any:
            return await js.consumer_info(self.names.stream, name)

        return asyncio.run(self._run(work))


@dataclass
class Run:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str

    @property
    def sequences(self) -> list[int]:
        return [line["stream_sequence"] for line in self.lines]


def subscribe(url: str, names: BusNames, *extra: str, cwd: Path) -> Run:
    """Run the example as its user would, outside the repository."""
    command = [sys.executable, str(SCRIPT), "--url", url, "--stream", names.stream]
    command += ["--subjects", names.subjects, "--idle-exit", "1", *extra]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=90, check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return Run(result.returncode, lines, result.stderr)


def expected(published: list[Published]) -> list[dict[str, Any]]:
    return [
        {
            "stream_sequence": p.sequence,
            "subject": p.subject,
            "type": p.event.type,
            "case_id": p.event.subject,
            "case_version": p.event.caseversion,
            "event_id": p.event.id,
            "current_type": p.event.type,
        }
        for p in published
    ]


@pytest.fixture
def bus(nats_url: str, bus_names: BusNames) -> Bus:
    return Bus(nats_url, bus_names)


@pytest.fixture
def history(bus: Bus) -> tuple[list[Published], datetime]:
    """Two cases' events at sequences 1-4 and 6; sequence 5 is a second copy of the event at 3.

    Also the time between sequences 2 and 3 (for --from-time).
    """
    bus.create_stream()
    opened_a = bus.publish(_event(CASE_A, 1, ev.CaseOpened, 1))
    assigned_a = bus.publish(_event(CASE_A, 2, ev.CoordinatorAssigned, 2))
    time.sleep(0.3)
    between = datetime.now(UTC)
    time.sleep(0.3)
    opened_b = bus.publish(_event(CASE_B, 1, ev.CaseOpened, 3))
    consent_a = bus.publish(_event(CASE_A, 3, ev.ConsentGiven, 4))
    assert bus.publish_again(opened_b.event)  # within the window: JetStream drops it
    copy = bus.publish(opened_b.event, msg_id=False)  # without Nats-Msg-Id: stored twice
    assigned_b = bus.publish(_event(CASE_B, 2, ev.CoordinatorAssigned, 5))
    published = [opened_a, assigned_a, opened_b, consent_a, assigned_b]
    assert [p.sequence for p in published] == [1, 2, 3, 4, 6]
    assert copy.sequence == 5
    return published, between


def test_it_prints_every_event_once_in_order_from_the_start(
    nats_url: str, bus_names: BusNames, history: tuple[list[Published], datetime], tmp_path: Path
) -> None:
    published, _ = history

    run = subscribe(nats_url, bus_names, cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert run.lines == expected(published)  # in stream order; the copy at sequence 5 skipped
    assert "skipped stream sequence 5" in run.stderr
    assert run.lines[0]["subject"] == bus_names.subject(CASE_A, "CaseOpened")


def test_it_starts_at_a_stream_sequence_or_a_time(
    nats_url: str, bus_names: BusNames, history: tuple[list[Published], datetime], tmp_path: Path
) -> None:
    published, between = history

    from_three = subscribe(nats_url, bus_names, "--from-sequence", "3", cwd=tmp_path)
    from_time = subscribe(nats_url, bus_names, "--from-time", between.isoformat(), cwd=tmp_path)

    assert from_three.returncode == 0, from_three.stderr
    assert from_three.lines == expected(published[2:])
    assert from_time.returncode == 0, from_time.stderr
    assert from_time.lines == expected(published[2:])


def test_a_durable_consumer_is_created_acked_and_resumed(
    nats_url: str, bus_names: BusNames, bus: Bus, history: tuple[list[Published], datetime], tmp_path: Path
) -> None:
    first = subscribe(nats_url, bus_names, "--durable", "acme-sync", cwd=tmp_path)
    again = subscribe(nats_url, bus_names, "--durable", "acme-sync", cwd=tmp_path)
    later = bus.publish(_event(CASE_A, 4, ev.PhaseChanged, 6))
    third = subscribe(nats_url, bus_names, "--durable", "acme-sync", "--from-sequence", "1", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "created durable consumer acme-sync" in first.stderr
    assert first.sequences == [1, 2, 3, 4, 6]
    assert again.returncode == 0, again.stderr
    assert again.lines == []  # everything was acknowledged: nothing comes again
    assert third.lines == expected([later])  # it resumes at its own position, not at --from-sequence
    assert "resumes at its own position" in third.stderr
    info = bus.consumer("acme-sync")
    assert (info.num_pending, info.num_ack_pending, info.ack_floor.stream_seq) == (0, 0, later.sequence)


def test_a_durable_with_another_filter_is_not_changed(
    nats_url: str, bus_names: BusNames, bus: Bus, history: tuple[list[Published], datetime], tmp_path: Path
) -> None:
    subscribe(nats_url, bus_names, "--durable", "acme-sync", cwd=tmp_path)

    other = subscribe(
        nats_url,
        bus_names,
        "--durable",
        "acme-sync",
        "--subjects",
        bus_names.subject("*", "CaseOpened"),
        cwd=tmp_path,
    )

    assert other.returncode == 2
    assert "use another name" in other.stderr
    assert bus.consumer("acme-sync").config.filter_subject == bus_names.subjects


def test_it_binds_to_the_stream_and_never_creates_it(
    nats_url: str, bus_names: BusNames, bus: Bus, tmp_path: Path
) -> None:
    run = subscribe(nats_url, bus_names, cwd=tmp_path)
    durable = subscribe(nats_url, bus_names, "--durable", "acme-sync", cwd=tmp_path)

    assert (run.returncode, durable.returncode) == (2, 2)
    assert f"no stream {bus_names.stream}" in run.stderr
    assert not bus.stream_exists()


def test_it_stops_at_a_message_it_cannot_decode(
    nats_url: str, bus_names: BusNames, bus: Bus, tmp_path: Path
) -> None:
    bus.create_stream()
    opened = bus.publish(_event(CASE_A, 1, ev.CaseOpened, 1))
    bus.publish_raw(bus_names.subject(CASE_A, "CaseReopened"), b'{"not": "a cloud event"}')
    bus.publish(_event(CASE_A, 2, ev.CoordinatorAssigned, 2))

    run = subscribe(nats_url, bus_names, cwd=tmp_path)

    assert run.returncode == 3
    assert run.lines == expected([opened])  # it stops rather than skip past the event
    assert "stream sequence 2" in run.stderr


def test_ctrl_c_stops_it_cleanly(nats_url: str, bus_names: BusNames, bus: Bus, tmp_path: Path) -> None:
    bus.create_stream()
    opened = bus.publish(_event(CASE_A, 1, ev.CaseOpened, 1))
    command = [sys.executable, str(SCRIPT), "--url", nats_url, "--stream", bus_names.stream]
    command += ["--subjects", bus_names.subjects, "--durable", "acme-sync"]  # no --idle-exit: runs on

    with subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # blocks until the event is printed
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()

    assert proc.returncode == 0, err
    assert [json.loads(first)] == expected([opened])
    assert out == ""
    assert bus.consumer("acme-sync").num_ack_pending == 0


def test_the_example_needs_vss_contracts_and_nats_py_only() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    third_party = {name.split(".")[0] for name in modules} - set(sys.stdlib_module_names) - {"__future__"}

    assert third_party == {"nats", "vss_contracts", "pydantic"}  # pydantic comes with vss-contracts


def test_it_reads_the_dead_letter_stream_too(
    nats_url: str, bus_names: BusNames, bus: Bus, tmp_path: Path
) -> None:
    """Dead letters carry the original body and headers plus why and from where (docs/operations.md)."""
    names = BusNames(stream=bus_names.dead_letter_stream, subject_prefix=bus_names.dead_letter_prefix)
    dlq = Bus(nats_url, names)
    dlq.create_stream()
    event = _event(CASE_A, 1, ev.CaseOpened, 1)
    original = bus_names.subject(CASE_A, "CaseOpened")

    def park(consumer: str, body: bytes, sequence: int) -> int:
        headers = {  # (no Nats-Msg-Id: the dead-letter stream would drop the second parking of an event)
            HEADER_EVENT_TYPE: event.type,
            HEADER_DLQ_REASON: "projection failed: boom",
            HEADER_DLQ_STREAM: bus_names.stream,
            HEADER_DLQ_SEQUENCE: str(sequence),
            HEADER_DLQ_CONSUMER: consumer,
        }
        return dlq.publish_raw(bus_names.dead_letter_subject(consumer, original), body, headers=headers)

    park("projections", event.model_dump_json().encode(), 1)
    park("notifications", event.model_dump_json().encode(), 1)
    park("projections", b"not json", 2)

    run = subscribe(nats_url, names, cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert [line["stream_sequence"] for line in run.lines] == [1, 2, 3]
    first, second, third = run.lines
    assert first["event_id"] == second["event_id"] == event.id  # one event, parked by two consumers
    assert first["subject"] == bus_names.dead_letter_subject("projections", original)
    assert first["dead_letter"] == {
        "reason": "projection failed: boom",
        "stream": bus_names.stream,
        "sequence": "1",
        "consumer": "projections",
    }
    assert second["dead_letter"]["consumer"] == "notifications"
    assert third["dead_letter"]["sequence"] == "2"
    assert "undecodable" in third
