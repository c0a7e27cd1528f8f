"""Process entry point of the notifications service: ``python -m services.notifications.main``.

One process: the durable consumers of the case and meetings streams, the sender (and the
embedded mail sink), the relay of the delivery record and the HTTP API. SIGINT/SIGTERM stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import uvicorn
from pydantic import ValidationError

from services.notifications.bootstrap import bootstrap_notifications
from services.notifications.infrastructure.store import StoreNotMigrated
from services.notifications.settings import OrganisationsFileInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.logging import configure_logging
from services.shared.settings import settings_error


async def _run() -> int:
    try:
        parts = bootstrap_notifications()
        parts.store.check_migrated()
    except (StoreNotMigrated, StoreUrlInvalid, OrganisationsFileInvalid) as error:
        print(f"notifications: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"notifications: {settings_error(error)}", file=sys.stderr)
        return 2
    settings = parts.settings
    configure_logging(settings.log_level, json=settings.log_json)
    assert parts.app is not None
    server = uvicorn.Server(
        uvicorn.Config(
            parts.app, host=settings.notifications_host, port=settings.notifications_port, log_config=None
        )
    )
    # Ours stop the API and the bus tasks together (uvicorn's own would re-raise the signal).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = asyncio.create_task(server.serve())
    try:
        await parts.run(stop)
    finally:
        server.should_exit = True
        await asyncio.wait({api}, timeout=10)
        parts.close()
    return 0


def main() -> int:
    return asyncio.run(_run())


if __name__ == "__main__":
    raise SystemExit(main())
