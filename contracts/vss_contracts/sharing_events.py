"""The sharing service's one fact of its own: an organisation may no longer see a case.

Stream ``VSS_SHARE`` carries, for each organisation, the case events of the cases it may
see (the same CloudEvents, byte for byte, as on the internal ``VSS_CASE``) on
``vss.share.<organisation token>.<case_id>.<EventName>``. When an organisation stops
being covered (its coordinator unassigned, the consent withdrawn, replaced or expired) it
receives one :class:`SharingEnded` on ``vss.share.<organisation token>.<case_id>.SharingEnded``
and nothing more of that case until it is covered again; then what it missed follows.

The envelope is the case events' CloudEvent with ``source`` = ``/vss/sharing`` and
``subject`` = the case id; ``caseversion`` is the version of the case event that ended
sharing (which the organisation does not receive), ``prevhash`` the ``eventhash`` of the
last case event it did receive, ``causationid`` the ending event's id. Its ``eventhash``
is computed like a case event's (:func:`vss_contracts.chain.cloud_event_hash`) but it is
not part of the case's chain: verify a case's chain over the events with ``source``
``/vss/case``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from vss_contracts.registry import UnknownEventType, Upcaster, upcast
from vss_contracts.types import ContractModel, OrganisationId

__all__ = [
    "SHARING_EVENTS",
    "SHARING_EVENT_TYPES",
    "TYPE_PREFIX",
    "SharingEndReason",
    "SharingEnded",
    "SharingEventData",
    "decode_sharing_event",
]

TYPE_PREFIX = "se.vss.sharing."


class SharingEndReason(StrEnum):
    """Why an organisation may no longer see a case (the first that applies, in this order)."""

    CONSENT_WITHDRAWN = "consent_withdrawn"  # entirely
    CONSENT_WITHDRAWN_FOR_ORGANISATION = "consent_withdrawn_for_organisation"  # for this one
    CONSENT_REPLACED = "consent_replaced"  # a new consent that does not name it
    CONSENT_EXPIRED = "consent_expired"  # its valid_until had passed at the ending event's time
    COORDINATOR_UNASSIGNED = "coordinator_unassigned"  # its last coordinator of the case left


class SharingEventData(ContractModel):
    """Base of the sharing service's event payloads."""

    TYPE: ClassVar[str]

    @classmethod
    def event_name(cls) -> str:
        return cls.TYPE.removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]


class SharingEnded(SharingEventData):
    """The organisation may no longer see the case: nothing more of it follows until it is
    covered again (then the events it missed come first)."""

    TYPE: ClassVar[str] = "se.vss.sharing.SharingEnded.v1"
    organisation_id: OrganisationId
    case_id: UUID
    reason: SharingEndReason
    ended_at: Annotated[AwareDatetime, Field(description="The time of the case event that ended sharing")]
    cause_event_id: Annotated[UUID, Field(description="The case event that ended sharing (not shared)")]
    cause_event_type: Annotated[str, Field(min_length=1, max_length=200)]
    last_version: Annotated[
        int, Field(ge=0, description="The last case version this organisation received (0: none)")
    ]


SHARING_EVENTS: tuple[type[SharingEventData], ...] = (SharingEnded,)
SHARING_EVENT_TYPES: dict[str, type[SharingEventData]] = {cls.TYPE: cls for cls in SHARING_EVENTS}
SHARING_UPCASTERS: dict[str, tuple[str, Upcaster]] = {}


def decode_sharing_event(type_name: str, payload: dict[str, Any]) -> SharingEventData:
    """Validate a payload of any known version into the current sharing event model."""
    current, payload = upcast(type_name, payload, SHARING_UPCASTERS)
    try:
        model = SHARING_EVENT_TYPES[current]
    except KeyError:
        raise UnknownEventType(type_name) from None
    return model.model_validate(payload)
