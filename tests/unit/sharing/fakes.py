"""An in-memory ``SharingStore`` and ``ShareTx`` (``services.sharing.application.service``).

One transaction is all or nothing: an exception inside it leaves the kept events, the
cases' access states, the outbox and the consumer's position as they were. A kept event
or an outbox message already there is not added again, as the real tables' keys do.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from services.sharing.application.service import KeptEvent, ShareMessage
from services.sharing.domain.coverage import CaseAccess
from tests.unit.checkpoints import Positions


@dataclass
class _Tables:
    kept: dict[tuple[str, int], KeptEvent] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # case id -> JSON-ready state
    outbox: list[ShareMessage] = field(default_factory=list)
    positions: Positions = field(default_factory=Positions)


class InMemoryShareTx:
    def __init__(self, tables: _Tables) -> None:
        self.tables = tables

    def advance(self, consumer: str, stream_sequence: int, event_id: str | None) -> bool:
        return self.tables.positions.advance(consumer, stream_sequence, event_id)

    def keep(self, event: KeptEvent) -> None:
        self.tables.kept.setdefault((event.case_id, event.version), event)

    def kept(self, case_id: str, first: int, last: int) -> Sequence[KeptEvent]:
        return [
            self.tables.kept[(case_id, v)] for v in range(first, last + 1) if (case_id, v) in self.tables.kept
        ]

    def case_state(self, case_id: str) -> tuple[CaseAccess, dict[str, tuple[int, bool]]]:
        state = self.tables.states.get(case_id)
        if state is None:
            return CaseAccess(), {}
        received = {org: (int(v), bool(sharing)) for org, (v, sharing) in state["received"].items()}
        return CaseAccess.from_json(state["access"]), received

    def save_case_state(
        self, case_id: str, access: CaseAccess, received: dict[str, tuple[int, bool]]
    ) -> None:
        state = {"access": access.to_json(), "received": {org: list(r) for org, r in received.items()}}
        self.tables.states[case_id] = copy.deepcopy(state)

    def enqueue(self, messages: Sequence[ShareMessage]) -> None:
        taken = {m.message_id for m in self.tables.outbox}
        for message in messages:
            if message.message_id not in taken:
                self.tables.outbox.append(message)
                taken.add(message.message_id)


class InMemorySharingStore:
    def __init__(self) -> None:
        self.tables = _Tables()
        self.fail_next_enqueue = False  # the next transaction fails as it writes the outbox
        self.fail_at_enqueue = 1  # ... at this call of enqueue in it (1: the first)
        self.enqueues = 0  # calls of enqueue in transactions that were to fail

    @contextmanager
    def transaction(self) -> Iterator[InMemoryShareTx]:
        before = copy.deepcopy(self.tables)
        tx = _FailingTx(self.tables, self) if self.fail_next_enqueue else InMemoryShareTx(self.tables)
        try:
            yield tx
        except BaseException:
            self.tables = before
            raise

    def applied_through(self, consumer: str) -> int:
        return self.tables.positions.position(consumer)

    def pass_over(self, consumer: str, stream_sequence: int, event_id: str | None) -> None:
        with self.transaction() as tx:
            tx.advance(consumer, stream_sequence, event_id)

    # ------------------------------------------------------------------------ for the tests
    def outbox(self, organisation: str | None = None) -> list[ShareMessage]:
        return [m for m in self.tables.outbox if organisation is None or m.organisation == organisation]

    def sent_versions(self, organisation: str) -> list[int | None]:
        """The case versions an organisation's messages carry (None: a message of the service's own)."""
        return [m.version for m in self.outbox(organisation)]


class StoreFailed(Exception):
    pass


class _FailingTx(InMemoryShareTx):
    def __init__(self, tables: _Tables, store: InMemorySharingStore) -> None:
        super().__init__(tables)
        self.store = store

    def enqueue(self, messages: Sequence[ShareMessage]) -> None:
        self.store.enqueues += 1
        if self.store.enqueues < self.store.fail_at_enqueue:
            super().enqueue(messages)
            return
        self.store.fail_next_enqueue = False
        raise StoreFailed("the database went away")
