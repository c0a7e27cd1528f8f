"""The meeting schedule's decisions, on ``MeetingSchedule`` itself: no service, no store.

Case events go in, meeting events come out; time passes only through ``fire_due``.
"""

from __future__ import annotations

from datetime import date, datetime, time
from uuid import UUID, uuid4

from services.meetings.domain.calendar import STOCKHOLM, WorkingDays, local_datetime
from services.meetings.domain.schedule import (
    Decided,
    MeetingSchedule,
    Rules,
    ScheduleState,
    restore,
    snapshot,
)
from tests.meetings.feed import CLIENT, COORDINATOR, HOUSING, REGION_PSYCH, SOCIAL
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.case_events import CaseEventData
from vss_contracts.meeting_events import MeetingKind
from vss_contracts.types import (
    ClientRef,
    ClosingReason,
    ContactDetails,
    ContactPeriod,
    Coordinator,
    MemberKind,
    Municipality,
    OrganisationRef,
    Phase,
    Region,
)

WORKING_DAYS = WorkingDays()
CASE = UUID("5d1f6f0e-0c2b-4c55-9d5e-6a3b2c1d0e01")


class Schedule:
    """A schedule fed case events on given days (at 09:00 in Stockholm)."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.schedule = MeetingSchedule(ScheduleState(case_id=CASE), rules or Rules(), WORKING_DAYS)

    def on(self, day: date, data: CaseEventData) -> list[Decided]:
        at = datetime.combine(day, time(9, 0), STOCKHOLM)
        return self.schedule.on_case_event(uuid4(), at, data)

    def started(self, day: date) -> Schedule:
        self.on(
            day,
            ce.CaseOpened(
                client=ClientRef(personal_identity_number="19121212-1212", name="Tolvan Tolvansson"),
                municipality=Municipality(code="1480", name="Göteborg"),
                region=Region(code="14", name="Västra Götalandsregionen"),
                opened_on=day,
                opened_by_organisation=SOCIAL,
            ),
        )
        coordinator = Coordinator(
            user_id="sara", name="Sara", organisation=SOCIAL, contact=ContactDetails(email="sara@example.se")
        )
        self.on(day, ce.CoordinatorAssigned(coordinator=coordinator, assigned_on=day))
        return self

    def consent(self, day: date, *organisations: OrganisationRef) -> list[Decided]:
        return self.on(
            day,
            ce.ConsentGiven(
                consent_id=uuid4(),
                organisations=list(organisations) or [SOCIAL, REGION_PSYCH, HOUSING],
                covers_relatives=False,
                signed_on=day,
            ),
        )

    def member(self, day: date, name: str, organisation: OrganisationRef) -> UUID:
        member_id = uuid4()
        self.on(
            day,
            ce.ResourceGroupMemberAdded(
                member=ce.ResourceGroupMember(
                    member_id=member_id, kind=MemberKind.PROFESSIONAL, name=name, organisation=organisation
                ),
                added_on=day,
            ),
        )
        return member_id

    def summarised(self, day: date) -> list[Decided]:
        summary = ce.MappingSummarised(
            summarised_on=day, participants=[CLIENT, COORDINATOR], wants_to_change="x", obstacles="y"
        )
        return self.on(day, summary)

    def sip(self, day: date, version: int, follow_up: date, *, initial: bool = False) -> list[Decided]:
        action = ce.SipAction(
            action_id=uuid4(), what="x", responsible_member_id=uuid4(), due_on=follow_up, how="y"
        )
        return self.on(
            day,
            ce.SipDecided(
                sip_version=version,
                decided_on=day,
                overall_responsibility=SOCIAL,
                initial=initial,
                goal_ids=[uuid4()],
                actions=[action],
                next_follow_up_on=follow_up,
                participants=[CLIENT, COORDINATOR],
                client_agreed=True,
            ),
        )


def payloads(decided: list[Decided], *, cadence: bool = False) -> list[object]:
    """The decided meeting events (without the contact-cadence reports, unless asked)."""
    return [d.data for d in decided if cadence or not isinstance(d.data, me.ContactCadenceMissed)]


def test_the_follow_up_date_of_a_sip_is_the_next_resource_group_meeting() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.consent(date(2026, 1, 5))
    [scheduled] = payloads(schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4)))
    assert isinstance(scheduled, me.MeetingScheduled)
    assert scheduled.kind is MeetingKind.RESOURCE_GROUP
    assert scheduled.starts_at == local_datetime(date(2026, 5, 4), time(10, 0))
    assert scheduled.sip_version == 1


def test_after_an_initial_sip_the_mapping_summary_still_books_a_meeting_within_three_weeks() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.consent(date(2026, 1, 5))
    [follow_up] = payloads(schedule.sip(date(2026, 1, 12), 1, follow_up=date(2026, 4, 13), initial=True))
    assert isinstance(follow_up, me.MeetingScheduled)
    [first] = payloads(schedule.summarised(date(2026, 2, 2)))
    assert isinstance(first, me.MeetingScheduled)
    assert first.kind is MeetingKind.RESOURCE_GROUP
    assert date(2026, 2, 2) < first.starts_at.date() <= date(2026, 2, 23)  # within three weeks
    # After a SIP that was not initial, a meeting booked already will do, as before.
    usual = Schedule().started(date(2026, 1, 5))
    usual.consent(date(2026, 1, 5))
    usual.sip(date(2026, 1, 12), 1, follow_up=date(2026, 4, 13))
    assert payloads(usual.summarised(date(2026, 2, 2))) == []


def test_a_later_sip_moves_the_booked_meeting_keeping_its_identity() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    [first] = payloads(schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4)))
    [moved] = payloads(schedule.sip(date(2026, 3, 2), 2, follow_up=date(2026, 4, 13)))
    assert isinstance(first, me.MeetingScheduled)
    assert isinstance(moved, me.MeetingRescheduled)
    assert moved.meeting_id == first.meeting_id
    assert moved.starts_at.date() == date(2026, 4, 13)
    assert moved.sequence == 1


def test_the_contact_cadence_follows_the_phase_weekly_in_mapping_fortnightly_in_working() -> None:
    """Before the coordinators set a period it follows the phase: assessment in the mapping
    (weekly), social recovery in the working phase (fortnightly)."""
    schedule = Schedule().started(date(2026, 1, 5))  # Monday: the first interval is 5–11 January
    # Judged a working day after it ended, when its contacts have had time to be recorded.
    assert schedule.schedule.fire_due(datetime(2026, 1, 12, 23, 59, tzinfo=STOCKHOLM)) == []
    schedule.on(
        date(2026, 1, 12),
        ce.PhaseChanged(
            from_phase=Phase.MAPPING, to_phase=Phase.WORKING, changed_on=date(2026, 1, 12), reason="x"
        ),
    )
    [missed] = payloads(
        schedule.schedule.fire_due(datetime(2026, 1, 13, 0, 0, tzinfo=STOCKHOLM)), cadence=True
    )
    assert isinstance(missed, me.ContactCadenceMissed)
    assert (missed.period, missed.period_set, missed.period_days) == (ContactPeriod.ASSESSMENT, False, 7)
    assert (missed.period_start, missed.period_end) == (date(2026, 1, 5), date(2026, 1, 11))
    # The working phase's interval starts on the day of the change: 12–25 January.
    assert schedule.schedule.fire_due(datetime(2026, 1, 26, 23, 0, tzinfo=STOCKHOLM)) == []
    [missed] = payloads(
        schedule.schedule.fire_due(datetime(2026, 1, 27, 0, 0, tzinfo=STOCKHOLM)), cadence=True
    )
    assert isinstance(missed, me.ContactCadenceMissed)
    assert (missed.period, missed.period_days, missed.period_end) == (
        ContactPeriod.SOCIAL_RECOVERY,
        14,
        date(2026, 1, 25),
    )


def test_a_consent_withdrawn_for_one_organisation_drops_its_member_from_the_coming_meeting() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.consent(date(2026, 1, 5))
    housing = schedule.member(date(2026, 1, 6), "Bo", HOUSING)
    nurse = schedule.member(date(2026, 1, 6), "Nina", REGION_PSYCH)
    schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    [changed] = payloads(
        schedule.on(
            date(2026, 3, 2),
            ce.ConsentWithdrawn(withdrawn_on=date(2026, 3, 2), entire=False, organisation_ids=[HOUSING.id]),
        )
    )
    assert isinstance(changed, me.MeetingInviteesChanged)
    assert [i.invitee_id for i in changed.removed] == [f"member:{housing}"]
    assert changed.added == []
    [meeting] = schedule.schedule.upcoming()
    assert f"member:{nurse}" in meeting.invitees
    assert "coordinator:sara" in meeting.invitees


def test_an_early_warning_calls_a_crisis_meeting_on_the_next_working_day() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    warning = uuid4()
    [crisis] = payloads(
        schedule.on(
            date(2026, 4, 2),  # Maundy Thursday: Good Friday and the Easter weekend follow
            ce.EarlyWarningTriggered(
                warning_id=warning, plan_version=1, sign_ids=["s"], observed_on=date(2026, 4, 2)
            ),
        )
    )
    assert isinstance(crisis, me.CrisisMeetingScheduled)
    assert crisis.warning_id == warning
    assert crisis.starts_at.date() == date(2026, 4, 7)


def test_closing_the_case_cancels_every_coming_meeting_and_stops_the_timers() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    cancelled = payloads(
        schedule.on(
            date(2026, 2, 3), ce.CaseClosed(closed_on=date(2026, 2, 3), reason=ClosingReason.GOALS_ACHIEVED)
        )
    )
    assert [type(c) for c in cancelled] == [me.MeetingCancelled]
    assert schedule.schedule.timers() == []
    assert schedule.schedule.next_due() is None


def test_the_same_events_decide_the_same_ids_and_a_restored_snapshot_the_same_timers() -> None:
    one, two = Schedule(), Schedule()
    event_ids = [uuid4() for _ in range(3)]
    opened = ce.CaseOpened(
        client=ClientRef(personal_identity_number="19121212-1212", name="T"),
        municipality=Municipality(code="1480", name="Göteborg"),
        region=Region(code="14", name="VGR"),
        opened_on=date(2026, 1, 5),
        opened_by_organisation=SOCIAL,
    )
    at = datetime(2026, 1, 5, 9, 0, tzinfo=STOCKHOLM)
    for schedule in (one, two):
        schedule.schedule.on_case_event(event_ids[0], at, opened)
    decided = [
        schedule.schedule.on_case_event(event_ids[1], at, schedule_sip(date(2026, 5, 4)))
        for schedule in (one, two)
    ]
    assert [d.event_id for d in decided[0]] == [d.event_id for d in decided[1]]
    restored = restore(snapshot(one.schedule), Rules(), WORKING_DAYS)
    assert restored.timers() == one.schedule.timers()
    assert restored.state.meetings == one.schedule.state.meetings


def schedule_sip(follow_up: date) -> ce.SipDecided:
    action_id = UUID("00000000-0000-4000-8000-000000000001")
    return ce.SipDecided(
        sip_version=1,
        decided_on=date(2026, 1, 5),
        overall_responsibility=SOCIAL,
        goal_ids=[UUID("00000000-0000-4000-8000-000000000002")],
        actions=[
            ce.SipAction(
                action_id=action_id,
                what="x",
                responsible_member_id=UUID("00000000-0000-4000-8000-000000000003"),
                due_on=follow_up,
                how="y",
            )
        ],
        next_follow_up_on=follow_up,
        participants=[CLIENT, COORDINATOR],
        client_agreed=True,
    )


def test_working_days_skip_weekends_and_swedish_holidays() -> None:
    assert WORKING_DAYS.on_or_after(date(2026, 6, 19)) == date(2026, 6, 22)  # Midsummer Eve, a Friday
    assert WORKING_DAYS.add_working_days(date(2026, 12, 23), 1) == date(2026, 12, 28)  # past Christmas
    assert WORKING_DAYS.holiday_name(date(2026, 12, 24)) == "Julafton"
    assert WORKING_DAYS.is_working_day(date(2026, 3, 3))


def test_during_a_handover_both_coordinators_are_invited_and_the_outgoing_one_leaves_after() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.consent(date(2026, 1, 5))
    schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    lena = Coordinator(user_id="lena", name="Lena", organisation=SOCIAL)
    handover = ce.CoordinatorAssigned(
        coordinator=lena,
        assigned_on=date(2026, 3, 2),
        hands_over_from=ce.PersonRef(organisation_id=SOCIAL.id, user_id="sara"),
    )
    [added] = payloads(schedule.on(date(2026, 3, 2), handover))
    assert isinstance(added, me.MeetingInviteesChanged)
    assert [i.invitee_id for i in added.added] == ["coordinator:lena"]
    [meeting] = schedule.schedule.upcoming()
    assert {"coordinator:sara", "coordinator:lena"} <= set(meeting.invitees)
    unassigned = ce.CoordinatorUnassigned(
        organisation_id=SOCIAL.id, user_id="sara", unassigned_on=date(2026, 3, 9)
    )
    [left] = payloads(schedule.on(date(2026, 3, 9), unassigned))
    assert isinstance(left, me.MeetingInviteesChanged)
    assert [i.invitee_id for i in left.removed] == ["coordinator:sara"]


def test_a_snapshot_stored_with_coordinators_by_user_id_restores_them_by_person() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    stored = snapshot(schedule.schedule)
    stored["coordinators"] = {v["user_id"]: v for v in stored["coordinators"].values()}  # as kept before

    restored = restore(stored, Rules(), WORKING_DAYS)

    assert list(restored.state.coordinators) == ["coordinator:sara"]
    assert restored.state.coordinator(SOCIAL.id, "sara") is not None
    assert restored.state.coordinator(REGION_PSYCH.id, "sara") is None  # another organisation's sara


def test_an_upcast_v1_unassignment_uninvites_the_coordinator_with_that_user_id() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.on(
        date(2026, 1, 6),
        ce.CoordinatorUnassigned(organisation_id=None, user_id="sara", unassigned_on=date(2026, 1, 6)),
    )
    assert schedule.schedule.state.coordinators == {}
