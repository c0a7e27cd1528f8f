"""The read models, one small class each, registered in :data:`READ_MODELS`.

A read model says which tables it keeps and, for the tables derived from a case's
overview (:class:`CaseTable`), which rows a view gives. :class:`ReadModels` creates,
writes and compares whatever is registered here, with no branch of its own per model:
adding a read model is one class here and one entry in the list.

- :class:`CaseOverview` is the overview document of each case, built by the event
  handlers of :mod:`services.projections.domain.case_view`; the other case tables are
  derived from that document whenever it is written, live (one case at a time) and in a
  rebuild (every case once, at the end) alike.
- :class:`Journal` is one row per case event, summarised by the handlers of
  :mod:`services.projections.domain.journal`.
- :class:`Deliveries` is one row per event of the case's delivery record, written by the
  projector's second consumer.
- :class:`Meetings` is one row per meeting of the case's schedule, and
  :class:`MeetingHeads` how far each case's schedule is applied; both written by the
  projector's third consumer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import orjson

from services.projections.domain import access, deliveries, meetings
from services.projections.domain.case_view import View

Row = tuple[Any, ...]


class ReadModel:
    """A read model's table: its columns, how it is created, and its key (two generations'
    tables are compared in that order)."""

    table: ClassVar[str]
    columns: ClassVar[str]
    schema: ClassVar[tuple[str, ...]]
    order: ClassVar[str]


class CaseTable(ReadModel):
    """A table derived from each case's overview, replaced whenever the overview is written."""

    # One row per case, replaced in place (the SET of ON CONFLICT (case_id)); None: a case's
    # rows are deleted and inserted again.
    update: ClassVar[str | None] = None

    def rows(self, view: View) -> Iterable[Row]:
        raise NotImplementedError


class CaseOverview(CaseTable):
    """The overview document of each case, and the columns the filters need."""

    table = "case_views"
    columns = (
        "case_id, doc, status, phase, municipality_code, region_code, next_follow_up_on, opened_on,"
        " version, log_position"
    )
    update = (
        "doc = excluded.doc, status = excluded.status, phase = excluded.phase,"
        " municipality_code = excluded.municipality_code, region_code = excluded.region_code,"
        " next_follow_up_on = excluded.next_follow_up_on, opened_on = excluded.opened_on,"
        " version = excluded.version, log_position = excluded.log_position"
    )
    schema = (
        "CREATE TABLE IF NOT EXISTS case_views (case_id TEXT PRIMARY KEY, doc TEXT NOT NULL,"
        " status TEXT NOT NULL, phase TEXT NOT NULL, municipality_code TEXT NOT NULL,"
        " region_code TEXT NOT NULL, next_follow_up_on TEXT, opened_on TEXT NOT NULL,"
        " version BIGINT NOT NULL, log_position BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS case_views_municipality ON case_views (municipality_code, phase)",
    )
    order = "case_id"

    def rows(self, view: View) -> Iterable[Row]:
        return (
            (
                view["case_id"],
                orjson.dumps(view).decode(),
                view["status"],
                view["phase"],
                view["municipality"]["code"],
                view["region"]["code"],
                view["next_follow_up_on"],
                view["opened_on"],
                view["version"],
                view["log_position"],
            ),
        )


class CaseFacts(CaseTable):
    """The facts statistics count (no personal data)."""

    table = "case_facts"
    columns = "case_id, facts"
    update = "facts = excluded.facts"
    schema = ("CREATE TABLE IF NOT EXISTS case_facts (case_id TEXT PRIMARY KEY, facts TEXT NOT NULL)",)
    order = "case_id"

    def rows(self, view: View) -> Iterable[Row]:
        return ((view["case_id"], orjson.dumps(view["facts"]).decode()),)


class CaseGrants(CaseTable):
    """Who may see each case, until when (the one access rule over the overview)."""

    table = "case_grants"
    columns = "case_id, organisation_id, valid_until"
    schema = (
        "CREATE TABLE IF NOT EXISTS case_grants (case_id TEXT NOT NULL, organisation_id TEXT NOT NULL,"
        " valid_until TEXT, PRIMARY KEY (case_id, organisation_id))",
        "CREATE INDEX IF NOT EXISTS case_grants_organisation ON case_grants (organisation_id, case_id)",
    )
    order = "case_id, organisation_id"

    def rows(self, view: View) -> Iterable[Row]:
        case_id = view["case_id"]
        return [(case_id, org, until) for org, until in access.grants(view)]


class CaseCoordinators(CaseTable):
    """Each case's coordinators (caseloads), one row per person: two organisations'
    coordinators may share a user id (ADR 0023). It replaces ``case_coordinators``, keyed by
    case and user id, which a generation built before keeps unused: a new case table is
    filled from the overviews the generation holds, with no rebuild."""

    table = "case_coordinator_people"
    columns = "case_id, user_id, organisation_id"
    schema = (
        "CREATE TABLE IF NOT EXISTS case_coordinator_people (case_id TEXT NOT NULL, user_id TEXT NOT NULL,"
        " organisation_id TEXT NOT NULL, PRIMARY KEY (case_id, organisation_id, user_id))",
        "CREATE INDEX IF NOT EXISTS case_coordinator_people_user"
        " ON case_coordinator_people (user_id, case_id)",
    )
    order = "case_id, organisation_id, user_id"

    def rows(self, view: View) -> Iterable[Row]:
        case_id = view["case_id"]
        return [(case_id, c["user_id"], c["organisation"]["id"]) for c in view["coordinators"]]


class ClientCases(CaseTable):
    """Each case's client by personal identity number: the cases a signed-in client may read."""

    table = "client_cases"
    columns = "case_id, personal_identity_number"
    update = "personal_identity_number = excluded.personal_identity_number"
    schema = (
        "CREATE TABLE IF NOT EXISTS client_cases (case_id TEXT PRIMARY KEY,"
        " personal_identity_number TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS client_cases_client ON client_cases (personal_identity_number, case_id)",
    )
    order = "case_id"

    def rows(self, view: View) -> Iterable[Row]:
        return ((view["case_id"], view["client"]["personal_identity_number"]),)


class OpenActions(CaseTable):
    """The SIP actions not done yet of the active cases (overdue lists)."""

    table = "open_actions"
    columns = "case_id, action_id, due_on, organisation_id"
    schema = (
        "CREATE TABLE IF NOT EXISTS open_actions (case_id TEXT NOT NULL, action_id TEXT NOT NULL,"
        " due_on TEXT NOT NULL, organisation_id TEXT, PRIMARY KEY (case_id, action_id))",
        "CREATE INDEX IF NOT EXISTS open_actions_organisation ON open_actions (organisation_id, due_on)",
    )
    order = "case_id, action_id"

    def rows(self, view: View) -> Iterable[Row]:
        sip = view["sip"]
        if sip is None or view["status"] != "active":
            return ()
        case_id = view["case_id"]
        return [
            (case_id, a["action_id"], a["due_on"], a["responsible"]["organisation_id"])
            for a in sip["actions"]
            if a["done_on"] is None
        ]


class Journal(ReadModel):
    """One row per case event, in the case's order, readable by people."""

    table = "journal"
    columns = (
        "case_id, version, log_position, event_id, type, time, actor_id, actor_org, actor_principal,"
        " summary, verified"
    )
    # Apart, so that a rebuild can drop the key and build it once at the end.
    fields = (
        "case_id TEXT NOT NULL, version BIGINT NOT NULL, log_position BIGINT NOT NULL,"
        " event_id TEXT NOT NULL, type TEXT NOT NULL, time TEXT NOT NULL, actor_id TEXT NOT NULL,"
        " actor_org TEXT NOT NULL, actor_principal TEXT NOT NULL, summary TEXT NOT NULL,"
        " verified INTEGER NOT NULL"
    )
    primary_key = "PRIMARY KEY (case_id, version)"
    schema = (f"CREATE TABLE IF NOT EXISTS journal ({fields}, {primary_key})",)
    order = "case_id, version"


class Deliveries(ReadModel):
    """One row per event of each case's delivery record (stream ``VSS_NOTIFICATIONS``)."""

    table = "deliveries"
    columns = ", ".join(deliveries.COLUMNS)
    schema = (
        "CREATE TABLE IF NOT EXISTS deliveries (case_id TEXT NOT NULL, version BIGINT NOT NULL,"
        " event_id TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL, time TEXT NOT NULL,"
        " at TEXT NOT NULL, delivery_key TEXT, recipient_id TEXT, recipient_name TEXT, recipient_role TEXT,"
        " recipient_organisation TEXT, recipient_user TEXT, channel TEXT, template TEXT, cause_event_id TEXT,"
        " cause_event_type TEXT, urgent INTEGER NOT NULL, warning_id TEXT, attempts INTEGER,"
        " message_id TEXT, reason TEXT, details TEXT NOT NULL, summary TEXT NOT NULL,"
        " event_hash TEXT NOT NULL, verified INTEGER NOT NULL, PRIMARY KEY (case_id, version))",
    )
    order = "case_id, version"


class Meetings(ReadModel):
    """One row per meeting of each case's schedule (stream ``VSS_MEETINGS``), changed in place."""

    table = "meetings"
    columns = ", ".join(meetings.COLUMNS)
    schema = (
        "CREATE TABLE IF NOT EXISTS meetings (case_id TEXT NOT NULL, meeting_id TEXT NOT NULL,"
        " kind TEXT NOT NULL, status TEXT NOT NULL, starts_at TEXT NOT NULL, ends_at TEXT NOT NULL,"
        " starts_utc TEXT NOT NULL, location TEXT, sequence INTEGER NOT NULL, reason TEXT NOT NULL,"
        " sip_version INTEGER, warning_id TEXT, invitees TEXT NOT NULL, previous_starts_at TEXT,"
        " change_reason TEXT, changed_by TEXT, changed_by_organisation TEXT, held_on TEXT,"
        " version BIGINT NOT NULL, event_id TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " verified INTEGER NOT NULL,"
        " place_kind TEXT, agenda TEXT NOT NULL, proposed INTEGER NOT NULL, answers TEXT NOT NULL,"
        " PRIMARY KEY (case_id, meeting_id))",
        "CREATE INDEX IF NOT EXISTS meetings_start ON meetings (case_id, starts_utc)",
    )
    order = "case_id, meeting_id"
    update = ", ".join(f"{c} = excluded.{c}" for c in meetings.COLUMNS[2:])


class MeetingHeads(ReadModel):
    """How far each case's meeting schedule is applied: its last version and hash, and
    whether every event so far continued the chain (duplicates are recognised by it)."""

    table = "meeting_heads"
    columns = "case_id, version, event_hash, verified"
    schema = (
        "CREATE TABLE IF NOT EXISTS meeting_heads (case_id TEXT PRIMARY KEY, version BIGINT NOT NULL,"
        " event_hash TEXT NOT NULL, verified INTEGER NOT NULL)",
    )
    order = "case_id"
    update = "version = excluded.version, event_hash = excluded.event_hash, verified = excluded.verified"


# The case tables in the order they are written (the overview first).
CASE_TABLES: tuple[CaseTable, ...] = (
    CaseOverview(),
    CaseFacts(),
    CaseGrants(),
    CaseCoordinators(),
    OpenActions(),
    ClientCases(),
)
READ_MODELS: tuple[ReadModel, ...] = (*CASE_TABLES, Journal(), Deliveries(), Meetings(), MeetingHeads())
