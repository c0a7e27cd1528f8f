"""Process entry point of the notifications service: ``python -m services.notifications.main``.

One process: the durable consumers of the case and meetings streams, the sender (and the
embedded mail sink), the relay of the delivery record and the HTTP API. SIGINT/SIGTERM stop them.
"""

from __future__ import annotations

from services.notifications.bootstrap import bootstrap_notifications
from services.notifications.infrastructure.store import StoreNotMigrated
from services.notifications.settings import LinkKeyInvalid, OrganisationsFileInvalid
from services.shared.auth import TokenKeyInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.metrics import ProcessMetrics, server_lags
from services.shared.serve import Service, run_service


def build() -> Service:
    parts = bootstrap_notifications()
    parts.store.check_migrated()
    api = (parts.settings.notifications_host, parts.settings.notifications_port)
    metrics = ProcessMetrics("notifications", server_lags(parts.settings)).watch(
        consumers=parts.consumers, relays=[parts.relay]
    )
    return Service(
        parts.settings, parts.close, run=parts.run, app=parts.app, host=api[0], port=api[1], metrics=metrics
    )


def main() -> int:
    return run_service(
        "notifications",
        build,
        errors=(StoreNotMigrated, StoreUrlInvalid, OrganisationsFileInvalid, TokenKeyInvalid, LinkKeyInvalid),
    )


if __name__ == "__main__":
    raise SystemExit(main())
