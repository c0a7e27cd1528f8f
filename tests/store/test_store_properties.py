"""Property, through a real store: any sequence of commands, each loaded from and saved to
SQLite as the service does, reloads (from a fresh store, no cache) to the same case; a
refused command leaves the store exactly as it was; the hash chain verifies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from pydantic import ValidationError

from services.case.domain.errors import CaseRuleViolation, InvalidCommand
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from tests.domain import specs
from tests.domain.specs import CONTEXT, Step
from tests.domain.test_properties import Op, stories


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stories)
def test_accepted_commands_reload_from_the_store_and_refused_ones_store_nothing(
    story: tuple[tuple[Step, ...], list[Op]],
) -> None:
    history, commands = story
    with tempfile.TemporaryDirectory() as tmp:
        config = StoreConfig(f"sqlite:///{Path(tmp)}/events.sqlite")
        migrate(config)
        store = CaseEventStore(config)
        try:
            case = specs.given(*history)
            store.save(case)
            expected = case
            for op in commands:
                position, version = store.max_position(), store.load(case.id).version
                loaded = store.load(case.id)
                try:
                    op.step(loaded.handling(CONTEXT))
                except (CaseRuleViolation, InvalidCommand, ValidationError):
                    assert store.max_position() == position, f"{op!r} was refused but stored events"
                    assert store.load(case.id).version == version
                    event("refused")
                    continue
                event("accepted")
                saved = store.save(loaded)
                assert saved.version == loaded.version > version
                expected = loaded
        finally:
            store.close()

        fresh = CaseEventStore(config)
        try:
            reloaded = fresh.load(case.id)
            assert reloaded.state == expected.state
            assert (reloaded.version, reloaded.head_hash) == (expected.version, expected.head_hash)
            assert fresh.verify(case.id) is None
        finally:
            fresh.close()
