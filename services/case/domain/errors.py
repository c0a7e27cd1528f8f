"""Named errors of the Case aggregate: one class per rule of the method.

The API returns each as an RFC 9457 problem whose ``rule`` member is the class's
``rule`` (stable; clients may switch on it) and whose ``detail`` says what failed.
"""

from __future__ import annotations

from typing import ClassVar

# Ends the detail of a refusal that a stated reason would have turned into a deviation (ADR 0017).
DEVIATION_HINT = " (this is a practice rule: give deviation_reason to record a deviation instead)"


class CaseRuleViolation(Exception):
    """A command was refused because it breaks a rule of the method.

    ``deviation_allowed``: the rule is one of practice and the command gave no
    ``deviation_reason``; with one, the case records the deviation instead (ADR 0017).
    """

    rule: ClassVar[str] = "rule_violation"
    title: ClassVar[str] = "The command breaks a rule of the case"

    def __init__(self, detail: str, *, deviation_allowed: bool = False) -> None:
        if deviation_allowed:
            detail += DEVIATION_HINT
        super().__init__(f"{self.rule}: {detail}")
        self.detail = detail
        self.deviation_allowed = deviation_allowed


class InvalidCommand(ValueError):
    """The command's fields do not make a valid fact (e.g. a change-rating worksheet
    without its four scores). ``errors`` names each field and the rule it broke."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        super().__init__(summary)
        self.errors = errors


class NotAllowed(CaseRuleViolation):
    """Base of rules about who may write, rather than about the case's state."""


# -- lifecycle ------------------------------------------------------------------------
class CaseClosed(CaseRuleViolation):
    rule = "case_closed"
    title = "A closed case accepts nothing but a withdrawal of consent"


class DateInFuture(CaseRuleViolation):
    rule = "date_in_future"
    title = "The date of something that happened cannot be in the future"


class DateOutOfOrder(CaseRuleViolation):
    rule = "date_out_of_order"
    title = "A date comes before the fact it follows"


class PhaseChangeNotAllowed(CaseRuleViolation):
    rule = "phase_change_not_allowed"
    title = "This phase change is not allowed"


class ActorNotInvolved(NotAllowed):
    rule = "actor_not_involved"
    title = "Only the opening organisation and the coordinators' organisations write to a case"


class NotTheClient(NotAllowed):
    rule = "not_the_client"
    title = "A client acts in their own case only"


class ClientMayNotRecord(NotAllowed):
    rule = "client_may_not_record"
    title = "A client records their withdrawal of consent and their confirmation of a SIP, nothing else"


class ClientDatesToday(CaseRuleViolation):
    rule = "client_dates_today"
    title = "What a client records in their own name happens now: it is dated today"


class OnlyTheClientConfirms(NotAllowed):
    rule = "only_the_client_confirms"
    title = "Only the client confirms a SIP in their own name"


# -- consent ----------------------------------------------------------------------------
class ConsentRequired(CaseRuleViolation):
    rule = "consent_required"
    title = "Before consent, only coordinator assignment, consent and closing are possible"


class ConsentWithdrawnRule(CaseRuleViolation):
    rule = "consent_withdrawn"
    title = "After consent is withdrawn, only new consent, unassignment or closing are possible"


class ConsentExpired(CaseRuleViolation):
    rule = "consent_expired"
    title = "The consent is no longer valid"


class NoConsentToWithdraw(CaseRuleViolation):
    rule = "no_consent_to_withdraw"
    title = "There is no active consent to withdraw from"


class ConsentDoesNotCoverOrganisation(CaseRuleViolation):
    rule = "consent_does_not_cover_organisation"
    title = "The consent does not cover this organisation"


class ConsentDoesNotCoverRelatives(CaseRuleViolation):
    rule = "consent_does_not_cover_relatives"
    title = "The consent does not cover relatives"


# -- coordinators -----------------------------------------------------------------------
class TooManyCoordinators(CaseRuleViolation):
    rule = "too_many_coordinators"
    title = "A case has at most two active coordinators"


class HandoverInProgress(CaseRuleViolation):
    rule = "handover_in_progress"
    title = "A handover is in progress: one at a time"


class HandoverToSelf(CaseRuleViolation):
    rule = "handover_to_self"
    title = "The outgoing coordinator cannot be the incoming one"


class HandoverOutsideOrganisation(CaseRuleViolation):
    rule = "handover_within_organisation"
    title = "A handover is to a coordinator of the outgoing coordinator's organisation"


class CoordinatorAlreadyAssigned(CaseRuleViolation):
    rule = "coordinator_already_assigned"
    title = "The coordinator is already assigned"


class CoordinatorNotAssigned(CaseRuleViolation):
    rule = "coordinator_not_assigned"
    title = "The coordinator is not assigned to the case"


class CoordinatorAmbiguous(CaseRuleViolation):
    rule = "coordinator_ambiguous"
    title = "Two assigned coordinators share the user id: name the organisation too"


class CoordinatorsMustAttend(CaseRuleViolation):
    rule = "coordinators_must_attend"
    title = "Every assigned coordinator must take part"


# -- mapping, goals -----------------------------------------------------------------------
class MappingNotSummarised(CaseRuleViolation):
    rule = "mapping_not_summarised"
    title = "The mapping must be summarised first"


class GoalAlreadySet(CaseRuleViolation):
    rule = "goal_already_set"
    title = "A goal with this id exists"


class GoalNotFound(CaseRuleViolation):
    rule = "goal_not_found"
    title = "No such goal in this case"


class GoalParentInvalid(CaseRuleViolation):
    rule = "goal_parent_invalid"
    title = "A sub-goal belongs to an existing long-term goal"


# -- resource group ---------------------------------------------------------------------
class MemberAlreadyInGroup(CaseRuleViolation):
    rule = "member_already_in_group"
    title = "This person is already a member of the resource group"


class MemberNotFound(CaseRuleViolation):
    rule = "member_not_found"
    title = "No such member in the resource group"


class MeetingRequiresCoordinators(CaseRuleViolation):
    rule = "meeting_requires_coordinators"
    title = "A resource group meeting needs both coordinators"


# -- SIP --------------------------------------------------------------------------------------
class SipRequiresMappingSummary(CaseRuleViolation):
    rule = "sip_requires_mapping_summary"
    title = "A SIP needs the mapping summarised, unless it is the initial SIP"


class SipRequiresGoal(CaseRuleViolation):
    rule = "sip_requires_goal"
    title = "A SIP needs at least one existing goal"


class SipRequiresClientInGroup(CaseRuleViolation):
    rule = "sip_requires_client_in_group"
    title = "A SIP needs the client in the resource group"


class SipRequiresRegionMember(CaseRuleViolation):
    rule = "sip_requires_region_member"
    title = "A SIP needs a resource group member from the region"


class SipRequiresMunicipalityMember(CaseRuleViolation):
    rule = "sip_requires_municipality_member"
    title = "A SIP needs a resource group member from the municipality"


class SipResponsibleNotMember(CaseRuleViolation):
    rule = "sip_responsible_not_member"
    title = "Every action's responsible person must be a current member"


class SipPartyNotCovered(CaseRuleViolation):
    rule = "sip_party_not_covered"
    title = "An action's outside party must be an organisation the consent covers"


class SipResponsibilityNotAParty(CaseRuleViolation):
    rule = "sip_responsibility_not_a_party"
    title = "The principal with overall responsibility must be a coordinating or consented organisation"


class InitialSipNotFirst(CaseRuleViolation):
    rule = "initial_sip_not_first"
    title = "Only a case's first SIP can be an initial SIP"


class InitialSipAfterMapping(CaseRuleViolation):
    rule = "initial_sip_after_mapping"
    title = "An initial SIP comes before the mapping is summarised"


class SipRequiresClientParticipation(CaseRuleViolation):
    rule = "sip_requires_client_participation"
    title = "The client must take part in deciding the SIP"


class NoSipToConfirm(CaseRuleViolation):
    rule = "no_sip_to_confirm"
    title = "Only the case's current SIP version can be confirmed"


class SipAlreadyConfirmed(CaseRuleViolation):
    rule = "sip_already_confirmed"
    title = "The client has confirmed this SIP version already"


class SipRequiresClientAgreement(CaseRuleViolation):
    rule = "sip_requires_client_agreement"
    title = "The client must agree to the SIP"


class SipFollowUpInvalid(CaseRuleViolation):
    rule = "sip_follow_up_invalid"
    title = "The next follow-up must come after the decision and within the allowed interval"


class ActionNotFound(CaseRuleViolation):
    rule = "action_not_found"
    title = "No such action in the current SIP"


class ActionAlreadyCompleted(CaseRuleViolation):
    rule = "action_already_completed"
    title = "The action is already completed"


# -- early warning -------------------------------------------------------------------------
class EarlyWarningRequiresPlan(CaseRuleViolation):
    rule = "early_warning_requires_plan"
    title = "An early warning can only be triggered against a plan"


class EarlyWarningUnknownSign(CaseRuleViolation):
    rule = "early_warning_unknown_sign"
    title = "The signs must come from the plan, or be described as another sign"


class EarlyWarningAlreadyTriggered(CaseRuleViolation):
    rule = "early_warning_already_triggered"
    title = "An early warning with this id exists"


class EarlyWarningNotOpen(CaseRuleViolation):
    rule = "early_warning_not_open"
    title = "No such open early warning"


# -- the contact logbook (ADR 0019) ------------------------------------------------------
class ContactStaffNotInvolved(CaseRuleViolation):
    rule = "contact_staff_not_involved"
    title = "The staff of a contact are the case's coordinators, members or its organisations' staff"


class ContactAlreadyRecorded(CaseRuleViolation):
    rule = "contact_already_recorded"
    title = "A contact with this id is in the logbook already"


class ContactPeriodUnchanged(CaseRuleViolation):
    rule = "contact_period_unchanged"
    title = "The case is in this contact period already"


# -- corrections of earlier entries (ADR 0018) -------------------------------------------
class EntryNotFound(CaseRuleViolation):
    rule = "entry_not_found"
    title = "No event of this case has that id"


class EntryNotCorrectable(CaseRuleViolation):
    rule = "entry_not_correctable"
    title = (
        "Only a worksheet, a goal, a resource group meeting held or a SIP action's completion is"
        " corrected or retracted this way"
    )


class EntryRetracted(CaseRuleViolation):
    rule = "entry_retracted"
    title = "The entry was retracted: it is neither corrected nor retracted again"


class CorrectionKindMismatch(CaseRuleViolation):
    rule = "correction_kind_mismatch"
    title = "The corrected value is of another kind than the entry"
