"""The services `vss up` starts, `vss migrate` prepares and `vss status` reports, in start order.

One entry per process: what to run, where it answers, how to tell it is ready, which
store it owns (and how its tables are created) and which durable consumers it runs. A new
service is one entry here; the commands loop over :data:`SERVICES`.
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from services.case.infrastructure.store import MigrationReport, StoreConfig
from services.case.infrastructure.store import migrate as migrate_case
from services.case.settings import CaseSettings
from services.meetings.infrastructure.store import CONSUMER as MEETINGS
from services.meetings.infrastructure.store import migrate as migrate_meetings
from services.meetings.settings import MeetingsSettings
from services.notifications.application.service import CASE_CONSUMER as NOTIFICATIONS_CASE
from services.notifications.application.service import MEETINGS_CONSUMER as NOTIFICATIONS_MEETINGS
from services.notifications.infrastructure.store import migrate as migrate_notifications
from services.notifications.settings import NotificationsSettings
from services.projections.application.deliveries import DELIVERIES_CONSUMER as PROJECTIONS_DELIVERIES
from services.projections.application.meetings import MEETINGS_CONSUMER as PROJECTIONS_MEETINGS
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import CONSUMER as PROJECTIONS
from services.projections.settings import ProjectionsSettings
from services.shared.bus.authorization import InternalRole
from services.shared.bus.lag import read_lags
from services.shared.bus.lease import current_holder
from services.shared.bus.relay import lease_bucket
from services.shared.settings import BusSettings
from services.sharing.application.service import CONSUMER as SHARING
from services.sharing.infrastructure.store import migrate as migrate_sharing
from services.sharing.settings import SharingSettings
from vss_contracts.meeting_events import MEETING_STREAM
from vss_contracts.notification_events import NOTIFICATION_STREAM
from vss_contracts.subjects import CASE_STREAM


@dataclass(frozen=True)
class Store:
    """A service's own store: `vss migrate` and `vss up` create its tables (safe to repeat)."""

    url: Callable[[], str]
    migrate: Callable[[str], MigrationReport | None]  # the case store's also signs unsigned heads


@dataclass(frozen=True)
class RegisteredService:
    name: str  # in `vss up` and `vss status`, and its log file's name
    module: tuple[str, ...]  # python -m <module> [args]
    role: InternalRole  # its NATS user on the embedded server
    consumers: tuple[tuple[str, str], ...] = ()  # (stream, durable) of each of its durable consumers
    api: Callable[[], str] | None = None  # the base URL of its HTTP API (/health, /docs)
    port_variable: str | None = None  # what moves the API's port (named when it does not start)
    location: Callable[[], str] | None = None  # what a part without an API shows; None: the bus
    holds_lease: Callable[[], bool] | None = None  # ready (and healthy) once it holds its stream's lease
    readiness: Callable[[], Callable[[], bool]] | None = None  # `vss up` waits for this check too
    store: Store | None = None
    # Its work may wait behind requests (a consumer whose lag is watched, no API a person
    # waits on): `vss up` runs it at VSS_BACKGROUND_NICE (ADR 0029).
    background: bool = False

    def command(self) -> list[str]:
        return [sys.executable, "-m", *self.module]


def relay_holds_lease(bus: BusSettings) -> bool:
    """The relay is ready once it holds the stream's lease (it then publishes)."""
    names = bus.bus_names()
    holder = current_holder(bus.nats(), bucket=lease_bucket(names), key="leader", auth=bus.nats_auth())
    return asyncio.run(holder) is not None


def consumer_lags(bus: BusSettings, consumers: tuple[tuple[str, str], ...]) -> dict[str, int | None]:
    """Per durable: messages of its stream not yet applied (pending + unacknowledged); None
    where the server or the consumer cannot be asked (at most 3 s in all)."""
    lags = asyncio.run(read_lags(bus.nats(), consumers, auth=bus.nats_auth()))
    return {durable: lag for (_, durable), lag in lags.items()}


def sharing_holds_lease(sharing: SharingSettings) -> bool:
    """The sharing service is ready once its relay holds VSS_SHARE's lease (it then publishes)."""
    names = sharing.share_names()
    holder = current_holder(
        sharing.nats(), bucket=lease_bucket(names), key="leader", auth=sharing.nats_auth()
    )
    return asyncio.run(holder) is not None


def _case_api() -> str:
    settings = CaseSettings()
    return f"http://{settings.case_host}:{settings.case_port}"


def _query_api() -> str:
    settings = ProjectionsSettings()
    return f"http://{settings.query_host}:{settings.query_port}"


def _meetings_api() -> str:
    settings = MeetingsSettings()
    return f"http://{settings.meetings_host}:{settings.meetings_port}"


def _notifications_api() -> str:
    settings = NotificationsSettings()
    return f"http://{settings.notifications_host}:{settings.notifications_port}"


def _read_models() -> str:
    return ProjectionsSettings().read_models().split("@")[-1]


def _serving_generation() -> Callable[[], bool]:
    """The projector is ready once the read models have a serving generation."""
    location = ReadModelLocation(ProjectionsSettings().read_models())
    return lambda: location.current() is not None


def _migrate_case(url: str) -> MigrationReport:
    return migrate_case(StoreConfig(url), CaseSettings().commit_signer())


SERVICES: tuple[RegisteredService, ...] = (
    RegisteredService(
        "case",
        ("services.case.main",),
        InternalRole.CASE,
        api=_case_api,
        port_variable="VSS_CASE_PORT",
        store=Store(lambda: CaseSettings().store_url(), _migrate_case),
    ),
    RegisteredService(
        "relay",
        ("services.case.relay_main",),
        InternalRole.CASE,
        holds_lease=lambda: relay_holds_lease(BusSettings()),
    ),
    RegisteredService(
        "projector",
        ("services.projections.main", "projector"),
        InternalRole.PROJECTIONS,
        consumers=(
            (CASE_STREAM, PROJECTIONS),
            (NOTIFICATION_STREAM, PROJECTIONS_DELIVERIES),
            (MEETING_STREAM, PROJECTIONS_MEETINGS),
        ),
        location=_read_models,
        readiness=_serving_generation,
        background=True,
    ),
    RegisteredService(
        "query",
        ("services.projections.main", "api"),
        InternalRole.PROJECTIONS,
        api=_query_api,
        port_variable="VSS_QUERY_PORT",
    ),
    RegisteredService(
        "meetings",
        ("services.meetings.main",),
        InternalRole.MEETINGS,
        consumers=((CASE_STREAM, MEETINGS),),
        api=_meetings_api,
        port_variable="VSS_MEETINGS_PORT",
        store=Store(lambda: MeetingsSettings().store_url(), migrate_meetings),
        background=True,
    ),
    RegisteredService(
        "notifications",
        ("services.notifications.main",),
        InternalRole.NOTIFICATIONS,
        consumers=((CASE_STREAM, NOTIFICATIONS_CASE), (MEETING_STREAM, NOTIFICATIONS_MEETINGS)),
        api=_notifications_api,
        port_variable="VSS_NOTIFICATIONS_PORT",
        store=Store(lambda: NotificationsSettings().store_url(), migrate_notifications),
    ),
    RegisteredService(
        "sharing",
        ("services.sharing.main",),
        InternalRole.SHARING,
        consumers=((CASE_STREAM, SHARING),),
        holds_lease=lambda: sharing_holds_lease(SharingSettings()),
        store=Store(lambda: SharingSettings().store_url(), migrate_sharing),
        background=True,
    ),
)


def service(name: str) -> RegisteredService:
    return next(entry for entry in SERVICES if entry.name == name)


@dataclass(frozen=True)
class MailSinkPart:
    """The local mail sink as a part of its own (ADR 0033), started before the notifications
    service when no relay is given (``VSS_SMTP_HOST`` unset): an SMTP server on this machine
    writing each message into the mail directory, in its own process."""

    port: int
    mail_dir: str
    name: str = "mail-sink"
    host: str = "127.0.0.1"
    module: tuple[str, ...] = ("services.notifications.mailsink_main",)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", *self.module]

    def notifications_env(self) -> dict[str, str]:
        """What the notifications service is given: the sink as its relay, so that it starts
        none of its own (it still does when started alone without ``VSS_SMTP_HOST``)."""
        return {"VSS_SMTP_HOST": self.host, "VSS_SMTP_PORT": str(self.port)}

    def answers(self) -> bool:
        return smtp_answers(self.host, self.port)


def mail_sink(settings: NotificationsSettings) -> MailSinkPart | None:
    """The sink `vss up` starts; None when e-mail goes to the relay ``VSS_SMTP_HOST`` names."""
    if settings.smtp_host:
        return None
    return MailSinkPart(settings.smtp_port, str(settings.mail_dir().resolve()))


def smtp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """An SMTP server greets on ``host:port`` (220) and takes a QUIT."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as server:
            return bool(server.noop()[0] == 250)
    except (OSError, smtplib.SMTPException):
        return False
