"""Process entry point of the meetings service: ``python -m services.meetings.main``.

One process: the durable consumer of the case stream, the relay of the schedule's events
to ``VSS_MEETINGS``, the timer loop and the HTTP API. SIGINT/SIGTERM stop all of them.
"""

from __future__ import annotations

from services.meetings.bootstrap import bootstrap_meetings
from services.meetings.infrastructure.store import StoreNotMigrated
from services.shared.auth import TokenKeyInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.serve import Service, bus_service, run_service


def build() -> Service:
    parts = bootstrap_meetings()
    parts.store.check_migrated()
    return bus_service(
        "meetings",
        parts,
        consumers=[parts.consumer],
        relays=[parts.relay],
        app=parts.app,
        host=parts.settings.meetings_host,
        port=parts.settings.meetings_port,
    )


def main() -> int:
    return run_service("meetings", build, errors=(StoreNotMigrated, StoreUrlInvalid, TokenKeyInvalid))


if __name__ == "__main__":
    raise SystemExit(main())
