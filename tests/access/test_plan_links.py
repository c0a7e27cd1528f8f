"""Plan links on the query API (ADR 0016): the signature is the credential, the read model decides.

The query API runs in-process over real SQLite read models projected from a real case
store, as in :mod:`tests.access.test_matrix`. A relative named in the early-warning plan
opens their own link with no token and no staff role; each opening and each refusal is in
the access log as that person.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.projections.application.queries import QueryPolicy
from services.projections.entrypoints.http import QueryDependencies
from services.projections.entrypoints.http import create_app as query_app
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.serving import ServedGenerations
from services.shared import geography
from services.shared.access_log import AccessLogStore
from services.shared.plan_links import (
    MAX_HOLDER_LENGTH,
    PLAN_LINK_PRINCIPAL,
    LinkKind,
    contact_holder,
    coordinator_holder,
    link_path,
    member_holder,
    sign,
)
from services.shared.settings import PlanLinkSettings
from tests.access.test_matrix import TOKENS
from tests.support.actors import ACTORS, make_actor
from tests.support.client_pages import project_since
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario
from vss_contracts.case_events import OthersAction, PlanContact, WarningSign
from vss_contracts.types import MemberKind, OrganisationRef, Principal

KEY = b"plan-link-test-key-" + b"x" * 32
PLAN = LinkKind.EARLY_WARNING_PLAN
HTML = {"Accept": "text/html"}
SIGNS = ("Sover mindre än fem timmar", "Slutar svara i telefon")
CLIENT_ACTION = "Ringa mamma och berätta hur jag mår"
OTHERS_ACTION = "Följa med till vårdcentralen"
FRIEND = PlanContact(name="Göran Granne", relation="granne", phone="070-123 45 67")


@dataclass
class PlanCase:
    """A case whose plan names the client's mother (a member) and a neighbour, and its query API."""

    scenario: CaseScenario
    store: CaseEventStore
    location: ReadModelLocation
    access_log: AccessLogStore
    client: TestClient
    projected: int = 0

    @property
    def case_id(self) -> UUID:
        assert self.scenario.case_id is not None
        return self.scenario.case_id

    @property
    def mother(self) -> str:
        return member_holder(self.scenario.member_ids["mother"])

    def project(self) -> None:
        """The read models catch up with the case store (as the live projection does)."""
        self.projected = project_since(self.store, self.location, self.projected)

    def plan(self, *contacts: PlanContact) -> None:
        command = cmd.UpdateEarlyWarningPlan(
            signs=[WarningSign(sign_id=f"s{i}", description=text) for i, text in enumerate(SIGNS)],
            client_actions=[CLIENT_ACTION],
            others_actions=[OthersAction(who="Mamma", what=OTHERS_ACTION)],
            contacts=list(contacts),
            updated_on=self.scenario.today,
        )
        self.scenario.run(lambda c: c.update_early_warning_plan(command))
        self.project()

    def mother_contact(self) -> PlanContact:
        return PlanContact(
            name="Birgitta Tolvansson",
            relation="mamma",
            phone="070-765 43 21",
            member_id=self.scenario.member_ids["mother"],
        )

    def withdraw_relatives(self) -> None:
        command = cmd.WithdrawConsent(
            withdrawn_on=self.scenario.today,
            entire=False,
            organisation_ids=[],
            relatives=True,
            reason="Vill inte",
        )
        self.scenario.run(lambda c: c.withdraw_consent(command), ACTORS.municipality)
        self.project()

    def url(self, holder: str, kind: LinkKind = PLAN, *, pdf: bool = False, sig: str | None = None) -> str:
        path = link_path(self.case_id, holder, kind) + ("/plan.pdf" if pdf else "")
        return f"{path}?sig={sig if sig is not None else sign(KEY, self.case_id, holder, kind)}"


@pytest.fixture
def case(tmp_path: Path) -> Iterator[PlanCase]:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    clock = FixedClock()
    scenario = CaseScenario(CaseService(store, clock), clock)
    scenario.open()
    scenario.assign_coordinators()
    scenario.give_consent()
    scenario.add_members()
    scenario.add_member(
        "mother",
        lambda day: cmd.AddMember(
            kind=MemberKind.RELATIVE, name="Birgitta Tolvansson", role="mamma", added_on=day
        ),
    )
    access_log = AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")
    location = ReadModelLocation(f"sqlite:///{tmp_path / 'readmodels'}")
    app = query_app(
        QueryDependencies(
            served=ServedGenerations(location),
            access_log=access_log,
            tokens=TOKENS,
            today=clock.today,
            wait_limit=1.0,
            policy=QueryPolicy(),
            association_of=geography.association_of,
            plan_link_key=KEY,
        )
    )
    planned = PlanCase(scenario, store, location, access_log, TestClient(app, raise_server_exceptions=False))
    planned.project()
    planned.plan(planned.mother_contact(), FRIEND)
    yield planned
    location.close()
    store.close()


def _log(case: PlanCase, holder: str) -> list[tuple[str, str, str | None, str, str | None]]:
    found = case.access_log.for_case(str(case.case_id), 0, 10_000)
    return [
        (r.resource, r.outcome, r.reason, r.organisation_id, r.principal)
        for _, r in found
        if r.user_id == holder
    ]


def _no_store(response: Any) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    # Nothing from elsewhere, in nobody's frame; the page's one inline <style> still applies.
    assert response.headers["content-security-policy"] == (
        "frame-ancestors 'none'; default-src 'self'; style-src 'self' 'unsafe-inline'"
    )


def test_a_relative_named_in_the_plan_opens_it_without_a_role_and_the_read_is_theirs(case: PlanCase) -> None:
    response = case.client.get(case.url(case.mother), headers=HTML)
    assert response.status_code == 200, response.text
    _no_store(response)
    page = response.text
    for text in (*SIGNS, CLIENT_ACTION, OTHERS_ACTION, "Birgitta Tolvansson", FRIEND.name, FRIEND.phone):
        assert text in page
    assert _log(case, case.mother) == [("early_warning_plan", "granted", None, "", PLAN_LINK_PRINCIPAL)]
    [record] = [r for _, r in case.access_log.for_case(str(case.case_id), 0, 100) if r.user_id == case.mother]
    assert record.roles == ()  # no staff role
    pdf = case.client.get(case.url(case.mother, pdf=True))
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    _no_store(pdf)


def test_the_page_links_its_pdf_with_the_same_signature(case: PlanCase) -> None:
    page = case.client.get(case.url(case.mother), headers=HTML).text
    signature = sign(KEY, case.case_id, case.mother, PLAN)
    assert f"{link_path(case.case_id, case.mother, PLAN)}/plan.pdf?sig={signature}" in page


def test_a_friend_and_a_coordinator_open_their_own_links(case: PlanCase) -> None:
    friend = contact_holder(FRIEND.name, FRIEND.phone, None)
    assert case.client.get(case.url(friend), headers=HTML).status_code == 200
    assert _log(case, friend) == [("early_warning_plan", "granted", None, "", PLAN_LINK_PRINCIPAL)]
    region = ACTORS.region
    coordinator = coordinator_holder(region.organisation_id, region.user_id)
    assert case.client.get(case.url(coordinator), headers=HTML).status_code == 200
    assert _log(case, coordinator) == [
        ("early_warning_plan", "granted", None, region.organisation_id, PLAN_LINK_PRINCIPAL)
    ]


def test_a_wrong_signature_is_refused_and_logged(case: PlanCase) -> None:
    other_key = sign(b"another-key-" + b"y" * 32, case.case_id, case.mother, PLAN)
    response = case.client.get(case.url(case.mother, sig=other_key), headers=HTML)
    assert response.status_code == 403
    assert "Länken fungerar inte längre" in response.text
    assert SIGNS[0] not in response.text
    _no_store(response)
    as_json = case.client.get(case.url(case.mother, sig=""))
    assert as_json.status_code == 403
    assert as_json.headers["content-type"].startswith("application/problem+json")
    assert as_json.json()["rule"] == "bad_signature"
    # A link for one person opens nothing for another: the holder is signed.
    friend = contact_holder(FRIEND.name, FRIEND.phone, None)
    swapped = f"{link_path(case.case_id, friend, PLAN)}?sig={sign(KEY, case.case_id, case.mother, PLAN)}"
    assert case.client.get(swapped).status_code == 403
    assert _log(case, case.mother) == [
        ("early_warning_plan", "denied", "bad_signature", "", PLAN_LINK_PRINCIPAL),
        ("early_warning_plan", "denied", "bad_signature", "", PLAN_LINK_PRINCIPAL),
    ]
    assert _log(case, friend) == [("early_warning_plan", "denied", "bad_signature", "", PLAN_LINK_PRINCIPAL)]


def test_a_new_plan_version_without_the_relative_refuses_the_same_link(case: PlanCase) -> None:
    link = case.url(case.mother)
    assert case.client.get(link, headers=HTML).status_code == 200
    case.plan(FRIEND)  # the mother is no longer named
    refused = case.client.get(link, headers=HTML)
    assert refused.status_code == 403
    assert "Länken fungerar inte längre" in refused.text
    assert case.client.get(case.url(case.mother, pdf=True)).status_code == 403
    assert _log(case, case.mother) == [
        ("early_warning_plan", "granted", None, "", PLAN_LINK_PRINCIPAL),
        ("early_warning_plan", "denied", "not_named", "", PLAN_LINK_PRINCIPAL),
        ("early_warning_plan_pdf", "denied", "not_named", "", PLAN_LINK_PRINCIPAL),
    ]
    friend = contact_holder(FRIEND.name, FRIEND.phone, None)
    assert case.client.get(case.url(friend)).status_code == 200  # still named: still works


def test_a_withdrawal_for_relatives_refuses_the_relative_and_the_friend(case: PlanCase) -> None:
    case.withdraw_relatives()
    friend = contact_holder(FRIEND.name, FRIEND.phone, None)
    for holder in (case.mother, friend):
        response = case.client.get(case.url(holder), headers=HTML)
        assert response.status_code == 403
        assert _log(case, holder) == [
            ("early_warning_plan", "denied", "not_covered", "", PLAN_LINK_PRINCIPAL)
        ]
    region = ACTORS.region
    coordinator = coordinator_holder(region.organisation_id, region.user_id)
    assert case.client.get(case.url(coordinator)).status_code == 200  # a coordinator, while assigned


def test_a_member_opens_the_whole_sip_once_decided(case: PlanCase) -> None:
    municipality = member_holder(case.scenario.member_ids["municipality"])
    sip = case.url(municipality, LinkKind.SIP)
    assert case.client.get(sip).status_code == 403  # no SIP yet
    case.scenario.complete_worksheet()
    case.scenario.summarise_mapping()
    case.scenario.set_goal()
    case.scenario.decide_sip()
    case.project()
    response = case.client.get(sip)
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    # A plan link does not open the SIP: the kind is signed.
    plan_signature = sign(KEY, case.case_id, municipality, PLAN)
    wrong_kind = f"{link_path(case.case_id, municipality, LinkKind.SIP)}?sig={plan_signature}"
    assert case.client.get(wrong_kind).status_code == 403
    assert [entry[:3] for entry in _log(case, municipality)] == [
        ("sip_pdf", "denied", "no_plan"),
        ("sip_pdf", "granted", None),
        ("sip_pdf", "denied", "bad_signature"),
    ]


def test_the_longest_coordinator_holder_key_opens_its_link(case: PlanCase) -> None:
    """A user id of the longest kind (120 characters of four UTF-8 bytes each, escaped to nine
    characters apiece) in an organisation id of the longest kind still makes a link that opens."""
    organisation = OrganisationRef(id="o" * 64, name="Lång organisation", principal=Principal.OTHER)
    longest = make_actor("\U0001f600" * 120, organisation)
    leaving = cmd.UnassignCoordinator(unassigned_on=case.scenario.today)
    case.scenario.run(lambda c: c.unassign_coordinator(ACTORS.municipality.user_id, leaving))
    case.scenario.assign_coordinator(longest)
    case.project()
    holder = coordinator_holder(longest.organisation_id, longest.user_id)
    assert len(holder) == MAX_HOLDER_LENGTH
    response = case.client.get(case.url(holder), headers=HTML)
    assert response.status_code == 200, response.text[:300]
    assert _log(case, holder) == [("early_warning_plan", "granted", None, "o" * 64, PLAN_LINK_PRINCIPAL)]


def test_without_the_setting_the_key_is_a_file_in_the_data_directory_made_once(tmp_path: Path) -> None:
    made = PlanLinkSettings(data_dir=tmp_path).plan_link_signing_key()
    assert len(made) >= 32
    assert (tmp_path / "keys" / "plan-links.key").stat().st_mode & 0o777 == 0o600
    assert PlanLinkSettings(data_dir=tmp_path).plan_link_signing_key() == made


def test_without_a_key_every_link_is_refused_and_logged(case: PlanCase) -> None:
    app = case.client.app
    deps = app.state.deps  # type: ignore[attr-defined]
    app.state.deps = replace(deps, plan_link_key=None)  # type: ignore[attr-defined]
    response = case.client.get(case.url(case.mother))
    assert response.status_code == 403
    assert response.json()["rule"] == "bad_signature"
    assert _log(case, case.mother) == [
        ("early_warning_plan", "denied", "bad_signature", "", PLAN_LINK_PRINCIPAL)
    ]
