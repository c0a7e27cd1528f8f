"""The relay: publishes a store's notification log to a JetStream stream, in order, once.

How it keeps "exactly once, in order" through crashes (see docs/adr/0004-relay.md):

- **Resume from the stream, not a checkpoint.** At start and after any failure the
  relay reads the stream's last message and its ``Vss-Log-Position`` header, and
  publishes what the log holds after that position. Whatever the last run managed to
  store is the truth, so a kill between publish and ack can leave neither a gap nor a
  duplicate, and a stream that lost its tail is refilled.
- **Every publish asserts the stream's last sequence** (``Nats-Expected-Last-Sequence``):
  a message is stored only right after the one before it. That also works for atomic
  batches (which refuse ``Nats-Expected-Last-Msg-Id``). A refused publish means the
  relay's view is stale: it resynchronises from the tail.
- **Commits stay whole.** Consecutive events of one case are one commit (a command
  appends to one case, in one transaction, at consecutive positions) and go out inside a
  JetStream atomic batch, so no subscriber ever sees half of one; a page holding such a
  commit goes out as few batches of whole commits as the batch limit allows, since the
  server's cost is per batch (:func:`pack_commits`).
- **Pipelined, bounded.** Up to ``max_in_flight`` publishes wait for their acks; every
  wait has a timeout, after which the relay resynchronises.
- **One publisher.** A lease (see :mod:`.lease`) keeps a second relay waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck
from nats.js.errors import NotFoundError

from services.shared.bus.lease import Lease, LeaseLost
from services.shared.bus.names import BusNames
from services.shared.bus.streams import NO_LEADER_YET, case_stream_config, connect, declare_if_missing
from vss_contracts.subjects import HEADER_LOG_POSITION, HEADER_MSG_ID

log = structlog.get_logger("vss.bus.relay")

_T = TypeVar("_T")
_Row = TypeVar("_Row")

# A step of the relay's start (declare, lease) is retried on these: NATS is away for now.
_RETRY: tuple[type[Exception], ...] = (
    NatsTimeoutError,
    TimeoutError,
    OSError,
    ConnectionError,
    *NO_LEADER_YET,
)

MAX_ATOMIC_BATCH = 1000  # the server's default limit on messages in one atomic batch
BATCH_DUPLICATE_MSG_ID = 10201  # "atomic publish batch contains duplicate message id"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored event, ready to publish."""

    position: int  # in the store's log
    event_id: str
    subject: str
    body: bytes
    headers: dict[str, str]
    commit_key: str  # consecutive messages with the same key belong to one commit (the case id)


class EventLog(Protocol[_Row]):
    """The store side: its log in order, from a position (exclusive), in two steps.

    :meth:`fetch` is the I/O, :meth:`render` pure CPU. The relay renders in its event
    loop, and fetches there too when the log is ``local`` (SQLite), else in a worker
    thread, so that a slow database never stalls the acks and the lease. Not a thread for
    everything: CPU work holds the interpreter lock wherever it runs, and a worker thread
    that reads SQLite row by row must win the lock back from the busy publishing loop for
    every row, which costs more than the read itself (ADR 0004, decision 4).
    """

    @property
    def local(self) -> bool:
        """A fetch is a local file read (a page takes milliseconds), not a network round trip."""
        ...

    def fetch(self, after: int, limit: int) -> Sequence[_Row]:
        """Up to ``limit`` stored rows after position ``after``, as they come from the store."""
        ...

    def render(self, rows: Sequence[_Row]) -> Sequence[OutboxMessage]:
        """The rows as messages to publish (no I/O)."""
        ...


class LogWaiter(Protocol):
    """Returns when new events may have been committed, or after ``timeout`` seconds.

    Only the leading relay waits; :meth:`release` is called when it stops leading, to give
    up what only a leader should hold (the SQLite wake socket, :mod:`.wake`).
    """

    async def wait(self, timeout: float) -> None: ...

    def release(self) -> None: ...


class PollingWaiter:
    """For stores without notifications: just sleep a short while."""

    async def wait(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    def release(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RelaySettings:
    names: BusNames = field(default_factory=BusNames)
    replicas: int = 1
    read_limit: int = 500  # events read from the store at a time
    max_in_flight: int = 2000  # messages awaiting their ack (a batch counts all of its messages)
    ack_timeout: float = 5.0  # longest wait for one ack
    idle_wait: float = 0.01  # poll interval without notifications; the waiter may wait longer
    audit_interval: float = 5.0  # when idle, compare the stream's tail to our position this often
    lease_ttl: float = 10.0
    retry_backoff_max: float = 2.0


@dataclass(frozen=True, slots=True)
class Tail:
    last_sequence: int  # the stream's last sequence (what the next publish must expect)
    position: int  # log position of the last message the stream holds (0: none)


class ForeignMessage(Exception):
    """The stream's tail was not published by a relay."""


class Resync(Exception):
    """The relay's view of the stream is stale: read the tail again."""


@dataclass(slots=True)
class _InFlight:
    ack: asyncio.Future[PubAck]
    commit: list[OutboxMessage]
    last_sequence: int  # the stream sequence the commit's last message must get

    @property
    def last(self) -> OutboxMessage:
        return self.commit[-1]


def lease_bucket(names: BusNames) -> str:
    """The key-value bucket holding the relay's lease for a stream."""
    return f"{names.stream}_RELAY"


def group_commits(messages: Sequence[OutboxMessage], *, complete: bool) -> list[list[OutboxMessage]]:
    """Split a page of the log into commits (runs of one case), at most an atomic batch each.

    When the page was cut by the read limit (``complete=False``) its last run may
    continue beyond it, so it is held back for the next read, unless it is the whole
    page (a very long run is many commits of one case; publishing it in parts can then
    split at most one of them across two batches).
    """
    runs: list[list[OutboxMessage]] = []
    for message in messages:
        if runs and runs[-1][-1].commit_key == message.commit_key and len(runs[-1]) < MAX_ATOMIC_BATCH:
            runs[-1].append(message)
        else:
            runs.append([message])
    if not complete and len(runs) > 1:
        runs.pop()
    return runs


def pack_commits(
    commits: Sequence[list[OutboxMessage]], limit: int = MAX_ATOMIC_BATCH
) -> list[list[OutboxMessage]]:
    """Whole commits as the relay publishes them: each list one atomic batch, or one message alone.

    A page whose commits are all single events goes out as single messages (no batch to
    pay for); one with any commit of several events goes out as atomic batches of
    consecutive commits, packed up to ``limit`` messages, never splitting a commit. An
    atomic batch costs the server about as much whatever it holds (ADR 0004, decision 11),
    so one per page instead of one per multi-event commit.
    """
    if all(len(commit) == 1 for commit in commits):
        return list(commits)
    packed: list[list[OutboxMessage]] = []
    for commit in commits:
        if packed and len(packed[-1]) + len(commit) <= limit:
            packed[-1].extend(commit)
        else:
            packed.append(list(commit))
    return packed


class PublishRefused(Exception):
    """The stream answered a publish with an error."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.err_code = err_code


class AckInbox:
    """Acks of pipelined publishes, matched to futures by reply subject.

    nats-py's ``publish_async`` leaves a future pending for ever when the server answers
    with some errors (its error mapping raises inside the reply callback), which is how
    atomic batch errors come back; so the relay reads the replies itself.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()
        self.futures: dict[str, asyncio.Future[PubAck]] = {}
        self._next = 0
        self._sub: Subscription | None = None

    async def open(self) -> AckInbox:
        self._sub = await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_reply)
        return self

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()

    def reply_to(self) -> tuple[str, asyncio.Future[PubAck]]:
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self.futures[token] = future
        return f"{self.prefix}.{token}", future

    async def _on_reply(self, msg: Msg) -> None:
        future = self.futures.pop(msg.subject.rsplit(".", 1)[1], None)
        if future is None or future.done():
            return
        try:
            response = json.loads(msg.data)
        except ValueError:
            future.set_exception(PublishRefused(0, 0, f"unreadable ack {msg.data[:80]!r}"))
            return
        error = response.get("error")
        if error:
            future.set_exception(
                PublishRefused(error.get("code", 0), error.get("err_code", 0), error.get("description", ""))
            )
        else:
            future.set_result(PubAck.from_response(response))


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait until it has finished, cancelling again if it slipped one."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()  # retrieved so that asyncio does not log it as never retrieved


class Relay:
    def __init__(
        self,
        log_: EventLog[Any],
        nats_url: str,
        *,
        settings: RelaySettings | None = None,
        waiter: LogWaiter | None = None,
        name: str = "relay",
    ) -> None:
        self.log = log_
        self.nats_url = nats_url
        self.settings = settings or RelaySettings()
        self.waiter = waiter or PollingWaiter()
        self.owner = f"{name}-{uuid.uuid4().hex[:8]}"
        self.published = 0  # messages acknowledged by the stream to this relay, in this run
        # The log position the stream is known to hold through: acknowledged last, or the
        # stream's tail at a resume (publishes of a lost lease's leader land unacknowledged).
        # What progress is measured by: it always ends equal to the stream.
        self.position = 0
        self.terms = 0  # times this relay took the lease (more than one: it lost it meanwhile)
        self._refill: set[str] = set()  # event ids the server's de-dup remembers but the stream lost
        self._unacked = 0  # messages published and not yet acknowledged
        self._stopping = False

    # ------------------------------------------------------------------------ the process
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, declare the stream, hold the lease and publish until ``stop`` is set."""

        def stopping() -> bool:
            return stop.is_set()

        nc = await connect(self.nats_url, name=self.owner, stopping=stopping)
        # The lease on a connection of its own: its renewals never queue behind the
        # publishes in flight, whatever the publishing load.
        lease_nc: Client | None = None
        try:
            lease_nc = await connect(self.nats_url, name=f"{self.owner}-lease", stopping=stopping)
            js = nc.jetstream()
            await self._declare(js, stopping)
            names = self.settings.names
            lease = Lease(
                lease_nc.jetstream(),
                bucket=f"{names.stream}_RELAY",
                key="leader",
                owner=self.owner,
                ttl=self.settings.lease_ttl,
                replicas=self.settings.replicas,
            )
            while not stop.is_set():
                if not await self._acquire(lease, stopping):
                    break
                self.terms += 1
                try:
                    await self._run_leader(nc, js, lease, stop)
                except LeaseLost as error:
                    log.warning("relay.lease_lost", error=str(error))
            await lease.release()
        finally:
            for connection in (nc, lease_nc):
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.drain()

    async def _declare(self, js: JetStreamContext, stopping: Callable[[], bool]) -> None:
        config = case_stream_config(self.settings.names, replicas=self.settings.replicas)
        await self._retrying(lambda: declare_if_missing(js, config), stopping, "declare")

    async def _acquire(self, lease: Lease, stopping: Callable[[], bool]) -> bool:
        async def attempt() -> bool:
            return await lease.acquire(stopping)

        return await self._retrying(attempt, stopping, "lease")

    async def _retrying(
        self, action: Callable[[], Awaitable[_T]], stopping: Callable[[], bool], what: str
    ) -> _T:
        delay = 0.1
        while True:
            try:
                return await action()
            except _RETRY as error:
                if stopping():
                    raise
                log.warning("relay.retry", step=what, error=str(error) or type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(self.settings.retry_backoff_max, delay * 2)

    async def _run_leader(self, nc: Client, js: JetStreamContext, lease: Lease, stop: asyncio.Event) -> None:
        keeper = asyncio.create_task(lease.keep())
        stopper = asyncio.create_task(stop.wait())
        delay = 0.05
        try:
            while not stop.is_set():
                publisher = asyncio.create_task(self._publish_from_tail(nc, js))
                done, _ = await asyncio.wait(
                    {publisher, keeper, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if publisher not in done:
                    await cancel_and_wait(publisher)
                if keeper in done:
                    keeper.result()  # raises LeaseLost
                if stopper in done:
                    return
                error = publisher.exception()
                log.info("relay.resync", reason=str(error) or type(error).__name__, position=self.position)
                await asyncio.sleep(delay)
                delay = (
                    min(self.settings.retry_backoff_max, delay * 2) if not isinstance(error, Resync) else 0.05
                )
        finally:
            stopper.cancel()
            self.waiter.release()
            # Not one cancel and an await: a cancel landing as the keeper's renewal request
            # completes is swallowed by 3.11's wait_for inside nats-py, and the keeper then
            # renews forever, so the relay never stopped (seen once in CI). Cancel until done.
            await cancel_and_wait(keeper)

    # ----------------------------------------------------------------------- publishing
    async def tail(self, js: JetStreamContext) -> Tail:
        """Where the stream really is: its last sequence, and the log position of its last message."""
        names = self.settings.names
        info = await js.stream_info(names.stream)
        last_sequence = info.state.last_seq
        if info.state.messages == 0:
            return Tail(last_sequence, 0)
        try:
            message = await js.get_last_msg(names.stream, names.subjects)
        except NotFoundError:
            return Tail(last_sequence, 0)
        # Two reads, so the stream may have moved between them (a cancelled leader's last
        # publishes landing): the message's own sequence then goes with its position. A
        # lower one means the messages after it were deleted: the stream's last sequence
        # is still what the next publish must expect.
        last_sequence = max(last_sequence, message.seq or 0)
        position = (message.headers or {}).get(HEADER_LOG_POSITION)
        if position is None:
            # Someone else published on the case subjects (NATS permissions should stop that):
            # resuming from 0 would republish history, so refuse and say why.
            raise ForeignMessage(
                f"the last message of {names.stream} (sequence {message.seq}) has no {HEADER_LOG_POSITION}"
                " header: only the relay may publish on the case subjects"
            )
        return Tail(last_sequence, int(position))

    async def _read(self, after: int) -> Sequence[OutboxMessage]:
        log_, limit = self.log, self.settings.read_limit
        rows = log_.fetch(after, limit) if log_.local else await asyncio.to_thread(log_.fetch, after, limit)
        return log_.render(rows)

    async def _publish_from_tail(self, nc: Client, js: JetStreamContext) -> None:
        """Publish everything after the stream's tail, then follow the log; raises to resync."""
        settings = self.settings
        async with asyncio.timeout(settings.ack_timeout):
            tail = await self.tail(js)
        position, sequence = tail.position, tail.last_sequence
        self.position = position
        log.info("relay.resume", position=position, stream_sequence=sequence, stream=settings.names.stream)
        in_flight: deque[_InFlight] = deque()
        self._unacked = 0
        acks = await AckInbox(nc).open()
        last_audit = time.monotonic()
        held: list[OutboxMessage] = []  # the page's last run, until the next page shows where it ends
        reading: asyncio.Task[Sequence[OutboxMessage]] | None = None
        try:
            while True:
                fresh = await reading if reading is not None else await self._read(position)
                reading = None
                if not fresh and not held:
                    await self._settle(in_flight, all_=True)
                    if time.monotonic() - last_audit > settings.audit_interval:
                        await self._audit(js)
                        last_audit = time.monotonic()
                    await self.waiter.wait(settings.idle_wait)
                    continue
                full = len(fresh) == settings.read_limit
                if fresh:
                    # Read the next page while this one is published and acknowledged.
                    reading = asyncio.ensure_future(self._read(fresh[-1].position))
                page = [*held, *fresh]
                commits = pack_commits(group_commits(page, complete=not full))
                published = sum(len(commit) for commit in commits)
                held = page[published:]
                for commit in commits:
                    ack = await self._publish_commit(nc, acks, commit, sequence)
                    sequence += len(commit)
                    position = commit[-1].position
                    in_flight.append(_InFlight(ack, commit, sequence))
                    self._unacked += len(commit)
                    if self._unacked >= settings.max_in_flight:
                        await self._settle(in_flight, all_=False)
                await self._settle(in_flight, all_=False, only_done=True)
        finally:
            if reading is not None:
                reading.cancel()
            await acks.close()
            for left in in_flight:  # refusals nobody will wait for now: not "never retrieved" noise
                if left.ack.done() and not left.ack.cancelled():
                    left.ack.exception()

    async def _publish_commit(
        self, nc: Client, acks: AckInbox, commit: list[OutboxMessage], last_sequence: int
    ) -> asyncio.Future[PubAck]:
        """Publish one commit: a single message, or an atomic batch acked on its last message.

        A batch is sent whole even if the caller is cancelled (a lost lease): one left open
        would hold one of the server's few in-flight batch slots until it times out. (Not
        a single message: it cannot be half-sent, and a task per publish costs a loop turn.)
        """
        if len(commit) == 1:
            return await self._send_commit(nc, acks, commit, last_sequence)
        return await asyncio.shield(self._send_commit(nc, acks, commit, last_sequence))

    async def _send_commit(
        self, nc: Client, acks: AckInbox, commit: list[OutboxMessage], last_sequence: int
    ) -> asyncio.Future[PubAck]:
        batch = uuid.uuid4().hex if len(commit) > 1 else None
        for index, message in enumerate(commit, start=1):
            h = dict(message.headers)
            if message.event_id in self._refill:  # the server's de-dup window still holds the lost one
                h[HEADER_MSG_ID] = f"{message.event_id}:refill:{last_sequence}"
            if index == 1:
                h[Header.EXPECTED_LAST_SEQUENCE] = str(last_sequence)
            if batch is not None:
                h[Header.BATCH_ID] = batch
                h[Header.BATCH_SEQUENCE] = str(index)
            if index < len(commit):
                await nc.publish(message.subject, message.body, headers=h)
                continue
            if batch is not None:
                h[Header.BATCH_COMMIT] = "1"
            reply, ack = acks.reply_to()
            await nc.publish(message.subject, message.body, reply=reply, headers=h)
            return ack
        raise ValueError("an empty commit")

    async def _settle(self, in_flight: deque[_InFlight], *, all_: bool, only_done: bool = False) -> None:
        """Take acks off the front in order: all, or until the window has room, or those done."""
        while in_flight:
            head = in_flight[0]
            if only_done and not head.ack.done():
                return
            if not all_ and not only_done and self._unacked < self.settings.max_in_flight // 2:
                return
            try:
                async with asyncio.timeout(self.settings.ack_timeout):
                    ack = await asyncio.shield(head.ack)
            except PublishRefused as error:
                if error.err_code == BATCH_DUPLICATE_MSG_ID:  # a batch's form of a duplicate ack
                    self._refill.update(m.event_id for m in head.commit)
                raise Resync(f"publish at position {head.commit[0].position} refused: {error}") from error
            except TimeoutError as error:
                raise Resync(
                    f"no ack within {self.settings.ack_timeout}s at position {head.last.position}"
                ) from error
            in_flight.popleft()
            self._unacked -= len(head.commit)
            if ack.duplicate:
                # Only possible if the stream lost messages its de-dup window remembers.
                self._refill.update(m.event_id for m in head.commit)
                raise Resync(f"the stream refused position {head.commit[0].position} as a duplicate")
            if ack.seq != head.last_sequence:
                raise Resync(f"stored at sequence {ack.seq}, expected {head.last_sequence}")
            self.published += len(head.commit)
            self.position = head.last.position
            self._refill.difference_update(m.event_id for m in head.commit)

    async def _audit(self, js: JetStreamContext) -> None:
        """Idle check that the stream still ends where we think (it may have lost its tail)."""
        async with asyncio.timeout(self.settings.ack_timeout):
            tail = await self.tail(js)
        if tail.position != self.position:
            raise Resync(f"the stream ends at position {tail.position}, the relay at {self.position}")
