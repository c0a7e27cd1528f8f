"""A relay that loses its lease mid-publish: neither a gap nor a duplicate.

The race these tests guard against (ADR 0004, decision 1): were the new leader's tail
read in two calls, a cancelled leader's commit could land between them and pair the old
last sequence with the new last position. The new leader's first commit would then be
refused, but its second, pipelined behind it, would expect exactly the sequence the
stream had reached and be stored one commit too early, leaving a gap.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import nats
import pytest

from services.shared.bus.lease import Lease, LeaseLost
from services.shared.bus.names import BusNames
from services.shared.bus.relay import AckInbox, OutboxMessage, Relay, RelaySettings
from services.shared.bus.streams import case_stream_config, declare_if_missing
from tests.bus.conftest import RelayThread
from tests.support.bus import StreamMessage, read_stream, wait_until
from vss_contracts.subjects import HEADER_LOG_POSITION, HEADER_MSG_ID


def outbox(names: BusNames, sizes: Sequence[int], *, cases: int = 50, seed: int = 1) -> list[OutboxMessage]:
    """A log of commits of the given sizes, each of one case, positions 1, 2, 3 …"""
    rng = random.Random(seed)
    messages: list[OutboxMessage] = []
    for size in sizes:
        case = f"case-{rng.randrange(cases)}"
        for _ in range(size):
            position = len(messages) + 1
            event_id = f"event-{position}"
            messages.append(
                OutboxMessage(
                    position=position,
                    event_id=event_id,
                    subject=names.subject(case, "WorksheetCompleted"),
                    body=b'{"n": %d}' % position,
                    headers={HEADER_MSG_ID: event_id, HEADER_LOG_POSITION: str(position)},
                    commit_key=case,
                )
            )
    return messages


class ListLog:
    """The store's log, in memory (position p at index p - 1)."""

    def __init__(self, messages: list[OutboxMessage]) -> None:
        self.messages = messages
        self.local = True

    def fetch(self, after: int, limit: int) -> Sequence[OutboxMessage]:
        return self.messages[after : after + limit]

    def render(self, rows: Sequence[OutboxMessage]) -> Sequence[OutboxMessage]:
        return rows


def test_the_tail_pairs_position_and_sequence_of_one_message_when_the_stream_moves_between_reads(
    nats_url: str, bus_names: BusNames
) -> None:
    """A cancelled leader's commit landing between the tail's two reads is seen whole."""
    messages = outbox(bus_names, [1, 1, 1, 3])

    async def main() -> tuple[int, int, dict[int, int]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        try:
            await declare_if_missing(js, case_stream_config(bus_names))
            for message in messages[:3]:
                await js.publish(message.subject, message.body, headers=message.headers)

            class MovingStream:
                """The stream as the new leader sees it: a commit lands after ``stream_info``."""

                async def stream_info(self, name: str) -> Any:
                    info = await js.stream_info(name)
                    for message in messages[3:]:
                        await js.publish(message.subject, message.body, headers=message.headers)
                    return info

                async def get_last_msg(self, name: str, subject: str) -> Any:
                    return await js.get_last_msg(name, subject)

            relay = Relay(ListLog(messages), nats_url, settings=RelaySettings(names=bus_names))
            tail = await relay.tail(MovingStream())  # type: ignore[arg-type]
            stored = {}
            for sequence in range(1, 7):
                message = await js.get_msg(bus_names.stream, sequence)
                stored[sequence] = int((message.headers or {})[HEADER_LOG_POSITION])
            return tail.last_sequence, tail.position, stored
        finally:
            await nc.close()

    last_sequence, position, stored = asyncio.run(main())
    assert position == 6
    assert stored[last_sequence] == position  # the sequence the next publish must expect is that message's


def test_a_commit_is_sent_whole_when_the_publisher_is_cancelled_mid_batch() -> None:
    """A lost lease cancels the publisher; a half-sent batch would hold a server batch slot."""
    names = BusNames.unique()
    commit = outbox(names, [5])

    class SlowClient:
        def __init__(self) -> None:
            self.sent: list[dict[str, str]] = []
            self.first = asyncio.Event()

        def new_inbox(self) -> str:
            return "_INBOX.test"

        async def publish(
            self, subject: str, body: bytes, reply: str = "", headers: dict[str, str] | None = None
        ) -> None:
            self.sent.append(dict(headers or {}))
            self.first.set()
            await asyncio.sleep(0.01)  # a flush of the pending buffer

    async def main() -> list[dict[str, str]]:
        client = SlowClient()
        relay = Relay(ListLog(commit), "nats://unused", settings=RelaySettings(names=names))
        publishing = asyncio.create_task(
            relay._publish_commit(client, AckInbox(client), commit, 0)  # type: ignore[arg-type]
        )
        await client.first.wait()
        publishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publishing
        await asyncio.sleep(0.2)
        return client.sent

    sent = asyncio.run(main())
    assert [h[HEADER_LOG_POSITION] for h in sent] == ["1", "2", "3", "4", "5"]
    assert sent[-1].get("Nats-Batch-Commit") == "1"


@pytest.mark.faults
def test_leases_lost_at_random_moments_leave_neither_a_gap_nor_a_duplicate(
    nats_url: str, bus_names: BusNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay loses its lease eight times while publishing commits of 1–12 events."""
    rng = random.Random(20261124)
    sizes = [rng.choice([1, 1, 1, 2, 3, 7, 12]) for _ in range(1500)]
    messages = outbox(bus_names, sizes)
    log_ = ListLog(messages)
    losses = 0

    keep = Lease.keep

    async def keep_until_lost(lease: Lease) -> None:
        """The first eight leases are lost after 0.1–0.4 s each, wherever the relay is; then kept."""
        nonlocal losses
        if losses >= 8:
            return await keep(lease)
        await asyncio.sleep(rng.uniform(0.1, 0.4))
        losses += 1
        await lease.release()  # so that the next leader (this relay again) need not wait for the TTL
        raise LeaseLost("lost on purpose")

    monkeypatch.setattr(Lease, "keep", keep_until_lost)
    relay = Relay(log_, nats_url, settings=RelaySettings(names=bus_names, lease_ttl=2.0, read_limit=100))
    thread = RelayThread(relay).start()
    try:
        assert wait_until(lambda: losses >= 8 and relay.position == len(messages), 120, interval=0.2), (
            f"the relay reached position {relay.position} of {len(messages)}"
        )
    finally:
        thread.stop()
    stored: list[StreamMessage] = []

    def read_all() -> bool:
        nonlocal stored
        stored = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
        return len(stored) >= len(messages)

    assert wait_until(read_all, 30, interval=1)
    assert [m.position for m in stored] == list(range(1, len(messages) + 1))
    assert [m.sequence for m in stored] == list(range(1, len(messages) + 1))
    assert losses == 8


def test_a_relay_republishing_a_large_log_keeps_its_lease_and_its_position_equals_the_stream(
    nats_url: str,
) -> None:
    """The lease's renewals (on a connection of their own) keep up with a full publishing
    window: a TTL of half a second is never missed, and the relay's progress is the stream's."""
    names = BusNames.unique()
    rng = random.Random(7)
    sizes = [rng.choice([1, 1, 2, 3, 4, 6]) for _ in range(4_000)]
    messages = outbox(names, sizes)

    async def main() -> tuple[Relay, int, int]:
        relay = Relay(ListLog(messages), nats_url, settings=RelaySettings(names=names, lease_ttl=0.5))
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            for _ in range(1200):
                if relay.position == len(messages) or task.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        nc = await nats.connect(nats_url)
        try:
            state = (await nc.jetstream().stream_info(names.stream)).state
        finally:
            await nc.close()
        return relay, state.messages, state.last_seq

    relay, stored, last_sequence = asyncio.run(main())
    assert relay.terms == 1  # the lease was never lost
    assert relay.position == len(messages) == stored == last_sequence
    assert relay.published == len(messages)
