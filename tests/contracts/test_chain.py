"""The contracts' chain definition: subscribers recompute every event's hash from what they receive."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.case.application.service import CaseService
from services.case.domain.events import canonical_bytes
from services.case.infrastructure.store import CaseEventStore
from tests.support.clock import FixedClock
from tests.support.scenario import drive_to_first_sip
from vss_contracts.chain import canonical_json, cloud_event_hash

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_the_stdlib_encoder_gives_the_bytes_the_store_hashes(value: object) -> None:
    assert canonical_json(value) == canonical_bytes(value)


def test_a_published_event_recomputes_to_its_stored_hash(
    service: CaseService, store: CaseEventStore, clock: FixedClock
) -> None:
    drive_to_first_sip(service, clock)
    published = store.published_log(0)
    assert len(published) == len(store.read_log(0))
    for row in published:
        event = orjson.loads(row.body)
        assert cloud_event_hash(event) == event["eventhash"]
        assert cloud_event_hash(event, dumps=canonical_bytes) == event["eventhash"]
        tampered = {**event, "data": {**event["data"], "x": 1}}
        assert cloud_event_hash(tampered) != event["eventhash"]
