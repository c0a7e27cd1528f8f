"""The durable-consumer policy of :mod:`.consumer`, as a FastStream JetStream pull subscriber.

What is FastStream configuration (see docs/adr/0012):

- ``JStream(stream, declare=False)``: the subscriber binds to the stream, never declares or
  updates it (by default ``broker.start()`` would overwrite the owner's configuration);
- ``AckPolicy.MANUAL``: FastStream acknowledges nothing (by default it terminates a message
  on any exception: no redelivery); the kit acks after the handler's transaction;
- ``fetch_batch=1``: ``PullSub(batch_size=1)`` and ``max_ack_pending=1`` on the durable, one
  message at a time in stream order, the server itself holding back the next message until
  this one is acknowledged (a round trip per message);
- a FastStream decoder turns the body into the contracts' CloudEvent (:func:`.consumer.decode`).

What the kit adds, because FastStream has no notion of it:

- **resume at the handler's stored sequence + 1**: before the subscriber starts, when a
  handler's state is replaced and after a reconnect, the durable is pointed there
  (:func:`.consumer.point_durable_at`);
- **redelivery skipped by sequence**, and the sequence recorded in the handler's transaction
  (the :class:`.consumer.Handler` protocol);
- **retries in place** with backoff (the message kept in progress, nothing overtakes it), then
  a **dead letter** with the reason (:func:`.consumer.dead_letter_headers`), the sequence
  passed over, and the message rejected: FastStream's metrics count it as ``rejected``;
- **a pull handled in order** (``fetch_batch > 1``, the default): FastStream's
  ``PullSub(batch_size>1)`` starts a task per message of a pull, so order is lost
  (``test_faststream_pull_batch_handles_messages_in_stream_order``). The kit's subscriber is
  FastStream's pull subscriber with its pull loop replaced (:class:`InOrderPullSubscriber`):
  each message's handling ends before the next one's starts, and every message still goes
  through FastStream's middlewares (metrics, traces) on its own. The re-pointing after a
  reconnect keeps the order: a pull's tail lost in transit would otherwise be redelivered
  after ``ack_wait``, behind later messages; so does the re-pointing when a pull's sequences
  pass over a message of the stream (lost on the way without a reconnect: a cluster node);
- **a pull in one transaction** for a :class:`.consumer.BatchHandler`: FastStream's batch
  subscriber without its linger (:class:`PromptBatchPullSubscriber`), the pull applied in one
  call; if that fails, or a message does not decode, its messages go one by one as above.
  FastStream's middlewares then see the pull as one message (one span, linked to each
  event's trace; the metrics count its messages);
- **a pull acknowledged once**: with pulls of more than one message the durable's ack policy
  is ``AckAll`` (an ack covers every message before it), and the kit acks a message only once
  it and all before it are applied, passed over or dead-lettered, so a whole pull applied in
  one transaction takes one ack, of its last message, after the commit. A durable found with
  another ack policy is recreated where the handler's state is (:func:`.consumer.point_durable_at`).

A service runs its subscribers on its one broker with :func:`run_subscribers` (built with
:func:`broker_of` and :func:`subscriber_of` from its ``Subscription`` values); its
``/metrics`` reads their counters (``applied``, ``skipped``, ``dead_lettered``,
``handler_seconds``, ``caught_up``) and their lag, as :mod:`services.shared.metrics` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import structlog
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsBatchMessage
from faststream.nats.message import NatsMessage as NatsStreamMessage
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity
from faststream.nats.subscriber.usecases import (
    BatchPullStreamSubscriber,
    LogicSubscriber,
    PullStreamSubscriber,
)
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, StatusCode
from nats.js.errors import NotFoundError, ServiceUnavailableError
from pydantic import PlainValidator

from services.shared import tracing
from services.shared.bus.authorization import NatsAuth
from services.shared.bus.consumer import (
    CatchingUp,
    ConsumerSettings,
    Delivery,
    GiveUp,
    Handler,
    Lag,
    StateReplaced,
    Subscription,
    Undecodable,
    _first_line,
    apply_in_place,
    dead_letter_headers,
    decode,
    point_durable_at,
)
from services.shared.bus.faststream_tracing import telemetry_middlewares
from services.shared.bus.streams import (
    dead_letter_stream_config,
    declare_if_missing,
    server_urls,
    wait_for_stream,
)
from services.shared.settings import BusSettings
from vss_contracts.envelope import CloudEvent

log = structlog.get_logger("vss.bus.faststream")

MORE_WAIT = 0.005  # after one message arrived: how long the pull for the rest may linger
UNAVAILABLE_PAUSE = 0.5  # seconds between pulls while the server cannot answer one
ACK_DELAY = 1.0  # seconds at most that a pull applied one by one holds back its acks


def service_broker(
    url: str, *, name: str, middlewares: Sequence[Any] = (), auth: NatsAuth | None = None
) -> NatsBroker:
    """A service's FastStream broker, connecting as :func:`.streams.connect` does.

    Reconnects for ever; connects as the process's NATS user (``auth``, else the one its
    settings name, as ``connect``); logs each message's receipt at debug level, not info.
    ``middlewares``: :attr:`.faststream_metrics.BusMetrics.middleware`, the tracing ones.
    """
    if auth is None:
        auth = BusSettings().nats_auth()
    security: NatsSecurity | None = None
    if auth.seed_file is not None:
        security = NatsNKey(auth.seed_file)
    elif auth.creds_file is not None:
        security = NatsCredentials(str(auth.creds_file))
    options: dict[str, Any] = {"inbox_prefix": auth.inbox_prefix} if auth.inbox_prefix else {}
    return NatsBroker(
        server_urls(url),
        name=name,
        security=security,
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; annotated int, slept as a float
        log_level=logging.DEBUG,
        middlewares=tuple(middlewares),
        **options,
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """What the kit's decoder gives the handler: the message, and its :class:`Delivery` or why
    there is none (returned, not raised: an undecodable message is dead-lettered like any other
    that cannot be applied, and a raised error would leave it unacknowledged)."""

    message: NatsStreamMessage
    delivery: Delivery | None
    error: Undecodable | None = None


def cloud_event_decoder(
    decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data,
) -> Callable[[NatsStreamMessage], Awaitable[Incoming]]:
    """FastStream's decoder for the kit: the message's CloudEvent (its payload decoded when read).

    The message travels with it so that the handler needs no ``Context`` parameter: FastStream
    resolves those in a worker thread, three thread hops per message.
    """

    async def decode_cloud_event(message: NatsStreamMessage) -> Incoming:
        try:
            return Incoming(message, decode(message.raw_message, decode_data))
        except Undecodable as error:
            return Incoming(message, None, error)

    return decode_cloud_event


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    """A pull's messages, each with its :class:`Delivery` or why there is none (batch mode)."""

    items: list[tuple[Msg, Delivery | None, Undecodable | None]]


def cloud_event_batch_decoder(
    decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data,
) -> Callable[[NatsBatchMessage], Awaitable[IncomingBatch]]:
    """The batch mode's decoder: every message of the pull, as :func:`cloud_event_decoder` does."""

    async def decode_cloud_events(message: NatsBatchMessage) -> IncomingBatch:
        items: list[tuple[Msg, Delivery | None, Undecodable | None]] = []
        for raw in message.raw_message:
            try:
                items.append((raw, decode(raw, decode_data), None))
            except Undecodable as error:
                items.append((raw, None, error))
        return IncomingBatch(items)

    return decode_cloud_events


class _Settle(Protocol):
    """How one message is acknowledged: FastStream's message, or the raw one in a batch."""

    async def ack(self) -> None: ...

    async def reject(self) -> None: ...

    async def in_progress(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _RawSettle:
    raw: Msg

    async def ack(self) -> None:
        await self.raw.ack()

    async def reject(self) -> None:
        await self.raw.term()

    async def in_progress(self) -> None:
        await self.raw.in_progress()


async def _pull(
    subscription: JetStreamContext.PullSubscription, batch: int, timeout: float | None, held: int = 0
) -> list[Msg]:
    """The next pull: up to ``batch`` messages in stream order, as soon as what is there arrived.

    ``held``, what the server said it still held when it sent the last message of the previous
    pull, is asked for at once (one request that does not linger). Otherwise, or if another
    instance took those meanwhile: wait for the next message, then take at once what else the
    server said it held. (One ``fetch`` of the whole batch would linger until it is full or
    times out.)
    """
    messages: list[Msg] = []
    try:
        with contextlib.suppress(NatsTimeoutError, TimeoutError):
            if held > 0:
                messages = await _take_more(subscription, min(batch, held), MORE_WAIT)
            if not messages:
                messages = await subscription.fetch(1, timeout=timeout)
                wanted = min(batch - 1, _held_after(messages))
                if wanted > 0:
                    messages += await _take_more(subscription, wanted, MORE_WAIT)
    except (ConnectionClosedError, ServiceUnavailableError):
        # No server to pull from (a restart, a leader election): a pause, not a busy loop.
        await asyncio.sleep(UNAVAILABLE_PAUSE)
    return messages


def _sequence(raw: Msg) -> int:
    return int(raw.metadata.sequence.stream)


def _held_after(messages: Sequence[Msg]) -> int:
    """What the server still held for the durable when it sent the last of ``messages``."""
    return (messages[-1].metadata.num_pending or 0) if messages else 0


async def _take_more(subscription: JetStreamContext.PullSubscription, wanted: int, wait: float) -> list[Msg]:
    """Up to ``wanted`` messages the server holds now: one pull that does not linger
    (``no_wait``), its messages taken from the subscription's queue as they arrive, none more
    than ``wait`` after the one before.

    Not ``fetch(wanted)``: nats-py awaits each message of a pull through a task of its own
    with a timeout (a uuid, a task, a ``wait_for``), which cost more per message than the
    rest of the bus's work on it. This reads the same queue ``fetch`` reads and keeps its
    byte count (a slow-consumer limit is counted on it). A message that comes later stays in
    the queue, in order, for the next pull, which takes it first.
    """
    sub = subscription._sub
    queue = sub._pending_queue
    request = json.dumps({"batch": wanted, "no_wait": True}).encode()
    await subscription._nc.publish(subscription._nms, request, subscription._deliver)
    messages: list[Msg] = []
    with contextlib.suppress(TimeoutError):
        while len(messages) < wanted:
            if queue.empty():
                async with asyncio.timeout(wait):
                    msg = await queue.get()
            else:
                msg = queue.get_nowait()
            sub._pending_size -= len(msg.data)
            status = JetStreamContext.is_status_msg(msg)
            if status is None:
                messages.append(msg)
            elif status != StatusCode.CONTROL_MESSAGE:
                break  # no more now (404), or the pull ended otherwise: the next pull asks again
    return messages


class HandlerUnavailable(Exception):
    """The handler could not say where its state is (its store away): not a bus fault that a
    retry fixes, so the subscriber fails and the service ends, to be started again."""


# What a NATS outage raises while a message is handled: left unacknowledged, and the durable
# re-pointed after the reconnect. Anything else escaping the handling ends the service.
_BUS_FAULTS: tuple[type[Exception], ...] = (NatsError, TimeoutError, OSError)


def _nothing_pulled() -> None:
    pass


async def _pull_handled() -> None:
    pass


async def _pull_loop(
    subscriber: PullStreamSubscriber | BatchPullStreamSubscriber,
    handle: Callable[[list[Msg]], Awaitable[bool]],
    found_nothing: Callable[[], None],
) -> None:
    """Pull, hand each pull to ``handle`` (False: stopped partway), until the subscriber stops.

    What the server said it still held after a pull is asked for at once by the next one. One
    pull at a time: asking for the next while this one was applied gained nothing measurable
    in ``bench/consumer.py`` (the time goes to work under the GIL, not to waiting).
    """
    assert subscriber.subscription is not None
    subscription = subscriber.subscription
    batch, timeout = subscriber.pull_sub.batch_size, subscriber.pull_sub.timeout
    held = 0
    while subscriber.running:
        messages = await _pull(subscription, batch, timeout, held)
        if not subscriber.running:
            return  # unacknowledged: redelivered to the durable re-pointed at start
        if not messages:
            found_nothing()
            held = 0
            continue
        held = _held_after(messages)
        if not await handle(messages):
            return


class InOrderPullSubscriber(PullStreamSubscriber):
    """FastStream's JetStream pull subscriber, handling the messages of one pull one after another.

    Only the pull loop differs (:func:`_pull_loop`): it waits for the next message, then takes
    at once what else is there (up to ``batch_size``; one ``fetch`` of the whole batch would
    linger until it is full or times out), and awaits each message's handling before the next
    one's. A pull that finds nothing calls ``found_nothing`` (the kit's subscriber: caught up);
    one handled, or left partway on a stop, calls ``pull_handled`` (the kit's subscriber: the
    pull's one ack).
    """

    __slots__ = ()
    found_nothing: Callable[[], None] = staticmethod(_nothing_pulled)
    pull_handled: Callable[[], Awaitable[None]] = staticmethod(_pull_handled)

    async def _consume_pull(self, cb: Callable[[Msg], Coroutine[Any, Any, Any]]) -> None:
        async def one_by_one(messages: list[Msg]) -> bool:
            for msg in messages:
                if not self.running:
                    # The rest is redelivered (the durable is re-pointed at start).
                    with contextlib.suppress(*_BUS_FAULTS):
                        await self.pull_handled()
                    return False
                await cb(msg)
            await self.pull_handled()
            return True

        await _pull_loop(self, one_by_one, self.found_nothing)


class PromptBatchPullSubscriber(BatchPullStreamSubscriber):
    """FastStream's batch pull subscriber without the linger: a pull is handed on as soon as
    what is there has arrived, rather than when the batch is full or ``timeout`` has passed
    (:func:`_pull_loop`)."""

    __slots__ = ()
    found_nothing: Callable[[], None] = staticmethod(_nothing_pulled)

    async def _consume_pull(self) -> None:
        async def whole(messages: list[Msg]) -> bool:
            await self.consume(messages)
            return True

        await _pull_loop(self, whole, self.found_nothing)


def _unchanged(value: Any) -> Any:
    return value


def documented(
    handle: Callable[[Any], Awaitable[None]], message: Any
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """``handle`` as a FastStream handler whose one parameter FastStream's AsyncAPI document
    describes as ``message`` (a pydantic model or annotation), while the handler is given what
    the kit's decoder made, unchanged: a validator that returns its input, documented as
    ``message``. (FastStream's ``NoCast`` would leave the message out of the document.)"""

    async def on_message(decoded: Any) -> None:
        await handle(decoded)

    on_message.__name__ = on_message.__qualname__ = handle.__name__.lstrip("_")
    on_message.__annotations__ = {
        "decoded": Annotated[Any, PlainValidator(_unchanged, json_schema_input_type=message)],
        "return": None,
    }
    return on_message


class FastStreamSubscriber(CatchingUp):
    """A service's :class:`Handler` behind a FastStream subscriber on ``broker``.

    Call :meth:`prepare` once the broker may connect and before ``broker.start()`` (for a
    FastStream application: ``on_startup``), so that the durable resumes where the handler's
    state is (:func:`run_subscribers` does both). ``settings.fetch_batch``: the most messages
    one pull takes (1: one message in flight). ``message``: what FastStream's AsyncAPI document shows as
    the subscriber's message (default the contracts' CloudEvent; :mod:`.faststream_asyncapi`
    passes the event types a service's consumer acts on); the handler gets the decoded message
    whatever it says.
    """

    reconnect_check = 0.2  # seconds between looks at the connection's reconnect count

    def __init__(
        self, broker: NatsBroker, handler: Handler, settings: ConsumerSettings, *, message: Any = CloudEvent
    ) -> None:
        self.broker = broker
        self.handler = handler
        self.settings = settings
        self.applied = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.retries = 0
        self.handler_seconds = 0.0  # time spent in the handler (retries included), for /metrics
        self._caught_up = False
        self.reached_end = False
        self._position = 0
        # With pulls (an AckAll durable) a message applied one by one is acknowledged with its
        # pull's last (:meth:`ack_pull`): the last such message, and when the first was applied.
        self._unacked: Msg | None = None
        self._unacked_since = 0.0
        self._repointing: asyncio.Task[None] | None = None
        self._reconnects = 0  # the connection's reconnect count the durable was last pointed at
        self._watcher: asyncio.Task[None] | None = None
        # Why the subscriber stopped for good (a failure no retry fixes); ``failed`` is set then.
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        batch = max(1, settings.fetch_batch)
        # A handler that can apply a pull in one transaction gets the pull whole.
        self.batched = batch > 1 and callable(getattr(handler, "apply_batch", None))
        decoder = cloud_event_batch_decoder if self.batched else cloud_event_decoder
        self.subscriber: LogicSubscriber[Any] = broker.subscriber(
            self.filter_subject,
            stream=JStream(settings.names.stream, declare=False),
            durable=settings.durable,
            pull_sub=PullSub(batch_size=batch, timeout=settings.fetch_timeout, batch=self.batched),
            config=self.consumer_config(),
            ack_policy=AckPolicy.MANUAL,
            decoder=decoder(settings.decode_data),
            title=f"{settings.durable}:{settings.names.stream}",
            description=f"VSS service {settings.durable}: applies {self.filter_subject} to its own state",
        )
        # Same slots, only the pull loop overridden: FastStream's registration stays as it is.
        pull_loop: InOrderPullSubscriber | PromptBatchPullSubscriber
        if self.batched:
            self.subscriber.__class__ = PromptBatchPullSubscriber
            self.subscriber(documented(self._on_batch, list[message]))
        else:
            self.subscriber.__class__ = InOrderPullSubscriber
            self.subscriber(documented(self._on_message, message))
        pull_loop = self.subscriber  # type: ignore[assignment]  # its class was set just above
        pull_loop.found_nothing = self._found_nothing
        if isinstance(pull_loop, InOrderPullSubscriber):
            pull_loop.pull_handled = self.ack_pull

    @property
    def stream(self) -> str:
        return self.settings.names.stream

    @property
    def durable(self) -> str:
        return self.settings.durable

    @property
    def filter_subject(self) -> str:
        return self.settings.filter_subject or self.settings.names.subjects

    def _found_nothing(self) -> None:
        self.caught_up = True

    def consumer_config(self) -> ConsumerConfig:
        batched = self.settings.fetch_batch > 1
        return ConsumerConfig(
            durable_name=self.settings.durable,
            # A pull's messages are acknowledged in order, each only once it and all before it
            # are applied: one ack (of the last) says it for the whole pull.
            ack_policy=JsAckPolicy.ALL if batched else JsAckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait,
            # 1: the server delivers the next message only after this one's ack.
            max_ack_pending=max(1000, self.settings.fetch_batch * 2) if batched else 1,
            filter_subject=self.filter_subject,
            description=f"VSS service {self.settings.durable}: applies the stream to its own state",
        )

    @property
    def _js(self) -> JetStreamContext:
        js: JetStreamContext = self.broker.config.connection_state.stream
        return js

    # ------------------------------------------------------------------------ the lifecycle
    async def prepare(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Connect, wait for the stream (never declare it), and point the durable at the state."""
        await self.broker.connect()
        await wait_for_stream(self._js, self.stream, stopping=stopping)
        names = self.settings.names
        await declare_if_missing(self._js, dead_letter_stream_config(names, replicas=self.settings.replicas))
        await self._point_durable_at_state()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_reconnects())

    async def forget_connection(self) -> None:
        """Once the broker stopped: end the reconnect watch and any re-pointing under way."""
        tasks = [task for task in (self._watcher, self._repointing) if task is not None and not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_reconnects(self) -> None:
        """Re-point after a reconnect even when no message comes: a message whose ack was
        lost would otherwise hold the durable back for ``ack_wait``."""
        connection = self.broker.config.connection_state.connection
        while not connection.is_closed:
            await asyncio.sleep(self.reconnect_check)
            if self.subscriber.running and self._reconnect_count() != self._reconnects:
                log.info("consumer.reconnected", consumer=self.settings.durable)
                self._schedule_repoint()

    async def repoint(self) -> None:
        """Stop the subscriber, point the durable at the handler's state + 1, start it again.

        Right after a reconnect the server may not answer yet (JetStream still electing):
        pointing is retried with backoff until it succeeds, so the subscriber never stays
        stopped; it gives up only when the connection is closed for good (the broker stops).
        """
        await self.subscriber.stop()
        self.caught_up = False
        attempt = 0
        while True:
            try:
                await self._point_durable_at_state()
                break
            except HandlerUnavailable as error:
                self.fail(error)
                return
            except Exception as error:  # any failure of the bus: try again, never stay stopped
                if self.broker.config.connection_state.connection.is_closed:
                    return
                attempt += 1
                wait = self.settings.backoff[min(attempt - 1, len(self.settings.backoff) - 1)]
                log.warning(
                    "consumer.repoint_failed",
                    consumer=self.settings.durable,
                    attempt=attempt,
                    wait=wait,
                    error=_first_line(error),
                )
                await asyncio.sleep(wait)
        await self.subscriber.start()

    def fail(self, error: BaseException) -> None:
        """Stop taking messages for good: ``error`` is what :func:`run_subscribers` raises."""
        if self.failure is None:
            log.error("consumer.failed", consumer=self.durable, error=_first_line(error))
            self.failure = error
            self.failed.set()

    async def _point_durable_at_state(self) -> None:
        reconnects = self._reconnect_count()
        self._unacked = None  # an ack of the durable as it was would reach the one pointed anew
        try:
            applied = await asyncio.to_thread(self.handler.applied_through)
        except Exception as error:
            raise HandlerUnavailable(f"{type(error).__name__}: {_first_line(error)}") from error
        await point_durable_at(self._js, self.stream, self.consumer_config(), applied)
        # Only once pointed: a failure above leaves the reconnect unanswered, so it is tried again.
        self._position = applied
        self._reconnects = reconnects

    def _reconnect_count(self) -> int:
        return int(self.broker.config.connection_state.connection.stats["reconnects"])

    def _schedule_repoint(self) -> None:
        if self._repointing is None or self._repointing.done():
            self._repointing = asyncio.create_task(self.repoint())

    async def lag(self) -> Lag:
        info = await self._js.consumer_info(self.stream, self.settings.durable)
        return Lag(info.num_pending or 0, info.num_ack_pending or 0, self._position)

    # ----------------------------------------------------------------------- one message
    def _must_repoint(self) -> bool:
        """True while the durable is (to be) re-pointed: leave messages unacknowledged meanwhile."""
        if self._repointing is not None and not self._repointing.done():
            return True
        if self._reconnect_count() != self._reconnects:
            log.info("consumer.reconnected", consumer=self.settings.durable)
            self._schedule_repoint()
            return True
        return False

    async def _passes_over_some(self, raws: Sequence[Msg]) -> bool:
        """Whether the stream holds a message for this durable that is neither applied nor among
        ``raws`` but before one of them; if so, re-point. The server handed it out and it was
        lost on the way (a node killed with a pull in flight): JetStream would redeliver it only
        after ``ack_wait``, behind these, when it would look applied already. Asked of the
        stream only when the sequences jump (on a whole stream, never else)."""
        previous = self._position
        for raw in raws:
            sequence = raw.metadata.sequence.stream
            if sequence <= previous:
                continue  # a redelivery of one applied already
            if sequence > previous + 1:
                try:
                    found = await self._js.get_msg(
                        self.stream, seq=previous + 1, subject=self.filter_subject, next=True
                    )
                except NotFoundError:
                    found = None
                if found is not None and found.seq is not None and found.seq < sequence:
                    log.warning(
                        "consumer.messages_lost", consumer=self.durable, after=previous, next=sequence
                    )
                    self._schedule_repoint()
                    return True
            previous = sequence
        return False

    async def _on_message(self, incoming: Incoming) -> None:
        if self.failure is not None:
            return  # left unacknowledged: the service ends
        raw = incoming.message.raw_message
        try:
            if not (self._must_repoint() or await self._passes_over_some([raw])):
                await self._handle(raw, incoming.delivery, incoming.error, incoming.message)
        except _BUS_FAULTS:
            raise  # unacknowledged; re-pointed after the reconnect
        except Exception as error:  # the handler's store, when passing a message over
            self.fail(error)

    async def _on_batch(self, incoming: IncomingBatch) -> None:
        if self.failure is not None:
            return
        try:
            await self._apply_pull(incoming)
        except _BUS_FAULTS:
            raise
        except Exception as error:
            self.fail(error)

    async def _apply_pull(self, incoming: IncomingBatch) -> None:
        """A pull applied in one call and transaction; if that fails (or a message does not
        decode), nothing of it was applied and the messages go one by one."""
        if self._must_repoint() or await self._passes_over_some([raw for raw, _, _ in incoming.items]):
            return
        fresh = [item for item in incoming.items if item[0].metadata.sequence.stream > self._position]
        deliveries = [delivery for _, delivery, _ in fresh if delivery is not None]
        last = incoming.items[-1][0]
        # AckAll: the pull's highest sequence is acked (a redelivered lower one may end it).
        highest = max((raw for raw, _, _ in incoming.items), key=_sequence)
        if not fresh:  # all redelivered
            self.skipped += len(incoming.items)
            await highest.ack()  # the durable acks all before it (AckAll)
            self._caught_up_after(last)
            return
        if len(deliveries) == len(fresh):
            started = time.perf_counter()
            try:
                apply_batch = self.handler.apply_batch  # type: ignore[attr-defined]
                if getattr(self.handler, "applies_in_loop", False):
                    applied = int(apply_batch(deliveries))
                else:
                    applied = int(await asyncio.to_thread(apply_batch, deliveries))
            except StateReplaced as replaced:
                log.info("consumer.state_replaced", consumer=self.settings.durable, detail=str(replaced))
                self._schedule_repoint()
                return
            except Exception as error:
                log.info(
                    "consumer.batch_one_by_one", consumer=self.settings.durable, error=_first_line(error)
                )
            else:
                self.handler_seconds += time.perf_counter() - started
                self.applied += applied
                self.skipped += len(incoming.items) - applied
                self._position = deliveries[-1].stream_sequence
                await highest.ack()  # the whole pull, committed above (AckAll)
                self._caught_up_after(last)
                return
        for raw, delivery, undecodable in incoming.items:
            if self._must_repoint():
                return
            await self._handle(raw, delivery, undecodable, _RawSettle(raw))
        await self.ack_pull()

    async def _handle(
        self, raw: Msg, delivery: Delivery | None, undecodable: Undecodable | None, settle: _Settle
    ) -> None:
        sequence = raw.metadata.sequence.stream
        if sequence <= self._position:
            self.skipped += 1
            await self._settled(raw, settle)
            self._caught_up_after(raw)
            return
        if delivery is None:
            await self._give_up(raw, settle, sequence, f"undecodable: {undecodable}", event_id=None)
            self._caught_up_after(raw)
            return
        started = time.perf_counter()
        try:
            outcome = await apply_in_place(
                self.handler, delivery, self.settings, sequence, self._retrying(settle), self._count_retry
            )
        except StateReplaced as replaced:
            # Not acknowledged: the re-pointed durable delivers whatever the new state lacks.
            log.info("consumer.state_replaced", consumer=self.settings.durable, detail=str(replaced))
            self._schedule_repoint()
            return
        finally:
            self.handler_seconds += time.perf_counter() - started
        if isinstance(outcome, GiveUp):
            await self._give_up(raw, settle, sequence, outcome.reason, delivery.event.id)
            self._caught_up_after(raw)
            return
        applied = outcome
        if applied:
            self.applied += 1
        else:
            self.skipped += 1
        self._position = sequence
        await self._settled(raw, settle)
        self._caught_up_after(raw)

    async def _settled(self, raw: Msg, settle: _Settle) -> None:
        """``raw`` is applied (or was before): acknowledged at once with one message in flight;
        with pulls, together with the rest of its pull by :meth:`ack_pull` (an ack per message
        cost a write to the socket each). A slow pull is acknowledged as it goes, so that the
        acks are late by at most :data:`ACK_DELAY` (or a tenth of ``ack_wait``): a pull that
        outlasts ``ack_wait`` has hardly more of its messages sent again than with an ack each
        (those are skipped by their sequence)."""
        if self.settings.fetch_batch <= 1:
            await settle.ack()
            return
        now = time.monotonic()
        if self._unacked is None:
            self._unacked_since = now
        # The highest sequence settled: a redelivered lower one at a pull's end acks less.
        if self._unacked is None or _sequence(raw) > _sequence(self._unacked):
            self._unacked = raw
        if now - self._unacked_since > min(ACK_DELAY, self.settings.ack_wait / 10):
            await self.ack_pull()

    async def ack_pull(self) -> None:
        """Acknowledge the messages of a pull applied one by one, all at once: the durable takes
        an ack for all before it too (AckAll), and each of those was applied, passed over or
        dead-lettered before it."""
        if self._unacked is not None:
            raw, self._unacked = self._unacked, None
            await raw.ack()

    def _caught_up_after(self, raw: Msg) -> None:
        # What the server still held for this durable when it sent the message.
        self.caught_up = not raw.metadata.num_pending

    def _count_retry(self) -> None:
        self.retries += 1

    def _retrying(self, settle: _Settle) -> Callable[[], Awaitable[None]]:
        """What a retry's wait begins with: the messages applied before this one acknowledged
        now (not held back for as long as the retries last, which could outlast ``ack_wait``
        and have them sent again), and this one kept in progress."""

        async def keep_in_progress() -> None:
            await self.ack_pull()
            await settle.in_progress()

        return keep_in_progress

    async def _give_up(
        self, raw: Msg, settle: _Settle, sequence: int, reason: str, event_id: str | None
    ) -> None:
        durable = self.settings.durable
        headers = dead_letter_headers(
            raw.headers, consumer=durable, stream=self.stream, sequence=sequence, reason=reason
        )
        subject = self.settings.names.dead_letter_subject(durable, raw.subject)
        await self._js.publish(subject, raw.data, headers=headers, timeout=5)
        await asyncio.to_thread(self.handler.pass_over, sequence, event_id)
        self.dead_lettered += 1
        self._position = sequence
        log.error("consumer.dead_letter", consumer=durable, sequence=sequence, reason=reason)
        # A terminated message counts as acknowledged (the ack floor moves past it) and
        # FastStream's metrics report it as rejected.
        await settle.reject()


def subscriber_of(
    broker: NatsBroker, bus: BusSettings, handler: Handler, subscription: Subscription
) -> FastStreamSubscriber:
    """A service's subscriber of ``subscription`` on its broker (the replicas its bus settings name)."""
    return FastStreamSubscriber(broker, handler, subscription.consumer_settings(bus.nats_replicas))


def broker_of(bus: BusSettings, *, name: str) -> NatsBroker:
    """A service's one broker, on the server and as the NATS user its bus settings name."""
    return service_broker(bus.nats(), name=name, auth=bus.nats_auth())


START_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)  # seconds between attempts to start a subscriber


async def run_subscribers(
    broker: NatsBroker, subscribers: Sequence[FastStreamSubscriber], stop: asyncio.Event
) -> None:
    """Run a service's subscribers on its one broker until ``stop``, then stop the broker.

    Connects (waiting for the server as long as it takes: it may start after the service),
    then starts each subscriber once it is prepared (its stream there, its durable pointed at
    the handler's state): one whose stream's owner has not run yet holds no other back. So
    ``broker.start()`` is not used; with every stream declared elsewhere (``declare=False``)
    it would do no more. Traces are FastStream's middleware on the provider the process
    configured (:func:`.tracing.configure`), if any.
    """
    traced = any(isinstance(m, NatsTelemetryMiddleware) for m in broker.middlewares)
    for middleware in () if traced else telemetry_middlewares(tracing.provider()):
        broker.add_middleware(middleware)
    try:
        if await _until_stopped(broker.connect(), stop):
            async with asyncio.TaskGroup() as group:
                for subscriber in subscribers:
                    group.create_task(_start(subscriber, stop), name=f"subscriber-{subscriber.durable}")
            # Until stopped, or one fails for good: then the service ends (as DurableConsumer's
            # run did), so its supervisor starts it again with fresh connections.
            ends = [asyncio.ensure_future(stop.wait())]
            ends += [asyncio.ensure_future(subscriber.failed.wait()) for subscriber in subscribers]
            try:
                await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for end in ends:
                    end.cancel()
            for subscriber in subscribers:
                if subscriber.failure is not None:
                    raise subscriber.failure
    finally:
        await broker.stop()
        for subscriber in subscribers:
            await subscriber.forget_connection()


async def _start(subscriber: FastStreamSubscriber, stop: asyncio.Event) -> None:
    try:
        await _until_stopped(_started(subscriber, stop), stop)
    except HandlerUnavailable as error:
        subscriber.fail(error)


async def _until_stopped(work: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Await ``work`` unless ``stop`` comes first (then cancel it): whether it finished."""
    doing = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({doing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not doing.done():
            doing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await doing
    if doing.cancelled() or (stop.is_set() and doing.exception() is not None):
        return False  # stopped (a wait for a stream ends in NotFoundError then)
    doing.result()  # its error, if it failed
    return True


async def _started(subscriber: FastStreamSubscriber, stop: asyncio.Event) -> None:
    """Prepare and start ``subscriber``, trying again while the server cannot answer (it
    restarts, no leader yet …)."""
    attempt = 0
    while True:
        try:
            await subscriber.prepare(stopping=stop.is_set)
            await subscriber.subscriber.start()
            return
        except Exception as error:
            with contextlib.suppress(Exception):
                await subscriber.subscriber.stop()
            if stop.is_set() or isinstance(error, HandlerUnavailable):
                raise
            wait = START_BACKOFF[min(attempt, len(START_BACKOFF) - 1)]
            attempt += 1
            log.warning(
                "consumer.start_retry", consumer=subscriber.durable, wait=wait, error=_first_line(error)
            )
            await asyncio.sleep(wait)
