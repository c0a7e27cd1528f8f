"""The durable-consumer policy of :mod:`.consumer`, as a FastStream JetStream pull subscriber.

What is FastStream configuration (see docs/adr/0012):

- ``JStream(stream, declare=False)``: the subscriber binds to the stream, never declares or
  updates it (by default ``broker.start()`` would overwrite the owner's configuration);
- ``AckPolicy.MANUAL``: FastStream acknowledges nothing (by default it terminates a message
  on any exception: no redelivery); the kit acks after the handler's transaction;
- ``PullSub(batch_size=1)`` and ``max_ack_pending=1`` on the durable: one message at a time,
  in stream order (a pulled batch would be handled concurrently), and the server itself
  holds back the next message until this one is acknowledged;
- a FastStream decoder turns the body into the contracts' CloudEvent (:func:`.consumer.decode`).

What the kit adds, because FastStream has no notion of it:

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
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsMessage as NatsStreamMessage
from faststream.params import NoCast
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig

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
from vss_contracts.envelope import CloudEvent

log = structlog.get_logger("vss.bus.faststream")


def cloud_event_decoder(
    decode_data: Callable[[CloudEvent], Any] = CloudEvent.typed_data,
) -> Callable[[NatsStreamMessage], Awaitable[Delivery | Undecodable]]:
    """FastStream's decoder for the kit: the message as a :class:`Delivery`, or why it is not one.

    Returned, not raised: an undecodable message goes to the dead-letter stream like any other
    that cannot be applied, and a raised error would leave it unacknowledged.
    """

    async def decode_cloud_event(message: NatsStreamMessage) -> Delivery | Undecodable:
        try:
            return decode(message.raw_message, decode_data)
        except Undecodable as error:
            return error

    return decode_cloud_event


class FastStreamSubscriber:
    """A service's :class:`Handler` behind a FastStream subscriber on ``broker``.

    Call :meth:`prepare` once the broker may connect and before ``broker.start()`` (for a
    FastStream application: ``on_startup``), so that the durable resumes where the handler's
    state is. ``settings.fetch_batch`` and ``fetch_more_wait`` do not apply: one message at a time.
    """

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
        self.subscriber = broker.subscriber(
            self.filter_subject,
            stream=JStream(settings.names.stream, declare=False),
            durable=settings.durable,
            pull_sub=PullSub(batch_size=1, timeout=settings.fetch_timeout),
            config=self.consumer_config(),
            ack_policy=AckPolicy.MANUAL,
            decoder=cloud_event_decoder(settings.decode_data),
            title=f"{settings.durable}:{settings.names.stream}",
            description=f"VSS service {settings.durable}: applies {self.filter_subject} to its own state",
        )
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
            max_ack_pending=1,  # the server delivers the next message only after this one's ack
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

    async def repoint(self) -> None:
        """Stop the subscriber, point the durable at the handler's state + 1, start it again."""
        await self.subscriber.stop()
        await self._point_durable_at_state()
        await self.subscriber.start()

    async def _point_durable_at_state(self) -> None:
        applied = await asyncio.to_thread(self.handler.applied_through)
        self._position = applied
        await point_durable_at(self._js, self.stream, self.consumer_config(), applied)

    async def lag(self) -> Lag:
        info = await self._js.consumer_info(self.stream, self.settings.durable)
        return Lag(info.num_pending or 0, info.num_ack_pending or 0, self._position)

    # ----------------------------------------------------------------------- one message
    async def _on_message(self, decoded: Annotated[Any, NoCast], message: NatsMessage) -> None:
        sequence = message.raw_message.metadata.sequence.stream
        if sequence <= self._position:
            self.skipped += 1
            await message.ack()
            return
        if isinstance(decoded, Undecodable):
            await self._give_up(message, sequence, f"undecodable: {decoded}", event_id=None)
            return
        delivery: Delivery = decoded
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await asyncio.to_thread(self.handler.apply, delivery)
                break
            except StateReplaced as replaced:
                # Not acknowledged: with one message in flight nothing else comes meanwhile,
                # and the re-pointed durable delivers whatever the new state lacks.
                log.info("consumer.state_replaced", consumer=self.settings.durable, detail=str(replaced))
                self._repointing = asyncio.create_task(self.repoint())
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
