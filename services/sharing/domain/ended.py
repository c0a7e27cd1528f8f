"""The SharingEnded CloudEvent an organisation receives when it may no longer see a case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from vss_contracts.chain import GENESIS_HASH, cloud_event_hash
from vss_contracts.envelope import dataschema_for
from vss_contracts.sharing_events import SharingEnded, SharingEndReason
from vss_contracts.subjects import SHARING_EVENT_SOURCE
from vss_contracts.types import Principal

SERVICE_ACTOR = "vss-sharing"
SERVICE_ORGANISATION = "vss"
# Ids derived from (organisation, ending event): a redo of the same decision gives the same id.
_NAMESPACE = uuid.UUID("5b0c3f7e-2a41-4d8e-9c6b-7e1f0a2d4c93")


def sharing_ended_id(organisation: str, cause_event_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{organisation}:{cause_event_id}"))


def sharing_ended_body(
    *,
    organisation: str,
    case_id: str,
    reason: SharingEndReason,
    cause_event_id: str,
    cause_type: str,
    cause_version: int,
    cause_time: datetime,
    cause_position: int | None,
    correlation_id: str,
    last_version: int,
    last_hash: str | None,
) -> dict[str, Any]:
    """The CloudEvent (as a JSON object) of one SharingEnded; ``eventhash`` over it as over a case event's."""
    time = cause_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    data = SharingEnded(
        organisation_id=organisation,
        case_id=uuid.UUID(case_id),
        reason=reason,
        ended_at=cause_time,
        cause_event_id=uuid.UUID(cause_event_id),
        cause_event_type=cause_type,
        last_version=last_version,
    ).model_dump(mode="json")
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": sharing_ended_id(organisation, cause_event_id),
        "source": SHARING_EVENT_SOURCE,
        "type": SharingEnded.TYPE,
        "subject": case_id,
        "time": time,
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(SharingEnded.TYPE),
        "data": data,
        "caseversion": cause_version,
        "logposition": cause_position,
        "correlationid": correlation_id,
        "causationid": cause_event_id,
        "actorid": SERVICE_ACTOR,
        "actororg": SERVICE_ORGANISATION,
        "actorprincipal": Principal.OTHER.value,
        "prevhash": last_hash or GENESIS_HASH,  # the last case event the organisation received
    }
    return {**body, "eventhash": cloud_event_hash(body)}
