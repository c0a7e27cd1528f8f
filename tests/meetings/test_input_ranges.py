"""Input ranges in the meetings API: meeting times and days within the date window, no
control characters in reasons. A meeting moved out of the window (year 9999 would break the
coordinators' calendar feeds) is a 422, and the store is as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.meetings.application.service import MeetingsService
from services.meetings.entrypoints.http import FeedLinks, MeetingsApiDependencies, create_app
from services.meetings.infrastructure.store import MeetingStore
from services.shared.access_log import AccessLogStore
from services.shared.inputs import DateWindow
from tests.meetings.feed import REGION_PSYCH, SOCIAL, CaseFeed
from tests.meetings.test_http import ORGANISER, TOKENS, Api, headers
from tests.meetings.test_http import api as api  # noqa: PLC0414 - the fixture, shared


def _stored(store: MeetingStore) -> int:
    return len(store.read_log(0, 100_000))


def refused(
    api: Api, request: Callable[[], httpx.Response], field: str, rule: str = "date_window"
) -> dict[str, Any]:
    """Send ``request``; assert a 422 naming ``field`` and ``rule``, and no new meeting event."""
    before, meetings = _stored(api.store), api.meetings()
    response = request()
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert (field, rule) in {(e["field"], e["rule"]) for e in problem["errors"]}, problem
    assert _stored(api.store) == before
    assert api.meetings() == meetings
    return problem


@pytest.mark.parametrize("starts_at", ["9999-12-30T10:00:00+01:00", "0001-01-03T10:00:00+01:00"])
def test_a_meeting_booked_in_year_9999_or_1_is_refused(api: Api, starts_at: str) -> None:
    refused(api, lambda: api.book("far", starts_at=starts_at), "starts_at")


def test_a_meeting_moved_to_year_9999_is_refused(api: Api) -> None:
    booked = api.book("book-1")
    assert booked.status_code == 201, booked.text
    meeting_id = booked.json()["meeting_id"]
    body = {"starts_at": "9999-12-30T10:00:00+01:00", "reason": "Flyttad"}
    refused(api, lambda: api.post(meeting_id, "reschedule", body, "move-far"), "starts_at")
    feed = api.client.get("/v1/coordinators/sara/calendar.ics", headers=headers())
    assert feed.status_code == 200, feed.text  # the feed still renders


def test_held_on_9999_12_31_is_refused(api: Api) -> None:
    [meeting] = api.meetings()
    refused(
        api, lambda: api.post(meeting["meeting_id"], "held", {"held_on": "9999-12-31"}, "held"), "held_on"
    )


@pytest.mark.parametrize("reason", ["Flyttad\nav mig", "Flyttad\x00"])
def test_a_reason_with_a_line_break_or_nul_is_refused(api: Api, reason: str) -> None:
    [meeting] = api.meetings()
    body = {"starts_at": "2026-03-03T10:00:00+01:00", "reason": reason}
    refused(
        api,
        lambda: api.post(meeting["meeting_id"], "reschedule", body, "move"),
        "reason",
        "control_character",
    )


def test_the_window_is_configurable(
    meetings: MeetingsService, feed: CaseFeed, meeting_store: MeetingStore, tmp_path: Path
) -> None:
    day = date(2026, 1, 5)  # the meetings clock's day
    feed.open(day)
    feed.assign(day)
    feed.consent(day, SOCIAL, REGION_PSYCH)
    access_log = AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")
    deps = MeetingsApiDependencies(
        service=meetings,
        tokens=TOKENS,
        organiser=ORGANISER,
        feed_links=FeedLinks(b"calendar-link-test-key", "https://vss.example.se/meetings"),
        access_log=access_log,
        window=DateWindow(past_days=0, future_days=7),
    )
    narrow = Api(TestClient(create_app(deps)), feed.case_id, meeting_store, access_log)
    refused(narrow, lambda: narrow.book("later", starts_at="2026-01-14T13:00:00+01:00"), "starts_at")
    assert narrow.book("soon", starts_at="2026-01-09T13:00:00+01:00").status_code == 201


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/coordinators/%00/calendar.ics", {"organisation": "x", "key": "aaaa"}),  # no token at all
        ("/v1/coordinators/anna%0Ak/calendar.ics", {}),
        ("/v1/coordinators/" + "x" * 121 + "/calendar-link", {}),
        ("/v1/coordinators/sara/calendar.ics", {"organisation": "a\x00b", "key": "aaaa"}),
    ],
)
def test_a_person_in_a_path_or_query_is_checked_before_anything_is_logged(
    api: Api, path: str, params: dict[str, str]
) -> None:
    """Unauthenticated text once went into the access log (a NUL: a 500 on PostgreSQL)."""
    before = api.access_log.count()
    response = api.client.get(path, params=params, headers=headers())
    assert response.status_code == 422, response.text
    assert api.access_log.count() == before


# ------------------------------------------------------------------- real meetings (ADR 0020)
@pytest.mark.parametrize("reason", ["", "   ", "x" * 201, "Inställt\nav mig"])
def test_a_cancellation_reason_is_one_to_two_hundred_characters_on_one_line(api: Api, reason: str) -> None:
    [meeting] = api.meetings()
    rule = "control_character" if "\n" in reason else None
    body = {"reason": reason}
    before = _stored(api.store)
    response = api.post(meeting["meeting_id"], "cancel", body, "cancel-bad")
    assert response.status_code == 422, response.text
    assert "reason" in {e["field"] for e in response.json()["errors"]}
    if rule:
        assert (("reason", rule)) in {(e["field"], e["rule"]) for e in response.json()["errors"]}
    assert _stored(api.store) == before
    ok = api.post(meeting["meeting_id"], "cancel", {"reason": "x" * 200}, "cancel-200")
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "body",
    [
        {"starts_at": "9999-12-30T10:00:00+01:00", "place_kind": "office"},
        {"starts_at": "2026-02-04T10:00:00+01:00", "place_kind": "office", "minutes": 14},
        {"starts_at": "2026-02-04T10:00:00+01:00", "place_kind": "office", "minutes": 481},
        {"starts_at": "2026-02-04T10:00:00", "place_kind": "office"},
        {"starts_at": "2026-02-04T10:00:00+01:00"},
        {"starts_at": "2026-02-04T10:00:00+01:00", "place_kind": "office", "location": "x" * 201},
    ],
)
def test_a_confirmation_out_of_range_is_422_and_stores_nothing(api: Api, body: dict[str, Any]) -> None:
    [meeting] = api.meetings()
    before = _stored(api.store)
    response = api.post(meeting["meeting_id"], "confirm", body, "confirm-bad")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert _stored(api.store) == before


@pytest.mark.parametrize(
    "params",
    [
        {"invitee": "x" * 161, "sig": "abc"},
        {"invitee": "client\x00", "sig": "abc"},
        {"invitee": "client", "sig": "x" * 65},
        {"invitee": "client", "sig": "a b"},
    ],
)
def test_an_answer_links_query_is_checked_before_anything_is_logged(api: Api, params: dict[str, str]) -> None:
    [meeting] = api.meetings()
    before = api.access_log.count()
    response = api.client.get(f"{api.base}/{meeting['meeting_id']}/answer", params=params)
    assert response.status_code == 422, response.text
    assert api.access_log.count() == before
