"""The projections' pure parts: the case view, who it grants access to, the journal's lines
and the follow-up statistics."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from services.projections.domain import access, case_view, journal
from services.projections.domain.statistics import MIN_COUNT, CaseFacts, Period, group_figures, statistics_by
from tests.domain import specs
from tests.unit.stories import Stream, story
from vss_contracts import case_events as ev
from vss_contracts.registry import upcast
from vss_contracts.types import Coordinator, MemberKind, Participant, Worksheet


def view_of(*steps: specs.Step) -> dict[str, Any]:
    records = Stream().records(story(*steps))
    view, _ = case_view.start(records[0])
    for record in records[1:]:
        case_view.apply(view, record)
    return view


def test_the_view_follows_the_case_through_its_phases_and_its_sip() -> None:
    view = view_of(*specs.WORKING)
    assert (view["status"], view["phase"], view["version"]) == ("active", "working", 16)
    assert view["sip"]["version"] == 1
    assert view["next_follow_up_on"] == specs.FOLLOW_UP_ON.isoformat()
    responsible = {a["action_id"]: a["responsible"]["organisation_id"] for a in view["sip"]["actions"]}
    assert responsible == {
        str(specs.ACTION_1): specs.REGION_ORG.id,
        str(specs.ACTION_2): specs.MUNICIPALITY_ORG.id,
    }
    done = {s["step"] for s in view["checklist"] if s["done"]}
    assert done == {"interview", "network_map", "mapping_summary"}


def test_the_overview_holds_the_whole_early_warning_plan_not_only_its_signs() -> None:
    """Everyone who must act in a crisis reads what to do: the client's actions, the others'
    actions and whom to call, beside the signs."""
    plan = view_of(*specs.WORKING, specs.early_warning_plan())["early_warning_plan"]
    assert [s["sign_id"] for s in plan["signs"]] == ["somnproblem", "isolering"]
    assert plan["client_actions"] == ["Ringa Anna", "Ta vid behovs-medicin enligt ordination"]
    assert plan["others_actions"] == [{"who": "Mamma", "what": "Ringa samordnaren om Tolvan inte svarar"}]
    assert [(c["name"], c["relation"], c["phone"]) for c in plan["contacts"]] == [
        ("Anna Lindqvist", "samordnare", "010-441 20 00")
    ]


def test_an_outside_partys_action_shows_its_organisation_as_the_responsible() -> None:
    outside = specs.cmd.ProposedAction(
        action_id=specs.ACTION_2,
        what="Kartlägga vägar till arbete",
        responsible_party=ev.OutsideParty(organisation=specs.OTHER_ORG, contact_name="Arbetsförmedlare"),
        due_on=specs.TODAY,
        how="Möte på Arbetsförmedlingen",
    )
    steps = specs.planned_with(specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG))
    view = view_of(*steps, specs.decide_sip(actions=[specs.sip_action(), outside]))
    sip = view["sip"]
    assert sip["overall_responsibility"]["id"] == specs.MUNICIPALITY_ORG.id
    assert sip["initial"] is False
    assert sip["actions"][1]["responsible"] == {
        "member_id": None,
        "name": "Arbetsförmedlare",
        "organisation_id": specs.OTHER_ORG.id,
        "outside_party": True,
    }
    assert sip["actions"][0]["responsible"]["outside_party"] is False


def test_a_view_starts_only_with_the_cases_opening() -> None:
    records = Stream().records(story(*specs.COORDINATED))
    with pytest.raises(case_view.NotAFirstEvent):
        case_view.start(records[1])


def test_the_grants_are_the_coordinators_organisations_and_what_the_consent_in_force_covers() -> None:
    coordinated = view_of(*specs.COORDINATED)
    assert access.grants(coordinated) == sorted(
        [(specs.REGION_ORG.id, None), (specs.MUNICIPALITY_ORG.id, None)]
    )
    covered = view_of(
        *specs.COORDINATED, specs.consent(specs.REGION_ORG, specs.OTHER_ORG, valid_until=date(2025, 12, 31))
    )
    assert dict(access.grants(covered))[specs.OTHER_ORG.id] == "2025-12-31"
    assert dict(access.grants(covered))[specs.REGION_ORG.id] is None  # coordinating: open-ended
    withdrawn = view_of(*specs.COORDINATED, specs.consent(specs.OTHER_ORG), specs.withdraw())
    assert specs.OTHER_ORG.id not in dict(access.grants(withdrawn))


def test_the_opener_is_granted_the_case_until_a_consent_is_given() -> None:
    opener = specs.REGION_ORG.id  # the story's actor opens the case
    assert access.grants(view_of()) == [(opener, None)]  # at once, open-ended
    not_naming_it = view_of(specs.consent(specs.OTHER_ORG, valid_until=date(2025, 12, 31)))
    assert access.grants(not_naming_it) == [(specs.OTHER_ORG.id, "2025-12-31")]
    withdrawn = view_of(specs.consent(specs.REGION_ORG), specs.withdraw())
    assert access.grants(withdrawn) == []


def test_what_is_overdue_is_decided_when_the_view_is_read() -> None:
    view = view_of(*specs.WORKING, specs.complete_action(specs.ACTION_2))
    before = case_view.mark_overdue(view, specs.TODAY.isoformat())
    assert not before["follow_up_overdue"]
    assert not any(a["overdue"] for a in before["sip"]["actions"])
    after = case_view.mark_overdue(view, "2025-06-03")
    assert after["follow_up_overdue"]
    assert {a["action_id"]: a["overdue"] for a in after["sip"]["actions"]} == {
        str(specs.ACTION_1): True,
        str(specs.ACTION_2): False,  # done
    }
    assert [a["action_id"] for a in case_view.overdue_actions(view, "2025-06-03")] == [str(specs.ACTION_1)]
    closed = view_of(*specs.WORKING, specs.close())
    assert case_view.overdue_actions(closed, "2025-06-03") == []


def test_each_event_has_a_line_for_people_that_names_no_health_details() -> None:
    records = Stream().records(story(*specs.WORKING, specs.withdraw(specs.MUNICIPALITY_ORG.id, entire=False)))
    lines = [journal.summary(r) for r in records]
    assert lines[0] == "Case opened on 2025-01-13 by Psykiatri Nordost, Västra Götalandsregionen in Göteborg"
    assert (
        "SIP version 1 decided on 2025-03-03: 2 actions, overall responsibility"
        f" {specs.MUNICIPALITY_ORG.name}, next follow-up 2025-06-02"
    ) in lines
    assert lines[-1] == f"Consent withdrawn on 2025-02-24 for {specs.MUNICIPALITY_ORG.id}"
    assert not any("Läkemedelsgenomgång" in line for line in lines)  # an action's content stays out
    row = journal.journal_row(records[0], verified=True)
    assert row[:2] == (str(specs.CASE_ID), 1)
    assert row[-1] == 1


def test_a_sip_recorded_as_v1_reads_in_the_journal_as_it_always_did() -> None:
    v1 = {
        "sip_version": 1,
        "decided_on": "2025-03-03",
        "goal_ids": ["a9b3e0f2-5c61-4d8e-b1a7-2f9c4e6d0001"],
        "actions": [{"action_id": "c4e8d2a1-7f3b-4c9e-8d6a-5b1e3f7a0001", "what": "Läkemedelsgenomgång"}],
        "next_follow_up_on": "2025-06-02",
        "participants": [],
        "client_agreed": True,
    }
    _, data = upcast(ev.SipDecidedV1.TYPE, v1)
    assert journal.SUMMARIES.handler(ev.SipDecided.TYPE)(data) == (
        "SIP version 1 decided on 2025-03-03: 1 actions, next follow-up 2025-06-02"
    )
    outside = {**data, "initial": True, "actions": [*data["actions"], {"responsible_party": {"x": 1}}]}
    assert journal.SUMMARIES.handler(ev.SipDecided.TYPE)(outside).startswith(
        "Initial SIP version 1 decided on 2025-03-03: 2 actions (1 by parties outside the group)"
    )


def facts(opened: str, consent: str | None, *sips: str, closed: str | None = None) -> CaseFacts:
    return CaseFacts(
        municipality_code="1480",
        region_code="14",
        opened_on=date.fromisoformat(opened),
        closed_on=date.fromisoformat(closed) if closed else None,
        first_consent_on=date.fromisoformat(consent) if consent else None,
        sip_dates=tuple(date.fromisoformat(s) for s in sips),
        warning_dates=(),
        rating_count=0,
        first_rating_total=None,
        latest_rating_total=None,
    )


SPRING = Period(date(2025, 1, 1), date(2025, 6, 1))


def test_counts_under_five_are_suppressed_and_so_is_a_median_of_fewer_cases() -> None:
    few = [facts("2025-01-10", "2025-01-20", "2025-02-20") for _ in range(MIN_COUNT - 1)]
    figures = group_figures(few, SPRING, date(2025, 6, 30))
    assert figures["months"][0] == {"month": "2025-01", "active": None, "opened": None, "closed": 0}
    assert figures["consent_to_first_sip"] == {
        "cases": None,
        "median_days": None,
        "lower_quartile_days": None,
        "upper_quartile_days": None,
    }
    enough = [*few, facts("2025-01-12", "2025-01-20", "2025-03-02")]
    figures = group_figures(enough, SPRING, date(2025, 6, 30))
    assert figures["months"][0]["opened"] == MIN_COUNT
    assert figures["consent_to_first_sip"] == {
        "cases": 5,
        "median_days": 31,
        "lower_quartile_days": 31.0,
        "upper_quartile_days": 31.0,
    }


def test_a_follow_up_is_in_time_when_the_next_sip_comes_within_three_months() -> None:
    in_time = [facts("2025-01-02", "2025-01-05", "2025-01-10", "2025-04-01") for _ in range(5)]
    late = [facts("2025-01-02", "2025-01-05", "2025-01-10", "2025-04-20") for _ in range(5)]
    figures = group_figures(in_time + late, SPRING, date(2025, 6, 30))
    assert figures["follow_ups"]["due"] == 10  # the first SIPs' deadlines (10 April) fall in the period
    assert figures["follow_ups"]["within_three_months"] == 5
    assert figures["follow_ups"]["share_within_three_months"] == 0.5


def test_statistics_are_grouped_by_the_level_asked_for() -> None:
    cases = [facts("2025-01-10", None) for _ in range(5)]
    cases.append(CaseFacts("1490", "14", date(2025, 1, 10), None, None, (), (), 0, None, None))
    by_municipality = statistics_by(cases, "municipality", SPRING, date(2025, 6, 30), lambda _: None)
    assert [(g["key"], g["months"][0]["active"]) for g in by_municipality] == [("1480", 5), ("1490", None)]
    by_region = statistics_by(cases, "region", SPRING, date(2025, 6, 30), lambda _: None)
    assert [(g["key"], g["months"][0]["active"]) for g in by_region] == [("14", 6)]


def test_the_views_facts_are_what_the_statistics_read() -> None:
    view = view_of(*specs.WORKING)
    derived = CaseFacts.from_json(view["facts"])
    assert derived.first_consent_on == specs.CONSENT_ON
    assert derived.sip_dates == (specs.SIP_ON,)
    assert derived.opened_on == specs.OPENED_ON


# ------------------------------------------------------------ deviations from the method
AWAY = "Erik sjuk; Tolvan ville inte skjuta upp mötet."


def without_erik(reason: str = AWAY) -> specs.Step:
    return specs.meeting(specs.P_ANNA, specs.P_CLIENT, specs.P_PSYCHIATRIST, reason=reason)


def test_the_overview_keeps_each_deviation_with_its_rule_reason_and_figures() -> None:
    assert view_of(*specs.WORKING)["deviations"] == []
    view = view_of(
        *specs.WORKING,
        without_erik(),
        specs.decide_sip(on=specs.TODAY, follow_up=date(2025, 7, 1), reason="Semestrar i juni"),
    )
    assert view["deviations"] == [
        {
            "rule": "meeting_requires_coordinators",
            "reason": AWAY,
            "deviated_on": "2025-03-14",
            "deviates": ev.ResourceGroupMeetingHeld.TYPE,
            "absent_coordinators": [
                {"organisation_id": specs.ERIK.organisation.id, "user_id": specs.ERIK.user_id}
            ],
            "follow_up_due_by": None,
        },
        {
            "rule": "sip_follow_up_invalid",
            "reason": "Semestrar i juni",
            "deviated_on": "2025-03-14",
            "deviates": ev.SipDecided.TYPE,
            "absent_coordinators": [],
            "follow_up_due_by": "2025-06-14",
        },
    ]
    assert view["meetings"]["count"] == 1  # the deviating fact itself is applied as ever
    assert view["sip"]["next_follow_up_on"] == "2025-07-01"


def test_a_view_stored_before_deviations_were_kept_takes_them_and_serves_them() -> None:
    records = Stream().records(story(*specs.WORKING, without_erik()))
    view, _ = case_view.start(records[0])
    for record in records[1:-2]:
        case_view.apply(view, record)
    del view["deviations"], view["facts"]["deviations"]  # as stored before
    assert case_view.mark_overdue(view, "2025-03-14")["deviations"] == []
    for record in records[-2:]:
        case_view.apply(view, record)
    assert [d["rule"] for d in view["deviations"]] == ["meeting_requires_coordinators"]
    assert CaseFacts.from_json(view["facts"]).deviations == (("meeting_requires_coordinators", specs.TODAY),)


def test_the_journal_names_the_deviation_and_its_figures_but_not_the_reasons_words() -> None:
    records = Stream().records(
        story(
            *specs.WORKING,
            without_erik(),
            specs.decide_sip(on=specs.TODAY, follow_up=date(2025, 7, 1), reason="Semestrar i juni"),
        )
    )
    lines = [journal.summary(r) for r in records]
    assert (
        "Deviation from the method on 2025-03-14: meeting requires coordinators"
        f" (ResourceGroupMeetingHeld, absent: {specs.ERIK.user_id} ({specs.ERIK.organisation.id})),"
        " reason given"
    ) in lines
    assert (
        "Deviation from the method on 2025-03-14: sip follow up invalid"
        " (SipDecided, follow-up due by 2025-06-14), reason given"
    ) in lines
    assert lines.index(next(line for line in lines if "meeting requires" in line)) + 1 == next(
        i for i, line in enumerate(lines) if line.startswith("Resource group meeting held on 2025-03-14")
    )
    assert not any(AWAY in line or "Semestrar" in line for line in lines)


def deviating(rules: tuple[str, ...], on: str = "2025-02-10") -> CaseFacts:
    deviations = tuple((rule, date.fromisoformat(on)) for rule in rules)
    return replace(facts("2025-01-10", "2025-01-20"), deviations=deviations)


def test_statistics_count_deviations_per_rule_and_suppress_what_few_cases_make_up() -> None:
    as_of = date(2025, 6, 30)
    five = [deviating(("meeting_requires_coordinators",)) for _ in range(MIN_COUNT)]
    one_case_many = deviating(("coordinators_must_attend",) * 7)
    before = deviating(("early_warning_requires_plan",), on="2024-12-30")  # outside the period
    figures = group_figures([*five, one_case_many, before], SPRING, as_of)["deviations"]
    assert figures["count"] == 12  # from six cases
    assert figures["by_rule"]["meeting_requires_coordinators"] == 5
    assert figures["by_rule"]["coordinators_must_attend"] is None  # seven, but of one case
    assert figures["by_rule"]["early_warning_requires_plan"] == 0
    assert set(figures["by_rule"]) == {
        "coordinators_must_attend",
        "early_warning_requires_plan",
        "mapping_not_summarised",
        "meeting_requires_coordinators",
        "sip_follow_up_invalid",
        "sip_requires_mapping_summary",
    }
    few = group_figures(five[:-1], SPRING, as_of)["deviations"]
    assert few["count"] is None
    assert few["by_rule"]["meeting_requires_coordinators"] is None


def test_facts_stored_before_deviations_were_kept_read_as_none() -> None:
    stored = view_of(*specs.WORKING)["facts"]
    del stored["deviations"]
    assert CaseFacts.from_json(stored).deviations == ()


# --------------------------------------------------------------- method fidelity and trends
def test_the_facts_keep_the_joint_steps_and_who_of_the_coordinators_took_part() -> None:
    view = view_of(
        *specs.WORKING,
        without_erik(),
        specs.worksheet(Worksheet.EVERYDAY_FUNCTIONING),
        specs.worksheet(Worksheet.CHANGE_RATING),
    )
    derived = CaseFacts.from_json(view["facts"])
    assert derived.joint_steps == (
        ("interview", specs.WORKSHEET_ON, True),
        ("network_map", specs.WORKSHEET_ON, True),
        ("mapping_summary", specs.SUMMARISED_ON, True),
        ("resource_group_meeting", specs.TODAY, False),  # Erik was ill
    )
    assert derived.first_mapping_summary_on == specs.SUMMARISED_ON
    assert derived.meeting_dates == (specs.TODAY,)
    assert derived.everyday_functioning_dates == (specs.WORKSHEET_ON,)
    assert derived.ratings == ((specs.WORKSHEET_ON, 3 + 5 + 2 + 4),)
    assert derived.age_group == "adult"  # born 1912
    # The age group is kept; the number it comes from is not.
    assert "121212" not in repr(view["facts"])


def test_the_age_group_is_the_age_on_the_day_the_case_was_opened() -> None:
    assert case_view.age_group("200703150000", "2025-03-14") == "child"  # 18 tomorrow
    assert case_view.age_group("200703150000", "2025-03-15") == "adult"
    assert case_view.age_group("20070375-0000", "2025-03-14") == "child"  # samordningsnummer: day + 60
    assert case_view.age_group("200703750000", "2025-03-15") == "adult"
    assert case_view.age_group("20080229-0000", "2026-02-28") == "child"  # the 29th comes on 1 March


def test_facts_stored_before_the_fidelity_facts_were_kept_read_as_none() -> None:
    stored = view_of(*specs.WORKING)["facts"]
    for key in ("age_group", "joint_steps", "first_mapping_summary_on", "meeting_dates", "ratings"):
        del stored[key]
    derived = CaseFacts.from_json(stored)
    assert (derived.age_group, derived.joint_steps, derived.ratings) == ("unknown", (), ())


# ------------------------------------------------------------------ handover (ADR 0021)
def test_the_overview_shows_a_handover_until_the_outgoing_coordinator_leaves() -> None:
    during = view_of(*specs.WORKING, specs.hand_over(specs.SARA, specs.ANNA))
    assert [c["user_id"] for c in during["coordinators"]] == [
        specs.ANNA.user_id,
        specs.ERIK.user_id,
        specs.SARA.user_id,
    ]
    assert during["handover"] == {
        "outgoing": {"organisation_id": specs.REGION_ORG.id, "user_id": specs.ANNA.user_id},
        "incoming": {"organisation_id": specs.REGION_ORG.id, "user_id": specs.SARA.user_id},
        "started_on": specs.ASSIGNED_ON.isoformat(),
    }
    handed_over = (specs.hand_over(specs.SARA, specs.ANNA), specs.unassign(specs.ANNA.user_id))
    after = view_of(*specs.WORKING, *handed_over)
    assert after["handover"] is None
    assert [c["user_id"] for c in after["coordinators"]] == [specs.ERIK.user_id, specs.SARA.user_id]
    stored = view_of(*specs.WORKING)
    del stored["handover"]  # as stored before handovers were kept
    assert case_view.mark_overdue(stored, "2025-03-14")["handover"] is None


def test_the_journal_says_whom_the_incoming_coordinator_takes_over_from() -> None:
    records = Stream().records(story(*specs.WORKING, specs.hand_over(specs.SARA, specs.ANNA)))
    assert journal.summary(records[-1]) == (
        f"Coordinator Sara Holm ({specs.REGION_ORG.name}) assigned on {specs.ASSIGNED_ON},"
        f" taking over from {specs.ANNA.user_id}"
    )


# ------------------------------------------------- a coordinator is a person (ADR 0023)
def test_unassigning_one_of_two_coordinators_sharing_a_user_id_leaves_the_other_in_the_overview() -> None:
    both = view_of(*specs.TWO_ANNAS)
    assert [(c["organisation"]["id"], c["user_id"]) for c in both["coordinators"]] == [
        (specs.REGION_ORG.id, specs.ANNA.user_id),
        (specs.MUNICIPALITY_ORG.id, specs.ANNA.user_id),
    ]

    after = view_of(*specs.TWO_ANNAS, specs.unassign_person(specs.ANNA_OF_MUNICIPALITY))

    assert [(c["organisation"]["id"], c["name"]) for c in after["coordinators"]] == [
        (specs.REGION_ORG.id, specs.ANNA.name)
    ]


def _person(coordinator: Coordinator) -> Participant:
    return Participant(
        kind=MemberKind.COORDINATOR,
        name=coordinator.name,
        organisation_id=coordinator.organisation.id,
        user_id=coordinator.user_id,
    )


def test_a_joint_step_with_both_coordinators_sharing_a_user_id_counts_each_person() -> None:
    both = specs.worksheet(
        Worksheet.INTERVIEW, _person(specs.ANNA), _person(specs.ANNA_OF_MUNICIPALITY), specs.P_CLIENT
    )
    one = specs.worksheet(Worksheet.INTERVIEW, _person(specs.ANNA), specs.P_CLIENT, reason="Anna B. sjuk")
    view = view_of(*specs.TWO_ANNAS, specs.consent(), both, one)
    # the namesake of the region alone is not every coordinator: the municipality's was absent
    assert [everyone for _, _, everyone in view["facts"]["joint_steps"]] == [True, False]


def test_an_upcast_joint_step_names_every_coordinator_with_the_user_id() -> None:
    view = view_of(*specs.COORDINATED, specs.consent())
    v1 = {
        "worksheet": Worksheet.INTERVIEW.value,
        "completed_on": "2025-02-01",
        "participants": [
            {"kind": "coordinator", "name": p.name, "user_id": p.user_id, "member_id": None}
            for p in (specs.P_ANNA, specs.P_ERIK)
        ],
        "summary": "Intervju.",
    }
    current, payload = upcast(ev.WorksheetCompletedV1.TYPE, v1)
    handler = case_view.HANDLERS.handler(current)
    assert handler is not None
    handler(view, payload)
    assert view["facts"]["joint_steps"][-1] == [Worksheet.INTERVIEW.value, "2025-02-01", True]


def test_the_journal_names_the_organisation_of_the_coordinator_unassigned() -> None:
    records = Stream().records(story(*specs.TWO_ANNAS, specs.unassign_person(specs.ANNA_OF_MUNICIPALITY)))
    assert journal.summary(records[-1]) == (
        f"Coordinator {specs.ANNA.user_id} of {specs.MUNICIPALITY_ORG.id} unassigned on {specs.ASSIGNED_ON}"
    )


def test_an_upcast_v1_unassignment_leaves_the_overview_the_coordinator_with_that_user_id() -> None:
    view = view_of(*specs.COORDINATED)
    current, payload = upcast(
        ev.CoordinatorUnassignedV1.TYPE, {"user_id": specs.ERIK.user_id, "unassigned_on": "2025-03-01"}
    )
    handler = case_view.HANDLERS.handler(current)
    assert handler is not None
    handler(view, payload)
    assert [c["user_id"] for c in view["coordinators"]] == [specs.ANNA.user_id]


def test_an_upcast_v1_deviation_names_its_absent_coordinator_by_user_id_and_no_organisation() -> None:
    [record] = [
        r
        for r in Stream().records(story(*specs.WORKING, without_erik()))
        if r.type == ev.MethodDeviationRecorded.TYPE
    ]
    current, payload = upcast(
        ev.MethodDeviationRecordedV1.TYPE, {**record.data, "absent_coordinators": [specs.ERIK.user_id]}
    )
    assert current == ev.MethodDeviationRecorded.TYPE
    line = journal.summary(record._replace(data=payload))
    assert f"absent: {specs.ERIK.user_id})" in line  # no organisation guessed
    view = view_of(*specs.COORDINATED)
    case_view.HANDLERS.handler(current)(view, payload)  # type: ignore[misc]
    assert view["deviations"][-1]["absent_coordinators"] == [
        {"organisation_id": None, "user_id": specs.ERIK.user_id}
    ]
