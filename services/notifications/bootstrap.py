"""The notifications service's composition root: store, channels, consumers, sender, relay, API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from faststream.nats import NatsBroker

from services.notifications.application.channels import Channel, ChannelSender
from services.notifications.application.ports import Clock
from services.notifications.application.service import (
    CASE_CONSUMER,
    MEETINGS_CONSUMER,
    NotificationsService,
    Signer,
)
from services.notifications.domain.decisions import CASE_HANDLERS, MEETING_HANDLERS
from services.notifications.infrastructure.bus import (
    CaseEventHandler,
    CaseStreamFirst,
    MeetingEventHandler,
    NotificationEventLog,
    adopt_record,
)
from services.notifications.infrastructure.channels import SmsFileChannel, SmtpChannel, WebhookChannel
from services.notifications.infrastructure.mailsink import MailSink
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.templates import Templates
from services.notifications.settings import NotificationsSettings
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
from services.shared.serve import Loop, repeat, run_tasks
from services.shared.settings import AuthSettings
from vss_contracts.envelope import CloudEvent
from vss_contracts.meeting_events import decode_meeting_event

log = structlog.get_logger("vss.notifications")


def _meeting_data(event: CloudEvent) -> object:
    return decode_meeting_event(event.type, event.data)


@dataclass
class NotificationsParts:
    settings: NotificationsSettings
    store: NotificationStore
    service: NotificationsService
    broker: NatsBroker  # the service's one FastStream broker
    consumers: list[FastStreamSubscriber]
    relay: Relay
    channels: dict[Channel, ChannelSender]
    case_first: CaseStreamFirst
    sink: MailSink | None = None
    tokens: TokenService | None = None
    app: FastAPI | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume both streams, deliver, escalate and publish the record until ``stop``."""
        self.store.check_migrated()
        # A store rebuilt from history takes over the delivery record first: nothing it says
        # was sent goes again (an empty store on a fresh system adopts nothing).
        sources = {c.settings.durable: c.settings.names for c in self.consumers}
        await adopt_record(self.store, self.settings.nats(), self.relay.settings.names, sources)
        # Before any consumer decides or the sender sends: claims a killed process left.
        await asyncio.to_thread(self.service.recover_claims)
        await self.case_first.open(stopping=stop.is_set)
        if self.sink is not None:
            await self.sink.start()
            log.info("notifications.mail_sink", port=self.sink.port, directory=str(self.sink.directory))
        loop = asyncio.get_running_loop()

        def wake_sender() -> None:
            loop.call_soon_threadsafe(self.wake.set)

        self.service.on_decided = wake_sender
        try:
            await run_tasks(
                stop,
                {
                    "consumers": lambda until: run_subscribers(self.broker, self.consumers, until),
                    "notifications-relay": self.relay.run,
                    "sender": self.sender,
                },
            )
        finally:
            for channel in self.channels.values():
                close = getattr(channel, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()
            await self.case_first.close()
            if self.sink is not None:
                await self.sink.stop()

    async def sender(self, stop: asyncio.Event) -> None:
        """Deliver what is due and escalate unacknowledged warnings: at once when the consumers
        record new deliveries, else every ``sender_interval`` s (retries and escalations).
        Each channel is sent on its own loop, so that none waits for another's sends (an
        urgent e-mail not for SMS files being written, ADR 0025)."""

        case_consumer = next(c for c in self.consumers if c.settings.durable == CASE_CONSUMER)
        # Nothing leaves, and no alert is escalated, until the case stream has been read to
        # its end once since start: after a stop (or rebuilding from history) a consent
        # withdrawal, a member leaving or a warning's resolution may be among the case events
        # not yet applied, and the look before sending asks the state they make.

        async def escalate() -> None:
            if case_consumer.reached_end:
                await asyncio.to_thread(self.service.escalate_due)

        def deliver(channel: Channel) -> Callable[[], Awaitable[None]]:
            async def send() -> None:
                if case_consumer.reached_end:
                    await self.service.deliver_due(channel=channel)

            return send

        wakes = {channel: asyncio.Event() for channel in self.channels}

        seen = dict(self.service.decided_on)

        async def fan_out(until: asyncio.Event) -> None:
            """Pass each wake-up on to the loops of the channels something was decided for."""
            while not until.is_set():
                waits = [asyncio.ensure_future(until.wait()), asyncio.ensure_future(self.wake.wait())]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
                if self.wake.is_set():
                    self.wake.clear()
                    for channel, event in wakes.items():
                        decided = self.service.decided_on.get(channel.value, 0)
                        if decided != seen.get(channel.value):
                            seen[channel.value] = decided
                            event.set()

        def every(step: Callable[[], Awaitable[None]], wake: asyncio.Event | None) -> Loop:
            async def run(until: asyncio.Event) -> None:
                await repeat(
                    step,
                    until,
                    self.settings.sender_interval,
                    log=log,
                    failed="notifications.sender_failed",
                    wake=wake,
                )

            return run

        loops: dict[str, Loop] = {"sender-wake": fan_out, "escalation": every(escalate, None)}
        for channel, wake in wakes.items():
            loops[f"sender-{channel.value}"] = every(deliver(channel), wake)
        await run_tasks(stop, loops)

    def close(self) -> None:
        self.store.close()


def subscriptions(
    settings: NotificationsSettings,
    *,
    case_names: BusNames | None = None,
    meeting_names: BusNames | None = None,
) -> tuple[Subscription, Subscription]:
    """What the notifications service consumes: the case stream and the meetings stream, each
    through its table of decisions."""
    return (
        Subscription.dispatched(CASE_CONSUMER, case_names or settings.bus_names(), CASE_HANDLERS),
        Subscription.dispatched(
            MEETINGS_CONSUMER,
            meeting_names or settings.meeting_names(),
            MEETING_HANDLERS,
            decode_data=_meeting_data,
        ),
    )


def bootstrap_notifications(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    auth: AuthSettings | None = None,
    with_api: bool = True,
    case_names: BusNames | None = None,
    meeting_names: BusNames | None = None,
    notification_names: BusNames | None = None,
) -> NotificationsParts:
    settings = settings or NotificationsSettings()
    clock = clock or SystemClock()
    store = NotificationStore(settings.store_url())
    sink = None
    smtp_host = settings.smtp_host
    if not smtp_host:  # the embedded default: a local sink keeping each message as a file
        sink = MailSink(
            settings.mail_dir(), "127.0.0.1", settings.smtp_port, log_sessions=settings.mail_sink_log_sessions
        )
        smtp_host = "127.0.0.1"
    channels: dict[Channel, ChannelSender] = {
        Channel.EMAIL: SmtpChannel(
            smtp_host,
            settings.smtp_port,
            sender=(settings.mail_from_name, str(settings.mail_from_address)),
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            clock=clock,
            connections=settings.smtp_connections,
        ),
        Channel.WEBHOOK: WebhookChannel(clock=clock),
        Channel.SMS: SmsFileChannel(settings.sms_dir(), clock=clock),
    }
    templates = Templates(settings.notify_language, settings.notify_templates_dir)
    signer = Signer(settings.link_key(), settings.previous_link_key(), settings.link_key_overlap(), clock.now)
    service = NotificationsService(store, templates, channels, clock, signer, settings.policy())
    case_names = case_names or settings.bus_names()
    meeting_names = meeting_names or settings.meeting_names()
    case_first = CaseStreamFirst(store, CASE_CONSUMER, settings.nats(), case_names.stream)
    case_events, meeting_events = subscriptions(settings, case_names=case_names, meeting_names=meeting_names)
    broker = broker_of(settings, name="notifications")
    consumers = [
        subscriber_of(broker, settings, CaseEventHandler(service, store, CASE_CONSUMER), case_events),
        subscriber_of(
            broker,
            settings,
            MeetingEventHandler(service, store, MEETINGS_CONSUMER, case_first=case_first),
            meeting_events,
        ),
    ]
    names = notification_names or settings.notification_names()
    outbox = NotificationEventLog(store, names)
    relay = outbox_relay(outbox, settings, store.url, names, name="notifications-relay")
    parts = NotificationsParts(settings, store, service, broker, consumers, relay, channels, case_first, sink)
    if with_api:
        from services.notifications.entrypoints.http import (  # noqa: PLC0415 - the API is optional here
            NotificationsApiDependencies,
            create_app,
        )

        parts.tokens = TokenService.from_settings(auth or AuthSettings(), settings.data_dir)
        parts.app = create_app(
            NotificationsApiDependencies(
                service=service, tokens=parts.tokens, access_log=AccessLogStore(settings.access_log())
            )
        )
    return parts
