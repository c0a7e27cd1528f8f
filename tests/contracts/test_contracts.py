"""The public contracts: schemas, the CloudEvent envelope, golden payloads, upcasting, identity numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar
from uuid import UUID

import pytest
from pydantic import StringConstraints, TypeAdapter, ValidationError

from vss_contracts import (
    CASE_EVENTS,
    EVENT_TYPES,
    CaseEventData,
    CloudEvent,
    InvalidPersonalIdentityNumber,
    UnknownEventType,
    case_subject,
    dataschema_for,
    decode_event,
    normalise_personal_identity_number,
    upcast,
)
from vss_contracts import case_events as ev
from vss_contracts import meeting_events as me
from vss_contracts.case_events import LEGACY_CASE_EVENTS
from vss_contracts.jsonschema import SCHEMA_DIR, drift, generate
from vss_contracts.meeting_events import (
    LEGACY_MEETING_EVENTS,
    MEETING_EVENTS,
    MeetingEventData,
    decode_meeting_event,
)
from vss_contracts.notification_events import NOTIFICATION_EVENTS, NotificationEventData
from vss_contracts.registry import UPCASTERS
from vss_contracts.sharing_events import SHARING_EVENTS
from vss_contracts.types import (
    CONTACT_PERIOD_OF_PHASE,
    ClientRef,
    ClosingReason,
    ContactPeriod,
    LongText,
    MemberKind,
    Participant,
    Phase,
    Principal,
    UserId,
)

GOLDEN = Path(__file__).parent / "golden"
CASE_ID = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01")
EVENT_ID = UUID("9d4f6b2a-1c3e-4a5b-8d7f-0e2a4c6b8d01")
PREV_HASH = "0" * 64
EVENT_HASH = "3f9a" * 16

EventClass = type[CaseEventData] | type[MeetingEventData] | type[NotificationEventData]


def golden(cls: type[CaseEventData]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
    return data


def _id(cls: type[CaseEventData]) -> str:
    return cls.event_name()


# ================================================================================ schemas


def test_the_committed_json_schemas_match_the_code() -> None:
    assert drift() == []


def test_there_is_one_schema_per_event_type_and_one_for_the_envelope() -> None:
    names = {path.name for path in SCHEMA_DIR.glob("*.json")}
    events: tuple[EventClass, ...] = (*CASE_EVENTS, *MEETING_EVENTS, *NOTIFICATION_EVENTS)
    sharing = {f"{cls.TYPE}.json" for cls in SHARING_EVENTS}  # (tests/contracts/test_sharing_contracts.py)
    # earlier versions, as published
    frozen = {f"{cls.TYPE}.json" for cls in (*LEGACY_CASE_EVENTS, *LEGACY_MEETING_EVENTS)}
    assert names == {f"{cls.TYPE}.json" for cls in events} | sharing | frozen | {"se.vss.CloudEvent.json"}
    for cls in events:
        schema = json.loads((SCHEMA_DIR / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
        assert schema["$id"] == dataschema_for(cls.TYPE) == f"urn:vss:schema:{cls.TYPE}"
        assert schema["title"] == cls.TYPE
        assert schema["additionalProperties"] is False  # unknown fields are rejected


def test_drift_names_a_stale_a_missing_and_an_extra_schema(tmp_path: Path) -> None:
    for name, text in generate().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    legacy = [f"{cls.TYPE}.json" for cls in LEGACY_MEETING_EVENTS]
    frozen_names = sorted(
        [
            "se.vss.case.CoordinatorAssigned.v1.json",
            "se.vss.case.CoordinatorUnassigned.v1.json",
            "se.vss.case.EntryCorrected.v1.json",
            "se.vss.case.MappingSummarised.v1.json",
            "se.vss.case.MethodDeviationRecorded.v1.json",
            "se.vss.case.ResourceGroupMeetingHeld.v1.json",
            "se.vss.case.SipDecided.v1.json",
            "se.vss.case.SipDecided.v2.json",
            "se.vss.case.WorksheetCompleted.v1.json",
            *legacy,
        ]
    )
    assert drift(tmp_path) == frozen_names  # the frozen ones are missing
    for name in frozen_names:
        (tmp_path / name).write_text((SCHEMA_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    assert drift(tmp_path) == []

    (tmp_path / "se.vss.case.GoalSet.v1.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "se.vss.case.CaseClosed.v1.json").unlink()
    (tmp_path / "se.vss.case.GoalSet.v0.json").write_text("{}\n", encoding="utf-8")

    assert drift(tmp_path) == [
        "se.vss.case.CaseClosed.v1.json",
        "se.vss.case.GoalSet.v0.json",
        "se.vss.case.GoalSet.v1.json",
    ]


# ============================================================================= type names


def test_every_event_type_has_a_stable_versioned_name() -> None:
    names = [cls.TYPE for cls in CASE_EVENTS]
    assert len(names) == len(set(names)) == 26
    for cls in CASE_EVENTS:
        assert re.fullmatch(r"se\.vss\.case\.[A-Z][A-Za-z]+\.v[1-9][0-9]*", cls.TYPE)
        assert f"se.vss.case.{cls.event_name()}.v{cls.event_version()}" == cls.TYPE
        assert cls.event_name() == cls.__name__  # the current classes are named after their event
        assert EVENT_TYPES[cls.TYPE] is cls
    for cls in LEGACY_CASE_EVENTS:  # an earlier version: the same event, a lower version
        assert cls.TYPE not in EVENT_TYPES
        assert cls.TYPE in UPCASTERS
        assert f"se.vss.case.{cls.event_name()}.v{cls.event_version()}" == cls.TYPE
    assert ev.SipDecided.event_name() == ev.SipDecidedV1.event_name() == "SipDecided"
    assert (
        ev.SipDecidedV1.event_version(),
        ev.SipDecidedV2.event_version(),
        ev.SipDecided.event_version(),
    ) == (
        1,
        2,
        3,
    )
    assert case_subject(CASE_ID, ev.SipDecided.event_name()) == f"vss.case.{CASE_ID}.SipDecided"


# ============================================================================ CloudEvents


def _cloud_event(data: CaseEventData, **overrides: Any) -> CloudEvent:
    arguments: dict[str, Any] = {
        "event_id": EVENT_ID,
        "case_id": CASE_ID,
        "case_version": 7,
        "time": datetime(2025, 3, 14, 8, 45, 12, 345678, tzinfo=UTC),
        "data": data,
        "actor_id": "anna.lindqvist",
        "actor_org": "vgr-psykiatri-nordost",
        "actor_principal": Principal.REGION,
        "correlation_id": "req-2025-03-14-0001",
        "causation_id": "cmd-42",
        "prev_hash": PREV_HASH,
        "event_hash": EVENT_HASH,
        "log_position": 1234,
    }
    return CloudEvent.for_event(**{**arguments, **overrides})


@pytest.mark.parametrize("cls", CASE_EVENTS, ids=_id)
def test_every_event_type_round_trips_through_the_cloud_event_envelope(cls: type[CaseEventData]) -> None:
    data = cls.model_validate(golden(cls))

    wire = _cloud_event(data).model_dump_json()
    received = CloudEvent.model_validate_json(wire)
    typed = received.typed_data()

    assert type(typed) is cls
    assert typed == data
    assert received.type == cls.TYPE
    assert received.dataschema == dataschema_for(cls.TYPE)
    assert received.subject == str(CASE_ID)
    assert received.id == str(EVENT_ID)
    assert received.caseversion == 7
    assert received.logposition == 1234
    assert received.source == "/vss/case"
    assert received.specversion == "1.0"
    assert received.time == datetime(2025, 3, 14, 8, 45, 12, 345678, tzinfo=UTC)
    assert received.eventhash == EVENT_HASH
    assert json.loads(wire)["data"] == golden(cls)  # the payload on the wire is the stored payload


def test_the_extension_attribute_names_follow_the_cloud_events_rule() -> None:
    required = {"specversion", "id", "source", "type"}
    optional = {"datacontenttype", "dataschema", "subject", "time", "data"}
    extensions = set(CloudEvent.model_fields) - required - optional
    assert extensions == {
        "caseversion",
        "logposition",
        "correlationid",
        "causationid",
        "actorid",
        "actororg",
        "actorprincipal",
        "prevhash",
        "eventhash",
        "vsssig",
        "vsskeyid",
    }
    for name in extensions:
        assert re.fullmatch(r"[a-z0-9]{1,20}", name), name


def test_the_envelope_rejects_what_it_does_not_guarantee() -> None:
    wire = json.loads(_cloud_event(ev.CaseClosed.model_validate(golden(ev.CaseClosed))).model_dump_json())

    for broken in (
        {**wire, "eventhash": "not-a-sha256"},
        {**wire, "caseversion": 0},
        {**wire, "time": "2025-03-14T08:45:12"},  # no offset
        {**wire, "specversion": "0.3"},
        {**wire, "unexpected": "field"},
    ):
        with pytest.raises(ValidationError):
            CloudEvent.model_validate(broken)


def test_a_cloud_event_of_an_unknown_type_does_not_decode() -> None:
    wire = json.loads(_cloud_event(ev.CaseClosed.model_validate(golden(ev.CaseClosed))).model_dump_json())
    received = CloudEvent.model_validate({**wire, "type": "se.vss.case.CaseReopened.v1"})

    with pytest.raises(UnknownEventType) as raised:
        received.typed_data()
    assert raised.value.type_name == "se.vss.case.CaseReopened.v1"


# ========================================================================= golden payloads


def test_there_is_one_golden_payload_per_event_type() -> None:
    # case events here, notification events in test_notification_contracts.py, sharing events in
    # test_sharing_contracts.py
    events: tuple[EventClass, ...] = (
        *CASE_EVENTS,
        *LEGACY_CASE_EVENTS,
        *NOTIFICATION_EVENTS,
        *MEETING_GOLDEN,
    )
    sharing = {f"{cls.TYPE}.json" for cls in SHARING_EVENTS}
    meetings = {path.name for path in GOLDEN.glob("se.vss.meetings.*.json")}  # test_meeting_contracts.py
    assert {path.name for path in GOLDEN.glob("*.json")} == {
        f"{cls.TYPE}.json" for cls in events
    } | sharing | meetings


# The meeting events with golden payloads: those whose shape has changed (ADR 0019), both versions.
MEETING_GOLDEN: tuple[type[MeetingEventData], ...] = (
    me.ContactCadenceMissedV1,
    me.ContactCadenceMissedV2,
    me.ContactCadenceMissed,
    me.FollowUpOverdueV1,
    me.FollowUpOverdue,
)


def meeting_golden(cls: type[MeetingEventData]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{cls.TYPE}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("cls", [me.ContactCadenceMissed, me.FollowUpOverdue], ids=_id)
def test_a_current_meeting_report_decodes_unchanged(cls: type[MeetingEventData]) -> None:
    payload = meeting_golden(cls)

    decoded = decode_meeting_event(cls.TYPE, payload)

    assert type(decoded) is cls
    assert decoded.model_dump(mode="json") == payload


@pytest.mark.parametrize("old", [me.ContactCadenceMissedV2, me.FollowUpOverdueV1], ids=_id)
def test_a_report_naming_coordinators_by_user_id_reads_as_persons_of_no_organisation(
    old: type[MeetingEventData],
) -> None:
    payload = meeting_golden(old)
    old.model_validate(payload)  # still the shape it was published in

    decoded = decode_meeting_event(old.TYPE, payload)

    dumped = decoded.model_dump(mode="json")
    assert dumped["coordinators"] == [
        {"organisation_id": None, "user_id": user_id} for user_id in payload["coordinators"]
    ]  # nothing invented (ADR 0023)
    assert {k: v for k, v in dumped.items() if k != "coordinators"} == {
        k: v for k, v in payload.items() if k != "coordinators"
    }
    assert payload == meeting_golden(old)  # not rewritten


def test_a_report_names_each_coordinator_as_a_person() -> None:
    report = me.FollowUpOverdue.model_validate(meeting_golden(me.FollowUpOverdue))
    anna = report.coordinators[0]
    assert anna.names("goteborg-soc", "anna.lindqvist")
    assert not anna.names("vgr-psykiatri-nordost", "anna.lindqvist")  # a namesake is someone else
    with pytest.raises(ValidationError):  # the organisation is a field, null or not
        me.FollowUpOverdue.model_validate(
            {**meeting_golden(me.FollowUpOverdue), "coordinators": [{"user_id": "anna.lindqvist"}]}
        )


def test_a_v1_deviation_names_its_absent_coordinators_as_persons_of_no_organisation() -> None:
    v1 = golden(ev.MethodDeviationRecordedV1)
    deviation = decode_event(ev.MethodDeviationRecordedV1.TYPE, v1)
    assert isinstance(deviation, ev.MethodDeviationRecorded)
    dumped = deviation.model_dump(mode="json")
    assert dumped == {**v1, "absent_coordinators": [{"organisation_id": None, "user_id": "erik.johansson"}]}
    assert v1 == golden(ev.MethodDeviationRecordedV1)  # not rewritten


def test_a_v1_contact_cadence_report_reads_as_v2_with_the_period_of_its_phase() -> None:
    v1 = meeting_golden(me.ContactCadenceMissedV1)
    me.ContactCadenceMissedV1.model_validate(v1)  # still the shape it was published in

    missed = decode_meeting_event(me.ContactCadenceMissedV1.TYPE, v1)

    assert isinstance(missed, me.ContactCadenceMissed)
    assert missed.period is ContactPeriod.SOCIAL_RECOVERY  # the working phase's period
    assert missed.period_set is False  # the phase set it: no coordinator did
    dumped = missed.model_dump(mode="json")
    # Every figure as it was; the phase became a period and (v3) the coordinators persons.
    assert {k: v for k, v in dumped.items() if k not in ("period", "period_set", "coordinators")} == {
        k: v for k, v in v1.items() if k not in ("phase", "coordinators")
    }
    assert v1 == meeting_golden(me.ContactCadenceMissedV1)  # not rewritten


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_every_phase_of_a_v1_contact_cadence_report_has_a_period(phase: Phase) -> None:
    v1 = {**meeting_golden(me.ContactCadenceMissedV1), "phase": phase.value}
    missed = decode_meeting_event(me.ContactCadenceMissedV1.TYPE, v1)
    assert isinstance(missed, me.ContactCadenceMissed)
    assert missed.period is CONTACT_PERIOD_OF_PHASE[phase]


@pytest.mark.parametrize("cls", CASE_EVENTS, ids=_id)
def test_a_golden_payload_still_decodes_to_its_class(cls: type[CaseEventData]) -> None:
    payload = golden(cls)

    decoded = decode_event(cls.TYPE, payload)

    assert type(decoded) is cls
    # The shape is unchanged: adding, renaming or retyping a field is a new event version.
    assert decoded.model_dump(mode="json") == payload


@pytest.mark.parametrize("cls", LEGACY_CASE_EVENTS, ids=_id)
def test_a_golden_payload_of_an_earlier_version_decodes_to_the_current_one(cls: type[CaseEventData]) -> None:
    payload = golden(cls)
    cls.model_validate(payload)  # still the shape it was published in

    decoded = decode_event(cls.TYPE, payload)

    current = EVENT_TYPES[upcast(cls.TYPE, payload)[0]]
    assert type(decoded) is current
    assert current.event_name() == cls.event_name()
    assert current.event_version() > cls.event_version()
    assert payload == golden(cls)  # not rewritten


def test_a_v1_assignment_reads_as_v2_and_no_handover() -> None:
    v1 = golden(ev.CoordinatorAssignedV1)
    assigned = decode_event(ev.CoordinatorAssignedV1.TYPE, v1)
    assert isinstance(assigned, ev.CoordinatorAssigned)
    assert assigned.hands_over_from is None
    assert assigned.model_dump(mode="json") == {**v1, "hands_over_from": None}


def test_a_handover_names_a_person_of_the_incoming_coordinators_organisation() -> None:
    v2 = golden(ev.CoordinatorAssigned)
    handover = ev.CoordinatorAssigned.model_validate(v2)
    assert handover.hands_over_from == ev.PersonRef(
        organisation_id="vgr-psykiatri-nordost", user_id="anna.lindqvist"
    )
    with pytest.raises(ValidationError, match="themself"):
        ev.CoordinatorAssigned.model_validate(
            {**v2, "hands_over_from": {"organisation_id": "vgr-psykiatri-nordost", "user_id": "karin.berg"}}
        )
    with pytest.raises(ValidationError, match="within one organisation"):
        ev.CoordinatorAssigned.model_validate(
            {**v2, "hands_over_from": {"organisation_id": "goteborg-soc", "user_id": "anna.lindqvist"}}
        )
    with pytest.raises(ValidationError):  # a person is never a user id alone
        ev.CoordinatorAssigned.model_validate({**v2, "hands_over_from": "anna.lindqvist"})


def test_a_v1_unassignment_reads_as_v2_naming_the_user_id_and_no_organisation() -> None:
    v1 = golden(ev.CoordinatorUnassignedV1)
    unassigned = decode_event(ev.CoordinatorUnassignedV1.TYPE, v1)
    assert isinstance(unassigned, ev.CoordinatorUnassigned)
    assert unassigned.model_dump(mode="json") == {"organisation_id": None, **v1}  # nothing invented
    # It means the coordinator assigned with that user id, whichever organisation the case knew.
    assert unassigned.names("goteborg-soc", "erik.johansson")
    assert unassigned.names("vgr-psykiatri-nordost", "erik.johansson")
    assert not unassigned.names("goteborg-soc", "anna.lindqvist")


def test_a_v2_unassignment_names_one_person() -> None:
    v2 = golden(ev.CoordinatorUnassigned)
    unassigned = ev.CoordinatorUnassigned.model_validate(v2)
    assert (unassigned.organisation_id, unassigned.user_id) == ("goteborg-soc", "erik.johansson")
    assert unassigned.names("goteborg-soc", "erik.johansson")
    # the same user id at another organisation is someone else, who stays
    assert not unassigned.names("vgr-psykiatri-nordost", "erik.johansson")
    with pytest.raises(ValidationError):  # the organisation is a field of v2, null or not
        ev.CoordinatorUnassigned.model_validate({k: v for k, v in v2.items() if k != "organisation_id"})


def test_a_v1_sip_reads_as_v2_with_nothing_invented() -> None:
    v1 = golden(ev.SipDecidedV1)

    sip = decode_event(ev.SipDecidedV1.TYPE, v1)

    assert isinstance(sip, ev.SipDecided)
    assert sip.overall_responsibility is None  # v1 did not record it
    assert sip.initial is False
    assert [a.responsible_member_id for a in sip.actions] == [
        UUID(a["responsible_member_id"]) for a in v1["actions"]
    ]
    assert all(a.responsible_party is None for a in sip.actions)
    dumped = sip.model_dump(mode="json")
    assert {
        k: v
        for k, v in dumped.items()
        if k not in ("initial", "overall_responsibility", "actions", "participants")
    } == {k: v for k, v in v1.items() if k not in ("actions", "participants")}
    # v1 → v2 → v3: the coordinator participants by user id alone, their organisation null
    assert dumped["participants"] == [{**p, "organisation_id": None} for p in v1["participants"]]


# The events that carry participants: the version naming a coordinator by user id alone, and
# the next one, which names the person (ADR 0023).
PARTICIPANT_VERSIONS: list[tuple[type[CaseEventData], type[CaseEventData]]] = [
    (ev.WorksheetCompletedV1, ev.WorksheetCompleted),
    (ev.MappingSummarisedV1, ev.MappingSummarised),
    (ev.SipDecidedV2, ev.SipDecided),
    (ev.ResourceGroupMeetingHeldV1, ev.ResourceGroupMeetingHeld),
    (ev.EntryCorrectedV1, ev.EntryCorrected),
]


def _participants(payload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        payload["participants"] if "participants" in payload else payload["value"]["participants"]
    )
    return found


@pytest.mark.parametrize(("old", "new"), PARTICIPANT_VERSIONS, ids=lambda cls: cls.TYPE)
def test_an_earlier_participant_reads_with_a_null_organisation(
    old: type[CaseEventData], new: type[CaseEventData]
) -> None:
    payload = golden(old)
    data = decode_event(old.TYPE, payload)
    assert type(data) is new
    read = _participants(data.model_dump(mode="json"))
    assert read == [{**p, "organisation_id": None} for p in _participants(payload)]  # nothing invented
    assert payload == golden(old)  # not rewritten
    coordinators = [p for p in _participants(payload) if p["kind"] == "coordinator"]
    assert coordinators
    # a null organisation stands for every coordinator with the user id, of any organisation
    first = Participant.model_validate({**coordinators[0], "organisation_id": None})
    assert first.names("goteborg-soc", coordinators[0]["user_id"])
    assert first.names("vgr-psykiatri-nordost", coordinators[0]["user_id"])


@pytest.mark.parametrize(("old", "new"), PARTICIPANT_VERSIONS, ids=lambda cls: cls.TYPE)
def test_a_current_participant_names_a_coordinator_as_a_person(
    old: type[CaseEventData], new: type[CaseEventData]
) -> None:
    payload = golden(new)
    coordinators = [
        Participant.model_validate(p) for p in _participants(payload) if p["kind"] == "coordinator"
    ]
    assert coordinators
    assert all(p.organisation_id is not None for p in coordinators)
    anna = next(p for p in coordinators if p.user_id == "anna.lindqvist")
    assert anna.names("vgr-psykiatri-nordost", "anna.lindqvist")
    assert not anna.names("goteborg-soc", "anna.lindqvist")  # a namesake elsewhere is someone else
    with pytest.raises(ValidationError):  # the earlier version forbids the organisation
        old.model_validate(
            golden(new)
            if old is not ev.EntryCorrectedV1
            else {**golden(new), "corrects_type": golden(old)["corrects_type"]}
        )


def test_only_a_coordinator_participant_carries_an_organisation() -> None:
    with pytest.raises(ValidationError, match="only a coordinator"):
        Participant(kind=MemberKind.CLIENT, name="Tolvan Tolvansson", organisation_id="goteborg-soc")
    with pytest.raises(ValidationError, match="needs its user_id"):
        Participant(kind=MemberKind.COORDINATOR, name="Anna Lindqvist", organisation_id="goteborg-soc")


def test_a_v2_sip_names_the_principal_responsible_and_may_name_outside_parties() -> None:
    sip = decode_event(ev.SipDecided.TYPE, golden(ev.SipDecided))
    assert isinstance(sip, ev.SipDecided)
    assert sip.overall_responsibility is not None
    assert sip.overall_responsibility.principal is Principal.MUNICIPALITY
    [outside] = [a for a in sip.actions if a.responsible_party is not None]
    assert outside.responsible_member_id is None
    assert outside.responsible_party.organisation.name == "Försäkringskassan"
    with pytest.raises(ValidationError, match="exactly one"):
        decode_event(
            ev.SipDecided.TYPE,
            {
                **golden(ev.SipDecided),
                "actions": [{**golden(ev.SipDecided)["actions"][1], "responsible_party": None}],
            },
        )
    with pytest.raises(ValidationError, match="only in an initial SIP"):
        decode_event(ev.SipDecided.TYPE, {**golden(ev.SipDecided), "goal_ids": []})
    initial = decode_event(ev.SipDecided.TYPE, {**golden(ev.SipDecided), "goal_ids": [], "initial": True})
    assert isinstance(initial, ev.SipDecided)
    assert initial.initial
    with pytest.raises(ValidationError, match="a region or a municipality"):
        decode_event(
            ev.SipDecided.TYPE,
            {
                **golden(ev.SipDecided),
                "overall_responsibility": {"id": "fk", "name": "Försäkringskassan", "principal": "other"},
            },
        )


def test_golden_payloads_are_realistic() -> None:
    opened = decode_event(ev.CaseOpened.TYPE, golden(ev.CaseOpened))
    assert isinstance(opened, ev.CaseOpened)
    assert opened.client.personal_identity_number == "191212121212"
    assert (opened.municipality.code, opened.region.code) == ("1480", "14")

    sip = decode_event(ev.SipDecided.TYPE, golden(ev.SipDecided))
    assert isinstance(sip, ev.SipDecided)
    assert sip.client_agreed is True
    assert sip.decided_on < sip.next_follow_up_on


def test_a_payload_with_an_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError):
        decode_event(ev.CaseClosed.TYPE, {**golden(ev.CaseClosed), "closed_by": "anna.lindqvist"})


def test_a_payload_that_breaks_an_event_invariant_is_rejected() -> None:
    with pytest.raises(ValidationError, match="does not lie in region"):
        decode_event(
            ev.CaseOpened.TYPE,
            {**golden(ev.CaseOpened), "municipality": {"code": "0180", "name": "Stockholm"}},
        )
    with pytest.raises(ValidationError, match="valid_until is before signed_on"):
        decode_event(ev.ConsentGiven.TYPE, {**golden(ev.ConsentGiven), "valid_until": "2024-12-31"})


# =============================================================================== upcasting

OLD_CLOSED = "se.vss.case.CaseClosed.v0"


def _closed_v0_to_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """v0 (fake) had a timestamp ``closed_at`` and a free-text ``why``."""
    reasons = {"Målen uppnådda": "goals_achieved", "Flyttat": "client_moved"}
    return {
        "closed_on": payload["closed_at"][:10],
        "reason": reasons.get(payload["why"], "other"),
        "comment": payload["why"],
    }


OLD_PAYLOAD = {"closed_at": "2024-11-29T15:02:11+01:00", "why": "Flyttat"}


def test_an_old_payload_decodes_through_a_registered_upcaster() -> None:
    upcasters = {OLD_CLOSED: (ev.CaseClosed.TYPE, _closed_v0_to_v1)}

    decoded = decode_event(OLD_CLOSED, OLD_PAYLOAD, types=EVENT_TYPES, upcasters=upcasters)

    assert decoded == ev.CaseClosed(
        closed_on=date(2024, 11, 29), reason=ClosingReason.CLIENT_MOVED, comment="Flyttat"
    )
    assert OLD_CLOSED not in UPCASTERS  # the global table is untouched
    assert OLD_PAYLOAD == {"closed_at": "2024-11-29T15:02:11+01:00", "why": "Flyttat"}  # not rewritten


def test_without_the_upcaster_the_old_type_is_unknown() -> None:
    with pytest.raises(UnknownEventType) as raised:
        decode_event(OLD_CLOSED, OLD_PAYLOAD)
    assert raised.value.type_name == OLD_CLOSED


def test_upcasters_chain_from_the_oldest_version() -> None:
    older = "se.vss.case.CaseClosed.v00"
    upcasters = {
        older: (OLD_CLOSED, lambda p: {"closed_at": p["date"] + "T00:00:00+01:00", "why": p["text"]}),
        OLD_CLOSED: (ev.CaseClosed.TYPE, _closed_v0_to_v1),
    }

    expected = {"closed_on": "2023-06-30", "reason": "goals_achieved", "comment": "Målen uppnådda"}
    assert upcast(older, {"date": "2023-06-30", "text": "Målen uppnådda"}, upcasters) == (
        ev.CaseClosed.TYPE,
        expected,
    )
    decoded = decode_event(older, {"date": "2023-06-30", "text": "Målen uppnådda"}, upcasters=upcasters)
    assert isinstance(decoded, ev.CaseClosed)
    assert decoded.reason is ClosingReason.GOALS_ACHIEVED


def test_a_current_payload_passes_upcast_unchanged() -> None:
    payload = golden(ev.PhaseChanged)
    assert upcast(ev.PhaseChanged.TYPE, payload, {OLD_CLOSED: (ev.CaseClosed.TYPE, _closed_v0_to_v1)}) == (
        ev.PhaseChanged.TYPE,
        payload,
    )


def test_an_upcaster_cycle_is_a_programming_error() -> None:
    upcasters = {
        "se.vss.case.X.v1": ("se.vss.case.X.v2", dict),
        "se.vss.case.X.v2": ("se.vss.case.X.v1", dict),
    }
    with pytest.raises(RuntimeError, match="upcaster cycle"):
        decode_event("se.vss.case.X.v1", {}, upcasters=upcasters)


class CaseClosedV2(CaseEventData):
    """A test-only next version of CaseClosed: the comment became a required summary."""

    TYPE: ClassVar[str] = "se.vss.case.CaseClosed.v2"
    closed_on: date
    reason: ClosingReason
    summary: LongText


def test_a_stored_v1_payload_is_read_as_a_newer_version() -> None:
    types = {**EVENT_TYPES, CaseClosedV2.TYPE: CaseClosedV2}
    upcasters = {
        ev.CaseClosed.TYPE: (
            CaseClosedV2.TYPE,
            lambda p: {"closed_on": p["closed_on"], "reason": p["reason"], "summary": p["comment"] or "-"},
        )
    }

    decoded = decode_event(ev.CaseClosed.TYPE, golden(ev.CaseClosed), types=types, upcasters=upcasters)

    assert isinstance(decoded, CaseClosedV2)
    assert decoded.summary == "Avslutas i samförstånd efter två år."
    assert decoded.event_version() == 2
    assert type(decode_event(ev.CaseClosed.TYPE, golden(ev.CaseClosed))) is ev.CaseClosed  # globally still v1


# ============================================================== personal identity numbers


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("19121212-1212", "191212121212"),
        ("191212121212", "191212121212"),
        (" 19121212-1212 ", "191212121212"),
        ("19121272-1219", "191212721219"),  # samordningsnummer: day 12 + 60
        ("191212721219", "191212721219"),
        ("20000229-1235", "200002291235"),  # a leap day
    ],
)
def test_valid_personal_identity_numbers_are_normalised(text: str, canonical: str) -> None:
    assert normalise_personal_identity_number(text) == canonical
    assert normalise_personal_identity_number(text, today=date(2025, 3, 14)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("121212-1212", "expected twelve digits"),  # ten digits
        ("1212121212", "expected twelve digits"),
        ("19121212+1212", "expected twelve digits"),  # the 100-year separator is not accepted here
        ("19121212--1212", "expected twelve digits"),
        ("1912121-21212", "expected twelve digits"),
        ("19121212-121X", "expected twelve digits"),
        ("", "expected twelve digits"),
        ("19990230-1234", "not a valid date"),  # 30 February, with a correct check digit
        ("19991301-1236", "not a valid date"),  # month 13
        ("19990290-1231", "not a valid date"),  # samordningsnummer for 30 February
        ("18491231-1232", "not a plausible date of birth"),
        ("19121212-1213", "Luhn"),
        ("19121212-1211", "Luhn"),
        ("19121272-1212", "Luhn"),  # samordningsnummer with a wrong check digit
    ],
)
def test_invalid_personal_identity_numbers_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidPersonalIdentityNumber, match=message):
        normalise_personal_identity_number(text)


def test_a_date_of_birth_in_the_future_is_refused() -> None:
    today = date(2025, 3, 14)
    with pytest.raises(InvalidPersonalIdentityNumber, match="in the future"):
        normalise_personal_identity_number("20991231-1231", today=today)
    with pytest.raises(InvalidPersonalIdentityNumber, match="in the future"):
        normalise_personal_identity_number("20250315-1231", today=today)
    assert normalise_personal_identity_number("20250314-1232", today=today) == "202503141232"  # born today


def test_an_invalid_personal_identity_number_is_a_value_error() -> None:
    assert issubclass(InvalidPersonalIdentityNumber, ValueError)


def test_the_client_reference_validates_and_normalises_the_number() -> None:
    client = ClientRef(personal_identity_number="19121212-1212", name="Tolvan Tolvansson")
    assert client.personal_identity_number == "191212121212"
    with pytest.raises(ValidationError, match="Luhn"):
        ClientRef(personal_identity_number="19121212-1213", name="Tolvan Tolvansson")


def test_a_date_of_birth_in_the_future_is_refused_given_today() -> None:
    # The contract has no clock: ClientRef checks format, date and Luhn; the case service
    # refuses a birth date after today when the case is opened (see tests/domain).
    assert ClientRef(personal_identity_number="20991231-1231", name="Framtida Person")
    with pytest.raises(InvalidPersonalIdentityNumber, match="future"):
        normalise_personal_identity_number("20991231-1231", today=date(2026, 11, 23))


# ============================================================================= standalone


def test_the_contracts_package_imports_nothing_from_the_services(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "import vss_contracts, vss_contracts.jsonschema, vss_contracts.asyncapi, vss_contracts.registry\n"
        "import vss_contracts.webhooks\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60
    )
    modules = set(json.loads(result.stdout))

    assert {
        "vss_contracts.envelope",
        "vss_contracts.notification_events",
        "vss_contracts.webhooks",
    } <= modules
    forbidden = ("services", "eventsourcing", "fastapi", "psycopg", "orjson")
    leaked = sorted(m for m in modules if m.split(".")[0] in forbidden)
    assert leaked == []


def test_a_user_ids_schema_pattern_refuses_exactly_what_the_model_refuses() -> None:
    """The model's regex engine (pydantic's: Rust) and a JSON Schema validator (ECMA-262)
    disagree on \\s; the pattern spells the class out, so both refuse the same characters,
    and the model refuses exactly what it refused when the pattern was ^[^\\s]+$ (events
    stored since must still decode)."""
    model = TypeAdapter(UserId)
    before = TypeAdapter(
        Annotated[
            str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120, pattern=r"^[^\s]+$")
        ]
    )
    schema_pattern = re.compile(model.json_schema()["pattern"])

    def accepts(adapter: TypeAdapter[str], value: str) -> bool:
        try:
            adapter.validate_python(value)
        except ValidationError:
            return False
        return True

    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        value = f"a{chr(code)}b"
        accepted = accepts(model, value)
        assert accepted == accepts(before, value), hex(code)
        assert accepted == bool(schema_pattern.search(value)), hex(code)
