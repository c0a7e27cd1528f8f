"""The contact cadence per contact period (*Loggboken*, ADR 0019), on ``MeetingSchedule`` itself.

The clock is injected: time passes only through ``fire_due`` and the case events' times.
2026-01-05 is a Monday; the first interval of a case opened then is 5–11 January, judged a
working day after it ended (at midnight before Tuesday 13 January).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

import pytest

from services.meetings.domain.calendar import STOCKHOLM
from services.meetings.domain.schedule import Decided, MeetingSchedule, Rules, restore, snapshot
from tests.meetings.feed import SOCIAL
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.case_events import CaseEventData
from vss_contracts.types import CONTACT_PERIOD_DAYS, ContactMode, ContactPeriod, Person

from .test_schedule import WORKING_DAYS, Schedule

OPENED = date(2026, 1, 5)  # Monday
SARA = Person(organisation=SOCIAL, user_id="sara", name="Sara")


def stockholm(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), STOCKHOLM)


def contact(at: datetime, mode: ContactMode = ContactMode.OUTREACH) -> ce.ClientContactRecorded:
    return ce.ClientContactRecorded(
        contact_id=uuid4(), mode=mode, occurred_at=at, duration_minutes=40, staff=[SARA], note="Träffades"
    )


def period_set(period: ContactPeriod, on: date) -> ce.ContactPeriodSet:
    return ce.ContactPeriodSet(period=period, applies_from=on, set_by=SARA)


def recorded(schedule: Schedule, at: datetime, data: CaseEventData) -> list[Decided]:
    """A case event recorded at ``at`` (not at the default 09:00 of its day)."""
    return schedule.schedule.on_case_event(uuid4(), at, data)


def missed(decided: list[Decided]) -> list[me.ContactCadenceMissed]:
    return [d.data for d in decided if isinstance(d.data, me.ContactCadenceMissed)]


def until(schedule: Schedule, day: date) -> list[me.ContactCadenceMissed]:
    """The reports of every timer due by the start of ``day``."""
    return missed(schedule.schedule.fire_due(stockholm(day, 0)))


# ------------------------------------------------------------------------ the logbook counts
def test_a_contact_on_a_saturday_evening_recorded_on_monday_meets_the_interval() -> None:
    schedule = Schedule().started(OPENED)
    saturday_evening = stockholm(date(2026, 1, 10), 21, 30)
    # Written up on Monday morning, after the interval (5–11 January) ended.
    recorded(schedule, stockholm(date(2026, 1, 12), 8, 30), contact(saturday_evening))

    assert until(schedule, date(2026, 1, 13)) == []  # no false "missed"
    # The next interval starts the day after the contact: 11–17 January.
    assert schedule.schedule.state.cadence_from == date(2026, 1, 11)
    assert schedule.schedule.state.last_contact_on == date(2026, 1, 10)
    [report] = until(schedule, date(2026, 1, 20))  # judged after Monday 19 January
    assert (report.period_start, report.period_end) == (date(2026, 1, 11), date(2026, 1, 17))
    assert report.last_contact_on == date(2026, 1, 10)


def test_a_contact_counts_on_its_day_in_stockholm_whatever_the_hour_or_offset() -> None:
    schedule = Schedule().started(OPENED)
    # 23:30 UTC on Saturday is 00:30 on Sunday in Stockholm: Sunday's contact.
    recorded(schedule, stockholm(date(2026, 1, 12), 9), contact(datetime(2026, 1, 10, 23, 30, tzinfo=UTC)))
    assert schedule.schedule.state.last_contact_on == date(2026, 1, 11)
    assert schedule.schedule.state.cadence_from == date(2026, 1, 12)


@pytest.mark.parametrize("mode", list(ContactMode), ids=str)
def test_every_mode_of_contact_meets_the_interval(mode: ContactMode) -> None:
    schedule = Schedule().started(OPENED)
    recorded(schedule, stockholm(date(2026, 1, 8), 15), contact(stockholm(date(2026, 1, 8), 14), mode))
    assert until(schedule, date(2026, 1, 13)) == []


def test_a_contact_recorded_after_the_grace_comes_too_late_for_its_interval() -> None:
    schedule = Schedule().started(OPENED)
    [report] = until(schedule, date(2026, 1, 14))
    assert report.period_end == date(2026, 1, 11)
    # Recorded on Wednesday for Saturday: the interval was judged already (and reported).
    assert (
        missed(recorded(schedule, stockholm(date(2026, 1, 14), 9), contact(stockholm(date(2026, 1, 10), 21))))
        == []
    )
    assert schedule.schedule.state.cadence_from == date(2026, 1, 12)


def test_a_contact_after_an_interval_recorded_before_its_judgement_counts_for_the_next() -> None:
    schedule = Schedule().started(OPENED)
    recorded(schedule, stockholm(date(2026, 1, 12), 16), contact(stockholm(date(2026, 1, 12), 14)))

    [report] = until(schedule, date(2026, 1, 13))  # 5–11 January had none: reported
    assert (report.period_start, report.period_end) == (date(2026, 1, 5), date(2026, 1, 11))
    # Monday's contact met the interval from 12 January: the next starts on the 13th.
    assert schedule.schedule.state.cadence_from == date(2026, 1, 13)


# ---------------------------------------------------------------------- per contact period
@pytest.mark.parametrize("period", list(ContactPeriod), ids=str)
def test_each_period_has_the_interval_of_the_source_document(period: ContactPeriod) -> None:
    schedule = Schedule().started(OPENED)
    set_on = date(2026, 1, 7)
    recorded(schedule, stockholm(set_on, 10), period_set(period, set_on))
    days = CONTACT_PERIOD_DAYS[period]
    end = set_on + timedelta(days=days - 1)
    judged = WORKING_DAYS.add_working_days(end, 1) + timedelta(days=1)

    assert until(schedule, judged - timedelta(days=1)) == []
    [report] = until(schedule, judged)

    assert (report.period, report.period_set, report.period_days) == (period, True, days)
    assert (report.period_start, report.period_end) == (set_on, end)
    assert [(c.organisation_id, c.user_id) for c in report.coordinators] == [(SOCIAL.id, "sara")]


def test_the_intervals_are_weekly_weekly_fortnightly_and_thirty_days() -> None:
    assert dict(CONTACT_PERIOD_DAYS) == {
        ContactPeriod.ASSESSMENT: 7,  # 1–2 times a week
        ContactPeriod.ORIENTATION: 7,  # weekly
        ContactPeriod.SOCIAL_RECOVERY: 14,  # 1–2 times a fortnight
        ContactPeriod.RE_ORIENTATION: 30,  # monthly
    }


def test_a_period_set_keeps_its_interval_whatever_the_phase() -> None:
    schedule = Schedule().started(OPENED)
    recorded(schedule, stockholm(OPENED, 10), period_set(ContactPeriod.RE_ORIENTATION, OPENED))
    schedule.on(
        date(2026, 1, 8),
        ce.PhaseChanged(
            from_phase=ce.Phase.MAPPING, to_phase=ce.Phase.PLANNING, changed_on=date(2026, 1, 8), reason="x"
        ),
    )
    assert until(schedule, date(2026, 2, 4)) == []  # 5 January – 3 February: thirty days
    [report] = until(schedule, date(2026, 2, 5))
    assert (report.period, report.period_days, report.period_end) == (
        ContactPeriod.RE_ORIENTATION,
        30,
        date(2026, 2, 3),
    )


def test_a_period_set_after_an_interval_ended_leaves_that_interval_to_be_judged_as_it_was() -> None:
    schedule = Schedule().started(OPENED)
    # Monday 12 January, before 5–11 January is judged: the new period starts on the 12th.
    recorded(
        schedule,
        stockholm(date(2026, 1, 12), 10),
        period_set(ContactPeriod.SOCIAL_RECOVERY, date(2026, 1, 12)),
    )
    [report] = until(schedule, date(2026, 1, 13))
    assert (report.period, report.period_set, report.period_end) == (
        ContactPeriod.ASSESSMENT,
        False,
        date(2026, 1, 11),
    )
    assert (schedule.schedule.state.cadence_from, schedule.schedule.state.cadence_until) == (
        date(2026, 1, 12),
        date(2026, 1, 25),
    )


# ---------------------------------------------------------------------- booked meetings count
def book(schedule: Schedule, starts_at: datetime) -> UUID:
    decided = schedule.schedule.book(
        str(uuid4()),
        starts_at=starts_at,
        minutes=60,
        user_id="sara",
        organisation_id=SOCIAL.id,
        location=None,
    )
    assert isinstance(decided.data, me.MeetingScheduled)
    return decided.data.meeting_id


def test_a_meeting_with_the_client_booked_in_the_interval_meets_it() -> None:
    schedule = Schedule().started(OPENED)
    book(schedule, stockholm(date(2026, 1, 8), 10))  # Thursday, never marked held

    assert until(schedule, date(2026, 1, 13)) == []  # no false "missed"
    assert schedule.schedule.state.cadence_from == date(2026, 1, 9)
    [report] = until(schedule, date(2026, 1, 17))  # 9–15 January: judged after Friday the 16th
    assert report.period_start == date(2026, 1, 9)


def test_a_cancelled_meeting_does_not_meet_the_interval() -> None:
    schedule = Schedule().started(OPENED)
    meeting_id = book(schedule, stockholm(date(2026, 1, 8), 10))
    schedule.schedule.cancel(
        str(uuid4()), meeting_id, user_id="sara", organisation_id=SOCIAL.id, reason="Sjuk"
    )

    [report] = until(schedule, date(2026, 1, 13))

    assert (report.period_start, report.period_end, report.last_contact_on) == (
        date(2026, 1, 5),
        date(2026, 1, 11),
        None,
    )


def test_a_meeting_booked_outside_the_interval_does_not_meet_it() -> None:
    schedule = Schedule().started(OPENED)
    book(schedule, stockholm(date(2026, 1, 12), 10))  # the day after the interval
    [report] = until(schedule, date(2026, 1, 13))
    assert report.period_end == date(2026, 1, 11)


def test_neither_a_contact_nor_a_meeting_is_a_missed_interval_reported_once() -> None:
    schedule = Schedule().started(OPENED)
    assert until(schedule, date(2026, 1, 12)) == []
    [report] = until(schedule, date(2026, 1, 13))
    assert (report.period, report.period_set) == (ContactPeriod.ASSESSMENT, False)
    assert until(schedule, date(2026, 1, 13)) == []  # once


# -------------------------------------------------------------------------- replay determinism
def test_a_replay_decides_the_same_reports_as_the_live_run_whenever_the_clock_looked() -> None:
    """The decisions depend on the events' order and times, not on when timers were looked at."""
    events: list[tuple[datetime, CaseEventData]] = [
        (stockholm(date(2026, 1, 12), 8, 30), contact(stockholm(date(2026, 1, 10), 21, 30))),
        (stockholm(date(2026, 1, 20), 9), period_set(ContactPeriod.SOCIAL_RECOVERY, date(2026, 1, 20))),
        (stockholm(date(2026, 2, 9), 9), contact(stockholm(date(2026, 2, 7), 19))),
    ]
    end = stockholm(date(2026, 3, 31), 0)

    def run(look_every: timedelta | None) -> list[tuple[UUID, object]]:
        schedule = Schedule().started(OPENED)
        decided: list[Decided] = []
        clock = stockholm(OPENED, 12)
        for at, data in events:
            while look_every is not None and clock + look_every < at:
                clock += look_every
                decided += schedule.schedule.fire_due(clock)
            decided += schedule.schedule.on_case_event(UUID(int=int(at.timestamp())), at, data)
        decided += schedule.schedule.fire_due(end)
        return [(d.event_id, d.data) for d in decided if isinstance(d.data, me.ContactCadenceMissed)]

    live = run(timedelta(hours=1))
    assert live == run(None) == run(timedelta(days=3))
    assert [r.period_end for _, r in live] == [
        date(2026, 1, 17),  # after Saturday's contact: 11–17 January
        date(2026, 2, 2),  # 18 January … and the social recovery from the 20th: 20 January – 2 February
        date(2026, 2, 21),  # after the 7 February contact: 8–21 February
        date(2026, 3, 7),
        date(2026, 3, 21),
    ]


def test_a_stored_schedule_resumes_the_cadence_as_it_was() -> None:
    schedule = Schedule().started(OPENED)
    recorded(
        schedule,
        stockholm(date(2026, 1, 12), 10),
        period_set(ContactPeriod.SOCIAL_RECOVERY, date(2026, 1, 12)),
    )
    recorded(schedule, stockholm(date(2026, 1, 12), 11), contact(stockholm(date(2026, 1, 12), 9)))
    stored = snapshot(schedule.schedule)
    resumed = restore(stored, Rules(), WORKING_DAYS)
    assert isinstance(resumed, MeetingSchedule)
    assert resumed.state == schedule.schedule.state
    later = stockholm(date(2026, 2, 28), 0)
    assert [d.data for d in resumed.fire_due(later)] == [d.data for d in schedule.schedule.fire_due(later)]


def test_a_schedule_stored_before_the_logbook_follows_the_phase() -> None:
    schedule = Schedule().started(OPENED)
    stored = snapshot(schedule.schedule)
    for key in (
        "cadence_until",
        "cadence_restart",
        "cadence_period",
        "cadence_period_set",
        "contact_period",
        "contact_days",
    ):
        del stored[key]
    resumed = restore(stored, Rules(), WORKING_DAYS)
    [report] = missed(resumed.fire_due(stockholm(date(2026, 1, 13), 0)))
    assert (report.period, report.period_end) == (ContactPeriod.ASSESSMENT, date(2026, 1, 11))
