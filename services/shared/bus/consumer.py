"""The durable-consumer policy: the :class:`Handler` protocol, its settings, decoding, the
re-pointing and the dead letters, which the kit's FastStream subscriber
(:mod:`.faststream_subscriber`, what the services run) shares; and :class:`DurableConsumer`,
the same policy on raw nats-py, which the services used before the kit and the tests and
benchmarks still compare it with.

One durable JetStream pull consumer per service, read one message at a time in stream
order (so every case's events arrive in version order), with explicit acks. The
policy, chosen deliberately (FastStream's default would terminate a message on any
exception, and its batch pull handles messages concurrently; see docs/adr/0004):

- **Decode** each message into the contract's CloudEvent, of a type the contracts know; its
  typed payload (older versions upcast) when the handler first reads it. A message that
  cannot be decoded goes to the dead-letter stream at once.
- **Apply** it through the service's :class:`Handler`, which records the stream
  sequence in the same transaction as its state change. A sequence at or below the
  recorded one is a redelivery: acknowledged and skipped.
- **Retry** a failing apply in place, with backoff (the message is kept in progress
  meanwhile), so a later event never overtakes it; after ``max_attempts``, or at once
  for a :class:`PermanentFailure`, it goes to the dead-letter stream with the reason and
  the original headers, the handler records it as passed, and the consumer moves on.
- **Resume where the service's state is.** At start and after a lost connection the
  durable is pointed at the stored sequence + 1 (recreated if the server's view
  differs, e.g. messages a killed process had fetched but not acknowledged), so nothing
  is applied out of order and nothing is lost.
- **Lag** (messages not yet applied) is visible: :meth:`DurableConsumer.lag`.
- **Batches, when the handler can** (:class:`BatchHandler`): the messages of one fetch are
  applied in one call, one transaction with every sequence recorded, and acknowledged
  after it. If it fails (or a message does not decode) nothing of it was applied, and the
  same messages go through the one-at-a-time path above, with its retries and dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from services.shared import tracing
from services.shared.bus.names import BusNames
from services.shared.bus.streams import (
    NO_LEADER_YET,
    connect,
    dead_letter_stream_config,
    declare_if_missing,
    wait_for_stream,
)
from services.shared.dispatch import ContractEvent, EventHandlers
from vss_contracts.envelope import CloudEvent
from vss_contracts.meeting_events import MEETING_EVENT_TYPES, MEETING_UPCASTERS
from vss_contracts.notification_events import NOTIFICATION_EVENT_TYPES, NOTIFICATION_UPCASTERS
from vss_contracts.registry import EVENT_TYPES, UPCASTERS, UnknownEventType
from vss_contracts.subjects import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ORIGINAL_MSG_ID,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
    HEADER_LOG_POSITION,
    HEADER_MSG_ID,
)

log = structlog.get_logger("vss.bus.consumer")

# Every type name, current or earlier version, of the families the consumers read: a message
# of another type is dead-lettered on decode, before any handler sees it.
KNOWN_TYPES = frozenset(
    {*EVENT_TYPES, *UPCASTERS, *MEETING_EVENT_TYPES, *MEETING_UPCASTERS, *NOTIFICATION_EVENT_TYPES}
    | set(NOTIFICATION_UPCASTERS)
)

# Reconnect and re-point on these: the connection, the stream or a leader is away for now.
_RECONNECT: tuple[type[Exception], ...] = (
    NatsTimeoutError,
    TimeoutError,
    ConnectionError,
    OSError,
    NotFoundError,
    *NO_LEADER_YET,
)

# Publish-time assertions of the original message must not be re-asserted on the dead-letter stream.
_NOT_FORWARDED = ("Nats-Expected-", "Nats-Batch-")


_UNDECODED: Any = object()


class Delivery:
    """One event as a handler receives it.

    The envelope (:attr:`event`) is validated on decode; the typed payload (:attr:`data`) only
    when a handler first asks for it: the bytes were validated when the case service wrote
    them and are hash-chained since, and most consumers act on a few types or read
    :attr:`body` themselves (ADR 0028). A payload that does not decode raises
    :class:`Undecodable` there, and the consumer dead-letters the message at once.
    """

    __slots__ = (
        "_data",
        "_decode_data",
        "body",
        "delivered",
        "event",
        "headers",
        "stream_sequence",
        "subject",
    )

    def __init__(
        self,
        event: CloudEvent,
        data: Any = _UNDECODED,
        stream_sequence: int = 0,
        subject: str = "",
        headers: Mapping[str, str] | None = None,
        delivered: int = 1,  # how often the server has delivered it (1: first time)
        body: bytes = b"",  # the message body as published (the CloudEvent's JSON)
        *,
        decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data,
    ) -> None:
        self.event = event
        self._data = data
        self.stream_sequence = stream_sequence
        self.subject = subject
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.delivered = delivered
        self.body = body
        self._decode_data = decode_data

    @property
    def data(self) -> Any:
        """The payload as the current model of its type: CaseEventData on the case stream,
        whatever ConsumerSettings.decode_data gives on another (MeetingEventData …); decoded
        on first use. Raises :class:`Undecodable`."""
        if self._data is _UNDECODED:
            try:
                self._data = self._decode_data(self.event)
            except (ValidationError, UnknownEventType, ValueError) as error:
                raise Undecodable(f"{type(error).__name__}: {_first_line(error)}") from error
        return self._data

    @property
    def log_position(self) -> int | None:
        """The event's position in its source store's log (the relay's header); None if absent."""
        value = self.headers.get(HEADER_LOG_POSITION)
        return int(value) if value is not None and value.isdigit() else None

    def __repr__(self) -> str:
        return f"Delivery({self.event.type} {self.event.id} at {self.stream_sequence})"


class Handler(Protocol):
    """A service's state, changed one event at a time (see :mod:`.checkpoint`).

    :meth:`apply` (and a :class:`BatchHandler`'s ``apply_batch``) runs in a worker thread,
    unless the handler has an attribute ``applies_in_loop`` set true: then in the event loop,
    for a state whose apply is a local write quicker than the hop to a thread and back (see
    :func:`apply_in_place`). Such a handler must never wait long for a lock another thread
    holds: the loop waits with it.
    """

    def applied_through(self) -> int:
        """The last stream sequence applied (0: none)."""
        ...

    def apply(self, delivery: Delivery) -> bool:
        """Apply the event and record its sequence in one transaction.

        Returns False, changing nothing, if the sequence was already recorded.
        """
        ...

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        """Record a sequence as passed without applying it (it went to the dead-letter stream)."""
        ...


class BatchHandler(Handler, Protocol):
    """A handler that can apply several events in one transaction (fewer commits, fewer fsyncs)."""

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """Apply the events in order, each with its sequence, in one transaction; the number
        applied (a sequence already recorded is skipped). Raises, changing nothing, on failure."""
        ...


class ConsumingService(Protocol):
    """A service that keeps its own consumer position beside what it applies."""

    def applied_through(self) -> int: ...
    def pass_over(self, stream_sequence: int, event_id: str | None) -> None: ...


_Service = TypeVar("_Service", bound=ConsumingService)


class ServiceHandler(Generic[_Service]):
    """A :class:`Handler` over a service that keeps its own consumer position: a subclass
    says how a delivery is applied; the position is the service's."""

    def __init__(self, service: _Service, *, applies_in_loop: bool = False) -> None:
        self.service = service
        # A local write (SQLite) is quicker than the hop to a worker thread and back.
        self.applies_in_loop = applies_in_loop

    def applied_through(self) -> int:
        return self.service.applied_through()

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.service.pass_over(stream_sequence, event_id)


class PermanentFailure(Exception):
    """Raised by a handler for an event that no retry can apply: dead-letter it now."""


class MessagesLost(Exception):  # a signal to re-point, not an error
    """A fetch passed over messages the server took as delivered (lost in transit): the
    consumer points the durable at its stored position + 1 again, so they come in order."""


class StateReplaced(Exception):  # a signal to re-point, not an error
    """Raised by a handler whose state was swapped for another copy (e.g. a rebuilt read model).

    The consumer stops the current pull, points the durable at the new state's position
    + 1 and goes on: events the new copy lacks are delivered again.
    """


class Undecodable(Exception):
    """The message is not a CloudEvent of a known type, or its payload not of that type."""


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    durable: str  # the service's consumer name, e.g. "projections"
    names: BusNames = field(default_factory=BusNames)
    filter_subject: str | None = None  # default: the whole case stream
    decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data  # the payload's model
    fetch_batch: int = 100
    fetch_timeout: float = 1.0  # the longest wait for the next message (then look again)
    fetch_more_wait: float = 0.005  # the longest wait for the rest the server said was pending
    max_attempts: int = 5
    backoff: tuple[float, ...] = (0.05, 0.2, 1.0, 2.0, 5.0)
    ack_wait: float = 30.0
    replicas: int = 1


@dataclass(frozen=True, slots=True)
class Subscription:
    """One consumer of a service, declared once: what it reads and which event types it acts on.

    A service's composition root builds its subscriber from it
    (:func:`.faststream_subscriber.subscriber_of`), and :mod:`.faststream_asyncapi` the
    FastStream description of the same subscriber, so the
    two cannot name different streams, subjects or durables. ``handles``: the contract types
    (current versions) the handler acts on; ``ignores``: the rest of the family, which its
    dispatch table ignores by name (acknowledged, nothing changed). Earlier versions of a type
    are upcast on decode, so they count as the type.
    """

    durable: str
    names: BusNames
    handles: tuple[str, ...]
    ignores: tuple[str, ...] = ()
    decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data

    @classmethod
    def dispatched(
        cls,
        durable: str,
        names: BusNames,
        *tables: EventHandlers[Any],
        decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data,
    ) -> Subscription:
        """A consumer whose handler routes each event through ``tables`` (one family): it acts on
        a type any table handles, and ignores one every table ignores."""
        families = {table.family for table in tables}
        if len(families) != 1:
            raise ValueError(f"{durable}: tables of one family expected, got {len(families)}")
        (family,) = families
        handles = tuple(t for t in family if any(t in table.handlers for table in tables))
        ignores = tuple(t for t in family if t not in handles and all(t in table.ignored for table in tables))
        return cls(durable, names, handles, ignores, decode_data)

    @classmethod
    def of_every(
        cls,
        durable: str,
        names: BusNames,
        family: Iterable[type[ContractEvent]],
        decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data,
    ) -> Subscription:
        """A consumer that acts on every type of ``family`` (it keeps or forwards each event)."""
        return cls(durable, names, tuple(t.TYPE for t in family), (), decode_data)

    @property
    def filter_subject(self) -> str:
        return self.names.subjects

    def consumer_settings(self, replicas: int = 1) -> ConsumerSettings:
        return ConsumerSettings(
            durable=self.durable,
            names=self.names,
            filter_subject=self.filter_subject,
            decode_data=self.decode_data,
            replicas=replicas,
        )


@dataclass(frozen=True, slots=True)
class Lag:
    pending: int  # in the stream, not yet delivered
    unacknowledged: int  # delivered, not yet acknowledged
    applied_through: int

    @property
    def total(self) -> int:
        return self.pending + self.unacknowledged


def decode(msg: Msg, decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data) -> Delivery:
    """The message's CloudEvent, validated, of a type the contracts know; its payload is
    decoded when first read (:attr:`Delivery.data`)."""
    try:
        event = CloudEvent.model_validate_json(msg.data)
    except ValidationError as error:
        raise Undecodable(f"{type(error).__name__}: {_first_line(error)}") from error
    if event.type not in KNOWN_TYPES:
        raise Undecodable(f"UnknownEventType: {event.type}")
    return Delivery(
        event,
        _UNDECODED,
        msg.metadata.sequence.stream,
        msg.subject,
        dict(msg.headers or {}),
        msg.metadata.num_delivered,
        msg.data,
        decode_data=decode_data,
    )


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]


def dead_letter_headers(
    original: Mapping[str, str] | None, *, consumer: str, stream: str, sequence: int, reason: str
) -> dict[str, str]:
    """The headers of a dead letter: the original's (less its publish-time assertions) and why."""
    headers = {key: value for key, value in (original or {}).items() if not key.startswith(_NOT_FORWARDED)}
    if HEADER_MSG_ID in headers:
        # Keep the original id, but de-duplicate letters per consumer and sequence: the
        # same event parked by two consumers must give two letters, and a repeat of one
        # consumer's (a crash between parking and recording) only one.
        headers[HEADER_DLQ_ORIGINAL_MSG_ID] = headers[HEADER_MSG_ID]
    headers.update(
        {
            HEADER_MSG_ID: f"{consumer}:{stream}:{sequence}",
            HEADER_DLQ_REASON: reason[:1000],
            HEADER_DLQ_STREAM: stream,
            HEADER_DLQ_SEQUENCE: str(sequence),
            HEADER_DLQ_CONSUMER: consumer,
        }
    )
    return headers


async def point_durable_at(js: JetStreamContext, stream: str, config: ConsumerConfig, applied: int) -> None:
    """Make the durable ``config`` names deliver from ``applied`` + 1 (the service's stored sequence).

    Left as it is when the server's view already agrees (nothing unacknowledged, acknowledged
    and delivered exactly through ``applied``, its state in memory); otherwise deleted and
    created again from ``config``, e.g. after a killed process left messages fetched but not
    acknowledged, which JetStream would redeliver only after ``ack_wait``, behind later ones.

    The durable keeps its state in memory (``mem_storage``): the service's stored sequence is
    the truth it is pointed at, so a state on disk would only cost the server a file written
    and synced again and again while the consumer is busy. A server restart forgets it; the
    next pull is answered "no responders" and the consumer points a new one here (ADR 0024).
    """
    durable = config.durable_name
    assert durable is not None
    config = replace(config, mem_storage=True)
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        info = None
    if info is not None:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = info.delivered.stream_seq if info.delivered else 0
        in_memory = bool(info.config.mem_storage)  # one created before state was kept in memory: not
        # Its ack policy too: one the kit created before it acknowledged a pull at once, or a
        # durable moving between the kit and DurableConsumer, is recreated with the new one.
        same_acks = info.config.ack_policy == config.ack_policy
        agrees = info.num_ack_pending == 0 and floor == applied and delivered == applied
        if in_memory and same_acks and agrees:
            return
        log.info(
            "consumer.repoint",
            consumer=durable,
            applied_through=applied,
            server_ack_floor=floor,
            unacknowledged=info.num_ack_pending,
        )
        await js.delete_consumer(stream, durable)
    if applied:
        config = replace(config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=applied + 1)
    else:
        config = replace(config, deliver_policy=DeliverPolicy.ALL, opt_start_seq=None)
    await js.add_consumer(stream, config)


@dataclass(frozen=True, slots=True)
class GiveUp:
    """A message no retry will apply: dead-letter it with ``reason``."""

    reason: str


async def apply_in_place(
    handler: Handler,
    delivery: Delivery,
    settings: ConsumerSettings,
    sequence: int,
    in_progress: Callable[[], Awaitable[None]],
    on_retry: Callable[[], None] = lambda: None,
) -> bool | GiveUp:
    """Apply one event through ``handler`` (in a worker thread, or in the loop if the handler
    ``applies_in_loop``), retrying a failure in place
    with the settings' backoff while the message is kept in progress, so no later event
    overtakes it. True: applied; False: its sequence was recorded already; :class:`GiveUp`:
    refused (:class:`PermanentFailure`) or failed ``max_attempts`` times. ``StateReplaced``
    propagates: the caller re-points."""
    in_loop = bool(getattr(handler, "applies_in_loop", False))
    attempt = 0
    while True:
        attempt += 1
        try:
            if in_loop:
                return handler.apply(delivery)
            return await asyncio.to_thread(handler.apply, delivery)
        except StateReplaced:
            raise
        except Undecodable as error:  # the payload, read by the handler: no retry mends it
            return GiveUp(f"undecodable: {error}")
        except PermanentFailure as error:
            return GiveUp(f"refused: {_first_line(error)}")
        except Exception as error:
            if attempt >= settings.max_attempts:
                return GiveUp(f"failed {attempt} times, last: {type(error).__name__}: {_first_line(error)}")
            on_retry()
            wait = settings.backoff[min(attempt - 1, len(settings.backoff) - 1)]
            log.warning(
                "consumer.retry",
                consumer=settings.durable,
                sequence=sequence,
                attempt=attempt,
                wait=wait,
                error=_first_line(error),
            )
            with contextlib.suppress(Exception):
                await in_progress()
            await asyncio.sleep(wait)


class CatchingUp:
    """Where a consumer is against its stream's end.

    ``caught_up``: the last look found nothing left to apply (an API answers "not yet" while
    not). ``reached_end``: the end was reached once since start (stays set): what a part that
    must not act on a stale state (a sender after a stop) waits for.
    """

    _caught_up: bool
    reached_end: bool

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    @caught_up.setter
    def caught_up(self, value: bool) -> None:
        self._caught_up = value
        if value:
            self.reached_end = True


class DurableConsumer(CatchingUp):
    def __init__(self, nats_url: str, handler: Handler, settings: ConsumerSettings) -> None:
        self.nats_url = nats_url
        self.handler = handler
        self.settings = settings
        self.applied = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.handler_seconds = 0.0  # time spent in the handler (retries included), for /metrics
        self._position = 0
        self._caught_up = False
        self.reached_end = False
        self._backoff = 0.1  # seconds before the next reconnect; doubles up to 5 s
        self._js: JetStreamContext | None = None

    @property
    def stream(self) -> str:
        return self.settings.names.stream

    # ----------------------------------------------------------------------- the process
    async def run(self, stop: asyncio.Event) -> None:
        nc = await connect(self.nats_url, name=f"consumer-{self.settings.durable}", stopping=stop.is_set)
        try:
            js = self._js = nc.jetstream()
            await wait_for_stream(js, self.stream, stopping=stop.is_set)
            names = self.settings.names
            await declare_if_missing(js, dead_letter_stream_config(names, replicas=self.settings.replicas))
            self._backoff = 0.1
            while not stop.is_set():
                try:
                    await self._consume(nc, js, stop)
                except StateReplaced as replaced:
                    log.info("consumer.state_replaced", consumer=self.settings.durable, detail=str(replaced))
                    continue
                except MessagesLost as lost:
                    log.warning("consumer.messages_lost", consumer=self.settings.durable, detail=str(lost))
                    continue
                except _RECONNECT as error:
                    self.caught_up = False
                    if stop.is_set():
                        break
                    log.warning(
                        "consumer.reconnect", consumer=self.settings.durable, error=_first_line(error)
                    )
                    await asyncio.sleep(self._backoff)
                    self._backoff = min(5.0, self._backoff * 2)
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()

    async def _consume(self, nc: Client, js: JetStreamContext, stop: asyncio.Event) -> None:
        await self._point_durable_at_state(js)
        sub = await js.pull_subscribe_bind(self.settings.durable, self.stream)
        try:
            while not stop.is_set():
                try:
                    messages = await self._fetch(sub)
                except (NatsTimeoutError, TimeoutError):
                    # Nothing to fetch. (nats-py raises the built-in TimeoutError when its
                    # deadline runs out between its quick check and its long poll.)
                    if not nc.is_connected:
                        raise
                    self.caught_up = True
                    continue
                self.caught_up = False
                self._backoff = 0.1  # consuming again: the next trouble starts its backoff afresh
                if await self._passes_over_some(js, messages):
                    # Fetched by the server for this consumer, lost on the way (a node killed
                    # with a pull in flight): JetStream redelivers them only after ack_wait,
                    # behind these, and then they would be taken for applied already. Applied
                    # in order instead: re-pointed at the stored state, nothing of these acked.
                    raise MessagesLost(f"a fetch after {self._position} passes over messages of the stream")
                if not (len(messages) > 1 and not stop.is_set() and await self._handle_batch(messages)):
                    for msg in messages:
                        if stop.is_set():
                            return  # the rest is redelivered to the next run (and re-pointed at start)
                        await self.handle(msg)
                # What the server still held for this consumer when it sent the last message.
                self.caught_up = not messages[-1].metadata.num_pending
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _passes_over_some(self, js: JetStreamContext, messages: list[Msg]) -> bool:
        """Whether the stream holds a message for this consumer that is neither applied nor
        among ``messages`` but before one of them: a gap (asked of the stream only when the
        sequences jump; on the case stream every message is the consumer's, so never else)."""
        previous = self._position
        subject = self.settings.filter_subject or self.settings.names.subjects
        for msg in messages:
            sequence = msg.metadata.sequence.stream
            if sequence <= previous:
                continue  # a redelivery of one applied already
            if sequence > previous + 1:
                try:
                    found = await js.get_msg(self.stream, seq=previous + 1, subject=subject, next=True)
                except NotFoundError:
                    found = None
                if found is not None and found.seq is not None and found.seq < sequence:
                    return True
            previous = sequence
        return False

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """Wait for the next message, then take at once what else is there (up to the batch).

        Not one ``fetch(batch)``: nats-py 2.16 sends a lingering pull when nothing is buffered,
        and then waits for the whole batch or the timeout, so a trickle of events (a command
        now and then) waited up to ``fetch_timeout`` each. ``fetch(1)`` returns with the first
        message; the rest is asked for only when the server said there was more (the first
        message's ``num_pending``), and exactly that many (up to the batch), so the pull returns
        as soon as they arrive: a lone event never waits ``fetch_more_wait``, which only bounds a
        pull whose messages went to another instance of the service in between.
        """
        first = await sub.fetch(1, timeout=self.settings.fetch_timeout)
        more_wanted = min(self.settings.fetch_batch - 1, first[-1].metadata.num_pending or 0) if first else 0
        if more_wanted <= 0:
            return first
        try:
            more = await sub.fetch(more_wanted, timeout=self.settings.fetch_more_wait)
        except (NatsTimeoutError, TimeoutError):
            more = []
        return [*first, *more]

    async def _point_durable_at_state(self, js: JetStreamContext) -> None:
        """Make the durable deliver from the service's stored sequence + 1."""
        applied = await asyncio.to_thread(self.handler.applied_through)
        self._position = applied
        durable = self.settings.durable
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait,
            max_ack_pending=max(1000, self.settings.fetch_batch * 2),
            filter_subject=self.settings.filter_subject or self.settings.names.subjects,
            description=f"VSS service {durable}: applies the case stream to its own state",
        )
        await point_durable_at(js, self.stream, config, applied)

    # ----------------------------------------------------------------- a batch
    async def _handle_batch(self, messages: list[Msg]) -> bool:
        """Apply a fetched batch in one call if the handler can; False: take them one by one."""
        apply_batch = getattr(self.handler, "apply_batch", None)
        if apply_batch is None:
            return False
        fresh = [msg for msg in messages if msg.metadata.sequence.stream > self._position]
        try:
            deliveries = [decode(msg, self.settings.decode_data) for msg in fresh]
        except Undecodable:
            return False  # the one-at-a-time path parks it
        if deliveries:
            started = time.perf_counter()
            try:
                # One span per batch, in the trace of its first event (tracing on only).
                with tracing.span(f"apply {self.settings.durable}", SpanKind.CONSUMER, deliveries[0].headers):
                    applied = int(await asyncio.to_thread(apply_batch, deliveries))
            except StateReplaced:
                raise
            except Exception as error:
                log.info(
                    "consumer.batch_one_by_one", consumer=self.settings.durable, error=_first_line(error)
                )
                return False
            self.handler_seconds += time.perf_counter() - started
            self.applied += applied
            self.skipped += len(messages) - applied
            self._position = deliveries[-1].stream_sequence
        else:
            self.skipped += len(messages)
        for msg in messages:
            await msg.ack()
        return True

    # ----------------------------------------------------------------- one message
    async def handle(self, msg: Msg) -> None:
        sequence = msg.metadata.sequence.stream
        if sequence <= self._position:
            self.skipped += 1
            await msg.ack()
            return
        try:
            delivery = decode(msg, self.settings.decode_data)
        except Undecodable as error:
            await self._give_up(msg, sequence, f"undecodable: {error}", event_id=None)
            return
        started = time.perf_counter()
        # The event's trace (its traceparent header), if tracing is on: the handler runs in it.
        with tracing.span(f"apply {self.settings.durable}", SpanKind.CONSUMER, delivery.headers):
            outcome = await apply_in_place(self.handler, delivery, self.settings, sequence, msg.in_progress)
        self.handler_seconds += time.perf_counter() - started
        if isinstance(outcome, GiveUp):
            await self._give_up(msg, sequence, outcome.reason, delivery.event.id)
            return
        applied = outcome
        if applied:
            self.applied += 1
        else:
            self.skipped += 1
        self._position = sequence
        await msg.ack()

    async def _give_up(self, msg: Msg, sequence: int, reason: str, event_id: str | None) -> None:
        names = self.settings.names
        headers = dead_letter_headers(
            msg.headers, consumer=self.settings.durable, stream=self.stream, sequence=sequence, reason=reason
        )
        assert self._js is not None
        await self._js.publish(
            names.dead_letter_subject(self.settings.durable, msg.subject),
            msg.data,
            headers=headers,
            timeout=5,
        )
        await asyncio.to_thread(self.handler.pass_over, sequence, event_id)
        self.dead_lettered += 1
        self._position = sequence
        log.error("consumer.dead_letter", consumer=self.settings.durable, sequence=sequence, reason=reason)
        await msg.ack()

    # ------------------------------------------------------------------------- lag
    async def lag(self) -> Lag:
        assert self._js is not None, "lag is known once the consumer runs"
        info = await self._js.consumer_info(self.stream, self.settings.durable)
        return Lag(info.num_pending or 0, info.num_ack_pending or 0, self._position)
