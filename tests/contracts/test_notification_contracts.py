"""The notification events (stream VSS_NOTIFICATIONS) as public contracts: golden payloads,
the envelope's ``notification_data()``, and what the relay publishes decoding with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from vss_contracts import CloudEvent, UnknownEventType, dataschema_for, webhooks
from vss_contracts.chain import GENESIS_HASH, chain_hash, cloud_event_hash
from vss_contracts.notification_events import (
    NOTIFICATION_EVENT_SOURCE,
    NOTIFICATION_EVENTS,
    NOTIFICATION_SUBJECT_PREFIX,
    DeliveryChannel,
    NotificationAcknowledged,
    NotificationEscalated,
    NotificationEventData,
    NotificationFailed,
    NotificationSent,
    decode_notification_event,
)
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID, case_subject

GOLDEN = Path(__file__).parent / "golden"
CASE_ID = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01")


def _id(cls: type[NotificationEventData]) -> str:
    return cls.event_name()


def golden_text(cls: type[NotificationEventData]) -> str:
    return (GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8")


def golden(cls: type[NotificationEventData]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(golden_text(cls))
    return data


def _body(
    cls: type[NotificationEventData], *, version: int, position: int, prev_hash: str, **changes: Any
) -> dict[str, Any]:
    """A notification event's CloudEvent body as the relay publishes it (``eventhash`` chained)."""
    payload = golden(cls)
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"0d9c8b7a-6f5e-5d4c-8b3a-{version:012d}",
        "source": NOTIFICATION_EVENT_SOURCE,
        "type": cls.TYPE,
        "subject": str(CASE_ID),
        "time": "2025-06-03T12:31:48.550021Z",
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(cls.TYPE),
        "data": payload,
        "caseversion": version,
        "logposition": position,
        "correlationid": payload.get("cause_event_id") or f"0d9c8b7a-6f5e-5d4c-8b3a-{version:012d}",
        "causationid": payload.get("cause_event_id"),
        "actorid": "vss-notifications",
        "actororg": "vss",
        "actorprincipal": "other",
        "prevhash": prev_hash,
        **changes,
    }
    return {**body, "eventhash": cloud_event_hash(body)}


# ========================================================================= golden payloads


def test_there_is_a_golden_payload_per_notification_event_type() -> None:
    names = {path.name for path in GOLDEN.glob("se.vss.notifications.*.json")}
    assert names == {f"{cls.TYPE}.json" for cls in NOTIFICATION_EVENTS}
    assert len(NOTIFICATION_EVENTS) == 4


@pytest.mark.parametrize("cls", NOTIFICATION_EVENTS, ids=_id)
def test_a_golden_notification_payload_decodes_and_re_encodes_identically(
    cls: type[NotificationEventData],
) -> None:
    payload = golden(cls)

    decoded = decode_notification_event(cls.TYPE, payload)

    assert type(decoded) is cls
    # The shape is unchanged: adding, renaming or retyping a field is a new event version.
    assert decoded.model_dump(mode="json") == payload
    assert json.loads(decoded.model_dump_json()) == payload
    # byte for byte, field order included, in the file's layout
    assert json.dumps(decoded.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n" == golden_text(
        cls
    )


def test_golden_notification_payloads_are_realistic() -> None:
    sent = decode_notification_event(NotificationSent.TYPE, golden(NotificationSent))
    assert isinstance(sent, NotificationSent)
    assert sent.channel is DeliveryChannel.EMAIL
    assert sent.message_id == f"<{sent.delivery_key}@vss.se>"  # the e-mail's Message-ID
    assert sent.cause_event_type.startswith("se.vss.meetings.")
    assert (sent.recipient.role, sent.urgent, sent.warning_id) == ("client", False, None)

    failed = decode_notification_event(NotificationFailed.TYPE, golden(NotificationFailed))
    assert isinstance(failed, NotificationFailed)
    assert failed.channel is DeliveryChannel.WEBHOOK
    assert failed.urgent
    assert failed.warning_id is not None
    assert failed.permanent
    assert failed.cause_event_type == "se.vss.case.EarlyWarningTriggered.v1"

    acknowledged = decode_notification_event(NotificationAcknowledged.TYPE, golden(NotificationAcknowledged))
    assert isinstance(acknowledged, NotificationAcknowledged)
    assert acknowledged.warning_id == failed.warning_id  # the same early warning

    escalated = decode_notification_event(NotificationEscalated.TYPE, golden(NotificationEscalated))
    assert isinstance(escalated, NotificationEscalated)
    assert escalated.triggered_at < escalated.escalated_at
    assert escalated.organisation_ids == sorted(escalated.organisation_ids)


def test_the_delivery_record_carries_no_address_and_no_message_content() -> None:
    for cls in NOTIFICATION_EVENTS:
        text = golden_text(cls)
        fields = set(cls.model_fields) | set(golden(cls).get("recipient", {}))
        assert not fields & {"address", "email", "phone", "url", "subject", "body", "text"}, cls.TYPE
        assert "@example" not in text, cls.TYPE
        assert "http" not in text, cls.TYPE


def test_a_notification_payload_with_an_unknown_field_or_type_is_rejected() -> None:
    with pytest.raises(ValidationError):
        decode_notification_event(NotificationSent.TYPE, {**golden(NotificationSent), "body": "Hej!"})
    with pytest.raises(ValidationError):
        decode_notification_event(NotificationSent.TYPE, {**golden(NotificationSent), "channel": "fax"})
    with pytest.raises(ValidationError):
        decode_notification_event(NotificationSent.TYPE, {**golden(NotificationSent), "attempts": 0})
    with pytest.raises(ValidationError):  # no offset
        decode_notification_event(
            NotificationSent.TYPE, {**golden(NotificationSent), "sent_at": "2025-06-01T07:15:03"}
        )
    with pytest.raises(UnknownEventType) as raised:
        decode_notification_event("se.vss.notifications.NotificationRead.v1", {})
    assert raised.value.type_name == "se.vss.notifications.NotificationRead.v1"


# ============================================================================ the envelope


@pytest.mark.parametrize("cls", NOTIFICATION_EVENTS, ids=_id)
def test_notification_data_decodes_the_envelope(cls: type[NotificationEventData]) -> None:
    wire = json.dumps(_body(cls, version=3, position=41, prev_hash="ab" * 32))

    event = CloudEvent.model_validate_json(wire)
    typed = event.notification_data()

    assert type(typed) is cls
    assert typed == cls.model_validate(golden(cls))
    assert (event.source, event.subject, event.caseversion, event.logposition) == (
        NOTIFICATION_EVENT_SOURCE,
        str(CASE_ID),
        3,
        41,
    )
    assert event.dataschema == dataschema_for(cls.TYPE)
    assert event.time == datetime(2025, 6, 3, 12, 31, 48, 550021, tzinfo=UTC)


def test_a_notification_event_is_not_a_case_or_meeting_event() -> None:
    event = CloudEvent.model_validate(_body(NotificationSent, version=1, position=1, prev_hash=GENESIS_HASH))
    with pytest.raises(UnknownEventType):
        event.typed_data()
    with pytest.raises(UnknownEventType):
        event.meeting_data()
    assert isinstance(event.notification_data(), NotificationSent)


def test_a_case_delivery_record_is_a_hash_chain_a_subscriber_can_check() -> None:
    first = _body(NotificationSent, version=1, position=7, prev_hash=GENESIS_HASH)
    second = _body(NotificationAcknowledged, version=2, position=9, prev_hash=first["eventhash"])
    received = [CloudEvent.model_validate_json(json.dumps(body)) for body in (first, second)]

    previous = GENESIS_HASH
    for event in received:
        assert event.prevhash == previous
        assert cloud_event_hash(event.model_dump(mode="json")) == event.eventhash
        previous = event.eventhash

    tampered = {**second, "data": {**second["data"], "acknowledged_at": "2025-06-03T12:59:00Z"}}
    assert cloud_event_hash(tampered) != second["eventhash"]


# ============================================================== what the relay publishes


def test_the_relay_publishes_notification_events_that_decode_with_the_contracts() -> None:
    """NotificationEventLog (the relay's outbox) against the contracts: subject, headers, body, hash."""
    bus = pytest.importorskip("services.notifications.infrastructure.bus")
    outbox = pytest.importorskip("services.shared.bus.outbox")

    kinds: tuple[type[NotificationEventData], ...] = (NotificationSent, NotificationFailed)
    events = []
    previous = GENESIS_HASH
    for version, cls in enumerate(kinds, start=1):
        payload = golden(cls)
        state: dict[str, Any] = {
            "event_id": f"1a2b3c4d-5e6f-5a7b-8c9d-{version:012d}",
            "recorded_at": "2025-06-03T12:31:48.550021+00:00",
            "actor_id": "vss-notifications",
            "actor_organisation": "vss",
            "principal": "other",
            "correlation_id": payload["cause_event_id"],
            "causation_id": payload["cause_event_id"],
            "prev_hash": previous,
            "data": payload,
        }
        state["hash"] = previous = chain_hash(str(CASE_ID), version, cls.TYPE, state)
        events.append(
            outbox.LoggedEvent(
                position=10 + version,
                case_id=str(CASE_ID),
                version=version,
                type=cls.TYPE,
                state=state,
            )
        )

    class Log:
        url = pytest.importorskip("services.shared.eventstore").EventStoreUrl("sqlite:///unused.db")

        def read_log(self, after: int, limit: int) -> list[Any]:
            return [e for e in events if e.position > after][:limit]

    log_ = bus.NotificationEventLog(Log(), bus.notification_bus_names())
    messages = log_.render(log_.fetch(0, 10))

    assert [m.position for m in messages] == [11, 12]
    for message, cls, logged in zip(messages, kinds, events, strict=True):
        assert message.subject == case_subject(CASE_ID, cls.event_name(), prefix=NOTIFICATION_SUBJECT_PREFIX)
        assert message.headers == {
            HEADER_MSG_ID: logged.event_id,
            HEADER_EVENT_TYPE: cls.TYPE,
            HEADER_LOG_POSITION: str(logged.position),
        }
        body = json.loads(message.body)
        event = CloudEvent.model_validate(body)
        assert event.id == message.event_id == logged.event_id
        assert (event.source, event.subject) == (NOTIFICATION_EVENT_SOURCE, str(CASE_ID))
        assert (event.caseversion, event.logposition) == (logged.version, logged.position)
        assert event.notification_data() == cls.model_validate(golden(cls))
        assert cloud_event_hash(body) == event.eventhash == logged.state["hash"]


# ============================================================================== the guide

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "subscribing.md"


def test_the_subscribing_guide_describes_the_delivery_record_and_webhooks() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    record = guide[guide.index("## The delivery record") :]
    for cls in NOTIFICATION_EVENTS:
        assert f"| `{cls.event_name()}` | `{cls.TYPE}` |" in record, cls.TYPE
    assert case_subject("<case id>", "<EventName>", prefix=NOTIFICATION_SUBJECT_PREFIX) in record
    assert NOTIFICATION_EVENT_SOURCE in record
    assert "notification_data()" in record
    hooks = guide[guide.index("## Receiving webhooks") :]
    for name in (
        webhooks.DELIVERY_HEADER,
        webhooks.MESSAGE_ID_HEADER,
        webhooks.TIMESTAMP_HEADER,
        webhooks.SIGNATURE_HEADER,
        f"{webhooks.TOLERANCE_SECONDS} s",
        "verify(",
    ):
        assert name in hooks, name


def test_the_guides_example_event_decodes_and_its_hash_verifies() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    record = guide[guide.index("## The delivery record") :]
    example = record[record.index("```json\n") + len("```json\n") :]
    body = json.loads(example[: example.index("```")])

    event = CloudEvent.model_validate(body)

    assert event.notification_data() == NotificationSent.model_validate(golden(NotificationSent))
    assert cloud_event_hash(body) == event.eventhash
    assert (event.prevhash, event.caseversion) == (GENESIS_HASH, 1)
