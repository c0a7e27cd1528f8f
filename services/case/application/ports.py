"""What the case use cases need from the outside world, as protocols.

The infrastructure implements them (the event store over SQLite or PostgreSQL, the
clock); tests may give simpler ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from services.case.domain.case import Case

R = TypeVar("R")


class CaseNotYetOpened(LookupError):
    """A case asked for as it stood at a moment before it was opened."""


class CaseNotFound(LookupError):
    def __init__(self, case_id: UUID) -> None:
        super().__init__(f"no case {case_id}")
        self.case_id = case_id


class CaseAlreadyExists(Exception):
    def __init__(self, case_id: UUID) -> None:
        super().__init__(f"case {case_id} exists already")
        self.case_id = case_id


class ConcurrentWrite(Exception):
    """Another write reached the store first (the case version or idempotency key is taken)."""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first result of a command sent with an Idempotency-Key, kept to answer retries."""

    key_hash: str
    fingerprint: str
    case_id: UUID
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEventRef:
    event_id: UUID
    type: str
    version: int
    position: int


@dataclass(frozen=True, slots=True)
class SaveResult:
    case_id: UUID
    version: int
    position: int
    events: tuple[StoredEventRef, ...]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """An event of a case as the history endpoint shows it."""

    position: int
    version: int
    type: str
    event_id: UUID
    recorded_at: datetime
    actor_id: str
    actor_organisation: str
    principal: str
    correlation_id: str
    causation_id: str | None
    prev_hash: str
    hash: str
    data: dict[str, Any]


class CaseStore(Protocol):
    def load(self, case_id: UUID) -> Case: ...

    def take(self, case_id: UUID) -> Case:
        """The case for one command to change, shared with nothing: the cached case itself,
        out of the cache until :meth:`save` caches it again (or :meth:`put_back`); a copy of
        what is stored when none is cached."""
        ...

    def put_back(self, case: Case) -> None:
        """Cache again a case taken for a command that recorded nothing (it is as loaded)."""
        ...

    def load_version(self, case_id: UUID, version: int) -> Case: ...

    def forget(self, case_id: UUID) -> None:
        """Drop any cached copy of the case: the next load reads the store."""
        ...

    def read_cached(self, case_id: UUID, read: Callable[[Case], R]) -> R | None:
        """``read`` of the cached case, without touching the store, while no command can take it
        (None: not cached, or not at once). ``read`` must not change it."""
        ...

    def exists(self, case_id: UUID) -> bool: ...

    def save(self, case: Case, idempotency: IdempotencyRecord | None = None) -> SaveResult: ...

    def find_idempotency(self, key_hash: str) -> IdempotencyRecord | None: ...

    def history(self, case_id: UUID, after_version: int, limit: int) -> list[HistoryEntry]: ...

    def ping(self) -> None:
        """One round trip to the database; raises what the driver raises when it cannot be reached."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...
