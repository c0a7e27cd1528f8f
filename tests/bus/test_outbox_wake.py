"""The meetings, notifications and sharing relays wake on their SQLite store's commits, as the
case relay does (ADR 0004, decision 9): each service's relay as its bootstrap builds it, with a
fallback poll far longer than the waits here, publishes a message its store just committed."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from services.meetings.application.ports import ScheduleWrite
from services.meetings.bootstrap import bootstrap_meetings
from services.meetings.infrastructure.store import MeetingStore
from services.meetings.infrastructure.store import migrate as migrate_meetings
from services.meetings.settings import MeetingsSettings
from services.notifications.bootstrap import bootstrap_notifications
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.store import migrate as migrate_notifications
from services.notifications.settings import NotificationsSettings
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay
from services.shared.bus.wake import WakeWaiter
from services.sharing.application.service import ShareMessage
from services.sharing.bootstrap import bootstrap_sharing
from services.sharing.infrastructure.store import SharingStore
from services.sharing.infrastructure.store import migrate as migrate_sharing
from services.sharing.settings import SharingSettings
from tests.bus.conftest import RelayThread
from tests.support.bus import read_stream, wait_until
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.meeting_events import MEETING_EVENT_TYPES
from vss_contracts.notification_events import NOTIFICATION_EVENT_TYPES


class Parts(Protocol):
    relay: Relay

    def close(self) -> None: ...


FALLBACK = 5.0  # the longest fallback poll the settings allow: a quick arrival is the wake's
AT = "2026-06-30T09:00:00+00:00"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A data directory short enough for a socket address (pytest's tmp_path may not be)."""
    directory = Path(tempfile.mkdtemp(prefix="vss-owake-", dir="/tmp")).resolve()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def common(directory: Path, nats_url: str) -> dict[str, Any]:
    return {"data_dir": directory, "nats_url": nats_url, "relay_wake_poll_interval": FALLBACK}


# ------------------------------------------------------------------------------ a commit each
def meetings_relay(directory: Path, nats_url: str, names: BusNames) -> tuple[Parts, Callable[[], None]]:
    settings = MeetingsSettings(**common(directory, nats_url))
    migrate_meetings(settings.store_url())
    parts = bootstrap_meetings(settings, with_api=False, meeting_names=names)
    store: MeetingStore = parts.store

    def commit() -> None:
        case_id = str(uuid.uuid4())
        state: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "recorded_at": AT,
            "actor_id": "meetings",
            "actor_organisation": "vss",
            "principal": "other",
            "correlation_id": None,
            "causation_id": None,
            "prev_hash": GENESIS_HASH,
            "data": {},
            "hash": "0" * 64,
        }
        side = ScheduleWrite(case_id, 1, 0, b"{}", None, None)
        store.write([(1, next(iter(MEETING_EVENT_TYPES)), state)], side)

    return parts, commit


def notifications_relay(directory: Path, nats_url: str, names: BusNames) -> tuple[Parts, Callable[[], None]]:
    settings = NotificationsSettings(**common(directory, nats_url))
    migrate_notifications(settings.store_url())
    parts = bootstrap_notifications(settings, with_api=False, notification_names=names)
    store: NotificationStore = parts.store

    def commit() -> None:
        with store.transaction() as tx:
            tx.log(str(uuid.uuid4()), str(uuid.uuid4()), next(iter(NOTIFICATION_EVENT_TYPES)), {}, AT)

    return parts, commit


def sharing_relay(directory: Path, nats_url: str, names: BusNames) -> tuple[Parts, Callable[[], None]]:
    settings = SharingSettings(**common(directory, nats_url))
    migrate_sharing(settings.store_url())
    parts = bootstrap_sharing(settings, share_names=names)
    store: SharingStore = parts.store

    def commit() -> None:
        event_id = str(uuid.uuid4())
        message = ShareMessage(
            "goteborg-socialtjanst",
            str(uuid.uuid4()),
            f"goteborg-socialtjanst:{event_id}",
            "SharingEnded",
            "se.vss.share.SharingEnded.v1",
            None,
            body=b'{"id": "%s"}' % event_id.encode(),
        )
        with store.transaction() as tx:
            tx.enqueue([message])

    return parts, commit


@pytest.mark.parametrize("build", [meetings_relay, notifications_relay, sharing_relay])
def test_the_service_relay_publishes_a_commit_on_its_wake_not_its_poll(
    build: Callable[[Path, str, BusNames], tuple[Parts, Callable[[], None]]],
    short_dir: Path,
    nats_url: str,
    bus_names: BusNames,
) -> None:
    parts, commit = build(short_dir, nats_url, bus_names)
    relay = parts.relay
    waiter = relay.waiter
    assert isinstance(waiter, WakeWaiter)
    assert waiter.bound_wait == FALLBACK

    def stream_length() -> int:
        return len(asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects)))

    commit()  # before the relay starts: found by its first read
    thread = RelayThread(relay).start()
    try:
        assert wait_until(lambda: stream_length() == 1, 10)
        assert wait_until(lambda: waiter.bound, 5)
        for expected in (2, 3):
            time.sleep(0.3)  # the relay is in its idle wait, FALLBACK seconds long
            started = time.monotonic()
            commit()

            def arrived(n: int = expected) -> bool:
                return stream_length() == n

            assert wait_until(arrived, FALLBACK, 0.01)
            took = time.monotonic() - started
            assert took < FALLBACK / 2, f"published {took:.2f} s after the commit (fallback {FALLBACK} s)"
    finally:
        thread.stop()
        parts.close()
    assert waiter.wakes >= 2
