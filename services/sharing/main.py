"""Process entry point of the sharing service: ``python -m services.sharing.main``.

One process: the durable consumer of the case stream and the relay of each organisation's
share to ``VSS_SHARE``. SIGINT/SIGTERM stop both.
"""

from __future__ import annotations

from services.shared.eventstore import StoreUrlInvalid
from services.shared.serve import Service, bus_service, run_service
from services.sharing.bootstrap import bootstrap_sharing
from services.sharing.infrastructure.bus import ShareStreamAhead
from services.sharing.infrastructure.store import StoreNotMigrated


def build() -> Service:
    parts = bootstrap_sharing()
    parts.store.check_migrated()
    return bus_service(
        "sharing",
        parts,
        consumers=[parts.consumer],
        relays=[parts.relay],
        metrics_port=parts.settings.sharing_metrics_port,
    )


def main() -> int:
    # ShareStreamAhead is found once connected, while running: it stops the process the same way.
    return run_service("sharing", build, errors=(StoreNotMigrated, StoreUrlInvalid, ShareStreamAhead))


if __name__ == "__main__":
    raise SystemExit(main())
