"""CPU per request of the case API's HTTP path, against the application path alone.

One process. The case API (SQLite store, every commit signed, access log in SQLite,
logging configured as ``run_service`` does) runs under uvicorn in a thread, as in
production (httptools, uvloop; uvicorn's request log off unless ``--request-log``, as
``VSS_LOG_REQUESTS``); a client in the same process sends
prebuilt HTTP/1.1 requests over one keep-alive socket, so almost all the CPU the process
spends is the server's. The mix: ``--n`` worksheet posts, then ``--n`` reads of the case;
then the same work without HTTP (``CaseService.execute`` and ``get`` on the same store).

Printed per request: CPU ms (``time.process_time``, all threads; the best and the mean of
rounds of 100) and wall ms. ``--calls`` prints the function calls per request instead (every
thread). Under ``valgrind --tool=callgrind --instr-atstart=no``, ``VSS_BENCH_CALLGRIND``
(POST, GET, app POST or app GET) names the one batch whose instructions are counted.
``--profile`` drives the ASGI app directly (no uvicorn) with the thread pool inline, under
pyinstrument if installed (else cProfile on CPU time), and prints where the time goes.

Usage::

    .venv/bin/python bench/http_profile.py --n 500
    .venv/bin/python bench/http_profile.py --n 200 --calls
    VSS_BENCH_CALLGRIND=POST valgrind --tool=callgrind --instr-atstart=no \
        .venv/bin/python bench/http_profile.py --n 50
    .venv/bin/python bench/http_profile.py --n 300 --profile

CPU time on a loaded machine compares only with figures taken just before or after; the
calls and the instructions do not depend on the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from bench.append import ACTOR, SIGNER, WORKSHEET, Clock, _free_port, _open_cases
from services.case.application.service import CaseService, Request
from services.case.domain import commands as cmd
from services.case.entrypoints.http import create_app
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from services.shared.logging import configure_logging

CASES = 20


def _build(tmp: str) -> tuple[Any, CaseService, CaseEventStore, str, list[uuid.UUID]]:
    url = f"sqlite:///{tmp}/case.sqlite"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url), signer=SIGNER)
    service = CaseService(store, Clock())
    tokens = TokenService(key="bench-secret-" + "x" * 32, algorithm="HS256", issuer="vss", audience="vss")
    access_log = AccessLogStore(f"sqlite:///{tmp}/access-log.sqlite")
    app = create_app(service, tokens, access_log)
    token = tokens.mint(
        user_id="anna.k", organisation_id="vgr-psykiatri", principal="region", roles=["coordinator"]
    )
    return app, service, store, token, _open_cases(service, CASES)


def _requests(token: str, ids: list[uuid.UUID], n: int) -> list[tuple[str, bytes]]:
    body = json.dumps(WORKSHEET).encode()
    auth = f"Authorization: Bearer {token}\r\n"
    posts = [
        (
            "POST",
            (
                f"POST /v1/cases/{ids[i % len(ids)]}/worksheets HTTP/1.1\r\nHost: bench\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body,
        )
        for i in range(n)
    ]
    reads = [
        ("GET", f"GET /v1/cases/{ids[i % len(ids)]} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode())
        for i in range(n)
    ]
    return posts + reads


class _Connection:
    """One keep-alive HTTP/1.1 connection; responses read by Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buffer = b""

    def exchange(self, raw: bytes) -> int:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]
        return status


@contextlib.contextmanager
def _uvicorn(app: Any, *, request_log: bool = False) -> Iterator[int]:
    port = _free_port()
    config = uvicorn.Config(app, port=port, log_config=None, access_log=request_log)  # as run_service
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


ROUND = 100  # requests per timed round; the best round is the least disturbed by the machine


class _Calls:
    """Python and C function calls in every thread: a measure of work the machine's load does
    not change (CPU time on a shared machine varies by half from run to run)."""

    def __init__(self) -> None:
        self.count = 0  # a lost increment between threads now and then is noise, not bias

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event in {"call", "c_call"}:
            self.count += 1

    def start(self) -> None:
        """Before the server's and the thread pool's threads start: they inherit it."""
        threading.setprofile(self)
        sys.setprofile(self)


CALLS: _Calls | None = None
# Under ``valgrind --tool=callgrind --instr-atstart=no``: instructions counted only while the
# batch named here runs (POST, GET, app POST or app GET), a measure the machine's load leaves alone.
CALLGRIND = os.environ.get("VSS_BENCH_CALLGRIND")


@contextlib.contextmanager
def _instructions(batch: str) -> Iterator[None]:
    on = batch == CALLGRIND
    if on:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    try:
        yield
    finally:
        if on:
            subprocess.run(
                ["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True
            )


def _measure(label: str, requests: list[tuple[str, bytes]], send: Callable[[bytes], int]) -> None:
    for method in ("POST", "GET"):
        batch = [raw for m, raw in requests if m == method]
        rounds: list[tuple[float, float]] = []
        calls = CALLS.count if CALLS is not None else 0
        with _instructions(method):
            for first in range(0, len(batch), ROUND):
                chunk = batch[first : first + ROUND]
                cpu, wall = time.process_time(), time.perf_counter()
                for raw in chunk:
                    status = send(raw)
                    if status != 200:
                        raise RuntimeError(f"{method} answered {status}")
                rounds.append(
                    ((time.process_time() - cpu) / len(chunk), (time.perf_counter() - wall) / len(chunk))
                )
        mean_cpu = sum(cpu for cpu, _ in rounds) / len(rounds)
        best_cpu, best_wall = min(rounds)
        if CALLS is not None:
            print(
                f"{label:<10}{method:<6}{len(batch):>6}{(CALLS.count - calls) / len(batch):>12.0f} calls/req"
            )
            continue
        print(
            f"{label:<10}{method:<6}{len(batch):>6}{1000 * best_cpu:>12.3f}{1000 * mean_cpu:>12.3f}"
            f"{1000 * best_wall:>12.3f}"
        )


def _application(service: CaseService, ids: list[uuid.UUID], n: int) -> None:
    """The same work without HTTP: ``execute`` per worksheet, ``get`` per read (best round)."""
    command = cmd.CompleteWorksheet.model_validate(WORKSHEET)
    steps: dict[str, Callable[[int], object]] = {
        "POST": lambda i: service.execute(
            Request(ACTOR, "bench"), ids[i % len(ids)], lambda c: c.complete_worksheet(command)
        ),
        "GET": lambda i: service.get(ids[i % len(ids)]),
    }
    for method, step in steps.items():
        rounds = []
        calls = CALLS.count if CALLS is not None else 0
        with _instructions(f"app {method}"):
            for first in range(0, n, ROUND):
                cpu = time.process_time()
                for i in range(first, min(n, first + ROUND)):
                    step(i)
                rounds.append((time.process_time() - cpu) / (min(n, first + ROUND) - first))
        if CALLS is not None:
            print(f"{'app only':<10}{method:<6}{n:>6}{(CALLS.count - calls) / n:>12.0f} calls/req")
            continue
        print(
            f"{'app only':<10}{method:<6}{n:>6}{1000 * min(rounds):>12.3f}"
            f"{1000 * sum(rounds) / len(rounds):>12.3f}"
        )


def _asgi_call(app: Any, raw: bytes) -> int:
    """The request ``raw`` through the ASGI app directly (no server)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].decode().split(" ")
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in lines[1:])
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status: list[int] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    asyncio.get_event_loop().run_until_complete(app(scope, receive, send))
    return status[0]


def _inline_threadpool() -> None:
    """Sync routes and dependencies run in this thread, so cProfile sees them."""
    import fastapi.concurrency  # noqa: PLC0415
    import fastapi.dependencies.utils  # noqa: PLC0415
    import fastapi.routing  # noqa: PLC0415

    async def inline(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    for module in (fastapi.concurrency, fastapi.dependencies.utils, fastapi.routing):
        if hasattr(module, "run_in_threadpool"):
            module.run_in_threadpool = inline  # type: ignore[attr-defined]
    # The case API's own hops (ADR 0031), by the name each module imported.
    import services.case.entrypoints.http  # noqa: PLC0415
    import services.shared.http_app  # noqa: PLC0415
    import services.shared.http_auth  # noqa: PLC0415
    import services.shared.http_direct  # noqa: PLC0415

    for module in (
        services.case.entrypoints.http,
        services.shared.http_app,
        services.shared.http_auth,
        services.shared.http_direct,
    ):
        module.in_worker_thread = inline  # type: ignore[attr-defined]


def _profiled(run: Callable[[], None], top: int) -> None:
    """``run`` under pyinstrument (sampling: little overhead) if installed, else cProfile on CPU time."""
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits on the disk
        profiler.enable()
        run()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
        print(out.getvalue())
        return
    sampler = Profiler(interval=0.0002, async_mode="disabled")
    sampler.start()
    run()
    sampler.stop()
    print(sampler.output_text(unicode=False, color=False, show_all=True, timeline=False))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="worksheet posts, and as many reads")
    parser.add_argument("--profile", action="store_true", help="cProfile the ASGI app directly")
    parser.add_argument("--top", type=int, default=40, help="functions shown with --profile")
    parser.add_argument("--asgi", action="store_true", help="drive the ASGI app directly, no profiler")
    parser.add_argument("--calls", action="store_true", help="count function calls per request instead")
    parser.add_argument(
        "--request-log", action="store_true", help="uvicorn's line per request on (VSS_LOG_REQUESTS=true)"
    )
    args = parser.parse_args()
    if args.calls:
        global CALLS  # noqa: PLW0603 - one setting per run
        CALLS = _Calls()
        CALLS.start()
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - rendered as in production, not shown
    with tempfile.TemporaryDirectory(prefix="vss-http-profile-") as tmp:
        app, service, store, token, ids = _build(tmp)
        requests = _requests(token, ids, args.n)
        warm = _requests(token, ids, 50)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), load {os.getloadavg()[0]:.2f}")
        print(f"{'path':<10}{'req':<6}{'n':>6}{'best cpu ms':>12}{'mean cpu ms':>12}{'wall ms':>12}")
        try:
            if args.profile or args.asgi:
                if args.profile:
                    _inline_threadpool()
                asyncio.set_event_loop(asyncio.new_event_loop())
                for _, raw in warm:
                    _asgi_call(app, raw)
                if args.asgi:
                    _measure("asgi", requests, lambda raw: _asgi_call(app, raw))
                    _application(service, ids, args.n)
                    return
                _profiled(lambda: _measure("asgi", requests, lambda raw: _asgi_call(app, raw)), args.top)
                return
            with _uvicorn(app, request_log=args.request_log) as port:
                connection = _Connection(port)
                for _, raw in warm:
                    connection.exchange(raw)
                _measure("http", requests, connection.exchange)
            _application(service, ids, args.n)
        finally:
            store.close()


if __name__ == "__main__":
    main()
