"""An unexpected error in one request stays in that request: a 500 problem, and one log entry
(one line with the correlation id, then a plain traceback without local variables), under a
real uvicorn server with the services' logging. An unreachable database is not unexpected:
a 503 with Retry-After and one line."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import structlog
from eventsourcing.persistence import OperationalError as EventsourcingOperationalError
from fastapi import FastAPI

from services.shared.bus.embedded import free_port
from services.shared.logging import configure_logging
from services.shared.problems import CorrelationMiddleware, install_problem_handlers
from tests.support.bus import wait_until
from tests.support.http import serving

CLIENT = "Mamma Tolvansson, mamma.tolvansson@example.se"


def failing_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(CorrelationMiddleware)

    @app.get("/boom")
    def boom() -> None:
        client_details = {"name": CLIENT, "notes": "x" * 100_000}  # what a traceback must not show
        raise RuntimeError(f"broken for {len(client_details)} fields")

    @app.get("/fine")
    def fine() -> dict[str, str]:
        return {"status": "ok"}

    return app


@contextlib.contextmanager
def logs_to(json_lines: bool) -> Iterator[io.StringIO]:
    """The services' logging (``configure_logging``), written to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_structlog = root.handlers[:], root.level, structlog.get_config()
    buffer = io.StringIO()
    configure_logging("INFO", json=json_lines)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


@pytest.mark.parametrize("json_lines", [False, True], ids=["console", "json"])
def test_an_unexpected_error_is_one_log_entry_without_local_variables(json_lines: bool) -> None:
    with logs_to(json_lines) as buffer, serving(failing_app(), access_log=False) as address:
        failed = httpx.get(f"http://{address}/boom", headers={"X-Correlation-ID": "corr-4711"}, timeout=10)
        assert httpx.get(f"http://{address}/fine", timeout=10).status_code == 200  # the next request is fine
        assert wait_until(lambda: "RuntimeError" in buffer.getvalue(), 5)
    written = buffer.getvalue()
    assert CLIENT not in written
    assert "client_details" in written or json_lines  # the traceback's code line, not its value
    assert len(written) < 10_000, f"{len(written)} characters logged for one error"
    assert written.count("RuntimeError: broken for 2 fields") == 1, written
    assert "Exception in ASGI application" not in written  # not logged a second time by uvicorn
    if json_lines:
        entries = [json.loads(line) for line in written.splitlines() if "RuntimeError" in line]
        assert len(entries) == 1
        assert "corr-4711" in entries[0]["event"]
        assert entries[0]["level"] == "error"
        assert "Traceback (most recent call last)" in entries[0]["exception"]
    else:
        first = next(line for line in written.splitlines() if "http.unexpected_error" in line)
        assert "corr-4711" in first
        assert "GET /boom" in first
        assert written.count("http.unexpected_error") == 1
        assert written.count("Traceback (most recent call last)") == 1

    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("application/problem+json")
    assert failed.headers["x-correlation-id"] == "corr-4711"
    assert failed.json()["type"] == "urn:vss:problem:internal"
    assert CLIENT not in failed.text


def unreachable_store_app(server_url: str) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(CorrelationMiddleware)

    @app.get("/read")
    def read() -> None:
        # As a store's read finds its database gone: nothing listens at that address.
        with psycopg.connect(server_url, connect_timeout=2):
            pass

    @app.get("/recorded")
    def recorded() -> None:
        # The eventsourcing recorders wrap the driver's error in their own.
        try:
            with psycopg.connect(server_url, connect_timeout=2):
                pass
        except psycopg.OperationalError as error:
            raise EventsourcingOperationalError(str(error)) from error

    return app


def test_an_unreachable_database_is_a_503_to_retry_not_a_500() -> None:
    """A PostgreSQL restart or failover is no fault of the request and no bug: the client is
    told to retry (503 with Retry-After), as with every other answer of a service not ready."""
    nobody = f"postgresql://vss:secret@127.0.0.1:{free_port()}/vss"
    with (
        logs_to(json_lines=False) as buffer,
        serving(unreachable_store_app(nobody), access_log=False) as address,
    ):
        answers = [httpx.get(f"http://{address}/{path}", timeout=10) for path in ("read", "recorded")]
        assert wait_until(lambda: buffer.getvalue().count("http.store_unavailable") == 2, 5)
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"] == "urn:vss:problem:store_unavailable"
        assert "secret" not in answer.text
    assert "secret" not in buffer.getvalue()
    assert "Traceback" not in buffer.getvalue()  # expected in operation: one line, no traceback
