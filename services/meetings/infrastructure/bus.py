"""The meetings service on the bus: the case stream in, the meetings stream out.

- :class:`CaseEventHandler` is the shared consumer base's handler: the case events of one
  fetch are applied with the last one's stream sequence in one transaction
  (:meth:`MeetingsService.apply_case_events`), or, if that fails, one at a time.
- :class:`MeetingEventLog` is the relay's outbox: the store's log as CloudEvents for
  ``VSS_MEETINGS`` (the same relay as the case stream's: in order, once, atomic commits).
- :func:`adopt_stream` lets an empty store that is about to replay the case stream
  take over what the meetings stream holds, so the replay publishes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from uuid import UUID

import orjson
import structlog

from services.meetings.application.ports import CASE_POSITION
from services.meetings.application.service import SERVICE_ACTOR, CaseEventIn, MeetingsService
from services.meetings.infrastructure.store import MeetingStore
from services.shared.bus.consumer import Delivery, ServiceHandler
from services.shared.bus.names import BusNames
from services.shared.bus.outbox import LoggedEvent, StoredEventLog
from services.shared.bus.relay import OutboxMessage
from services.shared.bus.streams import stream_messages
from vss_contracts.meeting_events import (
    MEETING_EVENT_SOURCE,
    MEETING_STREAM,
    MEETING_SUBJECT_PREFIX,
    TYPE_PREFIX,
)
from vss_contracts.subjects import HEADER_CASE_POSITION, HEADER_LOG_POSITION

log = structlog.get_logger("vss.meetings.bus")


def meeting_bus_names(prefix: str = "", dead_letter: BusNames | None = None) -> BusNames:
    """The meetings stream's names (tests give a unique prefix)."""
    return (dead_letter or BusNames()).sibling(MEETING_STREAM, MEETING_SUBJECT_PREFIX, prefix)


class CaseEventHandler(ServiceHandler[MeetingsService]):
    """Implements the consumer base's ``Handler`` for the meetings service."""

    def apply(self, delivery: Delivery) -> bool:
        return self.service.apply_case_event(
            case_id=UUID(delivery.event.subject),
            event_id=delivery.event.id,
            recorded_at=delivery.event.time,
            data=delivery.data,
            stream_sequence=delivery.stream_sequence,
            log_position=delivery.log_position,
        )

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """What one fetch brought, in one transaction (the consumer acknowledges after it)."""
        return self.service.apply_case_events(
            [
                CaseEventIn(
                    case_id=UUID(d.event.subject),
                    event_id=d.event.id,
                    recorded_at=d.event.time,
                    data=d.data,
                    stream_sequence=d.stream_sequence,
                    log_position=d.log_position,
                )
                for d in deliveries
            ]
        )


class MeetingEventLog(StoredEventLog):
    """The relay's ``EventLog`` over the meetings store; each message also says which case log
    position its event followed (``Vss-Case-Position``), so a replay can put it back there."""

    def __init__(self, store: MeetingStore, names: BusNames) -> None:
        super().__init__(store, names, source=MEETING_EVENT_SOURCE, type_prefix=TYPE_PREFIX)

    def render(self, rows: Sequence[LoggedEvent]) -> Sequence[OutboxMessage]:
        messages = super().render(rows)
        for row, message in zip(rows, messages, strict=True):
            case_position = row.state.get(CASE_POSITION)
            if case_position is not None:
                message.headers[HEADER_CASE_POSITION] = str(case_position)
        return messages


async def adopt_stream(store: MeetingStore, nats_url: str, names: BusNames) -> int:
    """If the store is empty and the meetings stream is not, take the stream over; its size."""
    if not await asyncio.to_thread(store.is_empty):
        return 0
    ids: list[str] = []
    requests: list[tuple[int, str, int | None, bytes]] = []
    tail = 0
    async with aclosing(stream_messages(nats_url, names, name="meetings-adopt")) as messages:
        async for msg in messages:
            headers = msg.headers or {}
            event = orjson.loads(msg.data)
            ids.append(str(event["id"]))  # (a refill carries another msg id)
            tail = max(tail, int(headers.get(HEADER_LOG_POSITION, 0)))
            if event["actorid"] != SERVICE_ACTOR:  # a coordinator's request: not derived again
                position = headers.get(HEADER_CASE_POSITION)
                requests.append(
                    (
                        msg.metadata.sequence.stream,
                        str(event["subject"]),
                        int(position) if position is not None else None,
                        msg.data,
                    )
                )
    if not ids:
        return 0
    await asyncio.to_thread(store.adopt_stream, tail, ids, requests)
    log.info(
        "meetings.stream_adopted",
        stream=names.stream,
        messages=len(ids),
        requests=len(requests),
        tail_position=tail,
    )
    return len(ids)
