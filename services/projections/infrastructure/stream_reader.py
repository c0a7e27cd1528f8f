"""The rebuild's reader: the case stream read and decoded in a process of its own.

A rebuild reads every event from sequence 1. Reading (nats-py) and decoding (the JSON,
and the event's hash recomputed, for every event) cost as much CPU as projecting and
writing, so :func:`read_decoded` runs them in a child process
(``python -m services.projections.infrastructure.reader_process``, which runs
:func:`run_reader`) on the other core, while the rebuild's process projects and writes what
it hands over.

The child **imports only what it runs** (nats-py without aiohttp, orjson, the contracts'
hash): the rebuild's process waits for its first frame meanwhile, so its start-up is time
the rebuild takes (ADR 0030). So it connects with :func:`connect_reader`, the service kit's
``connect`` options over the credentials the rebuild's process looked up
(:func:`connect_options`), and logs warnings with the standard library to stderr.

How the child reads (:func:`read_stream`):

- an **ordered push consumer**: ephemeral, ``AckPolicy.NONE``, memory storage, flow
  control and idle heartbeats, delivering from sequence 1 to the stream's last sequence
  (looked up again when reached, as the stream may grow meanwhile). On a gap in the
  delivery (a missed message) nats-py recreates it from the next sequence, so every
  message arrives once, in order. It replaces a pull consumer's ``fetch``, which awaits
  each message with a timeout of its own (two tasks per message);
- on **uvloop** when installed;
- **bodies only**: the client skips parsing the headers of data messages (the relay's
  ``Nats-Msg-Id`` …, which decoding does not use; nats-py parses them in pure Python,
  a large share of the time a message takes to read). Status messages, that is flow control
  and heartbeats, are parsed as nats-py always does;
- with the **cyclic garbage collector off**: what a batch makes is freed by reference
  counting, the collector would only traverse it.

What crosses to the rebuild's process: per batch of up to ``batch`` messages, the
decoded fields of each event (:func:`.published.published_fields`: JSON values only, with
the hash check's result, so they cross as JSON unchanged), the stream sequences of the
messages that did not decode with the reason, the position (last sequence read) and the
target (the stream's last sequence when last looked at). The rebuild's process upcasts
(:func:`.decoding.record_of`) and projects. Nothing is decided in the child but the
parsing and the hash check: what :func:`.decoding.decode` does, split in two.

**Backpressure**: the child writes its frames through a queue of two, drained by a
thread into the pipe (1 MiB where the system allows). When the rebuild's process falls
behind, putting the next frame blocks the child's event loop: it stops reading the
socket, so it stops answering flow control, and the server stops delivering.

Frames on the child's stdout: a 4-byte little-endian length, then JSON:
``["batch", position, target, [fields, …], [[sequence, reason], …]]``, then
``["end", position, target]``, or ``["error", message]`` if the child fails. The
configuration arrives as JSON on its stdin (the NATS URL and the connect options may carry
credentials: not on the command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import queue
import struct
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

import services
from services.projections.domain.events import CaseEventRecord
from services.projections.infrastructure.published import UndecodableEvent, published_fields
from services.shared.bus.dial import dial

if TYPE_CHECKING:
    from services.shared.bus.names import BusNames

MODULE = "services.projections.infrastructure.reader_process"
_LENGTH = struct.Struct("<I")
_STATUS_AT = len(b"NATS/1.0")  # a status line ("NATS/1.0 100 …") has a space here
_PIPE_SIZE = 1 << 20
_T = TypeVar("_T")
log = logging.getLogger("vss.projections.rebuild.reader")


class ReaderFailed(RuntimeError):
    """The reader process failed, or ended without reaching the end of the stream."""


# --------------------------------------------------------------------------- reading
class BodyOnlyClient(Client):
    """nats-py's client, not parsing the headers of data messages (status messages still are).

    A JetStream data message arrives with the headers it was published with; its
    subscriber here uses only the body, the reply subject and, for control messages
    (no body, a status line first), the parsed status headers, which this still parses.
    """

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:  # type: ignore[override]
        if headers and len(headers) > _STATUS_AT and headers[_STATUS_AT] != 0x20:
            return None
        result: dict[str, str] | None = await super()._process_headers(headers)
        return result


def stream_sequence(reply: str) -> int:
    """The stream sequence in a JetStream message's reply subject (``$JS.ACK.…``)."""
    tokens = reply.split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<time>.<pending>
            return int(tokens[5])
        if len(tokens) >= 11:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>…
            return int(tokens[7])
    raise ValueError(f"not a JetStream message's reply subject: {reply!r}")


class StreamNames(Protocol):
    """The stream to read and its subjects (a :class:`BusNames`, or the reader process's copy)."""

    @property
    def stream(self) -> str: ...

    @property
    def subjects(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Stream:
    stream: str
    subjects: str


def connect_options(nats_url: str) -> dict[str, Any]:
    """What the reader connects with, as the shared :func:`services.shared.bus.streams.connect`
    would: the servers and this process's credentials (its settings'). JSON values only, so
    they cross to the reader process with its configuration."""
    from services.shared.bus.streams import server_urls  # noqa: PLC0415 - not in the reader process
    from services.shared.settings import BusSettings  # noqa: PLC0415 - likewise

    return {"servers": server_urls(nats_url), **BusSettings().nats_auth().options()}


async def connect_reader(options: Mapping[str, Any], *, max_backoff: float = 5.0) -> Client:
    """A :class:`BodyOnlyClient` connected with ``options`` (:func:`connect_options`), retrying
    with backoff until the server answers; nats-py reconnects by itself after that.

    The kit's :func:`~services.shared.bus.dial.dial`, as the kit's ``streams.connect`` dials,
    but not through ``streams``: that module imports the kit's settings, logging and
    authorisation, which the reader process would spend its start-up on (ADR 0030).
    """

    def retrying(reason: str, wait: float) -> None:
        log.warning("nats.connect_retry: %s; again in %.1f s", reason, wait)

    return await dial(
        BodyOnlyClient,
        retrying=retrying,
        max_backoff=max_backoff,
        name="projections-rebuild-reader",
        error_cb=_on_error,
        **options,
    )


async def _on_error(error: Exception) -> None:
    log.warning("nats.error: %s", str(error) or type(error).__name__)


async def read_stream(
    nats_url: str,
    names: StreamNames,
    consume: Callable[[int, bytes, int], None],
    *,
    description: str = "VSS projections rebuild (ephemeral)",
    options: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """Every message of the stream, in order, to ``consume(sequence, body, target)``.

    ``target`` is the stream's last sequence as last looked up: at the start, and again
    whenever a message reaches it (the stream may have grown), so the read ends with the
    message whose ``sequence >= target``. ``consume`` runs in the event loop and may
    block it (backpressure). Returns (position, target): the last sequence read and the
    last one looked up. ``options``: :func:`connect_options` of ``nats_url`` unless given.
    """
    nc = await connect_reader(connect_options(nats_url) if options is None else options)
    try:
        js = nc.jetstream()

        async def last_sequence() -> int:
            return int((await js.stream_info(names.stream)).state.last_seq)

        position = 0
        target = await last_sequence()
        if target == 0:
            return 0, 0
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_message(msg: Msg) -> None:
            nonlocal position, target
            if done.done():
                return
            try:
                sequence = stream_sequence(msg.reply)
                position = max(position, sequence)
                if position >= target:
                    target = max(target, await last_sequence())
                consume(sequence, msg.data, target)
                if position >= target:
                    done.set_result(None)
            except Exception as error:  # nats-py would log it and go on: end the read instead
                if not done.done():
                    done.set_exception(error)

        sub = await js.subscribe(
            names.subjects,
            stream=names.stream,
            cb=on_message,
            ordered_consumer=True,
            idle_heartbeat=5.0,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=60.0,
                description=description,
            ),
        )
        try:
            await done
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return position, target
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)``, on uvloop where it is installed."""
    try:
        import uvloop  # noqa: PLC0415 - optional (not on Windows)
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# ------------------------------------------------------------------ the child process
class _FrameWriter:
    """Frames to a file descriptor through a queue of two and a thread (blocking when full)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="frames", daemon=True)
        self._thread.start()

    def put(self, frame: list[Any]) -> None:
        self._queue.put(orjson.dumps(frame))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (payload := self._queue.get()) is not None:
                self._write(_LENGTH.pack(len(payload)))
                self._write(payload)
        except OSError:  # the rebuild's process is gone: nothing to read for
            os._exit(3)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def run_reader(config: dict[str, Any]) -> None:
    """The reader process's work (:mod:`.reader_process` starts it with its configuration)."""
    # Frames get the real stdout; anything printed goes to stderr instead, as do the logs
    # (warnings and errors: connecting again, the client's errors).
    fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    with contextlib.suppress(AttributeError, OSError):  # Linux only; best effort
        import fcntl  # noqa: PLC0415

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    frames = _FrameWriter(fd)
    batch: int = config["batch"]
    rows: list[Any] = []
    undecodable: list[tuple[int, str]] = []

    def consume(sequence: int, body: bytes, target: int) -> None:
        try:
            rows.append(published_fields(body, sequence))
        except UndecodableEvent as error:
            undecodable.append((sequence, str(error)))
        if sequence >= target or len(rows) + len(undecodable) >= batch:
            frames.put(["batch", sequence, target, rows, undecodable])
            rows.clear()
            undecodable.clear()

    # What is imported lives as long as the process, and what a batch makes is freed by
    # reference counting: the cyclic collector would only traverse it (a few percent).
    gc.freeze()
    gc.disable()
    try:
        names = _Stream(config["stream"], config["subjects"])
        position, target = run_loop(read_stream(config["url"], names, consume, options=config["options"]))
        frames.put(["end", position, target])
        code = 0
    except BaseException as error:
        frames.put(["error", f"{type(error).__name__}: {error}"])
        code = 1
    frames.close()
    os.close(fd)
    sys.exit(code)


# --------------------------------------------------------------- the rebuild's side
@dataclass(frozen=True, slots=True)
class DecodedBatch:
    records: list[CaseEventRecord]
    undecodable: list[tuple[int, str]]  # (stream sequence, why)
    position: int  # the last stream sequence read
    target: int  # the stream's last sequence when last looked at


@contextlib.asynccontextmanager
async def read_decoded(
    nats_url: str, names: BusNames, batch: int
) -> AsyncIterator[AsyncIterator[DecodedBatch]]:
    """The stream from sequence 1 to its end, read and decoded by a reader process, in batches.

    Each batch holds up to ``batch`` messages (fewer when one reaches the stream's end).
    A message that did not decode (in the reader, or here when upcasting) is in
    ``undecodable``, not in ``records``. Leaving the context ends the reader process if it
    is still running. :class:`ReaderFailed` if it fails or ends before the stream's end.
    """
    environment = dict(os.environ)
    # This code where this process found it (also from a checkout rather than installed),
    # and not the working directory's (-P): it may hold a package of the same name.
    root = str(Path(services.__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (root, environment.get("PYTHONPATH")) if part
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-m",
        MODULE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=environment,
        limit=4 * _PIPE_SIZE,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(
            orjson.dumps(
                {
                    "url": nats_url,
                    "options": connect_options(nats_url),
                    "stream": names.stream,
                    "subjects": names.subjects,
                    "batch": batch,
                }
            )
        )
        await process.stdin.drain()
        process.stdin.close()
        batches = _Batches(process.stdout)
        yield batches
        if batches.ended:  # else the caller stopped early: the reader is ended below
            code = await process.wait()
            if code != 0:
                raise ReaderFailed(f"the stream reader exited with {code}")
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class _Batches:
    """The reader's frames as batches, until its end frame (``ended``)."""

    def __init__(self, stdout: asyncio.StreamReader) -> None:
        self._stdout = stdout
        self.ended = False

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> DecodedBatch:
        if self.ended:
            raise StopAsyncIteration
        try:
            (length,) = _LENGTH.unpack(await self._stdout.readexactly(_LENGTH.size))
            frame = orjson.loads(await self._stdout.readexactly(length))
        except asyncio.IncompleteReadError:
            raise ReaderFailed("the stream reader ended before the end of the stream") from None
        kind = frame[0]
        if kind == "end":
            self.ended = True
            raise StopAsyncIteration
        if kind == "error":
            raise ReaderFailed(f"the stream reader failed: {frame[1]}")
        _, position, target, rows, undecodable = frame
        # Here, not at the top: the reader process imports this module, not the upcasters.
        from services.projections.infrastructure.decoding import record_of  # noqa: PLC0415

        records: list[CaseEventRecord] = []
        undecodable = [(int(sequence), str(why)) for sequence, why in undecodable]
        for row in rows:
            try:
                records.append(record_of(row))
            except UndecodableEvent as error:
                undecodable.append((int(row[10]), str(error)))
        return DecodedBatch(records, undecodable, int(position), int(target))
