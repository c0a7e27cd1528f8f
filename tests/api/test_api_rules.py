"""Every rule of the method through HTTP: the status code and an RFC 9457 body naming it.

Each case brings a case to a stage with the real service, then sends the command that
breaks the rule through the API, and checks that nothing was appended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.case.domain import commands as cmd
from services.case.domain import errors
from services.case.domain.events import Actor
from services.shared.access_log import AccessLogStore
from tests.api.conftest import Api
from tests.support.actors import ACTORS, SOCIAL_INSURANCE_AGENCY, coordinator_for, make_actor, organisation_of
from tests.support.scenario import (
    CLIENT,
    CaseScenario,
    client_member_command,
    consent_command,
    coordinator_member_command,
    coordinator_participant,
    long_term_goal_command,
    meeting_command,
    open_case_command,
    sip_command,
    worksheet_command,
)
from vss_contracts.case_events import PersonRef
from vss_contracts.types import ActorPrincipal, ContactPeriod, Coordinator, GoalKind, Phase, Worksheet

# ----------------------------------------------------------------------------- stages
REGION_ORG = organisation_of(ACTORS.region)
INCOMING = make_actor("karin.berg", REGION_ORG)  # takes over from the region's coordinator


def handover_body(s: CaseScenario, incoming: Coordinator, outgoing: Actor) -> dict[str, Any]:
    return {
        "coordinator": incoming.model_dump(mode="json"),
        "assigned_on": str(s.today),
        "hands_over_from": {"organisation_id": outgoing.organisation_id, "user_id": outgoing.user_id},
    }


# Two coordinators of different organisations with one user id: the region's and another at the
# municipality (a person is organisation and user id, ADR 0023).
NAMESAKE = make_actor(ACTORS.region.user_id, organisation_of(ACTORS.municipality))


def namesakes_assigned(s: CaseScenario) -> None:
    s.open()
    s.assign_coordinator(ACTORS.region)
    s.assign_coordinator(NAMESAKE)


def opened(s: CaseScenario) -> None:
    s.open()


def assigned(s: CaseScenario) -> None:
    s.open()
    s.assign_coordinators()


def consented(s: CaseScenario) -> None:
    assigned(s)
    s.give_consent()


def summarised(s: CaseScenario) -> None:
    consented(s)
    s.complete_worksheet()
    s.summarise_mapping()


def with_goal(s: CaseScenario) -> None:
    summarised(s)
    s.set_goal()


def with_members(s: CaseScenario) -> None:
    with_goal(s)
    s.add_members()


def at_first_sip(s: CaseScenario) -> None:
    s.to_first_sip()


def sip_body(s: CaseScenario, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = sip_command(
        s.today,
        goal_id=s.goal_ids[0] if s.goal_ids else uuid4(),
        client_member_id=s.member_ids.get("client", uuid4()),
        responsible_member_id=s.member_ids.get("municipality") or s.member_ids.get("region") or uuid4(),
    ).model_dump(mode="json")
    body.update(changes)
    return body


def relative(s: CaseScenario) -> dict[str, Any]:
    return {"kind": "relative", "name": "Greta Tolvansson", "role": "mamma", "added_on": s.today.isoformat()}


def plan_body(s: CaseScenario) -> dict[str, Any]:
    return cmd.UpdateEarlyWarningPlan(
        signs=[{"sign_id": "somn", "description": "Sover dåligt flera nätter i rad"}],
        client_actions=["Ringer Anna"],
        others_actions=[{"who": "Mamma", "what": "Ringer vårdcentralen"}],
        contacts=[{"name": "Anna Lindqvist", "relation": "samordnare", "phone": "+46 8 123 45 67"}],
        updated_on=s.today,
    ).model_dump(mode="json")


FORSAKRINGSKASSAN = {"id": "forsakringskassan", "name": "Försäkringskassan", "principal": "other"}
BORAS = {"id": "boras-soc", "name": "Borås socialtjänst", "principal": "municipality"}  # not in the case


@dataclass(frozen=True)
class RuleCase:
    rule: type[errors.CaseRuleViolation]
    stage: Callable[[CaseScenario], None]
    path: str
    body: Callable[[CaseScenario], Any]
    before: Callable[[CaseScenario], None] = lambda s: None
    method: str = "POST"
    status: int = 409
    actor: Actor | None = None  # the API's coordinator unless named


# The case's client, signed in with their e-ID; and another person signed in as a client.
TOLVAN = Actor("191212121212", "", "", ActorPrincipal.CLIENT, frozenset({"client"}))
SOMEONE_ELSE = Actor("198112189876", "", "", ActorPrincipal.CLIENT, frozenset({"client"}))


REPEATED_CONTACT = "4a7c2e1b-9d3f-4b8a-a6e5-2c1d0f9e8b7a"


def contact_body(s: CaseScenario, **fields: Any) -> dict[str, Any]:
    """A contact an hour ago, by phone."""
    body = {
        "mode": "phone",
        "occurred_at": (s.clock.now() - timedelta(hours=1)).isoformat(),
        "duration_minutes": 20,
        "note": "Pratade om veckan",
    }
    return {**body, **fields}


def confirmation(s: CaseScenario) -> dict[str, Any]:
    return {"sip_version": 1, "confirmed_on": str(s.today)}


def confirmed(s: CaseScenario) -> None:
    s.run(lambda c: c.confirm_sip(cmd.ConfirmSip(sip_version=1, confirmed_on=s.today)), TOLVAN)


def withdraw_entirely(s: CaseScenario) -> None:
    s.run(lambda c: c.withdraw_consent(cmd.WithdrawConsent(withdrawn_on=s.today)))


def consent_without_relatives(s: CaseScenario) -> None:
    assigned(s)
    consent = consent_command(s.today).model_copy(update={"covers_relatives": False})
    s.run(lambda c: c.give_consent(consent))


def short_consent(s: CaseScenario) -> None:
    assigned(s)
    consent = consent_command(s.today).model_copy(update={"valid_until": s.today})
    s.run(lambda c: c.give_consent(consent))
    s.clock.advance(days=3)


def with_plan(s: CaseScenario) -> None:
    consented(s)
    s.run(lambda c: c.update_early_warning_plan(cmd.UpdateEarlyWarningPlan.model_validate(plan_body(s))))


def action_completed(s: CaseScenario) -> None:
    at_first_sip(s)
    case = s.service.get(s.case_id)  # type: ignore[arg-type]
    assert case.state.sip is not None
    action_id = next(iter(case.state.sip.actions))
    s.run(lambda c: c.complete_action(action_id, cmd.CompleteAction(completed_on=s.today)))
    s.member_ids["action"] = action_id


def trigger_warning(s: CaseScenario) -> None:
    warning_id = uuid4()
    s.run(
        lambda c: c.trigger_early_warning(
            cmd.TriggerEarlyWarning(warning_id=warning_id, sign_ids=["somn"], observed_on=s.today)
        )
    )
    s.member_ids["warning"] = warning_id


def closed(s: CaseScenario) -> None:
    consented(s)
    s.run(lambda c: c.close(cmd.CloseCase(closed_on=s.today, reason="client_declined")))


def add_client_and(s: CaseScenario, principal: str) -> None:
    """The client and only the coordinator of ``principal`` (region or municipality)."""
    coordinator = ACTORS.region if principal == "region" else ACTORS.municipality
    s.add_member("client", client_member_command)
    s.add_member(principal, lambda day: coordinator_member_command(day, coordinator))


def one_coordinator_only(s: CaseScenario) -> list[dict[str, Any]]:
    return [
        {"kind": "client", "name": CLIENT.name},
        coordinator_participant(ACTORS.region).model_dump(mode="json"),
    ]


RULES = [
    RuleCase(errors.ConsentRequired, assigned, "/worksheets", lambda s: worksheet_command(s.today)),
    RuleCase(
        errors.ConsentWithdrawnRule,
        consented,
        "/coordinators",
        lambda s: {
            "coordinator": coordinator_for(ACTORS.outsider).model_dump(mode="json"),
            "assigned_on": str(s.today),
        },
        before=withdraw_entirely,
    ),
    RuleCase(errors.ConsentExpired, short_consent, "/worksheets", lambda s: worksheet_command(s.today)),
    RuleCase(
        errors.NoConsentToWithdraw, assigned, "/consents/withdrawal", lambda s: {"withdrawn_on": str(s.today)}
    ),
    RuleCase(
        errors.ConsentDoesNotCoverOrganisation,
        consented,
        "/resource-group/members",
        lambda s: {
            "kind": "professional",
            "name": "Handläggare på Försäkringskassan",
            "organisation": SOCIAL_INSURANCE_AGENCY.model_dump(mode="json"),
            "added_on": str(s.today),
        },
    ),
    RuleCase(
        errors.ConsentDoesNotCoverRelatives, consent_without_relatives, "/resource-group/members", relative
    ),
    RuleCase(
        errors.TooManyCoordinators,
        assigned,
        "/coordinators",
        lambda s: {
            "coordinator": coordinator_for(ACTORS.outsider).model_dump(mode="json"),
            "assigned_on": str(s.today),
        },
    ),
    RuleCase(
        errors.HandoverToSelf,
        assigned,
        "/coordinators",
        lambda s: handover_body(s, coordinator_for(ACTORS.region), ACTORS.region),
    ),
    RuleCase(
        errors.HandoverOutsideOrganisation,
        assigned,
        "/coordinators",
        lambda s: handover_body(s, coordinator_for(ACTORS.outsider), ACTORS.region),
    ),
    RuleCase(
        errors.HandoverInProgress,
        assigned,
        "/coordinators",
        lambda s: handover_body(s, coordinator_for(make_actor("lars.ek", REGION_ORG)), ACTORS.region),
        before=lambda s: s.run(
            lambda c: c.assign_coordinator(
                cmd.AssignCoordinator(
                    coordinator=coordinator_for(INCOMING),
                    assigned_on=s.today,
                    hands_over_from=PersonRef(
                        organisation_id=ACTORS.region.organisation_id, user_id=ACTORS.region.user_id
                    ),
                )
            )
        ),
    ),
    RuleCase(
        errors.CoordinatorAlreadyAssigned,
        assigned,
        "/coordinators",
        lambda s: {
            "coordinator": coordinator_for(ACTORS.region).model_dump(mode="json"),
            "assigned_on": str(s.today),
        },
    ),
    RuleCase(
        errors.CoordinatorNotAssigned,
        assigned,
        "/coordinators/nobody.here/unassignment",
        lambda s: {"unassigned_on": str(s.today)},
    ),
    RuleCase(
        errors.CoordinatorAmbiguous,
        namesakes_assigned,
        f"/coordinators/{ACTORS.region.user_id}/unassignment",
        lambda s: {"unassigned_on": str(s.today)},
    ),
    RuleCase(
        errors.CoordinatorsMustAttend,
        consented,
        "/worksheets",
        lambda s: {
            **worksheet_command(s.today).model_dump(mode="json"),
            "participants": one_coordinator_only(s),
        },
    ),
    RuleCase(errors.MappingNotSummarised, consented, "/goals", lambda s: long_term_goal_command(s.today)),
    RuleCase(
        errors.GoalAlreadySet,
        with_goal,
        "/goals",
        lambda s: {**long_term_goal_command(s.today).model_dump(mode="json"), "goal_id": str(s.goal_ids[0])},
    ),
    RuleCase(
        errors.GoalNotFound,
        with_goal,
        f"/goals/{uuid4()}/status",
        lambda s: {"status": "achieved", "changed_on": str(s.today)},
    ),
    RuleCase(
        errors.GoalParentInvalid,
        with_goal,
        "/goals",
        lambda s: {
            **long_term_goal_command(s.today).model_dump(mode="json"),
            "kind": GoalKind.SUB_GOAL.value,
        },
    ),
    RuleCase(
        errors.MemberAlreadyInGroup,
        with_members,
        "/resource-group/members",
        lambda s: client_member_command(s.today),
    ),
    RuleCase(
        errors.MemberNotFound,
        with_members,
        f"/resource-group/members/{uuid4()}/removal",
        lambda s: {"removed_on": str(s.today)},
    ),
    RuleCase(
        errors.MeetingRequiresCoordinators,
        at_first_sip,
        "/resource-group/meetings",
        lambda s: {
            **meeting_command(s.today).model_dump(mode="json"),
            "participants": one_coordinator_only(s),
        },
    ),
    RuleCase(errors.SipRequiresMappingSummary, consented, "/sips", sip_body),
    RuleCase(errors.SipRequiresGoal, summarised, "/sips", sip_body),
    RuleCase(errors.SipRequiresClientInGroup, with_goal, "/sips", sip_body),
    RuleCase(
        errors.SipRequiresRegionMember,
        with_goal,
        "/sips",
        sip_body,
        before=lambda s: add_client_and(s, "municipality"),
    ),
    RuleCase(
        errors.SipRequiresMunicipalityMember,
        with_goal,
        "/sips",
        sip_body,
        before=lambda s: add_client_and(s, "region"),
    ),
    RuleCase(
        errors.SipResponsibleNotMember,
        with_members,
        "/sips",
        lambda s: {
            **sip_body(s),
            "actions": [{**sip_body(s)["actions"][0], "responsible_member_id": str(uuid4())}],
        },
    ),
    RuleCase(
        errors.SipPartyNotCovered,
        with_members,
        "/sips",
        lambda s: {
            **sip_body(s),
            "actions": [
                {
                    **{k: v for k, v in sip_body(s)["actions"][0].items() if k != "responsible_member_id"},
                    "responsible_party": {
                        "organisation": {
                            "id": "forsakringskassan",
                            "name": "Försäkringskassan",
                            "principal": "other",
                        }
                    },
                }
            ],
        },
    ),
    RuleCase(
        errors.SipResponsibilityNotAParty,
        with_members,
        "/sips",
        lambda s: sip_body(
            s,
            overall_responsibility={
                "id": "boras-soc",
                "name": "Borås socialtjänst",
                "principal": "municipality",
            },
        ),
    ),
    RuleCase(errors.InitialSipNotFirst, at_first_sip, "/sips", lambda s: sip_body(s, initial=True)),
    RuleCase(errors.InitialSipAfterMapping, with_members, "/sips", lambda s: sip_body(s, initial=True)),
    RuleCase(
        errors.SipRequiresClientParticipation,
        with_members,
        "/sips",
        lambda s: sip_body(
            s, participants=[coordinator_participant(a).model_dump(mode="json") for a in ACTORS.coordinators]
        ),
    ),
    RuleCase(
        errors.SipRequiresClientAgreement, with_members, "/sips", lambda s: sip_body(s, client_agreed=False)
    ),
    RuleCase(
        errors.SipFollowUpInvalid,
        with_members,
        "/sips",
        lambda s: sip_body(s, next_follow_up_on=str(s.today + timedelta(days=125))),
    ),
    RuleCase(
        errors.ActionNotFound,
        at_first_sip,
        f"/sips/current/actions/{uuid4()}/completion",
        lambda s: {"completed_on": str(s.today)},
    ),
    RuleCase(
        errors.ActionAlreadyCompleted,
        action_completed,
        "/sips/current/actions/{action}/completion",
        lambda s: {"completed_on": str(s.today)},
    ),
    RuleCase(
        errors.EarlyWarningRequiresPlan,
        consented,
        "/early-warnings",
        lambda s: {"sign_ids": ["somn"], "observed_on": str(s.today)},
    ),
    RuleCase(
        errors.EarlyWarningUnknownSign,
        with_plan,
        "/early-warnings",
        lambda s: {"sign_ids": ["rostande-roster"], "observed_on": str(s.today)},
    ),
    RuleCase(
        errors.EarlyWarningNotOpen,
        with_plan,
        f"/early-warnings/{uuid4()}/resolution",
        lambda s: {"resolved_on": str(s.today), "outcome": "Lugnt igen"},
    ),
    RuleCase(
        errors.EarlyWarningAlreadyTriggered,
        with_plan,
        "/early-warnings",
        lambda s: {"warning_id": s.member_ids["warning"], "sign_ids": ["somn"], "observed_on": str(s.today)},
        before=trigger_warning,
    ),
    RuleCase(
        errors.DateOutOfOrder,
        with_plan,
        "/early-warnings/{warning}/resolution",
        lambda s: {"resolved_on": str(s.today - timedelta(days=3)), "outcome": "Lugnt igen"},
        before=trigger_warning,
    ),
    RuleCase(errors.CaseClosed, closed, "/worksheets", lambda s: worksheet_command(s.today)),
    RuleCase(
        errors.DateInFuture,
        consented,
        "/worksheets",
        lambda s: worksheet_command(s.today + timedelta(days=1), worksheet=Worksheet.ORDINARY_DAY),
    ),
    RuleCase(errors.NoSipToConfirm, consented, "/sips/current/confirmation", confirmation, actor=TOLVAN),
    RuleCase(
        errors.ClientDatesToday,
        at_first_sip,
        "/sips/current/confirmation",
        lambda s: {"sip_version": 1, "confirmed_on": str(s.today - timedelta(days=1))},
        actor=TOLVAN,
    ),
    RuleCase(
        errors.SipAlreadyConfirmed,
        at_first_sip,
        "/sips/current/confirmation",
        confirmation,
        before=confirmed,
        actor=TOLVAN,
    ),
    RuleCase(
        errors.OnlyTheClientConfirms, at_first_sip, "/sips/current/confirmation", confirmation, status=403
    ),
    RuleCase(
        errors.NotTheClient,
        consented,
        "/consents/withdrawal",
        lambda s: {"withdrawn_on": str(s.today)},
        actor=SOMEONE_ELSE,
        status=403,
    ),
    RuleCase(
        errors.PhaseChangeNotAllowed,
        consented,
        "/phase",
        lambda s: {"to_phase": Phase.WORKING.value, "changed_on": str(s.today), "reason": "vill börja"},
    ),
    # The contact logbook (ADR 0019).
    RuleCase(
        errors.ContactStaffNotInvolved,
        assigned,
        "/contacts",
        lambda s: contact_body(s, staff=[{"organisation_id": "boras-stad", "user_id": "anna.lindqvist"}]),
    ),
    RuleCase(
        errors.ContactAlreadyRecorded,
        assigned,
        "/contacts",
        lambda s: contact_body(s, contact_id=REPEATED_CONTACT),
        before=lambda s: s.run(
            lambda c: c.record_client_contact(
                cmd.RecordClientContact.model_validate(contact_body(s, contact_id=REPEATED_CONTACT))
            )
        ),
    ),
    # Corrections of earlier entries (ADR 0018).
    RuleCase(errors.EntryNotFound, summarised, "/retractions", lambda s: retraction(s, str(uuid4()))),
    RuleCase(
        errors.EntryNotCorrectable, summarised, "/retractions", lambda s: retraction(s, first_event_id(s))
    ),
    RuleCase(
        errors.EntryRetracted,
        summarised,
        "/retractions",
        lambda s: retraction(s, entry_id(s, "worksheet")),
        before=lambda s: s.run(
            lambda c: c.retract_entry(
                cmd.RetractEntry.model_validate(retraction(s, entry_id(s, "worksheet")))
            )
        ),
    ),
    RuleCase(
        errors.ContactPeriodUnchanged,
        assigned,
        "/contact-period",
        lambda s: {"period": "orientation", "applies_from": str(s.today)},
        before=lambda s: s.run(
            lambda c: c.set_contact_period(
                cmd.SetContactPeriod(period=ContactPeriod.ORIENTATION, applies_from=s.today)
            )
        ),
    ),
    RuleCase(
        errors.CorrectionKindMismatch,
        summarised,
        "/corrections",
        lambda s: {
            "corrects_event_id": entry_id(s, "worksheet"),
            "reason": "Fel uppgift.",
            "corrected_on": str(s.today),
            "value": {"kind": "goal", "description": "Eget boende", "set_on": str(s.today)},
        },
    ),
]


def entry_id(s: CaseScenario, kind: str) -> str:
    """The event id of the case's latest entry of ``kind`` (as the write result listed it)."""
    case = s.service.get(s.case_id)  # type: ignore[arg-type]
    return str([event_id for event_id, e in case.state.entries.items() if e.kind == kind][-1])


def first_event_id(s: CaseScenario) -> str:
    case = s.service.get(s.case_id)  # type: ignore[arg-type]
    return str(next(iter(case.state.event_types)))  # CaseOpened: not an entry to correct


def retraction(s: CaseScenario, event_id: str) -> dict[str, Any]:
    return {
        "corrects_event_id": event_id,
        "reason": "Registrerat i fel ärende.",
        "retracted_on": str(s.today),
    }


# The rules of practice (ADR 0017): a refusal offers a deviation instead.
PRACTICE_RULES = {
    errors.CoordinatorsMustAttend,
    errors.MappingNotSummarised,
    errors.MeetingRequiresCoordinators,
    errors.SipRequiresMappingSummary,
    errors.SipFollowUpInvalid,
    errors.EarlyWarningRequiresPlan,
}


def _every_rule_is_covered() -> None:
    def leaves(cls: type) -> set[type]:
        subs = cls.__subclasses__()
        return set().union(*(leaves(s) for s in subs)) if subs else {cls}

    # A client's token reaches no route of another command: the role check refuses it first
    # (test_a_client_may_not_send_a_coordinators_command); the rule is the aggregate's own guard.
    covered = {case.rule for case in RULES} | {errors.ActorNotInvolved, errors.ClientMayNotRecord}
    missing = leaves(errors.CaseRuleViolation) - covered
    assert not missing, f"rules without an API test: {sorted(c.rule for c in missing)}"


def test_every_named_rule_has_an_api_case() -> None:
    _every_rule_is_covered()


@pytest.mark.parametrize("case", RULES, ids=lambda c: c.rule.rule)
def test_rule_violation_is_a_problem_naming_the_rule(
    api: Api, scenario: CaseScenario, case: RuleCase, access_log: AccessLogStore, actor: Actor
) -> None:
    case.stage(scenario)
    case.before(scenario)
    before = scenario.service.get(scenario.case_id)  # type: ignore[arg-type]
    body = case.body(scenario)
    body = (
        {k: str(v) if k == "warning_id" else v for k, v in body.items()} if isinstance(body, dict) else body
    )
    path = case.path.replace("{action}", str(scenario.member_ids.get("action")))
    path = path.replace("{warning}", str(scenario.member_ids.get("warning")))

    response = api.post(f"/{scenario.case_id}{path}", body, method=case.method, actor=case.actor)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["rule"] == case.rule.rule
    assert problem["type"] == f"urn:vss:problem:{case.rule.rule}"
    assert problem["title"] == case.rule.title
    assert problem["status"] == case.status
    assert problem["detail"]
    assert problem["instance"] == f"/v1/cases/{scenario.case_id}{path}"
    # A practice rule says that a reason would have made the command a recorded deviation.
    offered = case.rule in PRACTICE_RULES
    assert problem.get("deviation_allowed", False) is offered
    assert problem["detail"].endswith(errors.DEVIATION_HINT) is offered
    after = scenario.service.get(scenario.case_id)  # type: ignore[arg-type]
    assert after.version == before.version, "a refused command appended nothing"
    # Every refusal is in the access log: as denied to one who does not write this case, as
    # what was read to one who does.
    last = access_log.latest_for_case(str(scenario.case_id), 1)[0][1]
    who = case.actor or actor
    assert (last.resource, last.outcome, last.user_id, last.organisation_id) == (
        "command" if case.rule in (errors.ActorNotInvolved, errors.NotTheClient) else "command_refusal",
        "denied" if case.rule in (errors.ActorNotInvolved, errors.NotTheClient) else "granted",
        who.user_id,
        who.organisation_id,
    )
    assert (last.reason or "").startswith(case.rule.rule)


# ----------------------------------------------------------------- deviations from the method
REASON = "Erik sjuk; Tolvan ville inte skjuta upp mötet. Erik informeras på måndag."


def _practice_body(case: RuleCase) -> Callable[[CaseScenario], Any]:
    """The body of the API case that breaks the practice rule, with a reason added."""
    if case.rule is errors.EarlyWarningRequiresPlan:  # no plan, so no sign from it: a described one
        return lambda s: {
            "other_sign": "Har slutat äta",
            "observed_on": str(s.today),
            "deviation_reason": REASON,
        }

    def body(s: CaseScenario) -> Any:
        sent = case.body(s)
        return {
            **(sent.model_dump(mode="json") if hasattr(sent, "model_dump") else sent),
            "deviation_reason": REASON,
        }

    return body


# Each practice rule whose API case is otherwise valid (a SIP before the mapping summary also
# needs goals, which tests/domain sets with a deviation of their own).
ACCEPTED = [
    case
    for case in RULES
    if case.rule in PRACTICE_RULES and case.rule is not errors.SipRequiresMappingSummary
]


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.rule.rule)
def test_a_reason_over_http_records_the_deviation_before_the_fact(
    api: Api, scenario: CaseScenario, case: RuleCase
) -> None:
    case.stage(scenario)
    case.before(scenario)

    response = api.post(f"/{scenario.case_id}{case.path}", _practice_body(case)(scenario))

    assert response.status_code in (200, 201), response.text
    deviation, fact, *_ = response.json()["events"]
    assert deviation["type"] == "se.vss.case.MethodDeviationRecorded.v2"
    history = api.get(f"/{scenario.case_id}/history").json()["items"]
    recorded = next(item for item in history if item["version"] == deviation["version"])
    assert recorded["data"]["rule"] == case.rule.rule
    assert recorded["data"]["reason"] == REASON
    assert recorded["data"]["deviates"] == fact["type"]
    assert fact["version"] == deviation["version"] + 1


def test_a_protective_rule_refuses_a_command_with_a_reason_as_without(
    api: Api, scenario: CaseScenario
) -> None:
    assigned(scenario)
    body = {**worksheet_command(scenario.today).model_dump(mode="json"), "deviation_reason": REASON}

    response = api.post(f"/{scenario.case_id}/worksheets", body)

    assert response.status_code == 409
    problem = response.json()
    assert problem["rule"] == "consent_required"
    assert "deviation_allowed" not in problem


def test_a_deviation_reason_has_a_documented_range(api: Api, scenario: CaseScenario) -> None:
    consented(scenario)
    body = {**worksheet_command(scenario.today).model_dump(mode="json"), "deviation_reason": "x" * 501}

    response = api.post(f"/{scenario.case_id}/worksheets", body)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["deviation_reason"]


def test_outsider_organisation_may_not_write(api: Api, scenario: CaseScenario) -> None:
    consented(scenario)
    response = api.post(
        f"/{scenario.case_id}/worksheets", worksheet_command(scenario.today), actor=ACTORS.outsider
    )
    assert response.status_code == 403
    assert response.json()["rule"] == "actor_not_involved"


def test_relatives_join_when_consent_covers_them(api: Api, scenario: CaseScenario) -> None:
    consented(scenario)
    response = api.post(f"/{scenario.case_id}/resource-group/members", relative(scenario))
    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()["events"]] == ["se.vss.case.ResourceGroupMemberAdded.v1"]


def test_participant_model_rejects_unknown_kind(api: Api, scenario: CaseScenario) -> None:
    consented(scenario)
    body = worksheet_command(scenario.today).model_dump(mode="json")
    body["participants"] = [{"kind": "cousin", "name": "X"}]
    response = api.post(f"/{scenario.case_id}/worksheets", body)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"participants.0.kind"}


def test_event_shape_errors_are_422_naming_the_field(api: Api, scenario: CaseScenario) -> None:
    consented(scenario)
    body = worksheet_command(scenario.today, worksheet=Worksheet.CHANGE_RATING).model_dump(mode="json")
    response = api.post(f"/{scenario.case_id}/worksheets", body)  # a change rating without its scores
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:vss:problem:validation_failed"
    assert "change_rating" in problem["detail"]


def test_a_future_date_of_birth_is_refused(api: Api, scenario: CaseScenario) -> None:
    body = open_case_command(scenario.today).model_dump(mode="json")
    body["client"]["personal_identity_number"] = "20991231-1231"
    response = api.post("", body)
    assert response.status_code == 409
    assert response.json()["rule"] == "date_in_future"


def test_a_client_may_not_send_a_coordinators_command(api: Api, scenario: CaseScenario) -> None:
    at_first_sip(scenario)
    response = api.post(
        f"/{scenario.case_id}/closure", {"closed_on": str(scenario.today), "reason": "moved"}, actor=TOLVAN
    )
    assert response.status_code == 403
    assert response.json()["rule"] == "role_required"


def test_the_client_withdraws_their_consent_and_confirms_their_sip_in_their_own_name(
    api: Api, scenario: CaseScenario
) -> None:
    at_first_sip(scenario)
    confirmed = api.post(
        f"/{scenario.case_id}/sips/current/confirmation", confirmation(scenario), actor=TOLVAN
    )
    assert confirmed.status_code == 200, confirmed.text
    assert [e["type"] for e in confirmed.json()["events"]] == ["se.vss.case.SipConfirmedByClient.v1"]
    withdrawn = api.post(
        f"/{scenario.case_id}/consents/withdrawal", {"withdrawn_on": str(scenario.today)}, actor=TOLVAN
    )
    assert withdrawn.status_code == 200, withdrawn.text
    history = api.get(f"/{scenario.case_id}/history", after_version=0, limit=500).json()["items"]
    assert [(e["actor_id"], e["actor_organisation"]) for e in history[-2:]] == [
        ("191212121212", ""),
        ("191212121212", ""),
    ]
    # The client reads the case whose consent she withdrew; nobody else's.
    assert api.get(f"/{scenario.case_id}", actor=TOLVAN).status_code == 200
    refused = api.get(f"/{scenario.case_id}", actor=SOMEONE_ELSE)
    assert (refused.status_code, refused.json()["rule"]) == (403, "not_your_case")


def test_a_handover_over_http_assigns_a_third_coordinator_until_the_outgoing_leaves(
    api: Api, scenario: CaseScenario
) -> None:
    assigned(scenario)
    path = f"/{scenario.case_id}/coordinators"
    body = handover_body(scenario, coordinator_for(INCOMING), ACTORS.region)
    accepted = api.post(path, body)
    assert accepted.status_code == 200, accepted.text
    assert [e["type"] for e in accepted.json()["events"]] == ["se.vss.case.CoordinatorAssigned.v2"]
    lars = coordinator_for(make_actor("lars.ek", REGION_ORG))
    third = {"coordinator": lars.model_dump(mode="json"), "assigned_on": str(scenario.today)}
    assert api.post(path, third).json()["rule"] == "too_many_coordinators"
    left = api.post(f"{path}/{ACTORS.region.user_id}/unassignment", {"unassigned_on": str(scenario.today)})
    assert left.status_code == 200, left.text
    # The handover is complete: another may follow, from the incoming one now.
    again = handover_body(scenario, lars, INCOMING)
    assert api.post(path, again).status_code == 200


def test_the_person_route_unassigns_one_of_two_coordinators_sharing_a_user_id(
    api: Api, scenario: CaseScenario
) -> None:
    namesakes_assigned(scenario)
    path = f"/{scenario.case_id}/coordinators"
    body = {"unassigned_on": str(scenario.today)}
    ambiguous = api.post(f"{path}/{NAMESAKE.user_id}/unassignment", body)
    assert (ambiguous.status_code, ambiguous.json()["rule"]) == (409, "coordinator_ambiguous")
    assert NAMESAKE.organisation_id in ambiguous.json()["detail"]

    left = api.post(f"{path}/{NAMESAKE.organisation_id}/{NAMESAKE.user_id}/unassignment", body)

    assert left.status_code == 200, left.text
    [event] = left.json()["events"]
    assert event["type"] == "se.vss.case.CoordinatorUnassigned.v2"
    state = api.get(f"/{scenario.case_id}").json()["state"]
    assert [(c["organisation"]["id"], c["user_id"]) for c in state["coordinators"].values()] == [
        (ACTORS.region.organisation_id, ACTORS.region.user_id)
    ]
    gone = api.post(f"{path}/{NAMESAKE.organisation_id}/{NAMESAKE.user_id}/unassignment", body)
    assert (gone.status_code, gone.json()["rule"]) == (409, "coordinator_not_assigned")
    bad = api.post(f"{path}/Not An Org/{NAMESAKE.user_id}/unassignment", body)
    assert bad.status_code == 422


def test_participants_that_leave_unsaid_which_namesake_took_part_are_a_422_naming_the_field(
    api: Api, scenario: CaseScenario
) -> None:
    namesakes_assigned(scenario)
    scenario.give_consent()
    once = worksheet_command(scenario.today).model_dump(mode="json")
    once["participants"] = [p for p in once["participants"] if p["kind"] == "client"] + [
        {"kind": "coordinator", "name": "Anna", "user_id": NAMESAKE.user_id}
    ]

    refused = api.post(f"/{scenario.case_id}/worksheets", once)

    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert (error["field"], error["rule"]) == ("participants.1.organisation_id", "coordinator_ambiguous")
    assert NAMESAKE.organisation_id in error["message"]
    # named twice by user id alone still leaves unsaid who is who: each needs the organisation
    twice = {**once, "participants": [*once["participants"], once["participants"][-1]]}
    again = api.post(f"/{scenario.case_id}/worksheets", twice)
    assert again.status_code == 422, again.text
    assert [(e["field"], e["rule"]) for e in again.json()["errors"]] == [
        ("participants.1.organisation_id", "coordinator_ambiguous")
    ]


def test_one_of_two_namesake_coordinators_attends_alone_named_by_organisation(
    api: Api, scenario: CaseScenario
) -> None:
    namesakes_assigned(scenario)
    scenario.give_consent()
    body = worksheet_command(scenario.today).model_dump(mode="json")
    body["participants"] = [p for p in body["participants"] if p["kind"] == "client"] + [
        {
            "kind": "coordinator",
            "name": "Anna",
            "organisation_id": NAMESAKE.organisation_id,
            "user_id": NAMESAKE.user_id,
        }
    ]

    refused = api.post(f"/{scenario.case_id}/worksheets", body)  # the region's Anna was absent
    assert refused.json()["rule"] == "coordinators_must_attend", refused.text
    assert f"{ACTORS.region.user_id} at {ACTORS.region.organisation_id}" in refused.json()["detail"]

    recorded = api.post(f"/{scenario.case_id}/worksheets", {**body, "deviation_reason": "Anna L. sjuk"})

    assert recorded.status_code == 200, recorded.text
    assert [e["type"] for e in recorded.json()["events"]] == [
        "se.vss.case.MethodDeviationRecorded.v2",
        "se.vss.case.WorksheetCompleted.v2",
    ]
    history = api.get(f"/{scenario.case_id}/history", after_version=0, limit=500).json()["items"]
    [sheet] = [e for e in history if e["type"] == "se.vss.case.WorksheetCompleted.v2"]
    [anna] = [p for p in sheet["data"]["participants"] if p["kind"] == "coordinator"]
    assert (anna["organisation_id"], anna["user_id"]) == (NAMESAKE.organisation_id, NAMESAKE.user_id)
    # The absent one is named as the person: the region's Anna, not a user id both share.
    [deviation] = [e for e in history if e["type"] == "se.vss.case.MethodDeviationRecorded.v2"]
    assert deviation["data"]["absent_coordinators"] == [
        {"organisation_id": ACTORS.region.organisation_id, "user_id": ACTORS.region.user_id}
    ]


def test_the_client_withdraws_their_consent_after_the_case_is_closed(
    api: Api, scenario: CaseScenario
) -> None:
    """Sharing goes on after the closing (ADR 0009), so the consent can be taken back then too."""
    at_first_sip(scenario)
    case = scenario.case_id
    outsider = ACTORS.outsider
    wider = consent_command(scenario.today).model_dump(mode="json")
    wider["organisations"].append(organisation_of(outsider).model_dump(mode="json"))
    assert api.post(f"/{case}/consents", wider).status_code == 200
    closed = api.post(f"/{case}/closure", {"closed_on": str(scenario.today), "reason": "client_moved"})
    assert closed.status_code == 200, closed.text
    assert api.get(f"/{case}", actor=outsider).status_code == 200  # the closed case is still shared

    withdrawn = api.post(f"/{case}/consents/withdrawal", {"withdrawn_on": str(scenario.today)}, actor=TOLVAN)

    assert withdrawn.status_code == 200, withdrawn.text
    assert [e["type"] for e in withdrawn.json()["events"]] == ["se.vss.case.ConsentWithdrawn.v1"]
    refused = api.get(f"/{case}", actor=outsider)
    assert (refused.status_code, refused.json()["rule"]) == (403, "no_consent")
    # The coordinators' organisations keep the record they coordinated; the client reads it.
    assert api.get(f"/{case}", actor=ACTORS.region).status_code == 200
    assert api.get(f"/{case}", actor=TOLVAN).status_code == 200
