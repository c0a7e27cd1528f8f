"""Who may still open a plan link, decided on the case overview alone (ADR 0016)."""

from __future__ import annotations

from datetime import timedelta

from services.projections.domain.plan_links import (
    CASE_CLOSED,
    NO_PLAN,
    NOT_COVERED,
    NOT_NAMED,
    decide,
)
from services.shared.plan_links import LinkKind, contact_holder, coordinator_holder, member_holder
from tests.domain import specs
from tests.unit.projections.plan_link_story import (
    ANNA,
    ANNA_MEMBER_KEY,
    ERIK_KEY,
    FRIEND,
    FRIEND_KEY,
    MOTHER,
    MOTHER_KEY,
    NAMED,
    PSYCHIATRIST_KEY,
    plan,
    view_of,
)

PLAN = LinkKind.EARLY_WARNING_PLAN
TODAY = specs.TODAY.isoformat()
OFFICER_KEY = member_holder(specs.EMPLOYMENT_OFFICER)


def test_everyone_the_plan_names_and_every_coordinator_opens_it_as_themselves() -> None:
    view = view_of(*NAMED)
    mother = decide(view, MOTHER_KEY, PLAN, TODAY)
    assert mother.allowed
    assert mother.holder is not None
    assert (mother.holder.name, mother.holder.organisation_id) == ("Birgitta Tolvansson", "")
    friend = decide(view, FRIEND_KEY, PLAN, TODAY)
    assert friend.allowed
    assert friend.holder is not None
    assert friend.holder.name == FRIEND.name
    anna = decide(view, ANNA_MEMBER_KEY, PLAN, TODAY)
    assert anna.allowed
    assert anna.holder is not None
    assert anna.holder.organisation_id == specs.REGION_ORG.id
    erik = decide(view, ERIK_KEY, PLAN, TODAY)  # not named in the plan, but coordinating
    assert erik.allowed
    assert erik.holder is not None
    assert erik.holder.organisation_id == specs.MUNICIPALITY_ORG.id


def test_someone_the_plan_does_not_name_is_refused() -> None:
    view = view_of(*NAMED)
    assert decide(view, PSYCHIATRIST_KEY, PLAN, TODAY).refused == NOT_NAMED  # a member, not in the plan
    stranger = contact_holder("Okänd", "0701111111", None)
    refused = decide(view, stranger, PLAN, TODAY)
    assert (refused.refused, refused.holder) == (NOT_NAMED, None)
    # Erik's user id in another organisation is not Erik.
    assert (
        decide(view, coordinator_holder(specs.REGION_ORG.id, specs.ERIK.user_id), PLAN, TODAY).refused
        == NOT_NAMED
    )


def test_a_new_plan_version_without_someone_revokes_their_link_and_keeps_the_others() -> None:
    view = view_of(*NAMED, plan(FRIEND, ANNA, signs=("Slutar svara i telefon",)))
    assert decide(view, MOTHER_KEY, PLAN, TODAY).refused == NOT_NAMED
    assert decide(view, FRIEND_KEY, PLAN, TODAY).allowed  # named again with the same details


def test_a_contact_whose_details_change_gets_a_new_key_and_the_old_one_stops() -> None:
    moved = FRIEND.model_copy(update={"phone": "070-000 00 00"})
    view = view_of(*NAMED, plan(MOTHER, moved, ANNA))
    assert decide(view, FRIEND_KEY, PLAN, TODAY).refused == NOT_NAMED
    assert decide(view, contact_holder(moved.name, moved.phone, str(moved.email)), PLAN, TODAY).allowed


def test_relatives_and_friends_need_a_consent_that_covers_relatives_professionals_a_grant() -> None:
    view = view_of(*NAMED, specs.withdraw(relatives=True, on=specs.TODAY))
    assert decide(view, MOTHER_KEY, PLAN, TODAY).refused == NOT_COVERED
    assert decide(view, FRIEND_KEY, PLAN, TODAY).refused == NOT_COVERED
    assert decide(view, ANNA_MEMBER_KEY, PLAN, TODAY).allowed
    entire = view_of(*NAMED, specs.withdraw(on=specs.TODAY))
    assert decide(entire, MOTHER_KEY, PLAN, TODAY).refused == NOT_COVERED
    assert decide(entire, ERIK_KEY, PLAN, TODAY).allowed  # a coordinator, while assigned


def test_a_consent_past_its_last_day_covers_no_relative() -> None:
    steps = (*NAMED, specs.consent(valid_until=specs.TODAY))
    view = view_of(*steps)
    assert decide(view, MOTHER_KEY, PLAN, TODAY).allowed
    tomorrow = (specs.TODAY + timedelta(days=1)).isoformat()
    assert decide(view, MOTHER_KEY, PLAN, tomorrow).refused == NOT_COVERED


def test_a_professional_named_in_the_plan_needs_their_organisation_to_hold_a_grant() -> None:
    officer = ANNA.model_copy(update={"name": "Jonas Ek", "member_id": specs.EMPLOYMENT_OFFICER})
    consented = (
        *NAMED,
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG),
        specs.employment_officer(),
        plan(MOTHER, officer),
    )
    assert decide(view_of(*consented), OFFICER_KEY, PLAN, TODAY).allowed
    withdrawn = view_of(*consented, specs.withdraw(specs.OTHER_ORG.id, on=specs.TODAY))
    assert decide(withdrawn, OFFICER_KEY, PLAN, TODAY).refused == NOT_COVERED


def test_an_unassigned_coordinator_loses_their_link() -> None:
    view = view_of(*NAMED, specs.unassign(specs.ERIK.user_id, on=specs.TODAY))
    assert decide(view, ERIK_KEY, PLAN, TODAY).refused == NOT_NAMED


def test_the_whole_sip_opens_for_members_of_the_resource_group_once_decided() -> None:
    assert decide(view_of(*NAMED), PSYCHIATRIST_KEY, LinkKind.SIP, TODAY).refused == NO_PLAN
    view = view_of(*NAMED, specs.decide_sip())
    assert decide(view, PSYCHIATRIST_KEY, LinkKind.SIP, TODAY).allowed
    assert decide(view, MOTHER_KEY, LinkKind.SIP, TODAY).allowed
    assert decide(view, FRIEND_KEY, LinkKind.SIP, TODAY).refused == NOT_NAMED  # not a member
    removed = view_of(*NAMED, specs.decide_sip(), specs.remove_member(specs.PSYCHIATRIST))
    assert decide(removed, PSYCHIATRIST_KEY, LinkKind.SIP, TODAY).refused == NOT_NAMED


def test_a_closed_case_opens_no_link() -> None:
    view = view_of(*NAMED, specs.close())
    assert decide(view, MOTHER_KEY, PLAN, TODAY).refused == CASE_CLOSED


def test_a_coordinator_member_no_longer_assigned_is_judged_by_the_consent_not_by_their_organisation() -> None:
    """The person (organisation, user id) is the coordinator, not their organisation: after a
    handover within the region, Anna's SIP link opens by the consent, as anyone else's."""
    handed_over = (
        *NAMED,
        specs.decide_sip(),
        specs.hand_over(specs.SARA, specs.ANNA, on=specs.TODAY),
        specs.unassign_person(specs.ANNA, on=specs.TODAY),
    )
    # The consent covers the region: her link opens as anyone's of it.
    assert decide(view_of(*handed_over), ANNA_MEMBER_KEY, LinkKind.SIP, TODAY).allowed
    withdrawn = view_of(*handed_over, specs.withdraw(on=specs.TODAY))
    assert decide(withdrawn, ANNA_MEMBER_KEY, LinkKind.SIP, TODAY).refused == NOT_COVERED
    # Still assigned, a coordinator's link opens whatever the consent says.
    assigned = view_of(*NAMED, specs.decide_sip(), specs.withdraw(on=specs.TODAY))
    assert decide(assigned, ANNA_MEMBER_KEY, LinkKind.SIP, TODAY).allowed
