"""A durable consumer's pulls (the first message, then exactly what the server said was left) and
its two flags (caught up now, and the stream's end reached once since start)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from services.shared.bus.consumer import ConsumerSettings, DurableConsumer


class _Handler:
    def applied_through(self) -> int:
        return 0

    def apply(self, delivery: object) -> bool:
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        return None


def test_the_end_reached_once_stays_reached_when_the_consumer_falls_behind_again() -> None:
    consumer = DurableConsumer("nats://127.0.0.1:1", _Handler(), ConsumerSettings(durable="x"))
    assert (consumer.caught_up, consumer.reached_end) == (False, False)  # a sender waits
    consumer.caught_up = True
    consumer.caught_up = False  # a backlog, a reconnect: escalation and sending go on
    assert (consumer.caught_up, consumer.reached_end) == (False, True)


@dataclass
class _Metadata:
    num_pending: int


@dataclass
class _Msg:
    metadata: _Metadata


@dataclass
class _Subscription:
    """A pull subscription over ``available`` messages: records each fetch's batch and timeout."""

    available: int
    calls: list[tuple[int, float]] = field(default_factory=list)

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.calls.append((batch, timeout))
        taken = min(batch, self.available)
        self.available -= taken
        return [_Msg(_Metadata(self.available + taken - i - 1)) for i in range(taken)]


def _fetch(sub: _Subscription, batch: int = 100) -> list[Any]:
    settings = ConsumerSettings(durable="x", fetch_batch=batch, fetch_timeout=1.0, fetch_more_wait=0.005)
    consumer = DurableConsumer("nats://127.0.0.1:1", _Handler(), settings)
    return asyncio.run(consumer._fetch(sub))  # type: ignore[arg-type]


def test_a_lone_event_is_handed_over_without_asking_for_more() -> None:
    sub = _Subscription(available=1)
    assert len(_fetch(sub)) == 1
    assert sub.calls == [(1, 1.0)]  # no lingering pull for the rest of a batch


def test_the_rest_is_asked_for_exactly_as_many_as_the_server_said_were_pending() -> None:
    sub = _Subscription(available=4)
    assert len(_fetch(sub)) == 4
    assert sub.calls == [(1, 1.0), (3, 0.005)]


def test_a_backlog_is_taken_a_batch_at_a_time() -> None:
    sub = _Subscription(available=500)
    assert len(_fetch(sub, batch=100)) == 100
    assert sub.calls == [(1, 1.0), (99, 0.005)]
    assert sub.available == 400


def test_a_consumer_that_takes_one_at_a_time_never_asks_for_more() -> None:
    sub = _Subscription(available=3)
    assert len(_fetch(sub, batch=1)) == 1
    assert sub.calls == [(1, 1.0)]
