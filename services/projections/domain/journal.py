"""The journal read model: one line per event, in the case's order, readable by people."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.projections.domain.events import CaseEventRecord
from services.shared.dispatch import EventHandlers
from vss_contracts import case_events as ev
from vss_contracts.registry import EVENT_TYPES

Summary = Callable[[dict[str, Any]], str]


def _sip_decided(d: dict[str, Any]) -> str:
    """A SIP version; what v2 added (initial, outside parties, overall responsibility) only
    where it says something, so a v1 SIP reads as it always did."""
    kind = "Initial SIP" if d.get("initial") else "SIP"
    outside = sum(1 for a in d["actions"] if a.get("responsible_party"))
    actions = f"{len(d['actions'])} actions" + (
        f" ({outside} by parties outside the group)" if outside else ""
    )
    responsible = d.get("overall_responsibility")
    overall = f", overall responsibility {responsible['name']}" if responsible else ""
    return (
        f"{kind} version {d['sip_version']} decided on {d['decided_on']}: {actions}{overall},"
        f" next follow-up {d['next_follow_up_on']}"
    )


def _names(data: dict[str, Any]) -> str:
    return ", ".join(p["name"] for p in data.get("participants", ()))


def _consent_withdrawn(d: dict[str, Any]) -> str:
    if d.get("entire", True):
        return f"Consent withdrawn entirely on {d['withdrawn_on']}"
    parts = list(d.get("organisation_ids") or ())
    if d.get("relatives"):
        parts.append("relatives")
    return f"Consent withdrawn on {d['withdrawn_on']} for {', '.join(parts)}"


def _worksheet(d: dict[str, Any]) -> str:
    sheet = d["worksheet"].replace("_", " ")
    rating = d.get("change_rating")
    extra = ""
    if rating:
        total = sum(rating[k] for k in ("individually", "interpersonally", "socially", "overall"))
        extra = f", change rating {total}/40"
    return f"Worksheet {sheet} completed on {d['completed_on']} with {_names(d)}{extra}"


def _contact(d: dict[str, Any]) -> str:
    """A logbook contact: mode, when, how long and who. The note is free text: the overview
    shows it, the journal does not (as a meeting's notes)."""
    staff = ", ".join(p.get("name") or f"{p['user_id']} ({p['organisation']['name']})" for p in d["staff"])
    others = "".join(f", {o['role']}" for o in d.get("others") or ())
    mode = d["mode"].replace("_", " ")
    return (
        f"Contact with the client ({mode}) at {d['occurred_at']}, {d['duration_minutes']} min,"
        f" with {staff}{others}"
    )


def _period_set(d: dict[str, Any]) -> str:
    by = d["set_by"]
    who = by.get("name") or f"{by['user_id']} ({by['organisation']['name']})"
    return f"Contact period set to {d['period'].replace('_', ' ')} from {d['applies_from']} by {who}"


def _coordinator_label(coordinator: dict[str, Any]) -> str:
    """A coordinator as a deviation names them: ``user id (organisation)``; the user id alone
    where the event did not record the organisation (an earlier version, upcast)."""
    organisation = coordinator.get("organisation_id")
    return f"{coordinator['user_id']} ({organisation})" if organisation else str(coordinator["user_id"])


def _deviation(d: dict[str, Any]) -> str:
    """Which practice rule was not followed, by which fact, with its figures. The reason is free
    text, like a meeting's notes: the overview shows it, the journal does not."""
    rule = d["rule"].replace("_", " ")
    deviates = d["deviates"].removeprefix("se.vss.case.").rsplit(".", 1)[0]
    figures = ""
    if d.get("absent_coordinators"):
        figures = f", absent: {', '.join(_coordinator_label(c) for c in d['absent_coordinators'])}"
    if d.get("follow_up_due_by"):
        figures = f", follow-up due by {d['follow_up_due_by']}"
    return f"Deviation from the method on {d['deviated_on']}: {rule} ({deviates}{figures}), reason given"


ENTRY_KINDS = {
    "worksheet": "worksheet",
    "goal": "goal",
    "resource_group_meeting": "resource group meeting",
    "sip_action": "SIP action's completion",
}


def _corrected(d: dict[str, Any]) -> str:
    """A correction names the entry's own event (its line stays as it was: the original) and
    gives what the journal shows of the new value; the reason, free text, is the overview's."""
    value = d["value"]
    kind = value["kind"]
    now = {
        "worksheet": lambda: f"completed on {value['completed_on']} with {_names(value)}",
        "goal": lambda: f"set on {value['set_on']}",
        "resource_group_meeting": lambda: f"held on {value['held_on']} with {_names(value)}",
        "sip_action": lambda: f"completed on {value['completed_on']}",
    }[kind]()
    return (
        f"Correction on {d['corrected_on']} of the {ENTRY_KINDS[kind]} recorded as event"
        f" {d['corrects_event_id']}: now {now}; the original stays, reason given"
    )


def _retracted(d: dict[str, Any]) -> str:
    kind = ev.CORRECTABLE_KINDS.get(d["corrects_type"].rsplit(".", 1)[0], "")
    return (
        f"Retraction on {d['retracted_on']} of the {ENTRY_KINDS.get(kind, 'entry')} recorded as event"
        f" {d['corrects_event_id']}: it no longer counts; the original stays, reason given"
    )


SUMMARIES: EventHandlers[Summary] = EventHandlers.of(
    "projections: journal",
    ev.CASE_EVENTS,
    {
        ev.CaseOpened: lambda d: (
            f"Case opened on {d['opened_on']} by {d['opened_by_organisation']['name']}"
            f" in {d['municipality']['name']}"
        ),
        ev.CoordinatorAssigned: lambda d: (
            f"Coordinator {d['coordinator']['name']} ({d['coordinator']['organisation']['name']})"
            f" assigned on {d['assigned_on']}"
            + (f", taking over from {d['hands_over_from']['user_id']}" if d.get("hands_over_from") else "")
        ),
        ev.CoordinatorUnassigned: lambda d: (
            f"Coordinator {d['user_id']}"
            # of an organisation; an upcast v1 payload did not name it (ADR 0023)
            + (f" of {d['organisation_id']}" if d.get("organisation_id") else "")
            + f" unassigned on {d['unassigned_on']}"
        ),
        ev.ConsentGiven: lambda d: (
            f"Consent signed on {d['signed_on']} for {', '.join(o['name'] for o in d['organisations'])}"
            + (" and relatives" if d["covers_relatives"] else "")
            + (f", valid until {d['valid_until']}" if d.get("valid_until") else "")
        ),
        ev.ConsentWithdrawn: _consent_withdrawn,
        ev.ConsentRenewed: lambda d: (
            f"Consent renewed on {d['renewed_on']} with SIP version {d['sip_version']}"
        ),
        ev.WorksheetCompleted: _worksheet,
        ev.MappingSummarised: lambda d: f"Mapping summarised on {d['summarised_on']} with {_names(d)}",
        ev.PhaseChanged: lambda d: (
            f"Phase changed from {d['from_phase']} to {d['to_phase']} on {d['changed_on']}"
        ),
        ev.GoalSet: lambda d: (
            f"{'Long-term goal' if d['kind'] == 'long_term' else 'Sub-goal'} set on {d['set_on']}"
        ),
        ev.GoalStatusChanged: lambda d: f"Goal marked {d['status'].replace('_', ' ')} on {d['changed_on']}",
        ev.ResourceGroupMemberAdded: lambda d: (
            f"{d['member']['name']} ({d['member']['kind']}) joined the resource group on {d['added_on']}"
        ),
        ev.ResourceGroupMemberRemoved: lambda d: f"A member left the resource group on {d['removed_on']}",
        ev.EarlyWarningPlanUpdated: lambda d: (
            f"Early warning plan version {d['plan_version']} ({len(d['signs'])} signs) on {d['updated_on']}"
        ),
        ev.SipDecided: _sip_decided,
        ev.SipConfirmedByClient: lambda d: (
            f"The client confirmed SIP version {d['sip_version']} in their own name on {d['confirmed_on']}"
        ),
        ev.ResourceGroupMeetingHeld: lambda d: (
            f"Resource group meeting held on {d['held_on']} with {_names(d)}"
        ),
        ev.ActionCompleted: lambda d: f"A SIP {d['sip_version']} action completed on {d['completed_on']}",
        ev.EarlyWarningTriggered: lambda d: f"Early warning signs observed on {d['observed_on']}",
        ev.EarlyWarningResolved: lambda d: f"Early warning resolved on {d['resolved_on']}",
        ev.MethodDeviationRecorded: _deviation,
        ev.ClientContactRecorded: _contact,
        ev.ContactPeriodSet: _period_set,
        ev.EntryCorrected: _corrected,
        ev.EntryRetracted: _retracted,
        ev.CaseClosed: lambda d: f"Case closed on {d['closed_on']} ({d['reason'].replace('_', ' ')})",
    },
)


def summary(event: CaseEventRecord) -> str:
    if event.type not in EVENT_TYPES:  # newer than these contracts: only a rebuild reads one
        return f"{event.name} (a type this version does not describe)"
    describe = SUMMARIES.handler(event.type)
    assert describe is not None, "the journal describes every type"
    return describe(event.data)


def mark_corrections(items: list[dict[str, Any]], view: dict[str, Any]) -> list[dict[str, Any]]:
    """The journal's lines, each entry's own line marked with the events that corrected it
    (``corrected_by``, oldest first) and the one that retracted it (``retracted_by``): the line
    itself keeps what was written (ADR 0018). From the case's overview, read with the journal."""
    entries = view.get("entries", {})
    marked = []
    for item in items:
        entry = entries.get(str(item["event_id"]))
        retracted = entry["retracted"] if entry else None
        marked.append(
            {
                **item,
                "corrected_by": [c["event_id"] for c in entry["corrections"]] if entry else [],
                "retracted_by": retracted["event_id"] if retracted else None,
            }
        )
    return marked


def journal_row(event: CaseEventRecord, verified: bool) -> tuple[Any, ...]:
    """(case_id, version, log_position, event_id, type, time, actor_id, actor_org, principal, summary, ok)."""
    return (
        event.case_id,
        event.version,
        event.log_position,
        event.event_id,
        event.type,
        event.time,
        event.actor_id,
        event.actor_org,
        event.actor_principal,
        summary(event),
        1 if verified else 0,
    )
