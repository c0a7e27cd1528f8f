"""The CloudEvent of an event a service stored with the hash-chained state layout.

The meetings and notifications stores keep each event as a state document
(``event_id``, ``recorded_at``, actor, correlation, ``prev_hash``, ``data``, ``hash``), as
the case store does; this is the envelope both publish it in (the case events').
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vss_contracts.envelope import dataschema_for


def wire_time(recorded_at: str) -> str | datetime:
    """A stored ``recorded_at`` (``datetime.isoformat()``) as the CloudEvent's ``time`` is written.

    Recorded in UTC, "+00:00" is the contracts' "Z" with the same digits, so the string is
    reused (no datetime per event on the relay's path); anything else is parsed, and the
    caller's orjson writes it (``OPT_UTC_Z``).
    """
    return recorded_at[:-6] + "Z" if recorded_at.endswith("+00:00") else datetime.fromisoformat(recorded_at)


def cloud_event_body(
    *, source: str, type_name: str, case_id: str, version: int, position: int, state: dict[str, Any]
) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": state["event_id"],
        "source": source,
        "type": type_name,
        "subject": case_id,
        "time": wire_time(state["recorded_at"]),
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(type_name),
        "data": state["data"],
        "caseversion": version,
        "logposition": position,
        "correlationid": state["correlation_id"],
        "causationid": state["causation_id"],
        "actorid": state["actor_id"],
        "actororg": state["actor_organisation"],
        "actorprincipal": state["principal"],
        "prevhash": state["prev_hash"],
        "eventhash": state["hash"],
    }
