"""An in-memory ``CaseStore``: the case port of ``services.case.application.ports``.

:class:`EventLog` is the store's content (each case's events, the global log, the
idempotency keys), shared by every :class:`InMemoryCaseStore` over it, as several case
service processes share one database. Each store keeps a cache of the cases it loaded or
saved, as the real store does, so a copy can be outdated by another store's write: the
version check at save catches it (``ConcurrentWrite``), as the database's key does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast
from uuid import UUID

from services.case.application.ports import (
    CaseNotFound,
    ConcurrentWrite,
    HistoryEntry,
    IdempotencyRecord,
    SaveResult,
    StoredEventRef,
)
from services.case.domain.case import Case
from services.case.domain.events import CaseEvent

R = TypeVar("R")


@dataclass
class EventLog:
    """What the database holds: every case's events, in order, with their log positions."""

    streams: dict[UUID, list[tuple[int, CaseEvent]]] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    last_position: int = 0

    def events(self, case_id: UUID) -> list[CaseEvent]:
        return [event for _, event in self.streams.get(case_id, [])]


class InMemoryCaseStore:
    """Implements ``CaseStore`` over an :class:`EventLog`, with a cache like the real store's."""

    def __init__(self, log: EventLog | None = None) -> None:
        self.log = log if log is not None else EventLog()
        self._cache: dict[UUID, Case] = {}
        self.saves = 0

    def load(self, case_id: UUID) -> Case:
        cached = self._cache.get(case_id)
        if cached is not None:
            return copy.deepcopy(cached)
        case = self._fold(case_id, None)
        self._cache[case_id] = copy.deepcopy(case)
        return case

    def take(self, case_id: UUID) -> Case:
        cached = self._cache.pop(case_id, None)
        return cached if cached is not None else self.load(case_id)

    def put_back(self, case: Case) -> None:
        cached = self._cache.get(case.id)
        if not case.pending_events and (cached is None or cached.version < case.version):
            self._cache[case.id] = case

    def load_version(self, case_id: UUID, version: int) -> Case:
        return self._fold(case_id, version)

    def ping(self) -> None:
        return None  # always reachable

    def forget(self, case_id: UUID) -> None:
        self._cache.pop(case_id, None)

    def read_cached(self, case_id: UUID, read: Callable[[Case], R]) -> R | None:
        case = self._cache.get(case_id)
        return None if case is None else read(case)

    def exists(self, case_id: UUID) -> bool:
        return bool(self.log.streams.get(case_id))

    def save(self, case: Case, idempotency: IdempotencyRecord | None = None) -> SaveResult:
        pending = cast(list[CaseEvent], list(case.pending_events))
        stream = self.log.streams.get(case.id, [])
        if pending[0].originator_version != len(stream) + 1:
            self.forget(case.id)
            raise ConcurrentWrite(f"case {case.id} is at version {len(stream)}")
        if idempotency is not None and idempotency.key_hash in self.log.idempotency:
            raise ConcurrentWrite("the idempotency key is taken")
        refs = []
        for event in pending:
            self.log.last_position += 1
            stream.append((self.log.last_position, event))
            refs.append(
                StoredEventRef(
                    event.meta.event_id, event.type, event.originator_version, self.log.last_position
                )
            )
        self.log.streams[case.id] = stream
        if idempotency is not None:
            self.log.idempotency[idempotency.key_hash] = idempotency
        case.collect_events()
        self._cache[case.id] = copy.deepcopy(case)
        self.saves += 1
        return SaveResult(case.id, pending[-1].originator_version, refs[-1].position, tuple(refs))

    def find_idempotency(self, key_hash: str) -> IdempotencyRecord | None:
        return self.log.idempotency.get(key_hash)

    def history(self, case_id: UUID, after_version: int, limit: int) -> list[HistoryEntry]:
        entries = []
        for position, event in self.log.streams.get(case_id, []):
            if event.originator_version <= after_version:
                continue
            meta = event.meta
            entries.append(
                HistoryEntry(
                    position=position,
                    version=event.originator_version,
                    type=event.type,
                    event_id=meta.event_id,
                    recorded_at=event.timestamp,
                    actor_id=meta.actor_id,
                    actor_organisation=meta.actor_organisation,
                    principal=meta.principal.value,
                    correlation_id=meta.correlation_id,
                    causation_id=meta.causation_id,
                    prev_hash=meta.prev_hash,
                    hash=meta.hash,
                    data=event.data.model_dump(mode="json"),
                )
            )
        return entries[:limit]

    def _fold(self, case_id: UUID, version: int | None) -> Case:
        events = self.log.events(case_id)
        if not events:
            raise CaseNotFound(case_id)
        case: Case | None = None
        for event in events[:version]:
            case = Case.evolve(case, event)
        assert case is not None
        return case
