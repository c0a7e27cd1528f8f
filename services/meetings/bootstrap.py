"""The meetings service's composition root: store, schedule rules, consumer, relay, timers, API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from faststream.nats import NatsBroker

from services.meetings.application.ports import Clock
from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import CASE_HANDLERS
from services.meetings.infrastructure.bus import CaseEventHandler, MeetingEventLog, adopt_stream
from services.meetings.infrastructure.store import CONSUMER, MeetingStore
from services.meetings.settings import MeetingsSettings
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from services.shared.bus.consumer import Subscription
from services.shared.bus.faststream_subscriber import (
    FastStreamSubscriber,
    broker_of,
    run_subscribers,
    subscriber_of,
)
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay
from services.shared.bus.wake import outbox_relay
from services.shared.clock import SystemClock
from services.shared.inputs import DateWindow
from services.shared.serve import repeat, run_tasks
from services.shared.settings import AuthSettings, DateWindowSettings

log = structlog.get_logger("vss.meetings")


@dataclass
class MeetingsParts:
    settings: MeetingsSettings
    store: MeetingStore
    service: MeetingsService
    broker: NatsBroker  # the service's one FastStream broker
    consumer: FastStreamSubscriber
    relay: Relay
    meeting_names: BusNames
    tokens: TokenService | None = None
    app: FastAPI | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume the case stream, publish the schedule's events and fire timers until ``stop``."""
        self.store.check_migrated()
        await adopt_stream(self.store, self.settings.nats(), self.meeting_names)
        await run_tasks(
            stop,
            {
                "meetings-consumer": lambda until: run_subscribers(self.broker, [self.consumer], until),
                "meetings-relay": self.relay.run,
                "timers": lambda until: run_timers(
                    self.service, until, self.settings.timer_interval, self.caught_up
                ),
            },
        )

    async def caught_up(self) -> bool:
        """Whether the consumer has applied the whole case stream (then timers may fire)."""
        try:
            return (await self.consumer.lag()).total == 0
        except Exception:  # not connected yet, or the server is away: not known to be caught up
            return False

    def close(self) -> None:
        self.store.close()


async def run_timers(
    service: MeetingsService,
    stop: asyncio.Event,
    interval: float,
    caught_up: Callable[[], Awaitable[bool]],
) -> None:
    """Fire due timers now and then; a timer due while the service was down fires at the first look.

    Only once the case stream is applied: a case event recorded before a timer's due time
    (a meeting moved, a case closed) must be applied first, as a replay would.
    """

    async def fire() -> None:
        fired = await asyncio.to_thread(service.fire_due) if await caught_up() else 0
        if fired:
            log.info("meetings.timers_fired", events=fired)

    await repeat(fire, stop, interval, log=log, failed="meetings.timers_failed")


def subscriptions(settings: MeetingsSettings, *, case_names: BusNames | None = None) -> tuple[Subscription]:
    """What the meetings service consumes: the case stream, through the schedule's table."""
    return (Subscription.dispatched(CONSUMER, case_names or settings.bus_names(), CASE_HANDLERS),)


def bootstrap_meetings(
    settings: MeetingsSettings | None = None,
    *,
    clock: Clock | None = None,
    auth: AuthSettings | None = None,
    with_api: bool = True,
    case_names: BusNames | None = None,
    meeting_names: BusNames | None = None,
) -> MeetingsParts:
    settings = settings or MeetingsSettings()
    store = MeetingStore(settings.store_url())
    service = MeetingsService(
        store,
        settings.rules(),
        WorkingDays(),
        clock or SystemClock(),
        kept_schedules=settings.meetings_kept_schedules,
    )
    meeting_names = meeting_names or settings.meeting_names()
    (case_events,) = subscriptions(settings, case_names=case_names)
    broker = broker_of(settings, name="meetings")
    # In a worker thread: the loop also serves the meetings API, and the store has other
    # writers (the API's requests, the timers, `vss` commands) a transaction may wait for.
    consumer = subscriber_of(broker, settings, CaseEventHandler(service), case_events)
    outbox = MeetingEventLog(store, meeting_names)
    relay = outbox_relay(outbox, settings, store.url, meeting_names, name="meetings-relay")
    parts = MeetingsParts(settings, store, service, broker, consumer, relay, meeting_names)
    if with_api:
        from services.meetings.entrypoints.http import (  # noqa: PLC0415 - the API is optional here
            FeedLinks,
            MeetingsApiDependencies,
            create_app,
        )

        parts.tokens = TokenService.from_settings(auth or AuthSettings(), settings.data_dir)
        dates = DateWindowSettings()
        parts.app = create_app(
            MeetingsApiDependencies(
                service=service,
                tokens=parts.tokens,
                organiser=(settings.organiser_name, str(settings.organiser_email)),
                feed_links=FeedLinks(settings.feed_key(), settings.public_meetings_url),
                answer_key=settings.answer_key(),
                access_log=AccessLogStore(settings.access_log()),
                window=DateWindow(dates.past_days, dates.future_days),
                wait_limit=settings.meetings_wait_limit,
                max_waits=settings.meetings_max_waits,
                caught_up=lambda: consumer.caught_up,
            )
        )
    return parts
