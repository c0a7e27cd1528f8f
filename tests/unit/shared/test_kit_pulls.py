"""The kit's pulls: the first message, then the rest in one request that does not linger, taken
from the subscription's queue; what the last pull said was left, asked for at once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, cast

from services.shared.bus.consumer import ConsumerSettings
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, _pull, _take_more
from services.shared.bus.names import BusNames


@dataclass
class _Metadata:
    num_pending: int


@dataclass
class _Msg:
    data: bytes
    metadata: _Metadata
    headers: dict[str, str] | None = None


def _status(code: str) -> _Msg:
    return _Msg(b"", _Metadata(0), {"Status": code})


@dataclass
class _Queue:
    """nats-py's subscription as far as the kit reads it: its queue and its byte count."""

    _pending_queue: asyncio.Queue[_Msg] = field(default_factory=asyncio.Queue)
    _pending_size: int = 0


class _Server:
    """A pull subscription over ``available`` messages, as nats-server answers a pull."""

    def __init__(self, available: int, *, heartbeat_first: bool = False, in_transit: bool = False) -> None:
        self.available = available
        self.heartbeat_first = heartbeat_first
        self.in_transit = in_transit  # the rest of the pull, and its "no messages", not yet here
        self.requests: list[dict[str, Any]] = []
        self.fetches: list[int] = []
        self._sub = _Queue()
        self._nc = self
        self._nms = "$JS.API.CONSUMER.MSG.NEXT.S.d"
        self._deliver = "_INBOX.x"

    def _next(self) -> _Msg:
        self.available -= 1
        return _Msg(b"{}", _Metadata(self.available))

    async def publish(self, subject: str, payload: bytes, reply: str) -> None:
        request = json.loads(payload)
        self.requests.append(request)
        queue = self._sub._pending_queue
        if self.heartbeat_first:
            queue.put_nowait(_status("100"))
        taken = min(request["batch"], self.available)
        for _ in range(taken):
            message = self._next()
            self._sub._pending_size += len(message.data)
            queue.put_nowait(message)
        if taken < request["batch"] and not self.in_transit:
            queue.put_nowait(_status("404"))  # no_wait: what there is, then "no messages"

    async def fetch(self, batch: int, timeout: float) -> list[_Msg]:
        self.fetches.append(batch)
        if not self.available:
            raise TimeoutError
        return [self._next()]


def _pulled(server: _Server, batch: int = 100, held: int = 0) -> list[Any]:
    return asyncio.run(_pull(server, batch, 1.0, held))  # type: ignore[arg-type]


def test_the_rest_is_asked_for_once_as_many_as_the_server_said_it_held() -> None:
    server = _Server(available=4)
    assert len(_pulled(server)) == 4
    assert server.fetches == [1]
    assert server.requests == [{"batch": 3, "no_wait": True}]
    assert server._sub._pending_size == 0  # nats-py's slow-consumer count kept


def test_a_lone_event_is_handed_over_without_asking_for_more() -> None:
    server = _Server(available=1)
    assert len(_pulled(server)) == 1
    assert server.requests == []


def test_what_the_last_pull_said_was_left_is_asked_for_at_once() -> None:
    server = _Server(available=250)
    assert len(_pulled(server, held=250)) == 100
    assert server.fetches == []  # no wait for a first message
    assert server.requests == [{"batch": 100, "no_wait": True}]


def test_what_another_instance_took_meanwhile_is_waited_for_as_the_first_message() -> None:
    server = _Server(available=0)
    assert _pulled(server, held=5) == []  # the server answered "no messages", then nothing came
    assert server.requests == [{"batch": 5, "no_wait": True}]
    assert server.fetches == [1]


def test_a_heartbeat_is_passed_over_and_no_messages_ends_the_pull() -> None:
    server = _Server(available=2, heartbeat_first=True)
    taken = asyncio.run(_take_more(server, 5, 0.05))  # type: ignore[arg-type]
    assert len(taken) == 2
    assert server._sub._pending_queue.empty()


def test_a_pull_hands_over_what_came_within_the_wait_for_the_next_message() -> None:
    server = _Server(available=1, in_transit=True)
    taken = asyncio.run(_take_more(server, 3, 0.01))  # type: ignore[arg-type]
    assert len(taken) == 1  # not held up by the two still on their way


@dataclass
class _Sequence:
    stream: int


@dataclass
class _Sequenced:
    sequence: _Sequence
    num_pending: int = 0


@dataclass
class _Settled:
    metadata: _Sequenced


def test_the_ack_held_back_for_a_pull_is_its_highest_sequence_settled() -> None:
    """AckAll acks everything up to the message acked: a redelivered lower sequence settled
    last must not be the one acked (it would leave the pull's higher ones to come again)."""
    kit = object.__new__(FastStreamSubscriber)  # only what _settled reads
    kit.settings = ConsumerSettings(durable="d", names=BusNames(), fetch_batch=20)
    kit._unacked, kit._unacked_since = None, 0.0
    settled = [_Settled(_Sequenced(_Sequence(n))) for n in (105, 106, 98)]

    async def settle_all() -> None:
        for raw in settled:
            await kit._settled(cast(Any, raw), cast(Any, None))

    asyncio.run(settle_all())
    assert kit._unacked is settled[1]


@dataclass
class _Recorded:
    """A message or its settle: what was done to it, in order, into a shared list."""

    name: str
    done: list[str]
    metadata: _Sequenced = field(default_factory=lambda: _Sequenced(_Sequence(0)))

    async def ack(self) -> None:
        self.done.append(f"ack {self.name}")

    async def in_progress(self) -> None:
        self.done.append(f"in progress {self.name}")


def test_a_retry_acknowledges_what_was_applied_before_it_first() -> None:
    """Acks of a pull applied one by one wait for the next to settle; a message retried with
    backoff must not hold them back that long (they could be sent again after ack_wait)."""
    kit = object.__new__(FastStreamSubscriber)
    kit.settings = ConsumerSettings(durable="d", names=BusNames(), fetch_batch=20)
    done: list[str] = []
    kit._unacked, kit._unacked_since = cast(Any, _Recorded("105", done)), 0.0

    keep_in_progress = kit._retrying(cast(Any, _Recorded("106", done)))
    asyncio.run(keep_in_progress())
    asyncio.run(keep_in_progress())  # a second wait: nothing left to acknowledge
    assert done == ["ack 105", "in progress 106", "in progress 106"]
    assert kit._unacked is None
