"""Who is told what: case and meeting events in, notices out.

Each function updates the case's :class:`Audience` with what the event says and returns
the :class:`Notice` list it calls for: one per person, already filtered by the consent
rule (:meth:`Audience.covered`). Channels and addresses are the application's business;
here it is only who, what kind of message (the template) and what it refers to.

A notice's ``context`` holds what the message may show. Templates decide what is
printed; the default ones print no health details (a neutral subject, the case
reference and a link). The one thing from the case's content they do print is a SIP
member's own actions (what, and by when), to that member only: each member sees the
actions they are responsible for and their dates. Nobody sees another
member's actions, the goals, the "how", the early warning signs or anything else.

The early-warning plan message (to everyone the plan names and every coordinator) and the
SIP notice (to each member) name, in their context, whose own plan link they carry
(:data:`PLAN_LINK_HOLDER`, ADR 0016); the whole plan is behind that link, where the query
API checks at each opening that the holder is still named and covered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from services.notifications.domain.audience import Audience, MeetingCopy, Person, Role, same_person
from services.shared.access import coordinator_id
from services.shared.dispatch import EventHandlers
from services.shared.plan_links import LinkKind, coordinator_holder, member_holder, plan_contact_holder
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.case_events import CaseEventData
from vss_contracts.meeting_events import Invitee, MeetingEventData
from vss_contracts.types import MemberKind

# A notice's context names whose plan link the message carries (ADR 0016): the holder key and
# the kind of link; the sender makes the signed link from them.
PLAN_LINK_HOLDER = "plan_link_holder"
PLAN_LINK_KIND = "plan_link_kind"
# An invitation's recipient answers through their own link (ADR 0020): the meeting it is for;
# the link is made from it, the case and the recipient's key when the message is sent.
ANSWER_MEETING = "answer_meeting_id"


@dataclass(frozen=True, slots=True)
class CalendarPart:
    """The .ics a message carries: the meeting as it stands, REQUEST or CANCEL."""

    method: Literal["REQUEST", "CANCEL"]
    meeting: MeetingCopy
    attendees: tuple[Invitee, ...] | None = None  # default: the meeting's invitees


@dataclass(frozen=True, slots=True)
class Notice:
    template: str
    person: Person
    context: Mapping[str, Any] = field(default_factory=dict)
    urgent: bool = False
    calendar: CalendarPart | None = None
    warning_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    notices: list[Notice] = field(default_factory=list)
    # The consent narrowed, a member left or the case closed: cancel what no longer may go.
    recheck_pending: bool = False
    alert_opened: UUID | None = None  # an early warning: escalate unless acknowledged
    alert_closed: UUID | None = None  # resolved: no escalation any more


def _to(
    audience: Audience, today: date, people: Iterable[Person], template: str, **kwargs: Any
) -> list[Notice]:
    """One notice per person (by key, first wins) whom the consent lets be told."""
    seen: set[str] = set()
    notices: list[Notice] = []
    for person in people:
        if person.key in seen or not audience.covered(person, today):
            continue
        seen.add(person.key)
        notices.append(Notice(template=template, person=person, **kwargs))
    return notices


def _client_and_coordinators(audience: Audience) -> list[Person]:
    return [*audience.client(), *audience.coordinator_people()]


# ------------------------------------------------------------------------------ case events
def on_case_event(audience: Audience, data: CaseEventData, recorded_at: datetime, today: date) -> Outcome:
    """What a case event calls for; who is told is decided by the consent in force ``today``."""
    handler = CASE_HANDLERS.handler(data.TYPE)
    return handler(audience, data, recorded_at, today) if handler else Outcome()


def _case_opened(audience: Audience, data: ce.CaseOpened, _: datetime, today: date) -> Outcome:
    # No coordinator or consent yet: nobody to tell, but the opener may see the case.
    audience.opened_by = data.opened_by_organisation.id
    audience.client_pin = data.client.personal_identity_number
    return Outcome()


def _coordinator_assigned(
    audience: Audience, data: ce.CoordinatorAssigned, _: datetime, today: date
) -> Outcome:
    c = data.coordinator
    who = (c.organisation.id, c.user_id)
    same = audience.coordinators.get(who)  # assigned again: the same recipient
    person = Person(
        key=same.key
        if same is not None
        else coordinator_id(who, (p.key for p in audience.coordinators.values())),
        name=c.name,
        role=Role.COORDINATOR,
        organisation_id=c.organisation.id,
        user_id=c.user_id,
        email=str(c.contact.email) if c.contact.email else None,
        phone=c.contact.phone,
    )
    audience.coordinators[who] = person
    return Outcome(
        _to(audience, today, [person], "coordinator_assigned", context={"assigned_on": data.assigned_on})
    )


def _coordinator_unassigned(
    audience: Audience, data: ce.CoordinatorUnassigned, _: datetime, today: date
) -> Outcome:
    # the person; an upcast v1 event the coordinator with its user id (ADR 0023)
    for who in [who for who in audience.coordinators if data.names(*who)]:
        del audience.coordinators[who]
    return Outcome(recheck_pending=True)


def _consent_given(audience: Audience, data: ce.ConsentGiven, _: datetime, today: date) -> Outcome:
    audience.consent_orgs = {o.id for o in data.organisations}
    audience.consent_given = True
    audience.covers_relatives = data.covers_relatives
    audience.consent_valid_until = data.valid_until
    return Outcome(recheck_pending=True)  # a new consent may also cover less than the last


def _consent_withdrawn(audience: Audience, data: ce.ConsentWithdrawn, _: datetime, today: date) -> Outcome:
    if data.entire:
        audience.consent_orgs = None
        audience.covers_relatives = False
        audience.consent_valid_until = None
    else:
        if audience.consent_orgs is not None:
            audience.consent_orgs -= set(data.organisation_ids)
        if data.relatives:
            audience.covers_relatives = False
    return Outcome(recheck_pending=True)


def _consent_renewed(audience: Audience, data: ce.ConsentRenewed, _: datetime, today: date) -> Outcome:
    # Every SIP renews the consent, moving its end (never earlier): it covers the same people longer.
    if audience.consent_orgs is not None:
        audience.consent_valid_until = data.valid_until
    return Outcome()


def _member_person(member: ce.ResourceGroupMember) -> Person:
    role = {
        MemberKind.CLIENT: Role.CLIENT,
        MemberKind.COORDINATOR: Role.COORDINATOR,
        MemberKind.RELATIVE: Role.RELATIVE,
        MemberKind.PROFESSIONAL: Role.PROFESSIONAL,
    }[member.kind]
    return Person(
        key=f"member:{member.member_id}",
        name=member.name,
        role=role,
        organisation_id=member.organisation.id if member.organisation else None,
        user_id=member.user_id,
        email=str(member.contact.email) if member.contact.email else None,
        phone=member.contact.phone,
        relative=role is Role.RELATIVE,
    )


def _member_added(audience: Audience, data: ce.ResourceGroupMemberAdded, _: datetime, today: date) -> Outcome:
    audience.members[str(data.member.member_id)] = _member_person(data.member)
    audience.left.pop(str(data.member.member_id), None)
    return Outcome()


def _member_removed(
    audience: Audience, data: ce.ResourceGroupMemberRemoved, recorded_at: datetime, today: date
) -> Outcome:
    if audience.members.pop(str(data.member_id), None) is not None:
        audience.left[str(data.member_id)] = recorded_at
    return Outcome(recheck_pending=True)


def _plan_updated(audience: Audience, data: ce.EarlyWarningPlanUpdated, _: datetime, today: date) -> Outcome:
    contacts: list[Person] = []
    holders: dict[str, str] = {}
    for index, contact in enumerate(data.contacts):
        member = audience.members.get(str(contact.member_id)) if contact.member_id else None
        person = Person(
            key=member.key if member else f"contact:{data.plan_version}:{index}",
            name=contact.name,
            role=member.role if member else Role.PLAN_CONTACT,
            organisation_id=member.organisation_id if member else None,
            user_id=member.user_id if member else None,
            email=str(contact.email) if contact.email else (member.email if member else None),
            phone=contact.phone,
            relative=member.relative if member else True,  # a private person unless a member
        )
        contacts.append(person)
        # Their own link to the plan (ADR 0016): by member id, else by name, phone and email.
        holders.setdefault(
            person.key,
            plan_contact_holder(contact.member_id, contact.name, contact.phone, contact.email),
        )
    audience.plan_contacts = contacts
    # Every coordinator gets the plan too, with their own link, unless the plan names them.
    coordinators = [c for c in audience.coordinator_people() if not any(same_person(c, p) for p in contacts)]
    for coordinator in coordinators:
        holders[coordinator.key] = coordinator_holder(
            coordinator.organisation_id or "", coordinator.user_id or ""
        )
    context = {"plan_version": data.plan_version, "updated_on": data.updated_on}
    notices = _to(audience, today, [*contacts, *coordinators], "early_warning_plan_updated", context=context)
    return Outcome([_with_link(n, holders[n.person.key], LinkKind.EARLY_WARNING_PLAN) for n in notices])


def _with_link(notice: Notice, holder: str, kind: LinkKind) -> Notice:
    """The notice with the holder of the recipient's own plan link; the link is made when sent."""
    context = {**notice.context, PLAN_LINK_HOLDER: holder, PLAN_LINK_KIND: kind.value}
    return replace(notice, context=context)


def _warning_triggered(
    audience: Audience, data: ce.EarlyWarningTriggered, recorded_at: datetime, today: date
) -> Outcome:
    audience.open_warnings.add(str(data.warning_id))
    people = [*audience.plan_contacts, *audience.coordinator_people()]
    context = {"observed_on": data.observed_on, "triggered_at": recorded_at}
    notices = _to(
        audience, today, people, "early_warning", context=context, urgent=True, warning_id=data.warning_id
    )
    return Outcome(notices, alert_opened=data.warning_id)


def _warning_resolved(audience: Audience, data: ce.EarlyWarningResolved, _: datetime, today: date) -> Outcome:
    audience.open_warnings.discard(str(data.warning_id))
    return Outcome(alert_closed=data.warning_id)


def _sip_decided(audience: Audience, data: ce.SipDecided, _: datetime, today: date) -> Outcome:
    notices: list[Notice] = []
    for person in audience.resource_group():
        member_id = UUID(person.key.removeprefix("member:"))
        # Only the actions this member is responsible for, soonest first: what and by when.
        actions = [
            {"what": a.what, "due_on": a.due_on, "how": a.how}
            for a in sorted(data.actions, key=lambda a: a.due_on)
            if a.responsible_member_id == member_id
        ]
        context = {
            "sip_version": data.sip_version,
            "decided_on": data.decided_on,
            "next_follow_up_on": data.next_follow_up_on,
            "actions": actions,
        }
        notices.extend(
            _with_link(notice, member_holder(member_id), LinkKind.SIP)
            for notice in _to(audience, today, [person], "sip_decided", context=context)
        )
    return Outcome(notices)


def _case_closed(audience: Audience, data: ce.CaseClosed, recorded_at: datetime, today: date) -> Outcome:
    if not audience.closed:
        audience.closed, audience.closed_at = True, recorded_at
    return Outcome(recheck_pending=True)


CASE_HANDLERS: EventHandlers[Callable[[Audience, Any, datetime, date], Outcome]] = EventHandlers.of(
    "notifications: case events",
    ce.CASE_EVENTS,
    {
        ce.CaseOpened: _case_opened,
        ce.CoordinatorAssigned: _coordinator_assigned,
        ce.CoordinatorUnassigned: _coordinator_unassigned,
        ce.ConsentGiven: _consent_given,
        ce.ConsentWithdrawn: _consent_withdrawn,
        ce.ConsentRenewed: _consent_renewed,
        ce.ResourceGroupMemberAdded: _member_added,
        ce.ResourceGroupMemberRemoved: _member_removed,
        ce.EarlyWarningPlanUpdated: _plan_updated,
        ce.EarlyWarningTriggered: _warning_triggered,
        ce.EarlyWarningResolved: _warning_resolved,
        ce.SipDecided: _sip_decided,
        ce.CaseClosed: _case_closed,
    },
    # No message, and no change to who may be told.
    ignored=(
        ce.WorksheetCompleted,
        ce.MappingSummarised,
        ce.PhaseChanged,
        ce.GoalSet,
        ce.GoalStatusChanged,
        ce.ResourceGroupMeetingHeld,
        ce.ActionCompleted,
        ce.SipConfirmedByClient,  # the overview and the journal show it to the coordinators
        ce.MethodDeviationRecorded,  # likewise; the deviating fact that follows it is what tells
        ce.ClientContactRecorded,  # nobody is told of a contact: it is the coordinators' own work
        ce.ContactPeriodSet,  # the coordinators set it; the overview shows it
        ce.EntryCorrected,  # the overview and the journal show corrections (ADR 0018)
        ce.EntryRetracted,
    ),
)


# --------------------------------------------------------------------------- meeting events
def on_meeting_event(audience: Audience, data: MeetingEventData, today: date) -> Outcome:
    handler = MEETING_HANDLERS.handler(data.TYPE)
    return handler(audience, data, today) if handler else Outcome()


def _meeting_context(meeting: MeetingCopy) -> dict[str, Any]:
    return {
        "kind": meeting.kind.value,
        "starts_at": meeting.starts_at,
        "ends_at": meeting.ends_at,
        "location": meeting.location,
        "sequence": meeting.sequence,
        "agenda": list(meeting.agenda),
    }


def _snapshot(meeting: MeetingCopy) -> MeetingCopy:
    return MeetingCopy.from_json(meeting.to_json())  # the notice keeps the meeting as it was


def _covered(audience: Audience, today: date, invitees: Iterable[Invitee]) -> tuple[Invitee, ...]:
    """The invitees the consent lets be told: the only ones a calendar entry lists.

    An ATTENDEE is seen by every recipient (and their calendar's "reply all"), so someone
    the consent does not cover (yet, or any more) is neither told nor named to the others.
    """
    return tuple(i for i in invitees if audience.covered(Person.from_invitee(i), today))


def _invite(
    audience: Audience, today: date, meeting: MeetingCopy, invitees: Iterable[Invitee], template: str
) -> list[Notice]:
    if meeting.proposed:
        return []  # the schedule's suggestion: invitations go out when a coordinator confirms it
    frozen = _snapshot(meeting)
    attendees = _covered(audience, today, frozen.invitees.values())
    return _to(
        audience,
        today,
        [Person.from_invitee(i) for i in invitees],
        template,
        context={**_meeting_context(frozen), ANSWER_MEETING: str(frozen.meeting_id)},
        calendar=CalendarPart("REQUEST", frozen, attendees=attendees),
    )


def _cancel(
    audience: Audience, today: date, meeting: MeetingCopy, invitees: Iterable[Invitee]
) -> list[Notice]:
    if meeting.proposed:
        return []  # nobody was invited to a meeting only proposed: nothing to take back
    frozen = _snapshot(meeting)
    invitees = _covered(audience, today, invitees)
    return _to(
        audience,
        today,
        [Person.from_invitee(i) for i in invitees],
        "meeting_cancelled",
        context=_meeting_context(frozen),
        calendar=CalendarPart("CANCEL", frozen, attendees=invitees),
    )


def _scheduled(
    audience: Audience, data: me.MeetingScheduled | me.CrisisMeetingScheduled, today: date
) -> Outcome:
    kind = data.kind if isinstance(data, me.MeetingScheduled) else me.MeetingKind.CRISIS
    proposed = isinstance(data, me.MeetingScheduled) and data.proposed
    meeting = MeetingCopy(
        meeting_id=data.meeting_id,
        case_id=audience.case_id,
        kind=kind,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        sequence=0,
        invitees={i.invitee_id: i for i in data.invitees},
        location=data.location,
        agenda=list(data.agenda),
        proposed=proposed,
    )
    audience.meetings[str(data.meeting_id)] = meeting
    if proposed:
        # The coordinators are asked to confirm a time and place with the group; no calendar
        # entry goes out (the coordinators' feed shows the proposal).
        people = audience.coordinator_people()
        return Outcome(_to(audience, today, people, "meeting_proposed", context=_meeting_context(meeting)))
    return Outcome(_invite(audience, today, meeting, meeting.invitees.values(), "meeting_invitation"))


def _confirmed(audience: Audience, data: me.MeetingConfirmed, today: date) -> Outcome:
    meeting = audience.meetings.get(str(data.meeting_id))
    if meeting is None:
        return Outcome()
    meeting.starts_at, meeting.ends_at, meeting.sequence = data.starts_at, data.ends_at, data.sequence
    meeting.location, meeting.proposed = data.location, False
    return Outcome(_invite(audience, today, meeting, meeting.invitees.values(), "meeting_invitation"))


def _rescheduled(audience: Audience, data: me.MeetingRescheduled, today: date) -> Outcome:
    meeting = audience.meetings.get(str(data.meeting_id))
    if meeting is None:
        return Outcome()
    meeting.starts_at, meeting.ends_at, meeting.sequence = data.starts_at, data.ends_at, data.sequence
    return Outcome(_invite(audience, today, meeting, meeting.invitees.values(), "meeting_updated"))


def _invitees_changed(audience: Audience, data: me.MeetingInviteesChanged, today: date) -> Outcome:
    meeting = audience.meetings.get(str(data.meeting_id))
    if meeting is None:
        return Outcome()
    meeting.sequence = data.sequence
    for invitee in data.removed:
        meeting.invitees.pop(invitee.invitee_id, None)
    meeting.invitees.update({i.invitee_id: i for i in data.added})
    # Those dropped get a cancellation if the consent still lets them be told; one whose
    # organisation the consent no longer covers gets nothing at all (that is the point).
    return Outcome(
        [
            *_invite(audience, today, meeting, data.added, "meeting_invitation"),
            *_cancel(audience, today, meeting, data.removed),
        ]
    )


def _cancelled(audience: Audience, data: me.MeetingCancelled, today: date) -> Outcome:
    meeting = audience.meetings.get(str(data.meeting_id))
    if meeting is None:
        return Outcome()
    meeting.sequence, meeting.is_cancelled = data.sequence, True
    return Outcome(_cancel(audience, today, meeting, meeting.invitees.values()))


def _reminder(audience: Audience, data: me.MeetingReminderDue, today: date) -> Outcome:
    meeting = audience.meetings.get(str(data.meeting_id))
    context = {
        "starts_at": data.starts_at,
        "days_before": data.days_before,
        "location": meeting.location if meeting else None,
    }
    return Outcome(
        _to(audience, today, _client_and_coordinators(audience), "meeting_reminder", context=context)
    )


def _rating_requested(audience: Audience, data: me.ChangeRatingRequested, today: date) -> Outcome:
    context = {"meeting_starts_at": data.meeting_starts_at, "last_rating_on": data.last_rating_on}
    people = _client_and_coordinators(audience)
    return Outcome(_to(audience, today, people, "change_rating_requested", context=context))


def _follow_up_overdue(audience: Audience, data: me.FollowUpOverdue, today: date) -> Outcome:
    context = {"sip_version": data.sip_version, "follow_up_on": data.follow_up_on}
    return Outcome(_to(audience, today, audience.coordinator_people(), "follow_up_overdue", context=context))


def _cadence_missed(audience: Audience, data: me.ContactCadenceMissed, today: date) -> Outcome:
    context = {
        "period": data.period.value,  # the contact period (ADR 0019), named in the message
        "period_set": data.period_set,
        "period_days": data.period_days,
        "period_start": data.period_start,
        "period_end": data.period_end,
        "last_contact_on": data.last_contact_on,
    }
    return Outcome(
        _to(audience, today, audience.coordinator_people(), "contact_cadence_missed", context=context)
    )


MEETING_HANDLERS: EventHandlers[Callable[[Audience, Any, date], Outcome]] = EventHandlers.of(
    "notifications: meeting events",
    me.MEETING_EVENTS,
    {
        me.MeetingScheduled: _scheduled,
        me.CrisisMeetingScheduled: _scheduled,
        me.MeetingRescheduled: _rescheduled,
        me.MeetingInviteesChanged: _invitees_changed,
        me.MeetingCancelled: _cancelled,
        me.MeetingReminderDue: _reminder,
        me.ChangeRatingRequested: _rating_requested,
        me.FollowUpOverdue: _follow_up_overdue,
        me.ContactCadenceMissed: _cadence_missed,
        me.MeetingConfirmed: _confirmed,
    },
    # A held meeting calls for no message; an answer shows on the meeting (meetings API, read model).
    ignored=(me.MeetingHeld, me.MeetingAnswered),
)


# ------------------------------------------------------------------------------- escalation
def escalation(
    audience: Audience, warning_id: UUID, triggered_at: datetime, duty: Mapping[str, Person], today: date
) -> list[Notice]:
    """Nobody acknowledged: the duty contacts of the coordinators' organisations."""
    organisations = sorted({c.organisation_id for c in audience.coordinators.values() if c.organisation_id})
    people = [duty[o] for o in organisations if o in duty]
    context = {"triggered_at": triggered_at, "organisations": organisations}
    return _to(
        audience,
        today,
        people,
        "early_warning_escalation",
        context=context,
        urgent=True,
        warning_id=warning_id,
    )
