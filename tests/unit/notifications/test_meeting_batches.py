"""The meetings stream's handler applies a pull in one transaction once the case consumer has
reached the pull's last case position, waiting for it (a bounded wait) before the transaction;
a pull still short after the wait, or with an event that names no case position, is left to
the one-at-a-time path (each event waiting for its own position)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import pytest

from services.notifications.infrastructure.bus import (
    BATCH_WAIT,
    CaseStreamFirst,
    MeetingEventHandler,
    NotBatchedNow,
)
from services.shared.bus.consumer import Delivery
from vss_contracts.subjects import HEADER_CASE_POSITION

CONSUMER = "notifications-meetings"


class Recording:
    """The store, the service and the case-stream wait, recording what happens in which order."""

    def __init__(
        self, applied_through: int = 0, case_consumer_at: int = 10**6, *, catches_up: bool = True
    ) -> None:
        self.steps: list[Any] = []
        self.catches_up = catches_up
        self.case_consumer_at = case_consumer_at
        self.in_batch = False
        self._applied_through = applied_through

    # the store
    def applied_through(self, consumer: str) -> int:
        return self._applied_through

    # the service
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self.in_batch = True
        self.steps.append("batch")
        try:
            yield
        finally:
            self.in_batch = False

    def apply(self, consumer: str, **fields: Any) -> bool:
        self.steps.append(("apply", fields["stream_sequence"], self.in_batch))
        return True

    # the case stream's wait
    def reached(self, case_position: int) -> bool:
        self.steps.append(("reached?", case_position, self.in_batch))
        return self.case_consumer_at >= case_position

    def wait(self, case_position: int | None = None) -> None:
        self.steps.append(("wait", case_position, self.in_batch))

    def reached_within(self, case_position: int, timeout: float) -> bool:
        self.steps.append(("reached?", case_position, self.in_batch))
        assert timeout == BATCH_WAIT
        if self.case_consumer_at < case_position and self.catches_up:
            self.steps.append(("waited", case_position, self.in_batch))
            self.case_consumer_at = case_position
        return self.case_consumer_at >= case_position


def delivery(sequence: int, case_position: int | None) -> Delivery:
    headers = {} if case_position is None else {HEADER_CASE_POSITION: str(case_position)}
    event = SimpleNamespace(subject=str(uuid4()), id=str(uuid4()), type="t", time=datetime.now(UTC))
    return Delivery(cast(Any, event), None, sequence, "vss.meetings.x", headers, 1)


def handler(recording: Recording) -> MeetingEventHandler:
    return MeetingEventHandler(
        cast(Any, recording), cast(Any, recording), CONSUMER, case_first=cast(CaseStreamFirst, recording)
    )


def test_a_pull_whose_case_positions_are_reached_is_applied_in_one_batch() -> None:
    recording = Recording(case_consumer_at=42)

    applied = handler(recording).apply_batch([delivery(1, 40), delivery(2, 42), delivery(3, 41)])

    assert applied == 3
    first, *rest = recording.steps
    assert first == ("reached?", 42, False)  # the highest, looked at before the store is taken
    assert rest[0] == "batch"
    # Inside, each event's own wait finds its position reached; all applied in the batch.
    assert [s for s in rest if s[0] == "apply"] == [("apply", n, True) for n in (1, 2, 3)]


def test_a_pull_ahead_of_the_case_consumer_waits_for_it_before_its_transaction() -> None:
    recording = Recording(case_consumer_at=41)

    applied = handler(recording).apply_batch([delivery(1, 40), delivery(2, 42)])

    assert applied == 2
    # The wait for the highest position comes before the transaction (which the case consumer's
    # own must never wait behind); inside it, every event's position is reached.
    assert recording.steps[:3] == [("reached?", 42, False), ("waited", 42, False), "batch"]
    assert [s for s in recording.steps if s[0] == "apply"] == [("apply", n, True) for n in (1, 2)]


def test_a_pull_the_case_consumer_does_not_catch_up_with_goes_one_by_one() -> None:
    recording = Recording(case_consumer_at=41, catches_up=False)

    with pytest.raises(NotBatchedNow, match="has not reached"):
        handler(recording).apply_batch([delivery(1, 40), delivery(2, 42)])

    # Nothing applied: the consumer takes them singly, the first decided while the case
    # consumer is still short of the second's position.
    assert recording.steps == [("reached?", 42, False)]


def test_a_pull_with_an_event_naming_no_case_position_goes_one_by_one() -> None:
    recording = Recording()

    with pytest.raises(NotBatchedNow):
        handler(recording).apply_batch([delivery(1, 40), delivery(2, None)])

    assert recording.steps == []  # nothing waited for, nothing applied: the consumer takes them singly


def test_a_redelivered_pull_waits_for_nothing() -> None:
    recording = Recording(applied_through=5)

    handler(recording).apply_batch([delivery(4, None), delivery(5, 50)])

    assert [s for s in recording.steps if s[0] in ("wait", "reached?")] == []


def test_a_wait_for_the_case_consumer_refuses_to_block_the_event_loop() -> None:
    """The waits block their thread (and the full wait asks the loop for the stream's tail):
    in the loop's own thread they would stall or deadlock it, so they refuse at once."""

    class Store:
        def applied_log_position(self, consumer: str) -> int:
            return 0

    async def in_the_loop() -> None:
        first = CaseStreamFirst(cast(Any, Store()), "notifications-case", "nats://unused", "VSS_CASE")
        # As open() sets them.
        first._loop, first._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        with pytest.raises(RuntimeError, match="worker thread"):
            first.reached_within(5, BATCH_WAIT)
        with pytest.raises(RuntimeError, match="worker thread"):
            first.wait(5)
        assert first.reached_within(0, BATCH_WAIT)  # reached already: nothing to wait for

    asyncio.run(in_the_loop())
