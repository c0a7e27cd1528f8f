"""Every stored event maps to the public CloudEvent: the stored fact is the published fact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from services.case.application.service import CaseService
from services.case.domain.events import RawEvent, verify_chain
from services.case.infrastructure.store import CaseEventStore
from services.shared.bus.outbox import wire_time
from tests.support.clock import FixedClock
from tests.support.scenario import FIRST_SIP_EVENT_TYPES, drive_to_first_sip
from vss_contracts import CloudEvent, case_subject
from vss_contracts.envelope import dataschema_for
from vss_contracts.jsonschema import SCHEMA_DIR

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def test_every_stored_event_is_a_valid_cloudevent_that_round_trips(
    service: CaseService, store: CaseEventStore, clock: FixedClock
) -> None:
    scenario = drive_to_first_sip(service, clock)
    events = [store.cloud_event(n) for n in store.read_log(0)]

    assert [e.type for e in events] == list(FIRST_SIP_EVENT_TYPES)
    for event, entry in zip(events, store.history(scenario.case_id, 0, 100), strict=True):  # type: ignore[arg-type]
        wire = CloudEvent.model_validate_json(event.model_dump_json())
        assert wire == event
        assert wire.subject == str(scenario.case_id)
        assert wire.id == str(entry.event_id)
        assert (wire.caseversion, wire.logposition) == (entry.version, entry.position)
        assert wire.dataschema == dataschema_for(wire.type)
        assert wire.actorid == entry.actor_id
        assert wire.typed_data().model_dump(mode="json") == entry.data
        assert case_subject(wire.subject, type(wire.typed_data()).event_name()).startswith("vss.case.")
    # A subscriber can check the chain from the published events alone.
    raw = [
        RawEvent(
            scenario.case_id,  # type: ignore[arg-type]
            e.caseversion,
            e.type,
            {
                "event_id": e.id,
                "recorded_at": e.time.isoformat(),
                "actor_id": e.actorid,
                "actor_organisation": e.actororg,
                "principal": e.actorprincipal,
                "correlation_id": e.correlationid,
                "causation_id": e.causationid,
                "prev_hash": e.prevhash,
                "data": e.data,
                "hash": e.eventhash,
            },
        )
        for e in events
    ]
    assert verify_chain(scenario.case_id, raw) is None  # type: ignore[arg-type]


def test_the_relays_fast_rendering_is_the_contracts_serialisation_key_for_key(service, store, clock) -> None:  # type: ignore[no-untyped-def]
    from tests.support.scenario import drive_to_first_sip  # noqa: PLC0415

    drive_to_first_sip(service, clock)
    log = store.read_log(0, 100)
    published = store.published_log(0, 100)
    assert [p.position for p in published] == [n.id for n in log]
    for notification, event in zip(log, published, strict=True):
        expected = store.cloud_event(notification)
        assert orjson.loads(event.body) == orjson.loads(expected.model_dump_json())
        addressed = (event.event_id, event.case_id, event.type_name)
        assert addressed == (expected.id, expected.subject, expected.type)
    assert [p.position for p in store.published_log(log[3].id, 2)] == [n.id for n in log[4:6]]


@given(st.datetimes(timezones=st.sampled_from([UTC, STOCKHOLM])))
def test_a_stored_time_is_written_as_the_contracts_write_it(moment: datetime) -> None:
    wire = orjson.dumps({"time": wire_time(moment.isoformat())}, option=orjson.OPT_UTC_Z)
    assert orjson.loads(wire)["time"] == TypeAdapter(datetime).dump_python(moment, mode="json")


def test_every_published_body_carries_what_the_envelope_schema_requires(
    service: CaseService, store: CaseEventStore, clock: FixedClock
) -> None:
    """The committed envelope schema requires what CloudEvents requires, and the relay's bodies have it."""
    schema = json.loads((SCHEMA_DIR / "se.vss.CloudEvent.json").read_text(encoding="utf-8"))
    assert {"specversion", "source", "id", "type"} <= set(schema["required"])
    assert schema["$id"] == "urn:vss:schema:se.vss.CloudEvent"
    drive_to_first_sip(service, clock)
    for event in store.published_log(0, 100):
        body = orjson.loads(event.body)
        assert set(schema["required"]) <= set(body) <= set(schema["properties"])
        assert (body["specversion"], body["source"]) == ("1.0", "/vss/case")
