"""The query use cases: who may read what, and a record of every read and every refusal.

Rules (see docs/adr/0005 and 0015):
- A client (a reader whose principal is ``client``) reads their own cases, whole, always
  (:func:`services.shared.access.may_read`), and nothing that spans other people's cases.
- Case data (overview, journal, lists, caseloads, overdue lists) needs the coordinator
  or manager role, and each case is visible only to the organisations of its current
  coordinators and those its current consent covers (:mod:`..domain.access`). A
  refusal is 403 (never a pretended 404) and is recorded like a read.
- Statistics need the manager or analyst role; they carry no personal data.
- Every read of a case's data, and every refused attempt, is recorded in the access
  log *before* the data is returned: if it cannot be recorded, nothing is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from services.projections.application.ports import AccessLog, ReadModelQueries
from services.projections.domain import access, statistics
from services.projections.domain.case_view import View, mark_overdue, overdue_actions
from services.projections.domain.journal import mark_corrections
from services.shared.access import CLIENT_PRINCIPAL, AccessRecord, may_read, may_see, record_accesses, refusal

CASE_ROLES = frozenset({"coordinator", "manager"})
STATISTICS_ROLES = frozenset({"manager", "analyst"})
ACCESS_REVIEW_ROLES = frozenset({"manager"})


@dataclass(frozen=True, slots=True)
class Reader:
    user_id: str
    organisation_id: str
    roles: frozenset[str]
    principal: str | None = None


class AccessDenied(Exception):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


class CaseNotFound(LookupError):
    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case {case_id} in the read models")
        self.case_id = case_id


@dataclass(frozen=True, slots=True)
class Journal:
    items: list[dict[str, Any]]  # the case's events, in version order
    deliveries: list[dict[str, Any]]  # the delivery record (stream VSS_NOTIFICATIONS), in its order


@dataclass(frozen=True, slots=True)
class MyPlan:
    """What the client's page shows of one case (*Min plan*)."""

    view: dict[str, Any]  # the overview, with overdue marks as of today
    meetings: list[dict[str, Any]]  # the case's meetings not held or cancelled, soonest first
    reads: list[dict[str, Any]]  # the access log's latest entries of the case, newest first


@dataclass(frozen=True, slots=True)
class QueryPolicy:
    caseload_limit: int = 25
    due_within_days: int = 14


class Queries:
    def __init__(
        self,
        models: ReadModelQueries,
        access_log: AccessLog,
        today: Callable[[], date],
        policy: QueryPolicy = QueryPolicy(),
    ) -> None:
        self.models = models
        self.access_log = access_log
        self.today = today
        self.policy = policy

    # ----------------------------------------------------------------------- recording
    def _record(
        self,
        reader: Reader,
        resource: str,
        outcome: str,
        case_ids: Sequence[str | None],
        reason: str | None = None,
    ) -> None:
        record_accesses(self.access_log, reader, case_ids, resource, outcome, reason)

    def _deny(
        self, reader: Reader, resource: str, case_id: str | None, rule: str, detail: str
    ) -> AccessDenied:
        self._record(reader, resource, "denied", [case_id], f"{rule}: {detail}")
        return AccessDenied(rule, detail)

    def _require_role(
        self, reader: Reader, roles: frozenset[str], resource: str, case_id: str | None
    ) -> None:
        if not reader.roles & roles:
            raise self._deny(
                reader,
                resource,
                case_id,
                "role_required",
                f"reading {resource} needs one of the roles {sorted(roles)}",
            )

    def _case(self, reader: Reader, case_id: str, resource: str) -> View:
        client = reader.principal == CLIENT_PRINCIPAL
        if not client:
            self._require_role(reader, CASE_ROLES, resource, case_id)
        view = self.models.overview(case_id)
        if view is None:
            raise CaseNotFound(case_id)
        owner = view["client"]["personal_identity_number"]
        if not may_read(reader, access.grants(view), owner, self.today().isoformat()):
            raise self._deny(reader, resource, case_id, *refusal(reader, case_id))
        return view

    # ------------------------------------------------------------------------- queries
    def overview(self, reader: Reader, case_id: str) -> dict[str, Any]:
        view = self._case(reader, case_id, "overview")
        self._record(reader, "overview", "granted", [case_id])
        return mark_overdue(view, self.today().isoformat())

    def journal(
        self, reader: Reader, case_id: str, after_version: int, limit: int, after_delivery: int = 0
    ) -> Journal:
        """The case's events and its delivery record (who was told what), each paged on its own.

        One read of the journal: one access-log record, whichever parts it returned.
        """
        view = self._case(reader, case_id, "journal")
        journal = Journal(
            items=mark_corrections(self.models.journal(case_id, after_version, limit), view),
            deliveries=self.models.deliveries(case_id, after_delivery, limit),
        )
        self._record(reader, "journal", "granted", [case_id])
        return journal

    def my_cases(self, reader: Reader) -> list[dict[str, Any]]:
        """A client's own cases (*mina ärenden*), active and closed: nobody else's, ever."""
        if reader.principal != CLIENT_PRINCIPAL:
            raise self._deny(
                reader,
                "my_cases",
                None,
                "client_only",
                "the list of one's own cases is for a signed-in client",
            )
        today = self.today().isoformat()
        views = self.models.client_cases(reader.user_id)
        if views:
            self._record(reader, "my_cases", "granted", [v["case_id"] for v in views])
        return [_summary(v, today) for v in views]

    def my_plan(
        self, reader: Reader, case_id: str, now: datetime, reads: int = 200, resource: str = "my_plan"
    ) -> MyPlan:
        """The client's own page of a case (or, by the same rule, a reader who may see it):
        the whole plan, the meetings still to come (``starts_at`` after ``now``, ISO) and who
        has read the case's data. One access-log record: the page is one read (the meetings
        and the access log are the case's data like the overview)."""
        if now.tzinfo is None:
            raise ValueError("now needs a time zone")
        view = self._case(reader, case_id, resource)
        coming = [
            m
            for m in self.models.meetings(case_id)
            if m["status"] in ("scheduled", "rescheduled") and datetime.fromisoformat(m["ends_at"]) >= now
        ]
        entries = self.access_log.latest_for_case(case_id, reads) if reads > 0 else []
        self._record(reader, resource, "granted", [case_id])
        latest = [_entry(seq, record) for seq, record in entries]
        return MyPlan(mark_overdue(view, self.today().isoformat()), coming, latest)

    def client_document(self, reader: Reader, case_id: str, resource: str) -> dict[str, Any]:
        """The overview for a page or a printout of the case (``resource`` names it in the log)."""
        view = self._case(reader, case_id, resource)
        self._record(reader, resource, "granted", [case_id])
        return mark_overdue(view, self.today().isoformat())

    def cases(
        self,
        reader: Reader,
        *,
        coordinator: str | None,
        phase: str | None,
        municipality: str | None,
        overdue: bool | None,
        after: str | None,
        limit: int,
        coordinator_organisation: str | None = None,
    ) -> list[dict[str, Any]]:
        self._require_role(reader, CASE_ROLES, "case_list", None)
        today = self.today().isoformat()
        # A coordinator is a person: the user id at an organisation, the reader's by default.
        person = (coordinator_organisation or reader.organisation_id, coordinator) if coordinator else None
        views = self.models.visible_cases(
            reader.organisation_id,
            today,
            coordinator=person,
            phase=phase,
            municipality=municipality,
            overdue=overdue,
            after=after,
            limit=limit,
        )
        if views:
            self._record(reader, "case_list", "granted", [v["case_id"] for v in views])
        return [_summary(v, today) for v in views]

    def caseload(self, reader: Reader, user_id: str, organisation_id: str | None = None) -> dict[str, Any]:
        """A coordinator's active cases: their own, or (managers) of a coordinator of their organisation.

        The coordinator is the person (``organisation_id``, ``user_id``); the organisation
        defaults to the reader's. The same user id at another organisation is another person.
        """
        self._require_role(reader, CASE_ROLES, "caseload", None)
        organisation = organisation_id or reader.organisation_id
        own = (organisation, user_id) == (reader.organisation_id, reader.user_id)
        if not own and ("manager" not in reader.roles or organisation != reader.organisation_id):
            raise self._deny(
                reader,
                "caseload",
                None,
                "not_own_caseload",
                f"the caseload of {user_id} at {organisation} is for that coordinator and the managers of"
                " their organisation",
            )
        today = self.today()
        due_by = (today + timedelta(days=self.policy.due_within_days)).isoformat()
        views = self.models.coordinator_cases(user_id, organisation)
        by_phase: dict[str, int] = {}
        due = overdue = 0
        cases = []
        for view in views:
            by_phase[view["phase"]] = by_phase.get(view["phase"], 0) + 1
            summary = _summary(view, today.isoformat())
            follow_up = view["next_follow_up_on"]
            if follow_up is not None and follow_up < today.isoformat():
                overdue += 1
            elif follow_up is not None and follow_up <= due_by:
                due += 1
            cases.append(summary)
        if views:
            self._record(reader, "caseload", "granted", [v["case_id"] for v in views])
        return {
            "user_id": user_id,
            "organisation_id": organisation,
            "active_cases": len(views),
            "by_phase": by_phase,
            "follow_ups_due": due,
            "follow_ups_overdue": overdue,
            "due_within_days": self.policy.due_within_days,
            "limit": self.policy.caseload_limit,
            "over_limit": len(views) > self.policy.caseload_limit,
            "cases": cases,
        }

    def overdue(self, reader: Reader, limit: int) -> dict[str, Any]:
        """The reader's organisation's overdue follow-ups and the SIP actions it is responsible for."""
        self._require_role(reader, CASE_ROLES, "overdue", None)
        today = self.today().isoformat()
        follow_ups = [
            {"case_id": case_id, "follow_up_on": on}
            for case_id, on in self.models.overdue_follow_ups(reader.organisation_id, today, limit)
        ]
        actions = []
        for case_id, action_id, due_on in self.models.overdue_actions(reader.organisation_id, today, limit):
            view = self.models.overview(case_id)
            found = [a for a in overdue_actions(view, today) if a["action_id"] == action_id] if view else []
            if view is None or not found or not may_see(reader.organisation_id, access.grants(view), today):
                continue
            action = found[0]
            actions.append(
                {
                    "case_id": case_id,
                    "action_id": action_id,
                    "what": action["what"],
                    "due_on": due_on,
                    "responsible": action["responsible"],
                    "sip_version": view["sip"]["version"],
                }
            )
        cases = sorted({item["case_id"] for item in (*follow_ups, *actions)})
        if cases:
            self._record(reader, "overdue", "granted", cases)
        return {
            "organisation_id": reader.organisation_id,
            "as_of": today,
            "follow_ups": follow_ups,
            "actions": actions,
        }

    def statistics(
        self,
        reader: Reader,
        level: statistics.Level,
        period: statistics.Period,
        association_of: Callable[[str], str | None],
    ) -> list[dict[str, Any]]:
        self._require_role(reader, STATISTICS_ROLES, "statistics", None)
        facts = [statistics.CaseFacts.from_json(f) for f in self.models.all_facts()]
        return statistics.statistics_by(facts, level, period, self.today(), association_of)

    # ----------------------------------------------------------------------- the access log
    def case_access_log(self, reader: Reader, case_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Who read the case (the client's right to know), for those who may see the case."""
        self._case(reader, case_id, "access_log")
        entries = self.access_log.for_case(case_id, after, limit)
        self._record(reader, "access_log", "granted", [case_id])
        return [_entry(seq, record) for seq, record in entries]

    def user_access_history(
        self, reader: Reader, user_id: str, after: int, limit: int, organisation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """A person's reads (log review): their own, or of their organisation's users for a manager.

        The person is (``organisation_id``, ``user_id``); the organisation defaults to the reader's.
        """
        organisation = organisation_id or reader.organisation_id
        own = (organisation, user_id) == (reader.organisation_id, reader.user_id)
        if not own and (not reader.roles & ACCESS_REVIEW_ROLES or organisation != reader.organisation_id):
            raise self._deny(
                reader,
                "access_history",
                None,
                "not_own_access_history",
                f"the access history of {user_id} at {organisation} is for that user and the managers of"
                " their organisation",
            )
        entries = self.access_log.for_user(user_id, organisation, after, limit)
        self._record(reader, "access_history", "granted", [None], f"of {user_id} at {organisation}")
        return [_entry(seq, record) for seq, record in entries]


def _summary(view: View, today: str) -> dict[str, Any]:
    follow_up = view["next_follow_up_on"]
    return {
        "case_id": view["case_id"],
        "client_name": view["client"]["name"],
        "status": view["status"],
        "phase": view["phase"],
        "municipality": view["municipality"],
        "coordinators": [
            {"user_id": c["user_id"], "name": c["name"], "organisation_id": c["organisation"]["id"]}
            for c in view["coordinators"]
        ],
        "next_follow_up_on": follow_up,
        "follow_up_overdue": bool(view["status"] == "active" and follow_up is not None and follow_up < today),
        "overdue_actions": len(overdue_actions(view, today)),
        "open_early_warnings": len(view["open_early_warnings"]),
        "version": view["version"],
    }


def _entry(seq: int, record: AccessRecord) -> dict[str, Any]:
    return {
        "seq": seq,
        "record_id": record.record_id,
        "at": record.recorded_at,
        "user_id": record.user_id,
        "organisation_id": record.organisation_id,
        "roles": list(record.roles),
        "case_id": record.case_id,
        "read": record.resource,
        "outcome": record.outcome,
        "reason": record.reason,
        "principal": record.principal,
    }
