"""The meeting events (stream VSS_MEETINGS) as public contracts: golden payloads of the
versions whose shape changed (ADR 0020) and of the new events; old versions decode unchanged
and upcast to the current ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vss_contracts.meeting_events import (
    LEGACY_MEETING_EVENTS,
    MEETING_EVENT_TYPES,
    MEETING_UPCASTERS,
    ContactCadenceMissed,
    CrisisMeetingScheduled,
    CrisisMeetingScheduledV1,
    FollowUpOverdue,
    MeetingAnswered,
    MeetingCancelled,
    MeetingCancelledV1,
    MeetingConfirmed,
    MeetingConfirmedV1,
    MeetingEventData,
    MeetingHeld,
    MeetingHeldV1,
    MeetingRescheduled,
    MeetingRescheduledV1,
    MeetingScheduled,
    MeetingScheduledV1,
    MeetingScheduledV2,
    PlaceKind,
    decode_meeting_event,
)
from vss_contracts.registry import upcast
from vss_contracts.types import ActingPerson

GOLDEN = Path(__file__).parent / "golden"
CURRENT = (
    MeetingScheduled,
    CrisisMeetingScheduled,
    MeetingConfirmed,
    MeetingAnswered,
    MeetingCancelled,
    ContactCadenceMissed,
    FollowUpOverdue,
    MeetingRescheduled,
    MeetingHeld,
)
# Earlier versions naming who acted by user id alone, and that field (ADR 0023).
ACTED_BY_USER_ID: tuple[tuple[type[MeetingEventData], str], ...] = (
    (MeetingScheduledV2, "booked_by"),
    (MeetingConfirmedV1, "confirmed_by"),
    (MeetingRescheduledV1, "moved_by"),
    (MeetingCancelledV1, "cancelled_by"),
    (MeetingHeldV1, "recorded_by"),
)


def golden(cls: type[MeetingEventData]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
    return data


def test_the_golden_meeting_payloads_are_these() -> None:
    names = {path.name for path in GOLDEN.glob("se.vss.meetings.*.json")}
    assert names == {f"{cls.TYPE}.json" for cls in (*CURRENT, *LEGACY_MEETING_EVENTS)}


@pytest.mark.parametrize("cls", CURRENT, ids=lambda cls: cls.event_name())
def test_a_golden_payload_still_decodes_to_its_class(cls: type[MeetingEventData]) -> None:
    payload = golden(cls)
    decoded = decode_meeting_event(cls.TYPE, payload)
    assert type(decoded) is cls
    # The shape is unchanged: adding, renaming or retyping a field is a new event version.
    assert decoded.model_dump(mode="json") == payload


@pytest.mark.parametrize("cls", LEGACY_MEETING_EVENTS, ids=lambda cls: cls.TYPE)
def test_a_golden_payload_of_an_earlier_version_decodes_to_the_current_one(
    cls: type[MeetingEventData],
) -> None:
    payload = golden(cls)
    cls.model_validate(payload)  # still the shape it was published in
    decoded = decode_meeting_event(cls.TYPE, payload)
    current = MEETING_EVENT_TYPES[upcast(cls.TYPE, payload, MEETING_UPCASTERS)[0]]
    assert type(decoded) is current
    assert current.event_name() == cls.event_name()
    assert payload == golden(cls)  # not rewritten


def test_a_v1_meeting_upcasts_as_fixed_with_its_location_as_a_place_of_no_recorded_kind() -> None:
    decoded = decode_meeting_event(MeetingScheduledV1.TYPE, golden(MeetingScheduledV1))
    assert isinstance(decoded, MeetingScheduled)
    assert decoded.location == "Mottagningen, Storgatan 1"
    assert decoded.place_kind is PlaceKind.OTHER
    assert (decoded.agenda, decoded.proposed) == ([], False)
    without = {**golden(MeetingScheduledV1), "location": None}
    assert decode_meeting_event(MeetingScheduledV1.TYPE, without).place_kind is None  # type: ignore[attr-defined]


def test_a_v1_crisis_meeting_upcasts_with_no_place_and_no_agenda() -> None:
    decoded = decode_meeting_event(CrisisMeetingScheduledV1.TYPE, golden(CrisisMeetingScheduledV1))
    assert isinstance(decoded, CrisisMeetingScheduled)
    assert (decoded.location, decoded.place_kind, decoded.agenda) == (None, None, [])
    assert (
        decoded.invitees == CrisisMeetingScheduledV1.model_validate(golden(CrisisMeetingScheduledV1)).invitees
    )


def test_a_cancellation_reason_is_one_to_two_hundred_characters() -> None:
    """As ``MeetingCancelled.v1`` always allowed, and v2 keeps: a subscriber on an earlier
    package reads it."""
    payload = golden(MeetingCancelled)
    assert MeetingCancelled.model_validate({**payload, "reason": "x" * 200}).reason == "x" * 200
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(ValueError, match="reason"):
            MeetingCancelled.model_validate({**payload, "reason": bad})


@pytest.mark.parametrize(("old", "field"), ACTED_BY_USER_ID, ids=lambda v: getattr(v, "TYPE", v))
def test_who_acted_by_user_id_alone_reads_as_a_person_of_no_organisation(
    old: type[MeetingEventData], field: str
) -> None:
    golden_payload = golden(old)
    # The golden payload as published, and the same with the other case (null or a user id).
    other = None if golden_payload[field] is not None else "sara"
    for payload in (golden_payload, {**golden_payload, field: other}):
        old.model_validate(payload)  # still the shape it was published in

        decoded = decode_meeting_event(old.TYPE, payload)

        dumped = decoded.model_dump(mode="json")
        user_id = payload[field]
        # Nothing invented: the organisation was not recorded (ADR 0023); null stays null (the
        # schedule acted).
        assert dumped[field] == (None if user_id is None else {"organisation_id": None, "user_id": user_id})
        assert {k: v for k, v in dumped.items() if k != field} == {
            k: v for k, v in payload.items() if k != field
        }  # every other field as published
    assert golden_payload == golden(old)  # not rewritten


def test_a_v1_meeting_reads_as_v3_through_v2() -> None:
    payload = {**golden(MeetingScheduledV1), "booked_by": "sara"}

    decoded = decode_meeting_event(MeetingScheduledV1.TYPE, payload)

    assert isinstance(decoded, MeetingScheduled)
    assert decoded.booked_by == ActingPerson(organisation_id=None, user_id="sara")
    assert decoded.place_kind is PlaceKind.OTHER


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (MeetingScheduled, "booked_by"),
        (MeetingConfirmed, "confirmed_by"),
        (MeetingRescheduled, "moved_by"),
        (MeetingCancelled, "cancelled_by"),
        (MeetingHeld, "recorded_by"),
    ],
    ids=lambda v: getattr(v, "TYPE", v),
)
def test_who_acted_is_a_person(cls: type[MeetingEventData], field: str) -> None:
    payload = golden(cls)
    person = getattr(cls.model_validate(payload), field)
    assert isinstance(person, ActingPerson)
    assert person.organisation_id is not None  # every payload the meetings service records names it
    with pytest.raises(ValueError, match="organisation_id"):  # a field, null or not
        cls.model_validate({**payload, field: {"user_id": person.user_id}})
    with pytest.raises(ValueError, match=field):  # a user id alone is the earlier version
        cls.model_validate({**payload, field: person.user_id})
    assert getattr(cls.model_validate({**payload, field: None}), field) is None  # the schedule acted
