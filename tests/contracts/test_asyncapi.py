"""The committed AsyncAPI document of the bus: up to date, complete, self-contained, true to the wire."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parseaddr
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from vss_contracts import CASE_EVENTS, CaseEventData, CloudEvent, case_subject
from vss_contracts import case_events as ev
from vss_contracts.asyncapi import (
    ASYNCAPI_FILE,
    DUPLICATE_WINDOW_SECONDS,
    EMBEDDED_SERVER_HOST,
    drift,
    generate,
)
from vss_contracts.asyncapi import render as render_asyncapi
from vss_contracts.case_events import LEGACY_CASE_EVENTS, SipDecidedV1
from vss_contracts.chain import GENESIS_HASH, cloud_event_hash
from vss_contracts.meeting_events import (
    LEGACY_MEETING_EVENTS,
    MEETING_EVENT_SOURCE,
    MEETING_EVENTS,
    MEETING_STREAM,
    MEETING_SUBJECTS,
    Invitee,
    InviteeRole,
    MeetingEventData,
    MeetingKind,
    MeetingScheduled,
    meeting_subject,
)
from vss_contracts.notification_events import (
    NOTIFICATION_EVENT_SOURCE,
    NOTIFICATION_EVENTS,
    NOTIFICATION_STREAM,
    NOTIFICATION_SUBJECT_PREFIX,
    NOTIFICATION_SUBJECTS,
    NotificationEventData,
    NotificationSent,
)
from vss_contracts.subjects import (
    CASE_STREAM,
    CASE_SUBJECTS,
    DEAD_LETTER_STREAM,
    HEADER_EVENT_TYPE,
    HEADER_LOG_POSITION,
    HEADER_MSG_ID,
    dead_letter_subject,
)
from vss_contracts.types import Principal

GOLDEN = Path(__file__).parent / "golden"
CASE_ID = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01")
EVENT_ID = UUID("9d4f6b2a-1c3e-4a5b-8d7f-0e2a4c6b8d01")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ASYNCAPI_FILE.read_text(encoding="utf-8"))
    return document


def _id(cls: type[CaseEventData]) -> str:
    return cls.event_name()


def _key(cls: type[CaseEventData] | type[MeetingEventData] | type[NotificationEventData]) -> str:
    return f"{cls.event_name()}_v{cls.TYPE.rsplit('.v', 1)[1]}"


def _wire(cls: type[CaseEventData]) -> dict[str, Any]:
    """A golden payload of ``cls`` as the relay publishes it: the CloudEvent body, parsed."""
    payload = json.loads((GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
    event = CloudEvent.for_event(
        event_id=EVENT_ID,
        case_id=CASE_ID,
        case_version=3,
        time=datetime(2025, 3, 14, 8, 45, 12, 345678, tzinfo=UTC),
        data=cls.model_validate(payload),
        actor_id="anna.lindqvist",
        actor_org="vgr-psykiatri-nordost",
        actor_principal=Principal.REGION,
        correlation_id="req-2025-03-14-0001",
        causation_id=None,
        prev_hash="0" * 64,
        event_hash="3f9a" * 16,
        log_position=41,
    )
    wire: dict[str, Any] = json.loads(event.model_dump_json())
    return wire


# =========================================================== a small JSON Schema validator
# The `jsonschema` package is not a dependency. This checks the keywords the document uses
# and refuses any other (so an unchecked keyword can never pass silently).

_ANNOTATIONS = {"title", "description", "default", "examples"}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "integer": int,
    "number": (int, float),
}


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date":
            date.fromisoformat(value)
        elif fmt == "date-time":
            if datetime.fromisoformat(value).tzinfo is None:
                return False
        elif fmt == "uuid":
            UUID(value)
        elif fmt == "email":
            return "@" in parseaddr(value)[1]
        else:
            raise AssertionError(f"unchecked format {fmt!r}")
    except ValueError:
        return False
    return True


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = document
    for token in ref[2:].split("/"):
        part = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def validate(document: dict[str, Any], schema: Any, value: Any, path: str = "$") -> list[str]:
    """The errors of ``value`` against ``schema`` (``$ref``s resolved in ``document``)."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: not allowed"]
    errors: list[str] = []
    for key, rule in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "$ref":
            errors += validate(document, _resolve(document, rule), value, path)
        elif key == "allOf":
            for sub in rule:
                errors += validate(document, sub, value, path)
        elif key == "anyOf":
            if all(validate(document, sub, value, path) for sub in rule):
                errors.append(f"{path}: matches none of anyOf")
        elif key == "oneOf":
            matching = sum(not validate(document, sub, value, path) for sub in rule)
            if matching != 1:
                errors.append(f"{path}: matches {matching} of oneOf, not exactly one")
        elif key == "type":
            expected = _TYPES[rule]
            if not isinstance(value, expected) or (isinstance(value, bool) and rule in {"integer", "number"}):
                errors.append(f"{path}: {value!r} is not {rule}")
        elif key == "const":
            if value != rule:
                errors.append(f"{path}: {value!r} != {rule!r}")
        elif key == "enum":
            if value not in rule:
                errors.append(f"{path}: {value!r} not in {rule!r}")
        elif key == "required":
            if isinstance(value, dict):
                errors += [f"{path}: {name!r} is required" for name in rule if name not in value]
        elif key == "properties":
            if isinstance(value, dict):
                for name, sub in rule.items():
                    if name in value:
                        errors += validate(document, sub, value[name], f"{path}.{name}")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                known = set(schema.get("properties", {}))
                for name in set(value) - known:
                    errors += validate(document, rule, value[name], f"{path}.{name}")
        elif key == "items":
            if isinstance(value, list):
                for index, item in enumerate(value):
                    errors += validate(document, rule, item, f"{path}[{index}]")
        elif key in {"minItems", "maxItems"}:
            if isinstance(value, list) and not (
                len(value) >= rule if key == "minItems" else len(value) <= rule
            ):
                errors.append(f"{path}: {len(value)} items breaks {key} {rule}")
        elif key in {"minLength", "maxLength"}:
            if isinstance(value, str) and not (
                len(value) >= rule if key == "minLength" else len(value) <= rule
            ):
                errors.append(f"{path}: length {len(value)} breaks {key} {rule}")
        elif key in {"minimum", "maximum"}:
            if isinstance(value, int | float) and not (value >= rule if key == "minimum" else value <= rule):
                errors.append(f"{path}: {value} breaks {key} {rule}")
        elif key == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                errors.append(f"{path}: {value!r} does not match {rule}")
        elif key == "format":
            if isinstance(value, str) and not _format_ok(rule, value):
                errors.append(f"{path}: {value!r} is not a {rule}")
        else:
            raise AssertionError(f"the test validator does not check {key!r} (at {path})")
    return errors


def _refs(node: Any, at: str = "#") -> list[tuple[str, str]]:
    """Every ``($ref, where)`` in the document."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.append((value, at))
            else:
                found += _refs(value, f"{at}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _refs(item, f"{at}/{index}")
    return found


# ================================================================================ drift


def test_the_committed_asyncapi_document_matches_the_code() -> None:
    assert drift() == [], (
        f"{ASYNCAPI_FILE.name} is not what the code generates: run python -m vss_contracts.asyncapi --write"
    )
    assert json.loads(ASYNCAPI_FILE.read_text(encoding="utf-8")) == generate()


def test_drift_names_a_stale_or_missing_document(tmp_path: Path) -> None:
    path = tmp_path / "asyncapi" / ASYNCAPI_FILE.name
    assert drift(path) == [ASYNCAPI_FILE.name]  # missing

    path.parent.mkdir()
    path.write_text(render_asyncapi(generate()), encoding="utf-8")
    assert drift(path) == []

    path.write_text(path.read_text(encoding="utf-8").replace('"3.0.0"', '"2.6.0"'), encoding="utf-8")
    assert drift(path) == [ASYNCAPI_FILE.name]


# ============================================================================ structure


def test_it_is_an_asyncapi_3_document_of_this_package(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == version("vss-contracts")
    assert doc["info"]["title"]
    for topic in ("CloudEvents", "atomic batch", HEADER_MSG_ID, "any stream sequence", CASE_STREAM):
        assert topic in doc["info"]["description"], topic
    assert doc["defaultContentType"] == "application/cloudevents+json"
    [server] = doc["servers"].values()
    assert server["protocol"] == "nats"
    assert server["host"] == EMBEDDED_SERVER_HOST
    assert "embedded" in server["title"].lower()


def test_every_event_type_has_a_channel_a_message_and_two_operations(doc: dict[str, Any]) -> None:
    channels, messages, operations = doc["channels"], doc["components"]["messages"], doc["operations"]
    for cls in CASE_EVENTS:
        name, key = cls.event_name(), _key(cls)
        channel = channels[name]
        assert channel["x-nats-stream"] == CASE_STREAM
        # The current version, and any earlier one still on the stream as published.
        versions = [key, *(_key(e) for e in LEGACY_CASE_EVENTS if e.event_name() == name)]
        assert channel["messages"] == {k: {"$ref": f"#/components/messages/{k}"} for k in versions}
        assert messages[key]["name"] == cls.TYPE
        assert messages[key]["contentType"] == "application/cloudevents+json"
        actions = {
            op["action"] for op in operations.values() if op["channel"] == {"$ref": f"#/channels/{name}"}
        }
        assert actions == {"send", "receive"}
    every: tuple[type[CaseEventData] | type[MeetingEventData] | type[NotificationEventData], ...] = (
        *CASE_EVENTS,
        *MEETING_EVENTS,
        *NOTIFICATION_EVENTS,
    )
    assert {name for name in channels if name not in ("deadLetter", "share")} == {
        cls.event_name() for cls in every
    }
    assert {key for key in messages if key not in ("DeadLetter", "SharingEnded_v1")} == {
        _key(cls) for cls in (*every, *LEGACY_CASE_EVENTS, *LEGACY_MEETING_EVENTS)
    }
    assert messages["SipDecided_v1"]["name"] == "se.vss.case.SipDecided.v1"


def test_a_v1_sip_as_published_validates_against_its_message_and_not_the_v2_one(doc: dict[str, Any]) -> None:
    """A subscriber validating with the document accepts the SIPs published before v2."""
    v1 = json.loads((GOLDEN / f"{SipDecidedV1.TYPE}.json").read_text(encoding="utf-8"))
    body = {
        "specversion": "1.0",
        "id": str(CASE_ID),
        "source": "/vss/case",
        "type": SipDecidedV1.TYPE,
        "subject": str(CASE_ID),
        "time": "2025-03-03T09:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": f"urn:vss:schema:{SipDecidedV1.TYPE}",
        "data": v1,
        "caseversion": 12,
        "logposition": 40,
        "correlationid": "c",
        "causationid": None,
        "actorid": "anna.lindqvist",
        "actororg": "vgr-psykiatri-nordost",
        "actorprincipal": "region",
        "prevhash": "0" * 64,
        "eventhash": "1" * 64,
    }
    messages = doc["components"]["messages"]
    assert validate(doc, messages["SipDecided_v1"]["payload"], body) == []
    assert validate(doc, messages["SipDecided_v2"]["payload"], body)


def test_every_meeting_event_type_has_a_channel_a_message_and_two_operations(doc: dict[str, Any]) -> None:
    channels, messages, operations = doc["channels"], doc["components"]["messages"], doc["operations"]
    for cls in MEETING_EVENTS:
        name, key = cls.event_name(), _key(cls)
        channel = channels[name]
        assert channel["x-nats-stream"] == MEETING_STREAM
        assert channel["address"] == meeting_subject("{caseId}", name)
        assert channel["address"].replace("{caseId}", str(CASE_ID)) == meeting_subject(CASE_ID, name)
        # The current version, and any earlier one still on the stream as published.
        versions = [key, *(_key(e) for e in LEGACY_MEETING_EVENTS if e.event_name() == name)]
        assert channel["messages"] == {k: {"$ref": f"#/components/messages/{k}"} for k in versions}
        assert messages[key]["name"] == cls.TYPE
        assert messages[key]["contentType"] == "application/cloudevents+json"
        assert messages[key]["headers"]["allOf"][0] == {"$ref": "#/components/schemas/MeetingEventHeaders"}
        assert cls.TYPE in doc["components"]["schemas"]
        actions = {
            op["action"] for op in operations.values() if op["channel"] == {"$ref": f"#/channels/{name}"}
        }
        assert actions == {"send", "receive"}
    assert {name for name, channel in channels.items() if channel["x-nats-stream"] == MEETING_STREAM} == {
        cls.event_name() for cls in MEETING_EVENTS
    }


def test_the_meetings_stream_is_described(doc: dict[str, Any]) -> None:
    description = doc["info"]["description"]
    for topic in (
        MEETING_STREAM,
        meeting_subject("<caseId>", "<EventName>"),
        MEETING_EVENT_SOURCE,
        "meeting_data()",
        "cloud_event_hash",
        "Europe/Stockholm",
        "same ids",
    ):
        assert topic in description, topic
    meetings = doc["x-nats-jetstream"]["streams"][MEETING_STREAM]
    assert meetings["subjects"] == [MEETING_SUBJECTS]
    assert (meetings["retention"], meetings["maxAge"], meetings["maxMsgs"]) == ("limits", 0, -1)
    assert meetings["duplicateWindowSeconds"] == DUPLICATE_WINDOW_SECONDS
    assert meetings["allowAtomicPublish"] is True
    headers = doc["components"]["schemas"]["MeetingEventHeaders"]
    assert headers["required"] == [HEADER_MSG_ID, HEADER_EVENT_TYPE, HEADER_LOG_POSITION]
    assert "meetings store" in headers["properties"][HEADER_LOG_POSITION]["description"]


def test_every_notification_event_type_has_a_channel_a_message_and_two_operations(
    doc: dict[str, Any],
) -> None:
    channels, messages, operations = doc["channels"], doc["components"]["messages"], doc["operations"]
    for cls in NOTIFICATION_EVENTS:
        name, key = cls.event_name(), _key(cls)
        channel = channels[name]
        assert channel["x-nats-stream"] == NOTIFICATION_STREAM
        assert channel["address"] == case_subject("{caseId}", name, prefix=NOTIFICATION_SUBJECT_PREFIX)
        assert channel["address"].replace("{caseId}", str(CASE_ID)) == f"vss.notifications.{CASE_ID}.{name}"
        assert "notification_data()" in channel["description"]
        assert channel["messages"] == {key: {"$ref": f"#/components/messages/{key}"}}
        assert messages[key]["name"] == cls.TYPE
        assert messages[key]["contentType"] == "application/cloudevents+json"
        assert messages[key]["headers"]["allOf"][0] == {
            "$ref": "#/components/schemas/NotificationEventHeaders"
        }
        assert messages[key]["payload"]["allOf"][1]["properties"]["source"] == {
            "const": NOTIFICATION_EVENT_SOURCE
        }
        assert cls.TYPE in doc["components"]["schemas"]
        actions = {
            op["action"] for op in operations.values() if op["channel"] == {"$ref": f"#/channels/{name}"}
        }
        assert actions == {"send", "receive"}
    assert {
        name for name, channel in channels.items() if channel["x-nats-stream"] == NOTIFICATION_STREAM
    } == {cls.event_name() for cls in NOTIFICATION_EVENTS}


def test_the_notifications_stream_is_described(doc: dict[str, Any]) -> None:
    description = doc["info"]["description"]
    for topic in (
        NOTIFICATION_STREAM,
        case_subject("<caseId>", "<EventName>", prefix=NOTIFICATION_SUBJECT_PREFIX),
        NOTIFICATION_SUBJECTS,
        NOTIFICATION_EVENT_SOURCE,
        "notification_data()",
        "delivery record",
        "notifications store",
        "X-VSS-Delivery",
        "no message content",
        *(cls.event_name() for cls in NOTIFICATION_EVENTS),
    ):
        assert topic in description, topic
    stream = doc["x-nats-jetstream"]["streams"][NOTIFICATION_STREAM]
    assert stream["subjects"] == [NOTIFICATION_SUBJECTS]
    assert (stream["retention"], stream["maxAge"], stream["maxMsgs"]) == ("limits", 0, -1)
    assert stream["duplicateWindowSeconds"] == DUPLICATE_WINDOW_SECONDS
    assert stream["allowAtomicPublish"] is True
    for topic in ("notifications service's relay", "never create", "no message content", "who was told what"):
        assert topic in stream["description"], topic
    headers = doc["components"]["schemas"]["NotificationEventHeaders"]
    assert headers["required"] == [HEADER_MSG_ID, HEADER_EVENT_TYPE, HEADER_LOG_POSITION]
    assert "notifications store" in headers["properties"][HEADER_LOG_POSITION]["description"]
    assert NotificationSent.TYPE in headers["properties"][HEADER_EVENT_TYPE]["description"]


@pytest.mark.parametrize("cls", CASE_EVENTS, ids=_id)
def test_channel_addresses_are_the_published_subjects(doc: dict[str, Any], cls: type[CaseEventData]) -> None:
    channel = doc["channels"][cls.event_name()]

    assert channel["address"] == case_subject("{caseId}", cls.event_name())
    assert channel["address"].replace("{caseId}", str(CASE_ID)) == case_subject(CASE_ID, cls.event_name())
    assert set(channel["parameters"]) == {"caseId"}


def test_the_dead_letter_channel(doc: dict[str, Any]) -> None:
    channel = doc["channels"]["deadLetter"]
    original = case_subject(CASE_ID, "SipDecided")

    assert channel["x-nats-stream"] == DEAD_LETTER_STREAM
    assert channel["address"] == dead_letter_subject("{consumer}", "{originalSubject}")
    assert channel["address"].format(consumer="projections", originalSubject=original) == dead_letter_subject(
        "projections", original
    )
    assert set(channel["parameters"]) == {"consumer", "originalSubject"}
    assert {
        op["action"] for op in doc["operations"].values() if op["channel"]["$ref"] == "#/channels/deadLetter"
    } == {
        "send",
        "receive",
    }


def test_names_and_references_follow_the_asyncapi_rules(doc: dict[str, Any]) -> None:
    for section in (doc["channels"], doc["operations"], doc["servers"]):
        for key in section:
            assert re.fullmatch(r"[A-Za-z0-9_\-]+", key), key
    for section in doc["components"].values():
        for key in section:
            assert re.fullmatch(r"[a-zA-Z0-9.\-_]+", key), key
    for channel in doc["channels"].values():  # every {parameter} of an address is declared, and only those
        assert set(re.findall(r"{([^}]+)}", channel["address"])) == set(channel["parameters"])
    for name, operation in doc["operations"].items():  # 3.0: an operation's messages are its channel's
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel}/messages/"), name


def test_every_reference_resolves_inside_the_document(doc: dict[str, Any]) -> None:
    refs = _refs(doc)
    assert len(refs) > 100
    for ref, where in refs:
        assert ref.startswith("#/"), f"{where}: {ref} points outside the document"
        _resolve(doc, ref)
    assert "$defs" not in json.dumps(doc)  # every pydantic $defs was hoisted into components


def test_the_stream_facts(doc: dict[str, Any]) -> None:
    streams = doc["x-nats-jetstream"]["streams"]
    case = streams[CASE_STREAM]
    assert case["subjects"] == [CASE_SUBJECTS]
    assert (case["retention"], case["maxAge"], case["maxMsgs"], case["maxBytes"]) == ("limits", 0, -1, -1)
    assert case["duplicateWindowSeconds"] == DUPLICATE_WINDOW_SECONDS
    assert case["allowAtomicPublish"] is True
    assert DEAD_LETTER_STREAM in streams


def test_the_stream_facts_are_what_the_relay_declares() -> None:
    """The document cannot import the services; this keeps its copies of their facts honest."""
    streams = pytest.importorskip("services.shared.bus.streams")
    from nats.js.api import RetentionPolicy  # noqa: PLC0415

    from services.shared.bus.names import BusNames  # noqa: PLC0415
    from services.shared.settings import EMBEDDED_NATS_PORT  # noqa: PLC0415

    config = streams.case_stream_config(BusNames())
    assert config.name == CASE_STREAM
    assert config.subjects == [CASE_SUBJECTS]
    assert config.retention == RetentionPolicy.LIMITS
    assert config.max_age in (0, None)
    assert config.duplicate_window == DUPLICATE_WINDOW_SECONDS
    assert config.allow_atomic is True
    assert f"127.0.0.1:{EMBEDDED_NATS_PORT}" == EMBEDDED_SERVER_HOST

    bus = pytest.importorskip("services.meetings.infrastructure.bus")
    meetings = streams.case_stream_config(bus.meeting_bus_names())  # the relay declares it so
    assert meetings.name == MEETING_STREAM
    assert meetings.subjects == [MEETING_SUBJECTS]

    notifications_bus = pytest.importorskip("services.notifications.infrastructure.bus")
    notifications = streams.case_stream_config(notifications_bus.notification_bus_names())
    assert notifications.name == NOTIFICATION_STREAM
    assert notifications.subjects == [NOTIFICATION_SUBJECTS]
    assert notifications.duplicate_window == DUPLICATE_WINDOW_SECONDS
    assert notifications.allow_atomic is True


# ============================================================= the wire against the document


@pytest.mark.parametrize("cls", CASE_EVENTS, ids=_id)
def test_a_golden_cloud_event_validates_against_its_message(
    doc: dict[str, Any], cls: type[CaseEventData]
) -> None:
    message = doc["components"]["messages"][_key(cls)]
    wire = _wire(cls)
    headers = {HEADER_MSG_ID: wire["id"], HEADER_EVENT_TYPE: wire["type"], HEADER_LOG_POSITION: "41"}

    assert validate(doc, message["payload"], wire) == []
    assert validate(doc, message["headers"], headers) == []
    # and the document's schema agrees with the models a subscriber decodes with
    assert type(CloudEvent.model_validate(wire).typed_data()) is cls


def test_the_message_schemas_reject_what_the_models_reject(doc: dict[str, Any]) -> None:
    opened = doc["components"]["messages"][_key(ev.CaseOpened)]
    wire = _wire(ev.CaseOpened)

    def errors(**changes: Any) -> list[str]:
        return validate(doc, opened["payload"], {**wire, **changes})

    assert errors() == []
    assert errors(data=_wire(ev.SipDecided)["data"])  # another event's data
    assert errors(type=ev.SipDecided.TYPE)  # another type on this channel
    assert errors(eventhash="not-a-sha256")
    assert errors(caseversion=0)
    assert errors(time="2025-03-14T08:45:12")  # no offset
    assert errors(unexpected="field")
    assert errors(data={**wire["data"], "region": {"code": "14"}})  # a required field missing
    without_id = {k: v for k, v in wire.items() if k != "id"}
    assert validate(doc, opened["payload"], without_id) == ["$: 'id' is required"]

    headers = {HEADER_MSG_ID: wire["id"], HEADER_EVENT_TYPE: ev.SipDecided.TYPE, HEADER_LOG_POSITION: "41"}
    assert validate(doc, opened["headers"], headers)
    assert validate(
        doc, opened["headers"], {HEADER_MSG_ID: wire["id"], HEADER_EVENT_TYPE: ev.CaseOpened.TYPE}
    )


def test_a_meeting_cloud_event_validates_against_its_message(doc: dict[str, Any]) -> None:
    stockholm = timezone(timedelta(hours=2))  # summer time
    data = MeetingScheduled(
        meeting_id=UUID("0b8e3c1a-6d2f-4e7a-9b15-3c4d5e6f7a80"),
        kind=MeetingKind.RESOURCE_GROUP,
        starts_at=datetime(2025, 6, 10, 10, 0, tzinfo=stockholm),
        ends_at=datetime(2025, 6, 10, 11, 0, tzinfo=stockholm),
        invitees=[Invitee(invitee_id="member:1", name="Karin Berg", role=InviteeRole.CLIENT)],
        reason="sip_follow_up",
        sip_version=1,
    )
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(EVENT_ID),
        "source": MEETING_EVENT_SOURCE,
        "type": MeetingScheduled.TYPE,
        "subject": str(CASE_ID),
        "time": "2025-06-01T09:15:00+02:00",
        "datacontenttype": "application/json",
        "dataschema": f"urn:vss:schema:{MeetingScheduled.TYPE}",
        "data": data.model_dump(mode="json"),
        "caseversion": 1,
        "logposition": 7,
        "correlationid": "req-2025-06-01-0001",
        "causationid": None,
        "actorid": "system",
        "actororg": "vss",
        "actorprincipal": "region",
        "prevhash": GENESIS_HASH,
    }
    wire = {**body, "eventhash": cloud_event_hash(body)}
    message = doc["components"]["messages"][_key(MeetingScheduled)]
    headers = {HEADER_MSG_ID: wire["id"], HEADER_EVENT_TYPE: wire["type"], HEADER_LOG_POSITION: "7"}

    assert validate(doc, message["payload"], wire) == []
    assert validate(doc, message["headers"], headers) == []
    assert CloudEvent.model_validate(wire).meeting_data() == data
    assert validate(doc, message["payload"], {**wire, "source": "/vss/case"})  # not a case event
    assert validate(doc, message["payload"], {**wire, "type": ev.SipDecided.TYPE})
    assert validate(
        doc, message["payload"], {**wire, "data": {**wire["data"], "starts_at": "2025-06-10T10:00:00"}}
    )
    assert validate(doc, message["headers"], {**headers, HEADER_EVENT_TYPE: ev.SipDecided.TYPE})


@pytest.mark.parametrize("cls", NOTIFICATION_EVENTS, ids=_id)
def test_a_golden_notification_cloud_event_validates_against_its_message(
    doc: dict[str, Any], cls: type[NotificationEventData]
) -> None:
    data = json.loads((GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": "1a2b3c4d-5e6f-5a7b-8c9d-0e1f2a3b4c5d",
        "source": NOTIFICATION_EVENT_SOURCE,
        "type": cls.TYPE,
        "subject": str(CASE_ID),
        "time": "2025-06-03T12:31:48.550021Z",
        "datacontenttype": "application/json",
        "dataschema": f"urn:vss:schema:{cls.TYPE}",
        "data": data,
        "caseversion": 2,
        "logposition": 12,
        "correlationid": data.get("cause_event_id") or "1a2b3c4d-5e6f-5a7b-8c9d-0e1f2a3b4c5d",
        "causationid": data.get("cause_event_id"),
        "actorid": "vss-notifications",
        "actororg": "vss",
        "actorprincipal": "other",
        "prevhash": "ab" * 32,
    }
    wire = {**body, "eventhash": cloud_event_hash(body)}
    message = doc["components"]["messages"][_key(cls)]
    headers = {HEADER_MSG_ID: wire["id"], HEADER_EVENT_TYPE: wire["type"], HEADER_LOG_POSITION: "12"}

    assert validate(doc, message["payload"], wire) == []
    assert validate(doc, message["headers"], headers) == []
    assert type(CloudEvent.model_validate(wire).notification_data()) is cls
    assert validate(doc, message["payload"], {**wire, "source": MEETING_EVENT_SOURCE})  # another stream's
    assert validate(doc, message["payload"], {**wire, "type": ev.SipDecided.TYPE})
    assert validate(doc, message["payload"], {**wire, "data": {**data, "unexpected": "field"}})
    assert validate(doc, message["headers"], {**headers, HEADER_EVENT_TYPE: ev.SipDecided.TYPE})


def test_the_subscribing_guide_names_every_event_type_and_its_subject() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "subscribing.md").read_text(encoding="utf-8")
    for cls in CASE_EVENTS:
        assert f"| `{cls.event_name()}` | `{cls.TYPE}` |" in guide, cls.TYPE
    assert CASE_STREAM in guide
    assert case_subject("<case id>", "<EventName>") in guide
    assert ASYNCAPI_FILE.name in guide
