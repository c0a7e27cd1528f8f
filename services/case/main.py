"""Process entry point of the case service: ``python -m services.case.main``."""

from __future__ import annotations

from services.case.bootstrap import bootstrap
from services.case.infrastructure.signing import SigningKeyMissing
from services.case.infrastructure.store import StoreNotMigrated
from services.shared.auth import TokenKeyInvalid
from services.shared.metrics import ProcessMetrics
from services.shared.serve import Service, run_service


def build() -> Service:
    parts = bootstrap()
    settings = parts.settings
    return Service(
        settings,
        parts.close,
        app=parts.app,
        host=settings.case_host,
        port=settings.case_port,
        metrics=ProcessMetrics("case"),
    )


def main() -> int:
    return run_service("case service", build, errors=(StoreNotMigrated, TokenKeyInvalid, SigningKeyMissing))


if __name__ == "__main__":
    raise SystemExit(main())
