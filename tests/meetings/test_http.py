"""The meetings API over HTTP: a real store, real bearer tokens, .ics parsed back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi.testclient import TestClient
from icalendar import Calendar, Component

from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import STOCKHOLM
from services.meetings.entrypoints.http import FeedLinks, MeetingsApiDependencies, create_app
from services.meetings.infrastructure.store import MeetingStore
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.meetings.feed import REGION_PSYCH, SOCIAL, CaseFeed
from tests.support.clock import FixedClock
from vss_contracts import meeting_events as me

TOKENS = TokenService(key="test-secret-" + "m" * 40, algorithm="HS256", issuer="vss", audience="vss")
ORGANISER = ("VSS Göteborg", "vss@goteborg.example.se")
RG_STARTS = datetime(2026, 3, 2, 10, 0, tzinfo=STOCKHOLM)  # the SIP's follow-up date, a Monday


def headers(
    user_id: str = "sara",
    organisation: str = SOCIAL.id,
    roles: tuple[str, ...] = ("coordinator",),
    key: str | None = None,
) -> dict[str, str]:
    token = TOKENS.mint(
        user_id=user_id, organisation_id=organisation, principal="municipality", roles=list(roles)
    )
    values = {"Authorization": f"Bearer {token}"}
    if key is not None:
        values["Idempotency-Key"] = key
    return values


@dataclass
class Api:
    client: TestClient
    case_id: UUID
    store: MeetingStore
    access_log: AccessLogStore

    def accesses(self) -> list[tuple[str, str, str, str]]:
        return [
            (r.user_id, r.organisation_id, r.resource, r.outcome)
            for _, r in self.access_log.for_case(str(self.case_id), 0, 1000)
        ]

    @property
    def base(self) -> str:
        return f"/v1/cases/{self.case_id}/meetings"

    def meetings(self) -> list[dict[str, Any]]:
        response = self.client.get(self.base, headers=headers())
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def resource_group_meeting(self) -> dict[str, Any]:
        [meeting] = [m for m in self.meetings() if m["kind"] == "resource_group"]
        return meeting

    def book(self, key: str, starts_at: str = "2026-01-14T13:00:00+01:00", **extra: Any) -> httpx.Response:
        response: httpx.Response = self.client.post(
            self.base, json={"starts_at": starts_at, **extra}, headers=headers(key=key)
        )
        return response

    def post(self, meeting_id: str, action: str, body: dict[str, Any], key: str) -> httpx.Response:
        path = f"{self.base}/{meeting_id}/{action}"
        response: httpx.Response = self.client.post(path, json=body, headers=headers(key=key))
        return response

    def ics(self, meeting_id: str) -> Calendar:
        response = self.client.get(f"{self.base}/{meeting_id}.ics", headers=headers())
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/calendar; charset=utf-8"
        return Calendar.from_ical(response.content)


def only_event(calendar: Calendar) -> Component:
    [event] = calendar.walk("VEVENT")
    return event


def _api(meetings: MeetingsService, feed: CaseFeed, store: MeetingStore, tmp_path: Path, **deps: Any) -> Api:
    """A case coordinated by sara (Socialtjänsten), with consent and a SIP: one resource group meeting."""
    day = date(2026, 1, 5)
    feed.open(day)
    feed.assign(day)
    feed.consent(day, SOCIAL, REGION_PSYCH)
    feed.sip(day, 1, follow_up=RG_STARTS.date())
    links = FeedLinks(b"calendar-link-test-key", "https://vss.example.se/meetings")
    access_log = AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")
    dependencies = MeetingsApiDependencies(
        service=meetings, tokens=TOKENS, organiser=ORGANISER, feed_links=links, access_log=access_log, **deps
    )
    return Api(TestClient(create_app(dependencies)), feed.case_id, store, access_log)


@pytest.fixture
def api(meetings: MeetingsService, feed: CaseFeed, meeting_store: MeetingStore, tmp_path: Path) -> Api:
    return _api(meetings, feed, meeting_store, tmp_path)


def booked_events(api: Api) -> int:
    return sum(
        1
        for e in api.store.events(api.case_id)
        if e.type == me.MeetingScheduled.TYPE and e.state["data"]["kind"] == "client_contact"
    )


# ------------------------------------------------------------------------------- reading
def test_lists_the_cases_meetings(api: Api) -> None:
    [meeting] = api.meetings()
    assert meeting["kind"] == "resource_group"
    assert datetime.fromisoformat(meeting["starts_at"]) == RG_STARTS
    assert meeting["status"] == "scheduled"
    assert meeting["sequence"] == 0
    assert meeting["sip_version"] == 1
    assert meeting["ics"] == f"{api.base}/{meeting['meeting_id']}.ics"
    coordinator = next(i for i in meeting["invitees"] if i["role"] == "coordinator")
    assert coordinator == {
        "name": "Samordnare sara",
        "role": "coordinator",
        "organisation_id": SOCIAL.id,
        "answer": None,  # nobody has answered yet
        "answered_via": None,
        "answered_at": None,
    }
    assert meeting["agenda"][3] == "Genomgång av Tidiga tecken med åtgärder"
    assert meeting["place_kind"] == "client_home"
    assert meeting["proposed"] is False  # the SIP's follow-up, not the schedule's proposal


def test_an_organisation_covered_by_consent_may_read(api: Api) -> None:
    response = api.client.get(api.base, headers=headers("doc", REGION_PSYCH.id, ("manager",)))
    assert response.status_code == 200, response.text


def test_a_consent_past_its_end_no_longer_lets_its_organisations_read(
    api: Api, feed: CaseFeed, meetings_clock: FixedClock
) -> None:
    feed.consent(date(2026, 1, 6), SOCIAL, REGION_PSYCH, until=date(2026, 1, 6))
    psychiatry = headers("doc", REGION_PSYCH.id, ("manager",))
    assert api.client.get(api.base, headers=psychiatry).status_code == 200  # before its end
    meetings_clock.advance(days=2)
    refused = api.client.get(api.base, headers=psychiatry)
    assert (refused.status_code, refused.json()["rule"]) == (403, "no_consent")
    assert api.client.get(api.base, headers=headers()).status_code == 200  # the coordinators' organisation


def test_an_organisation_neither_coordinating_nor_covered_is_refused(api: Api) -> None:
    stranger = headers("eve", "boendestod", key="k-1")
    for response in (
        api.client.get(api.base, headers=stranger),
        api.client.post(api.base, json={"starts_at": "2026-01-14T13:00:00+01:00"}, headers=stranger),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["rule"] == "no_consent"
    assert booked_events(api) == 0


def test_without_a_token_401(api: Api) -> None:
    response = api.client.get(api.base)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_an_unknown_case_is_404(api: Api) -> None:
    response = api.client.get(f"/v1/cases/{uuid4()}/meetings", headers=headers())
    assert response.status_code == 404
    assert response.json()["rule"] == "case_known"


def test_only_coordinators_write(api: Api) -> None:
    response = api.client.post(
        api.base,
        json={"starts_at": "2026-01-14T13:00:00+01:00"},
        headers=headers("mona", SOCIAL.id, ("manager",), key="k-1"),
    )
    assert response.status_code == 403
    assert response.json()["rule"] == "role_required"


# ------------------------------------------------------------------------------- booking
def test_the_same_key_from_a_namesake_at_another_organisation_is_another_request(api: Api) -> None:
    """A person is (organisation, user id): "sara" at the region sending the key "sara" at the
    municipality used books her own meeting, not a replay of the other's."""
    first = api.book("book-1", location="Kontoret")
    assert first.status_code == 201, first.text
    second = api.client.post(
        api.base,
        json={"starts_at": "2026-01-15T13:00:00+01:00"},
        headers=headers("sara", REGION_PSYCH.id, key="book-1"),
    )
    assert second.status_code == 201, second.text
    assert "idempotency-replayed" not in second.headers
    assert second.json()["meeting_id"] != first.json()["meeting_id"]
    assert second.json()["starts_at"] == "2026-01-15T13:00:00+01:00"
    assert booked_events(api) == 2


def test_each_recorded_request_names_the_person_of_the_token(api: Api) -> None:
    """Who booked, moved, cancelled or recorded a meeting is the token's person (ADR 0023):
    "sara" at the municipality and "sara" at the region are told apart in the payload itself,
    as subscribers in other organisations see it."""
    mine = api.book("book-1", location="Kontoret").json()["meeting_id"]
    theirs = api.client.post(
        api.base,
        json={"starts_at": "2026-01-15T13:00:00+01:00"},
        headers=headers("sara", REGION_PSYCH.id, key="book-2"),
    ).json()["meeting_id"]
    moved = api.post(mine, "reschedule", {"starts_at": "2026-01-16T13:00:00+01:00", "reason": "x"}, "move-1")
    assert moved.status_code == 200, moved.text
    assert api.post(mine, "held", {"held_on": "2026-01-16"}, key="held-1").status_code == 200
    cancelled = api.client.post(
        f"{api.base}/{theirs}/cancel",
        json={"reason": "Sjuk"},
        headers=headers("sara", REGION_PSYCH.id, key="c"),
    )
    assert cancelled.status_code == 200, cancelled.text
    acted = {"booked_by", "moved_by", "recorded_by", "cancelled_by"}
    named = [
        (e.type, field, e.state["data"][field], e.state["actor_organisation"])
        for e in api.store.events(api.case_id)
        for field in acted & e.state["data"].keys()
        if e.state["data"][field] is not None
    ]
    municipality = {"organisation_id": SOCIAL.id, "user_id": "sara"}
    region = {"organisation_id": REGION_PSYCH.id, "user_id": "sara"}
    assert named == [
        (me.MeetingScheduled.TYPE, "booked_by", municipality, SOCIAL.id),
        (me.MeetingScheduled.TYPE, "booked_by", region, REGION_PSYCH.id),
        (me.MeetingRescheduled.TYPE, "moved_by", municipality, SOCIAL.id),
        (me.MeetingHeld.TYPE, "recorded_by", municipality, SOCIAL.id),
        (me.MeetingCancelled.TYPE, "cancelled_by", region, REGION_PSYCH.id),
    ]


def test_booking_answers_201_and_a_retry_returns_the_same_meeting(api: Api) -> None:
    first = api.book("book-1", location="Kontoret")
    assert first.status_code == 201, first.text
    meeting = first.json()
    assert first.headers["location"] == f"{api.base}/{meeting['meeting_id']}"
    assert meeting["kind"] == "client_contact"
    assert datetime.fromisoformat(meeting["ends_at"]) == datetime(2026, 1, 14, 14, 0, tzinfo=STOCKHOLM)
    assert {i["role"] for i in meeting["invitees"]} == {"client", "coordinator"}

    again = api.book("book-1", location="Kontoret")
    assert again.status_code == 200, again.text
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json()["meeting_id"] == meeting["meeting_id"]
    assert booked_events(api) == 1
    assert len(api.meetings()) == 2
    got = api.client.get(first.headers["location"], headers=headers())
    assert got.json() == meeting


def test_booking_on_a_holiday_is_refused(api: Api) -> None:
    response = api.book("xmas", starts_at="2026-12-24T10:00:00+01:00")
    assert response.status_code == 409
    body = response.json()
    assert body["rule"] == "working_day"
    assert {"type", "title", "status", "detail", "rule"} <= set(body)
    assert "Julafton" in body["detail"]


def test_a_naive_time_is_422_naming_the_field(api: Api) -> None:
    response = api.book("naive", starts_at="2026-01-14T13:00:00")
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "starts_at"
    assert error["rule"] == "timezone_aware"


def test_minutes_are_bounded(api: Api) -> None:
    assert api.book("short", minutes=10).status_code == 422


def test_a_write_without_idempotency_key_is_422_naming_the_header(api: Api) -> None:
    response = api.client.post(api.base, json={"starts_at": "2026-01-14T13:00:00+01:00"}, headers=headers())
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["field"], error["rule"]) == ("header.idempotency-key", "missing")


# ------------------------------------------------------------------------- changing them
def test_rescheduling_a_resource_group_meeting_keeps_its_uid_and_bumps_the_sequence(api: Api) -> None:
    meeting_id = api.resource_group_meeting()["meeting_id"]
    before = only_event(api.ics(meeting_id))
    assert before["SEQUENCE"] == 0

    body = {"starts_at": "2026-03-03T13:00:00+01:00", "reason": "Lokalen är upptagen"}
    response = api.post(meeting_id, "reschedule", body, key="move-1")
    assert response.status_code == 200, response.text
    assert response.json()["sequence"] == 1

    calendar = api.ics(meeting_id)
    after = only_event(calendar)
    assert calendar["METHOD"] == "REQUEST"
    assert after["UID"] == before["UID"] == f"{meeting_id}@vss.se"
    assert after["SEQUENCE"] == 1
    assert after.decoded("DTSTART") == datetime(2026, 3, 3, 13, 0, tzinfo=STOCKHOLM)

    retry = api.post(meeting_id, "reschedule", body, key="move-1")
    assert retry.status_code == 200
    assert retry.headers["idempotency-replayed"] == "true"
    assert retry.json()["sequence"] == 1


def test_rescheduling_to_a_weekend_is_refused(api: Api) -> None:
    meeting_id = api.resource_group_meeting()["meeting_id"]
    body = {"starts_at": "2026-03-07T10:00:00+01:00", "reason": "x"}
    response = api.post(meeting_id, "reschedule", body, key="move-2")
    assert response.status_code == 409
    assert response.json()["rule"] == "working_day"


def test_cancelling_a_client_meeting_makes_its_ics_a_cancel(api: Api) -> None:
    meeting_id = api.book("book-2").json()["meeting_id"]
    response = api.post(meeting_id, "cancel", {"reason": "Klienten är sjuk"}, key="cancel-1")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    calendar = api.ics(meeting_id)
    event = only_event(calendar)
    assert calendar["METHOD"] == "CANCEL"
    assert event["STATUS"] == "CANCELLED"
    assert event["SEQUENCE"] == 1

    retry = api.post(meeting_id, "cancel", {"reason": "Klienten är sjuk"}, key="cancel-1")
    assert retry.status_code == 200
    assert retry.headers["idempotency-replayed"] == "true"


def test_a_resource_group_meeting_is_cancelled_with_a_reason(api: Api) -> None:
    meeting_id = api.resource_group_meeting()["meeting_id"]
    response = api.post(meeting_id, "cancel", {"reason": "Brukaren är bortrest"}, key="cancel-2")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["sequence"] == 1
    calendar = api.ics(meeting_id)
    assert calendar["METHOD"] == "CANCEL"
    assert only_event(calendar)["SEQUENCE"] == 1
    again = api.post(meeting_id, "cancel", {"reason": "Brukaren är bortrest"}, key="cancel-3")
    assert again.status_code == 200
    assert again.headers["Idempotency-Replayed"] == "true"


def test_a_cancel_without_a_reason_or_with_a_too_long_one_is_422(api: Api) -> None:
    meeting_id = api.resource_group_meeting()["meeting_id"]
    for body in ({}, {"reason": "   "}, {"reason": "x" * 501}):
        response = api.post(meeting_id, "cancel", body, key="cancel-4")
        assert response.status_code == 422, body
        assert "reason" in str(response.json()), body


def test_marking_a_meeting_held(api: Api) -> None:
    meeting_id = api.book("book-3").json()["meeting_id"]
    response = api.post(meeting_id, "held", {"held_on": "2026-01-14"}, key="held-1")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "held"
    assert response.json()["held_on"] == "2026-01-14"
    retry = api.post(meeting_id, "held", {"held_on": "2026-01-14"}, key="held-1")
    assert retry.status_code == 200
    assert retry.headers["idempotency-replayed"] == "true"


def test_an_unknown_meeting_is_404(api: Api) -> None:
    response = api.post(str(uuid4()), "cancel", {"reason": "x"}, key="cancel-3")
    assert response.status_code == 404
    assert response.json()["rule"] == "meeting_exists"


# ------------------------------------------------------------------- read-your-writes
@dataclass
class Lag:
    """Whether the case stream's consumer found nothing left to apply (the API asks it)."""

    caught_up: bool = True


@pytest.fixture
def lag() -> Lag:
    return Lag()


@pytest.fixture
def lagging(
    meetings: MeetingsService, feed: CaseFeed, meeting_store: MeetingStore, tmp_path: Path, lag: Lag
) -> Api:
    """The API with a short wait limit, room for one wait, and a consumer that may lag."""
    return _api(
        meetings, feed, meeting_store, tmp_path, wait_limit=0.5, max_waits=1, caught_up=lambda: lag.caught_up
    )


def test_a_position_already_applied_answers_at_once_and_names_the_position(lagging: Api) -> None:
    response = lagging.client.get(f"{lagging.base}?position=4", headers=headers())  # the SIP's
    assert response.status_code == 200, response.text
    assert response.headers["Vss-Log-Position"] == "4"
    ics = response.json()["items"][0]["ics"]
    calendar = lagging.client.get(f"{ics}?position=4", headers=headers())
    assert calendar.status_code == 200
    assert calendar.headers["Vss-Log-Position"] == "4"  # an .ics answer names it too


def test_a_booking_right_after_the_case_api_waits_for_its_position_and_succeeds(
    lagging: Api, meetings: MeetingsService, feed: CaseFeed
) -> None:
    """The coordinator opens a case and books at once: the case stream is applied meanwhile."""
    new = CaseFeed(meetings, sequence=feed.sequence)
    position = feed.sequence[0] + 3  # what the case API answered for the consent

    def the_bus_catches_up() -> None:
        time.sleep(0.2)
        new.open(date(2026, 1, 7))
        new.assign(date(2026, 1, 7))
        new.consent(date(2026, 1, 7), SOCIAL, REGION_PSYCH)

    catching_up = threading.Thread(target=the_bus_catches_up)
    catching_up.start()
    response = lagging.client.post(
        f"/v1/cases/{new.case_id}/meetings?position={position}",
        json={"starts_at": "2026-01-14T13:00:00+01:00"},
        headers=headers(key="book-at-once"),
    )
    catching_up.join()
    assert response.status_code == 201, response.text
    assert response.headers["Vss-Log-Position"] == str(position)


def test_a_position_not_reached_in_time_is_503_with_retry_after_and_books_nothing(lagging: Api) -> None:
    read = lagging.client.get(f"{lagging.base}?position=1000", headers=headers())
    assert read.status_code == 503
    assert read.json()["type"].endswith("position_not_reached")
    assert read.json()["position"] == 4
    assert (read.headers["Retry-After"], read.headers["Vss-Log-Position"]) == ("1", "4")
    booking = lagging.client.post(
        f"{lagging.base}?position=1000",
        json={"starts_at": "2026-01-14T13:00:00+01:00"},
        headers=headers(key="too-early"),
    )
    assert booking.status_code == 503
    assert booked_events(lagging) == 0


def test_an_unknown_case_is_503_while_the_case_stream_is_not_applied_and_404_once_it_is(
    lagging: Api, lag: Lag
) -> None:
    unknown = f"/v1/cases/{uuid4()}/meetings"
    lag.caught_up = False
    not_yet = lagging.client.get(unknown, headers=headers())
    assert not_yet.status_code == 503
    assert not_yet.json()["type"].endswith("case_not_yet_known")
    assert not_yet.headers["Retry-After"] == "1"
    booking = lagging.client.post(
        unknown, json={"starts_at": "2026-01-14T13:00:00+01:00"}, headers=headers(key="unknown-1")
    )
    assert booking.status_code == 503
    # At a position reached, a case not known there does not exist there: 404, lag or not.
    assert lagging.client.get(f"{unknown}?position=4", headers=headers()).status_code == 404
    lag.caught_up = True
    known_not = lagging.client.get(unknown, headers=headers())
    assert known_not.status_code == 404
    assert known_not.json()["rule"] == "case_known"


@pytest.mark.parametrize("value", ["0", "-1", "x", str(2**63)])
def test_a_bad_position_is_422_naming_the_field(lagging: Api, value: str) -> None:
    response = lagging.client.get(f"{lagging.base}?position={value}", headers=headers())
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.position"


def test_a_wait_needs_a_token_and_only_max_waits_wait_at_once(lagging: Api) -> None:
    assert lagging.client.get(f"{lagging.base}?position=1000").status_code == 401
    waiting: list[int] = []
    first = threading.Thread(
        target=lambda: waiting.append(
            lagging.client.get(f"{lagging.base}?position=1000", headers=headers()).status_code
        )
    )
    first.start()
    time.sleep(0.15)  # the first is waiting (limit 0.5 s) in the only slot
    second = lagging.client.get(f"{lagging.base}?position=1000", headers=headers())
    first.join()
    assert second.status_code == 503
    assert second.json()["type"].endswith("too_many_waits")
    assert waiting == [503]  # position_not_reached, after the wait limit


# ------------------------------------------------------------------------------ the feed
def test_the_coordinators_feed_holds_their_meetings(api: Api) -> None:
    booked = api.book("book-4").json()["meeting_id"]
    rg = api.resource_group_meeting()["meeting_id"]
    response = api.client.get("/v1/coordinators/sara/calendar.ics", headers=headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    assert calendar["METHOD"] == "PUBLISH"
    assert {str(e["UID"]) for e in calendar.walk("VEVENT")} == {f"{booked}@vss.se", f"{rg}@vss.se"}


def test_another_users_feed_is_refused(api: Api) -> None:
    response = api.client.get("/v1/coordinators/sara/calendar.ics", headers=headers("olle"))
    assert response.status_code == 403
    assert response.json()["rule"] == "not_own_calendar"


def test_a_signed_calendar_link_reads_the_feed_without_a_token(api: Api) -> None:
    rg = api.resource_group_meeting()["meeting_id"]
    link = api.client.get("/v1/coordinators/sara/calendar-link", headers=headers())
    assert link.status_code == 200, link.text
    url = link.json()["url"]
    assert url.startswith(
        f"https://vss.example.se/meetings/v1/coordinators/sara/calendar.ics?organisation={SOCIAL.id}&key="
    )
    path = url.removeprefix("https://vss.example.se/meetings")
    response = api.client.get(path)  # a calendar app: no Authorization header
    assert response.status_code == 200, response.text
    assert {str(e["UID"]) for e in Calendar.from_ical(response.content).walk("VEVENT")} == {f"{rg}@vss.se"}
    # The key is sara's alone: not another coordinator's feed, not a forged or altered one.
    key = url.split("key=")[1]
    for forged in (
        f"/v1/coordinators/olle/calendar.ics?organisation={SOCIAL.id}&key={key}",
        f"/v1/coordinators/sara/calendar.ics?organisation={REGION_PSYCH.id}&key={key}",
        f"/v1/coordinators/sara/calendar.ics?key={key}",
        path[:-2] + "AA",
    ):
        refused = api.client.get(forged)
        assert refused.status_code == 403
        assert refused.json()["rule"] == "invalid_calendar_link"
    # Without a key or a token: 401; a link for someone else is not handed out.
    assert api.client.get("/v1/coordinators/sara/calendar.ics").status_code == 401
    other = api.client.get("/v1/coordinators/olle/calendar-link", headers=headers())
    assert other.status_code == 403
    # Another key (the setting changed): every link handed out stops working.
    api.client.app.state.deps = replace(  # type: ignore[attr-defined]
        api.client.app.state.deps,  # type: ignore[attr-defined]
        feed_links=FeedLinks(b"a-new-key", "https://vss.example.se/meetings"),
    )
    assert api.client.get(path).status_code == 403


def test_every_read_of_a_cases_meetings_and_every_refusal_is_in_the_access_log(api: Api) -> None:
    rg = api.resource_group_meeting()["meeting_id"]  # a read
    api.client.get(f"{api.base}/{rg}.ics", headers=headers())
    api.client.get(f"{api.base}/{rg}", headers=headers())
    refused = api.client.get(api.base, headers=headers("olle", "annan-kommun"))
    assert refused.status_code == 403
    # A request's answer shows the meeting (invitees, answers, place): a read, a replay too.
    booked = api.book("logged-1", location="Kontoret")
    assert booked.status_code == 201, booked.text
    assert api.book("logged-1", location="Kontoret").status_code == 200  # the replay
    cancelled = api.post(booked.json()["meeting_id"], "cancel", {"reason": "Klienten är sjuk"}, "logged-2")
    assert cancelled.status_code == 200, cancelled.text
    holiday = api.book("logged-3", starts_at="2026-12-24T10:00:00+01:00")
    assert holiday.status_code == 409, holiday.text  # why it is refused tells of the case too
    api.client.get("/v1/coordinators/sara/calendar.ics", headers=headers())
    link = api.client.get("/v1/coordinators/sara/calendar-link", headers=headers()).json()["url"]
    api.client.get(link.removeprefix("https://vss.example.se/meetings"))
    assert api.accesses() == [
        ("sara", SOCIAL.id, "meetings", "granted"),
        ("sara", SOCIAL.id, "meeting_calendar", "granted"),
        ("sara", SOCIAL.id, "meeting", "granted"),
        ("olle", "annan-kommun", "meetings", "denied"),
        ("sara", SOCIAL.id, "meeting_request", "granted"),  # the booking
        ("sara", SOCIAL.id, "meeting_request", "granted"),  # its replay
        ("sara", SOCIAL.id, "meeting_request", "granted"),  # the cancel
        ("sara", SOCIAL.id, "meeting_request", "granted"),  # the refused booking
        ("sara", SOCIAL.id, "calendar_feed", "granted"),
        ("sara", SOCIAL.id, "calendar_feed", "granted"),  # through the link
    ]
    principals = [r.principal for _, r in api.access_log.for_case(str(api.case_id), 0, 1000)]
    assert principals[-2:] == ["municipality", "calendar_link"]


def test_openapi_docs(api: Api) -> None:
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/openapi.json").json()["info"]["title"] == "VSS meetings"
