"""Waiting for a child process to be ready: the look, without a process."""

from __future__ import annotations

from services.shared.processes import wait_ready


def test_a_process_that_becomes_ready_is_waited_for() -> None:
    looks = iter([False, False, True])
    assert wait_ready(lambda: next(looks), lambda: True, timeout=5.0, interval=0.001)


def test_a_process_that_exited_is_not_waited_for_until_the_timeout() -> None:
    asked: list[str] = []

    def ready() -> bool:
        asked.append("ready")
        return True

    assert not wait_ready(ready, lambda: False, timeout=60.0, interval=0.001)
    assert asked == []  # an exited process is never taken for a ready one


def test_a_process_never_ready_is_given_up_after_the_timeout() -> None:
    assert not wait_ready(lambda: False, lambda: True, timeout=0.02, interval=0.005)
