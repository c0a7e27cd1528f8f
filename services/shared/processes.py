"""Child processes that `vss up` and the embedded servers start: waiting until one is ready,
and stopping it without leaving it behind."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def wait_ready(ready: Callable[[], bool], alive: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Whether ``ready()`` held within ``timeout`` seconds, asked every ``interval``; False as
    soon as ``alive()`` does not hold (a process that exited will not become ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        if ready():
            return True
        time.sleep(interval)
    return False


def stop_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig``, then SIGKILL if the process has not exited within ``timeout`` seconds (one
    that exited already is left as it is)."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
