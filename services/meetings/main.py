"""Process entry point of the meetings service: ``python -m services.meetings.main``.

One process: the durable consumer of the case stream, the relay of the schedule's events
to ``VSS_MEETINGS``, the timer loop and the HTTP API. SIGINT/SIGTERM stop all of them.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from services.meetings.bootstrap import bootstrap_meetings
from services.meetings.infrastructure.store import StoreNotMigrated
from services.shared.auth import TokenKeyInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.logging import configure_logging
from services.shared.serve import serve_with_api
from services.shared.settings import settings_error


async def _run() -> int:
    try:
        parts = bootstrap_meetings()
        parts.store.check_migrated()
    except (StoreNotMigrated, StoreUrlInvalid, TokenKeyInvalid) as error:
        print(f"meetings: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"meetings: {settings_error(error)}", file=sys.stderr)
        return 2
    settings = parts.settings
    configure_logging(settings.log_level, json=settings.log_json)
    assert parts.app is not None
    await serve_with_api(parts.app, settings.meetings_host, settings.meetings_port, parts.run, parts.close)
    return 0


def main() -> int:
    return asyncio.run(_run())


if __name__ == "__main__":
    raise SystemExit(main())
