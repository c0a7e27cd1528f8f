"""A published case event's fields, its hash recomputed: what the rebuild's reader process does.

The first half of :func:`.decoding.decode` (parsing and the hash check), kept apart from the
upcasting so that the reader process (:mod:`.stream_reader`) imports no more than it runs:
orjson and the contracts' hash, not the contracts' models and upcasters.
"""

from __future__ import annotations

from typing import Any

import orjson

from vss_contracts.chain import cloud_event_hash


class UndecodableEvent(ValueError):
    """The bytes are not a CloudEvent of a case event (or, for :func:`.decoding.decode_notification`
    and :func:`.decoding.decode_meeting`, of a notification or meeting event of a type this version
    knows)."""

    @classmethod
    def at(cls, stream_sequence: int, error: Exception) -> UndecodableEvent:
        """What ``error``, raised reading the message at ``stream_sequence``, means."""
        return cls(f"stream sequence {stream_sequence}: {type(error).__name__}: {error}")


def sorted_json(value: Any) -> bytes:
    """The contracts' canonical JSON (keys sorted, no whitespace, UTF-8), with orjson."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# A CaseEventRecord's fields in its order, with the type and payload as published (not yet
# upcast): (case_id, version, type, data, event_id, time, actor_id, actor_org,
# actor_principal, log_position, stream_sequence, prev_hash, event_hash, hash_ok).
PublishedFields = tuple[str, int, str, dict[str, Any], str, str, str, str, str, int, int, str, str, bool]


def published_fields(body: bytes, stream_sequence: int) -> PublishedFields:
    """The bytes parsed and the event's hash recomputed: the part of :func:`.decoding.decode`
    before upcasting.

    Only JSON values, so they can cross a process boundary as JSON unchanged (the
    rebuild's reader process, :mod:`.stream_reader`, checks every hash there).
    """
    try:
        event = orjson.loads(body)
        hash_ok = cloud_event_hash(event, dumps=sorted_json) == event["eventhash"]
        return (
            event["subject"],
            int(event["caseversion"]),
            event["type"],
            event["data"],
            event["id"],
            event["time"],
            event["actorid"],
            event["actororg"],
            event["actorprincipal"],
            int(event.get("logposition") or 0),
            stream_sequence,
            event["prevhash"],
            event["eventhash"],
            hash_ok,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UndecodableEvent.at(stream_sequence, error) from error
