"""Process entry point of the notifications service: ``python -m services.notifications.main``.

One process: the durable consumers of the case and meetings streams, the sender (and the
embedded mail sink), the relay of the delivery record and the HTTP API. SIGINT/SIGTERM stop them.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from services.notifications.bootstrap import bootstrap_notifications
from services.notifications.infrastructure.store import StoreNotMigrated
from services.notifications.settings import LinkKeyInvalid, OrganisationsFileInvalid
from services.shared.auth import TokenKeyInvalid
from services.shared.eventstore import StoreUrlInvalid
from services.shared.logging import configure_logging
from services.shared.serve import serve_with_api
from services.shared.settings import settings_error


async def _run() -> int:
    try:
        parts = bootstrap_notifications()
        parts.store.check_migrated()
    except (
        StoreNotMigrated,
        StoreUrlInvalid,
        OrganisationsFileInvalid,
        TokenKeyInvalid,
        LinkKeyInvalid,
    ) as error:
        print(f"notifications: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"notifications: {settings_error(error)}", file=sys.stderr)
        return 2
    settings = parts.settings
    configure_logging(settings.log_level, json=settings.log_json)
    assert parts.app is not None
    await serve_with_api(
        parts.app, settings.notifications_host, settings.notifications_port, parts.run, parts.close
    )
    return 0


def main() -> int:
    return asyncio.run(_run())


if __name__ == "__main__":
    raise SystemExit(main())
