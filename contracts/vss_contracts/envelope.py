"""The CloudEvents 1.0 envelope (structured JSON mode) of every published event.

Case events (stream ``VSS_CASE``), meeting events (``VSS_MEETINGS``) and notification
events (``VSS_NOTIFICATIONS``) share it; ``source`` tells them apart.

Besides the required and optional CloudEvents attributes, extension attributes carry
what this system guarantees to subscribers. Extension names follow the CloudEvents
naming rule (lower-case letters and digits, at most 20 characters):

- ``caseversion``: position of the event in its case's stream (1, 2, 3 …, no gaps); for a
  meeting event, in the case's meeting schedule stream; for a notification event, in the
  case's delivery record;
- ``logposition``: position in the publishing store's global log (increasing, may have gaps);
- ``correlationid`` / ``causationid``: the request the event belongs to, and what caused it;
- ``actorid`` / ``actororg`` / ``actorprincipal``: who recorded it, for which organisation
  (a client acting themself: their personal identity number, ``""`` and ``client``);
- ``prevhash`` / ``eventhash``: the case's hash chain (sha256, hex), for verification;
- ``vsssig`` / ``vsskeyid``: on the last event of each commit of a case event, the case
  service's Ed25519 signature over its ``eventhash`` (base64url) and the id of the key that
  made it (:mod:`vss_contracts.signing`); absent on the other events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from vss_contracts.case_events import CaseEventData
from vss_contracts.meeting_events import MeetingEventData, decode_meeting_event
from vss_contracts.notification_events import NotificationEventData, decode_notification_event
from vss_contracts.registry import decode_event
from vss_contracts.subjects import CASE_EVENT_SOURCE
from vss_contracts.types import ActorPrincipal, Principal

__all__ = ["SCHEMA_URI_PREFIX", "CloudEvent", "dataschema_for"]

# Stable, location-independent identifiers for the committed JSON Schemas. A URN's namespace
# id may not contain a dot (RFC 8141), so not "urn:se.vss:…", which validators (Ajv 8) refuse.
SCHEMA_URI_PREFIX = "urn:vss:schema:"

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def dataschema_for(type_name: str) -> str:
    """The ``dataschema`` URI of an event type (also the ``$id`` of its JSON Schema)."""
    return f"{SCHEMA_URI_PREFIX}{type_name}"


# Optional extension attributes left out of the JSON when absent (not written as null).
_OMITTED_WHEN_ABSENT = ("vsssig", "vsskeyid")


def _require_cloudevents_attributes(schema: dict[str, Any]) -> None:
    """CloudEvents requires ``specversion`` and ``source``; the model fills them in when absent
    (so a default), but every event published carries them, and the schema says so."""
    schema["required"] = sorted({*schema.get("required", ()), "specversion", "source"})


class CloudEvent(BaseModel):
    """One event on the wire (a case, meeting or notification event)."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_require_cloudevents_attributes)

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, Field(description="The event id; also the Nats-Msg-Id header.")]
    source: str = CASE_EVENT_SOURCE
    type: Annotated[str, Field(description="Versioned type, e.g. se.vss.case.SipDecided.v1")]
    subject: Annotated[str, Field(description="The case id.")]
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    data: dict[str, Any]
    caseversion: Annotated[int, Field(ge=1)]
    logposition: Annotated[int | None, Field(ge=1)] = None
    correlationid: str
    causationid: str | None = None
    actorid: str
    actororg: str
    # An organisation's principal, or ``client``: the client themself (an ActorPrincipal's
    # values, inline: FastStream documents a message whose schema has $defs wrongly).
    actorprincipal: Literal["region", "municipality", "other", "client"]
    prevhash: Sha256Hex
    eventhash: Sha256Hex
    vsssig: Annotated[
        str | None,
        Field(
            pattern=r"^[A-Za-z0-9_-]{86}$",
            description="On a commit's last case event: Ed25519 signature over the eventhash (base64url).",
        ),
    ] = None
    vsskeyid: Annotated[
        str | None, Field(min_length=1, description="The id of the key that made vsssig.")
    ] = None

    @model_serializer(mode="wrap")
    def _omit_absent_signature(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        body: dict[str, Any] = handler(self)
        for name in _OMITTED_WHEN_ABSENT:
            if body.get(name, 0) is None:
                del body[name]
        return body

    @classmethod
    def for_event(
        cls,
        *,
        event_id: UUID,
        case_id: UUID,
        case_version: int,
        time: datetime,
        data: CaseEventData | dict[str, Any],
        actor_id: str,
        actor_org: str,
        actor_principal: ActorPrincipal | Principal,
        correlation_id: str,
        causation_id: str | None,
        prev_hash: str,
        event_hash: str,
        log_position: int | None = None,
        type_name: str | None = None,
        signature: str | None = None,
        key_id: str | None = None,
    ) -> CloudEvent:
        """The envelope of one event: ``data`` is a payload model, or a stored payload (a dict,
        published as stored, in its own version) with its ``type_name``."""
        if isinstance(data, CaseEventData):
            type_name, payload = data.TYPE, data.model_dump(mode="json")
        elif type_name is None:
            raise ValueError("a payload given as a dict needs its type_name")
        else:
            payload = data
        return cls(
            id=str(event_id),
            type=type_name,
            subject=str(case_id),
            time=time,
            dataschema=dataschema_for(type_name),
            data=payload,
            caseversion=case_version,
            logposition=log_position,
            correlationid=correlation_id,
            causationid=causation_id,
            actorid=actor_id,
            actororg=actor_org,
            actorprincipal=actor_principal,
            prevhash=prev_hash,
            eventhash=event_hash,
            vsssig=signature,
            vsskeyid=key_id,
        )

    def typed_data(self) -> CaseEventData:
        """The payload as the current model of its type (older versions upcast)."""
        return decode_event(self.type, self.data)

    def meeting_data(self) -> MeetingEventData:
        """The payload of a meeting event (stream ``VSS_MEETINGS``) as its current model."""
        return decode_meeting_event(self.type, self.data)

    def notification_data(self) -> NotificationEventData:
        """The payload of a notification event (stream ``VSS_NOTIFICATIONS``) as its current model."""
        return decode_notification_event(self.type, self.data)
