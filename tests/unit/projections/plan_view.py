"""A case overview view with a whole SIP and early-warning plan, made by the real aggregate.

The texts carry å, ä and ö so the renderers' output can be checked for them; the client
has an action of their own and an outside party (Arbetsförmedlingen) has one.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from services.case.domain import commands as cmd
from services.projections.domain.case_view import View, apply, start
from tests.domain import specs
from tests.unit.stories import Stream, story
from vss_contracts.case_events import OthersAction, OutsideParty, PlanContact, WarningSign
from vss_contracts.types import Worksheet

CLIENT_ACTION = UUID("5e1d0c3b-7a2f-4c8e-9b6d-3f2a1c0e0003")
PARTY_ACTION = UUID("5e1d0c3b-7a2f-4c8e-9b6d-3f2a1c0e0004")

ACTIONS = {
    "Läkemedelsgenomgång på mottagningen": "Leila Haddad",
    "Söka tre lägenheter i Örgryte": "Tolvan Tolvansson",
    "Kartlägga arbetsförmåga inför praktik": "Arbetsförmedlingen",
}
SIGNS = ("Sover mindre än fem timmar", "Slutar svara i telefon")
CONTACTS = ("Åsa Öberg", "Anna Lindqvist")
CONTACT_PHONES = ("070-123 45 67", "010-441 20 00")


def _plan() -> specs.Step:
    command = cmd.UpdateEarlyWarningPlan(
        signs=[
            WarningSign(sign_id="somn", description=SIGNS[0]),
            WarningSign(sign_id="tyst", description=SIGNS[1]),
        ],
        client_actions=["Ringa Åsa och berätta hur jag mår"],
        others_actions=[OthersAction(who="Åsa (syster)", what="Följa med till vårdcentralen")],
        contacts=[
            PlanContact(
                name=CONTACTS[0], relation="syster", phone=CONTACT_PHONES[0], email="asa@example.org"
            ),
            PlanContact(name=CONTACTS[1], relation="samordnare", phone=CONTACT_PHONES[1]),
        ],
        updated_on=specs.PLANNED_ON,
    )
    return lambda case: case.update_early_warning_plan(command)


def _sip() -> specs.Step:
    whats = list(ACTIONS)
    command = cmd.DecideSip(
        decided_on=specs.SIP_ON,
        overall_responsibility=specs.MUNICIPALITY_ORG,
        goal_ids=[specs.LONG_TERM_GOAL, specs.SUB_GOAL],
        actions=[
            cmd.ProposedAction(
                action_id=specs.ACTION_1,
                what=whats[0],
                responsible_member_id=specs.PSYCHIATRIST,
                due_on=specs.ACTION_DUE_ON,
                how="Besök tillsammans med Anna",
                goal_id=specs.LONG_TERM_GOAL,
            ),
            cmd.ProposedAction(
                action_id=CLIENT_ACTION,
                what=whats[1],
                responsible_member_id=specs.CLIENT_MEMBER,
                due_on=date(2025, 5, 31),
                how="Med stöd av boendestödjaren, två förmiddagar i veckan",
                goal_id=specs.SUB_GOAL,
            ),
            cmd.ProposedAction(
                action_id=PARTY_ACTION,
                what=whats[2],
                responsible_party=OutsideParty(organisation=specs.OTHER_ORG),
                due_on=date(2025, 6, 15),
                how="Möte på Arbetsförmedlingen i Hisingen",
            ),
        ],
        next_follow_up_on=specs.FOLLOW_UP_ON,
        participants=[specs.P_ANNA, specs.P_ERIK, specs.P_CLIENT, specs.P_PSYCHIATRIST],
        client_agreed=True,
    )
    return lambda case: case.decide_sip(command)


def plan_view() -> View:
    """The view of a case in its working phase, with the SIP and plan above."""
    steps = (
        specs.assign(specs.ANNA),
        specs.assign(specs.ERIK),
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG),
        specs.worksheet(Worksheet.INTERVIEW),
        specs.worksheet(Worksheet.NETWORK_MAP),
        specs.summarise(),
        specs.set_goal(),
        specs.sub_goal(),
        specs.client_member(),
        specs.psychiatrist(),
        specs.housing_support(),
        _plan(),
        _sip(),
    )
    first, *rest = Stream().records(story(*steps))
    view, _ = start(first)
    for record in rest:
        apply(view, record)
    return view


def meetings() -> list[dict[str, Any]]:
    return [
        {
            "meeting_id": "b0a4c1de-0000-4000-8000-000000000002",
            "kind": "resource_group",
            "starts_at": "2025-06-02T08:00:00+00:00",
            "ends_at": "2025-06-02T09:00:00+00:00",
            "location": "Vårdcentralen Högsbo",
            "ics_url": "meetings/b0a4c1de-0000-4000-8000-000000000002.ics",
        },
        {
            "meeting_id": "b0a4c1de-0000-4000-8000-000000000001",
            "kind": "client_contact",
            "starts_at": "2025-03-20T09:30:00+00:00",
            "ends_at": "2025-03-20T10:30:00+00:00",
            "location": None,
            "ics_url": "meetings/b0a4c1de-0000-4000-8000-000000000001.ics",
        },
    ]


def access_log() -> list[dict[str, Any]]:
    def entry(
        seq: int, at: str, user: str, organisation: str, read: str, outcome: str = "granted"
    ) -> dict[str, Any]:
        return {
            "seq": seq,
            "record_id": f"r{seq}",
            "at": at,
            "user_id": user,
            "organisation_id": organisation,
            "roles": ["coordinator"],
            "case_id": str(specs.CASE_ID),
            "read": read,
            "outcome": outcome,
            "reason": None,
            "principal": "region",
        }

    return [
        entry(1, "2025-03-10T08:15:00+00:00", specs.ANNA.user_id, specs.REGION_ORG.id, "overview"),
        entry(2, "2025-03-11T13:05:00+00:00", "maria.holm", specs.UNRELATED_ORG.id, "journal", "denied"),
        entry(3, "2025-03-12T18:40:00+00:00", "tolvan", "klient", "overview"),
    ]
