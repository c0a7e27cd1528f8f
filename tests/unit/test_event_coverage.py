"""Every consumer decides about every event type of the contracts: handles it, or ignores it by name.

The consumers' tables are found by importing every module of ``services`` and collecting
each module-level :class:`EventHandlers`; a type added to the contracts without a handler
or an ignored entry in each table fails here, naming the consumer and the type.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

import pytest

import services
from services.notifications.domain import decisions
from services.notifications.domain.audience import Audience
from services.shared.dispatch import EventHandlers, UnhandledEvent, uncovered
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.types import ClosingReason

CASE_TYPES = tuple(t.TYPE for t in ce.CASE_EVENTS)
MEETING_TYPES = tuple(t.TYPE for t in me.MEETING_EVENTS)


def _tables() -> dict[str, EventHandlers[Any]]:
    tables: dict[str, EventHandlers[Any]] = {}
    for module_info in pkgutil.walk_packages(services.__path__, "services."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, EventHandlers):
                known = tables.setdefault(value.consumer, value)
                if known is not value:  # a second table under one name would never be checked
                    raise AssertionError(f"two tables named {value.consumer!r}")
    return tables


TABLES = _tables()


def test_every_consumer_of_the_case_stream_has_a_table() -> None:
    """The discovery finds the consumers we know of (a table replaced by a plain dict would vanish)."""
    assert set(TABLES) >= {
        "case: the aggregate",
        "meetings: case events",
        "meetings: meeting events",
        "notifications: case events",
        "notifications: meeting events",
        "projections: case overview",
        "projections: journal",
        "projections: meetings",
        "sharing: case access",
    }


@pytest.mark.parametrize("consumer", sorted(TABLES))
def test_the_table_answers_to_a_whole_family_of_the_contracts(consumer: str) -> None:
    assert TABLES[consumer].family in (CASE_TYPES, MEETING_TYPES)


@pytest.mark.parametrize("consumer", sorted(TABLES))
def test_every_type_is_handled_or_ignored(consumer: str) -> None:
    assert uncovered(TABLES[consumer]) == []


@pytest.mark.parametrize("consumer", sorted(TABLES))
def test_a_removed_handler_is_reported(consumer: str) -> None:
    table = TABLES[consumer]
    for type_name in table.handlers:
        forgotten = table.without(type_name)
        assert uncovered(forgotten) == [type_name]
        with pytest.raises(UnhandledEvent, match=consumer):
            forgotten.handler(type_name)


def test_a_removed_ignored_entry_is_reported() -> None:
    table = TABLES["notifications: case events"]
    assert ce.GoalSet.TYPE in table.ignored
    assert uncovered(table.without(ce.GoalSet.TYPE)) == [ce.GoalSet.TYPE]


def test_a_consumer_given_a_type_it_forgot_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """At run time there is no silent default: the event fails (and is retried, then dead-lettered)."""
    monkeypatch.setattr(decisions, "CASE_HANDLERS", decisions.CASE_HANDLERS.without(ce.CaseClosed.TYPE))
    closed = ce.CaseClosed(closed_on=date(2026, 5, 4), reason=ClosingReason.GOALS_ACHIEVED)
    with pytest.raises(UnhandledEvent, match=r"notifications: case events .* se\.vss\.case\.CaseClosed\.v1"):
        decisions.on_case_event(Audience(case_id=uuid4()), closed, datetime.now(UTC), date(2026, 5, 4))


def test_an_ignored_type_has_no_handler() -> None:
    table = TABLES["meetings: case events"]
    assert table.handler(ce.GoalSet.TYPE) is None


def test_a_type_both_handled_and_ignored_is_refused() -> None:
    with pytest.raises(ValueError, match="both handled and ignored"):
        EventHandlers.of("x", ce.CASE_EVENTS, {ce.GoalSet: print}, ignored=(ce.GoalSet,))


def test_a_type_of_another_family_is_refused() -> None:
    with pytest.raises(ValueError, match="not types of its family"):
        EventHandlers.of("x", ce.CASE_EVENTS, {me.MeetingHeld: print})


def _on_goal_set(state: object, event: ce.GoalSet) -> None: ...


def _on_goal_set_again(state: object, event: ce.GoalSet) -> None: ...


def _on_anything(state: object, event: object) -> None: ...


def test_a_table_of_signatures_files_each_handler_under_the_type_it_takes() -> None:
    table = EventHandlers.of_signatures("x", ce.CASE_EVENTS, [_on_goal_set], ignored=(ce.CaseClosed,))
    assert table.handler(ce.GoalSet.TYPE) is _on_goal_set
    assert table.handler(ce.CaseClosed.TYPE) is None


def test_a_handler_whose_signature_takes_no_type_of_the_family_is_refused() -> None:
    with pytest.raises(ValueError, match="_on_anything takes 0 types of its family"):
        EventHandlers.of_signatures("x", ce.CASE_EVENTS, [_on_anything])


def test_two_handlers_of_one_type_are_refused() -> None:
    with pytest.raises(ValueError, match=r"x: two handlers of se\.vss\.case\.GoalSet"):
        EventHandlers.of_signatures("x", ce.CASE_EVENTS, [_on_goal_set, _on_goal_set_again])
