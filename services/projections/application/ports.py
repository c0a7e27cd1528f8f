"""What the query use cases need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.projections.domain.case_view import View
from services.shared.access import AccessRecord


@dataclass(frozen=True, slots=True)
class Position:
    stream_sequence: int
    log_position: int
    updated_at: str | None


class NoReadModels(LookupError):
    """No generation of the read models exists yet (nothing was projected)."""


class ReadModelQueries(Protocol):
    @property
    def generation(self) -> str: ...

    def position(self) -> Position: ...

    def overview(self, case_id: str) -> View | None: ...

    def journal(self, case_id: str, after_version: int, limit: int) -> list[dict[str, Any]]: ...

    def deliveries(self, case_id: str, after_version: int, limit: int) -> list[dict[str, Any]]: ...

    def meetings(self, case_id: str) -> list[dict[str, Any]]:
        """The case's meetings in the order they start, every status (scheduled, rescheduled,
        cancelled, held): which are upcoming is the caller's to decide by its today. Each
        is a dict of JSON values (``services.projections.domain.meetings.answer``); its
        ``.ics`` is ``services.projections.domain.meetings.meeting_calendar(meeting, now=…)``."""
        ...

    def visible_cases(
        self,
        organisation_id: str,
        today: str,
        *,
        coordinator: tuple[str, str] | None = None,  # (organisation id, user id): a person
        phase: str | None = None,
        municipality: str | None = None,
        overdue: bool | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[View]: ...

    def coordinator_cases(self, user_id: str, organisation_id: str) -> list[View]: ...

    def client_cases(self, personal_identity_number: str) -> list[View]: ...

    def overdue_actions(self, organisation_id: str, today: str, limit: int) -> list[tuple[str, str, str]]: ...

    def overdue_follow_ups(self, organisation_id: str, today: str, limit: int) -> list[tuple[str, str]]: ...

    def all_facts(self) -> list[dict[str, Any]]: ...


class AccessLog(Protocol):
    def record(self, records: Sequence[AccessRecord]) -> None: ...

    def for_case(self, case_id: str, after: int, limit: int) -> list[tuple[int, AccessRecord]]: ...

    def latest_for_case(self, case_id: str, limit: int) -> list[tuple[int, AccessRecord]]: ...

    def for_user(
        self, user_id: str, organisation_id: str, after: int, limit: int
    ) -> list[tuple[int, AccessRecord]]: ...


class ServedReadModels(Protocol):
    def wait_for(self, log_position: int, limit: float) -> tuple[ReadModelQueries, Position, bool]:
        """The read models once they reflect ``log_position``; False if ``limit`` seconds passed first."""
        ...
