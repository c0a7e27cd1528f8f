"""Who may write a case is also who may read it: a command's answer tells of the case.

A case opened by Borås, whose client consents for Västra Götalandsregionen and Göteborg only:
Borås reads it, and writes it, until the consent is given; then neither, while its people do
not coordinate. Each refused write is a 403 naming the rule, as a refused read is, logged as
denied, with nothing of the case in it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.shared.access_log import AccessLogStore
from tests.api.conftest import Api
from tests.support.actors import coordinator_for, make_actor, organisation_of
from tests.support.clock import FixedClock
from tests.support.scenario import CLIENT, coordinator_participant, new_request, open_case_command
from tests.support.stores import StoreFactory
from vss_contracts.types import MemberKind, OrganisationRef, Participant, Principal, Worksheet

BORAS = make_actor(
    "britt.boras",
    OrganisationRef(
        id="boras-stad-socialtjanst", name="Borås stad, socialtjänsten", principal=Principal.MUNICIPALITY
    ),
)
VGR = make_actor(
    "vera.vgr",
    OrganisationRef(
        id="vgr-psykiatri-goteborg", name="Västra Götalandsregionen, psykiatri", principal=Principal.REGION
    ),
)
GOTEBORG = make_actor(
    "gustav.gbg",
    OrganisationRef(
        id="goteborg-socialtjanst", name="Göteborgs stad, socialtjänsten", principal=Principal.MUNICIPALITY
    ),
)


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def _assign(api: Api, case_id: UUID, coordinator: Any, clock: FixedClock) -> Any:
    body = cmd.AssignCoordinator(coordinator=coordinator_for(coordinator), assigned_on=clock.today())
    return api.post(f"/{case_id}/coordinators", body, actor=BORAS)


def _consent(clock: FixedClock) -> cmd.GiveConsent:
    return cmd.GiveConsent(
        organisations=[organisation_of(VGR), organisation_of(GOTEBORG)],
        covers_relatives=True,
        signed_on=clock.today(),
        valid_until=clock.today() + timedelta(days=365),
    )


def _worksheet(clock: FixedClock, *coordinators: Any) -> cmd.CompleteWorksheet:
    """The interview, with the client and ``coordinators`` (none: the rule's refusal names them)."""
    return cmd.CompleteWorksheet(
        worksheet=Worksheet.INTERVIEW,
        completed_on=clock.today(),
        participants=[
            Participant(kind=MemberKind.CLIENT, name=CLIENT.name),
            *(coordinator_participant(c) for c in coordinators),
        ],
        summary="Gick igenom intervjun.",
    )


def _opened(api: Api, clock: FixedClock) -> UUID:
    """Borås opens the case and, before any consent, assigns VGR's and Göteborg's coordinators."""
    case_id = UUID(_ok(api.post("", open_case_command(clock.today()), actor=BORAS))["case_id"])
    _ok(_assign(api, case_id, VGR, clock))
    _ok(_assign(api, case_id, GOTEBORG, clock))
    return case_id


def _refused_without_the_case(response: Any, case_id: UUID) -> None:
    assert response.status_code == 403, response.text
    problem = response.json()
    assert (problem["type"], problem["rule"]) == ("urn:vss:problem:no_consent", "no_consent")
    # Nothing of the case: not its coordinators, its client or its consent.
    for told in (VGR.user_id, GOTEBORG.user_id, VGR.organisation_id, GOTEBORG.organisation_id, CLIENT.name):
        assert told not in response.text
    assert str(case_id) in problem["detail"]


def test_the_opener_writes_until_a_consent_leaves_it_out_then_is_refused_as_its_reads_are(
    api: Api, clock: FixedClock, access_log: AccessLogStore, service: CaseService
) -> None:
    case_id = _opened(api, clock)  # the opener writes before any consent
    _ok(api.post(f"/{case_id}/consents", _consent(clock), actor=BORAS))
    version = service.get(case_id).version

    # The client consents for VGR and Göteborg: Borås reads nothing of the case now ...
    assert api.get(f"/{case_id}", actor=BORAS).json()["rule"] == "no_consent"
    # ... and writes nothing: not a command the case's rules would refuse naming its people,
    # nor one they would take, with or without If-Match or Idempotency-Key.
    _refused_without_the_case(api.post(f"/{case_id}/worksheets", _worksheet(clock), actor=BORAS), case_id)
    _refused_without_the_case(
        api.post(
            f"/{case_id}/worksheets",
            _worksheet(clock, VGR, GOTEBORG),
            actor=BORAS,
            headers={"If-Match": f'"{version}"', "Idempotency-Key": "boras-1"},
        ),
        case_id,
    )
    _refused_without_the_case(api.post(f"/{case_id}/consents", _consent(clock), actor=BORAS), case_id)
    assert service.get(case_id).version == version  # nothing recorded

    # A coordinator's organisation writes on.
    written = _ok(api.post(f"/{case_id}/worksheets", _worksheet(clock, VGR, GOTEBORG), actor=VGR))
    assert written["version"] == version + 1

    denied = [r for _, r in access_log.for_case(str(case_id), 0, 100) if r.outcome == "denied"]
    assert [(r.user_id, r.organisation_id, r.resource) for r in denied] == [
        (BORAS.user_id, BORAS.organisation_id, "case"),
        *[(BORAS.user_id, BORAS.organisation_id, "command")] * 3,
    ]
    assert all((r.reason or "").startswith("no_consent: ") for r in denied)


def test_a_write_is_refused_on_the_version_it_is_decided_on(
    api: Api, clock: FixedClock, access_log: AccessLogStore, service: CaseService, open_store: StoreFactory
) -> None:
    """The API's cached copy says Borås may still read the case; another process has recorded
    the consent meanwhile. The command is decided on the stored case, and refused there."""
    case_id = _opened(api, clock)
    other = CaseService(open_store(), clock)
    other.execute(new_request(VGR), case_id, lambda case: case.give_consent(_consent(clock)))

    response = api.post(f"/{case_id}/worksheets", _worksheet(clock), actor=BORAS)

    _refused_without_the_case(response, case_id)
    denied = [r for _, r in access_log.for_case(str(case_id), 0, 100) if r.outcome == "denied"]
    assert [(r.organisation_id, r.resource) for r in denied] == [(BORAS.organisation_id, "command")]
