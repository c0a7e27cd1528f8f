"""Process entry point of the sharing service: ``python -m services.sharing.main``.

One process: the durable consumer of the case stream and the relay of each organisation's
share to ``VSS_SHARE``. SIGINT/SIGTERM stop both.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pydantic import ValidationError

from services.shared.eventstore import StoreUrlInvalid
from services.shared.logging import configure_logging
from services.shared.settings import settings_error
from services.sharing.bootstrap import bootstrap_sharing
from services.sharing.infrastructure.bus import ShareStreamAhead
from services.sharing.infrastructure.store import StoreNotMigrated


async def _run() -> int:
    try:
        parts = bootstrap_sharing()
        parts.store.check_migrated()
    except (StoreNotMigrated, StoreUrlInvalid) as error:
        print(f"sharing: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"sharing: {settings_error(error)}", file=sys.stderr)
        return 2
    settings = parts.settings
    configure_logging(settings.log_level, json=settings.log_json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await parts.run(stop)
    except ShareStreamAhead as error:
        print(f"sharing: {error}", file=sys.stderr)
        return 2
    finally:
        parts.close()
    return 0


def main() -> int:
    return asyncio.run(_run())


if __name__ == "__main__":
    raise SystemExit(main())
