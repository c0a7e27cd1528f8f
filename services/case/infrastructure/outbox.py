"""The case store's log as the relay's outbox: each stored event as the message to publish."""

from __future__ import annotations

from collections.abc import Sequence

from services.case.infrastructure.store import CaseEventStore, LogRow
from services.shared.bus.names import BusNames
from services.shared.bus.outbox import CloudEventLog, PublishedEvent
from vss_contracts.case_events import TYPE_PREFIX


class CaseEventLog(CloudEventLog[LogRow]):
    """Reads the case store's notification log and renders each event as a CloudEvent message."""

    def __init__(self, store: CaseEventStore, names: BusNames | None = None) -> None:
        super().__init__(names or BusNames(), type_prefix=TYPE_PREFIX, local=not store.config.is_postgres)
        self.store = store

    def fetch(self, after: int, limit: int) -> Sequence[LogRow]:
        return self.store.log_rows(after, limit)

    def published(self, row: LogRow) -> PublishedEvent:
        return self.store.published(row)
