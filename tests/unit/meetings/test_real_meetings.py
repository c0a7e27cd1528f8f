"""Real meetings on ``MeetingSchedule`` itself (ADR 0020): place and agenda, the first resource
group meeting proposed then confirmed, cancelling with a reason, answers, and a resolved early
warning cancelling its crisis meeting. No service, no store."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from uuid import UUID, uuid4

import pytest

from services.meetings.domain.agenda import CRISIS_AGENDA, RESOURCE_GROUP_AGENDA
from services.meetings.domain.calendar import STOCKHOLM, local_datetime
from services.meetings.domain.meeting import MeetingStatus
from services.meetings.domain.schedule import MeetingSchedule, Rules, ScheduleError, restore, snapshot
from tests.meetings.feed import CLIENT, SOCIAL
from tests.unit.meetings.test_schedule import WORKING_DAYS, Schedule, payloads
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.meeting_events import Answer, AnswerVia, MeetingKind, PlaceKind
from vss_contracts.types import ActingPerson, ClosingReason

NOW = datetime(2026, 2, 3, 12, 0, tzinfo=STOCKHOLM)


def proposed_case() -> tuple[Schedule, me.MeetingScheduled]:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.consent(date(2026, 1, 5))
    [first] = payloads(schedule.summarised(date(2026, 2, 2)))
    assert isinstance(first, me.MeetingScheduled)
    return schedule, first


def crisis(
    schedule: Schedule, day: date, warning: UUID | None = None
) -> tuple[UUID, me.CrisisMeetingScheduled]:
    warning = warning or uuid4()
    triggered = ce.EarlyWarningTriggered(warning_id=warning, plan_version=1, sign_ids=["s"], observed_on=day)
    at = datetime.combine(day, time(9, 0), STOCKHOLM)
    [meeting] = payloads(schedule.schedule.on_case_event(UUID(int=warning.int ^ 1), at, triggered))
    assert isinstance(meeting, me.CrisisMeetingScheduled)
    return warning, meeting


def resolved(warning: UUID, day: date) -> ce.EarlyWarningResolved:
    return ce.EarlyWarningResolved(warning_id=warning, resolved_on=day, outcome="Lugnare efter samtal")


def test_the_first_resource_group_meeting_is_proposed_in_the_clients_home_with_the_methods_agenda() -> None:
    _, first = proposed_case()
    assert first.proposed is True
    assert first.kind is MeetingKind.RESOURCE_GROUP
    assert first.place_kind is PlaceKind.CLIENT_HOME
    assert first.location == "Hemma hos brukaren"
    assert first.agenda == list(RESOURCE_GROUP_AGENDA)
    assert [a.split(" ")[0] for a in first.agenda] == [
        "Utvärdering",
        "Förändringsskattning",
        "Mål",
        "Genomgång",
        "Nästa",
    ]


def test_a_deployment_may_fix_the_first_meeting_at_once() -> None:
    schedule = Schedule(Rules(propose_first_meeting=False)).started(date(2026, 1, 5))
    [first] = payloads(schedule.summarised(date(2026, 2, 2)))
    assert isinstance(first, me.MeetingScheduled)
    assert first.proposed is False
    assert first.agenda == list(RESOURCE_GROUP_AGENDA)


def test_a_proposed_meeting_has_no_reminders_until_it_is_confirmed() -> None:
    schedule, first = proposed_case()
    keys = [key for _, key in schedule.schedule.timers()]
    assert not any(k.startswith("remind/") for k in keys)
    assert f"rating/{first.meeting_id}" in keys  # the client still rates before the meeting
    starts = local_datetime(date(2026, 2, 18), time(13, 0))
    confirmed = schedule.schedule.confirm(
        "req-1",
        first.meeting_id,
        starts_at=starts,
        minutes=90,
        place_kind=PlaceKind.OFFICE,
        location=None,
        user_id="sara",
        organisation_id=SOCIAL.id,
    )
    assert isinstance(confirmed.data, me.MeetingConfirmed)
    assert confirmed.data.location == "Kontor"  # the kind's name when no text is given
    assert confirmed.data.sequence == 1
    assert confirmed.data.ends_at - confirmed.data.starts_at == (starts.replace(hour=14, minute=30) - starts)
    meeting = schedule.schedule.meeting(first.meeting_id)
    assert (meeting.proposed, meeting.place_kind, meeting.starts_at) == (False, PlaceKind.OFFICE, starts)
    assert sum(k.startswith("remind/") for _, k in schedule.schedule.timers()) == 2


def test_only_a_proposed_meeting_is_confirmed() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    [fixed] = payloads(schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4)))
    assert isinstance(fixed, me.MeetingScheduled)
    assert fixed.proposed is False  # the SIP's follow-up date was decided with the group
    with pytest.raises(ScheduleError) as refused:
        schedule.schedule.confirm(
            "req-2",
            fixed.meeting_id,
            starts_at=fixed.starts_at,
            minutes=None,
            place_kind=PlaceKind.VIDEO,
            location="Teams",
            user_id="sara",
            organisation_id=SOCIAL.id,
        )
    assert refused.value.rule == "meeting_is_proposed"


def test_the_next_meeting_is_where_the_group_last_met() -> None:
    schedule, first = proposed_case()
    schedule.schedule.confirm(
        "req-3",
        first.meeting_id,
        starts_at=first.starts_at,
        minutes=None,
        place_kind=PlaceKind.OFFICE,
        location="Mottagningen",
        user_id="sara",
        organisation_id=SOCIAL.id,
    )
    held_on = first.starts_at.date()
    schedule.on(
        held_on, ce.ResourceGroupMeetingHeld(meeting_id=uuid4(), held_on=held_on, participants=[CLIENT])
    )
    [follow_up] = payloads(schedule.sip(held_on, 1, follow_up=date(2026, 5, 4)))
    assert isinstance(follow_up, me.MeetingScheduled)
    assert (follow_up.place_kind, follow_up.location, follow_up.proposed) == (
        PlaceKind.OFFICE,
        "Mottagningen",
        False,
    )


def test_a_resource_group_meeting_is_cancelled_with_a_reason_and_the_follow_up_check_stays() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    [meeting] = payloads(schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4)))
    assert isinstance(meeting, me.MeetingScheduled)
    cancelled = schedule.schedule.cancel(
        "req-4", meeting.meeting_id, user_id="sara", organisation_id=SOCIAL.id, reason="Brukaren är bortrest"
    )
    assert isinstance(cancelled.data, me.MeetingCancelled)
    assert (cancelled.data.sequence, cancelled.data.reason) == (1, "Brukaren är bortrest")
    keys = [k for _, k in schedule.schedule.timers()]
    assert not any(k.startswith(("remind/", "rating/")) for k in keys)  # no reminders of a cancelled meeting
    assert "overdue/1" in keys  # the SIP's follow-up date still stands
    # The coordinators book the next one: the whole group, with the method's agenda.
    booked = schedule.schedule.book(
        "req-5",
        starts_at=local_datetime(date(2026, 5, 5), time(10, 0)),
        minutes=60,
        user_id="sara",
        organisation_id=SOCIAL.id,
        location=None,
        kind=MeetingKind.RESOURCE_GROUP,
        place_kind=PlaceKind.CLIENT_HOME,
    )
    assert isinstance(booked.data, me.MeetingScheduled)
    assert booked.data.agenda == list(RESOURCE_GROUP_AGENDA)
    assert booked.data.location == "Hemma hos brukaren"
    assert {i.invitee_id for i in booked.data.invitees} >= {"client", "coordinator:sara"}


def test_resolving_an_early_warning_cancels_its_coming_crisis_meeting_deterministically() -> None:
    decided_ids = []
    for _ in range(2):  # a live run and a replay of the same case events
        schedule = Schedule().started(date(2026, 1, 5))
        warning, meeting = crisis(schedule, date(2026, 3, 2), UUID("1f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"))
        assert meeting.agenda == list(CRISIS_AGENDA)
        assert meeting.place_kind is PlaceKind.CLIENT_HOME
        cause = UUID("6b0c1a2e-9a43-4d1e-8f57-0f3e2d1c0b0a")
        at = datetime(2026, 3, 2, 15, 0, tzinfo=STOCKHOLM)
        decided = schedule.schedule.on_case_event(cause, at, resolved(warning, date(2026, 3, 2)))
        [cancelled] = [d for d in decided if isinstance(d.data, me.MeetingCancelled)]
        assert isinstance(cancelled.data, me.MeetingCancelled)
        assert cancelled.data.meeting_id == meeting.meeting_id
        assert cancelled.data.reason == "the early warning was resolved"
        assert cancelled.data.sequence == 1
        assert schedule.schedule.meeting(meeting.meeting_id).status is MeetingStatus.CANCELLED
        decided_ids.append(cancelled.event_id)
    assert decided_ids[0] == decided_ids[1]


def test_a_crisis_meeting_on_the_day_of_the_resolution_or_of_another_warning_stays() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    warning, meeting = crisis(schedule, date(2026, 3, 2))  # the meeting: Tuesday 3 March
    other, _ = crisis(schedule, date(2026, 3, 2))
    assert payloads(schedule.on(date(2026, 3, 3), resolved(warning, date(2026, 3, 3)))) == []
    assert payloads(schedule.on(date(2026, 3, 3), resolved(uuid4(), date(2026, 3, 3)))) == []
    assert schedule.schedule.meeting(meeting.meeting_id).is_upcoming
    assert other != warning


def test_an_answer_is_to_the_invitation_as_it_stands() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    [meeting] = payloads(schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4)))
    assert isinstance(meeting, me.MeetingScheduled)
    plan = schedule.schedule
    answered = plan.answer(
        "a-1",
        meeting.meeting_id,
        invitee_id="client",
        answer=Answer.ACCEPTED,
        via=AnswerVia.LINK,
        sequence=0,
        at=NOW,
    )
    assert isinstance(answered.data, me.MeetingAnswered)
    assert plan.meeting(meeting.meeting_id).partstats == {"client": "ACCEPTED"}
    assert plan.meeting(meeting.meeting_id).sequence == 0  # an answer changes no invitation
    plan.reschedule(
        "r-1",
        meeting.meeting_id,
        starts_at=local_datetime(date(2026, 5, 5), time(10, 0)),
        user_id="sara",
        organisation_id=SOCIAL.id,
        reason="x",
    )
    assert plan.meeting(meeting.meeting_id).partstats == {}  # answered for the old time: asked again
    for sequence, rule in ((0, "answer_to_current_sequence"), (2, "answer_to_current_sequence")):
        with pytest.raises(ScheduleError) as refused:
            plan.answer(
                "a-2",
                meeting.meeting_id,
                invitee_id="client",
                answer=Answer.DECLINED,
                via=AnswerVia.ICALENDAR,
                sequence=sequence,
                at=NOW,
            )
        assert refused.value.rule == rule
    with pytest.raises(ScheduleError) as unknown:
        plan.answer(
            "a-3",
            meeting.meeting_id,
            invitee_id="member:nobody",
            answer=Answer.DECLINED,
            via=AnswerVia.LINK,
            sequence=1,
            at=NOW,
        )
    assert unknown.value.status == 404


def test_a_proposed_meeting_takes_no_answers_and_a_snapshot_keeps_places_agendas_and_answers() -> None:
    schedule, first = proposed_case()
    with pytest.raises(ScheduleError) as refused:
        schedule.schedule.answer(
            "a-4",
            first.meeting_id,
            invitee_id="client",
            answer=Answer.ACCEPTED,
            via=AnswerVia.LINK,
            sequence=0,
            at=NOW,
        )
    assert refused.value.rule == "meeting_is_confirmed"
    schedule.schedule.confirm(
        "c-1",
        first.meeting_id,
        starts_at=first.starts_at,
        minutes=None,
        place_kind=PlaceKind.VIDEO,
        location="Teams",
        user_id="sara",
        organisation_id=SOCIAL.id,
    )
    schedule.schedule.answer(
        "a-5",
        first.meeting_id,
        invitee_id="client",
        answer=Answer.TENTATIVE,
        via=AnswerVia.ICALENDAR,
        sequence=1,
        at=NOW,
    )
    restored: MeetingSchedule = restore(snapshot(schedule.schedule), Rules(), WORKING_DAYS)
    assert restored.state.meetings == schedule.schedule.state.meetings
    assert restored.meeting(first.meeting_id).partstats == {"client": "TENTATIVE"}


def test_a_snapshot_stored_before_places_and_answers_restores_without_them() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    value = snapshot(schedule.schedule)
    for meeting in value["meetings"].values():
        for key in ("place_kind", "agenda", "proposed", "answers"):
            del meeting[key]
    [meeting] = restore(value, Rules(), WORKING_DAYS).state.meetings.values()
    assert (meeting.place_kind, meeting.agenda, meeting.proposed, meeting.answers) == (None, [], False, {})


def test_each_request_names_the_person_who_made_it_and_the_rules_nobody() -> None:
    """Who booked, confirmed, moved, recorded or cancelled a meeting is a person (ADR 0023): a
    namesake at another organisation is recorded as who they are."""
    schedule, first = proposed_case()
    assert first.booked_by is None  # the schedule proposed it
    anna = ActingPerson(organisation_id="vgr-psykiatri-nordost", user_id="sara")  # Sara's namesake
    sara = ActingPerson(organisation_id=SOCIAL.id, user_id="sara")
    plan = schedule.schedule
    confirmed = plan.confirm(
        "p-1",
        first.meeting_id,
        starts_at=first.starts_at,
        minutes=None,
        place_kind=PlaceKind.OFFICE,
        location=None,
        user_id=anna.user_id,
        organisation_id=anna.organisation_id,
    )
    assert isinstance(confirmed.data, me.MeetingConfirmed)
    assert confirmed.data.confirmed_by == anna
    moved = plan.reschedule(
        "p-2",
        first.meeting_id,
        starts_at=first.starts_at + timedelta(days=1),
        user_id="sara",
        organisation_id=SOCIAL.id,
        reason="Tolvan är bortrest",
    )
    assert isinstance(moved.data, me.MeetingRescheduled)
    assert moved.data.moved_by == sara
    held = plan.mark_held(
        "p-3",
        first.meeting_id,
        held_on=first.starts_at.date() + timedelta(days=1),
        user_id=anna.user_id,
        organisation_id=anna.organisation_id,
    )
    assert isinstance(held.data, me.MeetingHeld)
    assert held.data.recorded_by == anna
    booked = plan.book(
        "p-4",
        starts_at=local_datetime(date(2026, 3, 3), time(10, 0)),
        minutes=60,
        user_id="sara",
        organisation_id=SOCIAL.id,
        location=None,
    )
    assert isinstance(booked.data, me.MeetingScheduled)
    assert booked.data.booked_by == sara
    cancelled = plan.cancel(
        "p-5",
        booked.data.meeting_id,
        user_id=anna.user_id,
        organisation_id=anna.organisation_id,
        reason="Sjuk",
    )
    assert isinstance(cancelled.data, me.MeetingCancelled)
    assert cancelled.data.cancelled_by == anna
    for decided in (confirmed, moved, held, booked, cancelled):
        assert decided.actor_id == "sara"  # the envelope's actor: the service sets its organisation
    # A cancellation by the rules names nobody.
    again = plan.book(
        "p-6",
        starts_at=local_datetime(date(2026, 3, 4), time(10, 0)),
        minutes=60,
        user_id="sara",
        organisation_id=SOCIAL.id,
        location=None,
    )
    closed = ce.CaseClosed(closed_on=date(2026, 3, 2), reason=ClosingReason.GOALS_ACHIEVED)
    [by_the_rules] = [
        p
        for p in payloads(schedule.on(date(2026, 3, 2), closed))
        if isinstance(p, me.MeetingCancelled) and p.meeting_id == again.data.meeting_id  # type: ignore[attr-defined]
    ]
    assert by_the_rules.cancelled_by is None


def test_an_event_id_derives_from_the_request_not_from_who_made_it() -> None:
    """Replaying a request makes the event id it made before: the id is the request's."""
    schedule, _ = proposed_case()
    copies = [restore(snapshot(schedule.schedule), Rules(), WORKING_DAYS) for _ in range(2)]
    decided = [
        plan.book(
            "same-request",
            starts_at=local_datetime(date(2026, 3, 3), time(10, 0)),
            minutes=60,
            user_id="sara",
            organisation_id=organisation,
            location=None,
        )
        for plan, organisation in zip(copies, (SOCIAL.id, "vgr-psykiatri-nordost"), strict=True)
    ]
    assert decided[0].event_id == decided[1].event_id
    assert decided[0].data.meeting_id == decided[1].data.meeting_id  # type: ignore[attr-defined]
    assert decided[0].data.booked_by != decided[1].data.booked_by  # type: ignore[attr-defined]
