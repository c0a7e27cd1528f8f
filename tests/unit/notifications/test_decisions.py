"""Who is told what: the notifications' domain decisions and the audience's consent rule.

Pure functions over an :class:`Audience`: case and meeting events in, notices out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

from services.notifications.domain.audience import (
    CASE_CLOSED,
    MEMBER_LEFT,
    NOT_COVERED,
    Audience,
    Person,
    Role,
)
from services.notifications.domain.decisions import (
    PLAN_LINK_HOLDER,
    PLAN_LINK_KIND,
    Notice,
    escalation,
    on_case_event,
    on_meeting_event,
)
from services.shared.plan_links import LinkKind, contact_holder, coordinator_holder, member_holder
from tests.meetings.feed import CLIENT, COORDINATOR, HOUSING, REGION_PSYCH, SOCIAL
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.meeting_events import Invitee, InviteeRole, MeetingKind
from vss_contracts.types import (
    ClientRef,
    ClosingReason,
    ContactDetails,
    ContactMode,
    ContactPeriod,
    Coordinator,
    MemberKind,
    Municipality,
    NamedCoordinator,
    OrganisationRef,
    Region,
)
from vss_contracts.types import Person as StaffPerson

TODAY = date(2026, 3, 2)
AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CASE = UUID("7a3e1c52-9b0d-4f6e-8c1a-2d5f7e9b0c01")


def member(
    name: str, kind: MemberKind, organisation: OrganisationRef | None = None
) -> ce.ResourceGroupMember:
    return ce.ResourceGroupMember(
        member_id=uuid4(),
        kind=kind,
        name=name,
        organisation=organisation,
        contact=ContactDetails(email=f"{name.split(maxsplit=1)[0].lower()}@example.se"),
    )


class Case:
    """An audience and the events folded into it."""

    def __init__(self) -> None:
        self.audience = Audience(case_id=CASE)
        coordinator = Coordinator(
            user_id="sara", name="Sara", organisation=SOCIAL, contact=ContactDetails(email="sara@example.se")
        )
        self.on(ce.CoordinatorAssigned(coordinator=coordinator, assigned_on=TODAY))
        self.client = self.add(member("Tolvan Tolvansson", MemberKind.CLIENT))
        self.housing = self.add(member("Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING))
        self.nurse = self.add(member("Nina Sköterska", MemberKind.PROFESSIONAL, REGION_PSYCH))
        self.mother = self.add(member("Mamma Tolvansson", MemberKind.RELATIVE))

    def on(self, data: ce.CaseEventData, today: date = TODAY, at: datetime = AT) -> list[Notice]:
        return on_case_event(self.audience, data, at, today).notices

    def add(self, m: ce.ResourceGroupMember) -> ce.ResourceGroupMember:
        self.on(ce.ResourceGroupMemberAdded(member=m, added_on=TODAY))
        return m

    def consent(
        self, *organisations: OrganisationRef, relatives: bool = True, until: date | None = None
    ) -> None:
        self.on(
            ce.ConsentGiven(
                consent_id=uuid4(),
                organisations=list(organisations or (SOCIAL, REGION_PSYCH, HOUSING)),
                covers_relatives=relatives,
                signed_on=TODAY,
                valid_until=until,
            )
        )

    def sip(self, *actions: ce.SipAction, today: date = TODAY) -> list[Notice]:
        return self.on(
            ce.SipDecided(
                sip_version=1,
                decided_on=TODAY,
                overall_responsibility=SOCIAL,
                goal_ids=[uuid4()],
                actions=list(actions) or [action(self.nurse, "Samtal")],
                next_follow_up_on=date(2026, 6, 1),
                participants=[CLIENT, COORDINATOR],
                client_agreed=True,
            ),
            today=today,
        )


def action(responsible: ce.ResourceGroupMember, what: str, due_on: date = date(2026, 4, 1)) -> ce.SipAction:
    return ce.SipAction(
        action_id=uuid4(),
        what=what,
        responsible_member_id=responsible.member_id,
        due_on=due_on,
        how="hemligt",
    )


def names(notices: list[Notice]) -> set[str]:
    return {n.person.name for n in notices}


def test_with_no_consent_only_the_client_and_the_coordinators_are_told() -> None:
    case = Case()
    assert names(case.sip()) == {"Tolvan Tolvansson"}


def test_a_consent_for_one_organisation_limits_who_is_told_and_relatives_need_their_own_cover() -> None:
    case = Case()
    case.consent(REGION_PSYCH, relatives=False)
    assert names(case.sip()) == {"Tolvan Tolvansson", "Nina Sköterska"}
    case.consent(REGION_PSYCH, HOUSING, relatives=True)
    assert names(case.sip()) == {"Tolvan Tolvansson", "Nina Sköterska", "Bo Boendestöd", "Mamma Tolvansson"}


def test_a_consent_past_its_last_day_covers_nobody_but_the_client_and_coordinators() -> None:
    case = Case()
    case.consent(until=TODAY)
    assert "Nina Sköterska" in names(case.sip(today=TODAY))
    assert names(case.sip(today=TODAY + timedelta(days=1))) == {"Tolvan Tolvansson"}


def test_each_member_sees_only_the_sip_actions_they_are_responsible_for_soonest_first() -> None:
    case = Case()
    case.consent()
    notices = case.sip(
        action(case.nurse, "Medicinering", date(2026, 5, 1)),
        action(case.housing, "Boendestöd"),
        action(case.nurse, "Samtal", date(2026, 4, 1)),
    )
    by_name = {n.person.name: n for n in notices}
    assert [a["what"] for a in by_name["Nina Sköterska"].context["actions"]] == ["Samtal", "Medicinering"]
    assert [a["what"] for a in by_name["Bo Boendestöd"].context["actions"]] == ["Boendestöd"]
    assert by_name["Mamma Tolvansson"].context["actions"] == []


def test_a_withdrawal_a_member_leaving_and_the_closing_ask_for_pending_messages_to_be_rechecked() -> None:
    case = Case()
    case.consent()
    withdrawn = on_case_event(
        case.audience,
        ce.ConsentWithdrawn(withdrawn_on=TODAY, entire=False, organisation_ids=[HOUSING.id]),
        AT,
        TODAY,
    )
    assert withdrawn.recheck_pending
    assert withdrawn.notices == []
    assert case.audience.consent_orgs == {SOCIAL.id, REGION_PSYCH.id}
    left = on_case_event(
        case.audience,
        ce.ResourceGroupMemberRemoved(member_id=case.nurse.member_id, removed_on=TODAY),
        AT,
        TODAY,
    )
    assert left.recheck_pending
    closed = on_case_event(
        case.audience, ce.CaseClosed(closed_on=TODAY, reason=ClosingReason.GOALS_ACHIEVED), AT, TODAY
    )
    assert closed.recheck_pending
    assert case.audience.closed


def test_why_a_message_may_not_go_depends_on_when_it_was_decided() -> None:
    case = Case()
    case.consent()
    nurse = Person.from_json(
        next(p.to_json() for p in case.audience.members.values() if p.name == "Nina Sköterska")
    )
    housing = next(p for p in case.audience.members.values() if p.name == "Bo Boendestöd")
    before, after = AT - timedelta(minutes=1), AT + timedelta(minutes=1)
    case.on(ce.ResourceGroupMemberRemoved(member_id=case.nurse.member_id, removed_on=TODAY), at=AT)
    assert case.audience.why_not_told(nurse, before, TODAY) == MEMBER_LEFT
    assert case.audience.why_not_told(nurse, after, TODAY) is None  # e.g. the meeting's cancellation to them
    case.on(ce.ConsentWithdrawn(withdrawn_on=TODAY, entire=False, organisation_ids=[HOUSING.id]))
    assert case.audience.why_not_told(housing, after, TODAY) == NOT_COVERED
    case.on(ce.CaseClosed(closed_on=TODAY, reason=ClosingReason.GOALS_ACHIEVED), at=AT)
    assert case.audience.why_not_told(housing, before, TODAY) == CASE_CLOSED


def test_a_coordinator_is_matched_to_a_member_by_organisation_and_user_id_together() -> None:
    case = Case()
    namesake = ce.ResourceGroupMember(
        member_id=uuid4(),
        kind=MemberKind.PROFESSIONAL,
        name="Sara at the region",
        organisation=REGION_PSYCH,
        user_id="sara",
        contact=ContactDetails(email="sara@region.example.se"),
    )
    case.add(namesake)
    [sara] = case.audience.coordinator_people()
    assert sara.email == "sara@example.se"  # not the region's sara's address


def test_an_early_warning_is_urgent_to_the_plan_contacts_and_coordinators_and_opens_an_alert() -> None:
    case = Case()
    case.consent()
    case.on(
        ce.EarlyWarningPlanUpdated(
            plan_version=1,
            signs=[ce.WarningSign(sign_id="somn", description="Sover dåligt")],
            client_actions=["Ringa"],
            others_actions=[],
            contacts=[ce.PlanContact(name="Granne", relation="granne", phone="0701234567")],
            updated_on=TODAY,
        )
    )
    warning = uuid4()
    outcome = on_case_event(
        case.audience,
        ce.EarlyWarningTriggered(warning_id=warning, plan_version=1, sign_ids=["somn"], observed_on=TODAY),
        AT,
        TODAY,
    )
    assert outcome.alert_opened == warning
    assert names(outcome.notices) == {"Granne", "Sara"}
    assert all(n.urgent and n.warning_id == warning for n in outcome.notices)
    resolved = on_case_event(
        case.audience, ce.EarlyWarningResolved(warning_id=warning, resolved_on=TODAY, outcome="ok"), AT, TODAY
    )
    assert resolved.alert_closed == warning


def test_an_escalation_goes_to_the_duty_contacts_of_the_coordinators_organisations() -> None:
    case = Case()
    duty = {
        SOCIAL.id: Person(
            key=f"duty:{SOCIAL.id}", name="Socialjouren", role=Role.DUTY, organisation_id=SOCIAL.id
        ),
        HOUSING.id: Person(
            key=f"duty:{HOUSING.id}", name="Boendejouren", role=Role.DUTY, organisation_id=HOUSING.id
        ),
    }
    [notice] = escalation(case.audience, uuid4(), AT, duty, TODAY)
    assert notice.person.name == "Socialjouren"
    assert notice.template == "early_warning_escalation"
    assert notice.urgent


def test_invitees_dropped_from_a_meeting_get_a_cancellation_only_if_still_covered() -> None:
    case = Case()
    case.consent(SOCIAL, HOUSING, relatives=True)
    housing = Invitee(
        invitee_id=f"member:{case.housing.member_id}",
        name="Bo",
        role=InviteeRole.PROFESSIONAL,
        organisation=HOUSING,
        email="bo@example.se",
    )
    nurse = Invitee(
        invitee_id=f"member:{case.nurse.member_id}",
        name="Nina",
        role=InviteeRole.PROFESSIONAL,
        organisation=REGION_PSYCH,
        email="nina@example.se",
    )
    client = Invitee(invitee_id="client", name="Tolvan", role=InviteeRole.CLIENT, email="tolvan@example.se")
    meeting_id = uuid4()
    starts = AT + timedelta(days=7)
    scheduled = on_meeting_event(
        case.audience,
        me.MeetingScheduled(
            meeting_id=meeting_id,
            kind=MeetingKind.RESOURCE_GROUP,
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
            invitees=[client, housing, nurse],
            reason="sip_follow_up",
        ),
        TODAY,
    )
    assert names(scheduled.notices) == {"Tolvan", "Bo"}  # the region is not covered
    for notice in scheduled.notices:
        assert notice.calendar is not None
        assert {a.name for a in notice.calendar.attendees or ()} == {"Tolvan", "Bo"}
    changed = on_meeting_event(
        case.audience,
        me.MeetingInviteesChanged(
            meeting_id=meeting_id, added=[], removed=[housing, nurse], sequence=1, reason="consent_withdrawn"
        ),
        TODAY,
    )
    assert [(n.template, n.person.name) for n in changed.notices] == [("meeting_cancelled", "Bo")]
    assert (
        on_meeting_event(
            case.audience,
            me.MeetingRescheduled(
                meeting_id=uuid4(),
                starts_at=starts,
                ends_at=starts,
                previous_starts_at=starts,
                sequence=1,
                reason="x",
            ),
            TODAY,
        ).notices
        == []
    )  # a meeting never seen tells nobody


def test_the_audience_survives_its_stored_form() -> None:
    case = Case()
    case.consent(until=date(2026, 6, 30))
    case.on(ce.ResourceGroupMemberRemoved(member_id=case.nurse.member_id, removed_on=TODAY))
    again = Audience.from_json(case.audience.to_json())
    assert again == case.audience


def test_the_audience_read_without_meetings_judges_a_message_alike() -> None:
    """The sender's look before each message reads the audience without the meetings'
    copies: the rule reads none of them."""
    case = Case()
    case.consent(SOCIAL, until=date(2026, 6, 30))
    starts = AT + timedelta(days=7)
    client = Invitee(invitee_id="client", name="Tolvan", role=InviteeRole.CLIENT, email="tolvan@example.se")
    scheduled = me.MeetingScheduled(
        meeting_id=uuid4(),
        kind=MeetingKind.RESOURCE_GROUP,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        invitees=[client],
        reason="sip_follow_up",
    )
    on_meeting_event(case.audience, scheduled, TODAY)
    nurse = case.audience.members[str(case.nurse.member_id)]
    case.on(ce.ResourceGroupMemberRemoved(member_id=case.nurse.member_id, removed_on=TODAY))
    stored = case.audience.to_json()
    assert stored["meetings"]
    light = Audience.from_json(stored, meetings=False)
    assert light.meetings == {}
    assert replace(light, meetings=case.audience.meetings) == case.audience
    people = [*case.audience.members.values(), *case.audience.coordinators.values(), nurse]
    for person in people:
        for decided, today in [(AT, TODAY), (AT + timedelta(days=400), date(2027, 1, 1))]:
            expected = case.audience.why_not_told(person, decided, today)
            assert light.why_not_told(person, decided, today) == expected


def test_the_stored_form_is_what_pydantic_dumps_and_people_and_consent_is_it_without_meetings() -> None:
    """The invitees' dumps are kept per invitee, and the people and consent are written
    without the meetings: the stored documents stay what a fresh dump makes."""
    case = Case()
    case.consent(SOCIAL, until=date(2026, 6, 30))
    starts = AT + timedelta(days=7)
    client = Invitee(invitee_id="client", name="Tolvan", role=InviteeRole.CLIENT, email="tolvan@example.se")
    nurse = Invitee(
        invitee_id="member:nina", name="Nina", role=InviteeRole.PROFESSIONAL, organisation=REGION_PSYCH
    )
    scheduled = me.MeetingScheduled(
        meeting_id=uuid4(),
        kind=MeetingKind.RESOURCE_GROUP,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        invitees=[client, nurse],
        reason="sip_follow_up",
    )
    on_meeting_event(case.audience, scheduled, TODAY)
    dumped = [client.model_dump(mode="json"), nurse.model_dump(mode="json")]
    first = case.audience.to_json()
    assert first["meetings"][0]["invitees"] == dumped
    first["meetings"][0]["invitees"][0]["name"] = "changed by a reader"
    first["meetings"][0]["invitees"][1]["organisation"]["id"] = "someone-else"
    again = case.audience.to_json()  # a reader's change to one dump is not the next one's
    assert again["meetings"][0]["invitees"] == dumped
    people = case.audience.people_and_consent()
    assert "meetings" not in people
    assert people == {k: v for k, v in again.items() if k != "meetings"}
    assert list(people) == [k for k in again if k != "meetings"]
    read_back = Audience.from_json(again)
    assert read_back.to_json() == again
    assert read_back == case.audience


def test_the_opener_may_see_the_case_until_a_consent_is_given_and_is_told_nothing_for_it() -> None:
    audience = Audience(case_id=CASE)
    opened = ce.CaseOpened(
        client=ClientRef(personal_identity_number="19121212-1212", name="Tolvan Tolvansson"),
        municipality=Municipality(code="1480", name="Göteborg"),
        region=Region(code="14", name="Västra Götalandsregionen"),
        opened_on=TODAY,
        opened_by_organisation=HOUSING,
    )
    assert on_case_event(audience, opened, AT, TODAY).notices == []
    assert audience.grants() == [(HOUSING.id, None)]
    assert Audience.from_json(audience.to_json()).grants() == [(HOUSING.id, None)]
    old = audience.to_json()
    del old["opened_by"], old["consent_given"]  # as stored before the opener was kept
    assert Audience.from_json(old).grants() == []
    consent = ce.ConsentGiven(
        consent_id=uuid4(), organisations=[REGION_PSYCH], covers_relatives=False, signed_on=TODAY
    )
    on_case_event(audience, consent, AT, TODAY)
    assert audience.grants() == [(REGION_PSYCH.id, None)]
    on_case_event(audience, ce.ConsentWithdrawn(withdrawn_on=TODAY, entire=True), AT, TODAY)
    assert audience.grants() == []  # withdrawn: the opener does not see it again


def test_everyone_the_plan_names_and_every_coordinator_get_the_plan_with_their_own_link() -> None:
    case = Case()
    case.consent()
    contacts = [
        ce.PlanContact(name="Mamma", relation="mamma", phone="0701234567", member_id=case.mother.member_id),
        ce.PlanContact(name="Göran Granne", relation="granne", phone="070-765 43 21", email="g@example.se"),
    ]
    notices = case.on(
        ce.EarlyWarningPlanUpdated(
            plan_version=1,
            signs=[ce.WarningSign(sign_id="somn", description="Sover dåligt")],
            client_actions=["Ringa"],
            others_actions=[],
            contacts=contacts,
            updated_on=TODAY,
        )
    )
    holders = {n.person.name: n.context[PLAN_LINK_HOLDER] for n in notices}
    assert holders == {
        "Mamma": member_holder(case.mother.member_id),  # by member id, whatever the plan calls her
        "Göran Granne": contact_holder("Göran Granne", "070-765 43 21", "g@example.se"),
        "Sara": coordinator_holder(SOCIAL.id, "sara"),
    }
    assert {n.context[PLAN_LINK_KIND] for n in notices} == {LinkKind.EARLY_WARNING_PLAN.value}


def test_a_coordinator_the_plan_names_gets_one_message_not_two() -> None:
    case = Case()
    case.consent()
    sara = case.add(
        ce.ResourceGroupMember(
            member_id=uuid4(), kind=MemberKind.COORDINATOR, name="Sara", organisation=SOCIAL, user_id="sara"
        )
    )
    named = ce.PlanContact(name="Sara", relation="samordnare", phone="0701234567", member_id=sara.member_id)
    notices = case.on(
        ce.EarlyWarningPlanUpdated(
            plan_version=1,
            signs=[ce.WarningSign(sign_id="somn", description="Sover dåligt")],
            client_actions=[],
            others_actions=[],
            contacts=[named],
            updated_on=TODAY,
        )
    )
    assert [n.context[PLAN_LINK_HOLDER] for n in notices] == [member_holder(sara.member_id)]


def test_the_sip_notice_carries_each_members_own_link_to_the_whole_sip() -> None:
    case = Case()
    case.consent()
    notices = case.sip(action(case.nurse, "Samtal"))
    by_name = {n.person.name: n.context for n in notices}
    assert by_name["Nina Sköterska"][PLAN_LINK_HOLDER] == member_holder(case.nurse.member_id)
    assert by_name["Nina Sköterska"][PLAN_LINK_KIND] == LinkKind.SIP.value
    assert by_name["Nina Sköterska"]["actions"][0]["what"] == "Samtal"  # their own actions stay
    assert by_name["Mamma Tolvansson"][PLAN_LINK_HOLDER] == member_holder(case.mother.member_id)


# --------------------------------------------------------------------- the contact logbook
def test_a_missed_contact_cadence_tells_the_coordinators_the_period_and_its_interval() -> None:
    case = Case()
    missed = me.ContactCadenceMissed(
        period=ContactPeriod.ORIENTATION,
        period_set=True,
        period_days=7,
        period_start=date(2026, 2, 21),
        period_end=date(2026, 2, 27),
        last_contact_on=date(2026, 2, 20),
        coordinators=[NamedCoordinator(organisation_id=SOCIAL.id, user_id="sara")],
    )

    [notice] = on_meeting_event(case.audience, missed, TODAY).notices

    assert (notice.template, notice.person.email) == ("contact_cadence_missed", "sara@example.se")
    assert notice.context["period"] == "orientation"
    assert notice.context["period_set"] is True
    assert (notice.context["period_start"], notice.context["period_end"]) == (
        date(2026, 2, 21),
        date(2026, 2, 27),
    )


def test_a_missed_contact_cadence_published_as_v1_names_its_phases_period() -> None:
    case = Case()
    v1 = {
        "phase": "follow_up",
        "period_days": 30,
        "period_start": "2026-01-29",
        "period_end": "2026-02-27",
        "last_contact_on": None,
        "coordinators": ["sara"],
    }

    [notice] = on_meeting_event(
        case.audience, me.decode_meeting_event(me.ContactCadenceMissedV1.TYPE, v1), TODAY
    ).notices

    assert notice.context["period"] == "re_orientation"
    assert notice.context["period_set"] is False
    assert notice.context["period_days"] == 30


def test_nobody_is_told_of_a_contact_or_a_period_set() -> None:
    case = Case()
    sara = StaffPerson(organisation=SOCIAL, user_id="sara", name="Sara")
    contact = ce.ClientContactRecorded(
        contact_id=uuid4(),
        mode=ContactMode.PHONE,
        occurred_at=datetime(2026, 2, 28, 20, 15, tzinfo=UTC),
        duration_minutes=20,
        staff=[sara],
    )
    assert case.on(contact) == []
    assert (
        case.on(ce.ContactPeriodSet(period=ContactPeriod.ASSESSMENT, applies_from=TODAY, set_by=sara)) == []
    )


def test_an_incoming_coordinator_is_told_and_both_are_in_the_audience_during_a_handover() -> None:
    case = Case()
    lena = Coordinator(
        user_id="lena", name="Lena", organisation=SOCIAL, contact=ContactDetails(email="lena@example.se")
    )
    [notice] = case.on(
        ce.CoordinatorAssigned(
            coordinator=lena,
            assigned_on=TODAY,
            hands_over_from=ce.PersonRef(organisation_id=SOCIAL.id, user_id="sara"),
        )
    )
    assert (notice.person.name, notice.template) == ("Lena", "coordinator_assigned")
    assert set(case.audience.coordinators) == {(SOCIAL.id, "sara"), (SOCIAL.id, "lena")}
    case.on(ce.CoordinatorUnassigned(organisation_id=SOCIAL.id, user_id="sara", unassigned_on=TODAY))
    assert set(case.audience.coordinators) == {(SOCIAL.id, "lena")}


def test_unassigning_one_of_two_coordinators_sharing_a_user_id_keeps_the_other_notified() -> None:
    # Sara of the social services and another "sara" of the region's psychiatry: two people.
    case = Case()
    case.consent()
    namesake = Coordinator(
        user_id="sara",
        name="Sara Psykiatri",
        organisation=REGION_PSYCH,
        contact=ContactDetails(email="s@vgr.se"),
    )
    [told] = case.on(ce.CoordinatorAssigned(coordinator=namesake, assigned_on=TODAY))
    assert told.person.key == f"coordinator:{REGION_PSYCH.id}/sara"  # the first sara keeps hers
    assert set(case.audience.coordinators) == {(SOCIAL.id, "sara"), (REGION_PSYCH.id, "sara")}

    case.on(ce.CoordinatorUnassigned(organisation_id=SOCIAL.id, user_id="sara", unassigned_on=TODAY))

    assert set(case.audience.coordinators) == {(REGION_PSYCH.id, "sara")}
    warning = ce.EarlyWarningPlanUpdated(
        plan_version=1,
        signs=[ce.WarningSign(sign_id="somn", description="Sover dåligt")],
        client_actions=["Ringa"],
        others_actions=[],
        contacts=[],
        updated_on=TODAY,
    )
    case.on(warning)
    outcome = on_case_event(
        case.audience,
        ce.EarlyWarningTriggered(warning_id=uuid4(), plan_version=1, sign_ids=["somn"], observed_on=TODAY),
        AT,
        TODAY,
    )
    assert [(n.person.name, n.person.organisation_id) for n in outcome.notices] == [
        ("Sara Psykiatri", REGION_PSYCH.id)
    ]
    duty = {
        org.id: Person(key=f"duty:{org.id}", name=f"Jour {org.id}", role=Role.DUTY, organisation_id=org.id)
        for org in (SOCIAL, REGION_PSYCH)
    }
    [escalated] = escalation(case.audience, uuid4(), AT, duty, TODAY)
    assert escalated.person.organisation_id == REGION_PSYCH.id  # the remaining coordinator's


def test_an_upcast_v1_unassignment_removes_the_coordinator_with_that_user_id() -> None:
    case = Case()
    case.on(ce.CoordinatorUnassigned(organisation_id=None, user_id="sara", unassigned_on=TODAY))
    assert case.audience.coordinators == {}


def test_a_coordinator_is_told_as_the_person_assigned_not_as_anyone_of_a_coordinating_organisation() -> None:
    today = date(2026, 5, 4)
    sara = Person("coordinator:sara", "Sara", Role.COORDINATOR, organisation_id="region", user_id="sara")
    audience = Audience(case_id=CASE, coordinators={("region", "sara"): sara})  # no consent in force
    anna = Person("coordinator:anna", "Anna", Role.COORDINATOR, organisation_id="region", user_id="anna")
    anna_member = replace(anna, key="member:anna")  # her resource group entry, kept after the handover
    namesake = replace(sara, organisation_id="kommun")  # another organisation's sara
    duty = Person("duty:region", "Jouren", Role.DUTY, organisation_id="region")

    assert audience.covered(sara, today)
    assert audience.covered(duty, today)  # the duty contact of a coordinating organisation
    assert not audience.covered(anna, today)  # her organisation coordinates; she no longer does
    assert not audience.covered(anna_member, today)
    assert not audience.covered(namesake, today)
    audience.consent_orgs = {"region"}  # a consent covering the region: told as anyone of it
    assert audience.covered(anna_member, today)
