"""A call sent to a worker thread: its result, its error, the caller's context, and a
cancelled caller waiting for the call's end."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from services.shared import worker_threads
from services.shared.worker_threads import in_worker_thread

SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="none")


def test_the_call_runs_in_another_thread_and_returns_its_result() -> None:
    async def main() -> tuple[str, int]:
        return await in_worker_thread(lambda x: (threading.current_thread().name, x + 1), 41)

    name, result = asyncio.run(main())

    assert result == 42
    assert name != threading.current_thread().name


def test_the_calls_error_is_raised_to_the_caller() -> None:
    def refuse() -> None:
        raise LookupError("no such case")

    async def main() -> None:
        await in_worker_thread(refuse)

    with pytest.raises(LookupError, match="no such case"):
        asyncio.run(main())


def test_the_call_sees_the_callers_context_and_its_changes_stay_there() -> None:
    def read_and_set() -> str:
        seen = SPAN.get()
        SPAN.set("changed in the thread")
        return seen

    async def main() -> tuple[str, str]:
        SPAN.set("request span")
        seen = await in_worker_thread(read_and_set)
        return seen, SPAN.get()

    assert asyncio.run(main()) == ("request span", "request span")


def test_calls_at_once_each_get_their_own_answer() -> None:
    async def main() -> list[int]:
        return list(await asyncio.gather(*(in_worker_thread(lambda i=i: i * i) for i in range(50))))

    assert asyncio.run(main()) == [i * i for i in range(50)]


def test_a_cancelled_caller_waits_for_the_call_to_end() -> None:
    started, release = threading.Event(), threading.Event()
    ended: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        ended.append("ended")

    async def main() -> None:
        task = asyncio.create_task(in_worker_thread(slow))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the call
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended == ["ended"]

    asyncio.run(main())


def test_calls_beyond_the_limit_wait_for_a_thread_and_idle_threads_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = worker_threads._Workers()
    monkeypatch.setattr(worker_threads, "_workers", workers)
    monkeypatch.setattr(worker_threads, "MAX_THREADS", 2)
    monkeypatch.setattr(worker_threads, "IDLE_SECONDS", 0.05)
    running: set[str] = set()

    def busy(i: int) -> int:
        running.add(threading.current_thread().name + str(threading.get_ident()))
        time.sleep(0.01)
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(in_worker_thread(busy, i) for i in range(10))))

    assert asyncio.run(main()) == list(range(10))
    assert len(running) == 2  # ten calls, two threads
    deadline = time.monotonic() + 5
    while workers.threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (workers.threads, workers.waiting) == (0, 0)  # both ended once idle

    assert asyncio.run(in_worker_thread_once()) == "again"  # a new thread takes the next call
    assert workers.threads == 1


async def in_worker_thread_once() -> str:
    return await in_worker_thread(lambda: "again")


def test_a_call_raising_stop_iteration_answers_with_an_error_not_never() -> None:
    def exhausted() -> int:
        return next(iter([]))

    async def main() -> None:
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(in_worker_thread(exhausted), 5)

    asyncio.run(main())


def test_a_caller_cancelled_while_its_call_is_queued_takes_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = worker_threads._Workers()
    monkeypatch.setattr(worker_threads, "_workers", workers)
    monkeypatch.setattr(worker_threads, "MAX_THREADS", 1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def occupying() -> None:
        started.set()
        release.wait(5)

    async def main() -> None:
        first = asyncio.create_task(in_worker_thread(occupying))
        while not started.is_set():
            await asyncio.sleep(0.001)
        queued = asyncio.create_task(in_worker_thread(ran.append, "queued"))
        await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 1)  # at once: not held until the pool frees up
        release.set()
        await first
        assert await in_worker_thread(ran.append, "next") is None
        assert ran == ["next"]  # the cancelled call never ran

    asyncio.run(main())
    # The thread counts itself free again just after it sends the answer: wait for that.
    deadline = time.monotonic() + 2
    while workers.waiting != 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert workers.waiting == workers.threads == 1
