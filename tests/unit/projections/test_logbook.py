"""The contact logbook (*Loggboken*, ADR 0019) in the case overview and the journal."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from services.case.domain import commands as cmd
from services.projections.domain import case_view, journal
from services.projections.presentation import MyPlanLinks, render_my_plan_page
from tests.domain import specs
from tests.unit.stories import Stream, story
from vss_contracts.case_events import ContactOther
from vss_contracts.types import ContactMode, ContactPeriod

from .test_read_model_rules import view_of

ERIK = cmd.StaffRef(organisation_id=specs.MUNICIPALITY_ORG.id, user_id=specs.ERIK.user_id)


def test_the_overview_shows_each_contact_with_mode_when_who_duration_and_note() -> None:
    view = view_of(
        *specs.COORDINATED,
        specs.record_contact(staff=[ERIK], others=[ContactOther(role="mamma", name="Eva")]),
    )

    [contact] = view["logbook"]["contacts"]

    assert contact["mode"] == "outreach"
    assert contact["occurred_at"] == "2025-03-08T21:30:00+01:00"
    assert contact["on"] == "2025-03-08"  # Saturday, in Stockholm
    assert contact["duration_minutes"] == 45
    assert [(p["organisation"]["id"], p["user_id"], p["name"]) for p in contact["staff"]] == [
        (specs.MUNICIPALITY_ORG.id, specs.ERIK.user_id, specs.ERIK.name)
    ]
    assert contact["others"] == [{"role": "mamma", "name": "Eva"}]
    assert contact["note"].startswith("Träffade Tolvan")
    assert view["logbook"]["last_contact_on"] == "2025-03-08"


def test_contacts_are_listed_by_when_they_happened_not_when_recorded() -> None:
    view = view_of(
        *specs.COORDINATED,
        specs.record_contact(at=datetime(2025, 3, 10, 9, 0, tzinfo=UTC), mode=ContactMode.PHONE),
        specs.record_contact(),  # Saturday 8 March, written up later
    )
    assert [c["on"] for c in view["logbook"]["contacts"]] == ["2025-03-08", "2025-03-10"]
    assert view["logbook"]["last_contact_on"] == "2025-03-10"


def test_before_a_period_is_set_it_follows_the_phase_and_the_next_contact_is_due_a_week_on() -> None:
    view = view_of(*specs.COORDINATED, specs.record_contact())

    served = case_view.mark_overdue(view, "2025-03-14")["logbook"]

    assert served["period"] == {
        "period": "assessment",  # the mapping phase's period
        "set": False,
        "since": "2025-01-13",
        "set_by": None,
        "reason": None,
        "interval_days": 7,
    }
    assert served["next_contact_due_by"] == "2025-03-15"  # Sunday 9 – Saturday 15 March
    assert served["contact_due_passed"] is False
    assert case_view.mark_overdue(view, "2025-03-16")["logbook"]["contact_due_passed"] is True


def test_a_period_set_by_the_coordinators_is_shown_with_who_set_it_and_its_interval() -> None:
    view = view_of(
        *specs.COORDINATED,
        specs.record_contact(),
        specs.set_contact_period(ContactPeriod.SOCIAL_RECOVERY, on=specs.TODAY),
    )

    served = case_view.mark_overdue(view, "2025-03-14")["logbook"]

    period = served["period"]
    assert (period["period"], period["set"], period["since"], period["interval_days"]) == (
        "social_recovery",
        True,
        "2025-03-14",
        14,
    )
    assert (period["set_by"]["user_id"], period["set_by"]["name"]) == (specs.ANNA.user_id, specs.ANNA.name)
    # The period started after the last contact: the interval runs from its first day.
    assert served["next_contact_due_by"] == "2025-03-27"


def test_a_meeting_with_the_client_counts_as_the_last_contact_too() -> None:
    view = view_of(*specs.MAPPED)  # the interview, the network map and the summary, with the client
    assert view["logbook"]["last_contact_on"] == specs.SUMMARISED_ON.isoformat()
    assert view["logbook"]["contacts"] == []


def test_a_closed_case_has_no_contact_due() -> None:
    view = view_of(*specs.COORDINATED, specs.record_contact(), specs.close())
    assert case_view.mark_overdue(view, "2025-04-01")["logbook"]["next_contact_due_by"] is None


def test_a_view_stored_before_the_logbook_takes_it_and_serves_it() -> None:
    records = Stream().records(story(*specs.COORDINATED, specs.record_contact()))
    view, _ = case_view.start(records[0])
    for record in records[1:-1]:
        case_view.apply(view, record)
    del view["logbook"]  # as stored before
    assert case_view.mark_overdue(view, "2025-03-14")["logbook"]["contacts"] == []
    case_view.apply(view, records[-1])
    assert [c["on"] for c in view["logbook"]["contacts"]] == ["2025-03-08"]


def test_the_journal_has_a_line_per_contact_and_period_without_the_notes_words() -> None:
    records: list[Any] = Stream().records(
        story(
            *specs.COORDINATED,
            specs.record_contact(staff=[ERIK]),
            specs.set_contact_period(ContactPeriod.ORIENTATION, on=specs.TODAY),
        )
    )
    contact, period = (journal.summary(r) for r in records[-2:])
    assert contact == (
        "Contact with the client (outreach) at 2025-03-08T21:30:00+01:00, 45 min, with Erik Johansson"
    )
    assert period == "Contact period set to orientation from 2025-03-14 by Anna Lindqvist"
    assert "Träffade" not in contact  # the note is free text: the overview shows it


def test_the_clients_page_lists_their_latest_contacts_briefly() -> None:
    view = view_of(
        *specs.COORDINATED,
        specs.record_contact(),
        specs.record_contact(at=datetime(2025, 3, 12, 13, 0, tzinfo=UTC), mode=ContactMode.VIDEO, minutes=30),
        specs.set_contact_period(ContactPeriod.ORIENTATION, on=specs.TODAY),
    )
    links = MyPlanLinks("/sip.pdf", "/plan.pdf", "/aterkalla")

    html = render_my_plan_page(case_view.mark_overdue(view, "2025-03-14"), [], [], links=links)

    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "Dina kontakter med samordnaren Ni är i orienteringsfasen." in text
    newest, older = (
        "12 mars 2025 kl. 14.00: Videosamtal, 30 minuter, med Anna Lindqvist",
        "8 mars 2025 kl. 21.30: Uppsökande, 45 minuter, med Anna Lindqvist",
    )
    assert text.index(newest) < text.index(older)
    assert "Träffade Tolvan" not in text  # brief: the notes are in the overview
