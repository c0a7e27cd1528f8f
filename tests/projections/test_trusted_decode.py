"""The projections' decoding trusts the case store: no model built, the hash checked instead.

:mod:`services.projections.infrastructure.decoding` parses a published case event with orjson,
recomputes its hash and upcasts the payload as a dict, without pydantic (the rebuild decodes
every event of the stream this way; the live consumer validates each message first). That
is only right if it gives what validating gives, for every kind of event the method makes,
and if what validation would have caught in our own bytes the hash catches instead.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path

import orjson
import pytest

from services.case.generator import GeneratorSettings, generate, generation_store
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.projections.infrastructure.decoding import decode
from vss_contracts.envelope import CloudEvent
from vss_contracts.registry import EVENT_TYPES, UPCASTERS, decode_event, upcast

GOLDEN = Path(__file__).parent.parent / "contracts" / "golden"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseEventStore]:
    """Cases through the whole method (the generator's realistic mix), as the relay publishes them."""
    url = f"sqlite:///{tmp_path_factory.mktemp('trusted') / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store = generation_store(url, 30)
    try:
        generate(store, GeneratorSettings(cases=30, seed=5, end=date(2026, 6, 30), span_days=900))
        yield store
    finally:
        store.close()


def bodies(store: CaseEventStore) -> list[bytes]:
    out: list[bytes] = []
    after = 0
    while rows := store.log_rows(after, 500):
        out.extend(store.published(row).body for row in rows)
        after = rows[-1][0]
    return out


def test_the_trusted_decode_gives_what_validating_gives_for_every_generated_event(
    generated: CaseEventStore,
) -> None:
    published = bodies(generated)
    kinds = set()
    for sequence, body in enumerate(published, start=1):
        trusted = decode(body, sequence)
        validated = CloudEvent.model_validate_json(body)  # what a subscriber checks
        model = validated.typed_data()
        assert trusted.hash_ok, f"event {sequence}: the hash of our own bytes must verify"
        assert trusted.type == model.TYPE
        assert trusted.data == model.model_dump(mode="json"), f"event {sequence} ({trusted.type})"
        assert type(model).model_validate(trusted.data) == model
        assert trusted.event_id == str(validated.id)
        assert trusted.case_id == str(validated.subject)
        assert trusted.version == validated.caseversion
        kinds.add(trusted.type)
    # The generator's mix reaches most of the method's event types, not a handful.
    assert len(published) > 1000
    assert len(kinds) >= len(EVENT_TYPES) // 2, sorted(kinds)


@pytest.mark.parametrize("old_type", sorted(UPCASTERS))
def test_old_versions_upcast_as_dicts_equal_the_validated_current_model(old_type: str) -> None:
    payload = json.loads((GOLDEN / f"{old_type}.json").read_text())
    current, data = upcast(old_type, payload)
    model = decode_event(old_type, payload)
    assert current == model.TYPE
    assert data == model.model_dump(mode="json")


def test_a_row_changed_in_the_store_is_caught_by_the_hash_though_it_still_validates(
    generated: CaseEventStore, tmp_path: Path
) -> None:
    path = generated.config.sqlite_path()
    copy = tmp_path / "tampered.sqlite"
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    with closing(sqlite3.connect(copy)) as db, db:  # committed, then closed
        rowid, state = db.execute(
            "SELECT rowid, state FROM stored_events WHERE topic LIKE '%WorksheetCompleted%' LIMIT 1"
        ).fetchone()
        changed = orjson.loads(state)
        changed["data"]["completed_on"] = "2020-01-01"  # a valid date: the schema cannot tell
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            (orjson.dumps(changed, option=orjson.OPT_SORT_KEYS), rowid),
        )
    store = CaseEventStore(StoreConfig(f"sqlite:///{copy}"))
    try:
        (row,) = store.log_rows(rowid - 1, 1)
        body = store.published(row).body
    finally:
        store.close()
    CloudEvent.model_validate_json(body).typed_data()  # validation passes it
    assert decode(body, rowid).hash_ok is False  # the hash does not
