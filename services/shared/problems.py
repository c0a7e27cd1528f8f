"""RFC 9457 problem details for every API: one shape for every error.

A problem body has ``type``, ``title``, ``status``, ``detail`` and ``instance``; rule
violations add ``rule`` (and ``deviation_allowed`` where a stated reason would have been
accepted); malformed input adds ``errors`` — one entry per field with the field's path,
the rule it broke and a message.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"
# A correlation or causation id a client sends: it is stored in every event the request
# records, so it is short, visible ASCII (a UUID fits).
REQUEST_ID = re.compile(r"^[!-~]{1,128}$")
PROBLEM_TYPE_PREFIX = "urn:vss:problem:"
log = logging.getLogger("vss.http")


class ProblemException(Exception):
    """Raise from a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        code: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code = status, title, detail, code
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, rest = parts[0], parts[1:]
        return ".".join(rest) if where == "body" and rest else ".".join([where, *rest])
    return ".".join(parts)


def store_unreachable(error: BaseException) -> bool:
    """The error says the database cannot be reached or ended the connection (PostgreSQL
    restarting, a failover, a connection the server closed): psycopg's OperationalError, also
    as the cause of the eventsourcing recorders' own. Not the request's fault, and no bug."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, psycopg.OperationalError):
            return True
        seen = seen.__cause__
    return False


class CorrelationMiddleware:
    """Gives every request a correlation id (``X-Correlation-ID`` in, or a new one) and echoes it.

    It also answers an unexpected error: logged once (one line with the correlation id, then
    a plain traceback) and a 500 problem, the error not raised further; but an unreachable
    database (:func:`store_unreachable`) is a 503 with ``Retry-After`` and one line. Raised further,
    Starlette's ServerErrorMiddleware re-raises it after its handler and uvicorn logs it
    again ("Exception in ASGI application").

    Plain ASGI rather than ``@app.middleware("http")``, which costs a task and a stream per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-correlation-id")
        correlation_id = given.decode("latin-1") if given else str(uuid.uuid4())
        if not REQUEST_ID.match(correlation_id):
            correlation_id = str(uuid.uuid4())  # the refusal below still carries one
            scope.setdefault("state", {})["correlation_id"] = correlation_id
            refusal = problem_response(
                Request(scope),
                400,
                "Bad X-Correlation-ID",
                "X-Correlation-ID is 1–128 visible ASCII characters (a UUID fits)",
                code="bad_header",
                field="X-Correlation-ID",
                headers={"X-Correlation-ID": correlation_id},
            )
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-correlation-id", correlation_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if store_unreachable(error):
                # Expected in operation (a database restart, a failover): one line, no traceback,
                # and the client told to retry, not that the server failed.
                log.warning(
                    "http.store_unavailable %s %s correlation_id=%s error=%s",
                    scope.get("method"),
                    scope.get("path"),
                    correlation_id,
                    type(error).__name__,
                )
                if not started:
                    await problem_response(
                        Request(scope),
                        503,
                        "Store unavailable",
                        "the service cannot reach its database now; retry",
                        code="store_unavailable",
                        headers={"Retry-After": "1"},
                    )(scope, receive, send_with_id)
                return
            log.error(
                "http.unexpected_error %s %s correlation_id=%s error=%s",
                scope.get("method"),
                scope.get("path"),
                correlation_id,
                type(error).__name__,
                exc_info=(type(error), error, error.__traceback__),
            )
            if not started:  # else the client sees the response cut off
                request = Request(scope)
                await problem_response(
                    request,
                    500,
                    "Internal error",
                    "the server failed; the error is logged under this request's correlation id",
                    code="internal",
                )(scope, receive, send_with_id)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemException)
    async def _problem(request: Request, error: ProblemException) -> JSONResponse:
        return problem_response(
            request,
            error.status,
            error.title,
            error.detail,
            code=error.code,
            headers=error.headers,
            **error.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _field(tuple(e.get("loc", ()))),
                "rule": e.get("type", "invalid"),
                "message": e.get("msg", ""),
            }
            for e in error.errors()
        ]
        if any(e["rule"] == "json_invalid" for e in errors):
            return problem_response(
                request,
                400,
                "Malformed JSON",
                "the request body is not valid JSON",
                code="malformed_json",
                errors=errors,
            )
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            request, 422, "Invalid request", summary, code="validation_failed", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}.get(
            error.status_code, "Error"
        )
        return problem_response(
            request,
            error.status_code,
            title,
            str(error.detail),
            code=f"http_{error.status_code}",
            headers=dict(error.headers or {}),
        )


def forbidden(detail: str, rule: str) -> ProblemException:
    """403 naming the access rule that refused the caller."""
    return ProblemException(403, "Forbidden", detail, code=rule, rule=rule)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "rule": {"type": "string"},
        "deviation_allowed": {
            "type": "boolean",
            "description": "true: a practice rule of the method; the command is accepted with a"
            " deviation_reason, and the deviation recorded",
        },
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
_STATUS_MEANING = {
    400: "Malformed request (JSON, header)",
    401: "No valid bearer token",
    403: "Not allowed: the role or access rule named in the problem",
    404: "No such resource",
    405: "Method not allowed",
    409: "Refused by a rule of the method, or a conflicting version",
    412: "Precondition failed",
    422: "Invalid input: each field outside its range is named in errors",
    503: "Not available now; retry",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the problems an operation can answer with."""
    return {
        status: {
            "description": _STATUS_MEANING.get(status, "Problem"),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
