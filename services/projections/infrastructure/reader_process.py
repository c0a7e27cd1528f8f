"""The rebuild's reader process: ``python -m services.projections.infrastructure.reader_process``.

:func:`.stream_reader.read_decoded` starts it and :mod:`.stream_reader` says what it does;
its configuration arrives as JSON on stdin. This module only decides, before anything else
is imported, what the process does not import: nats-py imports aiohttp at start for its
WebSocket transport (a large part of the process's start-up, which delays the rebuild's
first event: ADR 0030), and a reader of ``nats://`` or ``tls://`` servers never uses it.
"""

from __future__ import annotations

import sys

import orjson


def main() -> None:
    config = orjson.loads(sys.stdin.buffer.read())
    servers: list[str] = config["options"]["servers"]
    if not any(server.startswith(("ws://", "wss://")) for server in servers):
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # an import of it fails: nats-py goes without
    # After the line above, by design.
    from services.projections.infrastructure.stream_reader import run_reader  # noqa: PLC0415

    run_reader(config)


if __name__ == "__main__":
    main()
