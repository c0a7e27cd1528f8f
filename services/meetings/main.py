"""Process entry point of the meetings service: ``python -m services.meetings.main``.

One process: the durable consumer of the case stream, the relay of the schedule's events
to ``VSS_MEETINGS``, the timer loop and the HTTP API. SIGINT/SIGTERM stop all of them.
"""

from __future__ import annotations

from services.meetings.bootstrap import bootstrap_meetings
from services.meetings.infrastructure.store import StoreNotMigrated
from services.shared.auth import TokenKeyInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.metrics import ProcessMetrics, server_lags
from services.shared.serve import Service, run_service


def build() -> Service:
    parts = bootstrap_meetings()
    parts.store.check_migrated()
    api = (parts.settings.meetings_host, parts.settings.meetings_port)
    metrics = ProcessMetrics("meetings", server_lags(parts.settings)).watch(
        consumers=[parts.consumer], relays=[parts.relay]
    )
    return Service(
        parts.settings, parts.close, run=parts.run, app=parts.app, host=api[0], port=api[1], metrics=metrics
    )


def main() -> int:
    return run_service("meetings", build, errors=(StoreNotMigrated, StoreUrlInvalid, TokenKeyInvalid))


if __name__ == "__main__":
    raise SystemExit(main())
