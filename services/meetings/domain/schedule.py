"""A case's meeting schedule (*mötesplan*): the method's rhythm, decided from the case's facts.

The schedule folds the case events it is given (:meth:`MeetingSchedule.on_case_event`)
and the clock (:meth:`MeetingSchedule.fire_due`) into meeting events. Decisions depend
only on the facts and their times, never on when they are processed:

- before a case event recorded at time *t* is applied, the timers due at or before *t*
  fire first, so a live run and a replay of the same stream produce the same events in
  the same order for each case;
- event ids are derived from their cause (the case event's id, the timer's key, the
  request id), so a replay produces the same ids.

Every state change goes through :meth:`MeetingSchedule.apply` of a meeting event, or
through the case-knowledge update of a case event (members, consent, phase …).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from uuid import UUID, uuid5

from services.meetings.domain.agenda import agenda_of, place_text
from services.meetings.domain.calendar import STOCKHOLM, WorkingDays, local_datetime
from services.meetings.domain.meeting import Answered, Meeting, MeetingBook, MeetingStatus
from services.shared.access import Grant, consent_in_force, coordinator_id, kept_grants, person_covered
from services.shared.dispatch import EventHandlers
from services.shared.invitees import invitee_from_json, invitee_json
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.case_events import CaseEventData
from vss_contracts.meeting_events import (
    Answer,
    AnswerVia,
    Invitee,
    InviteeRole,
    MeetingEventData,
    MeetingKind,
    PlaceKind,
)
from vss_contracts.types import (
    CONTACT_PERIOD_DAYS,
    CONTACT_PERIOD_OF_PHASE,
    ActingPerson,
    ContactPeriod,
    MemberKind,
    NamedCoordinator,
    Phase,
)

# Ids of meetings and events derive from this namespace and their cause.
NAMESPACE = UUID("0b6f3f0e-5d8e-4a63-9c7a-1f1e6d2b7a10")

# At least one contact with the client within this many days, per contact period (000_*.txt).
DEFAULT_CADENCE: Mapping[ContactPeriod, int] = MappingProxyType(dict(CONTACT_PERIOD_DAYS))


class ScheduleError(Exception):
    """A request the schedule refuses (the API answers 4xx naming ``rule``)."""

    status = 409

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


class MeetingNotFound(ScheduleError):
    status = 404


@dataclass(frozen=True, slots=True)
class Rules:
    """The method's thresholds (all settings; these are the defaults)."""

    first_meeting_within_days: int = 21
    meeting_time: time = time(10, 0)
    meeting_minutes: int = 60
    reminder_days: tuple[int, ...] = (7, 1)
    change_rating_days_before: int = 7
    cadence_days: Mapping[ContactPeriod, int] = field(default_factory=lambda: DEFAULT_CADENCE)
    # Working days after a contact interval's end in which contacts of the interval may still
    # be recorded (an outreach on a Saturday evening is written up on Monday) before the
    # interval is judged; 0: judged at midnight after its last day.
    cadence_grace_working_days: int = 1
    crisis_within_working_days: int = 2
    # Where the schedule puts the meetings it sets itself, until a coordinator says otherwise:
    # the method's meetings are commonly held in the client's home.
    place_kind: PlaceKind = PlaceKind.CLIENT_HOME
    # The first resource group meeting is a proposal the coordinators confirm (*preliminär
    # tid*); False: fixed and invited at once, as before proposals.
    propose_first_meeting: bool = True


@dataclass(frozen=True, slots=True)
class Decided:
    """One meeting event, with its derived id and who caused it (None: the service itself)."""

    event_id: UUID
    data: MeetingEventData
    actor_id: str | None = None
    actor_org: str | None = None
    causation_id: str | None = None


@dataclass
class ScheduleState:
    """What the schedule knows of the case, and its meetings."""

    case_id: UUID
    phase: Phase = Phase.MAPPING
    phase_since: date | None = None
    closed: bool = False
    client: Invitee | None = None
    # The client's personal identity number: who, signed in as a client, may read the schedule
    # (never in an invitation or a calendar). None in snapshots stored before it was kept.
    client_pin: str | None = None
    opened_by: str | None = None  # the organisation that opened the case
    # The assigned coordinators by invitee id: one per person (organisation, user id), ADR 0023.
    coordinators: dict[str, Invitee] = field(default_factory=dict)
    members: dict[str, Invitee] = field(default_factory=dict)  # by invitee id (member:<id>)
    consent_orgs: list[str] | None = None  # None: no consent in force
    consent_given: bool = False  # a consent was ever given (withdrawn or not)
    consent_relatives: bool = False
    consent_valid_until: date | None = None  # the consent's last day; None: open-ended
    plan_contacts: list[Invitee] = field(default_factory=list)
    meetings: MeetingBook = field(default_factory=MeetingBook)  # by meeting id
    follow_up: tuple[int, date, date] | None = None  # (SIP version, follow-up date, decided on)
    follow_up_reported: bool = False
    initial_sip: bool = False  # the last SIP was an initial one (before the mapping summary)
    last_rg_held_on: date | None = None
    last_rating_on: date | None = None
    last_contact_on: date | None = None
    cadence_from: date | None = None  # the current contact interval starts here
    # ... and ends here: fixed when it starts (None: by the current period, as stored before
    # the logbook), so that a period changed while it awaits its judgement does not move it.
    cadence_until: date | None = None
    cadence_period: ContactPeriod | None = None  # the period the current interval's length is of
    cadence_period_set: bool = False  # ... which the coordinators set (else the phase's)
    # A new period's first day, when it was set after the current interval ended but before that
    # was judged: the next interval starts on it (or later).
    cadence_restart: date | None = None
    contact_period: ContactPeriod | None = None  # set by the coordinators; None: follows the phase
    # Days of contacts on or after cadence_from that the current interval has not counted: those
    # after its end, recorded before it was judged (ADR 0019). Sorted, without repeats.
    contact_days: list[date] = field(default_factory=list)

    def coordinator(self, organisation_id: str | None, user_id: str) -> Invitee | None:
        """The assigned coordinator who is the person (``organisation_id``, ``user_id``); with no
        organisation, the only one with that user id (None when none is, or two are)."""
        found = [
            c
            for c in self.coordinators.values()
            if c.user_id == user_id
            and (
                organisation_id is None
                or (c.organisation is not None and c.organisation.id == organisation_id)
            )
        ]
        return found[0] if len(found) == 1 else None

    def coordinator_user_ids(self) -> list[str]:
        """The coordinators' user ids, one per coordinator (a namesake at another organisation
        is another coordinator with the same id)."""
        return sorted(c.user_id for c in self.coordinators.values() if c.user_id is not None)

    def coordinator_people(self) -> list[NamedCoordinator]:
        """The coordinators as persons, as the meeting events name them (ADR 0023)."""
        people = {
            (c.organisation.id if c.organisation else None, c.user_id)
            for c in self.coordinators.values()
            if c.user_id is not None
        }
        return [
            NamedCoordinator(organisation_id=organisation, user_id=user_id)
            for organisation, user_id in sorted(people, key=lambda p: (p[0] or "", p[1]))
        ]


class MeetingSchedule:
    def __init__(self, state: ScheduleState, rules: Rules, calendar: WorkingDays) -> None:
        self.state = state
        self.rules = rules
        self.calendar = calendar
        self.version = 0  # events in this schedule's stream
        self.head_hash: str | None = None
        self.revision = 0  # stored snapshots (some changes, e.g. a member added, decide no event)
        self.stored_coordinators: tuple[str, ...] = ()  # as the store's coordinator rows have them
        self._fact_day: date | None = None  # the (Stockholm) day of the case event being applied

    # ------------------------------------------------------------------------- questions
    def upcoming(self, kind: MeetingKind | None = None) -> list[Meeting]:
        return sorted(
            (m for m in self.state.meetings.scheduled() if kind is None or m.kind is kind),
            key=lambda m: m.starts_at,
        )

    def meeting(self, meeting_id: UUID) -> Meeting:
        try:
            return self.state.meetings[str(meeting_id)]
        except KeyError:
            raise MeetingNotFound("meeting_exists", f"no meeting {meeting_id} in this case") from None

    def grants(self) -> list[Grant]:
        """Who may see the case (the shared rule's grants): the coordinators' organisations,
        those the consent in force covers until its ``valid_until``, and the opener's until a
        consent is given."""
        state = self.state
        return kept_grants(state, (c.organisation.id for c in state.coordinators.values() if c.organisation))

    def consent_in_force(self, today: date) -> bool:
        return consent_in_force(self.state, today)

    def covered(self, invitee: Invitee, today: date) -> bool:
        """Whether consent lets this person be invited on ``today``: the one rule for a person
        named in the case (:func:`services.shared.access.person_covered`), by which the
        notifications service tells them and plan links open. The client and coordinators
        always; a relative or a private person while the consent covers relatives; anyone else
        while the consent in force covers their organisation."""
        state = self.state
        until = state.consent_valid_until
        return person_covered(
            invitee.organisation.id if invitee.organisation else None,
            client=invitee.role is InviteeRole.CLIENT,
            coordinator=invitee.role is InviteeRole.COORDINATOR,
            relative=invitee.role is InviteeRole.RELATIVE,
            consent_orgs=state.consent_orgs,
            consent_relatives=state.consent_relatives,
            consent_valid_until=until.isoformat() if until else None,
            today=today.isoformat(),
        )

    def group(self, today: date) -> list[Invitee]:
        """The resource group as invitees: the client, the coordinators, the covered members."""
        people: dict[str, Invitee] = {}
        if self.state.client is not None:
            people[self.state.client.invitee_id] = self.state.client
        people.update({i.invitee_id: i for i in self.state.coordinators.values()})
        people.update({i.invitee_id: i for i in self.state.members.values() if self.covered(i, today)})
        return list(people.values())

    # ------------------------------------------------------------------------------ timers
    def timers(self) -> list[tuple[datetime, str]]:
        """(due time, key) of every timer the schedule holds; the key makes its event id."""
        due: list[tuple[datetime, str]] = []
        if self.state.closed:
            return due
        for meeting in self.upcoming(MeetingKind.RESOURCE_GROUP):
            # A proposed meeting has no invitees told of it yet: nobody to remind. Its change
            # rating is asked for all the same (the client rates before the meeting, whenever).
            for days in () if meeting.proposed else self.rules.reminder_days:
                if days not in meeting.reminders_sent:
                    due.append(
                        (
                            _days_before(meeting.starts_at, days),
                            f"remind/{meeting.meeting_id}/{meeting.sequence}/{days}",
                        )
                    )
            if not meeting.rating_requested:
                at = _days_before(meeting.starts_at, self.rules.change_rating_days_before)
                due.append((at, f"rating/{meeting.meeting_id}"))
        if self.state.follow_up is not None and not self.state.follow_up_reported:
            sip_version, follow_up_on, _ = self.state.follow_up
            due.append((_midnight_after(follow_up_on), f"overdue/{sip_version}"))
        period = self._cadence_period()
        if period is not None:
            start, end = period
            grace = self.rules.cadence_grace_working_days
            judged_after = self.calendar.add_working_days(end, grace) if grace > 0 else end
            due.append((_midnight_after(judged_after), f"cadence/{start.isoformat()}"))
        # Same time: reminders, then the rating request, then overdue and cadence checks.
        return sorted(due, key=lambda t: (t[0], _TIMER_ORDER[t[1].split("/", 1)[0]], t[1]))

    def next_due(self) -> datetime | None:
        timers = self.timers()
        return timers[0][0] if timers else None

    def contact_period(self) -> ContactPeriod:
        """The period the coordinators set, else the one that follows the case's phase."""
        return self.state.contact_period or CONTACT_PERIOD_OF_PHASE[self.state.phase]

    def _cadence_period(self) -> tuple[date, date] | None:
        """The current contact interval: the days within which the client is to be met."""
        state = self.state
        days = self.rules.cadence_days.get(self.contact_period())
        start = state.cadence_from
        if days is None or start is None or state.closed or state.phase is Phase.CLOSED:
            return None
        return start, state.cadence_until or start + timedelta(days=days - 1)

    def _start_interval(self, day: date) -> None:
        """The next contact interval starts on ``day`` (or on a new period's first day, if later),
        as long as the current period says."""
        state = self.state
        if state.cadence_restart is not None:
            day, state.cadence_restart = max(day, state.cadence_restart), None
        period = self.contact_period()
        days = self.rules.cadence_days.get(period)
        state.cadence_from = day
        state.cadence_until = day + timedelta(days=days - 1) if days is not None else None
        state.cadence_period, state.cadence_period_set = period, state.contact_period is not None

    def _booked_client_days(self, start: date, end: date) -> list[date]:
        """Days in ``start``–``end`` of meetings with the client that were not cancelled (booked
        or held): a booked meeting meets the cadence (ADR 0019)."""
        return sorted(
            day
            for status, starts_at in self.state.meetings.with_client()
            if status is not MeetingStatus.CANCELLED
            and start <= (day := starts_at.astimezone(STOCKHOLM).date()) <= end
        )

    def _advance_cadence(self) -> None:
        """Each contact in the current interval starts the next one the day after it."""
        state = self.state
        while (period := self._cadence_period()) is not None:
            start, end = period
            met = [d for d in state.contact_days if start <= d <= end]
            if not met:
                break
            self._start_interval(met[-1] + timedelta(days=1))
        if state.cadence_from is not None:
            state.contact_days = [d for d in state.contact_days if d >= state.cadence_from]

    def fire_due(self, now: datetime) -> list[Decided]:
        """Fire every timer due at or before ``now``, earliest first."""
        decided: list[Decided] = []
        timers = self.timers()
        while True:
            due = [t for t in timers if t[0] <= now]
            if not due:
                return decided
            at, key = due[0]
            decided.extend(self._fire(at, key))
            timers = self.timers()  # after the firing: also what the next turn looks at
            if timers[:1] == [(at, key)]:  # each firing must retire its timer
                raise RuntimeError(f"timer {key} fired without effect")

    def _fire(self, at: datetime, key: str) -> list[Decided]:
        kind = key.split("/", 1)[0]
        state = self.state
        if kind == "remind":
            _, meeting_id, _, days = key.split("/")
            meeting = state.meetings[meeting_id]
            data: MeetingEventData = me.MeetingReminderDue(
                meeting_id=meeting.meeting_id,
                starts_at=meeting.starts_at,
                days_before=int(days),
                sequence=meeting.sequence,
            )
        elif kind == "rating":
            meeting = state.meetings[key.split("/")[1]]
            data = me.ChangeRatingRequested(
                meeting_id=meeting.meeting_id,
                meeting_starts_at=meeting.starts_at,
                last_rating_on=state.last_rating_on,
            )
            if not self._rating_needed():
                # A rating was made since the last meeting: nothing to ask, only the timer goes.
                meeting.rating_requested = True
                return []
        elif kind == "overdue":
            assert state.follow_up is not None
            sip_version, follow_up_on, _ = state.follow_up
            data = me.FollowUpOverdue(
                sip_version=sip_version, follow_up_on=follow_up_on, coordinators=state.coordinator_people()
            )
        elif kind == "cadence":
            period = self._cadence_period()
            assert period is not None
            booked = self._booked_client_days(*period)
            if booked:
                # Met by a meeting with the client in the interval: the next starts after it,
                # and nothing is reported (the timer goes with the interval).
                self._start_interval(booked[-1] + timedelta(days=1))
                self._advance_cadence()
                return []
            # The interval's own period (a new one may have been set since it ended).
            contact_period = state.cadence_period or self.contact_period()
            set_by_coordinators = (
                state.cadence_period_set if state.cadence_period else bool(state.contact_period)
            )
            data = me.ContactCadenceMissed(
                period=contact_period,
                period_set=set_by_coordinators,
                period_days=(period[1] - period[0]).days + 1,
                period_start=period[0],
                period_end=period[1],
                last_contact_on=state.last_contact_on,
                coordinators=state.coordinator_people(),
            )
        else:
            raise ValueError(f"unknown timer {key}")
        return [self._decide(Decided(self._id(f"timer/{key}"), data))]

    def _rating_needed(self) -> bool:
        last_meeting = self.state.last_rg_held_on
        rating = self.state.last_rating_on
        if rating is None:
            return True
        return last_meeting is not None and rating < last_meeting

    # ------------------------------------------------------------------------- case events
    def on_case_event(self, event_id: UUID, recorded_at: datetime, data: CaseEventData) -> list[Decided]:
        """Timers due by the event's time, then what the event itself decides."""
        handler = CASE_HANDLERS.handler(data.TYPE)
        decided = self.fire_due(recorded_at)
        if handler is not None:
            # Whom the consent covers is judged on the event's day, not the day it is
            # processed: a replay decides the same invitees.
            self._fact_day = recorded_at.astimezone(STOCKHOLM).date()
            decided.extend(handler(self, str(event_id), data))
        return decided

    @staticmethod
    def changes_nothing(data: CaseEventData) -> bool:
        """Whether the case event itself cannot change any schedule, judged from it alone
        (its type ignored; a worksheet without the client and without a change rating).
        Such an event only fires the timers due by its time, so while none is due it is
        passed over without loading the schedule."""
        if data.TYPE in CASE_HANDLERS.ignored:
            return True
        if isinstance(data, ce.WorksheetCompleted):
            return data.change_rating is None and not any(
                p.kind is MemberKind.CLIENT for p in data.participants
            )
        return False

    def _group_now(self) -> list[Invitee]:
        """The group on the day of the case event being applied."""
        if self._fact_day is None:
            raise RuntimeError("the group is decided while applying a case event")
        return self.group(self._fact_day)

    def _id(self, cause: str) -> UUID:
        return uuid5(NAMESPACE, f"{self.state.case_id}/{cause}")

    def _decide(self, decided: Decided) -> Decided:
        self.apply(decided.data)
        return decided

    def _at(self, day: date) -> tuple[datetime, datetime]:
        """A meeting's start and end on the first working day on or after ``day``."""
        starts = local_datetime(self.calendar.on_or_after(day), self.rules.meeting_time)
        return starts, starts + timedelta(minutes=self.rules.meeting_minutes)

    def _case_opened(self, cause: str, data: ce.CaseOpened) -> list[Decided]:
        self.state.client = Invitee(invitee_id="client", name=data.client.name, role=InviteeRole.CLIENT)
        self.state.client_pin = data.client.personal_identity_number
        self.state.opened_by = data.opened_by_organisation.id
        self.state.phase_since = data.opened_on
        self._start_interval(data.opened_on)
        return []

    def _coordinator_assigned(self, cause: str, data: ce.CoordinatorAssigned) -> list[Decided]:
        c = data.coordinator
        who = (c.organisation.id, c.user_id)
        same = self.state.coordinator(c.organisation.id, c.user_id)  # assigned again: the same invitee
        invitee = Invitee(
            invitee_id=same.invitee_id if same is not None else coordinator_id(who, self.state.coordinators),
            name=c.name,
            role=InviteeRole.COORDINATOR,
            organisation=c.organisation,
            user_id=c.user_id,
            email=c.contact.email,
            phone=c.contact.phone,
        )
        self.state.coordinators[invitee.invitee_id] = invitee
        return self._reinvite(cause, "coordinator_assigned")

    def _coordinator_unassigned(self, cause: str, data: ce.CoordinatorUnassigned) -> list[Decided]:
        # the person; an upcast v1 event the coordinator with its user id (ADR 0023)
        for key, c in list(self.state.coordinators.items()):
            if c.user_id is not None and data.names(c.organisation.id if c.organisation else None, c.user_id):
                del self.state.coordinators[key]
        return self._reinvite(cause, "coordinator_unassigned")

    def _member_added(self, cause: str, data: ce.ResourceGroupMemberAdded) -> list[Decided]:
        m = data.member
        invitee = Invitee(
            invitee_id=f"member:{m.member_id}",
            name=m.name,
            role=_ROLE_OF_MEMBER[m.kind],
            organisation=m.organisation,
            user_id=m.user_id,
            email=m.contact.email,
            phone=m.contact.phone,
        )
        if m.kind is MemberKind.CLIENT:
            self.state.client = invitee.model_copy(update={"invitee_id": "client"})
            return self._reinvite(cause, "member_added")
        if m.kind is MemberKind.COORDINATOR:
            return []  # coordinators are invited from their assignment
        self.state.members[invitee.invitee_id] = invitee
        return self._reinvite(cause, "member_added")

    def _member_removed(self, cause: str, data: ce.ResourceGroupMemberRemoved) -> list[Decided]:
        self.state.members.pop(f"member:{data.member_id}", None)
        return self._reinvite(cause, "member_removed")

    def _consent_given(self, cause: str, data: ce.ConsentGiven) -> list[Decided]:
        self.state.consent_orgs = sorted(o.id for o in data.organisations)
        self.state.consent_given = True
        self.state.consent_relatives = data.covers_relatives
        self.state.consent_valid_until = data.valid_until
        return self._reinvite(cause, "consent_given")

    def _consent_withdrawn(self, cause: str, data: ce.ConsentWithdrawn) -> list[Decided]:
        if data.entire:
            self.state.consent_orgs = None
            self.state.consent_relatives = False
            self.state.consent_valid_until = None
        else:
            withdrawn = set(data.organisation_ids)
            self.state.consent_orgs = [o for o in self.state.consent_orgs or [] if o not in withdrawn]
            if data.relatives:
                self.state.consent_relatives = False
        return self._reinvite(cause, "consent_withdrawn")

    def _consent_renewed(self, cause: str, data: ce.ConsentRenewed) -> list[Decided]:
        # Every SIP renews the consent, moving its end (never earlier): the same group, longer.
        if self.state.consent_orgs is not None:
            self.state.consent_valid_until = data.valid_until
        return []

    def _reinvite(self, cause: str, reason: str) -> list[Decided]:
        """Bring the invitees of future resource group meetings in line with the group."""
        decided = []
        group = {i.invitee_id: i for i in self._group_now()}
        for meeting in self.upcoming(MeetingKind.RESOURCE_GROUP):
            # New to the meeting, or known with other details (the client's address, first
            # given when the client joins the group): both need the invitation as it now stands.
            added = [i for key, i in group.items() if meeting.invitees.get(key) != i]
            removed = [i for key, i in meeting.invitees.items() if key not in group]
            if added or removed:
                decided.append(
                    self._decide(
                        Decided(
                            self._id(f"{cause}/invitees/{meeting.meeting_id}"),
                            me.MeetingInviteesChanged(
                                meeting_id=meeting.meeting_id,
                                added=added,
                                removed=removed,
                                sequence=meeting.sequence + 1,
                                reason=reason,
                            ),
                            causation_id=cause,
                        )
                    )
                )
        return decided

    def _mapping_summarised(self, cause: str, data: ce.MappingSummarised) -> list[Decided]:
        self._contact(data.summarised_on, data.participants)
        # The first resource group meeting, within three weeks: the last working day of the window.
        latest = data.summarised_on + timedelta(days=self.rules.first_meeting_within_days)
        booked = self.upcoming(MeetingKind.RESOURCE_GROUP)
        # A meeting booked already will do, unless it is an initial SIP's follow-up after the
        # window: the group still meets within three weeks of the mapping summary.
        if any(m.starts_at.date() <= latest for m in booked) or (booked and not self.state.initial_sip):
            return []
        day = latest
        while not self.calendar.is_working_day(day):
            day -= timedelta(days=1)
        # Proposed, not fixed (*preliminär tid*): the coordinators confirm its time and place.
        return [
            self._schedule_rg(
                cause,
                "mapping_summarised",
                "rg/mapping",
                day,
                sip_version=None,
                proposed=self.rules.propose_first_meeting,
            )
        ]

    def _sip_decided(self, cause: str, data: ce.SipDecided) -> list[Decided]:
        self._contact(data.decided_on, data.participants)
        self.state.follow_up = (data.sip_version, data.next_follow_up_on, data.decided_on)
        self.state.follow_up_reported = False
        self.state.initial_sip = data.initial
        decided: list[Decided] = []
        later = [m for m in self.upcoming(MeetingKind.RESOURCE_GROUP) if m.starts_at.date() > data.decided_on]
        if later:
            # The plan's follow-up date replaces an earlier booking: move it, keeping its UID.
            first, *rest = later
            starts, ends = self._at(data.next_follow_up_on)
            if starts != first.starts_at:
                decided.append(
                    self._decide(
                        Decided(
                            self._id(f"{cause}/move/{first.meeting_id}"),
                            me.MeetingRescheduled(
                                meeting_id=first.meeting_id,
                                starts_at=starts,
                                ends_at=ends,
                                previous_starts_at=first.starts_at,
                                sequence=first.sequence + 1,
                                reason=f"follow-up of SIP version {data.sip_version}",
                            ),
                            causation_id=cause,
                        )
                    )
                )
            for extra in rest:
                decided.append(
                    self._cancel(f"{cause}/cancel/{extra.meeting_id}", extra, "superseded by a SIP")
                )
            return decided
        decided.append(
            self._schedule_rg(
                cause, "sip_follow_up", f"rg/sip/{data.sip_version}", data.next_follow_up_on, data.sip_version
            )
        )
        return decided

    def _schedule_rg(
        self, cause: str, reason: str, key: str, day: date, sip_version: int | None, *, proposed: bool = False
    ) -> Decided:
        starts, ends = self._at(day)
        place_kind, location = self._usual_place()
        return self._decide(
            Decided(
                self._id(f"{cause}/schedule"),
                me.MeetingScheduled(
                    meeting_id=self._id(key),
                    kind=MeetingKind.RESOURCE_GROUP,
                    starts_at=starts,
                    ends_at=ends,
                    invitees=self._group_now(),
                    reason=reason,
                    sip_version=sip_version,
                    location=location,
                    place_kind=place_kind,
                    agenda=agenda_of(MeetingKind.RESOURCE_GROUP),
                    proposed=proposed,
                ),
                causation_id=cause,
            )
        )

    def _usual_place(self) -> tuple[PlaceKind, str]:
        """Where the group met last (the latest confirmed resource group meeting with a place
        of a known kind), else the rules' default place."""
        placed = list(self.state.meetings.places())
        if placed:
            _, place_kind, location = max(placed, key=lambda p: p[0])
            return place_kind, location
        return self.rules.place_kind, place_text(self.rules.place_kind, None)

    def _meeting_held(self, cause: str, data: ce.ResourceGroupMeetingHeld) -> list[Decided]:
        self._contact(data.held_on, data.participants)
        self.state.last_rg_held_on = max(self.state.last_rg_held_on or data.held_on, data.held_on)
        follow_up = self.state.follow_up
        if follow_up is not None and data.held_on >= follow_up[2] and data.held_on <= follow_up[1]:
            self.state.follow_up_reported = True  # held in time: no overdue check any more
        # The booked meeting of that day (or the nearest one before it) was this one.
        candidates = [
            m for m in self.upcoming(MeetingKind.RESOURCE_GROUP) if m.starts_at.date() <= data.held_on
        ]
        if not candidates:
            return []
        meeting = candidates[-1]
        return [
            self._decide(
                Decided(
                    self._id(f"{cause}/held/{meeting.meeting_id}"),
                    me.MeetingHeld(meeting_id=meeting.meeting_id, kind=meeting.kind, held_on=data.held_on),
                    causation_id=cause,
                )
            )
        ]

    def _worksheet_completed(self, cause: str, data: ce.WorksheetCompleted) -> list[Decided]:
        self._contact(data.completed_on, data.participants)
        if data.change_rating is not None:
            self.state.last_rating_on = max(self.state.last_rating_on or data.completed_on, data.completed_on)
        return []

    def _phase_changed(self, cause: str, data: ce.PhaseChanged) -> list[Decided]:
        self.state.phase = data.to_phase
        self.state.phase_since = data.changed_on
        if self.state.contact_period is None:
            # The period follows the phase: a new phase starts a new interval (its length differs).
            self._new_contact_interval(data.changed_on)
        return []

    def _contact_period_set(self, cause: str, data: ce.ContactPeriodSet) -> list[Decided]:
        """The coordinators set the period: from its first day, a new interval of its length."""
        self.state.contact_period = data.period
        self._new_contact_interval(data.applies_from)
        return []

    def _client_contact_recorded(self, cause: str, data: ce.ClientContactRecorded) -> list[Decided]:
        """A contact of the logbook meets the cadence on its day in Stockholm, whatever the hour
        (Saturday 21:30 counts for Saturday) and whatever the mode."""
        self._client_met(data.occurred_at.astimezone(STOCKHOLM).date())
        return []

    def _new_contact_interval(self, since: date) -> None:
        """A new period from ``since``: a new interval of its length starts then, unless the
        current one ended before it and awaits its judgement; then the next one starts then."""
        period = self._cadence_period()
        if period is not None and period[1] < since:
            self.state.cadence_restart = max(since, self.state.cadence_restart or since)
            return
        self._start_interval(max(since, self.state.cadence_from or since))
        self._advance_cadence()

    def _plan_updated(self, cause: str, data: ce.EarlyWarningPlanUpdated) -> list[Decided]:
        self.state.plan_contacts = [
            Invitee(
                invitee_id=f"member:{c.member_id}" if c.member_id else f"contact:{index}:{c.name}"[:160],
                name=c.name,
                role=InviteeRole.PLAN_CONTACT,
                email=c.email,
                phone=c.phone,
            )
            for index, c in enumerate(data.contacts)
        ]
        return []

    def _warning_triggered(self, cause: str, data: ce.EarlyWarningTriggered) -> list[Decided]:
        day = self.calendar.add_working_days(data.observed_on, 1)
        starts, ends = self._at(day)
        people: dict[str, Invitee] = {}
        if self.state.client is not None:
            people["client"] = self.state.client
        for contact in self.state.plan_contacts:
            member = self.state.members.get(contact.invitee_id)
            people[contact.invitee_id] = member or contact
        people.update({i.invitee_id: i for i in self.state.coordinators.values()})
        return [
            self._decide(
                Decided(
                    self._id(f"{cause}/crisis"),
                    me.CrisisMeetingScheduled(
                        meeting_id=self._id(f"crisis/{data.warning_id}"),
                        warning_id=data.warning_id,
                        starts_at=starts,
                        ends_at=ends,
                        invitees=list(people.values()),
                        location=place_text(self.rules.place_kind, None),
                        place_kind=self.rules.place_kind,
                        agenda=agenda_of(MeetingKind.CRISIS),
                    ),
                    causation_id=cause,
                )
            )
        ]

    def _warning_resolved(self, cause: str, data: ce.EarlyWarningResolved) -> list[Decided]:
        """A resolved warning needs no crisis meeting: one booked for a later day than the
        resolution is cancelled (one on that day or before may be where it was resolved)."""
        return [
            self._cancel(f"{cause}/cancel/{m.meeting_id}", m, "the early warning was resolved")
            for m in self.upcoming(MeetingKind.CRISIS)
            if m.warning_id == data.warning_id and m.starts_at.astimezone(STOCKHOLM).date() > data.resolved_on
        ]

    def _case_closed(self, cause: str, data: ce.CaseClosed) -> list[Decided]:
        decided = [
            self._cancel(f"{cause}/cancel/{m.meeting_id}", m, "the case was closed") for m in self.upcoming()
        ]
        self.state.closed = True
        return decided

    def _cancel(self, key: str, meeting: Meeting, reason: str, by: ActingPerson | None = None) -> Decided:
        return self._decide(
            Decided(
                self._id(key),
                me.MeetingCancelled(
                    meeting_id=meeting.meeting_id,
                    sequence=meeting.sequence + 1,
                    reason=reason,
                    cancelled_by=by,
                ),
                causation_id=key.split("/", 1)[0],
            )
        )

    def _contact(self, day: date, participants: Iterable[Any]) -> None:
        """A meeting with the client was held on ``day``: a new contact period starts."""
        if not any(p.kind is MemberKind.CLIENT for p in participants):
            return
        self._client_met(day)

    def _client_met(self, day: date) -> None:
        """The client was met or contacted on ``day``: it counts for the interval it lies in,
        now or (a day after the current interval, recorded before that was judged) later."""
        state = self.state
        state.last_contact_on = max(state.last_contact_on or day, day)
        if state.cadence_from is None:
            self._start_interval(day + timedelta(days=1))
            return
        if day >= state.cadence_from and day not in state.contact_days:
            state.contact_days = sorted([*state.contact_days, day])
        self._advance_cadence()

    # ------------------------------------------------------------------- coordinators' requests
    def book(
        self,
        request_id: str,
        *,
        starts_at: datetime,
        minutes: int,
        user_id: str,
        organisation_id: str,
        location: str | None,
        kind: MeetingKind = MeetingKind.CLIENT_CONTACT,
        place_kind: PlaceKind | None = None,
    ) -> Decided:
        """A coordinator books a meeting with the client (*samordningsmöte*), or a resource
        group meeting (e.g. in place of one cancelled), which invites the whole group and
        carries the method's agenda.

        The requester (``organisation_id``, ``user_id``: the person, ADR 0023) is invited as
        the case's coordinator only if they are that person: the same user id at another
        organisation is someone else. The event names them as who booked it.
        """
        self._open_case_only()
        self._working_day_only(starts_at)
        if kind is MeetingKind.CRISIS:
            raise ScheduleError(
                "crisis_meetings_follow_warnings", "a crisis meeting follows an early warning"
            )
        if kind is MeetingKind.RESOURCE_GROUP:
            invitees = self.group(starts_at.astimezone(STOCKHOLM).date())
        else:
            coordinator = self.state.coordinator(organisation_id, user_id)
            invitees = [i for i in (self.state.client, coordinator) if i is not None]
        if place_kind is not None:
            location = place_text(place_kind, location)
        return self._decide(
            Decided(
                self._id(f"request/{request_id}"),
                me.MeetingScheduled(
                    meeting_id=self._id(f"booked/{request_id}"),
                    kind=kind,
                    starts_at=starts_at.astimezone(STOCKHOLM),
                    ends_at=(starts_at + timedelta(minutes=minutes)).astimezone(STOCKHOLM),
                    invitees=invitees,
                    reason="booked",
                    booked_by=ActingPerson(organisation_id=organisation_id, user_id=user_id),
                    location=location,
                    place_kind=place_kind
                    if place_kind is not None
                    else PlaceKind.OTHER
                    if location
                    else None,
                    agenda=agenda_of(kind),
                ),
                actor_id=user_id,
                causation_id=request_id,
            )
        )

    def reschedule(
        self,
        request_id: str,
        meeting_id: UUID,
        *,
        starts_at: datetime,
        user_id: str,
        organisation_id: str,
        reason: str,
    ) -> Decided:
        meeting = self._upcoming_meeting(meeting_id)
        self._working_day_only(starts_at)
        if meeting.kind is MeetingKind.CRISIS:
            limit = self.calendar.add_working_days(
                meeting.starts_at.date(), self.rules.crisis_within_working_days
            )
            if starts_at.astimezone(STOCKHOLM).date() > limit:
                raise ScheduleError(
                    "crisis_meeting_within_working_days",
                    f"a crisis meeting may move to {limit} at the latest"
                    f" ({self.rules.crisis_within_working_days} working days)",
                )
        duration = meeting.ends_at - meeting.starts_at
        return self._decide(
            Decided(
                self._id(f"request/{request_id}"),
                me.MeetingRescheduled(
                    meeting_id=meeting.meeting_id,
                    starts_at=starts_at.astimezone(STOCKHOLM),
                    ends_at=(starts_at + duration).astimezone(STOCKHOLM),
                    previous_starts_at=meeting.starts_at,
                    sequence=meeting.sequence + 1,
                    reason=reason,
                    moved_by=ActingPerson(organisation_id=organisation_id, user_id=user_id),
                ),
                actor_id=user_id,
                causation_id=request_id,
            )
        )

    def cancel(
        self, request_id: str, meeting_id: UUID, *, user_id: str, organisation_id: str, reason: str
    ) -> Decided:
        """A coordinator cancels a meeting of any kind, with a reason; everyone invited gets a
        CANCEL. A cancelled resource group meeting is not replaced by the schedule: the SIP's
        follow-up date still stands (``FollowUpOverdue`` if nobody meets by then), and the
        coordinators book the next one (:meth:`book`)."""
        meeting = self._upcoming_meeting(meeting_id)
        by = ActingPerson(organisation_id=organisation_id, user_id=user_id)
        decided = self._cancel(f"request/{request_id}", meeting, reason, by=by)
        return Decided(decided.event_id, decided.data, actor_id=user_id, causation_id=request_id)

    def confirm(
        self,
        request_id: str,
        meeting_id: UUID,
        *,
        starts_at: datetime,
        minutes: int | None,
        place_kind: PlaceKind,
        location: str | None,
        user_id: str,
        organisation_id: str,
    ) -> Decided:
        """A coordinator confirms a proposed meeting's time and place: the invitations go out."""
        meeting = self._upcoming_meeting(meeting_id)
        if not meeting.proposed:
            raise ScheduleError("meeting_is_proposed", "the meeting is confirmed already; move it instead")
        self._working_day_only(starts_at)
        duration = timedelta(minutes=minutes) if minutes is not None else meeting.ends_at - meeting.starts_at
        return self._decide(
            Decided(
                self._id(f"request/{request_id}"),
                me.MeetingConfirmed(
                    meeting_id=meeting.meeting_id,
                    starts_at=starts_at.astimezone(STOCKHOLM),
                    ends_at=(starts_at + duration).astimezone(STOCKHOLM),
                    place_kind=place_kind,
                    location=place_text(place_kind, location),
                    sequence=meeting.sequence + 1,
                    confirmed_by=ActingPerson(organisation_id=organisation_id, user_id=user_id),
                ),
                actor_id=user_id,
                causation_id=request_id,
            )
        )

    def answer(
        self,
        request_id: str,
        meeting_id: UUID,
        *,
        invitee_id: str,
        answer: Answer,
        via: AnswerVia,
        sequence: int,
        at: datetime,
    ) -> Decided:
        """An invitee answers the invitation (*OSA*), through its link or their calendar's REPLY.

        The answer is to one SEQUENCE of the invitation: one to an older one (the meeting
        moved since) is refused, as RFC 5546 3.2.3 says an organizer ignores it.
        """
        meeting = self._upcoming_meeting(meeting_id)
        if meeting.proposed:
            raise ScheduleError("meeting_is_confirmed", "the meeting is only proposed: nobody is invited yet")
        if invitee_id not in meeting.invitees:
            raise MeetingNotFound("invitee_of_meeting", "no such invitee of this meeting")
        if sequence < meeting.sequence:
            raise ScheduleError(
                "answer_to_current_sequence",
                f"the answer is to version {sequence} of the invitation; the meeting changed since"
                f" (version {meeting.sequence}): answer the latest invitation",
            )
        if sequence > meeting.sequence:
            raise ScheduleError("answer_to_current_sequence", f"no version {sequence} of the invitation")
        return self._decide(
            Decided(
                self._id(f"request/{request_id}"),
                me.MeetingAnswered(
                    meeting_id=meeting.meeting_id,
                    invitee_id=invitee_id,
                    answer=answer,
                    via=via,
                    sequence=sequence,
                    answered_at=at,
                ),
                causation_id=request_id,
            )
        )

    def mark_held(
        self, request_id: str, meeting_id: UUID, *, held_on: date, user_id: str, organisation_id: str
    ) -> Decided:
        meeting = self._upcoming_meeting(meeting_id)
        if held_on < meeting.starts_at.date():
            raise ScheduleError("held_not_before_start", f"the meeting starts on {meeting.starts_at.date()}")
        return self._decide(
            Decided(
                self._id(f"request/{request_id}"),
                me.MeetingHeld(
                    meeting_id=meeting.meeting_id,
                    kind=meeting.kind,
                    held_on=held_on,
                    recorded_by=ActingPerson(organisation_id=organisation_id, user_id=user_id),
                ),
                actor_id=user_id,
                causation_id=request_id,
            )
        )

    def _upcoming_meeting(self, meeting_id: UUID) -> Meeting:
        self._open_case_only()
        meeting = self.meeting(meeting_id)
        if not meeting.is_upcoming:
            raise ScheduleError("meeting_is_scheduled", f"the meeting is {meeting.status.value}")
        return meeting

    def _open_case_only(self) -> None:
        if self.state.closed:
            raise ScheduleError("case_is_open", "the case is closed")

    def _working_day_only(self, starts_at: datetime) -> None:
        day = starts_at.astimezone(STOCKHOLM).date()
        if not self.calendar.is_working_day(day):
            name = self.calendar.holiday_name(day) or "a weekend day"
            raise ScheduleError(
                "working_day",
                f"{day} is not a working day ({name}); next is {self.calendar.on_or_after(day)}",
            )

    def replay_request(self, decided: Decided) -> Decided:
        """A coordinator's request decided before (taken over from the meetings stream): its
        event is a fact now, applied as it was, not decided again."""
        return self._decide(decided)

    # -------------------------------------------------------------------------- evolution
    def apply(self, data: MeetingEventData) -> None:
        """The only place a meeting event changes the schedule."""
        evolve = MEETING_APPLY.handler(data.TYPE)
        self.version += 1
        if evolve is not None:
            evolve(self, data)

    def _scheduled(self, data: me.MeetingScheduled) -> None:
        self.state.meetings[str(data.meeting_id)] = Meeting(
            meeting_id=data.meeting_id,
            case_id=self.state.case_id,
            kind=data.kind,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            invitees={i.invitee_id: i for i in data.invitees},
            reason=data.reason,
            sip_version=data.sip_version,
            warning_id=None,
            location=data.location,
            place_kind=data.place_kind,
            agenda=list(data.agenda),
            proposed=data.proposed,
        )

    def _crisis_scheduled(self, data: me.CrisisMeetingScheduled) -> None:
        self.state.meetings[str(data.meeting_id)] = Meeting(
            meeting_id=data.meeting_id,
            case_id=self.state.case_id,
            kind=MeetingKind.CRISIS,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            invitees={i.invitee_id: i for i in data.invitees},
            reason="early_warning",
            sip_version=None,
            warning_id=data.warning_id,
            location=data.location,
            place_kind=data.place_kind,
            agenda=list(data.agenda),
        )

    def _rescheduled(self, data: me.MeetingRescheduled) -> None:
        meeting = self.state.meetings[str(data.meeting_id)]
        meeting.starts_at, meeting.ends_at, meeting.sequence = data.starts_at, data.ends_at, data.sequence
        meeting.reminders_sent = []  # a new date: its reminders are due again
        meeting.rating_requested = False
        meeting.answers = {}  # an answer was to the old time: each invitee answers again

    def _confirmed(self, data: me.MeetingConfirmed) -> None:
        meeting = self.state.meetings[str(data.meeting_id)]
        if data.starts_at != meeting.starts_at:
            meeting.rating_requested = False  # asked for before another day: asked again
        meeting.starts_at, meeting.ends_at, meeting.sequence = data.starts_at, data.ends_at, data.sequence
        meeting.place_kind, meeting.location, meeting.proposed = data.place_kind, data.location, False
        meeting.reminders_sent = []

    def _answered(self, data: me.MeetingAnswered) -> None:
        meeting = self.state.meetings[str(data.meeting_id)]
        meeting.answers[data.invitee_id] = Answered(data.answer, data.via, data.sequence, data.answered_at)

    def _invitees_changed(self, data: me.MeetingInviteesChanged) -> None:
        meeting = self.state.meetings[str(data.meeting_id)]
        for invitee in data.removed:
            meeting.invitees.pop(invitee.invitee_id, None)
            meeting.dropped[invitee.invitee_id] = invitee
        for invitee in data.added:
            meeting.invitees[invitee.invitee_id] = invitee
            meeting.dropped.pop(invitee.invitee_id, None)
        meeting.sequence = data.sequence

    def _cancelled(self, data: me.MeetingCancelled) -> None:
        meeting = self.state.meetings[str(data.meeting_id)]
        meeting.status, meeting.sequence = MeetingStatus.CANCELLED, data.sequence

    def _held(self, data: me.MeetingHeld) -> None:
        state = self.state
        meeting = state.meetings[str(data.meeting_id)]
        meeting.status, meeting.held_on = MeetingStatus.HELD, data.held_on
        if meeting.kind is MeetingKind.RESOURCE_GROUP:
            state.last_rg_held_on = max(state.last_rg_held_on or data.held_on, data.held_on)
            follow_up = state.follow_up
            if follow_up is not None and follow_up[2] <= data.held_on <= follow_up[1]:
                state.follow_up_reported = True
        if "client" in meeting.invitees:
            self._client_met(data.held_on)

    def _reminder_due(self, data: me.MeetingReminderDue) -> None:
        self.state.meetings[str(data.meeting_id)].reminders_sent.append(data.days_before)

    def _rating_requested(self, data: me.ChangeRatingRequested) -> None:
        self.state.meetings[str(data.meeting_id)].rating_requested = True

    def _follow_up_overdue(self, data: me.FollowUpOverdue) -> None:
        self.state.follow_up_reported = True

    def _cadence_missed(self, data: me.ContactCadenceMissed) -> None:
        # The next interval starts after the missed one: reported again if still no contact
        # (contacts recorded since for days after the missed interval count for the next).
        self._start_interval(data.period_end + timedelta(days=1))
        self._advance_cadence()


# ---------------------------------------------------------------------------- snapshots
def snapshot(schedule: MeetingSchedule) -> dict[str, Any]:
    """The schedule as JSON, stored beside its events (loading never replays a stream)."""
    s = schedule.state
    dump = [invitee_json(i) for i in s.plan_contacts]
    return {
        "version": schedule.version,
        "revision": schedule.revision,
        "head_hash": schedule.head_hash,
        "case_id": str(s.case_id),
        "phase": s.phase.value,
        "phase_since": _iso(s.phase_since),
        "closed": s.closed,
        "client": invitee_json(s.client) if s.client else None,
        "client_pin": s.client_pin,
        "coordinators": {k: invitee_json(v) for k, v in s.coordinators.items()},
        "members": {k: invitee_json(v) for k, v in s.members.items()},
        "opened_by": s.opened_by,
        "consent_orgs": s.consent_orgs,
        "consent_given": s.consent_given,
        "consent_relatives": s.consent_relatives,
        "consent_valid_until": _iso(s.consent_valid_until),
        "plan_contacts": dump,
        "meetings": s.meetings.to_json(),
        "follow_up": [s.follow_up[0], s.follow_up[1].isoformat(), s.follow_up[2].isoformat()]
        if s.follow_up
        else None,
        "follow_up_reported": s.follow_up_reported,
        "initial_sip": s.initial_sip,
        "last_rg_held_on": _iso(s.last_rg_held_on),
        "last_rating_on": _iso(s.last_rating_on),
        "last_contact_on": _iso(s.last_contact_on),
        "cadence_from": _iso(s.cadence_from),
        "cadence_until": _iso(s.cadence_until),
        "cadence_restart": _iso(s.cadence_restart),
        "cadence_period": s.cadence_period.value if s.cadence_period else None,
        "cadence_period_set": s.cadence_period_set,
        "contact_period": s.contact_period.value if s.contact_period else None,
        "contact_days": [d.isoformat() for d in s.contact_days],
    }


def settle(schedule: MeetingSchedule) -> None:
    """Put a schedule kept in memory in the form :func:`restore` gives its stored snapshot (what
    it holds by key in key order, as the snapshot's sorted keys; times with the fixed offset an
    ISO text carries), so that it decides what a schedule loaded afresh would (the same ids,
    the same event payloads, in the same order)."""
    state = schedule.state
    state.coordinators = dict(sorted(state.coordinators.items()))
    state.members = dict(sorted(state.members.items()))
    state.meetings.settle()  # those over as their JSON: only the meetings to come are objects
    for meeting in state.meetings.scheduled():
        meeting.starts_at = datetime.fromisoformat(meeting.starts_at.isoformat())
        meeting.ends_at = datetime.fromisoformat(meeting.ends_at.isoformat())
        meeting.answers = {
            key: replace(answered, at=datetime.fromisoformat(answered.at.isoformat()))
            for key, answered in sorted(meeting.answers.items())
        }


def stored_coordinators(state: ScheduleState) -> tuple[str, ...]:
    """The store's coordinator rows of a case: the user ids its coordinators' calendar feeds
    are looked up by (each feed then matches the person, organisation and user id)."""
    return tuple(sorted(set(state.coordinator_user_ids())))


def restore(value: dict[str, Any], rules: Rules, calendar: WorkingDays) -> MeetingSchedule:
    follow_up = value["follow_up"]
    state = ScheduleState(
        case_id=UUID(value["case_id"]),
        phase=Phase(value["phase"]),
        phase_since=_date(value["phase_since"]),
        closed=value["closed"],
        client=invitee_from_json(value["client"]) if value["client"] else None,
        client_pin=value.get("client_pin"),  # not kept before clients signed in: no client reads it
        # by invitee id (snapshots stored before persons were kept have them by user id)
        coordinators={i.invitee_id: i for i in map(invitee_from_json, value["coordinators"].values())},
        members={k: invitee_from_json(v) for k, v in value["members"].items()},
        # Snapshots stored before the opener was kept have none: no opener grant, as then.
        opened_by=value.get("opened_by"),
        consent_orgs=value["consent_orgs"],
        consent_given=value.get("consent_given", True),
        consent_relatives=value["consent_relatives"],
        # Snapshots stored before the end date was kept have none: open-ended, as then.
        consent_valid_until=_date(value.get("consent_valid_until")),
        plan_contacts=[invitee_from_json(v) for v in value["plan_contacts"]],
        meetings=MeetingBook.from_json(value["meetings"]),
        follow_up=(follow_up[0], date.fromisoformat(follow_up[1]), date.fromisoformat(follow_up[2]))
        if follow_up
        else None,
        follow_up_reported=value["follow_up_reported"],
        initial_sip=value.get("initial_sip", False),  # not kept before SipDecided v2
        last_rg_held_on=_date(value["last_rg_held_on"]),
        last_rating_on=_date(value["last_rating_on"]),
        last_contact_on=_date(value["last_contact_on"]),
        cadence_from=_date(value["cadence_from"]),
        # Not kept before the logbook (ADR 0019): the interval as long as its period says, no
        # period set, no contact pending.
        cadence_until=_date(value.get("cadence_until")),
        cadence_restart=_date(value.get("cadence_restart")),
        cadence_period=ContactPeriod(value["cadence_period"]) if value.get("cadence_period") else None,
        cadence_period_set=value.get("cadence_period_set", False),
        contact_period=ContactPeriod(value["contact_period"]) if value.get("contact_period") else None,
        contact_days=[date.fromisoformat(d) for d in value.get("contact_days", [])],
    )
    schedule = MeetingSchedule(state, rules, calendar)
    schedule.version, schedule.head_hash = value["version"], value["head_hash"]
    schedule.revision = value["revision"]
    schedule.stored_coordinators = stored_coordinators(state)
    return schedule


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


_TIMER_ORDER = {"remind": 0, "rating": 1, "overdue": 2, "cadence": 3}


@lru_cache(maxsize=65_536)  # pure; every timers() asks it for each upcoming meeting again
def _days_before(moment: datetime, days: int) -> datetime:
    """The same local wall-clock time ``days`` days earlier (across a daylight-saving change)."""
    local = moment.astimezone(STOCKHOLM)
    return local_datetime(local.date() - timedelta(days=days), local.time())


def _midnight_after(day: date) -> datetime:
    """The start of the day after ``day`` in Stockholm: when a date has passed."""
    return local_datetime(day + timedelta(days=1), time(0, 0))


_ROLE_OF_MEMBER = {
    MemberKind.CLIENT: InviteeRole.CLIENT,
    MemberKind.COORDINATOR: InviteeRole.COORDINATOR,
    MemberKind.RELATIVE: InviteeRole.RELATIVE,
    MemberKind.PROFESSIONAL: InviteeRole.PROFESSIONAL,
}

CASE_HANDLERS: EventHandlers[Callable[[MeetingSchedule, str, Any], list[Decided]]] = EventHandlers.of(
    "meetings: case events",
    ce.CASE_EVENTS,
    {
        ce.CaseOpened: MeetingSchedule._case_opened,
        ce.CoordinatorAssigned: MeetingSchedule._coordinator_assigned,
        ce.CoordinatorUnassigned: MeetingSchedule._coordinator_unassigned,
        ce.ResourceGroupMemberAdded: MeetingSchedule._member_added,
        ce.ResourceGroupMemberRemoved: MeetingSchedule._member_removed,
        ce.ConsentGiven: MeetingSchedule._consent_given,
        ce.ConsentWithdrawn: MeetingSchedule._consent_withdrawn,
        ce.ConsentRenewed: MeetingSchedule._consent_renewed,
        ce.MappingSummarised: MeetingSchedule._mapping_summarised,
        ce.SipDecided: MeetingSchedule._sip_decided,
        ce.ResourceGroupMeetingHeld: MeetingSchedule._meeting_held,
        ce.WorksheetCompleted: MeetingSchedule._worksheet_completed,
        ce.PhaseChanged: MeetingSchedule._phase_changed,
        ce.ContactPeriodSet: MeetingSchedule._contact_period_set,
        ce.ClientContactRecorded: MeetingSchedule._client_contact_recorded,
        ce.EarlyWarningPlanUpdated: MeetingSchedule._plan_updated,
        ce.EarlyWarningTriggered: MeetingSchedule._warning_triggered,
        ce.EarlyWarningResolved: MeetingSchedule._warning_resolved,
        ce.CaseClosed: MeetingSchedule._case_closed,
    },
    # Goals, actions and the client's confirmation of a SIP do not move meetings.
    ignored=(
        ce.GoalSet,
        ce.GoalStatusChanged,
        ce.ActionCompleted,
        ce.SipConfirmedByClient,
        ce.MethodDeviationRecorded,  # the deviating fact that follows it is what the schedule reads
        # A corrected or retracted entry (ADR 0018) leaves the schedule as the entry moved it: the
        # reminders and contact periods it started were published, and the next SIP books the
        # next follow-up anew.
        ce.EntryCorrected,
        ce.EntryRetracted,
    ),
)

# The schedule's own events: every one changes it, so none is ignored.
MEETING_APPLY: EventHandlers[Callable[[MeetingSchedule, Any], None]] = EventHandlers.of(
    "meetings: meeting events",
    me.MEETING_EVENTS,
    {
        me.MeetingScheduled: MeetingSchedule._scheduled,
        me.CrisisMeetingScheduled: MeetingSchedule._crisis_scheduled,
        me.MeetingRescheduled: MeetingSchedule._rescheduled,
        me.MeetingInviteesChanged: MeetingSchedule._invitees_changed,
        me.MeetingCancelled: MeetingSchedule._cancelled,
        me.MeetingHeld: MeetingSchedule._held,
        me.MeetingReminderDue: MeetingSchedule._reminder_due,
        me.ChangeRatingRequested: MeetingSchedule._rating_requested,
        me.FollowUpOverdue: MeetingSchedule._follow_up_overdue,
        me.ContactCadenceMissed: MeetingSchedule._cadence_missed,
        me.MeetingConfirmed: MeetingSchedule._confirmed,
        me.MeetingAnswered: MeetingSchedule._answered,
    },
)
