"""The notifications service on a real nats-server, with a real SMTP server started by the test.

The whole path: case commands -> case store -> relay -> VSS_CASE -> meetings service ->
VSS_MEETINGS -> notifications service (both streams) -> SMTP; and its delivery record ->
relay -> VSS_NOTIFICATIONS. Then the faults: a SIGKILL mid-run, and the meetings stream
running ahead of the case stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import partial
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.meetings.application.service import Requester
from services.meetings.domain.schedule import MeetingSchedule
from services.meetings.infrastructure.bus import meeting_bus_names
from services.notifications.application.service import CASE_CONSUMER, MEETINGS_CONSUMER
from services.notifications.bootstrap import NotificationsParts, bootstrap_notifications
from services.notifications.infrastructure.bus import notification_bus_names
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.store import migrate as migrate_notifications
from services.notifications.settings import NotificationsSettings
from services.shared.bus.consumer import Delivery
from services.shared.bus.embedded import free_port
from services.shared.bus.names import BusNames
from tests.bus.conftest import PartsThread
from tests.meetings.test_bus import MeetingsThread
from tests.support.actors import organisation_of
from tests.support.bus import read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.nats import delete_streams
from tests.support.scenario import CaseScenario, coordinator_member_command
from vss_contracts import meeting_events as me
from vss_contracts import notification_events as ne
from vss_contracts.types import ContactDetails, MemberKind

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------- the SMTP server
class Recorder:
    """aiosmtpd handler: records each accepted message's Message-ID and recipients.

    ``hold()`` makes it stop answering RCPT (a server that stalls mid-conversation), so a
    test can kill the sender while no message is between "accepted" and "recorded": once
    nothing more is accepted (:meth:`quiet`), each of the sender's SMTP lanes waits in a
    conversation or has nothing left, and a lane stores a message's outcome before it starts
    its next one.
    """

    def __init__(self) -> None:
        self.accepted: list[tuple[str, tuple[str, ...], bytes]] = []
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.open.set()
        self.waiting = threading.Event()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        while not self.open.is_set():
            self.waiting.set()
            await asyncio.sleep(0.01)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        message_id = str(BytesHeaderParser(policy=compat32).parsebytes(content).get("Message-ID", ""))
        with self.lock:
            self.accepted.append((message_id.strip(), tuple(envelope.rcpt_tos), content))
        return "250 Message accepted"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m for m, _, _ in self.accepted]

    def hold(self) -> None:
        self.waiting.clear()
        self.open.clear()

    def quiet(self, still: float = 0.5, timeout: float = 10) -> bool:
        """Wait until no message was accepted for ``still`` s; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        count, since = len(self.message_ids()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(self.message_ids())
            if now != count:
                count, since = now, time.monotonic()
            elif time.monotonic() - since >= still:
                return True
        return False


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield recorder, port
    recorder.open.set()
    controller.stop()


# ------------------------------------------------------------------------------- the setup
@pytest.fixture
def case_store(sqlite_url: str) -> Iterator[CaseEventStore]:
    migrate(StoreConfig(sqlite_url))
    store = CaseEventStore(StoreConfig(sqlite_url))
    yield store
    store.close()


@pytest.fixture
def prefix(bus_names: BusNames, nats_url: str) -> Iterator[str]:
    """This test's prefix for the meetings and notifications streams (deleted afterwards)."""
    tag = bus_names.stream.split("_")[0] + "_"
    yield tag
    streams = [meeting_bus_names(tag, bus_names).stream, notification_bus_names(tag, bus_names).stream]
    asyncio.run(delete_streams(nats_url, streams))


def settings_for(
    tmp_path: Path, nats_url: str, smtp_port: int, prefix: str, **extra: Any
) -> NotificationsSettings:
    url = f"sqlite:///{tmp_path / 'notifications.sqlite'}"
    migrate_notifications(url)
    return NotificationsSettings(
        notifications_store_url=url,
        nats_url=nats_url,
        data_dir=tmp_path / "notifications",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        sender_interval=0.2,
        meetings_stream_prefix=prefix,
        notifications_stream_prefix=prefix,
        ack_link_key="test-key-test-key",
        **extra,
    )


NotificationsThread = PartsThread[NotificationsParts]


@pytest.fixture
def start_notifications(
    tmp_path: Path,
    nats_url: str,
    bus_names: BusNames,
    prefix: str,
    clock: FixedClock,
    smtp: tuple[Recorder, int],
) -> Callable[[], NotificationsThread]:
    def start() -> NotificationsThread:
        settings = settings_for(tmp_path, nats_url, smtp[1], prefix)
        parts = bootstrap_notifications(settings, clock=clock, with_api=False, case_names=bus_names)
        names = settings.notification_names()
        parts.relay.settings = type(parts.relay.settings)(names=names, lease_ttl=1.0, ack_timeout=2.0)
        return NotificationsThread(parts)

    return start


@pytest.fixture
def start_meetings(
    tmp_path: Path, nats_url: str, bus_names: BusNames, prefix: str, clock: FixedClock
) -> Callable[[], MeetingsThread]:
    from services.meetings.bootstrap import bootstrap_meetings  # noqa: PLC0415
    from services.meetings.infrastructure.store import migrate as migrate_meetings  # noqa: PLC0415
    from services.meetings.settings import MeetingsSettings  # noqa: PLC0415

    def start() -> MeetingsThread:
        url = f"sqlite:///{tmp_path / 'meetings.sqlite'}"
        migrate_meetings(url)
        names = meeting_bus_names(prefix, bus_names)
        # These tests follow the streams to SMTP: the first meeting is fixed and invited at once
        # (a proposal confirmed first: tests/notifications/test_real_meetings.py).
        settings = MeetingsSettings(
            meetings_store_url=url,
            nats_url=nats_url,
            data_dir=tmp_path,
            timer_interval=0.1,
            propose_first_meeting=False,
        )
        parts = bootstrap_meetings(
            settings, clock=clock, with_api=False, case_names=bus_names, meeting_names=names
        )
        parts.relay.settings = type(parts.relay.settings)(names=names, lease_ttl=1.0, ack_timeout=2.0)
        return MeetingsThread(parts)

    return start


def case_with_group(service: CaseService, clock: FixedClock) -> CaseScenario:
    """To the first SIP, with a resource group that has addresses: the client and a housing
    support worker of the municipality (an organisation the consent covers); the regional
    coordinator is a member too (the coordinators have no addresses here)."""
    scenario = CaseScenario(service, clock)
    scenario.open()
    scenario.assign_coordinators()
    scenario.give_consent()
    scenario.complete_worksheet()
    scenario.summarise_mapping()  # books the first resource group meeting
    scenario.set_goal()
    scenario.add_member(
        "client",
        lambda day: cmd.AddMember(
            kind=MemberKind.CLIENT,
            name="Tolvan Tolvansson",
            contact=ContactDetails(email="tolvan@example.se"),
            added_on=day,
        ),
    )
    scenario.add_member(
        "municipality",  # the SIP's action is theirs
        lambda day: cmd.AddMember(
            kind=MemberKind.PROFESSIONAL,
            name="Bo Boendestöd",
            organisation=organisation_of(scenario.actors.municipality),
            role="boendestödjare",
            contact=ContactDetails(email="bo@example.se"),
            added_on=day,
        ),
    )
    scenario.add_member("region", lambda day: coordinator_member_command(day, scenario.actors.region))
    scenario.decide_sip()  # moves the meeting to the follow-up date
    return scenario


# What one such case sends: to the client and the support worker each an invitation (when
# they joined), the SIP, and the update when the SIP moved the meeting.
PER_CASE = {
    ("tolvan@example.se", "meeting_invitation"),
    ("tolvan@example.se", "sip_decided"),
    ("tolvan@example.se", "meeting_updated"),
    ("bo@example.se", "meeting_invitation"),
    ("bo@example.se", "sip_decided"),
    ("bo@example.se", "meeting_updated"),
}


def sent(store: NotificationStore, case_ids: list[UUID]) -> list[Any]:
    return [row for case_id in case_ids for row in store.deliveries_of_case(str(case_id))]


def settled(store: NotificationStore, case_ids: list[UUID]) -> bool:
    """Every case has had its messages (and maybe reminders the meetings timers fired, as the
    scenario's clock moves on), none is pending, and the record did not grow for a moment."""

    def look() -> tuple[int, bool]:
        rows = sent(store, case_ids)
        done = all(row.status == "sent" for row in rows) and all(
            {(r.address, r.template) for r in rows if r.case_id == str(c)} >= PER_CASE for c in case_ids
        )
        return len(rows), done

    before = look()
    if not before[1]:
        return False
    time.sleep(0.5)
    return look() == before


def of_case(rows: list[Any], case_id: UUID) -> set[tuple[str, str]]:
    """What the case's group was sent, without the reminders (their timing is the clock's)."""
    return {(r.address, r.template) for r in rows if r.case_id == str(case_id)} & PER_CASE


# ------------------------------------------------------------------------------- the tests
def test_case_and_meeting_streams_reach_the_group_by_smtp_and_the_record_reaches_the_bus(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    bus_names: BusNames,
    prefix: str,
    smtp: tuple[Recorder, int],
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[[], MeetingsThread],
    start_notifications: Callable[[], NotificationsThread],
) -> None:
    service = CaseService(case_store, clock)
    case_ids = [cast(UUID, case_with_group(service, clock).case_id) for _ in range(2)]
    recorder, _ = smtp
    with run_relay(case_store), start_meetings(), start_notifications() as notifications:
        store = notifications.parts.store
        assert wait_until(lambda: settled(store, case_ids), 30), sent(store, case_ids)
        names = notification_bus_names(prefix, bus_names)
        assert wait_until(
            lambda: (
                len(asyncio.run(read_stream(nats_url, names.stream, names.subjects)))
                == len(sent(store, case_ids))
            ),
            20,
        )
        rows = sent(store, case_ids)
    for case_id in case_ids:
        assert of_case(rows, case_id) == PER_CASE
    # Exactly the recorded messages reached the server, each once, under its stable Message-ID.
    assert sorted(recorder.message_ids()) == sorted(r.message_id for r in rows)
    invitation = next(c for m, _, c in recorder.accepted if b"text/calendar" in c and b"Kallelse" in c)
    assert b"METHOD:REQUEST" in invitation or b'method="REQUEST"' in invitation
    # The delivery record on the bus: one NotificationSent per message, in the case's order.
    published = asyncio.run(read_stream(nats_url, names.stream, names.subjects))
    kinds = Counter(m.event.type for m in published)
    assert kinds == {ne.NotificationSent.TYPE: len(rows)}
    data = [m.event.notification_data() for m in published]
    assert {d.message_id for d in data if isinstance(d, ne.NotificationSent)} == {r.message_id for r in rows}


def test_sigkill_mid_run_and_a_restart_send_nothing_twice(
    case_store: CaseEventStore,
    clock: FixedClock,
    tmp_path: Path,
    nats_url: str,
    bus_names: BusNames,
    prefix: str,
    smtp: tuple[Recorder, int],
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[[], MeetingsThread],
) -> None:
    recorder, smtp_port = smtp
    # The service runs as a process on the real clock, and a consent ends a year after it is
    # signed: date the cases (a day per step, 120 days in all) in the recent past, not in 2025.
    clock.advance(max(timedelta(0), datetime.now(UTC) - timedelta(days=200) - clock.now()))
    service = CaseService(case_store, clock)
    case_ids = [cast(UUID, case_with_group(service, clock).case_id) for _ in range(12)]
    settings = settings_for(tmp_path, nats_url, smtp_port, prefix)
    env = {
        **os.environ,
        "VSS_NOTIFICATIONS_STORE_URL": str(settings.notifications_store_url),
        "VSS_NATS_URL": nats_url,
        "VSS_BUS_STREAM": bus_names.stream,
        "VSS_BUS_SUBJECT_PREFIX": bus_names.subject_prefix,
        "VSS_BUS_DEAD_LETTER_STREAM": bus_names.dead_letter_stream,
        "VSS_BUS_DEAD_LETTER_PREFIX": bus_names.dead_letter_prefix,
        "VSS_MEETINGS_STREAM_PREFIX": prefix,
        "VSS_NOTIFICATIONS_STREAM_PREFIX": prefix,
        "VSS_SMTP_HOST": "127.0.0.1",
        "VSS_SMTP_PORT": str(smtp_port),
        "VSS_DATA_DIR": str(tmp_path / "notifications"),
        "VSS_NOTIFICATIONS_PORT": str(free_port()),
        "VSS_SENDER_INTERVAL": "0.2",
        "VSS_ACK_LINK_KEY": "test-key-test-key",
    }
    command = [sys.executable, "-m", "services.notifications.main"]
    log = (tmp_path / "notifications.log").open("ab")
    store = NotificationStore(str(settings.notifications_store_url))
    with run_relay(case_store), start_meetings():
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Let some messages through, then stall the server mid-conversation and kill the
            # service there: its consumers are mid-stream, a message is half sent.
            assert wait_until(lambda: len(recorder.message_ids()) >= 8, 30), "nothing was sent"
            recorder.hold()
            assert recorder.waiting.wait(10)
            assert recorder.quiet()  # the other SMTP lanes are held too, or done
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            accepted_before = len(recorder.message_ids())
            assert accepted_before < len(PER_CASE) * len(case_ids)  # it really was mid-run
            recorder.open.set()
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            assert wait_until(lambda: settled(store, case_ids), 60), (
                tmp_path / "notifications.log"
            ).read_text()[-3000:]
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(20)
            log.close()
    rows = sent(store, case_ids)
    store.close()
    ids = recorder.message_ids()
    assert Counter(ids).most_common(1)[0][1] == 1, "a message was sent twice"
    assert sorted(ids) == sorted(r.message_id for r in rows)
    for case_id in case_ids:
        assert of_case(rows, case_id) == PER_CASE


def test_a_meeting_event_waits_for_the_consent_the_case_stream_holds_before_it(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    bus_names: BusNames,
    prefix: str,
    smtp: tuple[Recorder, int],
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[[], MeetingsThread],
    start_notifications: Callable[[], NotificationsThread],
) -> None:
    service = CaseService(case_store, clock)
    case_id = cast(UUID, case_with_group(service, clock).case_id)
    notifications = start_notifications()
    case_consumer = next(c for c in notifications.parts.consumers if c.settings.durable == CASE_CONSUMER)
    gate = threading.Event()
    handler = case_consumer.handler
    original = handler.apply

    def held_apply(delivery: Delivery) -> bool:
        gate.wait(30)  # the case consumer is slow: the meetings stream gets ahead of it
        return original(delivery)

    handler.apply = held_apply  # type: ignore[method-assign]
    store = notifications.parts.store
    names = meeting_bus_names(prefix, bus_names)
    with run_relay(case_store), start_meetings(), notifications:
        assert wait_until(
            lambda: len(asyncio.run(read_stream(nats_url, names.stream, names.subjects))) >= 4, 20
        )
        assert not wait_until(lambda: bool(sent(store, [case_id])), 1.5)  # nothing decided yet
        gate.set()
        assert wait_until(lambda: settled(store, [case_id]), 30), sent(store, [case_id])
    # The support worker's organisation is covered by the consent that came before the
    # meeting events: without the wait, their invitation and update would be lost.
    rows = sent(store, [case_id])
    assert of_case(rows, case_id) == PER_CASE


def add_relative(scenario: CaseScenario) -> None:
    """The client's mother joins the resource group, with an e-mail address."""
    scenario.add_member(
        "mother",
        lambda day: cmd.AddMember(
            kind=MemberKind.RELATIVE,
            name="Mamma Tolvansson",
            contact=ContactDetails(email="mamma@example.se"),
            added_on=day,
        ),
    )


def withdraw_relatives(scenario: CaseScenario) -> None:
    """The client withdraws the consent for relatives only (by the municipality's coordinator)."""
    scenario.run(
        lambda c: c.withdraw_consent(
            cmd.WithdrawConsent(withdrawn_on=scenario.today, entire=False, relatives=True)
        ),
        scenario.actors.municipality,
    )


def _decided_and_settled(store: NotificationStore, case_id: UUID) -> list[dict[str, Any]]:
    """Every delivery of the case, row by row: what was decided and how it ended (not when a
    retry was planned: ``next_attempt_at`` is the sender's timing)."""
    return sorted(
        ({k: v for k, v in asdict(row).items() if k != "next_attempt_at"} for row in sent(store, [case_id])),
        key=lambda r: str(r["delivery_key"]),
    )


def test_a_rebuilt_service_decides_and_settles_what_live_did_and_sends_nothing_again(
    tmp_path: Path,
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    bus_names: BusNames,
    prefix: str,
    smtp: tuple[Recorder, int],
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[[], MeetingsThread],
    start_notifications: Callable[[], NotificationsThread],
) -> None:
    """Rebuilding notifications from history gives exactly the live state.

    Live, a relative joins (and is invited to the resource group meeting under the consent
    that covers relatives), then the relatives' consent is withdrawn while meeting events
    follow: a coordinator moves the meeting by hand, and the relative is not told. A store
    rebuilt from the same streams must decide the relative's invitation as live did (judged
    as of the case position it followed, not under the withdrawal the case stream already
    holds), settle every delivery as the delivery record says, send nothing again and
    publish no record event twice.
    """
    recorder, _ = smtp
    service = CaseService(case_store, clock)
    scenario = case_with_group(service, clock)
    case_id = cast(UUID, scenario.case_id)
    coordinator = Requester(
        scenario.actors.region.user_id,
        scenario.actors.region.organisation_id,
        scenario.actors.region.principal,
    )
    record_names = notification_bus_names(prefix, bus_names)
    live = start_notifications()
    store = live.parts.store
    with run_relay(case_store), start_meetings() as meetings, live:
        assert wait_until(lambda: settled(store, [case_id]), 30), sent(store, [case_id])
        add_relative(scenario)
        invited = {("mamma@example.se", "meeting_invitation")}
        assert wait_until(lambda: invited <= {(r.address, r.template) for r in sent(store, [case_id])}, 20)
        withdraw_relatives(scenario)
        tail = len(case_store.read_log(0, 10**6))
        schedule = meetings.parts.service
        assert wait_until(lambda: schedule.applied_log_position() >= tail, 20)
        [rg] = [m for m in schedule.meetings(case_id) if m.kind is me.MeetingKind.RESOURCE_GROUP]
        schedule.request(
            case_id,
            coordinator,
            partial(
                MeetingSchedule.reschedule,
                request_id="move-by-hand",
                meeting_id=rg.meeting_id,
                starts_at=rg.starts_at + timedelta(hours=2),
                user_id=coordinator.user_id,
                organisation_id=coordinator.organisation_id,
                reason="Lokalen är upptagen",
            ),
        )

        moved_to = (rg.starts_at + timedelta(hours=2)).isoformat()

        def told_of_the_move() -> bool:
            moved = [r for r in sent(store, [case_id]) if r.context.get("starts_at") == moved_to]
            return {r.address for r in moved} == {"tolvan@example.se", "bo@example.se"} and all(
                r.status == "sent" for r in moved
            )

        assert wait_until(told_of_the_move, 20), sent(store, [case_id])
        meeting_names = meeting_bus_names(prefix, bus_names)
        meetings_tail = len(asyncio.run(read_stream(nats_url, meeting_names.stream, meeting_names.subjects)))
        assert store.applied_through(MEETINGS_CONSUMER) == meetings_tail  # nothing more came

        def record_published() -> bool:
            published = asyncio.run(read_stream(nats_url, record_names.stream, record_names.subjects))
            return len(published) == len(store.read_log(0, 10**6)) and all(
                r.status in ("sent", "cancelled", "failed") for r in sent(store, [case_id])
            )

        assert wait_until(record_published, 20)
        live_rows = _decided_and_settled(store, case_id)
        record_before = asyncio.run(read_stream(nats_url, record_names.stream, record_names.subjects))
        mails_before = len(recorder.accepted)
    # The relative was invited while the consent covered relatives, and nothing later.
    mamma = {r["template"] for r in live_rows if r["address"] == "mamma@example.se"}
    assert mamma == {"meeting_invitation"}

    rebuilt_settings = settings_for(tmp_path / "rebuilt", nats_url, smtp[1], prefix)
    parts = bootstrap_notifications(rebuilt_settings, clock=clock, with_api=False, case_names=bus_names)
    parts.relay.settings = type(parts.relay.settings)(names=record_names, lease_ttl=1.0, ack_timeout=2.0)
    rebuilt = NotificationsThread(parts)
    with rebuilt:
        assert wait_until(
            lambda: (
                parts.store.applied_through(CASE_CONSUMER) >= tail + 0
                and parts.store.applied_through("notifications-meetings") >= meetings_tail
            ),
            30,
        )
        time.sleep(1.5)  # the rebuilt sender and relay would have sent and published by now
        rebuilt_rows = _decided_and_settled(parts.store, case_id)
    assert rebuilt_rows == live_rows  # decisions and outcomes, row by row
    # How far each stream's history went in the adopted record: the last event, by its log
    # position, that a recorded delivery was decided for (what a rule added since must not
    # decide anew: tests/notifications/test_service.py).
    causes = {str(r["cause_event_id"]) for r in live_rows}
    for consumer, names in ((CASE_CONSUMER, bus_names), (MEETINGS_CONSUMER, meeting_names)):
        stream = asyncio.run(read_stream(nats_url, names.stream, names.subjects))
        last = max(m.event.logposition or 0 for m in stream if m.event.id in causes)
        assert parts.store.record_reached(consumer) == last, consumer
    assert len(recorder.accepted) == mails_before  # nothing sent again
    record_after = asyncio.run(read_stream(nats_url, record_names.stream, record_names.subjects))
    assert [m.event.id for m in record_after] == [
        m.event.id for m in record_before
    ]  # nothing published again
    # The adopted record's chain goes on: the rebuilt log holds the stream's events as published.
    assert [e.event_id for e in parts.store.read_log(0, 10**6)] == [m.event.id for m in record_before]


def test_after_a_stop_nothing_leaves_before_the_case_stream_is_read_to_its_end(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    smtp: tuple[Recorder, int],
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[[], MeetingsThread],
    start_notifications: Callable[[], NotificationsThread],
) -> None:
    """While the service was stopped, a relative joined (the meetings service invited them,
    under a consent that covered relatives) and then the relatives' consent was withdrawn.
    On restart the invitation is decided as of its case position, as live would have; it
    must not leave before the case consumer has applied the withdrawal that stops it."""
    recorder, _ = smtp
    service = CaseService(case_store, clock)
    scenario = case_with_group(service, clock)
    case_id = cast(UUID, scenario.case_id)
    with run_relay(case_store), start_meetings() as meetings:
        first = start_notifications()
        with first:
            assert wait_until(lambda: settled(first.parts.store, [case_id]), 30)
        add_relative(scenario)
        withdraw_relatives(scenario)
        withdrawal = len(case_store.read_log(0, 10**6))
        assert wait_until(lambda: meetings.parts.service.applied_log_position() >= withdrawal, 20)

        again = start_notifications()
        case_consumer = next(c for c in again.parts.consumers if c.settings.durable == CASE_CONSUMER)
        gate = threading.Event()
        handler = case_consumer.handler
        original = handler.apply

        def slow_before_the_withdrawal(delivery: Delivery) -> bool:
            if delivery.log_position == withdrawal:
                gate.wait(30)  # the case consumer is behind: the withdrawal is not applied yet
            return original(delivery)

        handler.apply = slow_before_the_withdrawal  # type: ignore[method-assign]
        # One event at a time: a batch waiting at the withdrawal would hold the events before
        # it uncommitted, and the invitation would wait for them.
        handler.apply_batch = None  # type: ignore[attr-defined]
        store = again.parts.store

        def mamma() -> list[Any]:
            return [r for r in sent(store, [case_id]) if r.address == "mamma@example.se"]

        with again:
            assert wait_until(lambda: bool(mamma()), 20)  # decided as of its position
            time.sleep(1.5)  # the sender's look comes and goes
            assert [r.status for r in mamma()] == ["pending"]
            gate.set()
            assert wait_until(lambda: [r.status for r in mamma()] == ["cancelled"], 20), mamma()
    assert not any("mamma@example.se" in to for _, to, _ in recorder.accepted)
