"""The notifications service on the bus: case and meeting streams in, the delivery record out.

- :class:`EventHandler` is the shared consumer base's handler, one per stream (two
  durable consumers, each with its own position in the store).
- :class:`NotificationEventLog` is the relay's outbox: the delivery record's log as
  CloudEvents for ``VSS_NOTIFICATIONS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import orjson

from services.notifications.application.service import NotificationsService
from services.notifications.infrastructure.store import NotificationStore
from services.shared.bus import outbox
from services.shared.bus.consumer import Delivery
from services.shared.bus.names import BusNames
from services.shared.bus.relay import OutboxMessage
from vss_contracts.notification_events import (
    NOTIFICATION_EVENT_SOURCE,
    NOTIFICATION_STREAM,
    NOTIFICATION_SUBJECT_PREFIX,
    TYPE_PREFIX,
)
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID


def notification_bus_names(prefix: str = "", dead_letter: BusNames | None = None) -> BusNames:
    """The delivery record's stream names (tests give a unique prefix)."""
    return (dead_letter or BusNames()).sibling(NOTIFICATION_STREAM, NOTIFICATION_SUBJECT_PREFIX, prefix)


class EventHandler:
    """The consumer base's ``Handler`` for one stream (case or meetings)."""

    def __init__(self, service: NotificationsService, store: NotificationStore, consumer: str) -> None:
        self.service = service
        self.store = store
        self.consumer = consumer

    def applied_through(self) -> int:
        return self.store.applied_through(self.consumer)

    def apply(self, delivery: Delivery) -> bool:
        return self.service.apply(
            self.consumer,
            case_id=UUID(delivery.event.subject),
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            recorded_at=delivery.event.time,
            data=delivery.data,
            stream_sequence=delivery.stream_sequence,
        )

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.store.pass_over(self.consumer, stream_sequence, event_id)


class NotificationEventLog:
    """The relay's ``EventLog`` over the delivery record."""

    def __init__(self, store: NotificationStore, names: BusNames) -> None:
        self.store = store
        self.names = names

    def read(self, after: int, limit: int) -> Sequence[OutboxMessage]:
        messages = []
        for event in self.store.read_log(after, limit):
            body = outbox.cloud_event_body(
                source=NOTIFICATION_EVENT_SOURCE,
                type_name=event.type,
                case_id=event.case_id,
                version=event.version,
                position=event.position,
                state=event.state,
            )
            name = event.type.removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]
            messages.append(
                OutboxMessage(
                    position=event.position,
                    event_id=event.event_id,
                    subject=self.names.subject(event.case_id, name),
                    body=orjson.dumps(body, option=orjson.OPT_UTC_Z),
                    headers={
                        HEADER_MSG_ID: event.event_id,
                        HEADER_EVENT_TYPE: event.type,
                        HEADER_LOG_POSITION: str(event.position),
                    },
                    commit_key=event.case_id,
                )
            )
        return messages
