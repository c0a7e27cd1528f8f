"""Process entry point of the case service: ``python -m services.case.main``."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from services.case.bootstrap import bootstrap
from services.case.infrastructure.signing import SigningKeyMissing
from services.case.infrastructure.store import StoreNotMigrated
from services.shared.auth import TokenKeyInvalid
from services.shared.logging import configure_logging
from services.shared.settings import settings_error


def main() -> int:
    try:
        parts = bootstrap()
    except (StoreNotMigrated, TokenKeyInvalid, SigningKeyMissing) as error:
        print(f"case service: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # a VSS_* variable with a bad value
        print(f"case service: {settings_error(error)}", file=sys.stderr)
        return 2
    configure_logging(parts.settings.log_level, json=parts.settings.log_json)
    try:
        uvicorn.run(parts.app, host=parts.settings.case_host, port=parts.settings.case_port, log_config=None)
    finally:
        parts.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
