"""The case store's log as the relay's outbox: each stored event as the message to publish."""

from __future__ import annotations

from collections.abc import Sequence

from services.case.infrastructure.store import CaseEventStore, LogRow
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
        self.local = not store.config.is_postgres
        self._event_names: dict[str, str] = {}  # type name -> the subject's last token

    def fetch(self, after: int, limit: int) -> Sequence[LogRow]:
        return self.store.log_rows(after, limit)

    def render(self, rows: Sequence[LogRow]) -> Sequence[OutboxMessage]:
        published, subject, names = self.store.published, self.names.subject, self._event_names
        messages = []
        for row in rows:
            event = published(row)
            type_name = event.type_name
            name = names.get(type_name) or names.setdefault(type_name, event_name_of(type_name))
            messages.append(
                OutboxMessage(
                    position=event.position,
                    event_id=event.event_id,
                    subject=subject(event.case_id, name),
                    body=event.body,
                    headers={
                        HEADER_MSG_ID: event.event_id,
                        HEADER_EVENT_TYPE: type_name,
                        HEADER_LOG_POSITION: str(event.position),
                    },
                    commit_key=event.case_id,
                )
            )
        return messages
