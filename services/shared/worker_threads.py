"""Blocking work sent from the event loop to kept worker threads, for less than anyio's hop.

What an API does per request in a worker thread (a command's load, rules and commit) goes
there through :func:`in_worker_thread`: the call and a copy of the caller's context (the
trace's span, as anyio gives it) on a queue read by kept threads, its result back through
``call_soon_threadsafe``. At most :data:`MAX_THREADS` calls run at once, anyio's default
too; more wait in the queue. A caller cancelled while its call runs waits for the call to
end before the cancellation goes on (as anyio's ``run_sync`` without abandoning), so
nothing the call uses is closed under it; a caller cancelled while its call still waits in
the queue takes it back (it never runs), as a cancellation while waiting for anyio's
capacity limiter did. A thread idle for :data:`IDLE_SECONDS` ends, as
anyio's do.

anyio's ``to_thread.run_sync`` does the same through a capacity limiter, a cancel scope,
run-variable look-ups and a ``queue.Queue`` (a Python lock and condition per call): about
30–40 µs of CPU per hop on the 2-core test machine against about 11 µs for this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

__all__ = ["MAX_THREADS", "in_worker_thread"]

T = TypeVar("T")
MAX_THREADS = 40  # anyio's default capacity limiter, which the API used before
IDLE_SECONDS = 10.0  # a thread idle this long ends, as anyio's workers do


class _Call:
    """One call for a worker thread, and its answer for the event loop."""

    __slots__ = ("args", "context", "done", "function", "future", "loop", "started", "taken_back", "waiting")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, function: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.context = contextvars.copy_context()
        self.function = function
        self.args = args
        self.done = False  # set on the event loop once the call has ended
        self.waiting: asyncio.Future[None] | None = None  # a cancelled caller waits on it
        # Under the workers' lock: a thread began the call / its caller took it back unstarted.
        self.started = False
        self.taken_back = False

    def answer(self, result: Any, error: BaseException | None) -> None:
        """On the event loop: the call's result or error for its caller."""
        self.done = True
        if self.waiting is not None:
            self.waiting.set_result(None)
        if self.future.done():  # the caller was cancelled
            return
        if error is None:
            self.future.set_result(result)
        elif isinstance(error, StopIteration):  # a future refuses it (it would end a generator)
            self.future.set_exception(RuntimeError(f"the call raised StopIteration: {error}"))
        else:
            self.future.set_exception(error)


class _Workers:
    def __init__(self) -> None:
        self.calls: SimpleQueue[_Call] = SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        # Threads waiting for a call less the calls queued; below zero, calls wait for a thread.
        self.waiting = 0

    def submit(self, call: _Call) -> None:
        with self.lock:
            if self.waiting <= 0 and self.threads < MAX_THREADS:
                # A thread for it first: if none can start, the call is not queued either.
                threading.Thread(target=self._work, name="API worker thread", daemon=True).start()
                self.threads += 1
                self.waiting += 1
            self.calls.put(call)
            self.waiting -= 1

    def take_back(self, call: _Call) -> bool:
        """Whether ``call`` was still queued: then it never runs (a thread passes over it)."""
        with self.lock:
            if call.started:
                return False
            call.taken_back = True
            return True

    def _work(self) -> None:
        while True:
            try:
                call = self.calls.get(timeout=IDLE_SECONDS)
            except Empty:
                with self.lock:
                    if self.waiting > 0:  # more threads wait than calls: this one ends
                        self.waiting -= 1
                        self.threads -= 1
                        return
                continue
            with self.lock:
                call.started = not call.taken_back
                if not call.started:  # its caller was cancelled before it began
                    self.waiting += 1
                    continue
            result, error = None, None
            try:
                result = call.context.run(call.function, *call.args)
            except BaseException as raised:  # handed to the caller, as anyio does
                error = raised
            with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits for the answer
                call.loop.call_soon_threadsafe(call.answer, result, error)
            del call, result, error  # not kept alive while the thread waits for the next call
            with self.lock:
                self.waiting += 1


_workers = _Workers()


async def in_worker_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread, in a copy of this context; its result or error here."""
    call = _Call(asyncio.get_running_loop(), function, args)
    _workers.submit(call)
    try:
        return await call.future  # type: ignore[no-any-return]
    except asyncio.CancelledError:
        if not call.done and not _workers.take_back(call):  # it runs: wait for its end, then go
            call.waiting = call.loop.create_future()
            while not call.waiting.done():
                try:
                    await asyncio.shield(call.waiting)
                except asyncio.CancelledError:
                    continue
        raise
