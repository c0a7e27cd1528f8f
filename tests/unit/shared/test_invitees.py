"""Invitees read back and dumped once per distinct invitee, as services keep them."""

from __future__ import annotations

from services.shared.invitees import invitee_from_json, invitee_json
from vss_contracts.meeting_events import Invitee, InviteeRole
from vss_contracts.types import OrganisationRef, Principal

NURSE = Invitee(
    invitee_id="member:nina",
    name="Nina Sköterska",
    role=InviteeRole.PROFESSIONAL,
    organisation=OrganisationRef(id="vgr-psykiatri", name="Psykiatri Nordost", principal=Principal.REGION),
    email="nina@example.se",
)


def test_equal_stored_invitees_are_read_into_one_shared_model_whatever_their_key_order() -> None:
    stored = NURSE.model_dump(mode="json")
    reordered = dict(reversed(list(stored.items())))
    first, again = invitee_from_json(stored), invitee_from_json(reordered)
    assert first == NURSE
    assert again is first
    assert invitee_from_json({**stored, "name": "Nina S"}) is not first


def test_a_dump_is_pydantics_in_its_key_order_and_each_caller_gets_its_own() -> None:
    first = invitee_json(NURSE)
    assert first == NURSE.model_dump(mode="json")
    assert list(first) == list(NURSE.model_dump(mode="json"))
    first["name"] = "changed"
    first["organisation"]["id"] = "someone-else"
    assert invitee_json(NURSE) == NURSE.model_dump(mode="json")
