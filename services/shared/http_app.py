"""The frame every service's HTTP API is built in: one place for what all of them share.

Each API gets RFC 9457 problems for every error (:mod:`.problems`), a correlation id on
every request and response, its dependencies on ``app.state.deps`` (read in routes with
:func:`deps_of`), and ``GET /health`` (``{"status": "ok"}`` plus what the service adds for
operators). The service adds its own routers, exception handlers and routes.

A router whose routes are sync ``def`` (they wait on a store) takes
``route_class=ThreadedEndpointRoute``: each request then makes one hop to the thread pool,
not FastAPI's two (the endpoint, then again to validate its response; ADR 0022).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute

from services.shared.http_direct import DirectRoutes, direct_routes
from services.shared.problems import CorrelationMiddleware, install_problem_handlers
from services.shared.tracing import TraceRequests
from services.shared.worker_threads import in_worker_thread

__all__ = ["ThreadedEndpointRoute", "deps_of", "service_app"]

T = TypeVar("T")


def service_app(
    *,
    title: str,
    description: str,
    deps: object,
    routers: Sequence[APIRouter],
    health: Callable[[], dict[str, Any]] = dict,
    docs_url: str | None = "/docs",
    direct: Sequence[APIRouter] = (),
) -> FastAPI:
    """A service's API: problems, correlation ids, ``deps`` on the app, its routers, /health.

    The routes of the routers in ``direct`` (among ``routers``, each owning its prefix) are
    answered by :class:`~services.shared.http_direct.DirectRoutes` where it can (ADR 0026).
    """
    app = FastAPI(title=title, version="1.0.0", description=description, docs_url=docs_url)
    app.state.deps = deps
    install_problem_handlers(app)
    for router in routers:
        app.include_router(router)
    if direct:  # innermost: the correlation id and the trace's span are there before it
        app.add_middleware(DirectRoutes, routes=direct_routes(direct))
    app.add_middleware(CorrelationMiddleware)
    app.add_middleware(TraceRequests)  # outermost: the span covers the whole request

    @app.get("/health", tags=["operations"])
    def _health() -> dict[str, Any]:
        """Up, with what an operator of the service looks at first."""
        return {"status": "ok", **health()}

    return app


def deps_of(request: Request, kind: type[T]) -> T:
    """The dependencies ``service_app`` put on the app, as the type the routes expect."""
    return cast(T, request.app.state.deps)


class ThreadedEndpointRoute(APIRoute):
    """A route whose sync endpoint runs in a worker thread (:mod:`.worker_threads`, a cheaper
    hop than anyio's), but which FastAPI sees as ``async``: the response is then validated on
    the event loop, where FastAPI sends a sync endpoint's response to the thread pool a second
    time. Same signature, same OpenAPI."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if inspect.isfunction(endpoint) and not inspect.iscoroutinefunction(endpoint):
            endpoint = _in_thread_pool(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _in_thread_pool(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)  # FastAPI reads the parameters and their types through __wrapped__
    async def threaded(**values: Any) -> Any:
        return await in_worker_thread(functools.partial(endpoint, **values))

    return threaded
