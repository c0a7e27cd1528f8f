"""The case hash chain, recomputable by any subscriber from the published CloudEvents.

Each event's ``eventhash`` is sha256 (hex) over canonical JSON (keys sorted, no
whitespace, UTF-8) of the case id, case version, type and the stored state without the
hash: event id, recorded-at time, actor, organisation, principal, correlation and
causation ids, the previous event's hash (``prevhash``; 64 zeros for version 1) and
the payload as stored. :func:`cloud_event_hash` rebuilds that document from a published
CloudEvent, so a subscriber can check that what it received is what was stored and that
no event of a case is missing or out of place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

__all__ = ["GENESIS_HASH", "canonical_json", "chain_hash", "cloud_event_hash", "hash_document"]

GENESIS_HASH = "0" * 64

Dumps = Callable[[Any], bytes]


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no whitespace, UTF-8: the bytes that are hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_document(
    case_id: str, version: int, type_name: str, state_without_hash: Mapping[str, Any]
) -> dict[str, Any]:
    return {"case_id": case_id, "version": version, "type": type_name, **state_without_hash}


def chain_hash(
    case_id: str,
    version: int,
    type_name: str,
    state_without_hash: Mapping[str, Any],
    *,
    dumps: Dumps = canonical_json,
) -> str:
    """The hash of one stored event (``dumps`` may be a faster canonical encoder)."""
    document = hash_document(case_id, version, type_name, state_without_hash)
    return hashlib.sha256(dumps(document)).hexdigest()


def cloud_event_hash(event: Mapping[str, Any], *, dumps: Dumps = canonical_json) -> str:
    """Recompute ``eventhash`` from a published CloudEvent given as its JSON object."""
    time = event["time"]
    recorded = datetime.fromisoformat(time.replace("Z", "+00:00")) if isinstance(time, str) else time
    # hash_document()'s document in one step: the same keys in the same order, each value
    # read in the same order as before (so a missing one fails alike). A subscriber runs
    # this for every event it receives, a rebuild for every event there is.
    event_id = event["id"]
    recorded_at = recorded.isoformat()
    actor_id = event["actorid"]
    actor_organisation = event["actororg"]
    principal = str(event["actorprincipal"])
    correlation_id = event["correlationid"]
    causation_id = event.get("causationid")
    prev_hash = event["prevhash"]
    data = event["data"]
    document = {
        "case_id": str(event["subject"]),
        "version": int(event["caseversion"]),
        "type": str(event["type"]),
        "event_id": event_id,
        "recorded_at": recorded_at,
        "actor_id": actor_id,
        "actor_organisation": actor_organisation,
        "principal": principal,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "prev_hash": prev_hash,
        "data": data,
    }
    return hashlib.sha256(dumps(document)).hexdigest()
