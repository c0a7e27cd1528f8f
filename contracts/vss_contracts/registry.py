"""Type names to models, and upcasters from old versions to the current ones.

When an event's shape changes, the old class stays here under its old ``TYPE`` in
``UPCASTERS`` with a function that turns an old payload into the next version's. Stored
and published payloads are never rewritten; readers upcast on decode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vss_contracts.case_events import (
    CASE_EVENTS,
    CaseEventData,
    CoordinatorAssigned,
    CoordinatorAssignedV1,
    CoordinatorUnassigned,
    CoordinatorUnassignedV1,
    EntryCorrected,
    EntryCorrectedV1,
    MappingSummarised,
    MappingSummarisedV1,
    MethodDeviationRecorded,
    MethodDeviationRecordedV1,
    ResourceGroupMeetingHeld,
    ResourceGroupMeetingHeldV1,
    SipDecided,
    SipDecidedV1,
    SipDecidedV2,
    WorksheetCompleted,
    WorksheetCompletedV1,
)

__all__ = [
    "EVENT_TYPES",
    "UPCASTERS",
    "UnknownEventType",
    "decode_event",
    "upcast",
]

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

EVENT_TYPES: Mapping[str, type[CaseEventData]] = {cls.TYPE: cls for cls in CASE_EVENTS}


def sip_decided_v1_to_v2(payload: Payload) -> Payload:
    """A v1 SIP named no principal with the overall responsibility (not recorded: None), was
    never an initial SIP, and every action was a resource group member's."""
    return {
        **payload,
        "initial": False,
        "overall_responsibility": None,
        "actions": [{**action, "responsible_party": None} for action in payload["actions"]],
    }


def coordinator_assigned_v1_to_v2(payload: Payload) -> Payload:
    """A v1 assignment was never a handover (there were none)."""
    return {**payload, "hands_over_from": None}


def coordinator_unassigned_v1_to_v2(payload: Payload) -> Payload:
    """A v1 unassignment named the user id alone; a case then held at most one coordinator per
    user id, so it names the coordinator assigned with it. Its organisation was not recorded:
    null, never guessed (ADR 0023); readers resolve it against the case's coordinators."""
    return {"organisation_id": None, **payload}


def coordinators_by_person(user_ids: list[str]) -> list[Payload]:
    """Coordinators an earlier version named by user id alone, as the next version names them:
    each with a null organisation, never guessed (ADR 0023)."""
    return [{"organisation_id": None, "user_id": user_id} for user_id in user_ids]


def method_deviation_recorded_v1_to_v2(payload: Payload) -> Payload:
    """The absent coordinators of a v1 deviation were named by user id alone."""
    return {**payload, "absent_coordinators": coordinators_by_person(payload.get("absent_coordinators", []))}


def _participants_by_person(participants: list[Payload]) -> list[Payload]:
    """An earlier participant named a coordinator by user id alone, standing for every
    coordinator the case held with it: the organisation is null, never guessed (ADR 0023).
    Every participant gets the field, as the next version's model writes it (null)."""
    return [{**p, "organisation_id": None} for p in participants]


def participants_to_persons(payload: Payload) -> Payload:
    """``WorksheetCompleted.v1``, ``MappingSummarised.v1``, ``SipDecided.v2`` and
    ``ResourceGroupMeetingHeld.v1`` to their next versions: coordinator participants get a
    null organisation."""
    return {**payload, "participants": _participants_by_person(payload["participants"])}


def entry_corrected_v1_to_v2(payload: Payload) -> Payload:
    """A corrected worksheet or meeting names its coordinator participants as the original did."""
    value = payload["value"]
    if isinstance(value, dict) and "participants" in value:
        value = {**value, "participants": _participants_by_person(value["participants"])}
    return {**payload, "value": value}


# old type name -> (next type name, function from the old payload to the next one)
UPCASTERS: Mapping[str, tuple[str, Upcaster]] = {
    SipDecidedV1.TYPE: (SipDecidedV2.TYPE, sip_decided_v1_to_v2),
    SipDecidedV2.TYPE: (SipDecided.TYPE, participants_to_persons),
    WorksheetCompletedV1.TYPE: (WorksheetCompleted.TYPE, participants_to_persons),
    MappingSummarisedV1.TYPE: (MappingSummarised.TYPE, participants_to_persons),
    ResourceGroupMeetingHeldV1.TYPE: (ResourceGroupMeetingHeld.TYPE, participants_to_persons),
    EntryCorrectedV1.TYPE: (EntryCorrected.TYPE, entry_corrected_v1_to_v2),
    CoordinatorAssignedV1.TYPE: (CoordinatorAssigned.TYPE, coordinator_assigned_v1_to_v2),
    CoordinatorUnassignedV1.TYPE: (CoordinatorUnassigned.TYPE, coordinator_unassigned_v1_to_v2),
    MethodDeviationRecordedV1.TYPE: (MethodDeviationRecorded.TYPE, method_deviation_recorded_v1_to_v2),
}


class UnknownEventType(LookupError):
    """No current event type, nor an upcaster, is known for this type name."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"unknown event type {type_name!r}")
        self.type_name = type_name


def upcast(
    type_name: str,
    payload: Payload,
    upcasters: Mapping[str, tuple[str, Upcaster]] = UPCASTERS,
) -> tuple[str, Payload]:
    """Follow the upcaster chain from ``type_name`` to the current version."""
    seen: set[str] = set()
    while type_name in upcasters:
        if type_name in seen:  # a cycle is a programming error in this table
            raise RuntimeError(f"upcaster cycle at {type_name}")
        seen.add(type_name)
        type_name, function = upcasters[type_name]
        payload = function(payload)
    return type_name, payload


def decode_event(
    type_name: str,
    payload: Payload,
    *,
    types: Mapping[str, type[CaseEventData]] = EVENT_TYPES,
    upcasters: Mapping[str, tuple[str, Upcaster]] = UPCASTERS,
) -> CaseEventData:
    """Validate a payload of any known version into the current event model."""
    current, payload = upcast(type_name, payload, upcasters)
    try:
        model = types[current]
    except KeyError:
        raise UnknownEventType(type_name) from None
    return model.model_validate(payload)
