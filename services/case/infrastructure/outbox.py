"""The case store's log as the relay's outbox: each stored event as the message to publish."""

from __future__ import annotations

from collections.abc import Sequence

from services.case.infrastructure.store import CaseEventStore
from services.shared.bus.names import BusNames
from services.shared.bus.relay import OutboxMessage
from vss_contracts.case_events import TYPE_PREFIX
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID


def event_name_of(type_name: str) -> str:
    """``se.vss.case.SipDecided.v1`` -> ``SipDecided`` (the subject's last token)."""
    return type_name.removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]


class CaseEventLog:
    """Reads the case store's notification log and renders each event as a CloudEvent message."""

    def __init__(self, store: CaseEventStore, names: BusNames | None = None) -> None:
        self.store = store
        self.names = names or BusNames()

    def read(self, after: int, limit: int) -> Sequence[OutboxMessage]:
        messages = []
        for notification in self.store.read_log(after, limit):
            event_id, case_id, body = self.store.published_bytes(notification)
            type_name = notification.topic
            messages.append(
                OutboxMessage(
                    position=notification.id,
                    event_id=event_id,
                    subject=self.names.subject(case_id, event_name_of(type_name)),
                    body=body,
                    headers={
                        HEADER_MSG_ID: event_id,
                        HEADER_EVENT_TYPE: type_name,
                        HEADER_LOG_POSITION: str(notification.id),
                    },
                    commit_key=case_id,
                )
            )
        return messages
