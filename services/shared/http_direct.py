"""Routes answered without FastAPI's per-request routing and dependency solving (ADR 0026).

FastAPI keeps every route: its OpenAPI document, its validation and its problems. For the
routes of the routers given to :func:`direct_routes`, :class:`DirectRoutes` (plain ASGI,
inside the correlation and tracing middleware) does on the way in what FastAPI would do,
planned once per route rather than worked out per request: the route found by its path
regex, the path parameters and the JSON body validated by the route's own fields, the
dependencies (``async`` only) called in FastAPI's order with their headers, the endpoint
called, the response serialised by the route's response field, its sub-response's status
and headers added; an exception answered by the app's own handler.

Any request it would answer differently from FastAPI is handed to FastAPI whole, before
any dependency is called: a path, header or body that does not validate, a body that is
not ``application/json`` or that the JSON parser refuses, a query string, a method the path
does not take. FastAPI then answers it as ever (its 400 and 422 problems name the field
and the rule). A route with anything this planner does not know (a sync dependency, a
cookie, a form, a required query parameter, a streaming or custom response class, a body
size limit of its own) is left to FastAPI for every request.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.shared.worker_threads import in_worker_thread

__all__ = ["DirectRoutes", "direct_routes"]


class _ToFastAPI(Exception):
    """This request is FastAPI's to answer (nothing has been called yet)."""


Solve = Callable[[Request, dict[Any, Any]], Awaitable[Any]]


_IMMUTABLE = (str, int, float, bool, bytes, type(None))


@dataclass(frozen=True, slots=True, eq=False)  # one per parameter: the request's values keyed by it
class _Header:
    name: str
    alias: str
    field: Any  # fastapi's ModelField
    default: Any  # the field's default when it is the same every time, else _FRESH
    key: bytes  # the header's name as the ASGI scope has it (lower case)

    def value(self, headers: dict[bytes, bytes]) -> Any:
        raw = headers.get(self.key)
        if raw is None:
            return self.field.default if self.default is _FRESH else self.default
        given = raw.decode("latin-1")
        value, errors = self.field.validate(given, {}, loc=("header", self.alias))
        if errors:
            raise _ToFastAPI
        return value


def _is_async(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004


_FRESH = object()  # a default made anew per request (a factory, or a mutable value pydantic copies)


def _default(field: Any) -> Any:
    """``field``'s default, read once when every request would get the same immutable value."""
    if field.field_info.is_required() or field.field_info.default_factory is not None:
        return _FRESH
    default = field.default
    return default if type(default) in _IMMUTABLE else _FRESH


def _headers_of(dependant: Dependant) -> list[_Header]:
    return [
        _Header(str(p.name), str(p.alias), p, _default(p), str(p.alias).lower().encode("latin-1"))
        for p in dependant.header_params
    ]


def _scope_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by name, the first of a repeated one as Starlette's ``Headers.get``
    gives it: one dict per request rather than a scan and a KeyError per header it lacks."""
    return dict(reversed(scope["headers"]))


def _plain(dependant: Dependant) -> bool:
    """No parameter kind the planner leaves to FastAPI."""
    return not (
        dependant.cookie_params
        or dependant.websocket_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _plan_dependencies(
    dependant: Dependant,
) -> tuple[list[_Header], list[tuple[str, Solve]], list[_Header]] | None:
    """The headers ``dependant`` reads itself, each sub-dependency's solver by its parameter
    name, and every header of the tree (its own first); None if a sub-dependency is not
    plannable (FastAPI then answers)."""
    own = _headers_of(dependant)
    solvers: list[tuple[str, Solve]] = []
    every = list(own)
    for sub in dependant.dependencies:
        solved = _solver(sub)
        if solved is None or sub.name is None:
            return None
        solvers.append((sub.name, solved[0]))
        every.extend(solved[1])
    return own, solvers, every


def _solver(dependant: Dependant) -> tuple[Solve, list[_Header]] | None:
    """How to call a dependency (its own dependencies first, then its headers, as FastAPI
    solves it), and every header its tree reads; None: FastAPI's to solve."""
    call = dependant.call
    if (
        call is None
        or not _is_async(call)
        or not _plain(dependant)
        or dependant.path_params
        or dependant.query_params
        or dependant.body_params
        or dependant.response_param_name
    ):
        return None
    planned = _plan_dependencies(dependant)
    if planned is None:
        return None
    headers, subs, every_header = planned
    connection = dependant.request_param_name or dependant.http_connection_param_name
    cached = dependant.use_cache

    async def solve(request: Request, cache: dict[Any, Any]) -> Any:
        if cached and call in cache:
            return cache[call]
        values: dict[str, Any] = {}
        if connection:
            values[connection] = request
        for name, sub_solve in subs:
            values[name] = await sub_solve(request, cache)
        for header in headers:
            values[header.name] = cache[header]
        result = await call(**values)
        if cached:
            cache[call] = result
        return result

    return solve, every_header


@dataclass(frozen=True, slots=True)
class _Plan:
    """One route, planned: what its requests need, in FastAPI's order."""

    route: APIRoute
    dependencies: list[tuple[str, Solve]]
    own_headers: list[_Header]  # the route's own header parameters
    headers: list[_Header]  # of the route and of every dependency, validated before any call
    defaults: dict[str, Any]  # the query parameters, when the request has no query string
    status_code: int | None

    async def answer(self, request: Request, body: Any) -> Response:
        route, scope = self.route, request.scope
        values: dict[str, Any] = dict(self.defaults)
        for field in route.dependant.path_params:
            value, errors = field.validate(scope["path_params"][field.alias], {}, loc=("path", field.alias))
            if errors:
                raise _ToFastAPI
            values[field.name] = value
        if route.body_field is not None:
            value, errors = route.body_field.validate(body, {}, loc=("body",))
            if errors:
                raise _ToFastAPI
            values[route.dependant.body_params[0].name] = value
        cache: dict[Any, Any] = {}
        headers = _scope_headers(scope)
        for header in self.headers:
            cache[header] = header.value(headers)
        for header in self.own_headers:
            values[header.name] = cache[header]
        # From here on what is called may have effects: no more handing over to FastAPI.
        for name, solve in self.dependencies:
            values[name] = await solve(request, cache)
        dependant = route.dependant
        if dependant.request_param_name:
            values[dependant.request_param_name] = request
        sub_response = None  # made only for a route that takes one: none else sets a status or header
        if dependant.response_param_name:
            sub_response = Response()
            del sub_response.headers["content-length"]
            sub_response.status_code = None  # type: ignore[assignment]  # as FastAPI: unset until a route sets it
            values[dependant.response_param_name] = sub_response
        result = await route.endpoint(**values)
        if isinstance(result, Response):
            return result
        out = route.response_field
        assert out is not None  # planned only with one
        value, errors = out.validate(result, {}, loc=("response",))
        if errors:  # the route's own bug: FastAPI's error, raised the same way
            from fastapi.exceptions import ResponseValidationError  # noqa: PLC0415

            raise ResponseValidationError(errors=errors, body=result)
        content = out.serialize_json(
            value,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
        )
        status = (sub_response.status_code if sub_response is not None else None) or self.status_code or 200
        if not is_body_allowed_for_status_code(status):
            content = b""
        response = Response(content=content, status_code=status, media_type="application/json")
        if sub_response is not None:
            response.headers.raw.extend(sub_response.headers.raw)
        return response


def _plan(route: APIRoute) -> _Plan | None:
    """The route planned, or None when FastAPI is to answer all its requests."""
    dependant = route.dependant
    if (
        not _is_async(route.endpoint)
        or not _plain(dependant)
        or route.response_field is None
        or not isinstance(route.response_class, DefaultPlaceholder)
        or len(dependant.body_params) > 1
        or (route.body_field is not None and route._embed_body_fields)
        or any(p.field_info.is_required() for p in dependant.query_params)
        or any(p.field_info.is_required() for p in dependant.header_params)
        or route.dependencies
        or getattr(route, "max_body_size", None) is not None  # the route's own limit is FastAPI's to keep
    ):
        return None
    planned = _plan_dependencies(dependant)
    if planned is None:
        return None
    own_headers, dependencies, headers = planned
    if any(h.field.field_info.is_required() for h in headers):
        return None
    defaults = {str(p.name): p.default for p in dependant.query_params}
    return _Plan(route, dependencies, own_headers, headers, defaults, route.status_code)


def direct_routes(routers: Iterable[APIRouter]) -> list[tuple[APIRoute, _Plan | None]]:
    """Every route of ``routers`` in FastAPI's order of matching, with its plan (None: the
    route's requests are all FastAPI's)."""
    return [
        (route, _plan(route)) for router in routers for route in router.routes if isinstance(route, APIRoute)
    ]


def _json_body(scope: Scope, body: bytes) -> Any:
    """The body as FastAPI would hand it to validation; anything else is FastAPI's."""
    if not body:
        raise _ToFastAPI  # an empty body: FastAPI's "field required"
    kind = _content_type(scope)
    main, _, rest = kind.partition(";")
    if main.strip().lower() != "application/json" or rest.strip():
        raise _ToFastAPI
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _ToFastAPI from None  # FastAPI's 400, with the position json finds


def _content_type(scope: Scope) -> str:
    """The request's first Content-Type header ("" without one), as Starlette reads it."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1"))
    return ""


class DirectRoutes:
    """ASGI middleware: the planned routes' requests answered here, every other one by the app.

    It sits inside the correlation and tracing middleware (they see every request), and
    answers an exception with the app's own handler for it, as Starlette's
    ExceptionMiddleware would; one without a handler goes out to the correlation
    middleware's 500, as before.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[tuple[APIRoute, _Plan | None]]) -> None:
        self.app = app
        self.routes: tuple[tuple[re.Pattern[str], Set[str], _Plan | None], ...] = tuple(
            (route.path_regex, route.methods or frozenset(), plan) for route, plan in routes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("query_string")
            or scope.get("root_path")
            or scope["app"].dependency_overrides  # the plans call the routes' own dependencies
        ):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        for regex, methods, plan in self.routes:
            if method not in methods:
                continue  # another route of the same path, or FastAPI's 405
            match = regex.match(path)
            if match is None:
                continue
            if plan is None:
                break  # the first route that takes it is FastAPI's
            await self._answer(plan, match.groupdict(), scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _answer(
        self, plan: _Plan, path_params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        route = plan.route
        scope["path_params"] = path_params
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        body = b""
        try:
            if route.body_field is not None:
                read = await _read(receive)
                if read is None:
                    return  # the client went away: no one to answer
                body = read
            parsed = _json_body(scope, body) if route.body_field is not None else None
            response = await plan.answer(request, parsed)
        except _ToFastAPI:
            await self.app(scope, _replay(body, receive), send)
            return
        except Exception as error:
            handler = _handler(scope, error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)


async def _read(receive: Receive) -> bytes | None:
    """The request's body (None: the client went away), read as FastAPI's handler reads it: a
    body-limit refusal is raised as it is, any other failure as its 400."""
    body = b""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += bytes(message.get("body", b""))
            if not message.get("more_body", False):
                return body
    except HTTPException:
        raise
    except Exception as error:
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from error


def _handler(scope: Scope, error: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's handler for ``error`` as ExceptionMiddleware finds it (an HTTP error's status
    first, then its class, nearest first); a catch-all ``Exception`` handler is the server
    error middleware's, not ours."""
    handlers = scope["app"].exception_handlers
    kinds: list[Any] = list(type(error).__mro__)
    if isinstance(error, HTTPException):
        kinds.insert(0, error.status_code)
    for kind in kinds:
        if kind is Exception:
            return None
        handler = handlers.get(kind)
        if handler is not None:
            if inspect.iscoroutinefunction(handler):
                return handler  # type: ignore[no-any-return]

            async def in_thread_pool(request: Request, error: Exception, handler: Any = handler) -> Response:
                return await in_worker_thread(handler, request, error)  # type: ignore[no-any-return]

            return in_thread_pool
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read given once more, for the app."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
