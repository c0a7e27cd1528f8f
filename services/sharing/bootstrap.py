"""The sharing service's composition root: store, subscriber of VSS_CASE, relay to VSS_SHARE."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from faststream.nats import NatsBroker

from services.shared.bus.consumer import Subscription
from services.shared.bus.faststream_subscriber import (
    FastStreamSubscriber,
    broker_of,
    run_subscribers,
    subscriber_of,
)
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from services.shared.bus.wake import outbox_relay
from services.shared.serve import run_tasks
from services.sharing.application.service import CONSUMER, SharingService
from services.sharing.infrastructure.bus import (
    CaseEventHandler,
    ShareLog,
    check_stream_not_ahead,
    declare_share_stream,
)
from services.sharing.infrastructure.store import SharingStore
from services.sharing.settings import SharingSettings
from vss_contracts.case_events import CASE_EVENTS


@dataclass
class SharingParts:
    settings: SharingSettings
    store: SharingStore
    service: SharingService
    broker: NatsBroker  # the service's one FastStream broker
    consumer: FastStreamSubscriber
    relay: Relay
    share_names: BusNames

    async def run(self, stop: asyncio.Event) -> None:
        """Consume the case stream and publish each organisation's share until ``stop``."""
        self.store.check_migrated()
        await declare_share_stream(
            self.settings.nats(), self.share_names, replicas=self.settings.nats_replicas
        )
        await check_stream_not_ahead(self.settings.nats(), self.share_names, self.store)
        await run_tasks(
            stop,
            {
                "sharing-consumer": lambda until: run_subscribers(self.broker, [self.consumer], until),
                "sharing-relay": self.relay.run,
            },
        )

    def close(self) -> None:
        self.store.close()


def subscriptions(settings: SharingSettings, *, case_names: BusNames | None = None) -> tuple[Subscription]:
    """What the sharing service consumes: every case event, each put on the shares of the
    organisations that may see its case (its access table says who may, not what is read)."""
    return (Subscription.of_every(CONSUMER, case_names or settings.bus_names(), CASE_EVENTS),)


def bootstrap_sharing(
    settings: SharingSettings | None = None,
    *,
    case_names: BusNames | None = None,
    share_names: BusNames | None = None,
    relay_settings: RelaySettings | None = None,
) -> SharingParts:
    settings = settings or SharingSettings()
    store = SharingStore(settings.store_url())
    service = SharingService(store)
    share_names = share_names or settings.share_names()
    (case_events,) = subscriptions(settings, case_names=case_names)
    broker = broker_of(settings, name="sharing")
    # SQLite: the consumer's transactions in the loop (the consumer is the store's one writer).
    handler = CaseEventHandler(service, applies_in_loop=not store.url.is_postgres)
    consumer = subscriber_of(broker, settings, handler, case_events)
    relay = outbox_relay(
        ShareLog(store, share_names),
        settings,
        store.url,
        share_names,
        name="sharing-relay",
        relay_settings=relay_settings or replace(settings.relay_settings(), names=share_names),
    )
    return SharingParts(settings, store, service, broker, consumer, relay, share_names)
