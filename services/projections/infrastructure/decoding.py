"""Published CloudEvent bytes -> :class:`CaseEventRecord`, fast enough for a rebuild.

The case service validated every payload against its contract when it stored it, and
the hash chain guards the bytes since; so this path parses with orjson, recomputes the
event's hash from the payload as published, and upcasts old versions as plain dicts,
without building pydantic models; the live projector decodes the same way (its consumer
checks the envelope and the type, ADR 0028). The parsing and
the hash check are :mod:`.published`'s, which the rebuild's reader process runs alone.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

import orjson

from services.projections.domain.events import CaseEventRecord, MeetingRecord, NotificationRecord
from services.projections.infrastructure.published import (
    PublishedFields,
    UndecodableEvent,
    published_fields,
    sorted_json,
)
from vss_contracts.chain import cloud_event_hash
from vss_contracts.meeting_events import MEETING_EVENT_TYPES, MEETING_UPCASTERS
from vss_contracts.notification_events import NOTIFICATION_EVENT_TYPES, NOTIFICATION_UPCASTERS
from vss_contracts.registry import UPCASTERS, Upcaster, upcast

__all__ = [
    "PublishedFields",
    "UndecodableEvent",
    "decode",
    "decode_meeting",
    "decode_notification",
    "published_fields",
    "record_of",
]


def decode(body: bytes, stream_sequence: int) -> CaseEventRecord:
    return record_of(published_fields(body, stream_sequence))


def record_of(fields: PublishedFields) -> CaseEventRecord:
    """The record of :func:`published_fields`, its payload upcast to the current version of its type."""
    if fields[2] not in UPCASTERS:  # a current type (as upcast() decides): the fields as they are
        return CaseEventRecord._make(fields)
    (case_id, version, type_name, data, event_id, time, actor_id, actor_org, actor_principal,
     log_position, stream_sequence, prev_hash, event_hash, hash_ok) = fields  # fmt: skip
    try:
        type_name, data = upcast(type_name, data)
    except (KeyError, TypeError, ValueError) as error:
        raise UndecodableEvent.at(stream_sequence, error) from error
    return CaseEventRecord(
        case_id,
        version,
        type_name,
        data,
        event_id,
        time,
        actor_id,
        actor_org,
        actor_principal,
        log_position,
        stream_sequence,
        prev_hash,
        event_hash,
        hash_ok,
    )


def decode_notification(body: bytes, stream_sequence: int) -> NotificationRecord:
    """An event of the delivery record (``VSS_NOTIFICATIONS``), decoded as :func:`decode` does.

    A type unknown after upcasting is undecodable here too, as it is to the live
    consumer's contract check (which dead-letters it), so live and rebuild agree.
    """
    fields, _ = _chained(
        body, stream_sequence, NOTIFICATION_UPCASTERS, NOTIFICATION_EVENT_TYPES, "notification"
    )
    return NotificationRecord(*fields)


def decode_meeting(body: bytes, stream_sequence: int) -> MeetingRecord:
    """An event of a case's meeting schedule (``VSS_MEETINGS``), decoded as
    :func:`decode_notification` is (a type unknown after upcasting is undecodable), with who
    acted as the envelope names them: a user id and its organisation (or the service's own)."""
    fields, actor = _chained(body, stream_sequence, MEETING_UPCASTERS, MEETING_EVENT_TYPES, "meeting")
    return MeetingRecord(*fields, *actor)


def _chained(
    body: bytes,
    stream_sequence: int,
    upcasters: Mapping[str, tuple[str, Upcaster]],
    known: Container[str],
    family: str,
) -> tuple[tuple[str, int, str, dict[str, Any], str, str, int, str, str, bool], tuple[str, str]]:
    """The fields of a record of another service's per-case chained stream, in the records' order,
    and who acted (the envelope's ``actorid`` and ``actororg``)."""
    try:
        event = orjson.loads(body)
        hash_ok = cloud_event_hash(event, dumps=sorted_json) == event["eventhash"]
        type_name, data = upcast(event["type"], event["data"], upcasters)
        if type_name not in known:
            raise ValueError(f"unknown {family} event type {event['type']!r}")
        return (
            event["subject"],
            int(event["caseversion"]),
            type_name,
            data,
            event["id"],
            event["time"],
            stream_sequence,
            event["prevhash"],
            event["eventhash"],
            hash_ok,
        ), (event["actorid"], event["actororg"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UndecodableEvent.at(stream_sequence, error) from error
