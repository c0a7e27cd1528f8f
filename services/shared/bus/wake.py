"""Wake-ups on commit for a relay over a local store (SQLite): one datagram per commit.

The store's writers (the case API processes) send one byte on a Unix datagram socket
whose path derives from the store file's (``<store>.relay-wake``); the leading relay binds
it and returns from its idle wait when a byte arrives, instead of at its next poll. Only
a latency improvement (ADR 0004, decision 9): a send is non-blocking and best-effort (no
relay bound, a full queue, any error: ignored), and the relay reads the store from its
position after every wake *or* timeout, so a lost wake delays events by one poll at most.

A writer rings only while the relay waits (ADR 0032): the first byte of the lock file
(``<store>.relay-wake.lock``, mapped by both sides) is 1 while the leading relay waits and 0
while it reads or publishes, or while no relay is bound. The relay sets it to 1 and reads
the store once more before it blocks, so a commit that saw 0 is read without a ring; a
datagram wakes a process on another core, which on this kind of machine costs a writer
more than the rest of its commit's Python work after the ``fsync``.

Every relay over a local store wakes this way: the case store's, and the meetings,
notifications and sharing services' outboxes (:func:`store_bell` for their writers,
:func:`outbox_relay` for their relays).

One relay holds the socket: whoever holds an exclusive ``flock`` on ``<store>.relay-wake.lock``
(released by the kernel when its process dies). Only the holder binds, so a socket file
found there was left by a dead holder and is removed safely; a relay that cannot take the
lock polls at the short interval and tries again every ``retry_bind`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import socket
import stat
import time
from typing import Any

import structlog

from services.shared.bus.names import BusNames
from services.shared.bus.relay import EventLog, LogWaiter, PollingWaiter, Relay, RelaySettings
from services.shared.eventstore import EventStoreUrl
from services.shared.settings import BusSettings

log = structlog.get_logger("vss.bus.wake")

WAKE_SUFFIX = ".relay-wake"
LOCK_SUFFIX = ".lock"  # after the socket's path: <store>.relay-wake.lock
# A socket's path must fit sun_path with its NUL: 108 bytes on Linux, 104 on macOS.
MAX_SOCKET_PATH = 103
_DRAIN_MAX = 1024  # datagrams read off at most per wait (a flood cannot hold the relay here)
WAITING, BUSY = 1, 0  # the lock file's first byte: whether writers should ring
LOOK_AGAIN_MAPPED = 1.0  # seconds between checks that a mapped lock file is still the store's


def wake_path(store_path: str) -> str | None:
    """Where wake-ups for the store at ``store_path`` go; None if it cannot have any.

    None for an in-memory database, without Unix sockets, or when the absolute path is
    too long for a socket address (the relay then only polls).
    """
    if not store_path or store_path == ":memory:" or store_path.startswith("file:"):
        return None
    if not hasattr(socket, "AF_UNIX"):
        return None
    # The real path: the API and the relay name the one file alike, through symlinks or not.
    path = os.path.realpath(store_path) + WAKE_SUFFIX
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        return None
    return path


class CommitBell:
    """The writer's side: after each commit, one non-blocking datagram while the relay
    waits (the lock file's first byte is ``WAITING``); every error ignored.

    Safe from several threads (one ``sendto`` each) and several processes (each its own bell).
    """

    def __init__(self, path: str | None, *, look_again: float = 0.05) -> None:
        self.path = path
        self.look_again = look_again  # seconds between looks for a relay's lock file not found
        self._sock: socket.socket | None = None
        self._flag: mmap.mmap | None = None  # the lock file's first byte, once found
        self._flag_inode = 0
        self._next_look = 0.0
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock

    def ring(self) -> None:
        sock = self._sock
        if sock is None:
            return
        flag = self._flag
        if time.monotonic() >= self._next_look:
            flag = self._look()
        try:
            if flag is None or flag[0] != WAITING:
                return  # no relay waits: the leader reads the store again before it waits
        except ValueError:  # closed by another thread meanwhile
            return
        # No relay bound (ENOENT, ECONNREFUSED), its queue full (EAGAIN): the poll finds the events.
        with contextlib.suppress(OSError):
            sock.sendto(b"\x01", self.path)  # type: ignore[arg-type]  # path is set with the socket

    def _look(self) -> mmap.mmap | None:
        """Map the lock file's first byte (the relay creates it), or look again later; a file
        replaced since (another inode) is mapped afresh."""
        assert self.path is not None
        self._next_look = time.monotonic() + (self.look_again if self._flag is None else LOOK_AGAIN_MAPPED)
        try:
            fd = os.open(self.path + LOCK_SUFFIX, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return self._flag
        try:
            status = os.fstat(fd)
            if status.st_ino == self._flag_inode and self._flag is not None:
                return self._flag
            if status.st_size < 1:
                return self._flag  # a relay of a version without the flag: it polls
            flag = mmap.mmap(fd, 1, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError):
            return self._flag
        finally:
            os.close(fd)
        self._flag, self._flag_inode = flag, status.st_ino
        return flag

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._flag is not None:
            self._flag.close()
            self._flag = None


def store_bell(store: EventStoreUrl) -> CommitBell:
    """The bell a store's writers ring after a commit that gives its relay something to
    publish; silent on PostgreSQL (no socket: the relay learns otherwise, or polls)."""
    return CommitBell(None if store.is_postgres else wake_path(store.sqlite_path()))


def store_waiter(store: EventStoreUrl, *, wake: bool = True, bound_wait: float = 0.1) -> LogWaiter:
    """How a relay over ``store`` waits: on SQLite with ``wake``, the commits' datagrams
    (polling every ``bound_wait`` while bound, at the relay's interval while not); else
    polling alone."""
    if wake and not store.is_postgres:
        return WakeWaiter(wake_path(store.sqlite_path()), bound_wait=bound_wait)
    return PollingWaiter()


def outbox_relay(
    log: EventLog[Any],
    settings: BusSettings,
    store: EventStoreUrl,
    names: BusNames,
    *,
    name: str,
    relay_settings: RelaySettings | None = None,
) -> Relay:
    """The relay of a service's outbox in ``store`` to the stream ``names`` name, on the
    settings' NATS, waiting as they say (``VSS_RELAY_WAKE``, ``VSS_RELAY_WAKE_POLL_INTERVAL``)."""
    return Relay(
        log,
        settings.nats(),
        settings=relay_settings or RelaySettings(names=names, replicas=settings.nats_replicas),
        waiter=store_waiter(store, wake=settings.relay_wake, bound_wait=settings.relay_wake_poll_interval),
        name=name,
    )


class WakeWaiter:
    """The relay's :class:`~services.shared.bus.relay.LogWaiter` over a local store.

    Binds the wake socket at its first wait (only the leading relay waits, so a standby
    never holds it) and gives it up in :meth:`release` (the relay stopped leading).
    Bound, a wait returns on a datagram or after ``bound_wait`` (the fallback poll, longer
    than the relay's short one since commits wake it); unbound, it sleeps the relay's
    ``timeout`` as :class:`~services.shared.bus.relay.PollingWaiter` does.
    """

    def __init__(self, path: str | None, *, bound_wait: float = 0.1, retry_bind: float = 1.0) -> None:
        self.path = path
        self.bound_wait = bound_wait
        self.retry_bind = retry_bind
        self.wakes = 0  # waits ended by a datagram rather than the timeout
        self._sock: socket.socket | None = None
        self._lock: int | None = None  # the lock file's descriptor, flocked while bound
        self._flag: mmap.mmap | None = None  # the lock file's first byte, while bound
        self._armed = False  # the flag says WAITING and the store was read since
        self._next_try = 0.0
        self._just_bound = False
        self._told: str | None = None  # the last reason logged for not binding (logged once)

    @property
    def bound(self) -> bool:
        return self._sock is not None

    async def wait(self, timeout: float) -> None:
        sock = self._bind_if_due()
        if sock is None:
            await asyncio.sleep(timeout)
            return
        if self._just_bound:
            # A commit between the relay's last read and the bind rang no one: read again now.
            self._just_bound = False
            return
        if self._drain(sock):  # rung while the relay was reading or publishing
            self._busy()
            self.wakes += 1
            return
        if not self._armed:
            # Ask writers to ring from now on, then let the relay read once more: a commit
            # that saw BUSY rang no one, and that read finds it.
            self._set_flag(WAITING)
            self._armed = True
            return
        loop = asyncio.get_running_loop()
        rung: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not rung.done():
                rung.set_result(None)

        fd = sock.fileno()
        loop.add_reader(fd, on_readable)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, self.bound_wait)):
                    await rung
        finally:
            loop.remove_reader(fd)
        if self._drain(sock):
            self._busy()
            self.wakes += 1
        # After a timeout it stays armed: a commit during the relay's read still rings.

    def _busy(self) -> None:
        """Woken: writers need not ring while the relay reads and publishes."""
        self._set_flag(BUSY)
        self._armed = False

    def _set_flag(self, value: int) -> None:
        if self._flag is not None:
            self._flag[0] = value

    def release(self) -> None:
        """Unbind: close and remove the socket, then drop the lock (in that order: the
        next holder's socket must never be the one removed)."""
        sock, lock, flag = self._sock, self._lock, self._flag
        self._sock = self._lock = self._flag = None
        self._just_bound = self._armed = False
        if flag is not None:
            flag[0] = BUSY  # no relay waits now: writers stop ringing
            flag.close()
        if sock is not None:
            sock.close()
            if self.path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
        if lock is not None:
            os.close(lock)  # closing the descriptor releases the flock

    async def close(self) -> None:
        self.release()

    # ---------------------------------------------------------------------------- binding
    def _bind_if_due(self) -> socket.socket | None:
        if self._sock is not None or self.path is None:
            return self._sock
        now = time.monotonic()
        if now < self._next_try:
            return None
        self._next_try = now + self.retry_bind
        self._bind(self.path)
        return self._sock

    def _bind(self, path: str) -> None:
        try:
            lock = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            self._tell("relay.wake_unavailable", f"cannot open the lock file: {error}")
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            self._tell("relay.wake_held_elsewhere", "another relay holds the wake socket")
            return
        sock: socket.socket | None = None
        flag: mmap.mmap | None = None
        try:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    raise OSError(f"{path} exists and is not a socket")
                os.unlink(path)  # left by a holder that died: only a holder binds, and we hold the lock
            flag = _map_flag(lock)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(path)
        except OSError as error:
            if sock is not None:
                sock.close()
            if flag is not None:
                flag.close()
            os.close(lock)
            self._tell("relay.wake_unavailable", str(error))
            return
        self._sock, self._lock, self._flag, self._just_bound, self._told = sock, lock, flag, True, None
        self._armed = False
        log.info("relay.wake_bound", path=path, fallback_poll=self.bound_wait)

    def _tell(self, event: str, reason: str) -> None:
        if reason != self._told:
            log.warning(event, path=self.path, reason=reason, retry_in=self.retry_bind)
            self._told = reason

    @staticmethod
    def _drain(sock: socket.socket) -> bool:
        """Read off the queued datagrams (one read of the store answers them all)."""
        got = False
        for _ in range(_DRAIN_MAX):
            try:
                sock.recv(16)
            except OSError:  # nothing queued (EAGAIN), or the socket is gone
                break
            got = True
        return got


def _map_flag(lock: int) -> mmap.mmap:
    """The lock file's first byte, shared with the writers' bells, set to BUSY (a relay
    that died waiting left WAITING; this one has not read the store yet)."""
    if os.fstat(lock).st_size < 1:
        os.ftruncate(lock, 1)
    flag = mmap.mmap(lock, 1, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    flag[0] = BUSY
    return flag
