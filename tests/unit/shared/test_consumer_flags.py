"""A durable consumer's two flags: caught up now, and the stream's end reached once since start."""

from __future__ import annotations

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
