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

from services.projections.application.queries import QueryPolicy
from services.projections.entrypoints.http import QueryDependencies, create_app
from services.projections.infrastructure.access_log import AccessLogPublisher, AccessLogStore
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.live import LiveProjection
from services.projections.infrastructure.readmodels import CONSUMER
from services.projections.infrastructure.serving import ServedGenerations
from services.projections.settings import ProjectionsSettings
from services.shared import geography
from services.shared.auth import TokenService
from services.shared.bus.consumer import ConsumerSettings, DurableConsumer
from services.shared.bus.names import BusNames
from services.shared.settings import AuthSettings

log = structlog.get_logger("vss.projections")

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def stockholm_today() -> date:
    return datetime.now(STOCKHOLM).date()


@dataclass
class ProjectorParts:
    settings: ProjectionsSettings
    projection: LiveProjection
    consumer: DurableConsumer

    def close(self) -> None:
        self.projection.close()


def bootstrap_projector(
    settings: ProjectionsSettings | None = None, *, names: BusNames | None = None
) -> ProjectorParts:
    """The live projector: the case stream -> the serving generation of the read models."""
    settings = settings or ProjectionsSettings()
    projection = LiveProjection(ReadModelLocation(settings.read_models()))
    consumer = DurableConsumer(
        settings.nats(),
        projection,
        ConsumerSettings(
            durable=CONSUMER, names=names or settings.bus_names(), replicas=settings.nats_replicas
        ),
    )
    return ProjectorParts(settings, projection, consumer)


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
