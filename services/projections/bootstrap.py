"""The projections service's composition root: the projector process and the query API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog
from fastapi import FastAPI
from faststream.nats import NatsBroker

from services.projections.application.deliveries import DELIVERIES_CONSUMER
from services.projections.application.meetings import MEETINGS_CONSUMER
from services.projections.application.queries import QueryPolicy
from services.projections.domain import case_view, journal
from services.projections.domain import meetings as meetings_model
from services.projections.entrypoints.http import QueryDependencies, create_app
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.live import LiveDeliveries, LiveMeetings, LiveProjection
from services.projections.infrastructure.readmodels import CONSUMER
from services.projections.infrastructure.serving import ServedGenerations
from services.projections.settings import ProjectionsSettings
from services.shared import geography
from services.shared.access_log import AccessLogPublisher, AccessLogStore
from services.shared.auth import TokenService
from services.shared.bus.consumer import Subscription
from services.shared.bus.faststream_subscriber import (
    FastStreamSubscriber,
    broker_of,
    run_subscribers,
    subscriber_of,
)
from services.shared.bus.names import BusNames
from services.shared.settings import AuthSettings
from vss_contracts.envelope import CloudEvent
from vss_contracts.meeting_events import MeetingEventData, decode_meeting_event
from vss_contracts.notification_events import (
    NOTIFICATION_EVENTS,
    NotificationEventData,
    decode_notification_event,
)

log = structlog.get_logger("vss.projections")

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def stockholm_today() -> date:
    return datetime.now(STOCKHOLM).date()


def notification_data(event: CloudEvent) -> NotificationEventData:
    """The contract's check of a delivery-record event (the consumer dead-letters what fails it)."""
    return decode_notification_event(event.type, event.data)


def meeting_data(event: CloudEvent) -> MeetingEventData:
    """The contract's check of a meeting event (the consumer dead-letters what fails it)."""
    return decode_meeting_event(event.type, event.data)


@dataclass
class ProjectorParts:
    settings: ProjectionsSettings
    broker: NatsBroker  # the projector's one FastStream broker
    projection: LiveProjection  # the case stream -> views and journal
    consumer: FastStreamSubscriber
    deliveries: LiveDeliveries  # the notifications stream -> the journal's delivery rows
    deliveries_consumer: FastStreamSubscriber
    meetings: LiveMeetings  # the meetings stream -> each case's meetings
    meetings_consumer: FastStreamSubscriber

    @property
    def consumers(self) -> list[FastStreamSubscriber]:
        return [self.consumer, self.deliveries_consumer, self.meetings_consumer]

    async def run(self, stop: asyncio.Event) -> None:
        # Each subscriber starts once its stream is there: the case's own events are served
        # before the notifications or meetings service has run.
        await run_subscribers(self.broker, self.consumers, stop)

    def close(self) -> None:
        self.projection.close()
        self.deliveries.close()
        self.meetings.close()


def subscriptions(
    settings: ProjectionsSettings,
    *,
    names: BusNames | None = None,
    notification_names: BusNames | None = None,
    meeting_names: BusNames | None = None,
) -> tuple[Subscription, Subscription, Subscription]:
    """What the projector consumes: the case stream (through the case overview's and the
    journal's tables), every event of the delivery record (each a journal row) and the
    meetings stream (through the meetings table's handlers)."""
    return (
        Subscription.dispatched(
            CONSUMER, names or settings.bus_names(), case_view.HANDLERS, journal.SUMMARIES
        ),
        Subscription.of_every(
            DELIVERIES_CONSUMER,
            notification_names or settings.notification_names(),
            NOTIFICATION_EVENTS,
            decode_data=notification_data,
        ),
        Subscription.dispatched(
            MEETINGS_CONSUMER,
            meeting_names or settings.meeting_names(),
            meetings_model.MEETING_HANDLERS,
            decode_data=meeting_data,
        ),
    )


def bootstrap_projector(
    settings: ProjectionsSettings | None = None,
    *,
    names: BusNames | None = None,
    notification_names: BusNames | None = None,
    meeting_names: BusNames | None = None,
) -> ProjectorParts:
    """The live projector: the case, notifications and meetings streams -> the serving generation.

    The notifications and meetings consumers wait for their streams: the projector starts
    (and serves the case's own events) when those services have not run yet.
    """
    settings = settings or ProjectionsSettings()
    projection = LiveProjection(ReadModelLocation(settings.read_models()))
    case_events, delivery_record, meeting_record = subscriptions(
        settings, names=names, notification_names=notification_names, meeting_names=meeting_names
    )
    broker = broker_of(settings, name="projector")
    consumer = subscriber_of(broker, settings, projection, case_events)
    deliveries = LiveDeliveries(ReadModelLocation(settings.read_models()))  # its own pointer connection
    deliveries_consumer = subscriber_of(broker, settings, deliveries, delivery_record)
    meetings = LiveMeetings(ReadModelLocation(settings.read_models()))  # its own pointer connection
    meetings_consumer = subscriber_of(broker, settings, meetings, meeting_record)
    return ProjectorParts(
        settings, broker, projection, consumer, deliveries, deliveries_consumer, meetings, meetings_consumer
    )


@dataclass
class QueryApiParts:
    settings: ProjectionsSettings
    app: FastAPI
    access_log: AccessLogStore
    publisher: AccessLogPublisher
    tokens: TokenService


def bootstrap_query_api(
    settings: ProjectionsSettings | None = None,
    *,
    auth: AuthSettings | None = None,
    today: Callable[[], date] = stockholm_today,
    publish: bool = True,
) -> QueryApiParts:
    settings = settings or ProjectionsSettings()
    tokens = TokenService.from_settings(auth or AuthSettings(), settings.data_dir)
    access_log = AccessLogStore(settings.access_log())
    publisher = AccessLogPublisher(
        access_log,
        settings.nats(),
        stream=settings.access_stream,
        prefix=settings.access_subject_prefix,
        retention_days=settings.access_log_retention_days,
        replicas=settings.nats_replicas,
    )
    app = create_app(
        QueryDependencies(
            served=ServedGenerations(ReadModelLocation(settings.read_models())),
            access_log=access_log,
            tokens=tokens,
            today=today,
            wait_limit=settings.query_wait_limit,
            policy=QueryPolicy(settings.caseload_limit, settings.due_within_days),
            association_of=geography.association_of,
            max_waits=settings.query_max_waits,
            case_api=settings.case_api(),
            page_key=settings.page_key(),
            plan_link_key=settings.plan_link_signing_key(),
        )
    )
    if publish:
        app.router.lifespan_context = _publishing(publisher)
    return QueryApiParts(settings, app, access_log, publisher, tokens)


def _publishing(
    publisher: AccessLogPublisher,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        try:
            yield
        finally:
            stop.set()
            publisher.wake.set()
            await asyncio.wait({task}, timeout=5)  # lets it publish what is pending
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=5)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("access_log.publisher_failed", error=str(task.exception()))

    return lifespan
