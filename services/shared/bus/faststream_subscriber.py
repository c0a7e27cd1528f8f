"""The durable-consumer policy of :mod:`.consumer`, as a FastStream JetStream pull subscriber.

What is FastStream configuration (see docs/adr/0012):

- ``JStream(stream, declare=False)``: the subscriber binds to the stream, never declares or
  updates it (by default ``broker.start()`` would overwrite the owner's configuration);
- ``AckPolicy.MANUAL``: FastStream acknowledges nothing (by default it terminates a message
  on any exception: no redelivery); the kit acks after the handler's transaction;
- ``fetch_batch=1``: ``PullSub(batch_size=1)`` and ``max_ack_pending=1`` on the durable, one
  message at a time in stream order, the server itself holding back the next message until
  this one is acknowledged. A round trip per message, though (about 2,000/s here);
- a FastStream decoder turns the body into the contracts' CloudEvent (:func:`.consumer.decode`).

What the kit adds, because FastStream has no notion of it:

- **a pulled batch handled in order** (``fetch_batch > 1``, the default): FastStream's
  ``PullSub(batch_size>1)`` starts a task per message of a pull, so order is lost
  (``test_faststream_pull_batch_handles_messages_in_stream_order``). The kit's subscriber is
  FastStream's pull subscriber with its pull loop replaced (:class:`InOrderPullSubscriber`):
  the next message's handling starts when the previous one's has ended. Every message still
  goes through FastStream's middlewares (metrics, traces) one by one. After a lost
  connection the durable is re-pointed (below) before the next message is handled: a pull's
  tail lost in transit would otherwise be redelivered after ``ack_wait``, behind later ones;

- **resume at the handler's stored sequence + 1**: before the subscriber starts (and when a
  handler's state is replaced) the durable is pointed there (:func:`.consumer.point_durable_at`);
- **redelivery skipped by sequence**, and the sequence recorded in the handler's transaction
  (the :class:`.consumer.Handler` protocol);
- **retries in place** with backoff (the message kept in progress, nothing overtakes it), then
  a **dead letter** with the reason (:func:`.consumer.dead_letter_headers`), the sequence
  passed over, and the message rejected: FastStream's metrics count it as ``rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage as NatsStreamMessage
from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity
from faststream.nats.subscriber.usecases import PullStreamSubscriber
from faststream.params import NoCast
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig
from nats.js.errors import ServiceUnavailableError

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.consumer import (
    ConsumerSettings,
    Delivery,
    Handler,
    Lag,
    PermanentFailure,
    StateReplaced,
    Undecodable,
    _first_line,
    dead_letter_headers,
    decode,
    point_durable_at,
)
from services.shared.bus.streams import dead_letter_stream_config, declare_if_missing, wait_for_stream
from services.shared.settings import BusSettings
from vss_contracts.envelope import CloudEvent

log = structlog.get_logger("vss.bus.faststream")


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
        url,
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
    """FastStream's decoder for the kit: the message's CloudEvent and typed payload.

    The message travels with it so that the handler needs no ``Context`` parameter: FastStream
    resolves those in a worker thread, three thread hops per message.
    """

    async def decode_cloud_event(message: NatsStreamMessage) -> Incoming:
        try:
            return Incoming(message, decode(message.raw_message, decode_data))
        except Undecodable as error:
            return Incoming(message, None, error)

    return decode_cloud_event


class InOrderPullSubscriber(PullStreamSubscriber):
    """FastStream's JetStream pull subscriber, handling the messages of one pull one after another.

    Only the pull loop differs: it waits for the next message, then takes at once what else
    is there (up to ``batch_size``; one ``fetch`` of the whole batch would linger until it is
    full or times out), and awaits each message's handling before the next one's.
    """

    __slots__ = ()

    more_wait = 0.005  # after one arrived: how long the pull for the rest may linger

    async def _consume_pull(self, cb: Callable[[Msg], Coroutine[Any, Any, Any]]) -> None:
        assert self.subscription is not None
        while self.running:
            messages: list[Msg] = []
            with contextlib.suppress(
                NatsTimeoutError, TimeoutError, ConnectionClosedError, ServiceUnavailableError
            ):
                messages = await self.subscription.fetch(1, timeout=self.pull_sub.timeout)
                if self.pull_sub.batch_size > 1:
                    with contextlib.suppress(NatsTimeoutError, TimeoutError):
                        messages += await self.subscription.fetch(
                            self.pull_sub.batch_size - 1, timeout=self.more_wait
                        )
            for msg in messages:
                if not self.running:
                    return  # the rest is redelivered (the durable is re-pointed at start)
                await cb(msg)


class FastStreamSubscriber:
    """A service's :class:`Handler` behind a FastStream subscriber on ``broker``.

    Call :meth:`prepare` once the broker may connect and before ``broker.start()`` (for a
    FastStream application: ``on_startup``), so that the durable resumes where the handler's
    state is. ``settings.fetch_batch``: the most messages one pull takes (1: FastStream's own
    pull loop, one message in flight).
    """

    reconnect_check = 0.2  # seconds between looks at the connection's reconnect count

    def __init__(self, broker: NatsBroker, handler: Handler, settings: ConsumerSettings) -> None:
        self.broker = broker
        self.handler = handler
        self.settings = settings
        self.applied = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.retries = 0
        self._position = 0
        self._repointing: asyncio.Task[None] | None = None
        self._reconnects = 0  # the connection's reconnect count the durable was last pointed at
        self._watcher: asyncio.Task[None] | None = None
        batch = max(1, settings.fetch_batch)
        self.subscriber = broker.subscriber(
            self.filter_subject,
            stream=JStream(settings.names.stream, declare=False),
            durable=settings.durable,
            pull_sub=PullSub(batch_size=batch, timeout=settings.fetch_timeout),
            config=self.consumer_config(),
            ack_policy=AckPolicy.MANUAL,
            decoder=cloud_event_decoder(settings.decode_data),
            title=f"{settings.durable}:{settings.names.stream}",
            description=f"VSS service {settings.durable}: applies {self.filter_subject} to its own state",
        )
        if batch > 1:
            # Same slots, only the pull loop overridden: FastStream's registration stays as it is.
            self.subscriber.__class__ = InOrderPullSubscriber
        self.subscriber(self._on_message)

    @property
    def stream(self) -> str:
        return self.settings.names.stream

    @property
    def durable(self) -> str:
        return self.settings.durable

    @property
    def filter_subject(self) -> str:
        return self.settings.filter_subject or self.settings.names.subjects

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.settings.durable,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait,
            # 1: the server delivers the next message only after this one's ack.
            max_ack_pending=1 if self.settings.fetch_batch <= 1 else max(1000, self.settings.fetch_batch * 2),
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
        """Stop the subscriber, point the durable at the handler's state + 1, start it again."""
        await self.subscriber.stop()
        await self._point_durable_at_state()
        await self.subscriber.start()

    async def _point_durable_at_state(self) -> None:
        self._reconnects = self._reconnect_count()
        applied = await asyncio.to_thread(self.handler.applied_through)
        self._position = applied
        await point_durable_at(self._js, self.stream, self.consumer_config(), applied)

    def _reconnect_count(self) -> int:
        return int(self.broker.config.connection_state.connection.stats["reconnects"])

    def _schedule_repoint(self) -> None:
        if self._repointing is None or self._repointing.done():
            self._repointing = asyncio.create_task(self.repoint())

    async def lag(self) -> Lag:
        info = await self._js.consumer_info(self.stream, self.settings.durable)
        return Lag(info.num_pending or 0, info.num_ack_pending or 0, self._position)

    # ----------------------------------------------------------------------- one message
    async def _on_message(self, incoming: Annotated[Incoming, NoCast]) -> None:
        message = incoming.message
        if self._repointing is not None and not self._repointing.done():
            return  # left unacknowledged: the re-pointed durable delivers it again
        if self._reconnect_count() != self._reconnects:
            log.info("consumer.reconnected", consumer=self.settings.durable)
            self._schedule_repoint()
            return
        sequence = message.raw_message.metadata.sequence.stream
        if sequence <= self._position:
            self.skipped += 1
            await message.ack()
            return
        if incoming.delivery is None:
            await self._give_up(message, sequence, f"undecodable: {incoming.error}", event_id=None)
            return
        delivery = incoming.delivery
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await asyncio.to_thread(self.handler.apply, delivery)
                break
            except StateReplaced as replaced:
                # Not acknowledged: the re-pointed durable delivers whatever the new state lacks.
                log.info("consumer.state_replaced", consumer=self.settings.durable, detail=str(replaced))
                self._schedule_repoint()
                return
            except PermanentFailure as error:
                await self._give_up(message, sequence, f"refused: {_first_line(error)}", delivery.event.id)
                return
            except Exception as error:
                if attempt >= self.settings.max_attempts:
                    reason = f"failed {attempt} times, last: {type(error).__name__}: {_first_line(error)}"
                    await self._give_up(message, sequence, reason, delivery.event.id)
                    return
                self.retries += 1
                wait = self.settings.backoff[min(attempt - 1, len(self.settings.backoff) - 1)]
                log.warning(
                    "consumer.retry",
                    consumer=self.settings.durable,
                    sequence=sequence,
                    attempt=attempt,
                    wait=wait,
                    error=_first_line(error),
                )
                with contextlib.suppress(Exception):
                    await message.in_progress()
                await asyncio.sleep(wait)
        if applied:
            self.applied += 1
        else:
            self.skipped += 1
        self._position = sequence
        await message.ack()

    async def _give_up(
        self, message: NatsStreamMessage, sequence: int, reason: str, event_id: str | None
    ) -> None:
        raw = message.raw_message
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
        await message.reject()
