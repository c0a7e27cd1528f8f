"""Process entry point of the case relay: ``python -m services.case.relay_main``.

Publishes every event of the case store to the case stream; SIGINT/SIGTERM stop it
after the acks in flight (a SIGKILL is safe too: the next start resumes from the stream).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pydantic import ValidationError

from services.case.bootstrap import bootstrap_relay
from services.case.infrastructure.store import StoreNotMigrated
from services.shared.logging import configure_logging
from services.shared.settings import settings_error


async def _run() -> int:
    try:
        parts = bootstrap_relay()
    except StoreNotMigrated as error:
        print(f"case relay: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # a VSS_* variable with a bad value
        print(f"case relay: {settings_error(error)}", file=sys.stderr)
        return 2
    configure_logging(parts.settings.log_level, json=parts.settings.log_json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await parts.relay.run(stop)
    finally:
        parts.close()
    return 0


def main() -> int:
    return asyncio.run(_run())


if __name__ == "__main__":
    raise SystemExit(main())
