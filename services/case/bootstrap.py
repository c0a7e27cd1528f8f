"""The case service's composition root: the one place that builds real adapters."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from services.case.application.ports import Clock
from services.case.application.service import CaseService
from services.case.domain.commands import CasePolicy
from services.case.entrypoints.http import create_app
from services.case.infrastructure.log_waiter import waiter_for
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.case.settings import CaseRelaySettings, CaseSettings
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from services.shared.clock import SystemClock
from services.shared.inputs import DateWindow
from services.shared.settings import AuthSettings, DateWindowSettings


@dataclass
class CaseServiceParts:
    settings: CaseSettings
    store: CaseEventStore
    service: CaseService
    tokens: TokenService
    app: FastAPI

    def close(self) -> None:
        self.store.close()


def bootstrap(
    settings: CaseSettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock | None = None,
) -> CaseServiceParts:
    settings = settings or CaseSettings()
    tokens = TokenService.from_settings(auth or AuthSettings(), settings.data_dir)  # a bad key: stop first
    signer = settings.commit_signer()  # no key: stop first, as with a bad token key
    store = CaseEventStore(StoreConfig(settings.store_url()), signer=signer)
    store.check_migrated()
    keyring = settings.keyring()
    service = CaseService(store, clock or SystemClock(), CasePolicy(settings.follow_up_max_months))
    access_log = AccessLogStore(settings.access_log())
    dates = DateWindowSettings()
    window = DateWindow(dates.past_days, dates.future_days)
    app = create_app(service, tokens, access_log, window, public_keys=lambda: keyring.public_keys().to_jwks())
    return CaseServiceParts(settings, store, service, tokens, app)


@dataclass
class CaseRelayParts:
    settings: CaseRelaySettings
    store: CaseEventStore
    relay: Relay

    def close(self) -> None:
        self.store.close()


def bootstrap_relay(
    settings: CaseRelaySettings | None = None, *, names: BusNames | None = None
) -> CaseRelayParts:
    """The relay process: the case store's log -> the case stream."""
    settings = settings or CaseRelaySettings()
    config = StoreConfig(settings.store_url())
    store = CaseEventStore(config)
    store.check_migrated()
    names = names or settings.bus_names()
    relay = Relay(
        CaseEventLog(store, names),
        settings.nats(),
        settings=RelaySettings(
            names=names,
            replicas=settings.nats_replicas,
            ack_timeout=settings.relay_ack_timeout,
            idle_wait=settings.relay_poll_interval if not config.is_postgres else 1.0,
            lease_ttl=settings.relay_lease_ttl,
            max_in_flight=settings.relay_max_in_flight,
        ),
        waiter=waiter_for(
            config, wake=settings.relay_wake, wake_poll_interval=settings.relay_wake_poll_interval
        ),
        name="case-relay",
    )
    return CaseRelayParts(settings, store, relay)
