"""Tamper evidence: rows edited or deleted behind the store's back are named by verify()."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
import pytest

from services.case.application.service import CaseService
from services.case.domain.events import UNHASHED_KEYS, ChainBreak, canonical_bytes, chain_hash, verify_chain
from services.case.infrastructure.store import CaseEventStore
from tests.support.clock import FixedClock
from tests.support.scenario import FIRST_SIP_EVENT_TYPES, CaseScenario, drive_to_first_sip
from tests.support.stores import raw_execute, raw_query, stored_originator_id

LAST = len(FIRST_SIP_EVENT_TYPES)
WORKSHEET_VERSION = FIRST_SIP_EVENT_TYPES.index("se.vss.case.WorksheetCompleted.v2") + 1


@pytest.fixture
def cases(service: CaseService, clock: FixedClock) -> tuple[UUID, UUID]:
    """Two cases at their first SIP: the first is tampered with, the second stays intact."""
    ids = []
    for _ in range(2):
        scenario: CaseScenario = drive_to_first_sip(service, clock)
        assert scenario.case_id is not None
        ids.append(scenario.case_id)
    return ids[0], ids[1]


class Rows:
    """The events table of the store, edited directly (no eventsourcing, no store code)."""

    def __init__(self, store: CaseEventStore, url: str) -> None:
        self.url = url
        self.table = store.case_recorder.events_table_name

    def state(self, case_id: UUID, version: int) -> dict[str, Any]:
        ((state,),) = raw_query(
            self.url,
            f"SELECT state FROM {self.table} WHERE originator_id = %s AND originator_version = %s",
            (stored_originator_id(self.url, case_id), version),
        )
        return dict(orjson.loads(bytes(state)))

    def set_state(self, case_id: UUID, version: int, state: dict[str, Any]) -> None:
        changed = raw_execute(
            self.url,
            f"UPDATE {self.table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
            (canonical_bytes(state), stored_originator_id(self.url, case_id), version),
        )
        assert changed == 1

    def delete(self, case_id: UUID, version: int) -> None:
        deleted = raw_execute(
            self.url,
            f"DELETE FROM {self.table} WHERE originator_id = %s AND originator_version = %s",
            (stored_originator_id(self.url, case_id), version),
        )
        assert deleted == 1


@pytest.fixture
def rows(store: CaseEventStore, store_url: str) -> Rows:
    return Rows(store, store_url)


def rehashed(case_id: UUID, version: int, type_name: str, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with a hash recomputed as the store computes it (a forger who knows how)."""
    body = {key: value for key, value in state.items() if key not in UNHASHED_KEYS}
    return {**state, "hash": chain_hash(case_id, version, type_name, body)}


def test_untouched_cases_verify(store: CaseEventStore, cases: tuple[UUID, UUID]) -> None:
    for case_id in cases:
        assert store.verify(case_id) is None
        assert store.head(case_id) is not None
        assert store.head(case_id) == (LAST, store.load(case_id).head_hash)


def test_an_edited_event_is_named_by_case_and_version(
    store: CaseEventStore, rows: Rows, cases: tuple[UUID, UUID]
) -> None:
    tampered, intact = cases
    state = rows.state(tampered, WORKSHEET_VERSION)
    state["data"]["summary"] = "Tolvan ville inte delta."  # rewrite what was recorded

    rows.set_state(tampered, WORKSHEET_VERSION, state)

    found = store.verify(tampered)
    assert isinstance(found, ChainBreak)
    assert (found.case_id, found.version) == (tampered, WORKSHEET_VERSION)
    assert "hash" in found.reason
    assert store.verify(intact) is None


def test_an_edited_and_rehashed_event_breaks_the_link_to_the_next(
    store: CaseEventStore, rows: Rows, cases: tuple[UUID, UUID]
) -> None:
    tampered, intact = cases
    state = rows.state(tampered, WORKSHEET_VERSION)
    state["actor_id"] = "someone.else"
    rows.set_state(
        tampered,
        WORKSHEET_VERSION,
        rehashed(tampered, WORKSHEET_VERSION, FIRST_SIP_EVENT_TYPES[WORKSHEET_VERSION - 1], state),
    )

    found = store.verify(tampered)

    assert found == ChainBreak(tampered, WORKSHEET_VERSION + 1, "prev_hash does not match the previous event")
    assert store.verify(intact) is None


def test_a_deleted_middle_event_names_the_missing_version(
    store: CaseEventStore, rows: Rows, cases: tuple[UUID, UUID]
) -> None:
    tampered, intact = cases
    rows.delete(tampered, 7)

    found = store.verify(tampered)

    assert isinstance(found, ChainBreak)
    assert (found.case_id, found.version) == (tampered, 7)
    assert "missing" in found.reason
    assert store.verify(intact) is None


def test_a_deleted_last_event_is_detected_through_the_head(
    store: CaseEventStore, rows: Rows, cases: tuple[UUID, UUID]
) -> None:
    tampered, intact = cases
    rows.delete(tampered, LAST)

    found = store.verify(tampered)

    assert isinstance(found, ChainBreak)
    assert (found.case_id, found.version) == (tampered, LAST)
    assert "missing" in found.reason
    # The chain alone still holds: only the recorded head shows the loss.
    assert verify_chain(tampered, store.raw_events(tampered)) is None
    assert store.verify(intact) is None


def test_a_rewritten_last_event_does_not_match_the_head(
    store: CaseEventStore, rows: Rows, cases: tuple[UUID, UUID]
) -> None:
    tampered, intact = cases
    state = rows.state(tampered, LAST)
    state["data"]["reason"] = "edited"
    rows.set_state(tampered, LAST, rehashed(tampered, LAST, FIRST_SIP_EVENT_TYPES[-1], state))

    found = store.verify(tampered)

    assert found is not None
    assert (found.case_id, found.version) == (tampered, LAST)
    assert "head" in found.reason
    assert verify_chain(tampered, store.raw_events(tampered)) is None
    assert store.verify(intact) is None
