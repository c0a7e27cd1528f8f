"""Generate the committed AsyncAPI 3.0 document of the bus from the code.

``python -m vss_contracts.asyncapi --write`` regenerates
``vss_contracts/asyncapi/vss-bus.asyncapi.json``; ``--check`` exits non-zero when the
committed file differs from the code (CI runs a test that does the same).

Everything comes from the contracts: the event models (their JSON Schemas, hoisted into
``components/schemas`` with every ``$ref`` rewritten to point inside the document), the
envelope, and the stream, subject and header names of :mod:`vss_contracts.subjects` (the
case stream), :mod:`vss_contracts.meeting_events` (the meetings stream) and
:mod:`vss_contracts.notification_events` (the delivery record's stream).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from vss_contracts.case_events import CASE_EVENTS, LEGACY_CASE_EVENTS, CaseEventData, SipDecided
from vss_contracts.envelope import CloudEvent, dataschema_for
from vss_contracts.meeting_events import (
    LEGACY_MEETING_EVENTS,
    MEETING_EVENT_SOURCE,
    MEETING_EVENTS,
    MEETING_STREAM,
    MEETING_SUBJECT_PREFIX,
    MEETING_SUBJECTS,
    MeetingEventData,
    MeetingScheduled,
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
from vss_contracts.sharing_events import SharingEnded, SharingEndReason
from vss_contracts.signing import KEY_SET_PATH
from vss_contracts.subjects import (
    CASE_EVENT_SOURCE,
    CASE_STREAM,
    CASE_SUBJECT_PREFIX,
    CASE_SUBJECTS,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_PREFIX,
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
    HEADER_EVENT_TYPE,
    HEADER_LOG_POSITION,
    HEADER_MSG_ID,
    SHARE_STREAM,
    SHARE_SUBJECT_PREFIX,
    SHARE_SUBJECTS,
    SHARING_EVENT_SOURCE,
    case_subject,
    dead_letter_subject,
)

__all__ = ["ASYNCAPI_FILE", "drift", "generate", "main", "render", "write"]

ASYNCAPI_FILE = Path(__file__).parent / "asyncapi" / "vss-bus.asyncapi.json"
CONTENT_TYPE = "application/cloudevents+json"
DISTRIBUTION = "vss-contracts"

# Facts of the deployment the document describes. The case, meetings and notifications streams
# are declared by the relay (services/shared/bus/streams.py; a test checks these against it).
EMBEDDED_SERVER_HOST = "127.0.0.1:4422"  # `vss up`'s nats-server (not 4222: leave that to others)
DUPLICATE_WINDOW_SECONDS = 120

_SCHEMAS = "#/components/schemas/"
_DEFS = "#/$defs/"

CASE_ID = "caseId"
ORGANISATION = "organisation"
EVENT_NAME = "eventName"
SHARE_CHANNEL = "share"
CONSUMER = "consumer"
ORIGINAL_SUBJECT = "originalSubject"

DESCRIPTION = f"""\
The case, meeting and notification events of VSS (*vård- och stödsamordning*) on NATS JetStream.

Every event the case service stores is published, once, to the stream `{CASE_STREAM}` on
the subject `{case_subject("<caseId>", "<EventName>")}` (filter one case with
`{CASE_SUBJECT_PREFIX}.<caseId>.>`, one kind of event with `{case_subject("*", "SipDecided")}`,
everything with `{CASE_SUBJECTS}`).

**Format.** The body is a CloudEvents 1.0 event in structured JSON mode
(`{CONTENT_TYPE}`): `id` (the event id), `source` (`{CASE_EVENT_SOURCE}`), `type` (the versioned
type, e.g. `{SipDecided.TYPE}`), `subject` (the case id), `time`, `dataschema`
(`{dataschema_for("<type>")}`, the `$id` of the type's JSON Schema) and `data` (the event), plus
the extension attributes `caseversion`, `logposition`, `correlationid`, `causationid`, `actorid`,
`actororg`, `actorprincipal`, `prevhash` and `eventhash`. Headers repeat what routing and
de-duplication need: `{HEADER_MSG_ID}`, `{HEADER_EVENT_TYPE}`, `{HEADER_LOG_POSITION}`.

**Signatures.** The last event of each commit also carries `vsssig`, the case service's Ed25519
signature (base64url) over the bytes `vss-commit-v1:` + its `eventhash`, and `vsskeyid`, the id of
the key; the public keys are a JWKS at the case API's `{KEY_SET_PATH}` (`vss keys export`). The
hash input and the signature are specified, with test vectors, in docs/verifying.md;
`vss_contracts.verification.verify_case` checks a case's events with the keys alone.

**Ordering.** The stream holds the events in the order of the case store's log: each case's
events in `caseversion` order (1, 2, 3 … without gaps), and the events one command committed
together as one JetStream atomic batch, so a subscriber never sees half of a commit.

**Idempotency.** `{HEADER_MSG_ID}` is the event id, so JetStream drops a repeated publish within
its duplicate window; a subscriber must still de-duplicate by the CloudEvent `id` (or by stream
sequence), storing what it has applied in the same transaction as its own state.

**Replay.** The stream keeps the full history (limits retention, no age limit): a consumer may
start at any stream sequence (or time) and read forward.

**Versions.** A changed event shape is a new `type` (`….v2`); old versions stay on the stream as
they were published and are upcast by `vss_contracts` (`CloudEvent.typed_data()`).

**Meetings.** Each case's meeting schedule is published by the meetings service, through the
same relay (in order, once, each commit whole), to the stream `{MEETING_STREAM}` on the subject
`{case_subject("<caseId>", "<EventName>", prefix=MEETING_SUBJECT_PREFIX)}` (e.g.
`{case_subject("<caseId>", MeetingScheduled.event_name(), prefix=MEETING_SUBJECT_PREFIX)}`; everything with
`{MEETING_SUBJECTS}`), in the same envelope and with the same headers, with `source`
`{MEETING_EVENT_SOURCE}`; `{HEADER_LOG_POSITION}` is the position in the meetings store's log.
There `caseversion` is the event's position in the case's *meeting schedule* stream, which has
its own hash chain (`prevhash`/`eventhash`, recomputable with
`vss_contracts.chain.cloud_event_hash`); `CloudEvent.meeting_data()` gives the typed payload.
Times are aware datetimes with the Europe/Stockholm offset of the day (a meeting at 10:00 stays
at 10:00 local across the daylight-saving change). Event ids are derived from what caused the
event (the case event, the timer, the request), so a replay produces the same ids.

**Notifications.** The delivery record of the notifications service (who was told what, when,
on which channel) is published by that service's relay, in the same way (in order, once, each
commit whole), to the stream `{NOTIFICATION_STREAM}` on the subject
`{case_subject("<caseId>", "<EventName>", prefix=NOTIFICATION_SUBJECT_PREFIX)}` (e.g.
`{case_subject("<caseId>", NotificationSent.event_name(), prefix=NOTIFICATION_SUBJECT_PREFIX)}`;
everything with `{NOTIFICATION_SUBJECTS}`), in the same envelope and with the same headers, with `source`
`{NOTIFICATION_EVENT_SOURCE}`; `{HEADER_LOG_POSITION}` is the position in the notifications store's
log. There `caseversion` is the event's position in the case's *delivery record*, which has its
own hash chain (`prevhash`/`eventhash`, recomputable with `vss_contracts.chain.cloud_event_hash`);
`CloudEvent.notification_data()` gives the typed payload. A message accepted by its channel is a
`NotificationSent`, one given up on (or withdrawn with the consent) a `NotificationFailed`, an
urgent message confirmed through its link a `NotificationAcknowledged`, an early warning nobody
confirmed in time a `NotificationEscalated`. The record names the recipient, the kind of
message (`template`), what caused it (`cause_event_id`: the case or meeting event, or the
escalation), the `delivery_key` (a webhook's `X-VSS-Delivery`) and the `message_id` (an e-mail's
Message-ID, a webhook's `X-VSS-Message-Id`), but carries no message content, no address and no
health details. Event ids are derived from the delivery and its outcome, so each fact is recorded
and published once.

**Sharing (what other organisations read).** `{CASE_STREAM}` and the other streams above are
internal: only VSS's own services read them. Each organisation reads its share on the stream
`{SHARE_STREAM}`, subject `{SHARE_SUBJECT_PREFIX}.<organisation>.<caseId>.<EventName>` (filter
`{SHARE_SUBJECT_PREFIX}.<organisation>.>`; in `<organisation>` a `.` of the id is written `~`):
exactly the case events of the cases it may see (one of its people coordinates the case, the
client's consent in force covers it, or it opened the case and no consent has been given yet), the
same CloudEvents, byte for byte and with the same ids, as
on `{CASE_STREAM}`. When it becomes covered it first receives the case's history up to then; when
it stops being covered it receives one `{SharingEnded.event_name()}` (`source`
`{SHARING_EVENT_SOURCE}`, `type` `{SharingEnded.TYPE}`, with the reason:
{", ".join(f"`{r.value}`" for r in SharingEndReason)}) and nothing more of the case; covered
again, it receives the events it missed, then the new ones. Each case's events arrive in
`caseversion` order; `{HEADER_MSG_ID}` is `<organisation id>:<event id>` and
`{HEADER_LOG_POSITION}` the position in the sharing service's own log.
"""

EventModel = type[CaseEventData] | type[MeetingEventData] | type[NotificationEventData] | type[SharingEnded]


@dataclass(frozen=True, slots=True)
class _EventStream:
    """What differs between the streams of events that share the envelope and headers."""

    stream: str
    subject_prefix: str
    source: str
    events: tuple[EventModel, ...]
    headers: str  # the components/schemas key of its headers
    example: str  # a type on it, for the headers' description
    store: str  # whose log `Vss-Log-Position` counts in
    decode: str  # the CloudEvent method that gives the typed payload
    description: str  # of the stream, in x-nats-jetstream
    # Earlier versions of its types: still on the stream as published, each a message of its
    # type's channel beside the current one.
    earlier: tuple[EventModel, ...] = ()

    def versions(self, cls: EventModel) -> list[EventModel]:
        """The type's messages on its channel: the current version, then the earlier ones."""
        return [cls, *(e for e in self.earlier if e.event_name() == cls.event_name())]


CASE_EVENT_STREAM = _EventStream(
    stream=CASE_STREAM,
    subject_prefix=CASE_SUBJECT_PREFIX,
    source=CASE_EVENT_SOURCE,
    events=CASE_EVENTS,
    headers="CaseEventHeaders",
    example=SipDecided.TYPE,
    store="the case store",
    decode="typed_data",
    description="Every case event, in the case store's log order. Declared by the relay;"
    " subscribers bind to it and never create or change it.",
    earlier=LEGACY_CASE_EVENTS,
)
MEETING_EVENT_STREAM = _EventStream(
    stream=MEETING_STREAM,
    subject_prefix=MEETING_SUBJECT_PREFIX,
    source=MEETING_EVENT_SOURCE,
    events=MEETING_EVENTS,
    headers="MeetingEventHeaders",
    example=MeetingScheduled.TYPE,
    store="the meetings store",
    decode="meeting_data",
    description="Every meeting event (each case's meeting schedule), in the meetings store's log"
    " order. Declared by the meetings service's relay; subscribers bind to it and never create or"
    " change it.",
    earlier=LEGACY_MEETING_EVENTS,
)
NOTIFICATION_EVENT_STREAM = _EventStream(
    stream=NOTIFICATION_STREAM,
    subject_prefix=NOTIFICATION_SUBJECT_PREFIX,
    source=NOTIFICATION_EVENT_SOURCE,
    events=NOTIFICATION_EVENTS,
    headers="NotificationEventHeaders",
    example=NotificationSent.TYPE,
    store="the notifications store",
    decode="notification_data",
    description="Every notification event (each case's delivery record: who was told what, when,"
    " on which channel; no message content and no health details), in the notifications store's"
    " log order. Declared by the notifications service's relay; subscribers bind to it and never"
    " create or change it.",
)
EVENT_STREAMS = (CASE_EVENT_STREAM, MEETING_EVENT_STREAM, NOTIFICATION_EVENT_STREAM)


def _rewrite_refs(node: Any) -> Any:
    """``#/$defs/X`` -> ``#/components/schemas/X``, everywhere in a schema."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_DEFS):
                out[key] = _SCHEMAS + value.removeprefix(_DEFS)
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """Move a pydantic schema's ``$defs`` into ``into`` (one definition per name)."""
    schema = _rewrite_refs(schema)
    for name, definition in schema.pop("$defs", {}).items():
        if name in into and into[name] != definition:
            raise ValueError(f"two different schemas are both named {name!r}")
        into[name] = definition
    return schema


def _event_version(cls: EventModel) -> int:
    """The version of a type, from its ``TYPE`` (``….v2`` -> 2)."""
    return int(cls.TYPE.rsplit(".v", 1)[1])


def _message_key(cls: EventModel) -> str:
    """Component keys may not hold dots: ``CaseOpened_v1``."""
    return f"{cls.event_name()}_v{_event_version(cls)}"


def _summary(cls: EventModel) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else f"{cls.event_name()} (version {_event_version(cls)})."


def _ref(pointer: str) -> dict[str, str]:
    return {"$ref": pointer}


def _headers_schema(events: _EventStream) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"NATS headers of every event on {events.stream} (other headers may be present).",
        "properties": {
            HEADER_MSG_ID: {
                "type": "string",
                "description": "The event id (the CloudEvent `id`): JetStream's de-duplication key."
                " De-duplicate on the body's `id`.",
            },
            HEADER_EVENT_TYPE: {
                "type": "string",
                "description": f"The CloudEvent `type`, e.g. `{events.example}`.",
            },
            HEADER_LOG_POSITION: {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": f"The event's position in {events.store}'s log (decimal, increasing).",
            },
        },
        "required": [HEADER_MSG_ID, HEADER_EVENT_TYPE, HEADER_LOG_POSITION],
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original message's headers, plus why and from where it was parked.",
        "properties": {
            HEADER_DLQ_REASON: {"type": "string", "description": "Why the consumer could not apply it."},
            HEADER_DLQ_STREAM: {"type": "string", "description": "The stream it was read from."},
            HEADER_DLQ_SEQUENCE: {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": "Its sequence in that stream (decimal).",
            },
            HEADER_DLQ_CONSUMER: {"type": "string", "description": "The consumer that parked it."},
        },
        "required": [HEADER_DLQ_REASON, HEADER_DLQ_STREAM, HEADER_DLQ_SEQUENCE, HEADER_DLQ_CONSUMER],
    }


def _event_payload(cls: EventModel, events: _EventStream) -> dict[str, Any]:
    """The envelope with this stream's ``source`` and this type's ``type``, ``dataschema`` and ``data``."""
    return {
        "type": "object",
        "allOf": [
            _ref(_SCHEMAS + "CloudEvent"),
            {
                "type": "object",
                "properties": {
                    "source": {"const": events.source},
                    "type": {"const": cls.TYPE},
                    "dataschema": {"const": dataschema_for(cls.TYPE)},
                    "data": _ref(_SCHEMAS + cls.TYPE),
                },
            },
        ],
    }


def _event_stream_facts(events: _EventStream) -> dict[str, Any]:
    return {
        "description": events.description,
        "subjects": [f"{events.subject_prefix}.>"],
        "retention": "limits",
        "discard": "new",
        "maxAge": 0,
        "maxMsgs": -1,
        "maxBytes": -1,
        "storage": "file",
        "duplicateWindowSeconds": DUPLICATE_WINDOW_SECONDS,
        "allowAtomicPublish": True,
        "allowDirect": True,
    }


def _jetstream() -> dict[str, Any]:
    return {
        "streams": {
            **{events.stream: _event_stream_facts(events) for events in EVENT_STREAMS},
            SHARE_STREAM: _share_stream_facts(),
            DEAD_LETTER_STREAM: {
                "description": "Messages a consumer could not apply, with the reason and original headers.",
                "subjects": [f"{DEAD_LETTER_SUBJECT_PREFIX}.>"],
                "retention": "limits",
                "maxAge": 0,
                "storage": "file",
            },
        }
    }


def _event_channel(cls: EventModel, events: _EventStream) -> dict[str, Any]:
    name = cls.event_name()
    return {
        "address": case_subject("{" + CASE_ID + "}", name, prefix=events.subject_prefix),
        "title": name,
        "summary": _summary(cls),
        "description": f"Every `{name}` event of a case, on stream `{events.stream}`. Older versions of"
        f" the type stay here as published; `CloudEvent.{events.decode}()` upcasts them.",
        "parameters": {CASE_ID: _ref(f"#/components/parameters/{CASE_ID}")},
        "messages": {
            _message_key(v): _ref(f"#/components/messages/{_message_key(v)}") for v in events.versions(cls)
        },
        "x-nats-stream": events.stream,
    }


def _event_message(cls: EventModel, events: _EventStream) -> dict[str, Any]:
    return {
        "name": cls.TYPE,
        "title": f"{cls.event_name()} v{_event_version(cls)}",
        "summary": _summary(cls),
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "allOf": [
                _ref(_SCHEMAS + events.headers),
                {"properties": {HEADER_EVENT_TYPE: {"const": cls.TYPE}}},
            ],
        },
        "payload": _event_payload(cls, events),
        "correlationId": _ref("#/components/correlationIds/correlationid"),
        "x-dataschema": dataschema_for(cls.TYPE),
    }


def _events(streams: Iterable[_EventStream]) -> list[tuple[EventModel, _EventStream]]:
    """Every event type with its stream; a name may be on one stream only (it keys the channel)."""
    found = [(cls, events) for events in streams for cls in events.events]
    names = [cls.event_name() for cls, _ in found]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"event names used twice: {twice}")
    return found


def _operations(streams: Iterable[_EventStream]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for cls, events in _events(streams):
        name = cls.event_name()
        channel = f"#/channels/{name}"
        messages = [_ref(f"{channel}/messages/{_message_key(v)}") for v in events.versions(cls)]
        operations[f"publish{name}"] = {
            "action": "send",
            "channel": _ref(channel),
            "title": f"Relay publishes {name}",
            "summary": f"The relay publishes each stored {name} event, in log order, once.",
            "messages": messages,
        }
        operations[f"receive{name}"] = {
            "action": "receive",
            "channel": _ref(channel),
            "title": f"Subscribers receive {name}",
            "summary": f"A subscriber's consumer on {events.stream} receives {name} events.",
            "description": "Use a durable consumer (or an ordered one), ack explicitly, de-duplicate"
            " by the CloudEvent `id`, and store the last stream sequence applied with your own state.",
            "messages": messages,
        }
    operations["parkDeadLetter"] = {
        "action": "send",
        "channel": _ref("#/channels/deadLetter"),
        "title": "A consumer parks a message it cannot apply",
        "messages": [_ref("#/channels/deadLetter/messages/DeadLetter")],
    }
    operations["receiveDeadLetter"] = {
        "action": "receive",
        "channel": _ref("#/channels/deadLetter"),
        "title": "Operators inspect (and replay) dead letters",
        "messages": [_ref("#/channels/deadLetter/messages/DeadLetter")],
    }
    return operations


def _share_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"NATS headers of every message on {SHARE_STREAM} (other headers may be present).",
        "properties": {
            HEADER_MSG_ID: {
                "type": "string",
                "description": "`<organisation id>:<event id>`: JetStream's de-duplication key."
                " De-duplicate on the body's `id`.",
            },
            HEADER_EVENT_TYPE: {"type": "string", "description": "The CloudEvent `type`."},
            HEADER_LOG_POSITION: {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": "The message's position in the sharing service's log (decimal, increasing).",
            },
        },
        "required": [HEADER_MSG_ID, HEADER_EVENT_TYPE, HEADER_LOG_POSITION],
    }


def _share_channel() -> dict[str, Any]:
    shared: tuple[EventModel, ...] = (*CASE_EVENTS, *LEGACY_CASE_EVENTS, SharingEnded)
    keys = [_message_key(cls) for cls in shared]
    return {
        "address": f"{SHARE_SUBJECT_PREFIX}.{{{ORGANISATION}}}.{{{CASE_ID}}}.{{{EVENT_NAME}}}",
        "title": "An organisation's share",
        "summary": "The case events an organisation may see, and SharingEnded when it may no longer.",
        "description": f"On stream `{SHARE_STREAM}`: every case event of the cases the organisation may"
        f" see (the bodies of `{CASE_STREAM}`, unchanged), history first when it becomes covered, and one"
        f" `{SharingEnded.event_name()}` when it stops being covered. An organisation's credentials read"
        f" only `{SHARE_SUBJECT_PREFIX}.<its token>.>`.",
        "parameters": {
            ORGANISATION: {
                "description": "The receiving organisation's id, with `.` written `~` (one subject token)."
            },
            CASE_ID: _ref(f"#/components/parameters/{CASE_ID}"),
            EVENT_NAME: {"description": "The event's unversioned name, e.g. `SipDecided`, `SharingEnded`."},
        },
        "messages": {key: _ref(f"#/components/messages/{key}") for key in keys},
        "x-nats-stream": SHARE_STREAM,
    }


def _sharing_ended_message() -> dict[str, Any]:
    cls = SharingEnded
    return {
        "name": cls.TYPE,
        "title": f"{cls.event_name()} v{_event_version(cls)}",
        "summary": _summary(cls),
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "allOf": [
                _ref(_SCHEMAS + "ShareEventHeaders"),
                {"properties": {HEADER_EVENT_TYPE: {"const": cls.TYPE}}},
            ],
        },
        "payload": {
            "type": "object",
            "allOf": [
                _ref(_SCHEMAS + "CloudEvent"),
                {
                    "type": "object",
                    "properties": {
                        "source": {"const": SHARING_EVENT_SOURCE},
                        "type": {"const": cls.TYPE},
                        "dataschema": {"const": dataschema_for(cls.TYPE)},
                        "data": _ref(_SCHEMAS + cls.TYPE),
                    },
                },
            ],
        },
        "correlationId": _ref("#/components/correlationIds/correlationid"),
        "x-dataschema": dataschema_for(cls.TYPE),
    }


def _share_stream_facts() -> dict[str, Any]:
    return {
        **_event_stream_facts(CASE_EVENT_STREAM),
        "description": "Each organisation's share of the case events (vss.share.<organisation>.>),"
        " consent-scoped. Declared by the sharing service; organisations bind to it and read only"
        " their own subjects.",
        "subjects": [SHARE_SUBJECTS],
    }


def generate() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bus."""
    schemas: dict[str, Any] = {}
    schemas["CloudEvent"] = _hoist(CloudEvent.model_json_schema(), schemas)
    every_event = _events(EVENT_STREAMS)
    every_version = [(v, events) for cls, events in every_event for v in events.versions(cls)]
    for cls, _ in every_version:
        event_schema = _hoist(cls.model_json_schema(), schemas)
        event_schema["title"] = cls.TYPE
        schemas[cls.TYPE] = event_schema
    for events in EVENT_STREAMS:
        schemas[events.headers] = _headers_schema(events)
    schemas["DeadLetterHeaders"] = _dead_letter_headers_schema()
    sharing_ended = _hoist(SharingEnded.model_json_schema(), schemas)
    sharing_ended["title"] = SharingEnded.TYPE
    schemas[SharingEnded.TYPE] = sharing_ended
    schemas["ShareEventHeaders"] = _share_headers_schema()

    channels: dict[str, Any] = {cls.event_name(): _event_channel(cls, events) for cls, events in every_event}
    channels["deadLetter"] = {
        "address": dead_letter_subject("{" + CONSUMER + "}", "{" + ORIGINAL_SUBJECT + "}"),
        "title": "Dead letters",
        "summary": "Messages a consumer could not apply, parked on stream " + DEAD_LETTER_STREAM + ".",
        "description": f"A consumer that cannot apply a message (it does not decode, or applying it"
        f" keeps failing) parks it here, acks the original and goes on: the body unchanged, the"
        f" original headers (less the publish-time `Nats-Expected-*` and `Nats-Batch-*` ones) plus the"
        f" `Vss-Dlq-*` headers. `{ORIGINAL_SUBJECT}` is itself a dotted subject, so"
        f" subscribe with `{DEAD_LETTER_SUBJECT_PREFIX}.<consumer>.>` (or"
        f" `{DEAD_LETTER_SUBJECT_PREFIX}.>`).",
        "parameters": {
            CONSUMER: {"description": "The durable consumer's name (one subject token)."},
            ORIGINAL_SUBJECT: {
                "description": "The subject the message was read from, e.g."
                f" `{case_subject('<caseId>', 'SipDecided')}` (several tokens).",
            },
        },
        "messages": {"DeadLetter": _ref("#/components/messages/DeadLetter")},
        "x-nats-stream": DEAD_LETTER_STREAM,
    }
    channels[SHARE_CHANNEL] = _share_channel()

    messages: dict[str, Any] = {
        _message_key(cls): _event_message(cls, events) for cls, events in every_version
    }
    messages[_message_key(SharingEnded)] = _sharing_ended_message()
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "The original message, parked with the reason.",
        "headers": _ref(_SCHEMAS + "DeadLetterHeaders"),
        "payload": {
            "description": "The original body, unchanged: normally a case or meeting CloudEvent"
            " (`#/components/schemas/CloudEvent`), possibly one that failed to decode.",
        },
    }

    return {
        "asyncapi": "3.0.0",
        "id": "urn:vss:bus",
        "info": {
            "title": "VSS event bus",
            "version": version(DISTRIBUTION),
            "description": DESCRIPTION,
            "tags": [{"name": "vss"}, {"name": "cloudevents"}, {"name": "jetstream"}],
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "embedded": {
                "host": EMBEDDED_SERVER_HOST,
                "protocol": "nats",
                "title": "Embedded default (placeholder)",
                "description": "The nats-server `vss up` starts on one machine (loopback only). A"
                " production deployment gives its own host, TLS and credentials.",
                "tags": [{"name": "embedded"}],
            }
        },
        "channels": channels,
        "operations": {
            **_operations(EVENT_STREAMS),
            "publishShare": {
                "action": "send",
                "channel": _ref(f"#/channels/{SHARE_CHANNEL}"),
                "title": "The sharing service publishes each organisation's share",
                "messages": [
                    _ref(f"#/channels/{SHARE_CHANNEL}/messages/{key}") for key in _share_channel()["messages"]
                ],
            },
            "receiveShare": {
                "action": "receive",
                "channel": _ref(f"#/channels/{SHARE_CHANNEL}"),
                "title": "An organisation receives its share",
                "description": f"A consumer on {SHARE_STREAM} filtered to"
                f" `{SHARE_SUBJECT_PREFIX}.<its token>.>`, acked explicitly, de-duplicating by the"
                " CloudEvent `id`.",
                "messages": [
                    _ref(f"#/channels/{SHARE_CHANNEL}/messages/{key}") for key in _share_channel()["messages"]
                ],
            },
        },
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "parameters": {
                CASE_ID: {
                    "description": "The case id (a UUID; the CloudEvent `subject`).",
                    "examples": ["6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01"],
                }
            },
            "correlationIds": {
                "correlationid": {
                    "description": "The request the event belongs to (all events of one command share it).",
                    "location": "$message.payload#/correlationid",
                }
            },
        },
        "x-nats-jetstream": _jetstream(),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def drift(path: Path = ASYNCAPI_FILE) -> list[str]:
    """``[file name]`` when the committed document is missing or differs from the code, else ``[]``."""
    present = path.read_text(encoding="utf-8") if path.exists() else None
    return [] if present == render(generate()) else [path.name]


def write(path: Path = ASYNCAPI_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(generate()), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the AsyncAPI document")
    group.add_argument("--check", action="store_true", help="fail when the document drifted")
    args = parser.parse_args(argv)
    if args.write:
        write()
        return 0
    if drift():
        print(
            f"{ASYNCAPI_FILE.name} drifted from the code: run python -m vss_contracts.asyncapi --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
