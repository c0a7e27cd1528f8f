"""The sender's order of claims, sends and outcomes, over in-memory ports (ADR 0007, 3).

Each channel's lane stores the outcome of a message in the same transaction as the claim of
its next one, and before handing the next one over: one commit per message, and at any moment
at most one message per lane that its channel may have accepted without its outcome stored,
so a crash sends at most that one again (with the same Message-ID).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass

import pytest

from services.notifications.application.channels import Channel, OutgoingMessage

from .fakes import InMemoryNotificationStore, RecordingChannel
from .world import DAY, Notifications

CONTACTS = 4


class Crash(BaseException):
    """The process dies (not an error the sender handles: nothing after it runs)."""


@dataclass
class NotingChannel(RecordingChannel):
    """Notes each send in the store's timeline once the channel has accepted it; dies after
    accepting its ``crash_after``-th message, if set."""

    store: InMemoryNotificationStore | None = None
    crash_after: int | None = None

    async def send(self, message: OutgoingMessage) -> None:
        await super().send(message)
        assert self.store is not None
        self.store.timeline.append(("send", self.channel.value, message.delivery_key))
        if self.crash_after is not None and len(self.sent) == self.crash_after:
            raise Crash


def warned(crash_after: int | None = None) -> Notifications:
    """A case whose early warning is due: urgent e-mails and SMS to the plan's contacts and an
    e-mail to the coordinator; what came before it is sent, and the timeline starts empty."""
    world = Notifications()
    for name in ("email", "sms"):
        channel = NotingChannel(Channel(name), store=world.store)
        setattr(world, name, channel)
        world.service.channels = {**world.service.channels, Channel(name): channel}
    world.feed.planned_with_contacts(DAY, CONTACTS)
    world.deliver()
    world.store.timeline.clear()
    world.email.sent.clear()
    world.sms.sent.clear()
    world.feed.trigger(DAY)
    email = world.email
    assert isinstance(email, NotingChannel)
    email.crash_after = crash_after
    return world


def commits_and_sends(world: Notifications, channel: str) -> list[tuple[str, object]]:
    """The timeline of one channel's deliveries: ("commit", changes) and ("send", key)."""
    keys = {r.delivery_key for r in world.rows() if r.channel == channel}
    out: list[tuple[str, object]] = []
    for entry in world.store.timeline:
        if entry[0] == "send" and entry[1] == channel:
            out.append(("send", entry[2]))
        elif entry[0] == "commit":
            changes = tuple(c for c in entry[1] if c[1] in keys)
            if changes:
                out.append(("commit", changes))
    return out


def unrecorded_after_each_step(steps: list[tuple[str, object]]) -> list[int]:
    """After each step, how many messages the channel had accepted whose outcome was not stored
    (what a crash at that moment would send again)."""
    accepted: set[object] = set()
    settled: set[object] = set()
    counts = []
    for kind, what in steps:
        if kind == "send":
            accepted.add(what)
        else:
            assert isinstance(what, tuple)
            settled.update(c[1] for c in what if c[0] == "finish")
        counts.append(len(accepted - settled))
    return counts


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_each_outcome_is_stored_with_the_next_claim_before_the_next_message_goes(channel: str) -> None:
    world = warned()
    assert world.deliver() > 0
    steps = commits_and_sends(world, channel)
    sends = [what for kind, what in steps if kind == "send"]
    assert len(sends) == (CONTACTS + 1 if channel == "email" else CONTACTS)
    assert len(set(sends)) == len(sends)
    # claim 1 | send 1 | outcome 1 + claim 2 | send 2 | ... | send n | outcome n
    expected: list[tuple[str, object]] = [("commit", (("claim", sends[0]),))]
    for previous, key in itertools.pairwise(sends):
        expected += [("send", previous), ("commit", (("finish", previous, "sent"), ("claim", key)))]
    expected += [("send", sends[-1]), ("commit", (("finish", sends[-1], "sent"),))]
    assert steps == expected
    assert len([s for s in steps if s[0] == "commit"]) == len(sends) + 1  # was 2 per message
    assert max(unrecorded_after_each_step(steps)) == 1
    assert {r.status for r in world.rows() if r.channel == channel} == {"sent"}


def test_a_crash_after_the_server_accepted_a_message_sends_that_one_again_and_no_other() -> None:
    world = warned(crash_after=3)
    with pytest.raises(Crash):
        world.deliver()
    email = world.email
    assert isinstance(email, NotingChannel)
    in_flight = email.sent[-1].delivery_key
    # The two before it are on the record as sent; it alone is claimed and not settled.
    urgent = [r for r in world.rows("early_warning") if r.channel == "email"]
    assert {r.delivery_key for r in urgent if r.status == "sending"} == {in_flight}
    assert len([r for r in urgent if r.status == "sent"]) == 2
    # The SMS lane ran meanwhile: at most its one message is claimed too.
    claimed = [r for r in world.rows() if r.status == "sending"]
    assert len([r for r in claimed if r.channel == "sms"]) <= 1
    # The next start: the claims are released, and the rest goes.
    email.crash_after = None
    assert world.service.recover_claims() == len(claimed)
    world.deliver()
    copies = Counter(m.message_id for m in email.sent)
    assert [key for key, n in copies.items() if n > 1] == [f"<{in_flight}@vss.se>"]
    assert copies[f"<{in_flight}@vss.se>"] == 2
    assert len(copies) == CONTACTS + 1
    assert max(Counter(m.message_id for m in world.sms.sent).values()) <= 2
    assert sum(n - 1 for n in Counter(m.message_id for m in world.sms.sent).values()) <= 1
    assert {r.status for r in world.rows("early_warning")} == {"sent"}


def test_a_failed_store_on_the_combined_step_stores_the_outcome_alone_and_sends_the_rest() -> None:
    world = warned()
    store = world.store
    real_claim = store.claim
    failed: list[str] = []

    def claim_failing_once(delivery_key: str) -> bool:
        # The second e-mail's claim: the transaction with the first one's outcome fails.
        if not failed and len(world.email.sent) == 1:
            failed.append(delivery_key)
            raise RuntimeError("database is locked")
        return real_claim(delivery_key)

    store.claim = claim_failing_once  # type: ignore[method-assign]
    asyncio.run(world.service.deliver_due())
    assert failed
    sent = Counter(m.message_id for m in world.email.sent)
    assert set(sent.values()) == {1}
    assert len(sent) == CONTACTS + 1
    assert {r.status for r in world.rows("early_warning")} == {"sent"}


def test_an_urgent_message_decided_during_a_pass_goes_before_the_non_urgent_still_queued() -> None:
    world = Notifications()
    email = NotingChannel(Channel.EMAIL, store=world.store)
    world.email = email
    world.service.channels = {**world.service.channels, Channel.EMAIL: email}
    world.feed.planned_with_contacts(DAY, CONTACTS)
    queued = len([r for r in world.rows() if r.channel == "email"])
    assert queued >= CONTACTS + 1  # non-urgent: the coordinator's, the plan to each

    async def send_then_trigger(message: OutgoingMessage) -> None:
        await NotingChannel.send(email, message)
        if len(email.sent) == 1:  # the case consumer decides an early warning meanwhile
            world.feed.trigger(DAY)

    email.send = send_then_trigger  # type: ignore[method-assign]
    world.deliver()
    urgent = [m.urgent for m in email.sent]
    assert urgent[0] is False
    # The warning's e-mails (to the contacts and the coordinator) right after the one in flight.
    assert urgent[1 : 1 + CONTACTS + 1] == [True] * (CONTACTS + 1)
    assert urgent[1 + CONTACTS + 1 :] == [False] * (queued - 1)
