"""The Case aggregate's central decisions, given events / when a command / then events or a rule.

The full catalogue of rules is specified in ``tests/domain``; these are the decisions the
other services build on: consent governs who takes part, the first SIP sets the rhythm.
"""

from __future__ import annotations

from datetime import date

from services.case.domain import commands as cmd
from services.case.domain import errors
from tests.domain import specs
from vss_contracts import case_events as ev
from vss_contracts.types import Phase, Worksheet


def test_the_first_sip_moves_the_case_to_working_and_renews_the_consent_in_the_same_command() -> None:
    outcome = specs.when(specs.given(*specs.PLANNED), specs.decide_sip())
    sip, renewed, phase = specs.then_events(outcome, ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged)
    assert sip.sip_version == 1
    assert renewed.sip_version == 1
    assert specs.phase_change(phase) == (Phase.PLANNING, Phase.WORKING)


def test_a_sip_needs_the_mapping_summarised_first() -> None:
    outcome = specs.when(specs.given(*specs.CONSENTED), specs.decide_sip())
    specs.then_error(outcome, errors.SipRequiresMappingSummary, "sip_requires_mapping_summary")


def test_the_next_follow_up_is_at_most_the_policys_months_after_the_sip() -> None:
    case = specs.given(*specs.PLANNED)
    too_late = specs.when(case, specs.decide_sip(follow_up=date(2025, 6, 4)))
    specs.then_error(too_late, errors.SipFollowUpInvalid, "sip_follow_up_invalid")
    stricter = specs.context(policy=cmd.CasePolicy(follow_up_max_months=2))
    refused = specs.when(case, specs.decide_sip(follow_up=date(2025, 5, 4)), ctx=stricter)
    specs.then_error(refused, errors.SipFollowUpInvalid, "sip_follow_up_invalid")


def test_a_member_of_an_organisation_the_consent_does_not_cover_cannot_join() -> None:
    case = specs.given(*specs.CONSENTED)
    outcome = specs.when(case, specs.employment_officer())
    specs.then_error(outcome, errors.ConsentDoesNotCoverOrganisation, "consent_does_not_cover_organisation")


def test_a_consent_withdrawn_for_one_organisation_keeps_the_others_covered() -> None:
    case = specs.given(
        *specs.COORDINATED, specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG)
    )
    [withdrawn] = specs.then_events(specs.when(case, specs.withdraw(specs.OTHER_ORG.id)), ev.ConsentWithdrawn)
    assert withdrawn.organisation_ids == [specs.OTHER_ORG.id]
    assert not withdrawn.entire
    specs.then_events(specs.when(case, specs.psychiatrist()), ev.ResourceGroupMemberAdded)
    refused = specs.when(case, specs.employment_officer())
    specs.then_error(refused, errors.ConsentDoesNotCoverOrganisation, "consent_does_not_cover_organisation")


def test_without_a_consent_in_force_the_mapping_cannot_start() -> None:
    outcome = specs.when(specs.given(*specs.COORDINATED), specs.worksheet(Worksheet.INTERVIEW))
    specs.then_error(outcome, errors.ConsentRequired, "consent_required")


def test_a_closed_case_takes_no_more_facts_but_the_consent_can_be_withdrawn() -> None:
    case = specs.given(*specs.WORKING, specs.close())
    specs.then_error(specs.when(case, specs.worksheet(Worksheet.INTERVIEW)), errors.CaseClosed, "case_closed")
    specs.then_events(specs.when(case, specs.withdraw()), ev.ConsentWithdrawn)
