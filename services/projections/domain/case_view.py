"""The case overview read model: a case's current picture, built one event at a time.

A view is a plain JSON-ready dict (it is stored as a JSON document and served as is),
changed in place by :func:`apply`. Everything here is pure: no clock, no I/O. What
depends on *today* (overdue actions, a follow-up past its date, an expired consent) is
decided when the view is read (:mod:`.access`, :func:`mark_overdue`), so the stored
view never goes stale by the passing of time.

Shape (dates are ISO ``YYYY-MM-DD`` strings)::

    case_id, version, log_position, updated_at, status (active|closed), phase,
    client {name, personal_identity_number}, municipality {code, name}, region {code, name},
    opened_on, opened_by_organisation, closed_on, closing_reason,
    coordinators [{user_id, name, organisation {id, name, principal}, assigned_on}],
    handover {outgoing {organisation_id, user_id}, incoming {organisation_id, user_id},
              started_on} | null (ADR 0021: until the outgoing or the incoming is unassigned),
    consent {consent_id, organisations [...], covers_relatives, signed_on, valid_until,
             renewed_on, withdrawn, withdrawn_on} | null,
    resource_group [{member_id, kind, name, organisation, role, user_id, added_on}],
    goals [{goal_id, kind, description, parent_goal_id, life_area, target_date, set_on, status}],
    sip {version, decided_on, initial, overall_responsibility {id, name, principal} | null,
         next_follow_up_on, client_agreed, confirmed_by_client_on (the client's own word), goal_ids,
         actions [{action_id, what, how, due_on, goal_id, done_on,
                   responsible {member_id, name, organisation_id, outside_party}}]} | null,
         (overall_responsibility is null for a SIP recorded before it was kept; an outside
         party is named by its organisation and contact, member_id null)
    sip_history [earlier sip versions, oldest first, as they stood when replaced] (absent
         until a second SIP is decided),
    next_follow_up_on, early_warning_plan {version, updated_on, signs, client_actions,
         others_actions [{who, what}], contacts [{name, relation, phone, email}]} | null
         (the whole plan, as the coordinators and everyone named in it must be able to read it),
    open_early_warnings [{warning_id, observed_on, sign_ids, other_sign, description}],
    latest_change_rating {rated_on, individually, interpersonally, socially, overall, total} | null,
    checklist [{step, done, completed_on, first_completed_on, times, participants [names]}]
              (Checklista K: the eleven worksheets, then the mapping summary),
    meetings {count, last_held_on},
    deviations [{rule, reason, deviated_on, deviates, absent_coordinators [{organisation_id,
                 user_id}], follow_up_due_by}]
              (the practice rules not followed, each with its stated reason, oldest first;
              ADR 0017),
    logbook {contacts [{contact_id, mode, occurred_at, on, duration_minutes,
                        staff [{organisation {id, name, principal}, user_id, name}],
                        others [{role, name}], note}] (*Loggboken*, by when they happened),
             period {period, applies_from, set_by, reason} | null (as the coordinators set it),
             phase_since, last_contact_on} (ADR 0019; served with the period in force,
             ``next_contact_due_by`` and ``contact_due_passed``, see :func:`logbook_served`),
    entries {<the entry's own event id>: {kind, type, version, value, original, corrections
              [{value, reason, corrected_on, by {user_id, organisation_id}, recorded_at, event_id}],
              retracted {reason, retracted_on, by, recorded_at, event_id} | null}}
              (every correctable entry: worksheet, goal, resource_group_meeting, sip_action;
              ``value`` as it now stands, ``original`` as first recorded (null until corrected);
              ADR 0018. The checklist, the change rating, the meetings' count, the goals and the
              SIP actions show the current value; a retracted goal stays listed with
              ``retracted``, a corrected one has ``corrected`` true),
    chain {verifies, broken_at, reason},
    facts {...}  (for statistics; no personal data)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.projections.domain.events import CaseEventRecord
from services.shared.access import unassigns
from services.shared.dispatch import EventHandlers
from vss_contracts import case_events as ev
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.identity import birth_date
from vss_contracts.registry import EVENT_TYPES
from vss_contracts.types import CONTACT_PERIOD_DAYS, CONTACT_PERIOD_OF_PHASE, ContactPeriod, Phase, Worksheet

View = dict[str, Any]

STOCKHOLM = ZoneInfo("Europe/Stockholm")  # a contact's day is its day here
MAPPING_SUMMARY_STEP = "mapping_summary"
# The steps every assigned coordinator takes part in (ADR 0017's attendance rules); the
# statistics' method fidelity counts them.
JOINT_WORKSHEETS = frozenset({Worksheet.INTERVIEW.value, Worksheet.NETWORK_MAP.value})
MEETING_STEP = "resource_group_meeting"
ADULT_AGE = 18
CHECKLIST_STEPS: tuple[str, ...] = (*(sheet.value for sheet in Worksheet), MAPPING_SUMMARY_STEP)


class NotAFirstEvent(ValueError):
    """A case's view starts with CaseOpened (version 1)."""


class UnknownCase(LookupError):
    """An event of a case whose CaseOpened was never applied."""


def _checklist() -> list[dict[str, Any]]:
    return [
        {
            "step": step,
            "done": False,
            "completed_on": None,
            "first_completed_on": None,
            "times": 0,
            "participants": [],
        }
        for step in CHECKLIST_STEPS
    ]


def open_view(event: CaseEventRecord) -> View:
    """The view of a case as its CaseOpened event leaves it."""
    if event.type != ev.CaseOpened.TYPE or event.version != 1:
        raise NotAFirstEvent(f"case {event.case_id}: a view starts with CaseOpened v1, not {event.type}")
    data = event.data
    view: View = {
        "case_id": event.case_id,
        "version": 0,
        "log_position": 0,
        "updated_at": event.time,
        "status": "active",
        "phase": "mapping",
        "client": dict(data["client"]),
        "municipality": dict(data["municipality"]),
        "region": dict(data["region"]),
        "opened_on": data["opened_on"],
        "opened_by_organisation": dict(data["opened_by_organisation"]),
        "closed_on": None,
        "closing_reason": None,
        "coordinators": [],
        "handover": None,
        "consent": None,
        "resource_group": [],
        "goals": [],
        "sip": None,
        "next_follow_up_on": None,
        "early_warning_plan": None,
        "open_early_warnings": [],
        "latest_change_rating": None,
        "checklist": _checklist(),
        "meetings": {"count": 0, "last_held_on": None},
        "deviations": [],
        "logbook": _logbook(data["opened_on"]),
        "entries": {},
        "chain": {"verifies": True, "broken_at": None, "reason": None, "head": GENESIS_HASH},
        "facts": {
            "municipality_code": data["municipality"]["code"],
            "region_code": data["region"]["code"],
            "opened_on": data["opened_on"],
            "closed_on": None,
            "first_consent_on": None,
            "first_sip_on": None,
            "sip_dates": [],
            "warning_dates": [],
            "rating_count": 0,
            "first_rating_total": None,
            "latest_rating_total": None,
            "deviations": [],  # [rule, deviated_on] for each recorded deviation
            **_statistics_facts_at_opening(data),
        },
    }
    return view


# ------------------------------------------------------------ statistics facts (no personal data)
def _statistics_facts_at_opening(data: dict[str, Any]) -> dict[str, Any]:
    """The method-fidelity and trend facts a case starts with. The client's age group is
    derived from the personal identity number here, once; the number itself never enters
    the facts."""
    return {
        "age_group": age_group(data["client"]["personal_identity_number"], data["opened_on"]),
        "joint_steps": [],  # [step, on, every assigned coordinator took part]
        "first_mapping_summary_on": None,
        "meeting_dates": [],
        "everyday_functioning_dates": [],
        "ratings": [],  # [rated_on, total]
    }


def age_group(personal_identity_number: str, opened_on: str) -> str:
    """``child`` (under 18 when the case was opened: *barn och unga*) or ``adult``."""
    born = birth_date(personal_identity_number.replace("-", ""))
    opened = date.fromisoformat(opened_on)
    age = opened.year - born.year - ((opened.month, opened.day) < (born.month, born.day))
    return "adult" if age >= ADULT_AGE else "child"


def _joint_step(view: View, step: str, on: str, participants: list[dict[str, Any]]) -> None:
    """Record a joint step and whether every coordinator assigned at the time took part.

    A coordinator participant is a person (organisation, user id), as the case's attendance
    rule compares them (ADR 0023): a namesake at another organisation is someone else. One
    of an earlier version (upcast, ``organisation_id`` null) named the user id alone, which
    then stood for every assigned coordinator who had it."""
    coordinators = [p for p in participants if p["kind"] == "coordinator"]
    persons = {(p["organisation_id"], p.get("user_id")) for p in coordinators if p.get("organisation_id")}
    by_user_id = {p.get("user_id") for p in coordinators if not p.get("organisation_id")}
    assigned = [(c["organisation"]["id"], c["user_id"]) for c in view["coordinators"]]
    everyone = bool(assigned) and all(person in persons or person[1] in by_user_id for person in assigned)
    view["facts"].setdefault("joint_steps", []).append([step, on, everyone])


def check_chain(view: View, event: CaseEventRecord) -> bool:
    """Does this event continue the case's chain? Records the first break in the view."""
    chain = view["chain"]
    expected_version = view["version"] + 1
    reason = None
    if event.version != expected_version:
        reason = f"version {event.version} where {expected_version} was expected"
    elif event.prev_hash != chain["head"]:
        reason = "prevhash does not match the previous event's hash"
    elif not event.hash_ok:
        reason = "the event's content does not match its hash"
    chain["head"] = event.event_hash
    if reason is None:
        return True
    if chain["verifies"]:
        chain.update(verifies=False, broken_at=event.version, reason=reason)
    return False


def apply(view: View, event: CaseEventRecord) -> bool:
    """Apply one event in place; returns whether it verifies against the chain."""
    verified = check_chain(view, event)
    # A type newer than these contracts changes nothing but the position: only a rebuild
    # reads one (the live consumer dead-letters it).
    type_name = event.type
    handler = HANDLERS.handler(type_name) if type_name in EVENT_TYPES else None
    if handler is not None:
        handler(view, event.data if type_name not in _RECORDED else _with_record(event))
        day_field = _CLIENT_MEETING_DAY.get(type_name)
        if day_field is not None:
            _met_the_client(view, event.data, day_field)
    if type_name in ENTRY_TYPES:
        _remember_entry(view, event)
    view["version"] = event.version
    view["log_position"] = event.log_position
    view["updated_at"] = event.time
    return verified


def start(event: CaseEventRecord) -> tuple[View, bool]:
    """A new view from a case's first event."""
    view = open_view(event)
    return view, apply(view, event)


# --------------------------------------------------------------------------- handlers
def _coordinator_assigned(view: View, data: dict[str, Any]) -> None:
    coordinator = data["coordinator"]
    person = (coordinator["organisation"]["id"], coordinator["user_id"])
    view["coordinators"] = [c for c in view["coordinators"] if _person(c) != person]
    view["coordinators"].append(
        {
            "user_id": coordinator["user_id"],
            "name": coordinator["name"],
            "organisation": dict(coordinator["organisation"]),
            "assigned_on": data["assigned_on"],
        }
    )
    _handover(view, data)


def _person(coordinator: dict[str, Any]) -> tuple[str, str]:
    return coordinator["organisation"]["id"], coordinator["user_id"]


def _coordinator_unassigned(view: View, data: dict[str, Any]) -> None:
    # the person; an upcast v1 payload the coordinator with its user id (ADR 0023)
    leaving = [c for c in view["coordinators"] if unassigns(data, _person(c))]
    view["coordinators"] = [c for c in view["coordinators"] if c not in leaving]
    handover = view.get("handover")
    ends = {(p["organisation_id"], p["user_id"]) for p in (handover or {}).values() if isinstance(p, dict)}
    if handover is not None and any(_person(c) in ends for c in leaving):
        view["handover"] = None  # completed, or called off


def _handover(view: View, data: dict[str, Any]) -> None:
    outgoing = data.get("hands_over_from")
    if outgoing is not None:
        incoming = data["coordinator"]
        view["handover"] = {
            "outgoing": dict(outgoing),
            "incoming": {"organisation_id": incoming["organisation"]["id"], "user_id": incoming["user_id"]},
            "started_on": data["assigned_on"],
        }


def _consent_given(view: View, data: dict[str, Any]) -> None:
    view["consent"] = {
        "consent_id": data["consent_id"],
        "organisations": [dict(org) for org in data["organisations"]],
        "covers_relatives": data["covers_relatives"],
        "signed_on": data["signed_on"],
        "valid_until": data.get("valid_until"),
        "renewed_on": None,
        "withdrawn": False,
        "withdrawn_on": None,
    }
    facts = view["facts"]
    if facts["first_consent_on"] is None:
        facts["first_consent_on"] = data["signed_on"]


def _consent_withdrawn(view: View, data: dict[str, Any]) -> None:
    consent = view["consent"]
    if consent is None:
        return
    if data.get("entire", True):
        consent["withdrawn"] = True
        consent["withdrawn_on"] = data["withdrawn_on"]
        return
    gone = set(data.get("organisation_ids") or ())
    consent["organisations"] = [org for org in consent["organisations"] if org["id"] not in gone]
    if data.get("relatives"):
        consent["covers_relatives"] = False


def _consent_renewed(view: View, data: dict[str, Any]) -> None:
    consent = view["consent"]
    if consent is not None:
        consent["renewed_on"] = data["renewed_on"]
        consent["valid_until"] = data.get("valid_until")


def _participant_names(data: dict[str, Any]) -> list[str]:
    return [participant["name"] for participant in data["participants"]]


def _tick(view: View, step: str, on: str, participants: list[str]) -> None:
    for entry in view["checklist"]:
        if entry["step"] == step:
            entry["done"] = True
            entry["times"] += 1
            entry["completed_on"] = on
            entry["participants"] = participants
            if entry["first_completed_on"] is None:
                entry["first_completed_on"] = on
            return


def _worksheet_completed(view: View, data: dict[str, Any]) -> None:
    _tick(view, data["worksheet"], data["completed_on"], _participant_names(data))
    _worksheet_facts(view, data)
    rating = data.get("change_rating")
    if rating is not None:
        total = rating["individually"] + rating["interpersonally"] + rating["socially"] + rating["overall"]
        view["latest_change_rating"] = {"rated_on": data["completed_on"], **rating, "total": total}
        facts = view["facts"]
        if facts["first_rating_total"] is None:
            facts["first_rating_total"] = total
        facts["latest_rating_total"] = total
        facts["rating_count"] += 1


def _worksheet_facts(view: View, data: dict[str, Any]) -> None:
    facts = view["facts"]
    if data["worksheet"] in JOINT_WORKSHEETS:
        _joint_step(view, data["worksheet"], data["completed_on"], data["participants"])
    if data["worksheet"] == Worksheet.EVERYDAY_FUNCTIONING.value:
        facts.setdefault("everyday_functioning_dates", []).append(data["completed_on"])
    rating = data.get("change_rating")
    if rating is not None:
        total = rating["individually"] + rating["interpersonally"] + rating["socially"] + rating["overall"]
        facts.setdefault("ratings", []).append([data["completed_on"], total])


def _mapping_summarised(view: View, data: dict[str, Any]) -> None:
    _tick(view, MAPPING_SUMMARY_STEP, data["summarised_on"], _participant_names(data))
    _joint_step(view, MAPPING_SUMMARY_STEP, data["summarised_on"], data["participants"])
    if view["facts"].get("first_mapping_summary_on") is None:
        view["facts"]["first_mapping_summary_on"] = data["summarised_on"]


def _phase_changed(view: View, data: dict[str, Any]) -> None:
    view["phase"] = data["to_phase"]
    _logbook_of(view)["phase_since"] = data["changed_on"]


def _goal_set(view: View, data: dict[str, Any]) -> None:
    view["goals"].append(
        {
            "goal_id": data["goal_id"],
            "kind": data["kind"],
            "description": data["description"],
            "parent_goal_id": data.get("parent_goal_id"),
            "life_area": data.get("life_area"),
            "target_date": data.get("target_date"),
            "set_on": data["set_on"],
            "status": "active",
        }
    )


def _goal_status_changed(view: View, data: dict[str, Any]) -> None:
    for goal in view["goals"]:
        if goal["goal_id"] == data["goal_id"]:
            goal["status"] = data["status"]


def _member_added(view: View, data: dict[str, Any]) -> None:
    member = data["member"]
    view["resource_group"] = [m for m in view["resource_group"] if m["member_id"] != member["member_id"]]
    view["resource_group"].append(
        {
            "member_id": member["member_id"],
            "kind": member["kind"],
            "name": member["name"],
            "organisation": member.get("organisation"),
            "role": member.get("role"),
            "user_id": member.get("user_id"),
            "added_on": data["added_on"],
        }
    )


def _member_removed(view: View, data: dict[str, Any]) -> None:
    view["resource_group"] = [m for m in view["resource_group"] if m["member_id"] != data["member_id"]]


def _plan_updated(view: View, data: dict[str, Any]) -> None:
    view["early_warning_plan"] = {
        "version": data["plan_version"],
        "updated_on": data["updated_on"],
        "signs": [dict(sign) for sign in data["signs"]],
        "client_actions": list(data["client_actions"]),
        "others_actions": [dict(action) for action in data["others_actions"]],
        "contacts": [dict(contact) for contact in data["contacts"]],
    }


def _responsible(view: View, action: dict[str, Any]) -> dict[str, Any]:
    """Who does an action: a member of the resource group, or a party outside it."""
    party = action.get("responsible_party")
    if party is not None:
        organisation = party["organisation"]
        return {
            "member_id": None,
            "name": party.get("contact_name") or organisation["name"],
            "organisation_id": organisation["id"],
            "outside_party": True,
        }
    member_id = action["responsible_member_id"]
    for member in view["resource_group"]:
        if member["member_id"] == member_id:
            organisation = member.get("organisation")
            return {
                "member_id": member_id,
                "name": member["name"],
                "organisation_id": organisation["id"] if organisation else None,
                "outside_party": False,
            }
    return {"member_id": member_id, "name": None, "organisation_id": None, "outside_party": False}


def _sip_confirmed(view: View, data: dict[str, Any]) -> None:
    sip = view["sip"]
    if sip is not None and sip["version"] == data["sip_version"]:
        sip["confirmed_by_client_on"] = data["confirmed_on"]


def _sip_decided(view: View, data: dict[str, Any]) -> None:
    if view["sip"] is not None:  # the client keeps every version of their plan
        view.setdefault("sip_history", []).append(view["sip"])
    view["sip"] = {
        "version": data["sip_version"],
        "decided_on": data["decided_on"],
        "initial": data.get("initial", False),
        "overall_responsibility": data.get("overall_responsibility"),
        "next_follow_up_on": data["next_follow_up_on"],
        "client_agreed": data["client_agreed"],
        "confirmed_by_client_on": None,
        "goal_ids": list(data["goal_ids"]),
        "actions": [
            {
                "action_id": action["action_id"],
                "what": action["what"],
                "how": action["how"],
                "due_on": action["due_on"],
                "goal_id": action.get("goal_id"),
                "done_on": None,
                "responsible": _responsible(view, action),
            }
            for action in data["actions"]
        ],
    }
    view["next_follow_up_on"] = data["next_follow_up_on"]
    facts = view["facts"]
    facts["sip_dates"].append(data["decided_on"])
    if facts["first_sip_on"] is None:
        facts["first_sip_on"] = data["decided_on"]


def _meeting_held(view: View, data: dict[str, Any]) -> None:
    meetings = view["meetings"]
    meetings["count"] += 1
    if meetings["last_held_on"] is None or data["held_on"] > meetings["last_held_on"]:
        meetings["last_held_on"] = data["held_on"]
    _joint_step(view, MEETING_STEP, data["held_on"], data["participants"])
    view["facts"].setdefault("meeting_dates", []).append(data["held_on"])


def _action_completed(view: View, data: dict[str, Any]) -> None:
    sip = view["sip"]
    if sip is None or sip["version"] != data["sip_version"]:
        return
    for action in sip["actions"]:
        if action["action_id"] == data["action_id"]:
            action["done_on"] = data["completed_on"]


def _warning_triggered(view: View, data: dict[str, Any]) -> None:
    view["open_early_warnings"].append(
        {
            "warning_id": data["warning_id"],
            "observed_on": data["observed_on"],
            "sign_ids": list(data.get("sign_ids") or ()),
            "other_sign": data.get("other_sign"),
            "description": data.get("description"),
        }
    )
    view["facts"]["warning_dates"].append(data["observed_on"])


def _warning_resolved(view: View, data: dict[str, Any]) -> None:
    view["open_early_warnings"] = [
        w for w in view["open_early_warnings"] if w["warning_id"] != data["warning_id"]
    ]


def _deviation_recorded(view: View, data: dict[str, Any]) -> None:
    # A view stored before deviations were kept has neither list; the first deviation adds them.
    view.setdefault("deviations", []).append(
        {
            "rule": data["rule"],
            "reason": data["reason"],
            "deviated_on": data["deviated_on"],
            "deviates": data["deviates"],
            "absent_coordinators": list(data.get("absent_coordinators") or ()),
            "follow_up_due_by": data.get("follow_up_due_by"),
        }
    )
    view["facts"].setdefault("deviations", []).append([data["rule"], data["deviated_on"]])


def _logbook(phase_since: str) -> dict[str, Any]:
    return {"contacts": [], "period": None, "phase_since": phase_since, "last_contact_on": None}


def _logbook_of(view: View) -> dict[str, Any]:
    """The view's logbook; a view stored before the logbook gets one on its next event."""
    logbook: dict[str, Any] = view.setdefault("logbook", _logbook(view["opened_on"]))
    return logbook


def _client_met_on(view: View, day: str) -> None:
    logbook = _logbook_of(view)
    if logbook["last_contact_on"] is None or day > logbook["last_contact_on"]:
        logbook["last_contact_on"] = day


# Facts whose participants may include the client, and the field with their day: a meeting
# with the client meets the contact cadence as the meetings service counts it.
_CLIENT_MEETING_DAY = {
    ev.WorksheetCompleted.TYPE: "completed_on",
    ev.MappingSummarised.TYPE: "summarised_on",
    ev.SipDecided.TYPE: "decided_on",
    ev.ResourceGroupMeetingHeld.TYPE: "held_on",
}


def _met_the_client(view: View, data: dict[str, Any], day_field: str) -> None:
    """A fact of :data:`_CLIENT_MEETING_DAY`'s: with the client among its participants, a meeting."""
    if any(p.get("kind") == "client" for p in data.get("participants", ())):
        _client_met_on(view, data[day_field])


def _contact_recorded(view: View, data: dict[str, Any]) -> None:
    at = datetime.fromisoformat(data["occurred_at"])
    on = at.astimezone(STOCKHOLM).date().isoformat()
    contacts = _logbook_of(view)["contacts"]
    # By when they happened, whenever recorded (a Saturday's outreach written up on Monday).
    # The list is in that order already (every contact is put in its place since the logbook
    # exists): the new one goes after those at or before its time, where a stable sort of
    # the list with it appended would put it, found from the end (usually at once).
    place = len(contacts)
    while place and datetime.fromisoformat(contacts[place - 1]["occurred_at"]) > at:
        place -= 1
    contacts.insert(
        place,
        {
            "contact_id": data["contact_id"],
            "mode": data["mode"],
            "occurred_at": data["occurred_at"],
            "on": on,
            "duration_minutes": data["duration_minutes"],
            "staff": [dict(p) for p in data["staff"]],
            "others": [dict(o) for o in data.get("others") or ()],
            "note": data.get("note"),
        },
    )
    _client_met_on(view, on)


def _contact_period_set(view: View, data: dict[str, Any]) -> None:
    _logbook_of(view)["period"] = {
        "period": data["period"],
        "applies_from": data["applies_from"],
        "set_by": dict(data["set_by"]),
        "reason": data.get("reason"),
    }


# ------------------------------------------------------------ corrections (ADR 0018)
# The correctable entries (their current types) and what the overview keeps of each: what it
# shows, so that a correction can show it as it was and recompute what it derives from it.
ENTRY_TYPES: dict[str, str] = {
    ev.WorksheetCompleted.TYPE: "worksheet",
    ev.GoalSet.TYPE: "goal",
    ev.ResourceGroupMeetingHeld.TYPE: "resource_group_meeting",
    ev.ActionCompleted.TYPE: "sip_action",
}
_RECORDED = frozenset({ev.EntryCorrected.TYPE, ev.EntryRetracted.TYPE})


def _with_record(event: CaseEventRecord) -> dict[str, Any]:
    """A correction's payload (:data:`_RECORDED`) with who recorded it, when, and its own event id."""
    recorded = {
        "by": {"user_id": event.actor_id, "organisation_id": event.actor_org},
        "recorded_at": event.time,
        "event_id": event.event_id,
    }
    return {**event.data, "recorded": recorded}


def _entry_value(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """What the overview shows of an entry (a correction's value has the same fields)."""
    if kind == "worksheet":
        value = {"completed_on": data["completed_on"], "participants": _participant_names(data)}
        if data.get("change_rating") is not None:
            value["change_rating"] = dict(data["change_rating"])
        if "worksheet" in data:
            value["worksheet"] = data["worksheet"]
        return value
    if kind == "goal":
        return {k: data.get(k) for k in ("description", "life_area", "target_date", "set_on")}
    if kind == "resource_group_meeting":
        return {
            "held_on": data["held_on"],
            "participants": _participant_names(data),
            "notes": data.get("notes"),
        }
    return {"completed_on": data["completed_on"], "comment": data.get("comment")}


# What identifies an entry of a kind in its own payload, kept with its value.
_ENTRY_KEYS: dict[str, tuple[str, ...]] = {
    "goal": ("goal_id",),
    "resource_group_meeting": ("meeting_id",),
    "sip_action": ("sip_version", "action_id"),
}


def _remember_entry(view: View, event: CaseEventRecord) -> None:
    kind = ENTRY_TYPES[event.type]
    data = event.data
    value = _entry_value(kind, data)
    for key in _ENTRY_KEYS.get(kind, ()):
        value[key] = data[key]
    # A view stored before entries were kept has none; a rebuild gives it all (ADR 0018).
    view.setdefault("entries", {})[event.event_id] = {
        "kind": kind,
        "type": event.type,
        "version": event.version,
        "value": value,
        "original": None,
        "corrections": [],
        "retracted": None,
    }


def _entry_corrected(view: View, data: dict[str, Any]) -> None:
    entry = view.setdefault("entries", {}).get(data["corrects_event_id"])
    correction = {
        "value": {k: v for k, v in data["value"].items() if k != "kind"},
        "reason": data["reason"],
        "corrected_on": data["corrected_on"],
        **data["recorded"],
    }
    if entry is None:  # an entry of a view stored before entries were kept: shown, not applied
        view["entries"][data["corrects_event_id"]] = _unknown_entry(data, corrections=[correction])
        return
    if entry["original"] is None:
        entry["original"] = dict(entry["value"])
    kind = entry["kind"]
    value = {**entry["value"], **_entry_value(kind, data["value"])}
    entry["value"] = value
    entry["corrections"].append(correction)
    _derive(view, entry)


def _entry_retracted(view: View, data: dict[str, Any]) -> None:
    entry = view.setdefault("entries", {}).get(data["corrects_event_id"])
    retracted = {"reason": data["reason"], "retracted_on": data["retracted_on"], **data["recorded"]}
    if entry is None:
        view["entries"][data["corrects_event_id"]] = _unknown_entry(data, retracted=retracted)
        return
    entry["retracted"] = retracted
    _derive(view, entry)


def _unknown_entry(data: dict[str, Any], **change: Any) -> dict[str, Any]:
    kind = ev.CORRECTABLE_KINDS.get(data["corrects_type"].rsplit(".", 1)[0], "unknown")
    entry: dict[str, Any] = {
        "kind": kind,
        "type": data["corrects_type"],
        "version": None,
        "value": None,
        "original": None,
        "corrections": [],
        "retracted": None,
    }
    entry.update(change)
    return entry


def _standing(view: View, kind: str) -> list[dict[str, Any]]:
    """The entries of a kind not retracted, in the case's order."""
    entries = [
        e for e in view["entries"].values() if e["kind"] == kind and e["retracted"] is None and e["version"]
    ]
    return sorted(entries, key=lambda e: e["version"])


def _derive(view: View, entry: dict[str, Any]) -> None:
    """What the overview derives from the entry, from its current value (or its retraction)."""
    kind, value, retracted = entry["kind"], entry["value"], entry["retracted"]
    if kind == "worksheet":
        _derive_worksheets(view, value["worksheet"])
    elif kind == "resource_group_meeting":
        held = [e["value"]["held_on"] for e in _standing(view, kind)]
        view["meetings"] = {"count": len(held), "last_held_on": max(held) if held else None}
    elif kind == "goal":
        for goal in view["goals"]:
            if goal["goal_id"] == value["goal_id"]:
                goal.update({k: value[k] for k in ("description", "life_area", "target_date", "set_on")})
                goal["corrected"] = bool(entry["corrections"])
                if retracted is not None:
                    goal["retracted"] = retracted
    else:
        sip = view["sip"]
        if sip is None or sip["version"] != value["sip_version"]:
            return  # an action of an earlier SIP: its history keeps it as it stood
        for action in sip["actions"]:
            if action["action_id"] == value["action_id"]:
                action["done_on"] = None if retracted is not None else value["completed_on"]


def _derive_worksheets(view: View, sheet: str) -> None:
    """The sheet's checklist step and, for change ratings, the latest rating and the facts."""
    standing = [e["value"] for e in _standing(view, "worksheet") if e["value"]["worksheet"] == sheet]
    for step in view["checklist"]:
        if step["step"] == sheet:
            step["times"] = len(standing)
            step["done"] = bool(standing)
            step["completed_on"] = standing[-1]["completed_on"] if standing else None
            step["first_completed_on"] = standing[0]["completed_on"] if standing else None
            step["participants"] = standing[-1]["participants"] if standing else []
    if sheet != Worksheet.CHANGE_RATING.value:
        return
    totals = []
    view["latest_change_rating"] = None
    for value in standing:
        rating = value["change_rating"]
        total = rating["individually"] + rating["interpersonally"] + rating["socially"] + rating["overall"]
        totals.append(total)
        view["latest_change_rating"] = {"rated_on": value["completed_on"], **rating, "total": total}
    facts = view["facts"]
    facts["rating_count"] = len(totals)
    facts["first_rating_total"] = totals[0] if totals else None
    facts["latest_rating_total"] = totals[-1] if totals else None


def _case_closed(view: View, data: dict[str, Any]) -> None:
    view["status"] = "closed"
    view["phase"] = "closed"
    view["closed_on"] = data["closed_on"]
    view["closing_reason"] = data["reason"]
    view["next_follow_up_on"] = None
    view["facts"]["closed_on"] = data["closed_on"]


HANDLERS: EventHandlers[Callable[[View, dict[str, Any]], None]] = EventHandlers.of(
    "projections: case overview",
    ev.CASE_EVENTS,
    {
        ev.CoordinatorAssigned: _coordinator_assigned,
        ev.CoordinatorUnassigned: _coordinator_unassigned,
        ev.ConsentGiven: _consent_given,
        ev.ConsentWithdrawn: _consent_withdrawn,
        ev.ConsentRenewed: _consent_renewed,
        ev.WorksheetCompleted: _worksheet_completed,
        ev.MappingSummarised: _mapping_summarised,
        ev.PhaseChanged: _phase_changed,
        ev.GoalSet: _goal_set,
        ev.GoalStatusChanged: _goal_status_changed,
        ev.ResourceGroupMemberAdded: _member_added,
        ev.ResourceGroupMemberRemoved: _member_removed,
        ev.EarlyWarningPlanUpdated: _plan_updated,
        ev.SipDecided: _sip_decided,
        ev.SipConfirmedByClient: _sip_confirmed,
        ev.ResourceGroupMeetingHeld: _meeting_held,
        ev.ActionCompleted: _action_completed,
        ev.EarlyWarningTriggered: _warning_triggered,
        ev.EarlyWarningResolved: _warning_resolved,
        ev.MethodDeviationRecorded: _deviation_recorded,
        ev.ClientContactRecorded: _contact_recorded,
        ev.ContactPeriodSet: _contact_period_set,
        ev.EntryCorrected: _entry_corrected,
        ev.EntryRetracted: _entry_retracted,
        ev.CaseClosed: _case_closed,
    },
    ignored=(ev.CaseOpened,),  # open_view builds the view from it
)


# ------------------------------------------------------------------ derived at read time
def mark_overdue(view: View, today: str) -> View:
    """A copy for serving: each SIP action's ``overdue`` and the follow-up's, as of ``today``."""
    served = dict(view)
    served.pop("facts", None)
    chain = dict(view["chain"])
    chain.pop("head", None)
    served["chain"] = chain
    served.setdefault("deviations", [])  # a view stored before deviations were kept
    served["logbook"] = logbook_served(view, today)
    served.setdefault("handover", None)  # a view stored before handovers were kept
    served.setdefault("entries", {})  # likewise, entries (ADR 0018)
    active = view["status"] == "active"
    follow_up = view["next_follow_up_on"]
    served["follow_up_overdue"] = bool(active and follow_up is not None and follow_up < today)
    sip = view["sip"]
    if sip is not None:
        actions = [
            {**action, "overdue": bool(active and action["done_on"] is None and action["due_on"] < today)}
            for action in sip["actions"]
        ]
        served["sip"] = {**sip, "actions": actions}
    return served


def overdue_actions(view: View, today: str) -> list[dict[str, Any]]:
    sip = view["sip"]
    if view["status"] != "active" or sip is None:
        return []
    return [a for a in sip["actions"] if a["done_on"] is None and a["due_on"] < today]


def logbook_served(view: View, today: str) -> dict[str, Any]:
    """The logbook with the period in force and when the next contact is due (ADR 0019).

    The period is the coordinators' (``set``: true) or the phase's. The next contact is due
    by the end of the current interval: from the day after the last contact with the client
    (in the logbook or at a meeting with them), or from the period's start if later, as long
    as the method's interval for the period. (The meetings service judges the cadence with its
    own settings and counts booked meetings too; this is the method's picture.)
    """
    logbook = view.get("logbook") or _logbook(view["opened_on"])
    chosen = logbook["period"]
    if chosen is not None:
        period, since, set_by = ContactPeriod(chosen["period"]), chosen["applies_from"], chosen["set_by"]
    else:
        phase = Phase(view["phase"])
        period, since, set_by = CONTACT_PERIOD_OF_PHASE[phase], logbook["phase_since"], None
    last = logbook["last_contact_on"]
    start = date.fromisoformat(since)
    if last is not None:
        start = max(start, date.fromisoformat(last) + timedelta(days=1))
    active = view["status"] == "active"
    due_by = (start + timedelta(days=CONTACT_PERIOD_DAYS[period] - 1)).isoformat() if active else None
    return {
        "contacts": logbook["contacts"],
        "period": {
            "period": period.value,
            "set": chosen is not None,
            "since": since,
            "set_by": set_by,
            "reason": chosen.get("reason") if chosen else None,
            "interval_days": CONTACT_PERIOD_DAYS[period],
        },
        "last_contact_on": last,
        "next_contact_due_by": due_by,
        "contact_due_passed": bool(due_by is not None and due_by < today),
    }
