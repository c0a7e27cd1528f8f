"""A refusal of a write tells of the case, so it follows the one access rule; the write does not.

A case opened by Borås, whose client consents for Västra Götalandsregionen and Göteborg only:
Borås reads it until the consent is given, then not, while its people do not coordinate. It
still writes what the case's rules let the opener write (what happened can be recorded: a case
whose coordinators left is not stuck), but when the rules refuse its command the answer is a
403 naming the access rule, as a refused read is, logged as denied, with nothing of the case in
it, instead of the rule's refusal (which names the case's people and facts).
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


def test_a_refusal_to_a_writer_the_consent_leaves_out_tells_nothing_of_the_case(
    api: Api, clock: FixedClock, access_log: AccessLogStore, service: CaseService
) -> None:
    case_id = _opened(api, clock)  # the opener writes before any consent
    _ok(api.post(f"/{case_id}/consents", _consent(clock), actor=BORAS))
    version = service.get(case_id).version

    # The client consents for VGR and Göteborg: Borås reads nothing of the case now ...
    assert api.get(f"/{case_id}", actor=BORAS).json()["rule"] == "no_consent"
    # ... and a command the case's rules refuse (naming its coordinators, with or without
    # If-Match and Idempotency-Key) is answered as that read is.
    _refused_without_the_case(api.post(f"/{case_id}/worksheets", _worksheet(clock), actor=BORAS), case_id)
    _refused_without_the_case(
        api.post(
            f"/{case_id}/worksheets",
            _worksheet(clock),
            actor=BORAS,
            headers={"If-Match": f'"{version}"', "Idempotency-Key": "boras-1"},
        ),
        case_id,
    )
    assert service.get(case_id).version == version  # nothing recorded
    # The same refusal to a coordinator's organisation names the rule and why.
    refused = api.post(f"/{case_id}/worksheets", _worksheet(clock), actor=VGR)
    assert refused.status_code == 409
    assert VGR.user_id in refused.text

    # What the rules take from the opener is recorded; its answer tells only versions.
    written = _ok(api.post(f"/{case_id}/worksheets", _worksheet(clock, VGR, GOTEBORG), actor=BORAS))
    assert written["version"] == version + 1
    assert CLIENT.name not in str(written)
    assert VGR.user_id not in str(written)

    denied = [r for _, r in access_log.for_case(str(case_id), 0, 100) if r.outcome == "denied"]
    assert [(r.user_id, r.organisation_id, r.resource) for r in denied] == [
        (BORAS.user_id, BORAS.organisation_id, "case"),
        *[(BORAS.user_id, BORAS.organisation_id, "command")] * 2,
    ]
    assert all((r.reason or "").startswith("no_consent: ") for r in denied)


def test_a_case_whose_coordinators_left_can_still_be_written_by_its_opener(
    api: Api, clock: FixedClock, service: CaseService
) -> None:
    """The consent leaves Borås out and the only coordinator leaves: the opener assigns the
    next one and the case goes on (a write refused for the access rule would leave the case
    with nobody who may record anything, not even its closing)."""
    case_id = UUID(_ok(api.post("", open_case_command(clock.today()), actor=BORAS))["case_id"])
    _ok(_assign(api, case_id, VGR, clock))
    _ok(api.post(f"/{case_id}/consents", _consent(clock), actor=BORAS))
    left = {"unassigned_on": str(clock.today())}
    _ok(api.post(f"/{case_id}/coordinators/{VGR.user_id}/unassignment", left, actor=VGR))

    _ok(_assign(api, case_id, GOTEBORG, clock))

    assert [c.organisation.id for c in service.get(case_id).state.coordinators.values()] == [
        GOTEBORG.organisation_id
    ]


def test_a_refusal_is_judged_on_the_version_it_is_decided_on(
    api: Api, clock: FixedClock, access_log: AccessLogStore, service: CaseService, open_store: StoreFactory
) -> None:
    """The API's cached copy says Borås may still read the case; another process has recorded
    the consent meanwhile. The command is decided on the stored case, and its refusal withheld."""
    case_id = _opened(api, clock)
    other = CaseService(open_store(), clock)
    other.execute(new_request(VGR), case_id, lambda case: case.give_consent(_consent(clock)))

    response = api.post(f"/{case_id}/worksheets", _worksheet(clock), actor=BORAS)

    _refused_without_the_case(response, case_id)
    denied = [r for _, r in access_log.for_case(str(case_id), 0, 100) if r.outcome == "denied"]
    assert [(r.organisation_id, r.resource) for r in denied] == [(BORAS.organisation_id, "command")]


def test_a_writer_left_out_since_the_cached_copy_is_refused_and_logged(
    api: Api, clock: FixedClock, access_log: AccessLogStore, service: CaseService, open_store: StoreFactory
) -> None:
    """The API's cached copy still has VGR's coordinator; another process has recorded that she
    left. VGR's command passes the early check on the cached copy, is refused on the stored
    case (``actor_not_involved``), and that refusal is in the access log as the early one is."""
    case_id = _opened(api, clock)
    left = cmd.UnassignCoordinator(unassigned_on=clock.today())
    other = CaseService(open_store(), clock)
    other.execute(new_request(BORAS), case_id, lambda case: case.unassign_coordinator(VGR.user_id, left))
    version = other.get(case_id).version

    response = api.post(f"/{case_id}/worksheets", _worksheet(clock, GOTEBORG), actor=VGR)

    assert response.status_code == 403, response.text
    assert response.json()["rule"] == "actor_not_involved"
    assert service.get(case_id).version == version  # nothing recorded
    denied = [r for _, r in access_log.for_case(str(case_id), 0, 100) if r.outcome == "denied"]
    assert [(r.user_id, r.organisation_id, r.resource) for r in denied] == [
        (VGR.user_id, VGR.organisation_id, "command")
    ]
    assert (denied[0].reason or "").startswith("actor_not_involved: ")


def test_a_refusal_by_the_cases_rules_is_logged_as_the_read_it_is(
    api: Api, clock: FixedClock, access_log: AccessLogStore
) -> None:
    """The refusal names the case's coordinators: it is in the access log as what VGR read."""
    case_id = _opened(api, clock)
    _ok(api.post(f"/{case_id}/consents", _consent(clock), actor=VGR))

    refused = api.post(f"/{case_id}/worksheets", _worksheet(clock), actor=VGR)

    assert refused.status_code == 409
    records = [r for _, r in access_log.for_case(str(case_id), 0, 100) if r.resource == "command_refusal"]
    assert [(r.user_id, r.organisation_id, r.outcome) for r in records] == [
        (VGR.user_id, VGR.organisation_id, "granted")
    ]
    assert records[0].reason == refused.json()["rule"]


def test_a_field_judged_against_the_case_is_a_refusal_like_any_other(
    api: Api, clock: FixedClock, access_log: AccessLogStore
) -> None:
    """A participant named by a user id two assigned coordinators share: the 422 names both
    (user at organisation). Withheld from Borås, whom the consent leaves out; logged as read
    for VGR, who may read the case."""
    namesake = make_actor(VGR.user_id, organisation_of(GOTEBORG))
    case_id = UUID(_ok(api.post("", open_case_command(clock.today()), actor=BORAS))["case_id"])
    _ok(_assign(api, case_id, VGR, clock))
    _ok(_assign(api, case_id, namesake, clock))
    _ok(api.post(f"/{case_id}/consents", _consent(clock), actor=BORAS))
    ambiguous = _worksheet(clock, VGR)  # vera.vgr without an organisation: which one?

    _refused_without_the_case(api.post(f"/{case_id}/worksheets", ambiguous, actor=BORAS), case_id)
    told = api.post(f"/{case_id}/worksheets", ambiguous, actor=VGR)

    assert told.status_code == 422, told.text
    assert GOTEBORG.organisation_id in told.text
    records = [
        (r.organisation_id, r.resource, r.outcome) for _, r in access_log.for_case(str(case_id), 0, 100)
    ]
    assert (BORAS.organisation_id, "command", "denied") in records
    assert records[-1] == (VGR.organisation_id, "command_refusal", "granted")
