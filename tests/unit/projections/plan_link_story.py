"""Cases whose early-warning plan names a relative member, a friend and a coordinator member,
made by the real aggregate and folded into the overview view (as the query API keeps it)."""

from __future__ import annotations

from uuid import UUID

from services.case.domain import commands as cmd
from services.projections.domain.case_view import View, apply, start
from services.shared.plan_links import contact_holder, coordinator_holder, member_holder
from tests.domain import specs
from tests.unit.stories import Stream, story
from vss_contracts.case_events import OthersAction, PlanContact, WarningSign

FRIEND = PlanContact(name="Göran Granne", relation="granne", phone="070-123 45 67", email="goran@example.org")
MOTHER = PlanContact(
    name="Birgitta Tolvansson", relation="mamma", phone="070-765 43 21", member_id=specs.MOTHER
)
ANNA = PlanContact(
    name=specs.ANNA.name, relation="samordnare", phone="010-441 20 00", member_id=specs.ANNA_MEMBER
)

MOTHER_KEY = member_holder(specs.MOTHER)
FRIEND_KEY = contact_holder(FRIEND.name, FRIEND.phone, str(FRIEND.email))
ANNA_MEMBER_KEY = member_holder(specs.ANNA_MEMBER)
ERIK_KEY = coordinator_holder(specs.ERIK.organisation.id, specs.ERIK.user_id)
PSYCHIATRIST_KEY = member_holder(specs.PSYCHIATRIST)
HOUSING_KEY = member_holder(specs.HOUSING_SUPPORT)


def plan(*contacts: PlanContact, signs: tuple[str, ...] = ("Sover mindre än fem timmar",)) -> specs.Step:
    command = cmd.UpdateEarlyWarningPlan(
        signs=[WarningSign(sign_id=f"s{i}", description=text) for i, text in enumerate(signs)],
        client_actions=["Ringa mamma och berätta hur jag mår"],
        others_actions=[OthersAction(who="Mamma", what="Följa med till vårdcentralen")],
        contacts=list(contacts),
        updated_on=specs.PLANNED_ON,
    )
    return lambda case: case.update_early_warning_plan(command)


NAMED = (
    *specs.PLANNED,
    specs.mother(),
    specs.coordinator_member(),
    plan(MOTHER, FRIEND, ANNA),
)


def view_of(*steps: specs.Step, case_id: UUID = specs.CASE_ID) -> View:
    first, *rest = Stream().records(story(*steps, case_id=case_id))
    view, _ = start(first)
    for record in rest:
        apply(view, record)
    return view
