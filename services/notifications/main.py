"""Process entry point of the notifications service: ``python -m services.notifications.main``.

One process: the durable consumers of the case and meetings streams, the sender (and, without
``VSS_SMTP_HOST``, the embedded mail sink; `vss up` runs the sink as a part of its own and sets
it), the relay of the delivery record and the HTTP API. SIGINT/SIGTERM stop them.
"""

from __future__ import annotations

from services.notifications.bootstrap import bootstrap_notifications
from services.notifications.infrastructure.store import StoreNotMigrated
from services.notifications.settings import LinkKeyInvalid, OrganisationsFileInvalid
from services.shared.auth import TokenKeyInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.serve import Service, bus_service, run_service


def build() -> Service:
    parts = bootstrap_notifications()
    parts.store.check_migrated()
    return bus_service(
        "notifications",
        parts,
        consumers=parts.consumers,
        relays=[parts.relay],
        app=parts.app,
        host=parts.settings.notifications_host,
        port=parts.settings.notifications_port,
    )


def main() -> int:
    return run_service(
        "notifications",
        build,
        errors=(StoreNotMigrated, StoreUrlInvalid, OrganisationsFileInvalid, TokenKeyInvalid, LinkKeyInvalid),
    )


if __name__ == "__main__":
    raise SystemExit(main())
