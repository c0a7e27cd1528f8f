"""Property: any sequence of commands keeps the Case aggregate consistent.

Commands are drawn over a small universe (three coordinators, three organisations, a
handful of members, goals, actions and warnings, dates around ``TODAY`` including one in
the future), valid and invalid alike, and applied one at a time:

- a refused command (a named rule, or a payload the event model rejects) leaves the
  state, the version, the head hash and the pending events exactly as they were;
- an accepted command appends at least one event, with consecutive versions;
- the state keeps the method's invariants (at most two coordinators, phases in order);
- replaying every accepted event from scratch, each reloaded from its stored state as
  the store does (JSON round trip, ``decode_event``), rebuilds an equal case, and the
  hash chain verifies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.case.domain.case import Case
from services.case.domain.errors import CaseRuleViolation, InvalidCommand
from services.case.domain.events import CaseEvent, RawEvent, verify_chain
from services.case.infrastructure.store import CaseEventMapper
from vss_contracts.types import (
    ClosingReason,
    GoalKind,
    GoalStatus,
    MemberKind,
    Phase,
    Worksheet,
)

from . import specs
from .specs import (
    ANNA,
    CLIENT,
    CLIENT_MEMBER,
    CONSENTED,
    CONTEXT,
    ERIK,
    MUNICIPALITY_ORG,
    OTHER_ORG,
    P_ANNA,
    P_CLIENT,
    P_ERIK,
    P_SARA,
    PLANNED,
    REGION_ORG,
    SARA,
    TODAY,
    WORKING,
    Step,
    snapshot,
)

DATES = [date(2025, 1, 13), date(2025, 2, 3), date(2025, 2, 24), date(2025, 3, 3), TODAY, specs.TOMORROW]
VALID_UNTIL = [None, None, None, date(2025, 2, 1), date(2025, 3, 13), TODAY, date(2026, 3, 1)]
# The ids of the fixed histories (PLANNED, WORKING) are in the pools, plus one unknown each.
GOALS = [specs.LONG_TERM_GOAL, specs.SUB_GOAL, UUID(int=0x1003)]
ACTIONS = [specs.ACTION_1, specs.ACTION_2, UUID(int=0x2003)]
WARNINGS = [specs.WARNING_1, UUID(int=0x3002)]
SIGNS = ["somnproblem", "isolering", "rostprat"]
MEMBERS: dict[str, tuple[UUID, MemberKind, str, Any, str | None]] = {
    "client": (CLIENT_MEMBER, MemberKind.CLIENT, CLIENT.name, None, None),
    "client_again": (UUID(int=0x4001), MemberKind.CLIENT, CLIENT.name, None, None),
    "psychiatrist": (specs.PSYCHIATRIST, MemberKind.PROFESSIONAL, "Leila Haddad", REGION_ORG, None),
    "housing_support": (
        specs.HOUSING_SUPPORT,
        MemberKind.PROFESSIONAL,
        "Mikael Berg",
        MUNICIPALITY_ORG,
        None,
    ),
    "employment_officer": (specs.EMPLOYMENT_OFFICER, MemberKind.PROFESSIONAL, "Jonas Ek", OTHER_ORG, None),
    "mother": (specs.MOTHER, MemberKind.RELATIVE, "Birgitta Tolvansson", None, None),
    "anna": (specs.ANNA_MEMBER, MemberKind.COORDINATOR, ANNA.name, ANNA.organisation, ANNA.user_id),
    "erik": (specs.ERIK_MEMBER, MemberKind.COORDINATOR, ERIK.name, ERIK.organisation, ERIK.user_id),
    "sara": (UUID(int=0x4002), MemberKind.COORDINATOR, SARA.name, SARA.organisation, SARA.user_id),
}
MEMBER_IDS = [m[0] for m in MEMBERS.values()]
PARTICIPANTS = [P_ANNA, P_ERIK, P_SARA, P_CLIENT, specs.P_PSYCHIATRIST, specs.P_HOUSING]


@dataclass(frozen=True)
class Op:
    """A step with a readable repr, so a falsifying example reads like a story."""

    label: str
    step: Step

    def __repr__(self) -> str:
        return self.label


# ---------------------------------------------------------------------------- strategies
dates = st.sampled_from(DATES)
# Mostly who the method wants present, often someone missing.
participants = st.one_of(
    st.just([P_ANNA, P_ERIK, P_CLIENT]),
    st.just([P_ANNA, P_ERIK, P_CLIENT, specs.P_PSYCHIATRIST, specs.P_HOUSING]),
    st.lists(st.sampled_from(PARTICIPANTS), min_size=1, max_size=4, unique=True),
)


def _op(label: str, step: Step) -> Op:
    return Op(label, step)


def _ops(make: Any, *arguments: st.SearchStrategy[Any]) -> st.SearchStrategy[Op]:
    """Like ``st.builds``, but a falsifying example shows the Op's label, not the lambda."""
    return st.tuples(*arguments).map(lambda args: make(*args))


assign_ops = _ops(
    lambda c, d: _op(f"assign({c.user_id}, {d})", specs.assign(c, on=d)),
    st.sampled_from([ANNA, ERIK, SARA]),
    dates,
)
unassign_ops = _ops(
    lambda u, d: _op(f"unassign({u}, {d})", specs.unassign(u, on=d)),
    st.sampled_from([ANNA.user_id, ERIK.user_id, SARA.user_id]),
    dates,
)
consent_ops = _ops(
    lambda orgs, rel, d, until: _op(
        f"consent({[o.id for o in orgs]}, relatives={rel}, {d}, until={until})",
        specs.consent(*orgs, relatives=rel, on=d, valid_until=until),
    ),
    st.lists(st.sampled_from([REGION_ORG, MUNICIPALITY_ORG, OTHER_ORG]), min_size=1, max_size=3, unique=True),
    st.booleans(),
    dates,
    st.sampled_from(VALID_UNTIL),
)
withdraw_ops = _ops(
    lambda entire, orgs, rel, d: _op(
        f"withdraw(entire={entire}, {orgs}, relatives={rel}, {d})",
        specs.withdraw(*orgs, relatives=rel, entire=entire, on=d),
    ),
    st.booleans(),
    st.lists(st.sampled_from([REGION_ORG.id, MUNICIPALITY_ORG.id, OTHER_ORG.id]), max_size=2, unique=True),
    st.booleans(),
    dates,
)
worksheet_ops = _ops(
    lambda sheet, ps, d: _op(
        f"worksheet({sheet.value}, {[p.name for p in ps]}, {d})", specs.worksheet(sheet, *ps, on=d)
    ),
    st.sampled_from(
        [
            Worksheet.CONTACT_DETAILS,
            Worksheet.INTERVIEW,
            Worksheet.NETWORK_MAP,
            Worksheet.CHANGE_RATING,
            Worksheet.QLS_100,
        ]
    ),
    participants,
    dates,
)
summarise_ops = _ops(
    lambda ps, d: _op(f"summarise({[p.name for p in ps]}, {d})", specs.summarise(*ps, on=d)),
    participants,
    dates,
)
phase_ops = _ops(
    lambda to, d: _op(f"change_phase({to.value}, {d})", specs.change_phase(to, on=d)),
    st.sampled_from(list(Phase)),
    dates,
)
goal_ops = _ops(
    lambda g, kind, parent, d: _op(
        f"set_goal({g.int:x}, {kind.value}, parent={parent and parent.int}, {d})",
        specs.set_goal(g, kind=kind, parent=parent, on=d),
    ),
    st.sampled_from([*GOALS, UUID(int=0x1004)]),
    st.sampled_from(list(GoalKind)),
    st.one_of(st.none(), st.sampled_from(GOALS)),  # a long-term goal with a parent is refused too
    dates,
)
goal_status_ops = _ops(
    lambda g, status, d: _op(
        f"goal_status({g.int:x}, {status.value}, {d})", specs.goal_status(g, status, on=d)
    ),
    st.sampled_from(GOALS),
    st.sampled_from(list(GoalStatus)),
    dates,
)
member_ops = _ops(
    lambda name, d: _op(
        f"add_member({name}, {d})",
        specs.add_member(
            MEMBERS[name][0],
            MEMBERS[name][1],
            MEMBERS[name][2],
            organisation=MEMBERS[name][3],
            user_id=MEMBERS[name][4],
            on=d,
        ),
    ),
    st.sampled_from(sorted(MEMBERS)),
    dates,
)
remove_ops = _ops(
    lambda m, d: _op(f"remove_member({m.int:x}, {d})", specs.remove_member(m, on=d)),
    st.sampled_from(MEMBER_IDS),
    dates,
)
meeting_ops = _ops(
    lambda ps, d: _op(f"meeting({[p.name for p in ps]}, {d})", specs.meeting(*ps, on=d)), participants, dates
)
plan_ops = _ops(
    lambda signs, d: _op(f"plan({signs}, {d})", specs.early_warning_plan(*signs, on=d)),
    st.lists(st.sampled_from(SIGNS), min_size=1, max_size=3, unique=True),
    dates,
)
trigger_ops = _ops(
    lambda w, signs, other, d: _op(
        f"trigger({w.int:x}, {signs}, other={other}, {d})",
        specs.trigger_warning(*signs, other_sign=other, warning_id=w, on=d),
    ),
    st.sampled_from(WARNINGS),
    st.lists(st.sampled_from([*SIGNS, "okant-tecken"]), max_size=2, unique=True),
    st.sampled_from([None, "Har slutat äta"]),
    dates,
)
resolve_ops = _ops(
    lambda w, d: _op(f"resolve({w.int:x}, {d})", specs.resolve_warning(w, on=d)),
    st.sampled_from(WARNINGS),
    dates,
)
proposed_actions = st.one_of(
    st.just(
        [
            specs.sip_action(specs.ACTION_1, specs.PSYCHIATRIST),
            specs.sip_action(specs.ACTION_2, specs.HOUSING_SUPPORT),
        ]
    ),
    st.lists(
        st.builds(
            specs.sip_action,
            st.sampled_from(ACTIONS),
            st.sampled_from(MEMBER_IDS),
            st.sampled_from([None, *GOALS]),
        ),
        min_size=1,
        max_size=2,
    ),
)
sip_ops = _ops(
    lambda d, days, goals, actions, ps, agreed: _op(
        f"decide_sip({d}, follow_up=+{days}d, goals={[g.int for g in goals]}, "
        f"responsible={[a.responsible_member_id.int for a in actions]}, "
        f"{[p.name for p in ps]}, agreed={agreed})",
        specs.decide_sip(
            on=d,
            follow_up=d + timedelta(days=days),
            goal_ids=goals,
            actions=actions,
            participants=ps,
            client_agreed=agreed,
        ),
    ),
    dates,
    st.sampled_from([-1, 0, 1, 45, 45, 92, 93]),
    st.one_of(
        st.just([specs.LONG_TERM_GOAL]), st.lists(st.sampled_from(GOALS), min_size=1, max_size=2, unique=True)
    ),
    proposed_actions,
    participants,
    st.sampled_from([True, True, True, False]),
)
complete_ops = _ops(
    lambda a, d: _op(f"complete_action({a.int:x}, {d})", specs.complete_action(a, on=d)),
    st.sampled_from(ACTIONS),
    dates,
)
close_ops = _ops(
    lambda reason, d: _op(f"close({reason.value}, {d})", specs.close(reason, on=d)),
    st.sampled_from(list(ClosingReason)),
    dates,
)

ops = st.one_of(
    assign_ops,
    unassign_ops,
    consent_ops,
    withdraw_ops,
    worksheet_ops,
    summarise_ops,
    phase_ops,
    goal_ops,
    goal_status_ops,
    member_ops,
    remove_ops,
    meeting_ops,
    plan_ops,
    trigger_ops,
    resolve_ops,
    sip_ops,
    complete_ops,
)
# Closing ends every story, so it is rarer: at most once, late in the sequence.
stories = st.tuples(
    st.sampled_from(
        [  # richest first: hypothesis favours the first element
            (*WORKING, specs.early_warning_plan(), specs.trigger_warning("isolering")),
            WORKING,
            PLANNED,
            CONSENTED,
            (),
        ]
    ),
    st.lists(ops, min_size=15, max_size=40),
    st.one_of(st.none(), st.tuples(st.integers(min_value=10, max_value=40), close_ops)),
).map(lambda t: (t[0], _with_close(t[1], t[2])))


def _with_close(commands: list[Op], close: tuple[int, Op] | None) -> list[Op]:
    if close is None:
        return commands
    index, op = close
    return [*commands[:index], op, *commands[index:]]


# -------------------------------------------------------------------------------- replay
MAPPER = CaseEventMapper()


def reloaded(event: CaseEvent) -> CaseEvent:
    """The event as the store gives it back: stored bytes, decoded and upcast by the store's mapper."""
    restored: CaseEvent = MAPPER.to_domain_event(MAPPER.to_stored_event(event))
    return restored


def replay(events: Sequence[CaseEvent]) -> Case:
    case: Case | None = None
    for stored in events:
        case = Case.evolve(case, reloaded(stored))
    assert case is not None
    return case


def check_invariants(case: Case) -> None:
    state = case.state
    assert len(state.coordinators) <= 2
    if state.phase is not Phase.MAPPING and state.phase is not Phase.CLOSED:
        assert state.mapping_summarised_on is not None
    if state.phase in (Phase.WORKING, Phase.FOLLOW_UP):
        assert state.sip is not None
    assert (state.phase is Phase.CLOSED) == (state.closed_on is not None)
    for goal in state.goals.values():
        if goal.kind is GoalKind.SUB_GOAL:
            assert goal.parent_goal_id in state.goals
            assert state.goals[goal.parent_goal_id].kind is GoalKind.LONG_TERM
    assert sum(m.kind is MemberKind.CLIENT for m in state.members.values()) <= 1


# ------------------------------------------------------------------------------ property
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stories)
def test_any_command_sequence_is_atomic_and_replays_to_the_same_case(
    story: tuple[tuple[Step, ...], list[Op]],
) -> None:
    history, commands = story
    case = specs.given(*history)
    check_invariants(case)

    for op in commands:
        before = snapshot(case)
        seen = len(case.pending_events)
        try:
            op.step(case.handling(CONTEXT))
        except (CaseRuleViolation, InvalidCommand, ValidationError):
            assert snapshot(case) == before, f"{op!r} was refused but changed the case"
            event("refused")
            continue
        event("accepted")
        event(f"accepted {type(case.pending_events[-1].data).__name__}")  # type: ignore[attr-defined]
        new = case.pending_events[seen:]
        assert new, f"{op!r} was accepted but recorded nothing"
        assert [e.originator_version for e in new] == list(range(before[1] + 1, case.version + 1))
        check_invariants(case)

    events: list[CaseEvent] = list(case.pending_events)  # type: ignore[arg-type]
    rebuilt = replay(events)
    assert rebuilt.state == case.state
    assert rebuilt.version == case.version
    assert rebuilt.head_hash == case.head_hash
    assert rebuilt.id == case.id

    raw = [RawEvent(e.originator_id, e.originator_version, e.type, e.state) for e in events]
    assert verify_chain(case.id, raw, head=(case.version, case.head_hash)) is None
