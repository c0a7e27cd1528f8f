"""The cache's copy of a case must be independent of the original (CaseState.clone)."""

from __future__ import annotations

import copy
import dataclasses

from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.case.domain.case import Case, CaseState
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario, new_request


def _mutable_containers(state: CaseState) -> dict[str, int]:
    return {
        f.name: id(getattr(state, f.name))
        for f in dataclasses.fields(state)
        if isinstance(getattr(state, f.name), list | dict | set)
    }


def test_clone_shares_no_mutable_container(service: CaseService, clock: FixedClock) -> None:
    scenario = CaseScenario(service, clock)
    scenario.to_first_sip()
    case = service.get(scenario.case_id)  # type: ignore[arg-type]
    clone = copy.deepcopy(case)
    assert clone.state == case.state
    originals, copies = _mutable_containers(case.state), _mutable_containers(clone.state)
    assert originals.keys() == copies.keys()
    shared = [name for name in originals if originals[name] == copies[name]]
    assert not shared, f"CaseState.clone() shares {shared}: copy them in clone()"
    assert clone.state.consent is not case.state.consent
    assert clone.state.sip is not case.state.sip


def test_commands_on_a_clone_leave_the_original_unchanged(service: CaseService, clock: FixedClock) -> None:
    scenario = CaseScenario(service, clock)
    scenario.to_first_sip()
    case: Case = service.get(scenario.case_id)  # type: ignore[arg-type]
    before = copy.deepcopy(case.state.__dict__)
    clone = copy.deepcopy(case)
    sip = clone.state.sip
    assert sip is not None
    action_id = next(iter(sip.actions))
    context = service.context(new_request(scenario.actors.region))
    clone.handling(context).complete_action(action_id, cmd.CompleteAction(completed_on=scenario.today))
    goal_id = scenario.goal_ids[0]
    clone.change_goal_status(goal_id, cmd.ChangeGoalStatus(status="achieved", changed_on=scenario.today))
    clone.withdraw_consent(cmd.WithdrawConsent(withdrawn_on=scenario.today))
    assert case.state.__dict__ == before
    assert case.state.sip is not None
    assert case.state.sip.actions[action_id].completed_on is None
    assert case.state.consent is not None
    assert case.state.consent.withdrawn_on is None
