"""Case events as the projections receive them, made by the real Case aggregate.

A story is run on a case with the domain specs' steps (``tests.domain.specs``); its
events, with their real hash chain, become :class:`CaseEventRecord` s as the consumer
decodes them from the stream, numbered by a :class:`Stream`.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from services.case.domain.case import Case
from services.case.domain.events import CaseEvent
from services.projections.domain.events import CaseEventRecord
from tests.domain import specs


@dataclass
class Stream:
    """Stream sequences and case-store log positions, shared by every case of a test."""

    sequence: int = 0

    def records(self, case: Case) -> list[CaseEventRecord]:
        """The case's events not taken yet, in order, as published (taking them)."""
        records: list[CaseEventRecord] = []
        for event in case.collect_events():
            assert isinstance(event, CaseEvent)
            self.sequence += 1
            state = event.state
            records.append(
                CaseEventRecord(
                    case_id=str(event.originator_id),
                    version=event.originator_version,
                    type=event.type,
                    data=state["data"],
                    event_id=state["event_id"],
                    time=state["recorded_at"],
                    actor_id=state["actor_id"],
                    actor_org=state["actor_organisation"],
                    actor_principal=state["principal"],
                    log_position=self.sequence,
                    stream_sequence=self.sequence,
                    prev_hash=state["prev_hash"],
                    event_hash=state["hash"],
                    hash_ok=True,
                )
            )
        return records


def story(*steps: specs.Step, case_id: UUID = specs.CASE_ID) -> Case:
    """A case opened on ``specs.OPENED_ON`` by the region's coordinator, with ``steps`` run on it."""
    case = Case.open(specs.CONTEXT, specs.open_case(case_id=case_id))
    for step in steps:
        step(case.handling(specs.CONTEXT))
    return case


def tampered(record: CaseEventRecord) -> CaseEventRecord:
    """The record with content that no longer matches its hash."""
    return record._replace(hash_ok=False)
