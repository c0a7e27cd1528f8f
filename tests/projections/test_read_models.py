"""Every read model equals an independent recomputation from the stored events.

The reference is the case service's own aggregate state (a separate implementation of
what each event means) and plain loops over the stored history, never the projection
code. The read models are built by the real live projector from the real stream.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

import pytest

from services.case.infrastructure.store import CaseEventStore
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import rebuild
from tests.projections.conftest import GENERATED_END, History
from vss_contracts.types import Worksheet

TODAY = GENERATED_END.isoformat()


def _models(location: ReadModelLocation) -> ReadModels:
    generation = location.current()
    assert generation is not None
    return ReadModels(location.connect(generation))


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _standing_ratings(history: list[Any]) -> list[dict[str, int]]:
    """The change ratings not retracted, in the order recorded, each as last corrected (ADR 0018)."""
    ratings: dict[str, dict[str, int]] = {}
    for e in history:
        if e.data.get("change_rating"):
            ratings[str(e.event_id)] = e.data["change_rating"]
        elif e.type == "se.vss.case.EntryCorrected.v2" and str(e.data["corrects_event_id"]) in ratings:
            ratings[str(e.data["corrects_event_id"])] = e.data["value"]["change_rating"]
        elif e.type == "se.vss.case.EntryRetracted.v1":
            ratings.pop(str(e.data["corrects_event_id"]), None)
    return list(ratings.values())


def reference_overview(store: CaseEventStore, case_id: Any) -> dict[str, Any]:
    """What the overview must say, from the aggregate's state and the raw history."""
    state = store.load(case_id).state
    history = store.history(case_id, 0, 100_000)
    closed = state.closed_on is not None
    consent = state.consent
    ratings = _standing_ratings(history)
    checklist = {}
    for sheet in Worksheet:
        done = [w for w in state.worksheets if w.worksheet is sheet]
        checklist[sheet.value] = (bool(done), _iso(done[-1].completed_on) if done else None, len(done))
    summarised = [e for e in history if e.type.endswith("MappingSummarised.v2")]
    checklist["mapping_summary"] = (
        bool(summarised),
        summarised[-1].data["summarised_on"] if summarised else None,
        len(summarised),
    )
    return {
        "version": store.load(case_id).version,
        "status": "closed" if closed else "active",
        "phase": "closed" if closed else state.phase.value,
        "closed_on": _iso(state.closed_on),
        "municipality": state.municipality.code,
        "coordinators": sorted(c.user_id for c in state.coordinators.values()),
        "consent": None
        if consent is None
        else {
            "organisations": sorted(consent.organisations),
            "covers_relatives": consent.covers_relatives,
            "withdrawn": consent.withdrawn_on is not None,
            "valid_until": _iso(consent.valid_until),
            "renewed_on": _iso(consent.renewed_on),
        },
        "members": sorted(str(m) for m in state.members),
        "goals": {str(g.goal_id): g.status.value for g in state.goals.values()},
        "sip": None
        if state.sip is None
        else {
            "version": state.sip.version,
            "next_follow_up_on": _iso(state.sip.next_follow_up_on),
            "actions": {str(k): _iso(a.completed_on) for k, a in state.sip.actions.items()},
        },
        "open_warnings": sorted(
            str(w.warning_id) for w in state.early_warnings.values() if w.resolved_on is None
        ),
        "meetings": (
            len(state.meetings_held),
            _iso(max(state.meetings_held)) if state.meetings_held else None,
        ),
        "latest_rating_total": sum(ratings[-1].values()) if ratings else None,
        "checklist": checklist,
    }


def observed_overview(view: dict[str, Any]) -> dict[str, Any]:
    consent = view["consent"]
    sip = view["sip"]
    return {
        "version": view["version"],
        "status": view["status"],
        "phase": view["phase"],
        "closed_on": view["closed_on"],
        "municipality": view["municipality"]["code"],
        "coordinators": sorted(c["user_id"] for c in view["coordinators"]),
        "consent": None
        if consent is None
        else {
            "organisations": sorted(o["id"] for o in consent["organisations"]),
            "covers_relatives": consent["covers_relatives"],
            "withdrawn": consent["withdrawn"],
            "valid_until": consent["valid_until"],
            "renewed_on": consent["renewed_on"],
        },
        "members": sorted(m["member_id"] for m in view["resource_group"]),
        "goals": {g["goal_id"]: g["status"] for g in view["goals"] if not g.get("retracted")},
        "sip": None
        if sip is None
        else {
            "version": sip["version"],
            "next_follow_up_on": sip["next_follow_up_on"],
            "actions": {a["action_id"]: a["done_on"] for a in sip["actions"]},
        },
        "open_warnings": sorted(w["warning_id"] for w in view["open_early_warnings"]),
        "meetings": (view["meetings"]["count"], view["meetings"]["last_held_on"]),
        "latest_rating_total": (view["latest_change_rating"] or {}).get("total"),
        "checklist": {e["step"]: (e["done"], e["completed_on"], e["times"]) for e in view["checklist"]},
    }


def test_every_overview_equals_the_reference(history: History, projected_once: ReadModelLocation) -> None:
    models = _models(projected_once)
    case_ids = history.store.case_ids()
    assert len(case_ids) == history.report.cases == models.case_count()
    for case_id in case_ids:
        view = models.overview(str(case_id))
        assert view is not None
        assert observed_overview(view) == reference_overview(history.store, case_id), case_id
        assert view["chain"]["verifies"] is True
    models.close()


def test_the_journal_is_every_stored_event_in_order_with_who_and_when(
    history: History, projected_once: ReadModelLocation
) -> None:
    models = _models(projected_once)
    for case_id in history.store.case_ids():
        stored = history.store.history(case_id, 0, 100_000)
        rows = models.journal(str(case_id), 0, 100_000)
        assert [(r["version"], r["type"], r["log_position"]) for r in rows] == [
            (e.version, e.type, e.position) for e in stored
        ]
        assert [(r["actor_id"], r["actor_organisation"], r["event_id"]) for r in rows] == [
            (e.actor_id, e.actor_organisation, str(e.event_id)) for e in stored
        ]
        assert all(r["verified"] for r in rows)
        assert all(r["summary"] and "\n" not in r["summary"] for r in rows)
    models.close()


def test_caseloads_and_access_grants_equal_the_reference(
    history: History, projected_once: ReadModelLocation
) -> None:
    models = _models(projected_once)
    caseloads: dict[tuple[str, str], Counter[str]] = {}
    for case_id in history.store.case_ids():
        state = history.store.load(case_id).state
        expected = {c.organisation.id for c in state.coordinators.values()}
        if state.consent is not None and state.consent.withdrawn_on is None:
            expected |= set(state.consent.organisations)
        view = models.overview(str(case_id))
        assert view is not None
        granted = {
            row[0]
            for row in models.conn.fetchall(
                "SELECT organisation_id FROM case_grants WHERE case_id = ?", (str(case_id),)
            )
        }
        assert granted == expected
        if state.closed_on is None:
            for coordinator in state.coordinators.values():
                person = (coordinator.user_id, coordinator.organisation.id)
                caseloads.setdefault(person, Counter())[state.phase.value] += 1
    assert caseloads, "the generated history has active cases with coordinators"
    for (user_id, organisation_id), phases in caseloads.items():
        cases = models.coordinator_cases(user_id, organisation_id)
        assert Counter(v["phase"] for v in cases) == phases, user_id
    models.close()


def test_overdue_actions_equal_the_reference(history: History, projected_once: ReadModelLocation) -> None:
    models = _models(projected_once)
    expected: set[tuple[str, str]] = set()
    for case_id in history.store.case_ids():
        state = history.store.load(case_id).state
        if state.closed_on is not None or state.sip is None:
            continue
        for action_id, action in state.sip.actions.items():
            if action.completed_on is None and action.action.due_on.isoformat() < TODAY:
                expected.add((str(case_id), str(action_id)))
    rows = models.conn.fetchall("SELECT case_id, action_id FROM open_actions WHERE due_on < ?", (TODAY,))
    assert {(r[0], r[1]) for r in rows} == expected
    assert expected, "the generated history leaves some actions overdue"
    models.close()


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_a_rebuild_equals_the_incrementally_built_models(
    history: History, projected: ReadModelLocation, batch: int
) -> None:
    live = _models(projected)
    live_dump = live.dump()
    live_generation = live.generation
    live.close()
    report = asyncio.run(rebuild(projected, history.nats_url, history.names, batch=batch))
    assert report.switched
    assert report.previous == live_generation
    assert projected.current() == report.generation != live_generation
    assert report.events == len(live_dump["journal"])
    rebuilt = _models(projected)
    assert rebuilt.dump() == live_dump
    assert rebuilt.position().stream_sequence == history.last_sequence
    rebuilt.close()


def test_a_rebuild_that_keeps_few_views_in_memory_equals_the_incrementally_built_models(
    history: History, projected: ReadModelLocation
) -> None:
    """Three views kept of the forty cases': the others are written out and read back, again
    and again, and the read models are the same to the row."""
    live = _models(projected)
    live_dump = live.dump()
    live.close()
    report = asyncio.run(rebuild(projected, history.nats_url, history.names, batch=7, kept_views=3))
    assert report.views_written_out > len(live_dump["case_views"])  # some more than once ...
    assert report.views_read_back > 0  # ... read back in between
    rebuilt = _models(projected)
    assert rebuilt.dump() == live_dump
    assert rebuilt.position().stream_sequence == history.last_sequence
    rebuilt.close()


def test_a_case_table_added_since_a_generation_was_built_is_filled_from_its_documents(
    projected: ReadModelLocation,
) -> None:
    """A generation from before ``open_actions`` existed gets the table at start, its rows
    derived from the overview documents it holds, as a rebuild would have written them."""
    models = _models(projected)
    before = models.dump()
    assert before["open_actions"], "the generated history leaves some actions open"
    models.conn.execute("DROP TABLE open_actions")
    models.close()
    again = _models(projected)
    assert not again._exists("open_actions")
    again.create_tables()
    assert again.dump() == before
    again.close()
