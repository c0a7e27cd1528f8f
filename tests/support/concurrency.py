"""Run calls in threads at the same time and collect what each returned or raised."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

BARRIER_TIMEOUT = 20.0  # a racer that fails before the barrier must not hang the others


def barrier(parties: int) -> threading.Barrier:
    return threading.Barrier(parties, timeout=BARRIER_TIMEOUT)


def run_concurrently(*calls: Callable[[], Any], timeout: float = 60.0) -> list[Any]:
    """Each call in its own thread; the results (or raised exceptions) in the calls' order."""
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            outcomes[index] = call()
        except BaseException as error:
            outcomes[index] = error

    threads = [
        threading.Thread(target=run, args=(index, call), name=f"racer-{index}", daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"still running after {timeout}s: {stuck}"
    return outcomes
