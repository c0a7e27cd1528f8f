"""The CloudEvent of an event a service stored with the hash-chained state layout.

The meetings and notifications stores keep each event as a state document
(``event_id``, ``recorded_at``, actor, correlation, ``prev_hash``, ``data``, ``hash``), as
the case store does; this is the envelope both publish it in (the case events').
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vss_contracts.envelope import dataschema_for


def cloud_event_body(
    *, source: str, type_name: str, case_id: str, version: int, position: int, state: dict[str, Any]
) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": state["event_id"],
        "source": source,
        "type": type_name,
        "subject": case_id,
        "time": datetime.fromisoformat(state["recorded_at"]),
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
