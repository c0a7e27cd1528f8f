"""The notifications service over in-memory ports, fed case and meeting events."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

from services.notifications.application.channels import Channel, ChannelSender
from services.notifications.application.ports import DeliveryRow
from services.notifications.application.service import (
    CASE_CONSUMER,
    MEETINGS_CONSUMER,
    NotificationsService,
    Organisation,
    Policy,
    Signer,
)
from tests.meetings.feed import CaseFeed
from tests.support.clock import FixedClock
from vss_contracts.case_events import CaseEventData
from vss_contracts.meeting_events import MeetingEventData

from .fakes import InMemoryNotificationStore, PlainRenderer, RecordingChannel

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Stockholm, when CaseFeed records
DAY = date(2026, 3, 2)


class Notifications:
    """The service, its fake store and channels, a clock, and a feed of one case's events."""

    def __init__(
        self, organisations: dict[str, Organisation] | None = None, *, max_attempts: int = 8
    ) -> None:
        self.clock = FixedClock(START)
        self.store = InMemoryNotificationStore()
        self.renderer = PlainRenderer()
        self.email = RecordingChannel(Channel.EMAIL)
        self.sms = RecordingChannel(Channel.SMS)
        self.webhook = RecordingChannel(Channel.WEBHOOK)
        channels: dict[Channel, ChannelSender] = {
            Channel.EMAIL: self.email,
            Channel.SMS: self.sms,
            Channel.WEBHOOK: self.webhook,
        }
        self.policy = Policy(
            first_retry=timedelta(seconds=10), max_attempts=max_attempts, organisations=organisations or {}
        )
        self.service = NotificationsService(
            self.store, self.renderer, channels, self.clock, Signer(b"test-key"), self.policy
        )
        self.feed = CaseFeed(self)  # type: ignore[arg-type]
        self.meeting_sequence = 0

    @property
    def case_id(self) -> UUID:
        return self.feed.case_id

    def apply_case_event(
        self,
        *,
        case_id: UUID,
        event_id: str,
        recorded_at: datetime,
        data: CaseEventData,
        stream_sequence: int,
        log_position: int | None = None,
    ) -> bool:
        """What CaseFeed calls: the case consumer's handler."""
        return self.service.apply(
            CASE_CONSUMER,
            case_id=case_id,
            event_id=event_id,
            event_type=data.TYPE,
            recorded_at=recorded_at,
            data=data,
            stream_sequence=stream_sequence,
            case_position=log_position,
        )

    def meeting(self, data: MeetingEventData, *, case_position: int | None = None) -> str:
        """Feed the next meeting event of the case; its event id."""
        self.meeting_sequence += 1
        event_id = str(uuid4())
        assert self.service.apply(
            MEETINGS_CONSUMER,
            case_id=self.case_id,
            event_id=event_id,
            event_type=data.TYPE,
            recorded_at=self.clock.now(),
            data=data,
            stream_sequence=self.meeting_sequence,
            case_position=case_position,
        )
        return event_id

    def deliver(self) -> int:
        return asyncio.run(self.service.deliver_due())

    def rows(self, template: str | None = None) -> list[DeliveryRow]:
        return [
            r for r in self.service.deliveries(self.case_id) if template is None or r.template == template
        ]

    def told(self, template: str) -> set[str]:
        """Who a template's deliveries go to (names)."""
        return {r.person["name"] for r in self.rows(template)}
