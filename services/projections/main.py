"""Process entry points of the projections service.

``python -m services.projections.main projector``: the live projector (a durable
consumer of the case stream that keeps the read models).
``python -m services.projections.main api``: the query API.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvicorn
from pydantic import ValidationError

from services.projections.bootstrap import bootstrap_projector, bootstrap_query_api
from services.projections.infrastructure.database import ReadModelUrlInvalid
from services.shared.auth import TokenKeyInvalid
from services.shared.logging import configure_logging
from services.shared.settings import settings_error

USAGE = "usage: python -m services.projections.main projector|api"


async def _run_projector() -> int:
    parts = bootstrap_projector()
    configure_logging(parts.settings.log_level, json=parts.settings.log_json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await parts.run(stop)
    finally:
        parts.close()
    return 0


def _run_api() -> int:
    parts = bootstrap_query_api()
    configure_logging(parts.settings.log_level, json=parts.settings.log_json)
    uvicorn.run(parts.app, host=parts.settings.query_host, port=parts.settings.query_port, log_config=None)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["projector"], ["api"]):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run_projector()) if args == ["projector"] else _run_api()
    except ValidationError as error:
        print(f"projections: {settings_error(error)}", file=sys.stderr)
        return 2
    except (ReadModelUrlInvalid, TokenKeyInvalid) as error:
        print(f"projections: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
