"""Signing and checking plan links (ADR 0016): the signature is the credential."""

from __future__ import annotations

from uuid import UUID

import pytest

from services.shared.plan_links import (
    LinkKind,
    PlanLinkKeyTooShort,
    contact_holder,
    coordinator_holder,
    member_holder,
    plan_contact_holder,
    plan_link,
    sign,
    verify,
)
from services.shared.settings import PlanLinkSettings

KEY = b"k" * 32
CASE = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01")
OTHER_CASE = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f02")
HOLDER = member_holder(UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0006"))
PLAN = LinkKind.EARLY_WARNING_PLAN


def test_a_link_verifies_under_its_key_and_only_for_its_case_holder_and_kind() -> None:
    signature = sign(KEY, CASE, HOLDER, PLAN)
    assert verify(KEY, CASE, HOLDER, PLAN, signature)
    assert verify(KEY, str(CASE), HOLDER, PLAN, signature)  # the same case, as text
    assert not verify(b"x" * 32, CASE, HOLDER, PLAN, signature)  # a new key revokes every link
    assert not verify(KEY, OTHER_CASE, HOLDER, PLAN, signature)
    assert not verify(KEY, CASE, member_holder(UUID(int=1)), PLAN, signature)
    assert not verify(KEY, CASE, HOLDER, LinkKind.SIP, signature)  # a plan link opens no SIP
    assert not verify(KEY, CASE, HOLDER, PLAN, signature[:-1])
    assert not verify(KEY, CASE, HOLDER, PLAN, "")
    assert not verify(KEY, CASE, HOLDER, PLAN, "åäö")  # not ASCII: refused, not an error


def test_the_signature_is_url_safe_and_the_same_every_time() -> None:
    signature = sign(KEY, CASE, HOLDER, PLAN)
    assert signature == sign(KEY, CASE, HOLDER, PLAN)
    assert set(signature) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(signature) == 43  # the whole HMAC-SHA256, unpadded


def test_the_link_names_the_case_and_holder_and_carries_the_signature() -> None:
    link = plan_link("https://vss.example.se/", KEY, CASE, HOLDER, PLAN)
    assert link == f"https://vss.example.se/v1/plan-links/{CASE}/{HOLDER}?sig={sign(KEY, CASE, HOLDER, PLAN)}"
    sip = plan_link("https://vss.example.se", KEY, CASE, HOLDER, LinkKind.SIP)
    assert sip.startswith(f"https://vss.example.se/v1/plan-links/{CASE}/{HOLDER}/sip.pdf?sig=")


def test_a_contact_keeps_their_holder_key_while_their_details_stay_the_same() -> None:
    same = contact_holder("Åsa Öberg", "070-123 45 67", "asa@example.org")
    assert contact_holder(" åsa  öberg ", "0701234567", "ASA@example.org") == same
    assert contact_holder("Åsa Öberg", "070-999 99 99", "asa@example.org") != same
    assert contact_holder("Åsa Öberg", "070-123 45 67", None) != same
    assert same.startswith("contact:")


def test_a_member_named_in_the_plan_is_their_member_key_whatever_the_contact_says() -> None:
    member = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0006")
    assert plan_contact_holder(member, "Mamma", "0701", None) == member_holder(member)
    assert plan_contact_holder(str(member), "Birgitta", "0702", "b@example.se") == f"member:{member}"
    assert plan_contact_holder(None, "Granne", "0701234567", None) == contact_holder(
        "Granne", "0701234567", None
    )


def test_a_coordinator_key_is_one_path_segment_whatever_the_user_id_holds() -> None:
    assert coordinator_holder("vgr.se", "anna.lindqvist") == "coordinator:vgr.se:anna.lindqvist"
    odd = coordinator_holder("vgr", "avd/anna~ö")
    assert "/" not in odd
    assert odd == "coordinator:vgr:avd~2fanna~7e~c3b6"
    assert coordinator_holder("vgr", "avd/anna") != coordinator_holder("vgr", "avd~2fanna")


def test_the_key_is_the_setting_when_set_and_must_be_long_enough() -> None:
    assert PlanLinkSettings(plan_link_key="s" * 32).plan_link_signing_key() == b"s" * 32
    with pytest.raises(PlanLinkKeyTooShort):
        PlanLinkSettings(plan_link_key="short").plan_link_signing_key()
