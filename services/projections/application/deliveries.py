"""Apply the delivery record (stream ``VSS_NOTIFICATIONS``) to the journal's delivery rows.

The second consumer of the projector process, with its own position
(:data:`DELIVERIES_CONSUMER` in ``consumer_positions``), moved in the same transaction
as the rows. Live, a pull per transaction; a rebuild hands over a batch at a time.
Either way it is the same code.

Idempotent per event, as the case projector is: an event at or below the version the
case's delivery record has reached here (a redelivery, or a copy the relay republished)
changes nothing but the position.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from services.projections.domain import deliveries
from services.projections.domain.events import NotificationRecord

DELIVERIES_CONSUMER = "projections-notifications"


class DeliveryWriter(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...

    def advance(self, cursor: Any, consumer: str, stream_sequence: int, event_id: str | None) -> bool: ...

    def delivery_head(self, cursor: Any, case_id: str) -> tuple[int, str] | None: ...

    def write_deliveries(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> None: ...


class _AlreadyApplied(Exception):
    pass


class DeliveryProjector:
    def __init__(self, models: DeliveryWriter) -> None:
        self.models = models
        self.applied = 0
        self.duplicates = 0
        self.chain_breaks = 0

    def apply(
        self, records: Sequence[NotificationRecord], *, stream_sequence: int, event_id: str | None
    ) -> bool:
        """Write the rows of ``records`` and move the position to ``stream_sequence``, in one
        transaction. False, changing nothing, if the position is there already."""
        try:
            with self.models.transaction() as cursor:
                if not self.models.advance(cursor, DELIVERIES_CONSUMER, stream_sequence, event_id):
                    raise _AlreadyApplied
                heads: dict[str, tuple[int, str] | None] = {}
                rows = []
                for record in records:
                    if record.case_id not in heads:
                        heads[record.case_id] = self.models.delivery_head(cursor, record.case_id)
                    head = heads[record.case_id]
                    if head is not None and record.version <= head[0]:
                        self.duplicates += 1
                        continue
                    verified = deliveries.continues_chain(record, head)
                    self.chain_breaks += not verified
                    heads[record.case_id] = (record.version, record.event_hash)
                    rows.append(deliveries.delivery_row(record, verified))
                self.models.write_deliveries(cursor, rows)
        except _AlreadyApplied:
            return False
        self.applied += len(rows)
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        """Move the position past an event that was not applied (dead-lettered)."""
        self.apply((), stream_sequence=stream_sequence, event_id=event_id)
