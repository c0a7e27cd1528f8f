"""What the client's pages and PDFs show, drawn from a case overview view.

The pages (:mod:`.pages`) and the PDFs (:mod:`.pdf`) render the same content, so a
printed SIP says what the page says. Dates are Swedish (``3 mars 2025``); texts written
by people are kept as written (escaping is the renderer's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.projections.domain.case_view import View
from services.projections.presentation import labels
from vss_contracts.types import MemberKind


@dataclass(frozen=True)
class Goal:
    kind: str
    description: str
    target_date: str
    status: str
    sub_goals: tuple[Goal, ...] = ()
    note: str = ""  # corrected or retracted after it was written down (ADR 0018)


@dataclass(frozen=True)
class Action:
    what: str
    who: str
    organisation: str
    outside_party: bool
    by_client: bool
    due_on: str
    how: str
    goal: str
    done_on: str
    overdue: bool = False  # set when the view was served through mark_overdue


@dataclass(frozen=True)
class Sip:
    version: int
    decided_on: str
    initial: bool
    overall_responsibility: str
    next_follow_up_on: str
    client_agreed: bool
    goals: tuple[Goal, ...]
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class ChecklistStep:
    step: str
    done: bool
    completed_on: str
    first_completed_on: str
    times: int
    participants: tuple[str, ...]


@dataclass(frozen=True)
class Contact:
    name: str
    relation: str
    phone: str
    email: str

    @property
    def tel(self) -> str:
        """The phone number as a ``tel:`` link takes it: digits and a leading plus."""
        digits = "".join(c for c in self.phone if c.isdigit())
        return f"+{digits}" if self.phone.strip().startswith("+") else digits


@dataclass(frozen=True)
class WarningPlan:
    version: int
    updated_on: str
    signs: tuple[str, ...]
    client_actions: tuple[str, ...]
    others_actions: tuple[tuple[str, str], ...]
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class LoggedContact:
    """A contact of the logbook, as the client's page shows it: when, how, how long, with whom."""

    occurred_at: str
    mode: str
    minutes: int
    staff: str


@dataclass(frozen=True)
class Meeting:
    kind: str
    starts_at: str
    ends_at: str
    location: str
    ics_url: str


@dataclass(frozen=True)
class Read:
    at: str
    who: str
    by_client: bool
    what: str
    denied: bool


@dataclass(frozen=True)
class ConsentState:
    signed_on: str
    valid_until: str
    withdrawn: bool
    withdrawn_on: str
    organisations: tuple[tuple[str, str], ...]  # (id, name)


@dataclass(frozen=True)
class ReaderId:
    """Who the client is in the access log: an organisation and a user id there."""

    organisation_id: str
    user_id: str


def organisation_names(view: View) -> dict[str, str]:
    """Every organisation the view names, by id: coordinators', the consent's, the group's."""
    names: dict[str, str] = {}

    def add(organisation: Mapping[str, Any] | None) -> None:
        if organisation and organisation.get("id") and organisation.get("name"):
            names.setdefault(organisation["id"], organisation["name"])

    add(view.get("opened_by_organisation"))
    for coordinator in view.get("coordinators", ()):
        add(coordinator.get("organisation"))
    for member in view.get("resource_group", ()):
        add(member.get("organisation"))
    consent = view.get("consent")
    for organisation in consent["organisations"] if consent else ():
        add(organisation)
    sip = view.get("sip")
    if sip:
        add(sip.get("overall_responsibility"))
    return names


def _goal_note(view: View, goal: Mapping[str, Any]) -> str:
    """What the client is told of a goal corrected or struck out after it was written down: the
    date and the reason (the overview keeps the original text beside it)."""
    retracted = goal.get("retracted")
    if retracted:
        return f"Struket {labels.day(retracted['retracted_on'])}: {retracted['reason']}"
    if not goal.get("corrected"):
        return ""
    corrections = [
        c
        for e in view.get("entries", {}).values()
        if e["kind"] == "goal" and (e.get("value") or {}).get("goal_id") == goal["goal_id"]
        for c in e["corrections"]
    ]
    if not corrections:
        return ""
    latest = corrections[-1]
    return f"Rättat {labels.day(latest['corrected_on'])}: {latest['reason']}"


def _goal(view: View, goal: Mapping[str, Any], sub_goals: tuple[Goal, ...] = ()) -> Goal:
    return Goal(
        kind=labels.label(labels.GOAL_KINDS, goal["kind"]),
        description=goal["description"],
        target_date=labels.day(goal.get("target_date")),
        status=labels.label(labels.GOAL_STATUSES, goal.get("status")),
        sub_goals=sub_goals,
        note=_goal_note(view, goal),
    )


def _goals(view: View, goal_ids: Iterable[str]) -> tuple[Goal, ...]:
    """The SIP's goals, each long-term goal followed by its sub-goals in the SIP."""
    by_id = {goal["goal_id"]: goal for goal in view.get("goals", ())}
    chosen = [by_id[goal_id] for goal_id in goal_ids if goal_id in by_id]
    chosen_ids = {goal["goal_id"] for goal in chosen}
    shown: list[Goal] = []
    for goal in chosen:
        if goal.get("parent_goal_id") in chosen_ids:
            continue  # shown under its parent
        children = tuple(_goal(view, g) for g in chosen if g.get("parent_goal_id") == goal["goal_id"])
        shown.append(_goal(view, goal, children))
    return tuple(shown)


def _client_member_ids(view: View) -> set[str]:
    return {m["member_id"] for m in view.get("resource_group", ()) if m.get("kind") == MemberKind.CLIENT}


def _action(view: View, action: Mapping[str, Any], names: Mapping[str, str], clients: set[str]) -> Action:
    responsible = action.get("responsible") or {}
    organisation_id = responsible.get("organisation_id")
    goals = {goal["goal_id"]: goal["description"] for goal in view.get("goals", ())}
    return Action(
        what=action["what"],
        who=responsible.get("name") or "",
        organisation=names.get(organisation_id, organisation_id or "") if organisation_id else "",
        outside_party=bool(responsible.get("outside_party")),
        by_client=responsible.get("member_id") in clients,
        due_on=labels.day(action.get("due_on")),
        how=action["how"],
        goal=goals.get(action.get("goal_id") or "", ""),
        done_on=labels.day(action.get("done_on")),
        overdue=bool(action.get("overdue")),
    )


def sip_of(view: View, sip: Mapping[str, Any]) -> Sip:
    """One SIP (the view's ``sip``, or an earlier version of the same shape)."""
    names = organisation_names(view)
    clients = _client_member_ids(view)
    principal = sip.get("overall_responsibility")
    responsibility = (
        f"{principal['name']} ({labels.label(labels.PRINCIPALS, principal.get('principal'))})"
        if principal
        else ""
    )
    return Sip(
        version=sip["version"],
        decided_on=labels.day(sip["decided_on"]),
        initial=bool(sip.get("initial")),
        overall_responsibility=responsibility,
        next_follow_up_on=labels.day(sip.get("next_follow_up_on")),
        client_agreed=bool(sip.get("client_agreed")),
        goals=_goals(view, sip.get("goal_ids", ())),
        actions=tuple(_action(view, a, names, clients) for a in sip.get("actions", ())),
    )


def current_sip(view: View) -> Sip | None:
    sip = view.get("sip")
    return sip_of(view, sip) if sip else None


def earlier_sips(view: View, earlier: Sequence[Mapping[str, Any]] | None) -> tuple[Sip, ...]:
    """Earlier SIP versions, newest first: ``earlier`` if given, else the view's ``sip_history``.

    The case overview keeps only the current SIP; a list of earlier ones (each shaped like
    the view's ``sip``) is shown when the caller or the view has one.
    """
    history = earlier if earlier is not None else view.get("sip_history") or ()
    current = (view.get("sip") or {}).get("version")
    older = [sip for sip in history if sip.get("version") != current]
    return tuple(sip_of(view, sip) for sip in sorted(older, key=lambda s: s["version"], reverse=True))


def checklist(view: View) -> tuple[ChecklistStep, ...]:
    return tuple(
        ChecklistStep(
            step=labels.label(labels.CHECKLIST_STEPS, entry["step"]),
            done=bool(entry.get("done")),
            completed_on=labels.day(entry.get("completed_on")),
            first_completed_on=labels.day(entry.get("first_completed_on")),
            times=int(entry.get("times") or 0),
            participants=tuple(entry.get("participants") or ()),
        )
        for entry in view.get("checklist", ())
    )


def warning_plan(view: View) -> WarningPlan | None:
    plan = view.get("early_warning_plan")
    if not plan:
        return None
    return WarningPlan(
        version=plan["version"],
        updated_on=labels.day(plan.get("updated_on")),
        signs=tuple(sign["description"] for sign in plan.get("signs", ())),
        client_actions=tuple(plan.get("client_actions", ())),
        others_actions=tuple((a["who"], a["what"]) for a in plan.get("others_actions", ())),
        contacts=tuple(
            Contact(
                name=c["name"],
                relation=c.get("relation") or "",
                phone=c.get("phone") or "",
                email=c.get("email") or "",
            )
            for c in plan.get("contacts", ())
        ),
    )


# The client's page shows the latest contacts only: the overview has them all.
CONTACTS_SHOWN = 10


def contacts(view: View) -> tuple[LoggedContact, ...]:
    """The latest contacts of the logbook, newest first (no notes: the page stays brief)."""
    logbook = view.get("logbook") or {}
    latest = list(reversed(logbook.get("contacts") or []))[:CONTACTS_SHOWN]
    return tuple(
        LoggedContact(
            occurred_at=labels.moment(c["occurred_at"]),
            mode=labels.label(labels.CONTACT_MODES, c["mode"]),
            minutes=c["duration_minutes"],
            staff=", ".join(p.get("name") or p["organisation"]["name"] for p in c["staff"]),
        )
        for c in latest
    )


def contact_period(view: View) -> str:
    """The contact period in force, in Swedish, as the overview serves it ("" if none)."""
    period = (view.get("logbook") or {}).get("period") or {}
    return labels.label(labels.CONTACT_PERIODS, period.get("period")) if period else ""


def meetings(upcoming: Iterable[Mapping[str, Any]]) -> tuple[Meeting, ...]:
    """Upcoming meetings in time order."""
    ordered = sorted(upcoming, key=lambda m: labels.local_time(m["starts_at"]))
    return tuple(
        Meeting(
            kind=labels.label(labels.MEETING_KINDS, m.get("kind")),
            starts_at=labels.moment(m["starts_at"]),
            ends_at=labels.clock(m.get("ends_at")),
            location=m.get("location") or "",
            ics_url=m.get("ics_url") or "",
        )
        for m in ordered
    )


def reads(
    view: View,
    entries: Iterable[Mapping[str, Any]],
    client: ReaderId | None = None,
    names: Mapping[str, str] | None = None,
) -> tuple[Read, ...]:
    """Access-log entries, newest first: when, who (organisation and user, or the client), what."""
    known = {**organisation_names(view), **(names or {})}
    shown: list[Read] = []
    for entry in sorted(entries, key=lambda e: (e["at"], e.get("seq", 0)), reverse=True):
        organisation_id = entry.get("organisation_id") or ""
        by_client = client is not None and (organisation_id, entry.get("user_id")) == (
            client.organisation_id,
            client.user_id,
        )
        organisation = known.get(organisation_id, organisation_id)
        user = entry.get("user_id") or "okänd"
        shown.append(
            Read(
                at=labels.moment(entry["at"]),
                who="du själv" if by_client else f"{organisation}, användare {user}",
                by_client=by_client,
                what=labels.label(labels.READS, entry.get("read")),
                denied=entry.get("outcome") == "denied",
            )
        )
    return tuple(shown)


def consent_state(view: View) -> ConsentState | None:
    consent = view.get("consent")
    if not consent:
        return None
    return ConsentState(
        signed_on=labels.day(consent.get("signed_on")),
        valid_until=labels.day(consent.get("valid_until")),
        withdrawn=bool(consent.get("withdrawn")),
        withdrawn_on=labels.day(consent.get("withdrawn_on")),
        organisations=tuple((o["id"], o["name"]) for o in consent.get("organisations", ())),
    )
