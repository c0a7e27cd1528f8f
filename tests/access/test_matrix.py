"""Who may read what, on every route of the four APIs, and the access log of each attempt.

The route list comes from each app's OpenAPI document: a route without an entry in
:data:`MATRIX` fails :func:`test_every_route_has_a_matrix_entry`, so a new route cannot
go unchecked. For every route that takes a case or a user:

- a user of another organisation with the same user id as the owner (a person is
  organisation and user id), and a user of an organisation the case does not cover,
  get 403, and each refusal is in the access log under that person;
- the owner's read (every read route) is in the access log.

The four apps run in-process over real stores (SQLite), sharing one access log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.entrypoints.http import create_app as case_app
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import Rules
from services.meetings.entrypoints.http import FeedLinks, MeetingsApiDependencies
from services.meetings.entrypoints.http import create_app as meetings_app
from services.meetings.infrastructure.store import MeetingStore
from services.meetings.infrastructure.store import migrate as migrate_meetings
from services.notifications.entrypoints.http import NotificationsApiDependencies
from services.notifications.entrypoints.http import create_app as notifications_app
from services.projections.application.queries import QueryPolicy
from services.projections.entrypoints.http import QueryDependencies
from services.projections.entrypoints.http import create_app as query_app
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.serving import ServedGenerations
from services.shared import geography
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.meetings.feed import REGION_PSYCH, SOCIAL, CaseFeed
from tests.notifications.support import World
from tests.notifications.test_service import _warning_world
from tests.support.actors import ACTORS
from tests.support.client_pages import project_since
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario

TOKENS = TokenService(key="test-secret-" + "a" * 40, algorithm="HS256", issuer="vss", audience="vss")
OTHER_ORG = "annan-kommun"  # covered by no case here
UNCOVERED_ORG = "okand-vardgivare"

Api = Literal["case", "query", "meetings", "notifications"]
Takes = Literal["case", "user", "none"]


@dataclass(frozen=True)
class Entry:
    """How to call a route, and what it takes (a case, a user, or neither: then why not)."""

    takes: Takes
    read: bool = False  # a read of a case's data: the owner's read is access-logged
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    why: str = ""  # for takes="none": why the route is outside the matrix
    client_page: bool = False  # the client's pages: a client reads them, staff never (logged)


KEY = {"Idempotency-Key": "matrix-1"}
CASE_WRITE = Entry("case", body={})  # refused before the body is read
MATRIX: dict[tuple[Api, str, str], Entry] = {
    # ------------------------------------------------------------------ the case API
    ("case", "GET", "/health"): Entry("none", why="no data"),
    ("case", "GET", "/.well-known/vss-keys.json"): Entry("none", why="public signing keys, nobody's data"),
    ("case", "POST", "/v1/cases"): Entry("none", why="opens a new case: the opener's own"),
    ("case", "GET", "/v1/cases/{case_id}"): Entry("case", read=True),
    ("case", "GET", "/v1/cases/{case_id}/history"): Entry("case", read=True),
    **{
        ("case", method, f"/v1/cases/{{case_id}}{tail}"): CASE_WRITE
        for method, tail in [
            ("POST", "/coordinators"),
            ("POST", "/coordinators/{user_id}/unassignment"),
            ("POST", "/coordinators/{organisation_id}/{user_id}/unassignment"),
            ("POST", "/consents"),
            ("POST", "/consents/withdrawal"),
            ("POST", "/worksheets"),
            ("POST", "/mapping-summary"),
            ("POST", "/phase"),
            ("POST", "/goals"),
            ("POST", "/goals/{goal_id}/status"),
            ("POST", "/resource-group/members"),
            ("POST", "/resource-group/members/{member_id}/removal"),
            ("POST", "/resource-group/meetings"),
            ("PUT", "/early-warning-plan"),
            ("POST", "/early-warnings"),
            ("POST", "/early-warnings/{warning_id}/resolution"),
            ("POST", "/sips"),
            ("POST", "/sips/current/actions/{action_id}/completion"),
            ("POST", "/sips/current/confirmation"),
            ("POST", "/contacts"),
            ("POST", "/contact-period"),
            ("POST", "/corrections"),
            ("POST", "/retractions"),
            ("POST", "/closure"),
        ]
    },
    # ----------------------------------------------------------------- the query API
    ("query", "GET", "/health"): Entry("none", why="no data"),
    ("query", "GET", "/v1/position"): Entry("none", why="the read models' position, nobody's data"),
    ("query", "GET", "/v1/cases"): Entry(
        "none", why="lists only the cases the reader's organisation may see"
    ),
    ("query", "GET", "/v1/overdue"): Entry("none", why="the reader's own organisation's overdue items"),
    ("query", "GET", "/v1/statistics"): Entry("none", why="aggregates without personal data"),
    ("query", "GET", "/v1/me/cases"): Entry("none", why="a signed-in client's own cases, nobody else's"),
    ("query", "GET", "/v1/cases/{case_id}"): Entry("case", read=True),
    ("query", "GET", "/v1/cases/{case_id}/journal"): Entry("case", read=True),
    ("query", "GET", "/v1/cases/{case_id}/access-log"): Entry("case", read=True),
    ("query", "GET", "/v1/users/{user_id}/access-log"): Entry("user", read=True),
    ("query", "GET", "/v1/coordinators/{user_id}/caseload"): Entry("user", read=True),
    # ---------------------------------------------------------- the client's pages (query API)
    ("query", "GET", "/min-plan/logga-in"): Entry("none", why="the sign-in form, nobody's data"),
    ("query", "POST", "/min-plan/logga-in"): Entry("none", why="checks a token and sets the cookie"),
    ("query", "POST", "/min-plan/logga-ut"): Entry("none", why="clears the cookie"),
    ("query", "GET", "/min-plan/"): Entry("none", why="a signed-in client's own cases, nobody else's"),
    ("query", "GET", "/min-plan/{case_id}"): Entry("case", client_page=True),
    ("query", "GET", "/min-plan/{case_id}/sip.pdf"): Entry("case", client_page=True),
    ("query", "GET", "/min-plan/{case_id}/tidiga-tecken.pdf"): Entry("case", client_page=True),
    ("query", "GET", "/min-plan/{case_id}/moten/{meeting_id}.ics"): Entry("case", client_page=True),
    ("query", "GET", "/min-plan/{case_id}/aterkalla"): Entry(
        "case", client_page=True, params={"withdraw": "_hela"}
    ),
    ("query", "POST", "/min-plan/{case_id}/aterkalla"): Entry("case", client_page=True, body={}),
    **{
        ("query", "GET", f"/v1/plan-links/{{case_id}}/{{holder}}{tail}"): Entry(
            "none",
            why="a signed plan link (tests/access/test_plan_links.py): the signature is the credential,"
            " the holder must still be named and covered, each opening is logged as the holder",
        )
        for tail in ("", "/plan.pdf", "/sip.pdf")
    },
    # -------------------------------------------------------------------- meetings
    ("meetings", "GET", "/health"): Entry("none", why="no data"),
    ("meetings", "GET", "/v1/cases/{case_id}/meetings"): Entry("case", read=True),
    ("meetings", "POST", "/v1/cases/{case_id}/meetings"): Entry(
        "case", body={"starts_at": "2026-01-14T13:00:00+01:00"}, headers=KEY
    ),
    ("meetings", "GET", "/v1/cases/{case_id}/meetings/{meeting_id}.ics"): Entry("case", read=True),
    ("meetings", "GET", "/v1/cases/{case_id}/meetings/{meeting_id}"): Entry("case", read=True),
    ("meetings", "POST", "/v1/cases/{case_id}/meetings/{meeting_id}/reschedule"): Entry(
        "case", body={"starts_at": "2026-03-03T10:00:00+01:00", "reason": "krock"}, headers=KEY
    ),
    ("meetings", "POST", "/v1/cases/{case_id}/meetings/{meeting_id}/cancel"): Entry(
        "case", body={"reason": "sjuk"}, headers=KEY
    ),
    ("meetings", "POST", "/v1/cases/{case_id}/meetings/{meeting_id}/held"): Entry(
        "case", body={"held_on": "2026-03-02"}, headers=KEY
    ),
    ("meetings", "POST", "/v1/cases/{case_id}/meetings/{meeting_id}/confirm"): Entry(
        "case", body={"starts_at": "2026-03-03T10:00:00+01:00", "place_kind": "office"}, headers=KEY
    ),
    **{
        ("meetings", method, f"/v1/cases/{{case_id}}/meetings/{{meeting_id}}/{tail}"): Entry(
            "none",
            why="an invitee's signed answer link (the signature is the credential; every use is"
            " access-logged under the invitee), or a coordinator forwarding a REPLY (the case's"
            " access rule, tested in tests/meetings/test_answers.py)",
        )
        for method, tail in [("GET", "answer"), ("POST", "answer"), ("POST", "reply")]
    },
    ("meetings", "GET", "/v1/coordinators/{user_id}/calendar.ics"): Entry("user", read=True),
    ("meetings", "GET", "/v1/coordinators/{user_id}/calendar-link"): Entry("user", read=True),
    # --------------------------------------------------------------- notifications
    ("notifications", "GET", "/health"): Entry("none", why="counts, no case's data"),
    ("notifications", "GET", "/v1/cases/{case_id}/notifications"): Entry("case", read=True),
    ("notifications", "GET", "/v1/acknowledgements/{delivery_key}"): Entry(
        "none", why="a signed link acknowledges one message; the signature is the credential"
    ),
    ("notifications", "POST", "/v1/acknowledgements/{delivery_key}"): Entry(
        "none", why="a signed link acknowledges one message; the signature is the credential"
    ),
}
# The same route read another way: the case as it stood (?as_of=).
EXTRA_READS: list[tuple[Api, str, str, dict[str, str]]] = [
    ("case", "GET", "/v1/cases/{case_id}", {"as_of": "2026-12-31"}),
]


@dataclass(frozen=True)
class Person:
    user_id: str
    organisation_id: str
    principal: str
    roles: tuple[str, ...] = ("coordinator",)

    def headers(self) -> dict[str, str]:
        token = TOKENS.mint(
            user_id=self.user_id,
            organisation_id=self.organisation_id,
            principal=self.principal,
            roles=list(self.roles),
        )
        return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Client:
    """A client signed in with their e-ID: their personal identity number, no organisation."""

    personal_identity_number: str
    user_id: str = ""
    organisation_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_id", self.personal_identity_number)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS.mint_client(self.personal_identity_number)}"}


TOLVAN = Client("191212121212")  # the client of every case here
ANOTHER_CLIENT = Client("198112189876")


@dataclass
class Side:
    """One API: its client, the owner of its case (a coordinator), and the ids its paths take."""

    client: TestClient
    owner: Person
    ids: dict[str, str]


@dataclass
class Apps:
    sides: dict[Api, Side]
    access_log: AccessLogStore
    closers: list[Callable[[], None]]

    def records(self, person: Person | Client) -> list[tuple[str | None, str, str]]:
        found = self.access_log.for_user(person.user_id, person.organisation_id, 0, 100_000)
        return [(r.case_id, r.resource, r.outcome) for _, r in found]


def _case_and_query(tmp: Path, access_log: AccessLogStore) -> tuple[Side, Side, Callable[[], None]]:
    """A case opened by the region, coordinated by it and the municipality, under consent."""
    url = f"sqlite:///{tmp / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    clock = FixedClock()
    service = CaseService(store, clock)
    scenario = CaseScenario(service, clock)
    scenario.open()
    scenario.assign_coordinators()
    scenario.give_consent()
    # The query API's read models, projected in-process from the events as the relay publishes them.
    location = ReadModelLocation(f"sqlite:///{tmp / 'readmodels'}")
    project_since(store, location, 0)
    query = query_app(
        QueryDependencies(
            served=ServedGenerations(location),
            access_log=access_log,
            tokens=TOKENS,
            today=clock.today,
            wait_limit=1.0,
            policy=QueryPolicy(),
            association_of=geography.association_of,
        )
    )
    region = ACTORS.region
    owner = Person(region.user_id, region.organisation_id, region.principal.value)
    ids = {
        "case_id": str(scenario.case_id),
        "user_id": owner.user_id,
        "organisation_id": owner.organisation_id,
        **{name: str(uuid4()) for name in ("goal_id", "member_id", "warning_id", "action_id", "meeting_id")},
    }
    case = Side(TestClient(case_app(service, TOKENS, access_log), raise_server_exceptions=False), owner, ids)
    reader = Side(TestClient(query, raise_server_exceptions=False), owner, ids)

    def close() -> None:
        location.close()
        store.close()

    return case, reader, close


def _meetings(tmp: Path, access_log: AccessLogStore) -> tuple[Side, Callable[[], None]]:
    url = f"sqlite:///{tmp / 'meetings.db'}"
    migrate_meetings(url)
    store = MeetingStore(url)
    service = MeetingsService(store, Rules(), WorkingDays(), FixedClock())
    feed = CaseFeed(service)
    day = date(2026, 1, 5)
    feed.open(day)
    feed.assign(day)  # sara, of Socialtjänsten
    feed.consent(day, SOCIAL, REGION_PSYCH)
    feed.sip(day, 1, follow_up=date(2026, 3, 2))  # one resource group meeting
    deps = MeetingsApiDependencies(
        service=service,
        tokens=TOKENS,
        organiser=("VSS", "vss@example.se"),
        feed_links=FeedLinks(b"matrix-calendar-key", "https://vss.example.se/meetings"),
        access_log=access_log,
    )
    [meeting_id] = [m.meeting_id for m in service.schedule(feed.case_id).state.meetings.values()]
    owner = Person("sara", SOCIAL.id, "municipality")
    ids = {"case_id": str(feed.case_id), "meeting_id": str(meeting_id), "user_id": owner.user_id}
    return Side(TestClient(meetings_app(deps), raise_server_exceptions=False), owner, ids), store.close


def _notifications(tmp: Path, access_log: AccessLogStore) -> tuple[Side, Callable[[], None]]:
    world = World(tmp)
    _warning_world(world)
    deps = NotificationsApiDependencies(service=world.service, tokens=TOKENS, access_log=access_log)
    owner = Person("sara", SOCIAL.id, "municipality")
    ids = {"case_id": str(world.feed.case_id), "delivery_key": "unknown"}
    return Side(TestClient(notifications_app(deps), raise_server_exceptions=False), owner, ids), world.close


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    tmp = tmp_path_factory.mktemp("matrix")
    access_log = AccessLogStore(f"sqlite:///{tmp / 'access-log.sqlite'}")
    case, query, close_case = _case_and_query(tmp, access_log)
    meetings, close_meetings = _meetings(tmp, access_log)
    notifications, close_notifications = _notifications(tmp / "notifications", access_log)
    yield Apps(
        {"case": case, "query": query, "meetings": meetings, "notifications": notifications},
        access_log,
        [close_case, close_meetings, close_notifications],
    )
    for close in reversed([close_case, close_meetings, close_notifications]):
        close()


def _routes(client: TestClient) -> set[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def _call(side: Side, method: str, template: str, entry: Entry, who: Person | Client, **params: str) -> Any:
    return side.client.request(
        method,
        template.format(**side.ids),
        params={**entry.params, **params},
        json=entry.body,
        headers={**who.headers(), **entry.headers},
    )


def test_every_route_has_a_matrix_entry(apps: Apps) -> None:
    for api, side in apps.sides.items():
        routes = _routes(side.client)
        known = {(method, path) for (a, method, path) in MATRIX if a == api}
        assert routes - known == set(), f"{api}: routes without a matrix entry"
        assert known - routes == set(), f"{api}: matrix entries of no route"
    assert all(entry.why for entry in MATRIX.values() if entry.takes == "none")


GUARDED = sorted((key for key, entry in MATRIX.items() if entry.takes != "none"), key=str)


@pytest.mark.parametrize(("api", "method", "template"), GUARDED)
@pytest.mark.parametrize("stranger", ["same_user_id_elsewhere", "uncovered_organisation", "another_client"])
def test_another_organisation_or_client_is_refused_and_logged(
    apps: Apps, api: Api, method: str, template: str, stranger: str
) -> None:
    side = apps.sides[api]
    entry = MATRIX[(api, method, template)]
    who: Person | Client = {
        "same_user_id_elsewhere": Person(
            side.owner.user_id, OTHER_ORG, "municipality", ("coordinator", "manager")
        ),
        "uncovered_organisation": Person("olle.okand", UNCOVERED_ORG, "other", ("coordinator", "manager")),
        "another_client": ANOTHER_CLIENT,  # signed in as a client, of no case here
    }[stranger]
    # A user route names the owner as a person: their user id at their organisation.
    params = {"organisation": side.owner.organisation_id} if entry.takes == "user" else {}
    before = apps.records(who)
    response = _call(side, method, template, entry, who, **params)
    assert response.status_code == 403, (api, method, template, response.status_code, response.text)
    kind = "text/html" if entry.client_page else "application/problem+json"  # a page, or a problem
    assert response.headers["content-type"].startswith(kind)
    new = apps.records(who)[len(before) :]
    assert [outcome for _, _, outcome in new] == ["denied"], new
    if entry.takes == "case":
        assert new[0][0] == side.ids["case_id"]


READS: list[tuple[Api, str, str, dict[str, str]]] = [
    (api, method, template, {}) for (api, method, template), e in MATRIX.items() if e.read
]


@pytest.mark.parametrize(("api", "method", "template", "params"), [*READS, *EXTRA_READS])
def test_every_read_is_in_the_access_log(
    apps: Apps, api: Api, method: str, template: str, params: dict[str, str]
) -> None:
    side = apps.sides[api]
    before = apps.records(side.owner)
    response = _call(side, method, template, MATRIX[(api, method, template)], side.owner, **params)
    assert response.status_code == 200, (api, template, response.text)
    new = apps.records(side.owner)[len(before) :]
    assert new, (api, template)
    assert {outcome for _, _, outcome in new} == {"granted"}, new


# The client's pages that show a case (the query side projects no meetings: no .ics here).
CLIENT_PAGES = [
    (api, method, template, {})
    for (api, method, template), e in MATRIX.items()
    if e.client_page and method == "GET" and "{meeting_id}" not in template
]
CASE_READS = [
    (api, method, template, params)
    for api, method, template, params in [*READS, *EXTRA_READS, *CLIENT_PAGES]
    if MATRIX[(api, method, template)].takes == "case"
]


@pytest.mark.parametrize(("api", "method", "template", "params"), CASE_READS)
def test_the_client_reads_their_own_case_on_every_api_and_it_is_logged(
    apps: Apps, api: Api, method: str, template: str, params: dict[str, str]
) -> None:
    side = apps.sides[api]
    before = apps.records(TOLVAN)
    response = _call(side, method, template, MATRIX[(api, method, template)], TOLVAN, **params)
    assert response.status_code == 200, (api, template, response.text)
    new = apps.records(TOLVAN)[len(before) :]
    assert [(case_id, outcome) for case_id, _, outcome in new] == [(side.ids["case_id"], "granted")]
    last = apps.access_log.for_user(TOLVAN.user_id, "", 0, 100_000)[-1][1]
    assert (last.principal, last.roles) == ("client", ("client",))


def test_a_client_lists_their_own_cases_and_staff_are_refused(apps: Apps) -> None:
    query = apps.sides["query"]
    mine = query.client.get("/v1/me/cases", headers=TOLVAN.headers())
    assert mine.status_code == 200, mine.text
    assert [item["case_id"] for item in mine.json()["items"]] == [query.ids["case_id"]]
    assert apps.records(TOLVAN)[-1] == (query.ids["case_id"], "my_cases", "granted")
    assert query.client.get("/v1/me/cases", headers=ANOTHER_CLIENT.headers()).json()["items"] == []
    staff = query.client.get("/v1/me/cases", headers=query.owner.headers())
    assert staff.status_code == 403
    assert apps.records(query.owner)[-1] == (None, "my_cases", "denied")


@pytest.mark.parametrize("path", ["/v1/cases", "/v1/overdue", "/v1/statistics?level=national&period=2026-01"])
def test_a_client_reads_no_list_of_cases_and_no_statistics(apps: Apps, path: str) -> None:
    response = apps.sides["query"].client.get(path, headers=TOLVAN.headers())
    assert response.status_code in (403, 422), response.text
    if response.status_code == 422:  # the statistics' parameters; with them right it is a 403 too
        return
    assert response.json()["rule"] == "role_required"


def test_the_same_user_id_elsewhere_reads_only_their_own_caseload_and_calendar(apps: Apps) -> None:
    """Without ?organisation=, a route names the caller's own organisation: never the namesake's data."""
    query, meetings = apps.sides["query"], apps.sides["meetings"]
    namesake = Person(query.owner.user_id, OTHER_ORG, "municipality", ("coordinator",))
    caseload = query.client.get(f"/v1/coordinators/{namesake.user_id}/caseload", headers=namesake.headers())
    assert caseload.status_code == 200, caseload.text
    assert (caseload.json()["organisation_id"], caseload.json()["cases"]) == (OTHER_ORG, [])
    log = query.client.get(f"/v1/users/{namesake.user_id}/access-log", headers=namesake.headers())
    assert all(item["organisation_id"] == OTHER_ORG for item in log.json()["items"])
    sara = Person(meetings.owner.user_id, OTHER_ORG, "municipality")
    feed = meetings.client.get(f"/v1/coordinators/{sara.user_id}/calendar.ics", headers=sara.headers())
    assert feed.status_code == 200
    assert b"VEVENT" not in feed.content
    link = meetings.client.get(f"/v1/coordinators/{sara.user_id}/calendar-link", headers=sara.headers())
    url = link.json()["url"].removeprefix("https://vss.example.se/meetings")
    assert b"VEVENT" not in meetings.client.get(url).content  # the link is hers, not the namesake's


def test_an_invalid_calendar_key_is_refused_and_logged(apps: Apps) -> None:
    meetings = apps.sides["meetings"]
    path = f"/v1/coordinators/sara/calendar.ics?organisation={SOCIAL.id}&key=not-the-key"
    refused = meetings.client.get(path)
    assert refused.status_code == 403
    found = apps.access_log.for_user("sara", SOCIAL.id, 0, 100_000)
    last = found[-1][1]
    assert (last.resource, last.outcome, last.principal) == ("calendar_feed", "denied", "calendar_link")


def test_role_refusals_are_logged_on_every_api(apps: Apps) -> None:
    analyst = {
        api: Person(side.owner.user_id, side.owner.organisation_id, "region", ("analyst",))
        for api, side in apps.sides.items()
    }
    paths: dict[Api, str] = {
        "case": "/v1/cases/{case_id}",
        "query": "/v1/cases/{case_id}",
        "meetings": "/v1/cases/{case_id}/meetings",
        "notifications": "/v1/cases/{case_id}/notifications",
    }
    for api, template in paths.items():
        side, who = apps.sides[api], analyst[api]
        before = apps.records(who)
        response = side.client.get(template.format(**side.ids), headers=who.headers())
        assert response.status_code == 403, (api, response.text)
        new = apps.records(who)[len(before) :]
        assert [(case_id, outcome) for case_id, _, outcome in new] == [(side.ids["case_id"], "denied")], api
