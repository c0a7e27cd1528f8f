"""Process entry point of the case relay: ``python -m services.case.relay_main``.

Publishes every event of the case store to the case stream; SIGINT/SIGTERM stop it
after the acks in flight (a SIGKILL is safe too: the next start resumes from the stream).
"""

from __future__ import annotations

from services.case.bootstrap import bootstrap_relay
from services.case.infrastructure.store import StoreNotMigrated
from services.shared.metrics import ProcessMetrics
from services.shared.serve import Service, run_service


def build() -> Service:
    parts = bootstrap_relay()
    metrics = ProcessMetrics("relay").watch(relays=[parts.relay])
    return Service(
        parts.settings,
        parts.close,
        run=parts.relay.run,
        metrics=metrics,
        host=parts.settings.metrics_host,
        metrics_port=parts.settings.relay_metrics_port,
    )


def main() -> int:
    return run_service("case relay", build, errors=(StoreNotMigrated,))


if __name__ == "__main__":
    raise SystemExit(main())
