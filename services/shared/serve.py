"""One process, an HTTP API and bus tasks: started together, stopped together by SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI


async def serve_with_api(
    app: FastAPI,
    host: str,
    port: int,
    run: Callable[[asyncio.Event], Awaitable[None]],
    close: Callable[[], None],
) -> None:
    """Serve ``app`` while ``run(stop)`` runs; a signal sets ``stop``, then ``close()``."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None))
    # Ours stop the API and the bus tasks together (uvicorn's own would re-raise the signal).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = asyncio.create_task(server.serve())
    try:
        await run(stop)
    finally:
        server.should_exit = True
        await asyncio.wait({api}, timeout=10)
        close()
