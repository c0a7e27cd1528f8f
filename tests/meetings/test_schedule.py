"""The method's rhythm, rule by rule, through the meetings service and a real store."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from services.meetings.application.ports import CASE_POSITION
from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import STOCKHOLM, WorkingDays
from services.meetings.domain.meeting import MeetingStatus
from services.meetings.domain.schedule import Rules, restore, snapshot
from services.meetings.infrastructure.store import MeetingStore
from tests.meetings.feed import CLIENT, HOUSING, REGION_PSYCH, SOCIAL, CaseFeed
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.case_events import MappingSummarised, PlanContact
from vss_contracts.chain import GENESIS_HASH, chain_hash
from vss_contracts.meeting_events import MeetingKind
from vss_contracts.types import MemberKind, Phase


def types_of(store: MeetingStore, feed: CaseFeed, *, cadence: bool = False) -> list[str]:
    """The case's meeting event names (without the contact-cadence reports, unless asked)."""
    names = [e.type.split(".")[-2] for e in store.events(feed.case_id)]
    return names if cadence else [n for n in names if n != "ContactCadenceMissed"]


def start_case(feed: CaseFeed, day: date = date(2026, 1, 5)) -> None:
    feed.open(day)
    feed.assign(day)
    feed.consent(day)


def test_mapping_summarised_schedules_the_first_resource_group_meeting_within_three_weeks(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.summarise(date(2026, 1, 20))
    [meeting] = meetings.meetings(feed.case_id)
    assert meeting.kind is MeetingKind.RESOURCE_GROUP
    assert date(2026, 1, 20) < meeting.starts_at.date() <= date(2026, 2, 10)
    assert meeting.starts_at == datetime(2026, 2, 10, 10, 0, tzinfo=STOCKHOLM)
    assert set(meeting.invitees) == {"client", "coordinator:sara"}
    assert types_of(meeting_store, feed) == ["MeetingScheduled"]


def test_a_sip_schedules_the_next_meeting_on_its_follow_up_date_moved_off_a_holiday(
    feed: CaseFeed, meetings: MeetingsService
) -> None:
    start_case(feed)
    feed.sip(date(2026, 3, 20), 1, follow_up=date(2026, 6, 19))  # Midsummer Eve
    [meeting] = meetings.meetings(feed.case_id)
    assert meeting.starts_at == datetime(2026, 6, 22, 10, 0, tzinfo=STOCKHOLM)  # the next working day
    assert meeting.sip_version == 1


def test_a_later_sip_moves_the_booked_meeting_and_keeps_its_identity(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.summarise(date(2026, 1, 20))
    [first] = meetings.meetings(feed.case_id)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    [moved] = meetings.meetings(feed.case_id)
    assert moved.meeting_id == first.meeting_id
    assert moved.sequence == 1
    assert moved.starts_at == datetime(2026, 5, 4, 10, 0, tzinfo=STOCKHOLM)
    assert types_of(meeting_store, feed)[-1] == "MeetingRescheduled"


def test_meeting_times_stay_local_across_the_daylight_saving_change(
    feed: CaseFeed, meetings: MeetingsService
) -> None:
    start_case(feed)
    feed.sip(date(2026, 3, 2), 1, follow_up=date(2026, 3, 30))  # after the change on 29 March
    [meeting] = meetings.meetings(feed.case_id)
    assert meeting.starts_at.utcoffset() == timedelta(hours=2)
    assert meeting.starts_at.astimezone(STOCKHOLM).time() == time(10, 0)
    reminders = [e for e in meetings.schedule(feed.case_id).timers() if e[1].startswith("remind/")]
    # 7 days before is in winter time: still 10:00 local, an hour later in UTC terms
    assert sorted(r[0].astimezone(STOCKHOLM).time() for r in reminders) == [time(10, 0), time(10, 0)], (
        reminders
    )


def test_members_added_and_removed_between_meetings_are_invited_and_dropped(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    member = feed.add_member(date(2026, 2, 10), "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
    [meeting] = meetings.meetings(feed.case_id)
    assert f"member:{member}" in meeting.invitees
    assert meeting.sequence == 1
    feed.remove_member(date(2026, 3, 1), member)
    [meeting] = meetings.meetings(feed.case_id)
    assert f"member:{member}" not in meeting.invitees
    assert f"member:{member}" in meeting.dropped
    assert meeting.sequence == 2
    assert types_of(meeting_store, feed)[-2:] == ["MeetingInviteesChanged", "MeetingInviteesChanged"]


def test_the_client_joining_the_group_with_an_address_is_invited_at_that_address(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.summarise(date(2026, 1, 20))
    [meeting] = meetings.meetings(feed.case_id)
    assert meeting.invitees["client"].email is None  # known from the case opening, no address yet
    feed.add_member(date(2026, 1, 21), "Tolvan Tolvansson", MemberKind.CLIENT)
    [meeting] = meetings.meetings(feed.case_id)
    assert meeting.invitees["client"].email == "tolvan@example.se"
    last = meeting_store.events(feed.case_id)[-1]
    changed = me.decode_meeting_event(last.type, last.state["data"])
    assert isinstance(changed, me.MeetingInviteesChanged)
    assert [(i.invitee_id, i.email) for i in changed.added] == [("client", "tolvan@example.se")]
    assert changed.removed == []
    # The same details again change nothing.
    feed.assign(date(2026, 1, 22))
    assert types_of(meeting_store, feed) == ["MeetingScheduled", "MeetingInviteesChanged"]


def test_consent_withdrawn_for_one_organisation_drops_its_members_only(
    feed: CaseFeed, meetings: MeetingsService
) -> None:
    start_case(feed)
    housing = feed.add_member(date(2026, 1, 6), "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
    nurse = feed.add_member(date(2026, 1, 6), "Nina Sköterska", MemberKind.PROFESSIONAL, REGION_PSYCH)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    feed.withdraw(date(2026, 3, 2), HOUSING.id)
    [meeting] = meetings.meetings(feed.case_id)
    assert f"member:{housing}" not in meeting.invitees
    assert f"member:{nurse}" in meeting.invitees
    assert "coordinator:sara" in meeting.invitees  # the coordinator's own organisation stays


def test_a_consent_past_its_end_invites_nobody_it_covered_and_the_next_change_drops_them(
    feed: CaseFeed, meetings: MeetingsService
) -> None:
    day = date(2026, 1, 5)
    feed.open(day)
    feed.assign(day)
    feed.consent(day, until=date(2026, 1, 30))
    housing = feed.add_member(date(2026, 1, 6), "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
    feed.summarise(date(2026, 1, 20))  # in force: the first meeting invites the housing firm
    [meeting] = meetings.meetings(feed.case_id)
    assert f"member:{housing}" in meeting.invitees
    # Past its last day (no event says so), the next change to the group is decided without it.
    nurse = feed.add_member(date(2026, 2, 2), "Nina Sköterska", MemberKind.PROFESSIONAL, REGION_PSYCH)
    [meeting] = meetings.meetings(feed.case_id)
    assert f"member:{nurse}" not in meeting.invitees
    assert f"member:{housing}" not in meeting.invitees
    assert {"client", "coordinator:sara"} <= set(meeting.invitees)


def test_a_sip_renewing_the_consent_moves_its_end(feed: CaseFeed, meetings: MeetingsService) -> None:
    day = date(2026, 1, 5)
    feed.open(day)
    feed.assign(day)
    feed.consent(day, until=date(2026, 1, 30))
    feed.sip(date(2026, 1, 20), 1, follow_up=date(2026, 5, 4))
    feed.renew(date(2026, 1, 20), 1, date(2026, 6, 30))
    nurse = feed.add_member(date(2026, 2, 2), "Nina Sköterska", MemberKind.PROFESSIONAL, REGION_PSYCH)
    [meeting] = meetings.meetings(feed.case_id)
    assert f"member:{nurse}" in meeting.invitees  # past the first end, within the renewed one


def test_the_snapshot_keeps_the_consents_end_and_one_stored_without_it_still_loads(
    feed: CaseFeed, meetings: MeetingsService, working_days: WorkingDays
) -> None:
    start_case(feed)
    feed.consent(date(2026, 1, 6), until=date(2026, 1, 30))
    stored = snapshot(meetings.schedule(feed.case_id))
    assert restore(stored, Rules(), working_days).state.consent_valid_until == date(2026, 1, 30)
    del stored["consent_valid_until"]  # as stored before the end date was kept
    assert restore(stored, Rules(), working_days).state.consent_valid_until is None


def test_the_opener_sees_the_case_until_a_consent_and_a_snapshot_stored_without_it_grants_it_nothing(
    feed: CaseFeed, meetings: MeetingsService, working_days: WorkingDays
) -> None:
    day = date(2026, 1, 5)
    feed.open(day)  # by the social services
    schedule = meetings.schedule(feed.case_id)
    assert schedule.grants() == [(SOCIAL.id, None)]
    stored = snapshot(schedule)
    assert restore(stored, Rules(), working_days).grants() == [(SOCIAL.id, None)]
    del stored["opened_by"], stored["consent_given"]  # as stored before the opener was kept
    assert restore(stored, Rules(), working_days).grants() == []
    feed.assign(day, organisation=REGION_PSYCH)
    feed.consent(day, REGION_PSYCH, HOUSING)
    assert meetings.schedule(feed.case_id).grants() == [(HOUSING.id, None), (REGION_PSYCH.id, None)]
    feed.withdraw(day)
    assert meetings.schedule(feed.case_id).grants() == [(REGION_PSYCH.id, None)]


def test_reminders_seven_and_one_day_before_and_a_change_rating_request(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    meetings.fire_due(datetime(2026, 4, 27, 9, 59, tzinfo=STOCKHOLM))
    assert "MeetingReminderDue" not in types_of(meeting_store, feed)
    meetings.fire_due(datetime(2026, 4, 27, 10, 0, tzinfo=STOCKHOLM))
    assert types_of(meeting_store, feed)[-2:] == ["MeetingReminderDue", "ChangeRatingRequested"]
    meetings.fire_due(datetime(2026, 5, 3, 10, 0, tzinfo=STOCKHOLM))
    events = meeting_store.events(feed.case_id)
    assert [e.state["data"]["days_before"] for e in events if e.type == me.MeetingReminderDue.TYPE] == [7, 1]


def test_no_change_rating_request_when_one_was_made_since_the_last_meeting(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    feed.worksheet(date(2026, 4, 20), rating=True)
    meetings.fire_due(datetime(2026, 5, 4, 9, 0, tzinfo=STOCKHOLM))
    assert "ChangeRatingRequested" not in types_of(meeting_store, feed)


def test_follow_up_overdue_when_the_date_passes_without_a_meeting_held(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    meetings.fire_due(datetime(2026, 5, 4, 23, 59, tzinfo=STOCKHOLM))
    assert "FollowUpOverdue" not in types_of(meeting_store, feed)
    meetings.fire_due(datetime(2026, 5, 5, 0, 0, tzinfo=STOCKHOLM))
    assert types_of(meeting_store, feed).count("FollowUpOverdue") == 1
    meetings.fire_due(datetime(2026, 6, 5, 0, 0, tzinfo=STOCKHOLM))
    assert types_of(meeting_store, feed).count("FollowUpOverdue") == 1


def test_a_meeting_held_in_time_means_no_overdue(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    feed.rg_held(date(2026, 5, 4))
    meetings.fire_due(datetime(2026, 5, 10, tzinfo=STOCKHOLM))
    assert "FollowUpOverdue" not in types_of(meeting_store, feed)
    [meeting] = meetings.meetings(feed.case_id)
    assert meeting.status is MeetingStatus.HELD


def test_contact_cadence_missed_per_phase(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)  # mapping: at least weekly, from 5 January
    feed.worksheet(date(2026, 1, 8))  # met the client on the 8th: next period 9-15 January
    # Judged after the working day that follows it (Friday 16 January): contacts of the
    # interval may be recorded until then.
    meetings.fire_due(datetime(2026, 1, 16, 23, 0, tzinfo=STOCKHOLM))
    assert "ContactCadenceMissed" not in types_of(meeting_store, feed, cadence=True)
    meetings.fire_due(datetime(2026, 1, 17, 0, 0, tzinfo=STOCKHOLM))
    [missed] = [e for e in meeting_store.events(feed.case_id) if e.type == me.ContactCadenceMissed.TYPE]
    assert missed.state["data"]["period"] == "assessment"  # the mapping phase's period
    assert missed.state["data"]["period_start"] == "2026-01-09"
    assert missed.state["data"]["period_end"] == "2026-01-15"
    assert missed.state["data"]["coordinators"] == [{"organisation_id": SOCIAL.id, "user_id": "sara"}]
    feed.phase(date(2026, 1, 16), Phase.MAPPING, Phase.WORKING)  # fortnightly from the 16th
    meetings.fire_due(datetime(2026, 1, 30, 23, 0, tzinfo=STOCKHOLM))
    assert types_of(meeting_store, feed, cadence=True).count("ContactCadenceMissed") == 1
    meetings.fire_due(datetime(2026, 1, 31, 0, 0, tzinfo=STOCKHOLM))
    assert types_of(meeting_store, feed, cadence=True).count("ContactCadenceMissed") == 2


def test_an_early_warning_schedules_a_crisis_meeting_within_two_working_days(
    feed: CaseFeed, meetings: MeetingsService, working_days: WorkingDays
) -> None:
    start_case(feed)
    feed.plan(date(2026, 1, 10), PlanContact(name="Mamma", relation="mor", phone="0701234567"))
    warning = feed.trigger(date(2026, 4, 2))  # Maundy Thursday: Good Friday and Easter Monday follow
    [crisis] = meetings.meetings(feed.case_id)
    assert crisis.kind is MeetingKind.CRISIS
    assert crisis.warning_id == warning
    assert crisis.starts_at.date() == date(2026, 4, 7)
    assert crisis.starts_at.date() <= working_days.add_working_days(date(2026, 4, 2), 2)
    roles = sorted(i.role.value for i in crisis.invitees.values())
    assert roles == ["client", "coordinator", "plan_contact"]


def test_resolving_the_early_warning_cancels_its_crisis_meeting_and_the_store_keeps_why(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    warning = feed.trigger(date(2026, 3, 2))  # the crisis meeting: Tuesday 3 March
    feed.send(
        date(2026, 3, 2),
        ce.EarlyWarningResolved(warning_id=warning, resolved_on=date(2026, 3, 2), outcome="Lugnt"),
    )
    [crisis] = meetings.meetings(feed.case_id)
    assert crisis.status is MeetingStatus.CANCELLED
    assert crisis.sequence == 1
    [cancelled] = [e for e in meeting_store.events(feed.case_id) if e.type == me.MeetingCancelled.TYPE]
    assert cancelled.state["data"]["reason"] == "the early warning was resolved"
    assert cancelled.state["causation_id"] == feed.event_ids[-1]  # caused by the resolution


def test_case_closed_cancels_every_future_meeting(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    feed.trigger(date(2026, 2, 3))
    feed.close(date(2026, 2, 4))
    assert {m.status for m in meetings.meetings(feed.case_id)} == {MeetingStatus.CANCELLED}
    assert types_of(meeting_store, feed)[-2:] == ["MeetingCancelled", "MeetingCancelled"]
    assert meetings.schedule(feed.case_id).timers() == []


def test_a_redelivered_case_event_changes_nothing(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.summarise(date(2026, 1, 20))
    before = meeting_store.events(feed.case_id)
    again = meetings.apply_case_event(
        case_id=feed.case_id,
        event_id=feed.event_ids[-1],
        recorded_at=datetime(2026, 1, 20, 9, 0, tzinfo=STOCKHOLM),
        data=MappingSummarised(
            summarised_on=date(2026, 1, 20),
            participants=[CLIENT],
            wants_to_change="x",
            obstacles="y",
        ),
        stream_sequence=feed.sequence[0],
    )
    assert again is False
    assert meeting_store.events(feed.case_id) == before


def test_the_schedule_chain_verifies(
    feed: CaseFeed, meetings: MeetingsService, meeting_store: MeetingStore
) -> None:
    start_case(feed)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    meetings.fire_due(datetime(2026, 5, 10, tzinfo=STOCKHOLM))
    previous = GENESIS_HASH
    for event in meeting_store.events(feed.case_id):
        state = dict(event.state)
        digest = state.pop("hash")
        assert isinstance(state.pop(CASE_POSITION), int)  # kept beside the hashed state, not in it
        assert state["prev_hash"] == previous
        assert chain_hash(str(feed.case_id), event.version, event.type, state) == digest
        previous = digest
