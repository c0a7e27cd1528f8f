"""Process entry points of the projections service.

``python -m services.projections.main projector``: the live projector (a durable
consumer of the case stream that keeps the read models).
``python -m services.projections.main api``: the query API.
"""

from __future__ import annotations

import sys

from services.projections.bootstrap import bootstrap_projector, bootstrap_query_api
from services.projections.infrastructure.database import ReadModelUrlInvalid
from services.shared.auth import TokenKeyInvalid
from services.shared.metrics import ProcessMetrics
from services.shared.serve import Service, bus_service, run_service

USAGE = "usage: python -m services.projections.main projector|api"


def build_projector() -> Service:
    parts = bootstrap_projector()
    return bus_service(
        "projector",
        parts,
        consumers=parts.consumers,
        metrics_port=parts.settings.projector_metrics_port,
    )


def build_api() -> Service:
    parts = bootstrap_query_api()
    settings = parts.settings
    return Service(
        settings,
        lambda: None,
        app=parts.app,
        host=settings.query_host,
        port=settings.query_port,
        metrics=ProcessMetrics("query"),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["projector"], ["api"]):
        print(USAGE, file=sys.stderr)
        return 2
    build = build_projector if args == ["projector"] else build_api
    return run_service("projections", build, errors=(ReadModelUrlInvalid, TokenKeyInvalid))


if __name__ == "__main__":
    raise SystemExit(main())
