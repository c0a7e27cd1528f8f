"""Whether a plan link's holder may still open it, decided on the case overview alone (ADR 0016).

The signature says who the link was handed to; this says whether that person is still
someone the plan is for, today:

- a coordinator (``coordinator:…``) while assigned to the case;
- for the early-warning plan, anyone else while the plan in force names them (a member by
  ``member_id``, anyone else by name, phone and email: :mod:`services.shared.plan_links`);
  for the whole SIP, a member while in the resource group;
- and while the consent covers them, by the one rule for a person named in the case that
  the notifications service tells them by (:func:`services.shared.access.person_covered`):
  the client always; a coordinator member while assigned (the person, organisation and user
  id); any other member with an organisation while the consent in force covers it (a coordinating
  organisation's other people included: its grant is for its coordinators); a relative,
  or anyone the plan names who is not a member (a private person), while the consent in
  force covers relatives.

A closed case's links no longer work: its plans are no longer in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.projections.domain.case_view import View
from services.shared.access import person_covered
from services.shared.plan_links import (
    LinkKind,
    coordinator_holder,
    member_holder,
    plan_contact_holder,
)

# Why a link is refused: the access log's reason and the refusal's rule.
NOT_NAMED = "not_named"
NOT_COVERED = "not_covered"
CASE_CLOSED = "case_closed"
NO_PLAN = "no_plan"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who opens a link, as the access log records them."""

    key: str
    name: str
    organisation_id: str  # "" for a private person


@dataclass(frozen=True, slots=True)
class Decision:
    holder: Holder | None  # None: nobody of that key is named (the log keeps the key alone)
    refused: str | None = None  # None: the link opens

    @property
    def allowed(self) -> bool:
        return self.refused is None


def _member(view: View, key: str) -> dict[str, Any] | None:
    return next((m for m in view.get("resource_group", ()) if member_holder(m["member_id"]) == key), None)


def _coordinator(view: View, key: str) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in view.get("coordinators", ())
            if coordinator_holder(c["organisation"]["id"], c["user_id"]) == key
        ),
        None,
    )


def _named_in_plan(view: View, key: str) -> dict[str, Any] | None:
    plan = view.get("early_warning_plan") or {}
    for contact in plan.get("contacts", ()):
        holder = plan_contact_holder(
            contact.get("member_id"), contact["name"], contact.get("phone"), contact.get("email")
        )
        if holder == key:
            return dict(contact)
    return None


def _covered(
    view: View,
    organisation_id: str | None,
    today: str,
    *,
    client: bool = False,
    coordinator: bool = False,
    relative: bool = False,
) -> bool:
    """The one rule for a person named in the case (:func:`person_covered`, as the
    notifications service tells them), over the view's consent."""
    consent = view.get("consent")
    in_force = consent is not None and not consent.get("withdrawn")
    return person_covered(
        organisation_id,
        client=client,
        coordinator=coordinator,
        relative=relative,
        consent_orgs=[o["id"] for o in consent["organisations"]] if consent and in_force else None,
        consent_relatives=bool(consent.get("covers_relatives")) if consent and in_force else False,
        consent_valid_until=consent.get("valid_until") if consent and in_force else None,
        today=today,
    )


def relatives_covered(view: View, today: str) -> bool:
    """Whether the consent in force today covers relatives (and private persons)."""
    return _covered(view, None, today, relative=True)


def _member_covered(view: View, member: dict[str, Any], today: str) -> bool:
    organisation = member.get("organisation")
    organisation_id = organisation["id"] if organisation else None
    # A coordinator is always told while assigned: the person, (organisation, user id), not
    # anyone of a coordinating organisation (an unassigned one is judged by the consent).
    assigned = {(c["organisation"]["id"], c["user_id"]) for c in view.get("coordinators", ())}
    coordinator = member.get("kind") == "coordinator" and (organisation_id, member.get("user_id")) in assigned
    return _covered(
        view,
        organisation_id,
        today,
        client=member.get("kind") == "client",
        coordinator=coordinator,
        relative=member.get("kind") == "relative",
    )


def decide(view: View, key: str, kind: LinkKind, today: str) -> Decision:
    """Whether the holder ``key`` may open the case's ``kind`` of plan on ``today`` (ISO date)."""
    coordinator = _coordinator(view, key) if key.startswith("coordinator:") else None
    if coordinator is not None:
        holder = Holder(key, coordinator["name"], coordinator["organisation"]["id"])
        return Decision(holder, CASE_CLOSED if view.get("status") == "closed" else None)
    member = _member(view, key) if key.startswith("member:") else None
    if kind is LinkKind.SIP:
        if member is None:
            return Decision(None, NOT_NAMED)
        holder = _member_holder(key, member)
        if view.get("status") == "closed":
            return Decision(holder, CASE_CLOSED)
        if view.get("sip") is None:
            return Decision(holder, NO_PLAN)
        return Decision(holder, None if _member_covered(view, member, today) else NOT_COVERED)
    contact = _named_in_plan(view, key)
    if contact is None:
        return Decision(_member_holder(key, member) if member else None, NOT_NAMED)
    if member is not None:
        holder = _member_holder(key, member)
        covered = _member_covered(view, member, today)
    else:  # not (or no longer) a member: a private person, as the notifications service tells them
        holder = Holder(key, contact["name"], "")
        covered = relatives_covered(view, today)
    if view.get("status") == "closed":
        return Decision(holder, CASE_CLOSED)
    return Decision(holder, None if covered else NOT_COVERED)


def _member_holder(key: str, member: dict[str, Any]) -> Holder:
    organisation = member.get("organisation")
    return Holder(key, member["name"], organisation["id"] if organisation else "")
