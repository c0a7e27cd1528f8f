"""How every service process runs: one :func:`run_service` for settings, logging, signals
and the errors that stop it at start; :func:`run_tasks` and :func:`repeat` for its loops.

A process is an HTTP API, bus tasks, or both (started together, stopped together by
SIGINT/SIGTERM). A bad VSS_* variable, or an error the service names as a reason not to
start, is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from services.shared import tracing
from services.shared.logging import configure_logging
from services.shared.metrics import (
    REFRESH_INTERVAL,
    BusReach,
    ProcessMetrics,
    WatchedConsumer,
    WatchedRelay,
    server_lags,
)
from services.shared.settings import CommonSettings, settings_error
from services.shared.tracing import TracingSettings, otlp_tracer_provider

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # runs until the event is set
log = structlog.get_logger("vss.serve")


class LogSettings(Protocol):
    @property
    def log_level(self) -> str: ...
    @property
    def log_json(self) -> bool: ...
    @property
    def log_requests(self) -> bool: ...


@dataclass(frozen=True)
class Service:
    """What a composition root hands :func:`run_service`: an API (``app`` on ``host:port``),
    bus tasks (``run``), or both, and ``close`` for what stays open after them."""

    settings: LogSettings
    close: Callable[[], None]
    run: Loop | None = None
    app: FastAPI | None = None
    host: str = "127.0.0.1"
    port: int = 0
    # /metrics: on the API's port, else on ``metrics_port`` at ``host`` (None: not served)
    metrics: ProcessMetrics | None = None
    metrics_port: int | None = None


class BusProcessSettings(LogSettings, BusReach, Protocol):
    @property
    def metrics_host(self) -> str: ...


class BusParts(Protocol):
    """What a composition root builds for a process of bus tasks."""

    @property
    def settings(self) -> BusProcessSettings: ...
    def close(self) -> None: ...
    async def run(self, stop: asyncio.Event) -> None: ...


def bus_service(
    name: str,
    parts: BusParts,
    *,
    consumers: Sequence[WatchedConsumer],
    relays: Sequence[WatchedRelay] = (),
    app: FastAPI | None = None,
    host: str | None = None,
    port: int = 0,
    metrics_port: int | None = None,
) -> Service:
    """A process of bus tasks (with an API on ``host:port`` when ``app`` is given): its
    consumers' and relays' metrics, their lag read from the server; without an API its
    ``/metrics`` is on ``metrics_port`` at the settings' ``metrics_host``."""
    settings = parts.settings
    metrics = ProcessMetrics(name, server_lags(settings)).watch(consumers=consumers, relays=relays)
    return Service(
        settings,
        parts.close,
        run=parts.run,
        app=app,
        host=host or settings.metrics_host,
        port=port,
        metrics=metrics,
        metrics_port=metrics_port,
    )


def run_service(name: str, build: Callable[[], Service], *, errors: tuple[type[Exception], ...] = ()) -> int:
    """Build the service and run it until a signal; the process's exit code.

    A bad setting while building, or one of ``errors`` while building or running, prints
    ``<name>: <reason>`` on one line and returns 2.
    """
    try:
        yield_cpu(CommonSettings().nice)
        service = build()
    except ValidationError as error:  # a VSS_* variable with a bad value
        print(f"{name}: {settings_error(error)}", file=sys.stderr)
        return 2
    except errors as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    configure_logging(service.settings.log_level, json=service.settings.log_json)
    tracing.configure(otlp_tracer_provider(name, TracingSettings()))
    service = _with_metrics(service)
    try:
        if service.run is None:
            _serve_api(service)
        else:
            asyncio.run(_serve_tasks(service, service.run))
    except errors as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    return 0


def yield_cpu(nice: int) -> None:
    """Lower this process's priority by ``nice`` before it starts a thread: on Linux a thread's
    niceness is its own, and the threads started later inherit it."""
    if nice:
        os.nice(nice)


def _with_metrics(service: Service) -> Service:
    """The service with its ``/metrics``: a route of its API, else an app of their own on
    ``metrics_port``; the consumers' lag read now and then by a task beside its own."""
    metrics = service.metrics
    if metrics is None:
        return service
    if service.app is not None:
        metrics.route(service.app)
    elif service.metrics_port is None:
        return service
    else:
        service = replace(service, app=metrics.app(), port=service.metrics_port)
    run = service.run
    if run is None or not metrics.consumers:
        return service

    async def run_and_refresh(stop: asyncio.Event) -> None:
        await run_tasks(
            stop,
            {
                "service": run,
                "metrics": lambda until: repeat(
                    metrics.refresh, until, REFRESH_INTERVAL, log=log, failed="metrics.refresh_failed"
                ),
            },
        )

    return replace(service, run=run_and_refresh)


def _serve_api(service: Service) -> None:
    assert service.app is not None, "a service runs an API, bus tasks, or both"
    try:
        uvicorn.run(
            service.app,
            host=service.host,
            port=service.port,
            log_config=None,
            access_log=service.settings.log_requests,
        )
    finally:
        service.close()


async def _serve_tasks(service: Service, run: Loop) -> None:
    if service.app is not None:
        await serve_with_api(
            service.app,
            service.host,
            service.port,
            run,
            service.close,
            access_log=service.settings.log_requests,
        )
        return
    stop = _stop_on_signals()
    try:
        await run(stop)
    finally:
        service.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_with_api(
    app: FastAPI,
    host: str,
    port: int,
    run: Loop,
    close: Callable[[], None],
    *,
    access_log: bool = False,
) -> None:
    """Serve ``app`` while ``run(stop)`` runs; a signal sets ``stop``, then ``close()``.
    ``access_log``: uvicorn's line per request (VSS_LOG_REQUESTS)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=access_log))
    # Ours stop the API and the bus tasks together (uvicorn's own would re-raise the signal).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = _stop_on_signals()
    api = asyncio.create_task(server.serve())
    try:
        await run(stop)
    finally:
        server.should_exit = True
        await asyncio.wait({api}, timeout=10)
        close()


async def run_tasks(stop: asyncio.Event, loops: Mapping[str, Loop]) -> None:
    """Run each loop as a task named by its key until ``stop``; an error in one ends them all
    (it is raised once the others are cancelled, at most 5 s later)."""
    tasks = [asyncio.create_task(loop(stop), name=name) for name, loop in loops.items()]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5)


async def repeat(
    step: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    interval: float,
    *,
    log: structlog.typing.FilteringBoundLogger,
    failed: str,
    wake: asyncio.Event | None = None,
) -> None:
    """Take ``step`` now, then again every ``interval`` s (sooner when ``wake`` is set) until
    ``stop``; a step that fails is logged as the warning ``failed`` and taken again at the next
    look (a store or a channel that is away comes back)."""
    while not stop.is_set():
        try:
            await step()
        except Exception as error:
            log.warning(failed, error=str(error) or type(error).__name__)
        waits = [asyncio.ensure_future(stop.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if wake is not None:
            wake.clear()
