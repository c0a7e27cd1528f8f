"""The meetings API: a proposed meeting confirmed, place and agenda in the .ics, and the
invitees' answers through their signed link or an iTIP REPLY (RFC 5546) from their calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from icalendar import Calendar, Event, vCalAddress

from services.meetings.application.service import MeetingsService
from services.meetings.infrastructure.store import MeetingStore
from services.shared.signed_links import answer_link
from tests.meetings.feed import REGION_PSYCH, SOCIAL, CaseFeed
from tests.meetings.test_http import Api, _api, headers, only_event
from tests.support.clock import FixedClock
from vss_contracts import meeting_events as me
from vss_contracts.types import MemberKind

ANSWER_KEY = b"answer-link-test-key-" + b"k" * 20


@pytest.fixture
def api(meetings: MeetingsService, feed: CaseFeed, meeting_store: MeetingStore, tmp_path: Path) -> Api:
    return _api(meetings, feed, meeting_store, tmp_path, answer_key=ANSWER_KEY)


def _link(api: Api, meeting_id: str, invitee_id: str) -> tuple[str, dict[str, str]]:
    """The path and query of the invitee's answer link, as the notifications service writes it."""
    url = urlsplit(
        answer_link("https://vss.example.se/meetings", ANSWER_KEY, api.case_id, meeting_id, invitee_id)
    )
    path = url.path.removeprefix("/meetings")
    return path, {k: v[0] for k, v in parse_qs(url.query).items()}


def calendar_reply(uid: str, email: str, partstat: str, sequence: int) -> bytes:
    """An iTIP REPLY as a calendar client sends it (RFC 5546 3.2.3), built with icalendar."""
    calendar = Calendar()
    calendar.add("PRODID", "-//Example Corp.//CalDAV Client//EN")
    calendar.add("VERSION", "2.0")
    calendar.add("METHOD", "REPLY")
    event = Event()
    event.add("UID", uid)
    event.add("SEQUENCE", sequence)
    event.add("DTSTAMP", datetime(2026, 1, 20, 8, 0, tzinfo=UTC))
    attendee = vCalAddress(f"mailto:{email}")
    attendee.params["PARTSTAT"] = partstat
    attendee.params["CN"] = "Sara"
    event.add("ATTENDEE", attendee)
    event.add("ORGANIZER", vCalAddress("mailto:vss@goteborg.example.se"))
    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def sara_attendee(api: Api, meeting_id: str) -> Any:
    found = only_event(api.ics(meeting_id))["ATTENDEE"]
    return next(a for a in (found if isinstance(found, list) else [found]) if "sara@" in str(a))


def _reply(api: Api, meeting_id: str, body: bytes, **query: str) -> Any:
    return api.client.post(
        f"{api.base}/{meeting_id}/reply",
        content=body,
        params=query,
        headers={"Content-Type": "text/calendar; charset=utf-8", **({} if query else headers())},
    )


# --------------------------------------------------------------------------- place and agenda
def test_the_ics_carries_the_place_and_the_agenda(api: Api) -> None:
    meeting = api.resource_group_meeting()
    event = only_event(api.ics(meeting["meeting_id"]))
    assert event["LOCATION"] == "Hemma hos brukaren"  # the kind of place, never the address
    description = str(event["DESCRIPTION"])
    assert description.startswith(f"Ärende {str(api.case_id)[:8]}")
    assert "1. Utvärdering sedan förra mötet" in description
    assert "4. Genomgång av Tidiga tecken med åtgärder" in description
    assert "5. Nästa möten" in description


# --------------------------------------------------------------------------------- proposals
def test_the_first_resource_group_meeting_is_proposed_and_a_coordinator_confirms_it(
    api: Api, feed: CaseFeed
) -> None:
    # A second case, summarised without a SIP: the schedule proposes the first meeting.
    other = CaseFeed(feed.service, sequence=feed.sequence)
    other.open(date(2026, 1, 5))
    other.assign(date(2026, 1, 5))
    other.summarise(date(2026, 1, 20))
    base = f"/v1/cases/{other.case_id}/meetings"
    [proposed] = api.client.get(base, headers=headers()).json()["items"]
    assert proposed["proposed"] is True
    assert proposed["sequence"] == 0
    ics = api.client.get(f"{base}/{proposed['meeting_id']}.ics", headers=headers())
    assert only_event(Calendar.from_ical(ics.content))["STATUS"] == "TENTATIVE"  # not yet confirmed
    body = {
        "starts_at": "2026-02-04T14:00:00+01:00",
        "place_kind": "office",
        "location": "Mottagningen, rum 3",
    }
    confirmed = api.client.post(
        f"{base}/{proposed['meeting_id']}/confirm", json=body, headers=headers(key="c-1")
    )
    assert confirmed.status_code == 200, confirmed.text
    out = confirmed.json()
    assert out["proposed"] is False
    assert (out["place_kind"], out["location"]) == ("office", "Mottagningen, rum 3")
    assert datetime.fromisoformat(out["starts_at"]) == datetime.fromisoformat(body["starts_at"])
    assert out["sequence"] == 1  # the invitation that now goes out
    retry = api.client.post(f"{base}/{proposed['meeting_id']}/confirm", json=body, headers=headers(key="c-1"))
    assert retry.headers["idempotency-replayed"] == "true"
    # Confirmed once: moving it now is a reschedule.
    again = api.client.post(
        f"{base}/{proposed['meeting_id']}/confirm",
        json={**body, "starts_at": "2026-02-05T14:00:00+01:00"},
        headers=headers(key="c-2"),
    )
    assert again.status_code == 409
    assert again.json()["rule"] == "meeting_is_proposed"


def test_a_confirmation_on_a_holiday_or_with_an_unknown_place_is_refused(api: Api, feed: CaseFeed) -> None:
    other = CaseFeed(feed.service, sequence=feed.sequence)
    other.open(date(2026, 1, 5))
    other.assign(date(2026, 1, 5))
    other.summarise(date(2026, 1, 20))
    base = f"/v1/cases/{other.case_id}/meetings"
    [proposed] = api.client.get(base, headers=headers()).json()["items"]
    path = f"{base}/{proposed['meeting_id']}/confirm"
    holiday = {"starts_at": "2026-01-06T10:00:00+01:00", "place_kind": "client_home"}  # Trettondedag jul
    assert api.client.post(path, json=holiday, headers=headers(key="c-3")).json()["rule"] == "working_day"
    unknown = {"starts_at": "2026-02-04T10:00:00+01:00", "place_kind": "garden"}
    response = api.client.post(path, json=unknown, headers=headers(key="c-4"))
    assert response.status_code == 422
    assert "place_kind" in str(response.json())


# ----------------------------------------------------------------------------- answer links
def test_an_invitee_answers_through_their_signed_link(api: Api) -> None:
    meeting_id = api.resource_group_meeting()["meeting_id"]
    path, query = _link(api, meeting_id, "coordinator:sara")
    page = api.client.get(path, params=query)  # no token: the link is the credential
    assert page.status_code == 200, page.text
    assert page.json()["answer"] is None
    assert page.json()["location"] == "Hemma hos brukaren"
    assert page.json()["answers"] == ["accepted", "declined", "tentative"]

    answered = api.client.post(path, params=query, json={"answer": "declined"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == "declined"
    sara = next(i for i in api.resource_group_meeting()["invitees"] if i["role"] == "coordinator")
    assert (sara["answer"], sara["answered_via"]) == ("declined", "link")
    # The .ics shows the answer as the attendee's PARTSTAT.
    attendee = sara_attendee(api, meeting_id)
    assert attendee.params["PARTSTAT"] == "DECLINED"
    # The same answer again records nothing new.
    again = api.client.post(path, params=query, json={"answer": "declined"})
    assert again.headers["idempotency-replayed"] == "true"
    assert [e.type for e in api.store.events(api.case_id)].count(me.MeetingAnswered.TYPE) == 1
    # Every read and answer through the link is in the access log, under the invitee.
    assert ("coordinator:sara", SOCIAL.id, "meeting_answer", "granted") in api.accesses()


def test_a_forged_or_other_invitees_link_is_refused_and_logged(api: Api) -> None:
    meeting_id = api.resource_group_meeting()["meeting_id"]
    path, query = _link(api, meeting_id, "coordinator:sara")
    for forged in (
        {**query, "sig": query["sig"][:-2] + "AA"},
        {**query, "invitee": "client"},  # sara's key does not open the client's answer
        {"invitee": "coordinator:sara"},
    ):
        refused = api.client.get(path, params=forged)
        assert refused.status_code == 403
        assert refused.json()["rule"] == "invalid_answer_link"
    assert api.client.post(path, params={**query, "sig": "x"}, json={"answer": "accepted"}).status_code == 403
    assert api.client.post(path, params=query, json={"answer": "maybe"}).status_code == 422
    assert ("coordinator:sara", "-", "meeting_answer", "denied") in api.accesses()


def test_an_answer_link_closes_when_the_consent_no_longer_covers_its_invitee(
    api: Api, feed: CaseFeed, meetings_clock: FixedClock
) -> None:
    """Asked at each opening, as plan links are: the consent's end date passing (no event in
    between) closes a member's link; the coordinator's stays open."""
    feed.consent(date(2026, 1, 7), SOCIAL, REGION_PSYCH, until=date(2026, 1, 31))
    member_id = feed.add_member(date(2026, 1, 8), "Leila Haddad", MemberKind.PROFESSIONAL, REGION_PSYCH)
    meeting_id = api.resource_group_meeting()["meeting_id"]
    path, query = _link(api, meeting_id, f"member:{member_id}")
    assert api.client.get(path, params=query).status_code == 200
    meetings_clock.advance(timedelta(days=30))  # 4 February: the consent ended on 31 January
    refused = api.client.get(path, params=query)
    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "not_covered"
    assert api.client.post(path, params=query, json={"answer": "accepted"}).status_code == 403
    assert (f"member:{member_id}", REGION_PSYCH.id, "meeting_answer", "denied") in api.accesses()
    sara_path, sara_query = _link(api, meeting_id, "coordinator:sara")
    assert api.client.get(sara_path, params=sara_query).status_code == 200


# ------------------------------------------------------------------------- iTIP REPLY (RFC 5546)
def test_a_calendar_reply_updates_the_attendees_answer(api: Api) -> None:
    meeting = api.resource_group_meeting()
    uid = f"{meeting['meeting_id']}@vss.se"
    _, query = _link(api, meeting["meeting_id"], "coordinator:sara")
    reply = calendar_reply(uid, "SARA@example.se", "ACCEPTED", meeting["sequence"])

    response = _reply(api, meeting["meeting_id"], reply, **query)

    assert response.status_code == 200, response.text
    sara = next(i for i in response.json()["invitees"] if i["role"] == "coordinator")
    assert (sara["answer"], sara["answered_via"]) == ("accepted", "icalendar")
    attendee = sara_attendee(api, meeting["meeting_id"])
    assert attendee.params["PARTSTAT"] == "ACCEPTED"
    # A coordinator may forward a reply that reached them: matched by the attendee's address.
    tentative = calendar_reply(uid, "sara@example.se", "TENTATIVE", meeting["sequence"])
    forwarded = _reply(api, meeting["meeting_id"], tentative)
    assert forwarded.status_code == 200, forwarded.text
    sara = next(i for i in forwarded.json()["invitees"] if i["role"] == "coordinator")
    assert sara["answer"] == "tentative"


def test_a_reply_to_an_older_sequence_is_refused(api: Api) -> None:
    meeting = api.resource_group_meeting()
    moved = api.post(
        meeting["meeting_id"],
        "reschedule",
        {"starts_at": "2026-03-03T10:00:00+01:00", "reason": "x"},
        key="m-1",
    )
    assert moved.json()["sequence"] == 1
    _, query = _link(api, meeting["meeting_id"], "coordinator:sara")
    old = calendar_reply(f"{meeting['meeting_id']}@vss.se", "sara@example.se", "ACCEPTED", 0)
    response = _reply(api, meeting["meeting_id"], old, **query)
    assert response.status_code == 409
    assert response.json()["rule"] == "answer_to_current_sequence"


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda uid, body: body.replace(b"METHOD:REPLY", b"METHOD:REQUEST"), "method_reply"),
        (lambda uid, body: body.replace(uid.encode(), b"someone-else@example.com"), "reply_uid"),
        (lambda uid, body: body.replace(b"sara@example.se", b"nobody@example.se"), "attendee_of_link"),
        (lambda uid, body: body.replace(b"PARTSTAT=ACCEPTED", b"PARTSTAT=DELEGATED"), "partstat"),
        (lambda uid, body: b"not a calendar", "icalendar"),
    ],
)
def test_a_bad_reply_is_422_naming_the_rule(api: Api, mutate: Any, rule: str) -> None:
    meeting = api.resource_group_meeting()
    uid = f"{meeting['meeting_id']}@vss.se"
    _, query = _link(api, meeting["meeting_id"], "coordinator:sara")
    body = mutate(uid, calendar_reply(uid, "sara@example.se", "ACCEPTED", 0))
    response = _reply(api, meeting["meeting_id"], body, **query)
    assert response.status_code == 422, response.text
    assert response.json()["rule"] == rule


def test_a_forwarded_reply_from_an_address_not_invited_is_422(api: Api) -> None:
    meeting = api.resource_group_meeting()
    uid = f"{meeting['meeting_id']}@vss.se"
    response = _reply(api, meeting["meeting_id"], calendar_reply(uid, "stranger@example.se", "ACCEPTED", 0))
    assert response.status_code == 422
    assert response.json()["rule"] == "attendee_invited"


def test_a_reply_needs_text_calendar_and_a_key_or_a_token(api: Api) -> None:
    meeting = api.resource_group_meeting()
    uid = f"{meeting['meeting_id']}@vss.se"
    body = calendar_reply(uid, "sara@example.se", "ACCEPTED", 0)
    path = f"{api.base}/{meeting['meeting_id']}/reply"
    assert api.client.post(path, content=body, headers={"Content-Type": "text/calendar"}).status_code == 401
    wrong_type = api.client.post(path, content=body, headers={**headers(), "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    manager = api.client.post(
        path, content=body, headers={**headers(roles=("manager",)), "Content-Type": "text/calendar"}
    )
    assert manager.status_code == 403
    big = api.client.post(path, content=b"x" * 70_000, headers={**headers(), "Content-Type": "text/calendar"})
    assert big.status_code == 413
    assert REGION_PSYCH.id  # (the case's consent covers the region too; not needed for a reply)
