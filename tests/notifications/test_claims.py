"""Nothing is sent after it was cancelled: the sender claims each delivery before sending it.

A consent withdrawal applied through the service's real path (``NotificationsService.apply``,
from another thread, as the case consumer does) while the sender drains a backlog over real
SMTP to the project's mail sink (slowed a little, so the backlog takes a while): whatever
the withdrawal cancelled never reaches the server, and the record (the store's log that the
relay publishes to VSS_NOTIFICATIONS) says exactly what the server accepted. Then the
claim's other ends: a retry after a withdrawal, and a claim left by a process that died.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.notifications.application.ports import AttemptOutcome, DeliveryRow
from services.notifications.application.service import NOT_COVERED
from services.notifications.domain.audience import CASE_CLOSED, MEMBER_LEFT
from services.notifications.infrastructure.mailsink import MailSink
from services.notifications.infrastructure.store import NotificationStore, migrate
from tests.meetings.feed import HOUSING, REGION_PSYCH, SOCIAL
from tests.notifications.support import DAY, World, address_of
from tests.support.clock import STOCKHOLM
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts import notification_events as ne
from vss_contracts.meeting_events import Invitee, InviteeRole, MeetingKind
from vss_contracts.types import ClosingReason, MemberKind, OrganisationRef, Principal

STAYS = OrganisationRef(id="arbetsformedlingen", name="Arbetsförmedlingen", principal=Principal.OTHER)
LEAVES = OrganisationRef(id="daglig-verksamhet", name="Daglig verksamhet AB", principal=Principal.OTHER)
PER_ORGANISATION = 25
SIPS = 3  # each tells the whole resource group: 3 x (75 members + the client) = 228 deliveries
SENT_BEFORE_WITHDRAWAL = 10
BO = "bo@example.se"
ROOT = Path(__file__).resolve().parents[2]


class SlowSink(MailSink):
    """The mail sink, a little slower to keep each message (as a relay under load)."""

    def store(self, mail_from: str | None, rcpt_tos: list[str], content: bytes) -> Path:
        time.sleep(0.008)
        return super().store(mail_from, rcpt_tos, content)


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> Iterator[World]:
    migrate(store_url)
    w = World(tmp_path, store_url=store_url, sink=SlowSink)
    yield w
    w.close()


def _backlog(world: World) -> dict[str, str]:
    """A resource group in three organisations and three SIPs decided: the e-mail of each
    member -> the organisation's id. Nothing sent yet but the coordinator's notice."""
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT)
    organisation_of = {}
    for n in range(PER_ORGANISATION):  # interleaved, so the leaving ones are all through the backlog
        for organisation in (HOUSING, STAYS, LEAVES):
            name = f"{organisation.id[:4]}{n:02d} Medlem"
            feed.add_member(DAY, name, MemberKind.PROFESSIONAL, organisation)
            organisation_of[f"{name.split(maxsplit=1)[0].lower()}@example.se"] = organisation.id
    feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, STAYS, LEAVES, relatives=True)
    world.deliver()  # the coordinator's notice, out of the way
    for version in range(1, SIPS + 1):
        feed.sip(DAY, version, date(2026, 6, 1))
    return organisation_of


def _message_ids(world: World) -> list[str]:
    return [str(m["Message-ID"]) for m in world.mails()]


def test_a_withdrawal_while_the_backlog_drains_sends_nothing_it_cancelled(world: World) -> None:
    organisation_of = _backlog(world)
    pending = world.store.summary()["deliveries"]["pending"]
    assert pending == SIPS * (3 * PER_ORGANISATION + 1) >= 200
    withdrawn_at: list[int] = []

    def withdraw_mid_run() -> None:
        # As the case consumer would: the event applied from its own thread while the
        # sender, on the loop, works through the backlog.
        deadline = time.monotonic() + 30
        while len(world.sink.files()) < 1 + SENT_BEFORE_WITHDRAWAL and time.monotonic() < deadline:
            time.sleep(0.002)
        world.feed.withdraw(DAY, LEAVES.id)
        withdrawn_at.append(len(world.sink.files()))

    thread = threading.Thread(target=withdraw_mid_run)
    thread.start()
    try:
        world.deliver()
    finally:
        thread.join()

    accepted = _message_ids(world)
    rows = world.store.deliveries_of_case(str(world.feed.case_id))
    by_status = Counter(r.status for r in rows)
    cancelled = [r for r in rows if r.status == "cancelled"]
    # The withdrawal came mid-run and cancelled about a third of the backlog.
    assert withdrawn_at[0] < len(accepted)
    assert len(cancelled) >= pending // 4
    assert {organisation_of[r.address] for r in cancelled} == {LEAVES.id}
    assert set(by_status) == {"sent", "cancelled"}  # nothing left claimed or pending
    # Nothing cancelled reached the server, and nothing reached it twice.
    assert not {r.message_id for r in cancelled} & set(accepted)
    assert len(accepted) == len(set(accepted))
    # The record equals what the server accepted: a NotificationSent for each message it
    # has, a NotificationFailed (withdrawn) for each cancelled delivery, nothing else.
    log = world.store.read_log(0, 10_000)
    sent = [e.state["data"]["message_id"] for e in log if e.type == ne.NotificationSent.TYPE]
    failed = [e.state["data"]["delivery_key"] for e in log if e.type == ne.NotificationFailed.TYPE]
    assert sorted(sent) == sorted(accepted)
    assert sorted(failed) == sorted(r.delivery_key for r in cancelled)
    assert sorted(r.message_id for r in rows if r.status == "sent") == sorted(accepted)
    # Those of the leaving organisation claimed before the withdrawal went, and say so.
    assert any(organisation_of.get(r.address) == LEAVES.id for r in rows if r.status == "sent")


# ------------------------------------------------------------- a retry after a withdrawal
class Hooked(MailSink):
    """The mail sink with hooks the test sets: ``before`` each message is kept (True makes
    the sink defer it, 451, as when it cannot store it) and ``after`` (kept, not yet 250)."""

    before: Callable[[], bool] | None = None
    after: Callable[[], None] | None = None

    def store(self, mail_from: str | None, rcpt_tos: list[str], content: bytes) -> Path:
        if self.before is not None and self.before():
            raise OSError("cannot store the message now")
        path = super().store(mail_from, rcpt_tos, content)
        if self.after is not None:
            self.after()
        return path


def _bo_pending(world: World) -> None:
    """A case whose resource group is Bo of the housing firm, which the consent covers, and a
    SIP decided: one delivery pending, to Bo."""
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.add_member(DAY, "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
    feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=False)
    world.deliver()  # the coordinator's notice, out of the way
    feed.sip(DAY, 1, date(2026, 6, 1))


@pytest.fixture
def hooked(tmp_path: Path, store_url: str) -> Iterator[tuple[World, Hooked]]:
    """Bo's SIP notice pending (_bo_pending), sent to a sink that can be hooked."""
    migrate(store_url)
    world = World(tmp_path, store_url=store_url, sink=Hooked)
    assert isinstance(world.sink, Hooked)
    _bo_pending(world)
    yield world, world.sink
    world.close()


def _bo(world: World) -> DeliveryRow:
    [row] = [r for r in world.store.deliveries_of_case(str(world.feed.case_id)) if r.address == BO]
    return row


def _record_of(world: World, row: DeliveryRow) -> list[tuple[str, dict[str, Any]]]:
    log = world.store.read_log(0, 1000)
    return [(e.type, e.state["data"]) for e in log if e.state["data"].get("delivery_key") == row.delivery_key]


def test_a_claimed_delivery_that_must_be_retried_after_a_withdrawal_is_cancelled(
    hooked: tuple[World, Hooked],
) -> None:
    world, sink = hooked

    def withdraw_then_defer() -> bool:
        # Bo's message is claimed and with the server: the withdrawal cannot cancel it,
        # and then the server asks for a retry, which must not come.
        sink.before = None
        world.feed.withdraw(DAY, HOUSING.id)
        return True

    sink.before = withdraw_then_defer
    assert world.deliver() == 1
    row = _bo(world)
    assert (row.status, row.attempts, row.last_error) == ("cancelled", 1, NOT_COVERED)
    world.clock.advance(timedelta(hours=1))  # long past the retry
    assert world.deliver() == 0
    assert BO not in world.recipients()
    [(kind, data)] = _record_of(world, row)
    assert (kind, data["reason"]) == (ne.NotificationFailed.TYPE, NOT_COVERED)


# ---------------------------------------------------- a claim left by a killed sender
SENDER = """
import asyncio, sys
from datetime import datetime
from services.notifications.application.channels import Channel
from services.notifications.application.service import NotificationsService, Signer
from services.notifications.infrastructure.channels import SmtpChannel
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.templates import Templates
from tests.support.clock import FixedClock

store = NotificationStore(sys.argv[1])
smtp = SmtpChannel("127.0.0.1", int(sys.argv[2]), sender=("VSS", "noreply@vss.example.se"))
clock = FixedClock(datetime.fromisoformat(sys.argv[3]))
service = NotificationsService(store, Templates("sv"), {Channel.EMAIL: smtp}, clock, Signer(b"test-key"))
asyncio.run(service.deliver_due())
"""


def _killed_once_the_server_kept_it(world: World, sink: Hooked) -> None:
    """A sender process (this service's code, in a process of its own) delivers Bo's
    message and is SIGKILLed once the server has kept it, before it can store the
    outcome: the crash window ADR 0007 names."""
    url = world.store.url.url
    args = [sys.executable, "-c", SENDER, url, str(sink.port), world.clock.now().isoformat()]
    process = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    sink.after = lambda: process.send_signal(signal.SIGKILL)

    async def killed() -> int | None:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return process.poll()

    try:
        assert world.loop.run_until_complete(killed()) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    sink.after = None
    assert (_bo(world).status, world.recipients().count(BO)) == ("sending", 1)


def test_a_claim_a_killed_sender_left_is_sent_again_at_start_as_a_recognisable_copy(
    hooked: tuple[World, Hooked],
) -> None:
    world, sink = hooked
    _killed_once_the_server_kept_it(world, sink)
    assert world.deliver() == 0  # claimed: not taken by a look, only by the recovery
    assert world.service.recover_claims() == 1  # at start
    assert world.deliver() == 1
    row = _bo(world)
    assert (row.status, row.attempts) == ("sent", 1)
    copies = [m for m in world.mails() if address_of(m) == BO]
    assert [str(m["Message-ID"]) for m in copies] == [row.message_id] * 2  # one duplicate, recognisable
    assert [kind for kind, _ in _record_of(world, row)] == [ne.NotificationSent.TYPE]


def test_a_claim_a_killed_sender_left_is_cancelled_at_start_if_the_consent_was_withdrawn(
    hooked: tuple[World, Hooked],
) -> None:
    world, sink = hooked
    _killed_once_the_server_kept_it(world, sink)
    world.feed.withdraw(DAY, HOUSING.id)  # while nothing runs: the claim stands, nothing is cancelled
    assert _bo(world).status == "sending"
    assert world.service.recover_claims() == 1
    assert world.deliver() == 0
    row = _bo(world)
    assert row.status == "cancelled"
    assert world.recipients().count(BO) == 1  # no copy to someone the consent no longer covers
    [(kind, data)] = _record_of(world, row)
    assert kind == ne.NotificationFailed.TYPE
    assert data["reason"].startswith(NOT_COVERED)
    assert "may have left" in data["reason"]


# ------------------------------------- a retry after the member left or the case closed
def _bo_member_id(world: World) -> UUID:
    audience = world.store.audience(str(world.feed.case_id)) or {}
    [bo] = [p for p in audience["members"] if p["email"] == BO]
    return UUID(bo["key"].removeprefix("member:"))


def _remove_bo(world: World) -> None:
    """Bo leaves the resource group, a few minutes after the SIP was decided (09:00)."""
    member_id = _bo_member_id(world)
    world.feed.send(
        DAY, ce.ResourceGroupMemberRemoved(member_id=member_id, removed_on=DAY), at=clock_time(9, 5)
    )


def _close(world: World) -> None:
    world.feed.send(
        DAY, ce.CaseClosed(closed_on=DAY, reason=ClosingReason.GOALS_ACHIEVED), at=clock_time(9, 5)
    )


@pytest.mark.parametrize(("happens", "reason"), [(_remove_bo, MEMBER_LEFT), (_close, CASE_CLOSED)])
def test_a_claimed_delivery_that_must_be_retried_after_the_member_left_or_the_case_closed_is_cancelled(
    hooked: tuple[World, Hooked], happens: Callable[[World], None], reason: str
) -> None:
    """Bo's SIP notice is claimed and with the server when Bo leaves (or the case closes):
    not pending, so nothing cancels it then; the server asks for a retry (451), and the
    consent still covers Bo's organisation: the retry must not send it to someone who left."""
    world, sink = hooked

    def happens_then_defer() -> bool:
        sink.before = None
        happens(world)
        return True

    sink.before = happens_then_defer
    assert world.deliver() == 1
    row = _bo(world)
    assert (row.status, row.attempts, row.last_error) == ("cancelled", 1, reason)
    world.clock.advance(timedelta(hours=1))  # long past the retry
    assert world.deliver() == 0
    assert BO not in world.recipients()
    [(kind, data)] = _record_of(world, row)
    assert (kind, data["reason"]) == (ne.NotificationFailed.TYPE, reason)


@pytest.mark.parametrize(("happens", "reason"), [(_remove_bo, MEMBER_LEFT), (_close, CASE_CLOSED)])
def test_a_claim_a_killed_sender_left_is_cancelled_at_start_if_the_member_left_or_the_case_closed(
    hooked: tuple[World, Hooked], happens: Callable[[World], None], reason: str
) -> None:
    world, sink = hooked
    _killed_once_the_server_kept_it(world, sink)
    happens(world)  # while nothing runs: the claim stands, nothing is cancelled
    assert _bo(world).status == "sending"
    assert world.service.recover_claims() == 1
    assert world.deliver() == 0
    row = _bo(world)
    assert (row.status, row.last_error) == (
        "cancelled",
        f"{reason} (a sender stopped while sending it: it may have left)",
    )
    assert world.recipients().count(BO) == 1  # no copy to someone who left / of a closed case


def test_a_pending_retry_is_cancelled_with_the_reason_when_the_member_leaves(
    hooked: tuple[World, Hooked],
) -> None:
    world, sink = hooked
    sink.before = lambda: True  # 451: Bo's notice waits for its retry, pending
    assert world.deliver() == 1
    sink.before = None
    assert _bo(world).status == "pending"
    _remove_bo(world)
    world.clock.advance(timedelta(hours=1))
    assert world.deliver() == 0
    assert (_bo(world).status, _bo(world).last_error) == ("cancelled", MEMBER_LEFT)
    assert BO not in world.recipients()


@pytest.mark.parametrize("closed", [False, True])
def test_a_meeting_cancellation_decided_after_the_member_left_or_the_case_closed_still_goes(
    hooked: tuple[World, Hooked], closed: bool
) -> None:
    """The meetings service tells a removed member (or everyone, after the closure) that
    their meeting is off: decided after the leaving or the closure on purpose, so only the
    consent decides, on its retry too."""
    world, sink = hooked
    world.deliver()  # the SIP notices
    bo = Invitee(
        invitee_id=f"member:{_bo_member_id(world)}",
        name="Bo Boendestöd",
        role=InviteeRole.PROFESSIONAL,
        organisation=HOUSING,
        email=BO,
    )
    meeting_id = uuid4()
    starts = datetime(2026, 3, 12, 10, 0, tzinfo=STOCKHOLM)
    world.meeting(
        me.MeetingScheduled(
            meeting_id=meeting_id,
            kind=MeetingKind.RESOURCE_GROUP,
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
            invitees=[bo],
            reason="booked",
        )
    )
    world.deliver()
    _remove_bo(world)
    if closed:
        _close(world)
    world.clock.advance(timedelta(minutes=10))  # 09:10: the meetings service reacts
    if closed:
        cause = world.meeting(me.MeetingCancelled(meeting_id=meeting_id, sequence=1, reason="case_closed"))
    else:
        cause = world.meeting(
            me.MeetingInviteesChanged(
                meeting_id=meeting_id, added=[], removed=[bo], sequence=1, reason="member_removed"
            )
        )
    sink.before = lambda: True  # deferred once: the retry is checked by the same rule
    world.deliver()
    sink.before = None
    world.clock.advance(timedelta(hours=1))
    world.deliver()
    [row] = [r for r in world.store.deliveries_of_case(str(world.feed.case_id)) if r.cause_event_id == cause]
    assert (row.status, row.address, row.attempts) == ("sent", BO, 2)
    assert any(str(m["Subject"]).startswith("Inställt: ") for m in world.mails() if address_of(m) == BO)


# ------------------------------------------------- the store failing after a claim
class Failing(NotificationStore):
    """The real store, failing as a busy SQLite or a lost PostgreSQL connection does: the
    next ``failures[name]`` calls of ``name`` raise before touching the database."""

    failures: Counter[str]

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.failures = Counter()

    def _maybe_fail(self, name: str) -> None:
        if self.failures[name] > 0:
            self.failures[name] -= 1
            raise sqlite3.OperationalError("database is locked")

    def audience(self, case_id: str) -> dict[str, Any] | None:
        self._maybe_fail("audience")
        return super().audience(case_id)

    def finish(self, delivery_key: str, outcome: AttemptOutcome) -> bool:
        self._maybe_fail("finish")
        return super().finish(delivery_key, outcome)


@pytest.fixture
def failing(tmp_path: Path, store_url: str) -> Iterator[tuple[World, Failing]]:
    """Bo's SIP notice pending, on a store that fails when told to."""
    migrate(store_url)
    world = World(tmp_path, store_url=store_url, store=Failing)
    assert isinstance(world.store, Failing)
    _bo_pending(world)
    yield world, world.store
    world.close()


def test_a_store_failing_right_after_the_claim_leaves_nothing_claimed_and_it_goes_later(
    failing: tuple[World, Failing],
) -> None:
    world, store = failing
    store.failures["audience"] = 1  # the look at the audience, after the claim committed
    assert world.deliver() == 0  # nothing sent, no exception out of the sender
    row = _bo(world)
    assert (row.status, row.attempts) == ("pending", 0)
    assert "database is locked" in str(row.last_error)
    assert BO not in world.recipients()
    world.clock.advance(world.policy.first_retry)  # in this process, not at the next start
    assert world.deliver() == 1
    assert (_bo(world).status, world.recipients().count(BO)) == ("sent", 1)


def test_an_outcome_the_store_failed_to_keep_is_stored_again_not_left_claimed(
    failing: tuple[World, Failing],
) -> None:
    world, store = failing
    store.failures["finish"] = 1  # busy once when the outcome is stored
    assert world.deliver() == 1
    row = _bo(world)
    assert (row.status, row.attempts) == ("sent", 1)
    assert world.recipients().count(BO) == 1
    assert [kind for kind, _ in _record_of(world, row)] == [ne.NotificationSent.TYPE]
    assert world.service.counters.sent >= 1


def test_an_outcome_the_store_cannot_keep_at_all_releases_the_claim_to_be_sent_again_now(
    failing: tuple[World, Failing],
) -> None:
    world, store = failing
    store.failures["finish"] = 2  # the outcome, and its second try
    assert world.deliver() == 1
    assert _bo(world).status == "pending"  # released: not claimed until a restart
    assert world.deliver() == 1  # in this process, as a recognisable copy
    row = _bo(world)
    assert (row.status, row.attempts) == ("sent", 1)
    copies = [m for m in world.mails() if address_of(m) == BO]
    assert [str(m["Message-ID"]) for m in copies] == [row.message_id] * 2
    assert [kind for kind, _ in _record_of(world, row)] == [ne.NotificationSent.TYPE]


# --------------------------------------------- claimed only when the channel can send
def test_a_withdrawal_while_deliveries_wait_for_the_smtp_connection_cancels_them_all(
    tmp_path: Path, store_url: str
) -> None:
    """Six notices to the housing firm's staff, and a slow SMTP server: while the first is
    at the server, the other five wait for the one connection. The consent stops covering
    the firm then: the five were not claimed while they waited, so none of them goes."""
    migrate(store_url)
    world = World(tmp_path, store_url=store_url, sink=Hooked)
    sink = world.sink
    assert isinstance(sink, Hooked)
    try:
        feed = world.feed
        feed.open(DAY)
        feed.assign(DAY, "sara", SOCIAL)
        staff = [f"bo{n}@example.se" for n in range(6)]
        for address in staff:
            feed.add_member(DAY, f"{address.split('@')[0]} Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
        feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=False)
        world.deliver()  # the coordinator's notice, out of the way
        feed.sip(DAY, 1, date(2026, 6, 1))

        def slow_then_withdraw() -> bool:
            sink.before = None
            time.sleep(0.2)  # a slow server: the others queue for the connection meanwhile
            feed.withdraw(DAY, HOUSING.id)
            return False  # this one is accepted: it was on its way

        sink.before = slow_then_withdraw
        world.deliver()
        rows = [r for r in world.store.deliveries_of_case(str(feed.case_id)) if r.address in staff]
        assert sorted(r.status for r in rows) == ["cancelled"] * 5 + ["sent"]
        assert {r.last_error for r in rows if r.status == "cancelled"} == {NOT_COVERED}
        assert len([a for a in world.recipients() if a in staff]) == 1
    finally:
        world.close()
