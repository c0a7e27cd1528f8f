"""The notifications service on the bus: case and meeting streams in, the delivery record out.

- :class:`EventHandler` is the shared consumer base's handler, one per stream (two
  durable consumers, each with its own position in the store).
- :class:`NotificationEventLog` is the relay's outbox: the delivery record's log as
  CloudEvents for ``VSS_NOTIFICATIONS``.
- :class:`CaseStreamFirst` makes a meeting event wait for the case events before it.
- :func:`adopt_record` lets an empty store that is about to replay both streams take the
  delivery record over, so that nothing already sent is sent again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from uuid import UUID

import orjson
import structlog
from nats.aio.client import Client

from services.notifications.application.service import (
    NotificationsService,
    causes_of_record,
    outcomes_of_record,
)
from services.notifications.infrastructure.store import NotificationStore
from services.shared.bus.consumer import Delivery
from services.shared.bus.names import BusNames
from services.shared.bus.outbox import LoggedEvent, StoredEventLog, logged_event
from services.shared.bus.streams import connect, stream_messages
from vss_contracts.chain import cloud_event_hash
from vss_contracts.notification_events import (
    NOTIFICATION_EVENT_SOURCE,
    NOTIFICATION_STREAM,
    NOTIFICATION_SUBJECT_PREFIX,
    TYPE_PREFIX,
)
from vss_contracts.subjects import HEADER_CASE_POSITION, HEADER_LOG_POSITION, HEADER_MSG_ID


def notification_bus_names(prefix: str = "", dead_letter: BusNames | None = None) -> BusNames:
    """The delivery record's stream names (tests give a unique prefix)."""
    return (dead_letter or BusNames()).sibling(NOTIFICATION_STREAM, NOTIFICATION_SUBJECT_PREFIX, prefix)


log = structlog.get_logger("vss.notifications.bus")


class CaseStreamNotCaughtUp(RuntimeError):
    """The case consumer has not yet applied what the case stream held (a transient failure)."""


class CaseStreamFirst:
    """A meeting event waits until the case consumer has applied the case events it follows.

    The meetings service decides from the case stream, so each meeting event's causes were in
    the case stream before the meeting event was published. Reading the two streams with two
    consumers, the meetings one may run ahead: a meeting booked under a consent the
    notifications service has not read yet would reach nobody that consent covers. A meeting
    event that names the case log position it followed (``Vss-Case-Position``) waits until
    the case consumer has applied that position (or the whole case stream, so that a case
    event sent to the dead-letter stream cannot hold it for ever); it is then judged by the
    state as of that position. One without it (published before the header existed) waits
    for the case stream's tail as read after it arrived. Bounded: after ``timeout`` the
    consumer base retries the meeting event with backoff.
    """

    def __init__(
        self,
        store: NotificationStore,
        case_consumer: str,
        nats_url: str,
        case_stream: str,
        *,
        timeout: float = 30.0,
        poll: float = 0.02,
    ) -> None:
        self.store = store
        self.case_consumer = case_consumer
        self.nats_url = nats_url
        self.case_stream = case_stream
        self.timeout = timeout
        self.poll = poll
        self._nc: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def open(self, stopping: Callable[[], bool] = lambda: False) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._nc = await connect(self.nats_url, name="notifications-case-tail", stopping=stopping)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    async def _case_tail(self) -> int:
        assert self._nc is not None
        info = await self._nc.jetstream().stream_info(self.case_stream)
        return int(info.state.last_seq)

    def wait(self, case_position: int | None = None) -> None:
        """Block (the consumer's worker thread) until the case consumer is far enough; raises
        :class:`CaseStreamNotCaughtUp` after ``timeout``."""
        if self._loop is None:
            return  # not opened: the service is driven without a bus (tests, tools)
        if self._reached(case_position):
            return  # the usual case: no round trip to the server
        self._not_in_the_loop()
        target = asyncio.run_coroutine_threadsafe(self._case_tail(), self._loop).result(timeout=10)
        deadline = time.monotonic() + self.timeout
        while (applied := self.store.applied_through(self.case_consumer)) < target:
            if (
                case_position is not None
                and self.store.applied_log_position(self.case_consumer) >= case_position
            ):
                return
            if time.monotonic() > deadline:
                raise CaseStreamNotCaughtUp(f"the case consumer is at {applied}, the case stream at {target}")
            time.sleep(self.poll)

    def reached(self, case_position: int) -> bool:
        """Whether the case consumer has applied ``case_position`` already (no waiting)."""
        return self._loop is None or self._reached(case_position)

    def reached_within(self, case_position: int, timeout: float) -> bool:
        """Whether the case consumer applies ``case_position`` within ``timeout`` (blocking the
        worker thread while it polls; no round trip to the server)."""
        if self.reached(case_position):
            return True
        self._not_in_the_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(self.poll)
            if self._reached(case_position):
                return True
        return False

    def _not_in_the_loop(self) -> None:
        """A wait blocks its thread and may need the loop: never the loop's own thread."""
        if self._loop is not None and self._loop_thread == threading.get_ident():
            raise RuntimeError("a wait for the case consumer must run in a worker thread, not the event loop")

    def _reached(self, case_position: int | None) -> bool:
        return (
            case_position is not None and self.store.applied_log_position(self.case_consumer) >= case_position
        )


def case_position(delivery: Delivery) -> int | None:
    """The case log position a meeting event followed (its header); None if it has none."""
    value = delivery.headers.get(HEADER_CASE_POSITION)
    return int(value) if value is not None and value.isdigit() else None


class EventHandler:
    """The consumer base's ``Handler`` for one stream (case or meetings)."""

    def __init__(
        self,
        service: NotificationsService,
        store: NotificationStore,
        consumer: str,
        *,
        case_first: CaseStreamFirst | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.consumer = consumer
        # Set on the meetings stream's handler: its events follow case log positions.
        self.case_first = case_first

    def applied_through(self) -> int:
        return self.store.applied_through(self.consumer)

    def apply(self, delivery: Delivery) -> bool:
        if self.case_first is None:  # the case stream: each event's own log position
            position = delivery.log_position
        else:
            position = case_position(delivery)
            if delivery.stream_sequence > self.applied_through():
                self.case_first.wait(position)
        return self.service.apply(
            self.consumer,
            case_id=UUID(delivery.event.subject),
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            recorded_at=delivery.event.time,
            data=delivery.data,
            stream_sequence=delivery.stream_sequence,
            case_position=position,
            log_position=delivery.log_position,
        )

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.store.pass_over(self.consumer, stream_sequence, event_id)


class CaseEventHandler(EventHandler):
    """The case stream's handler, which also applies a fetched batch in one transaction
    (``BatchHandler``)."""

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """The events in order, each as :meth:`apply` decides it, in one transaction with the
        last position; raises, changing nothing, on failure (then taken one by one)."""
        with self.service.batch():
            return sum(self.apply(delivery) for delivery in deliveries)


# How long a pull of meeting events waits for the case consumer before going one by one.
BATCH_WAIT = 1.0


class NotBatchedNow(Exception):
    """A pull of meeting events the batch path leaves to the one-at-a-time path."""


class MeetingEventHandler(EventHandler):
    """The meetings stream's handler, which also applies a fetched batch in one transaction.

    Its events wait for the case consumer (:class:`CaseStreamFirst`). A pull waits, before its
    transaction (which the case consumer's must not wait for), until the case consumer has
    applied the case position of the pull's last event: live, the meetings service decided
    from those case events first, so that is at once or within a few milliseconds, and an
    earlier event of the pull waits no longer than that. Under load, going one event at a
    time instead would cost a transaction per meeting event and let the consumer fall behind.
    A pull still short after :data:`BATCH_WAIT`, or with an event that names no case position
    (published before the header), goes one event at a time, each waiting for its own position.
    """

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """As :meth:`CaseEventHandler.apply_batch`, once every fresh event's case position is
        applied by the case consumer; else raises :class:`NotBatchedNow`, changing nothing."""
        applied = self.applied_through()
        positions = [case_position(d) for d in deliveries if d.stream_sequence > applied]
        if any(p is None for p in positions):
            raise NotBatchedNow("a meeting event names no case position")
        known = [p for p in positions if p is not None]
        if (
            known
            and self.case_first is not None
            and not self.case_first.reached_within(max(known), BATCH_WAIT)
        ):
            raise NotBatchedNow(
                f"the case consumer has not reached case position {max(known)} in {BATCH_WAIT} s"
            )
        with self.service.batch():
            return sum(self.apply(delivery) for delivery in deliveries)


class RecordNotAdopted(RuntimeError):
    """The delivery record on the bus cannot be taken over (an event whose hash does not verify)."""


async def adopt_record(
    store: NotificationStore,
    nats_url: str,
    names: BusNames,
    sources: Mapping[str, BusNames] | None = None,
) -> int:
    """If the store is empty and the delivery record stream is not, take the record over
    (:meth:`NotificationStore.adopt_record`); how many events it held.

    Rebuilding the service from history (an empty store replaying both streams) then decides
    every message again with the same delivery keys, but sends none that the record says was
    sent, failed or withdrawn, and publishes no record event twice. ``sources`` (consumer:
    the stream it reads) are read once to find, per consumer, the last log position whose
    event the record's deliveries were decided for: a delivery the replay decides up to
    there that the record does not know was decided by a rule added since, and is not sent
    (:meth:`NotificationsService.apply`).
    """
    if not await asyncio.to_thread(store.is_empty):
        return 0
    events: list[LoggedEvent] = []
    async with aclosing(stream_messages(nats_url, names, name="notifications-adopt")) as messages:
        async for msg in messages:
            body = orjson.loads(msg.data)
            if cloud_event_hash(body) != body["eventhash"]:
                raise RecordNotAdopted(
                    f"{names.stream} sequence {msg.metadata.sequence.stream}: the event's hash does"
                    " not verify; the record is not taken over (nothing was written)"
                )
            events.append(logged_event(body))
    if not events:
        return 0
    outcomes, alerts = outcomes_of_record((e.event_id, e.type, e.state["data"]) for e in events)
    causes = causes_of_record((e.event_id, e.type, e.state["data"]) for e in events)
    reached: dict[str, int] = {}
    for consumer, source in (sources or {}).items():
        last = await _last_position_of(nats_url, source, causes)
        if last is not None:
            reached[consumer] = last
    await asyncio.to_thread(store.adopt_record, events, outcomes, alerts, reached)
    log.info(
        "notifications.record_adopted",
        stream=names.stream,
        events=len(events),
        deliveries=len(outcomes),
        alerts=len(alerts),
        reached=reached,
    )
    return len(events)


async def _last_position_of(nats_url: str, names: BusNames, event_ids: set[str]) -> int | None:
    """The highest log position (the relay's header) of the stream's events among ``event_ids``."""
    found: int | None = None
    async with aclosing(stream_messages(nats_url, names, name="notifications-adopt-reached")) as messages:
        async for msg in messages:
            headers = msg.headers or {}
            position = headers.get(HEADER_LOG_POSITION, "")
            if headers.get(HEADER_MSG_ID) in event_ids and position.isdigit():
                found = max(found or 0, int(position))
    return found


class NotificationEventLog(StoredEventLog):
    """The relay's ``EventLog`` over the delivery record."""

    def __init__(self, store: NotificationStore, names: BusNames) -> None:
        super().__init__(store, names, source=NOTIFICATION_EVENT_SOURCE, type_prefix=TYPE_PREFIX)
