"""In-memory ports of the projections service (``services.projections.application``).

:class:`InMemoryReadModels` is one generation of read models, as the real ``ReadModels``:
the writer ports of the three projectors (``ReadModelWriter``, ``DeliveryWriter``,
``MeetingWriter``) and the queries' port (``ReadModelQueries``). A transaction is all or
nothing (an exception in it restores what was there), the position only moves forward,
and a journal or delivery row already there is an error, as the tables' keys make it.
:class:`InMemoryAccessLog` implements ``AccessLog``; it can be made to fail, as a database can.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from services.projections.application.deliveries import DELIVERIES_CONSUMER
from services.projections.application.meetings import MEETINGS_CONSUMER
from services.projections.application.ports import Position
from services.projections.domain import access, deliveries, meetings
from services.projections.domain.case_view import View
from services.projections.domain.meetings import Head, Meeting
from services.shared.access import AccessRecord, may_see
from tests.unit.checkpoints import Positions

CONSUMER = "projections"
JOURNAL_COLUMNS = (
    "case_id",
    "version",
    "log_position",
    "event_id",
    "type",
    "time",
    "actor_id",
    "actor_organisation",
    "actor_principal",
    "summary",
    "verified",
)


class DuplicateRow(Exception):
    """A row whose key (case id, version) is there already."""


class InMemoryReadModels:
    generation = "in-memory"

    def __init__(self) -> None:
        self.views: dict[str, View] = {}
        self.derived: set[str] = set()  # cases whose tables derived from the view are written
        self.journal_rows: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.delivery_rows: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.meeting_rows: dict[tuple[str, str], tuple[Any, ...]] = {}  # as the table keeps them
        self.meeting_heads: dict[str, Head] = {}
        self.positions = Positions()
        self.read_position = Position(0, 0, None)
        self.transactions = 0

    # ------------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self) -> Iterator[InMemoryReadModels]:
        before = copy.deepcopy(
            (
                self.views,
                self.derived,
                self.journal_rows,
                self.delivery_rows,
                self.meeting_rows,
                self.meeting_heads,
                self.positions,
                self.read_position,
            )
        )
        try:
            yield self
        except BaseException:
            (
                self.views,
                self.derived,
                self.journal_rows,
                self.delivery_rows,
                self.meeting_rows,
                self.meeting_heads,
                self.positions,
                self.read_position,
            ) = before
            raise
        self.transactions += 1

    def load_view(self, case_id: str, cursor: Any | None = None) -> View | None:
        view = self.views.get(case_id)
        return copy.deepcopy(view) if view is not None else None

    def write_journal(self, cursor: Any, journal_rows: Sequence[tuple[Any, ...]]) -> None:
        self._insert(self.journal_rows, journal_rows)

    def write_views(self, cursor: Any, views: Iterable[View]) -> None:
        for view in views:
            self.views[view["case_id"]] = copy.deepcopy(view)
            self.derived.add(view["case_id"])

    def write_out(self, cursor: Any, views: Iterable[View]) -> None:
        for view in views:  # the document alone: the tables derived from it are not written
            self.views[view["case_id"]] = orjson.loads(orjson.dumps(view))

    def derive(self, cursor: Any, case_ids: Sequence[str]) -> None:
        for case_id in case_ids:
            if case_id not in self.views or case_id in self.derived:
                raise DuplicateRow(f"case {case_id}: no document, or its tables are there already")
            self.derived.add(case_id)

    def write(
        self,
        cursor: Any,
        views: Iterable[View],
        journal_rows: Sequence[tuple[Any, ...]],
        *,
        stream_sequence: int,
        event_id: str | None,
        log_position: int,
        at: str,
        fresh: bool = False,
    ) -> bool:
        if not self.positions.advance(CONSUMER, stream_sequence, event_id):
            return False
        self.read_position = Position(stream_sequence, max(log_position, self.read_position.log_position), at)
        for view in views:
            if fresh and view["case_id"] in self.views:
                raise DuplicateRow(f"case {view['case_id']} is there already")
            self.views[view["case_id"]] = copy.deepcopy(view)
            self.derived.add(view["case_id"])
        self.write_journal(cursor, journal_rows)
        return True

    def advance(self, cursor: Any, consumer: str, stream_sequence: int, event_id: str | None) -> bool:
        return self.positions.advance(consumer, stream_sequence, event_id)

    def delivery_head(self, cursor: Any, case_id: str) -> tuple[int, str] | None:
        versions = sorted(v for c, v in self.delivery_rows if c == case_id)
        if not versions:
            return None
        row = dict(zip(deliveries.COLUMNS, self.delivery_rows[(case_id, versions[-1])], strict=True))
        return versions[-1], str(row["event_hash"])

    def write_deliveries(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        self._insert(self.delivery_rows, rows)

    def meeting_head(self, cursor: Any, case_id: str) -> Head | None:
        return self.meeting_heads.get(case_id)

    def load_meeting(self, cursor: Any, case_id: str, meeting_id: str) -> Meeting | None:
        found = self.meeting_rows.get((case_id, meeting_id))
        return meetings.from_row(found) if found is not None else None

    def write_meetings(
        self, cursor: Any, changed: Sequence[Meeting], heads: Sequence[tuple[str, Head]]
    ) -> None:
        for meeting in changed:  # through the row, as the table: what is not in a column is lost
            self.meeting_rows[(meeting["case_id"], meeting["meeting_id"])] = meetings.row(meeting)
        self.meeting_heads.update(heads)

    @staticmethod
    def _insert(table: dict[tuple[str, int], tuple[Any, ...]], rows: Sequence[tuple[Any, ...]]) -> None:
        for row in rows:
            key = (str(row[0]), int(row[1]))
            if key in table:
                raise DuplicateRow(f"{key} is there already")
            table[key] = row

    # ------------------------------------------------------------------------ queries
    def position(self) -> Position:
        return self.read_position

    def deliveries_applied_through(self) -> int:
        return self.positions.position(DELIVERIES_CONSUMER)

    def meetings_applied_through(self) -> int:
        return self.positions.position(MEETINGS_CONSUMER)

    def overview(self, case_id: str) -> View | None:
        return self.load_view(case_id)

    def journal(self, case_id: str, after_version: int, limit: int) -> list[dict[str, Any]]:
        rows = [r for (c, v), r in sorted(self.journal_rows.items()) if c == case_id and v > after_version]
        found = [dict(zip(JOURNAL_COLUMNS, row, strict=True)) for row in rows[:limit]]
        for entry in found:
            del entry["case_id"]
            entry["verified"] = bool(entry["verified"])
        return found

    def deliveries(self, case_id: str, after_version: int, limit: int) -> list[dict[str, Any]]:
        rows = [r for (c, v), r in sorted(self.delivery_rows.items()) if c == case_id and v > after_version]
        found = []
        for row in rows[:limit]:
            entry = dict(zip(deliveries.COLUMNS, row, strict=True))
            found.append(
                {
                    "record_version": entry["version"],
                    "type": entry["type"],
                    "status": entry["status"],
                    "delivery_key": entry["delivery_key"],
                    "recipient": {"name": entry["recipient_name"], "role": entry["recipient_role"]},
                    "channel": entry["channel"],
                    "template": entry["template"],
                    "summary": entry["summary"],
                    "verified": bool(entry["verified"]),
                }
            )
        return found

    def meetings(self, case_id: str) -> list[dict[str, Any]]:
        found = [meetings.from_row(r) for (c, _), r in self.meeting_rows.items() if c == case_id]
        found.sort(key=lambda m: (m["starts_utc"], m["meeting_id"]))
        return [meetings.answer(m) for m in found]

    def visible_cases(
        self,
        organisation_id: str,
        today: str,
        *,
        coordinator: tuple[str, str] | None = None,
        phase: str | None = None,
        municipality: str | None = None,
        overdue: bool | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[View]:
        found = []
        for case_id, view in sorted(self.views.items()):
            if not may_see(organisation_id, access.grants(view), today):
                continue
            if coordinator is not None and coordinator not in _coordinators(view):
                continue
            if phase is not None and view["phase"] != phase:
                continue
            if municipality is not None and view["municipality"]["code"] != municipality:
                continue
            if overdue is not None and _overdue(view, today) != overdue:
                continue
            if after is not None and case_id <= after:
                continue
            found.append(copy.deepcopy(view))
        return found[:limit]

    def coordinator_cases(self, user_id: str, organisation_id: str) -> list[View]:
        return [
            copy.deepcopy(view)
            for _, view in sorted(self.views.items())
            if view["status"] == "active" and (organisation_id, user_id) in _coordinators(view)
        ]

    def client_cases(self, personal_identity_number: str) -> list[View]:
        return [
            copy.deepcopy(view)
            for _, view in sorted(self.views.items())
            if view["client"]["personal_identity_number"] == personal_identity_number
        ]

    def overdue_actions(self, organisation_id: str, today: str, limit: int) -> list[tuple[str, str, str]]:
        found = [
            (action["due_on"], case_id, action["action_id"])
            for case_id, action in _open_actions(self.views.values())
            if action["responsible"]["organisation_id"] == organisation_id and action["due_on"] < today
        ]
        return [(case_id, action_id, due_on) for due_on, case_id, action_id in sorted(found)[:limit]]

    def overdue_follow_ups(self, organisation_id: str, today: str, limit: int) -> list[tuple[str, str]]:
        found = sorted(
            (view["next_follow_up_on"], case_id)
            for case_id, view in self.views.items()
            if view["status"] == "active"
            and view["next_follow_up_on"] is not None
            and view["next_follow_up_on"] < today
            and organisation_id in {org for org, _ in _coordinators(view)}
        )
        return [(case_id, on) for on, case_id in found[:limit]]

    def all_facts(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(view["facts"]) for view in self.views.values()]


def _coordinators(view: View) -> set[tuple[str, str]]:
    return {(c["organisation"]["id"], c["user_id"]) for c in view["coordinators"]}


def _open_actions(views: Iterable[View]) -> Iterator[tuple[str, dict[str, Any]]]:
    for view in views:
        sip = view["sip"]
        if sip is not None and view["status"] == "active":
            yield from ((view["case_id"], a) for a in sip["actions"] if a["done_on"] is None)


def _overdue(view: View, today: str) -> bool:
    if view["status"] != "active":
        return False
    follow_up = view["next_follow_up_on"]
    late_action = any(a["due_on"] < today for _, a in _open_actions([view]))
    return (follow_up is not None and follow_up < today) or late_action


class AccessLogUnavailable(Exception):
    """The access log cannot record (its database is down)."""


class InMemoryAccessLog:
    def __init__(self) -> None:
        self.entries: list[AccessRecord] = []
        self.failing = False

    def record(self, records: Sequence[AccessRecord]) -> None:
        if self.failing:
            raise AccessLogUnavailable("the access log cannot record")
        self.entries.extend(records)

    def for_case(self, case_id: str, after: int, limit: int) -> list[tuple[int, AccessRecord]]:
        found = [
            (seq, r) for seq, r in enumerate(self.entries, start=1) if r.case_id == case_id and seq > after
        ]
        return found[:limit]

    def latest_for_case(self, case_id: str, limit: int) -> list[tuple[int, AccessRecord]]:
        return list(reversed(self.for_case(case_id, 0, len(self.entries))))[:limit]

    def for_user(
        self, user_id: str, organisation_id: str, after: int, limit: int
    ) -> list[tuple[int, AccessRecord]]:
        found = [
            (seq, r)
            for seq, r in enumerate(self.entries, start=1)
            if (r.user_id, r.organisation_id) == (user_id, organisation_id) and seq > after
        ]
        return found[:limit]

    def outcomes(self) -> list[tuple[str, str | None, str]]:
        """(resource, case id, outcome) of each record, in order."""
        return [(r.resource, r.case_id, r.outcome) for r in self.entries]
