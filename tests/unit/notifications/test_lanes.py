"""Several lanes per channel, one recipient at a time (ADR 0025), over in-memory ports.

A channel that sends several messages at once (SMTP on a pool of connections) gets as many
lanes. The lanes share the channel's due rows; a recipient's next message is taken only once
the outcome of the one before is stored, so two messages to one recipient are never in
flight at once nor overtake each other, and each lane still stores each outcome before its
next message leaves (ADR 0007, 3).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest

from services.notifications.application.channels import Channel, OutgoingMessage
from services.notifications.application.lanes import RecipientQueue, recipient_of
from services.notifications.application.ports import Decisions, DeliveryRow, NewDelivery, iso
from services.notifications.application.service import _all_ended
from tests.meetings.feed import HOUSING, SOCIAL

from .fakes import InMemoryNotificationStore, RecordingChannel
from .world import DAY, START, Notifications

LANES = 4


def row(key: str, address: str, *, urgent: bool = False, channel: str = "email") -> DeliveryRow:
    return DeliveryRow(
        delivery_key=key,
        case_id="c",
        cause_event_id="e",
        cause_event_type="t",
        template="t",
        person={"key": f"person-{address}"},
        channel=channel,
        address=address,
        context={},
        calendar=None,
        calendar_method=None,
        urgent=urgent,
        warning_id=None,
        message_id=f"<{key}@vss.se>",
        created_at="2026-03-02T08:00:00+00:00",
        status="pending",
        attempts=0,
        next_attempt_at="2026-03-02T08:00:00+00:00",
        last_error=None,
        sent_at=None,
        acknowledged_at=None,
    )


# ---------------------------------------------------------------------------- the queue alone
def decide_an_sms(world: Notifications, *, urgent: bool, created_at: datetime) -> None:
    """An SMS to the case's first person, decided (stored as due) beside the world's e-mails."""
    text = NewDelivery(
        delivery_key="sms-1",
        case_id=str(world.case_id),
        cause_event_id="event-sms",
        cause_event_type="CoordinatorAssigned",
        template="coordinator_assigned",
        person=world.rows()[0].person,
        channel="sms",
        address="0701234500",
        context={},
        calendar=None,
        calendar_method=None,
        urgent=urgent,
        warning_id=None,
        message_id="<sms-1@vss.se>",
        created_at=iso(created_at),
    )
    world.store.record_decisions(
        Decisions("test", 2, "decided-sms", str(world.case_id), iso(START), None, deliveries=[text])
    )


def test_a_lane_passes_over_a_recipient_another_lane_holds_and_takes_them_once_released() -> None:
    a1, a2, b1 = row("a1", "a@x.se"), row("a2", "a@x.se"), row("b1", "b@x.se")
    queue = RecipientQueue([a1, a2, b1])
    assert queue.take(0) == a1
    assert queue.take(1) == b1  # a2 waits: a1's outcome is not stored
    assert queue.take(1) is None
    queue.release(0, a1)
    assert queue.take(1) == a2
    assert not queue


def test_a_lane_keeps_a_recipient_while_it_holds_any_of_their_messages() -> None:
    a1, a2, a3 = row("a1", "A@x.se"), row("a2", "a@x.se "), row("a3", "a@x.se")
    queue = RecipientQueue([a1, a2, a3])
    assert queue.take(0) == a1
    assert queue.take(0) == a2  # its own recipient: taken before a1's outcome is stored
    queue.release(0, a1)  # a2 is still the lane's
    assert queue.take(1) is None
    queue.release(0, a2)
    assert queue.take(1) == a3


def test_urgent_rows_come_first_and_each_recipient_keeps_the_order_read() -> None:
    rows = [row(f"{n}", f"r{n % 3}@x.se", urgent=n < 4) for n in range(9)]
    queue = RecipientQueue(rows)
    taken: list[DeliveryRow] = []
    lane = 0
    while queue:
        took = queue.take(lane % LANES)
        if took is None:  # every recipient queued is held: the lanes store their outcomes
            for n in range(LANES):
                queue.leave(n)
            continue
        taken.append(took)
        lane += 1
    assert [r.urgent for r in taken] == [True] * 4 + [False] * 5
    for address in {r.address for r in rows}:
        assert [r for r in taken if r.address == address] == [r for r in rows if r.address == address]


def test_a_row_made_ahead_for_one_lane_is_left_to_it() -> None:
    a1, b1, c1 = row("a1", "a@x.se"), row("b1", "b@x.se"), row("c1", "c@x.se")
    queue = RecipientQueue([a1, b1, c1])
    assert queue.take(0) == a1
    assert queue.peek(0) == b1  # lane 0 makes b1's message while a1 is sent
    assert queue.take(1) == c1
    assert queue.take(0) == b1


def test_a_webhook_receiver_orders_each_person_not_the_whole_organisation() -> None:
    hook = "https://hooks.example/vss"
    first = replace(row("w1", hook, channel="webhook"), person={"key": "p1"})
    second = replace(row("w2", hook, channel="webhook"), person={"key": "p2"})
    assert recipient_of(first) != recipient_of(second)
    assert recipient_of(row("m1", "Anna@x.se")) == recipient_of(row("m2", "anna@x.se"))


def test_a_waiting_lane_goes_on_when_another_lane_releases_a_recipient() -> None:
    async def scenario() -> list[str]:
        a1, a2 = row("a1", "a@x.se"), row("a2", "a@x.se")
        queue = RecipientQueue([a1, a2])
        assert queue.take(0) == a1
        order: list[str] = []

        async def second_lane() -> None:
            while (took := queue.take(1)) is None:
                await queue.changed()
            order.append(took.delivery_key)

        waiting = asyncio.create_task(second_lane())
        await asyncio.sleep(0)
        order.append("a1 stored")
        queue.release(0, a1)
        await waiting
        return order

    assert asyncio.run(scenario()) == ["a1 stored", "a2"]


# ----------------------------------------------------------------------- the sender's lanes
@dataclass
class LaneChannel(RecordingChannel):
    """Sends ``LANES`` at once, each taking a few turns of the loop; notes in the store's
    timeline when a send starts and when the server accepted it."""

    store: InMemoryNotificationStore | None = None
    in_flight: Counter[str] = field(default_factory=Counter)
    most_at_once: int = 0
    most_to_one_recipient: int = 0

    async def send(self, message: OutgoingMessage) -> None:
        assert self.store is not None
        self.store.timeline.append(("start", message.delivery_key))
        self.in_flight[message.address] += 1
        self.most_at_once = max(self.most_at_once, sum(self.in_flight.values()))
        self.most_to_one_recipient = max(self.most_to_one_recipient, self.in_flight[message.address])
        for _ in range(3 + hash(message.delivery_key) % 4):  # unequal sends: lanes overtake
            await asyncio.sleep(0)
        self.in_flight[message.address] -= 1
        await super().send(message)
        self.store.timeline.append(("send", message.delivery_key))


def busy_world(recipients: dict[str, int]) -> tuple[Notifications, LaneChannel, list[str]]:
    """A case with ``recipients[address]`` e-mails due to each address, decided one after the
    other; the delivery keys in the order decided."""
    world = Notifications()
    email = LaneChannel(Channel.EMAIL, concurrency=LANES, store=world.store)
    world.email = email
    world.service.channels = {**world.service.channels, Channel.EMAIL: email}
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    world.deliver()
    person = world.rows()[0].person
    keys = []
    deliveries = []
    n = 0
    for round_ in range(max(recipients.values(), default=0)):
        for address, count in recipients.items():
            if round_ < count:
                key = f"mail-{n:03d}"
                at = iso(START - timedelta(seconds=1) + timedelta(microseconds=n))
                deliveries.append(
                    NewDelivery(
                        delivery_key=key,
                        case_id=str(world.case_id),
                        cause_event_id=f"event-{n}",
                        cause_event_type="CoordinatorAssigned",
                        template="coordinator_assigned",
                        person=person,
                        channel="email",
                        address=address,
                        context={},
                        calendar=None,
                        calendar_method=None,
                        urgent=False,
                        warning_id=None,
                        message_id=f"<{key}@vss.se>",
                        created_at=at,
                    )
                )
                keys.append(key)
                n += 1
    world.store.record_decisions(
        Decisions("test", 1, "decided", str(world.case_id), iso(START), None, deliveries=deliveries)
    )
    world.store.timeline.clear()
    email.sent.clear()
    return world, email, keys


def test_lanes_send_several_at_once_but_never_two_to_one_recipient_nor_out_of_order() -> None:
    recipients = {"anna@x.se": 6, "omar@x.se": 5} | {f"r{n}@x.se": 1 for n in range(10)}
    world, email, keys = busy_world(recipients)
    assert world.deliver() == len(keys)
    sent = [m.delivery_key for m in email.sent]
    assert sorted(sent) == sorted(keys)  # each once
    assert email.most_at_once == LANES
    assert email.most_to_one_recipient == 1
    address_of = {r.delivery_key: r.address for r in world.rows()}
    for address in recipients:
        decided = [k for k in keys if address_of[k] == address]
        assert [k for k in sent if address_of[k] == address] == decided
    # A recipient's next message starts only after the one before is on the record as sent.
    stored: set[str] = set()
    for entry in world.store.timeline:
        if entry[0] == "commit":
            stored.update(change[1] for change in entry[1] if change[0] == "finish")
        elif entry[0] == "start":
            key = entry[1]
            before = keys[: keys.index(key)]
            assert {k for k in before if address_of[k] == address_of[key]} <= stored, key


def test_each_lane_stores_an_outcome_before_its_next_message_leaves() -> None:
    world, _, keys = busy_world({f"r{n}@x.se": 2 for n in range(12)})
    world.deliver()
    accepted: set[str] = set()
    stored: set[str] = set()
    most_unrecorded = 0
    commits = 0
    for entry in world.store.timeline:
        if entry[0] == "send":
            accepted.add(entry[1])
        elif entry[0] == "commit":
            commits += 1
            stored.update(change[1] for change in entry[1] if change[0] == "finish")
        most_unrecorded = max(most_unrecorded, len(accepted - stored))
    # What a crash could send again: at most one message per lane.
    assert 1 < most_unrecorded <= LANES
    assert commits <= len(keys) + LANES  # one commit per message, and each lane's last alone
    assert {r.status for r in world.rows() if r.delivery_key in keys} == {"sent"}


def test_an_e_mail_decided_while_an_sms_is_written_does_not_wait_for_it() -> None:
    world, email, _ = busy_world({})
    sms_started = asyncio.Event()
    release_sms = asyncio.Event()

    @dataclass
    class SlowSms(RecordingChannel):
        async def send(self, message: OutgoingMessage) -> None:
            sms_started.set()
            await release_sms.wait()
            await super().send(message)

    sms = SlowSms(Channel.SMS)
    world.service.channels = {**world.service.channels, Channel.SMS: sms}
    decide_an_sms(world, urgent=True, created_at=START - timedelta(seconds=1))

    async def scenario() -> list[str]:
        # Each channel is sent on a loop of its own (the sender in the service's process).
        texting = asyncio.create_task(world.service.deliver_due(channel=Channel.SMS))
        await sms_started.wait()
        # While the SMS is being written, the case consumer decides an e-mail: it goes now,
        # not after the SMS.
        world.feed.assign(DAY, "omar", HOUSING)
        assert await world.service.deliver_due(channel=Channel.EMAIL) == 1
        assert not texting.done()
        went = [m.subject.split()[-1] for m in email.sent]  # PlainRenderer: "[case] template"
        release_sms.set()
        assert await texting == 1
        return went

    assert asyncio.run(scenario()) == ["coordinator_assigned"]
    assert [m.delivery_key for m in sms.sent] == ["sms-1"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_one_recipient_alone_is_sent_in_order_on_any_number_of_lanes(concurrency: int) -> None:
    world, email, keys = busy_world({"anna@x.se": 7})
    email.concurrency = concurrency
    world.deliver()
    assert [m.delivery_key for m in email.sent] == keys
    assert email.most_at_once == 1


def test_a_full_batch_of_one_channel_leaves_no_other_channel_unsent() -> None:
    world, email, keys = busy_world({f"r{n}@x.se": 1 for n in range(4)})
    world.service.policy = replace(world.service.policy, batch=2)
    # Made after every e-mail: not read first.
    decide_an_sms(world, urgent=False, created_at=START - timedelta(microseconds=1))
    assert world.deliver() == len(keys) + 1
    assert sorted(m.delivery_key for m in email.sent) == sorted(keys)
    assert [m.delivery_key for m in world.sms.sent] == ["sms-1"]


def test_a_failed_lane_is_raised_only_once_its_sibling_lanes_have_ended() -> None:
    """A lane that fails must not leave the others sending from a queue the next pass does
    not see (a recipient's next message could then go beside one still in flight)."""
    ended: list[str] = []

    async def failing() -> int:
        raise RuntimeError("the store went away")

    async def sending() -> int:
        await asyncio.sleep(0.05)
        ended.append("sibling")
        return 1

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="store went away"):
            await _all_ended([failing(), sending()])
        assert ended == ["sibling"]  # it ended before the failure was raised

    asyncio.run(scenario())
    assert asyncio.run(_all_ended([sending(), sending()])) == [1, 1]
