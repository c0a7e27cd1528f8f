"""Routes answered by DirectRoutes answer as FastAPI answers them, and only planned ones go there.

Two apps with the same routes, one with the routes direct and one without, get the same
requests: good ones, and each kind the direct lane hands to FastAPI (a malformed body, a
body that does not validate, a bad path parameter, a bad header, another content type, a
query string, another method), and refusals raised by a dependency or by the route.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from services.shared.http_app import ThreadedEndpointRoute, service_app
from services.shared.http_auth import bearer
from services.shared.http_direct import DirectRoutes, direct_routes
from services.shared.problems import ProblemException, install_problem_handlers

CASE = "6f0a3c1e-8a36-4c4b-9d7e-0a4b5f3f1c11"


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=20)
    count: int = Field(ge=0)


class Written(BaseModel):
    case_id: UUID
    text: str
    count: int
    key: str | None = None


class Refused(Exception):
    pass


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    idempotency_key: Annotated[str, Header()] = "",
) -> dict[str, Any]:
    if credentials is None:
        raise ProblemException(401, "Unauthorized", "send a token", code="unauthorized")
    if credentials.credentials == "refused":
        raise Refused("not this one")
    return {"who": credentials.credentials, "key": idempotency_key or None, "path": request.url.path}


Caller = Annotated[dict[str, Any], Depends(caller)]


def make_router() -> APIRouter:
    router = APIRouter(prefix="/v1/notes", route_class=ThreadedEndpointRoute)

    @router.post("/{case_id}", response_model=Written, status_code=201)
    def write(case_id: UUID, body: Note, who: Caller, response: Response) -> Written:
        if body.text == "conflict":
            raise ProblemException(409, "Conflict", "the note exists", code="note_exists", rule="note_exists")
        response.headers["ETag"] = f'"{body.count}"'
        return Written(case_id=case_id, text=body.text, count=body.count, key=who["key"])

    @router.get("/{case_id}", response_model=Written)
    def read(case_id: UUID, who: Caller, limit: int = 3) -> Written:
        return Written(case_id=case_id, text=who["path"], count=limit)

    return router


class Reached:
    """Innermost middleware: counts the requests that got past DirectRoutes to FastAPI."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


def client(direct: bool, seen: list[str]) -> TestClient:
    router = make_router()
    app = service_app(
        title="notes", description="", deps=None, routers=[router], direct=[router] if direct else []
    )

    async def refused(request: Request, error: Exception) -> Response:
        return Response(b"refused", status_code=403)

    app.add_exception_handler(Refused, refused)
    app.user_middleware.append(_middleware(seen))
    return TestClient(app, raise_server_exceptions=False)


def _middleware(seen: list[str]) -> Any:
    from starlette.middleware import Middleware  # noqa: PLC0415

    return Middleware(Reached, seen=seen)


TOKEN = {"Authorization": "Bearer anna"}
JSON = {**TOKEN, "Content-Type": "application/json"}
Headers = dict[str, str] | list[tuple[str, str]]
REQUESTS: list[tuple[str, str, Headers, bytes, bool]] = [
    # method, path, headers, body, answered directly
    ("POST", f"/v1/notes/{CASE}", JSON, b'{"text": "hej", "count": 2}', True),
    ("POST", f"/v1/notes/{CASE}", {**JSON, "Idempotency-Key": "k-1"}, b'{"text": "hej", "count": 2}', True),
    (  # a header given twice: the first counts, as Starlette reads it
        "POST",
        f"/v1/notes/{CASE}",
        [*JSON.items(), ("Idempotency-Key", "k-1"), ("idempotency-key", "k-2")],
        b'{"text": "hej", "count": 2}',
        True,
    ),
    (
        "POST",
        f"/v1/notes/{CASE}",
        [*TOKEN.items(), ("content-type", "application/json"), ("Content-Type", "text/plain")],
        b'{"text": "hej", "count": 2}',
        True,
    ),
    ("POST", f"/v1/notes/{CASE}", JSON, b'{"text": "conflict", "count": 2}', True),
    ("POST", f"/v1/notes/{CASE}", {"Content-Type": "application/json"}, b'{"text": "hej", "count": 2}', True),
    (
        "POST",
        f"/v1/notes/{CASE}",
        {"Authorization": "Bearer refused", "Content-Type": "application/json"},
        b'{"text": "hej", "count": 2}',
        True,
    ),
    ("POST", f"/v1/notes/{CASE}", JSON, b'{"text": "hej", "count": -1}', False),
    ("POST", f"/v1/notes/{CASE}", JSON, b'{"text": "", "count": 2}', False),
    ("POST", f"/v1/notes/{CASE}", JSON, b'{"text": "hej", ', False),
    ("POST", f"/v1/notes/{CASE}", JSON, b"", False),
    (
        "POST",
        f"/v1/notes/{CASE}",
        {**TOKEN, "Content-Type": "text/plain"},
        b'{"text": "hej", "count": 2}',
        False,
    ),
    ("POST", "/v1/notes/not-a-uuid", JSON, b'{"text": "hej", "count": 2}', False),
    ("POST", f"/v1/notes/{CASE}", {"Content-Type": "application/json"}, b'{"text": "", "count": 2}', False),
    ("PUT", f"/v1/notes/{CASE}", JSON, b'{"text": "hej", "count": 2}', False),
    ("GET", f"/v1/notes/{CASE}", TOKEN, b"", True),
    ("GET", f"/v1/notes/{CASE}?limit=7", TOKEN, b"", False),
    ("GET", f"/v1/notes/{CASE}?limit=x", TOKEN, b"", False),
    ("GET", "/health", {}, b"", False),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "direct"), REQUESTS)
def test_a_direct_route_answers_as_fastapi_does(
    method: str, path: str, headers: Headers, body: bytes, direct: bool
) -> None:
    usual_seen: list[str] = []
    direct_seen: list[str] = []
    usual = client(False, usual_seen).request(method, path, headers=headers, content=body)
    answered = client(True, direct_seen).request(method, path, headers=headers, content=body)

    assert answered.status_code == usual.status_code
    assert answered.content == usual.content
    for name in ("content-type", "etag", "www-authenticate"):
        assert answered.headers.get(name) == usual.headers.get(name)
    assert len(usual_seen) == 1
    assert len(direct_seen) == (0 if direct else 1)  # FastAPI reached only when handed over


def test_an_overridden_dependency_is_honoured_by_handing_the_request_to_fastapi() -> None:
    """The plans call the routes' own dependencies: while the app overrides one (a test, a
    later global rule), every request goes through FastAPI, which applies the override."""
    seen: list[str] = []
    test_client = client(True, seen)
    app = test_client.app
    assert isinstance(app, FastAPI)

    async def nobody() -> dict[str, Any]:
        raise ProblemException(401, "Unauthorized", "overridden", code="unauthorized")

    app.dependency_overrides[caller] = nobody
    answer = test_client.get(f"/v1/notes/{CASE}", headers=TOKEN)
    assert answer.status_code == 401
    assert seen == [f"/v1/notes/{CASE}"]  # FastAPI answered it
    app.dependency_overrides.clear()
    assert test_client.get(f"/v1/notes/{CASE}", headers=TOKEN).status_code == 200
    assert len(seen) == 1  # answered directly again


def test_every_route_with_async_dependencies_is_planned() -> None:
    assert [(route.name, plan is not None) for route, plan in direct_routes([make_router()])] == [
        ("write", True),
        ("read", True),
    ]


def test_a_route_with_a_sync_dependency_is_left_to_fastapi() -> None:
    router = APIRouter()

    def sync_caller() -> str:
        return "anna"

    @router.get("/sync", response_model=Written)
    async def sync(who: Annotated[str, Depends(sync_caller)]) -> Written:
        return Written(case_id=UUID(CASE), text=who, count=1)

    assert [(route.name, plan) for route, plan in direct_routes([router])] == [("sync", None)]


def test_a_route_with_its_own_body_limit_is_left_to_fastapi() -> None:
    router = APIRouter()

    @router.post("/small", response_model=Written, max_body_size=16)
    async def small(body: Note) -> Written:
        return Written(case_id=UUID(CASE), text=body.text, count=body.count)

    assert [(route.name, plan) for route, plan in direct_routes([router])] == [("small", None)]
    app = FastAPI()
    app.include_router(router)
    app.add_middleware(DirectRoutes, routes=direct_routes([router]))

    refused = TestClient(app).post("/small", headers=JSON, content=b'{"text": "hej", "count": 2}')

    assert refused.status_code == 413


def limited(direct: bool, *, status_handler: bool) -> TestClient:
    router = make_router()
    app = FastAPI(max_body_size=16)
    install_problem_handlers(app)
    if status_handler:  # found by the status before the class, as Starlette finds it

        async def too_large(request: Request, error: Exception) -> Response:
            return Response(b"too large", status_code=413)

        app.add_exception_handler(413, too_large)
    app.include_router(router)
    if direct:
        app.add_middleware(DirectRoutes, routes=direct_routes([router]))
    return TestClient(app)


@pytest.mark.parametrize("status_handler", [False, True])
@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_apps_limit_is_refused_as_fastapi_refuses_it(
    declared: bool, status_handler: bool
) -> None:
    body = b'{"text": "hej", "count": 2}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met while reading
        yield body

    content: bytes | Iterator[bytes] = body if declared else chunks()
    usual = limited(False, status_handler=status_handler).post(
        f"/v1/notes/{CASE}", headers=JSON, content=content
    )
    content = body if declared else chunks()
    answered = limited(True, status_handler=status_handler).post(
        f"/v1/notes/{CASE}", headers=JSON, content=content
    )

    assert usual.status_code == 413
    assert (answered.status_code, answered.content) == (usual.status_code, usual.content)
