"""The hash chain of a case, built through commands, and what verify_chain catches."""

from __future__ import annotations

import copy
import itertools
from typing import Any
from uuid import UUID

import pytest

from services.case.domain.case import Case
from services.case.domain.events import GENESIS_HASH, ChainBreak, RawEvent, chain_hash, verify_chain

from .specs import CASE_ID, WORKING, close, early_warning_plan, given, resolve_warning, trigger_warning


def _raw(case: Case) -> list[RawEvent]:
    """What the store would read back: a deep copy of each event's stored state."""
    return [
        RawEvent(e.originator_id, e.originator_version, e.type, copy.deepcopy(e.state))
        for e in case.pending_events  # type: ignore[attr-defined]
    ]


@pytest.fixture
def case() -> Case:
    return given(*WORKING, early_warning_plan(), trigger_warning("somnproblem"), resolve_warning(), close())


@pytest.fixture
def raw(case: Case) -> list[RawEvent]:
    return _raw(case)


def test_the_chain_of_a_case_built_through_commands_verifies(case: Case, raw: list[RawEvent]) -> None:
    assert len(raw) == case.version == 21
    assert verify_chain(CASE_ID, raw) is None
    assert verify_chain(CASE_ID, raw, head=(case.version, case.head_hash)) is None


def test_each_event_links_to_the_previous_one(raw: list[RawEvent]) -> None:
    assert raw[0].state["prev_hash"] == GENESIS_HASH
    for previous, event in itertools.pairwise(raw):
        assert event.state["prev_hash"] == previous.state["hash"]
    hashes = [e.state["hash"] for e in raw]
    assert len(set(hashes)) == len(hashes)


def test_the_hash_covers_case_version_type_and_state(case: Case, raw: list[RawEvent]) -> None:
    event = raw[5]
    state = dict(event.state)
    stored = state.pop("hash")
    assert chain_hash(CASE_ID, event.version, event.type, state) == stored
    assert chain_hash(CASE_ID, event.version + 1, event.type, state) != stored
    assert chain_hash(CASE_ID, event.version, "se.vss.case.CaseClosed.v1", state) != stored
    assert case.head_hash == raw[-1].state["hash"]


def _edited(raw: list[RawEvent], index: int, change: Any) -> list[RawEvent]:
    events = list(raw)
    state = copy.deepcopy(events[index].state)
    change(state)
    events[index] = RawEvent(events[index].case_id, events[index].version, events[index].type, state)
    return events


@pytest.mark.parametrize(
    ("index", "change"),
    [
        (0, lambda s: s["data"]["client"].update(name="Någon Annan")),
        (3, lambda s: s["data"].update(covers_relatives=False)),
        (13, lambda s: s["data"].update(client_agreed=False)),
        (13, lambda s: s.update(actor_id="mallory")),
        (13, lambda s: s.update(recorded_at="2025-03-01T08:45:00+00:00")),
    ],
    ids=["client_name", "consent_scope", "sip_agreement", "actor", "recorded_at"],
)
def test_an_edited_state_breaks_the_chain_at_that_version(
    raw: list[RawEvent], index: int, change: Any
) -> None:
    edited = _edited(raw, index, change)

    assert verify_chain(CASE_ID, edited) == ChainBreak(
        CASE_ID, index + 1, "the event's content does not match its hash"
    )


def test_an_edited_state_with_a_recomputed_hash_breaks_the_next_link(raw: list[RawEvent]) -> None:
    def forge(state: dict[str, Any]) -> None:
        state["data"]["client_agreed"] = False
        state.pop("hash")
        state["hash"] = chain_hash(CASE_ID, 14, raw[13].type, state)

    edited = _edited(raw, 13, forge)

    assert verify_chain(CASE_ID, edited) == ChainBreak(
        CASE_ID, 15, "prev_hash does not match the previous event"
    )


def test_an_edited_type_breaks_the_chain(raw: list[RawEvent]) -> None:
    events = list(raw)
    events[8] = RawEvent(CASE_ID, 9, "se.vss.case.GoalStatusChanged.v1", raw[8].state)

    assert verify_chain(CASE_ID, events) == ChainBreak(
        CASE_ID, 9, "the event's content does not match its hash"
    )


def test_a_removed_middle_event_is_a_missing_version(raw: list[RawEvent]) -> None:
    events = raw[:10] + raw[11:]

    assert verify_chain(CASE_ID, events) == ChainBreak(CASE_ID, 11, "version 11 is missing")


def test_a_removed_middle_event_with_versions_renumbered_breaks_the_link(raw: list[RawEvent]) -> None:
    renumbered = raw[:10] + [RawEvent(e.case_id, e.version - 1, e.type, e.state) for e in raw[11:]]

    assert verify_chain(CASE_ID, renumbered) == ChainBreak(
        CASE_ID, 11, "prev_hash does not match the previous event"
    )


def test_a_removed_last_event_is_caught_by_the_recorded_head(case: Case, raw: list[RawEvent]) -> None:
    head = (case.version, case.head_hash)

    assert verify_chain(CASE_ID, raw[:-1]) is None  # the chain alone cannot tell
    assert verify_chain(CASE_ID, raw[:-1], head=head) == ChainBreak(
        CASE_ID, case.version, "events after this version are missing"
    )
    assert verify_chain(CASE_ID, raw[:-3], head=head) == ChainBreak(
        CASE_ID, case.version - 2, "events after this version are missing"
    )


def test_an_edited_last_event_is_caught_even_with_a_recomputed_hash(case: Case, raw: list[RawEvent]) -> None:
    last = len(raw) - 1

    def forge(state: dict[str, Any]) -> None:
        state["data"]["reason"] = "case_closed:other"
        state.pop("hash")
        state["hash"] = chain_hash(CASE_ID, last + 1, raw[last].type, state)

    edited = _edited(raw, last, forge)

    assert verify_chain(CASE_ID, edited) is None  # self-consistent without the head
    assert verify_chain(CASE_ID, edited, head=(case.version, case.head_hash)) == ChainBreak(
        CASE_ID, case.version, "the last event does not match the recorded head"
    )


def test_all_events_removed_with_a_head_recorded(case: Case) -> None:
    assert verify_chain(CASE_ID, [], head=(case.version, case.head_hash)) == ChainBreak(
        CASE_ID, 1, "events after this version are missing"
    )


def test_the_chain_is_per_case(raw: list[RawEvent]) -> None:
    other_case = UUID("11111111-2222-4333-8444-555555555555")
    assert verify_chain(other_case, raw) == ChainBreak(
        other_case, 1, "the event's content does not match its hash"
    )
