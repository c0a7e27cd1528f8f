"""SharingEnded (stream VSS_SHARE) as a public contract: golden payload, subjects, schema, AsyncAPI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.contracts.test_asyncapi import validate
from vss_contracts import CloudEvent, UnknownEventType, dataschema_for
from vss_contracts.asyncapi import ASYNCAPI_FILE
from vss_contracts.chain import cloud_event_hash
from vss_contracts.jsonschema import SCHEMA_DIR
from vss_contracts.sharing_events import (
    SHARING_EVENTS,
    SharingEnded,
    SharingEndReason,
    decode_sharing_event,
)
from vss_contracts.subjects import (
    HEADER_EVENT_TYPE,
    HEADER_LOG_POSITION,
    HEADER_MSG_ID,
    SHARE_STREAM,
    SHARE_SUBJECTS,
    SHARING_EVENT_SOURCE,
    share_subject,
    share_token,
)

GOLDEN = Path(__file__).parent / "golden"


def golden_text() -> str:
    return (GOLDEN / f"{SharingEnded.TYPE}.json").read_text(encoding="utf-8")


def test_the_golden_payload_decodes_and_re_encodes_identically() -> None:
    payload = json.loads(golden_text())
    decoded = decode_sharing_event(SharingEnded.TYPE, payload)
    assert isinstance(decoded, SharingEnded)
    assert decoded.reason is SharingEndReason.CONSENT_WITHDRAWN_FOR_ORGANISATION
    # The shape is unchanged: adding, renaming or retyping a field is a new event version.
    assert json.dumps(decoded.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n" == golden_text()
    assert {path.name for path in GOLDEN.glob("se.vss.sharing.*.json")} == {
        f"{cls.TYPE}.json" for cls in SHARING_EVENTS
    }


def test_a_bad_payload_or_an_unknown_type_is_refused() -> None:
    payload = json.loads(golden_text())
    with pytest.raises(ValidationError):
        decode_sharing_event(SharingEnded.TYPE, {**payload, "reason": "felt like it"})
    with pytest.raises(ValidationError):
        decode_sharing_event(SharingEnded.TYPE, {**payload, "body": "x"})
    with pytest.raises(UnknownEventType):
        decode_sharing_event("se.vss.sharing.SharingPaused.v1", payload)


def test_subjects_hold_one_token_per_organisation() -> None:
    assert SHARE_STREAM == "VSS_SHARE"
    assert SHARE_SUBJECTS == "vss.share.>"
    assert (
        share_subject("forsakringskassan", "c1", "SipDecided") == "vss.share.forsakringskassan.c1.SipDecided"
    )
    # a dot is allowed in an organisation id but separates subject tokens
    assert share_token("se.2321000131-e1") == "se~2321000131-e1"
    assert share_subject("se.2321000131-e1", "c1", "SharingEnded").split(".")[2] == "se~2321000131-e1"


def test_the_committed_schema_exists() -> None:
    schema = json.loads((SCHEMA_DIR / f"{SharingEnded.TYPE}.json").read_text(encoding="utf-8"))
    assert schema["$id"] == dataschema_for(SharingEnded.TYPE)
    assert set(schema["required"]) >= {"organisation_id", "case_id", "reason", "cause_event_id"}


def _sharing_ended_wire() -> dict[str, Any]:
    payload = json.loads(golden_text())
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": "8a0b7f5e-4c3d-5b2a-9e1f-0d2c4b6a8e10",
        "source": SHARING_EVENT_SOURCE,
        "type": SharingEnded.TYPE,
        "subject": payload["case_id"],
        "time": payload["ended_at"],
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(SharingEnded.TYPE),
        "data": payload,
        "caseversion": 42,
        "logposition": 977,
        "correlationid": "req-2025-09-18-0007",
        "causationid": payload["cause_event_id"],
        "actorid": "vss-sharing",
        "actororg": "vss",
        "actorprincipal": "other",
        "prevhash": "3f9a" * 16,
    }
    return {**body, "eventhash": cloud_event_hash(body)}


def test_a_sharing_ended_cloud_event_validates_against_its_asyncapi_message() -> None:
    doc: dict[str, Any] = json.loads(ASYNCAPI_FILE.read_text(encoding="utf-8"))
    message = doc["components"]["messages"]["SharingEnded_v1"]
    wire = _sharing_ended_wire()
    headers = {
        HEADER_MSG_ID: f"forsakringskassan:{wire['id']}",
        HEADER_EVENT_TYPE: SharingEnded.TYPE,
        HEADER_LOG_POSITION: "12",
    }
    assert validate(doc, message["payload"], wire) == []
    assert validate(doc, message["headers"], headers) == []
    assert validate(doc, message["payload"], {**wire, "source": "/vss/case"})  # another source
    event = CloudEvent.model_validate(wire)
    assert isinstance(decode_sharing_event(event.type, event.data), SharingEnded)
    channel = doc["channels"]["share"]
    assert channel["x-nats-stream"] == SHARE_STREAM
    assert "SharingEnded_v1" in channel["messages"]
    assert "SipDecided_v2" in channel["messages"]
    assert SHARE_STREAM in doc["x-nats-jetstream"]["streams"]
    assert doc["x-nats-jetstream"]["streams"][SHARE_STREAM]["subjects"] == [SHARE_SUBJECTS]
