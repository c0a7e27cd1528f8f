"""Real meetings in the invitations (ADR 0020): place and agenda in the text and the .ics, a
proposed meeting told to the coordinators only until confirmed, each invitee's own answer
link, and a CANCEL to every invitee when a crisis meeting's warning is resolved. The real
store, the real SMTP channel and a real SMTP server, as in test_triggers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import pytest

from services.meetings.domain.agenda import CRISIS_AGENDA, RESOURCE_GROUP_AGENDA
from services.notifications.application.service import AnswerLinks
from services.shared.signed_links import verify_answer
from tests.notifications.support import World, text_of
from tests.notifications.test_triggers import (
    HOUR,
    PER,
    PETRA,
    SARA,
    STARTS,
    TOLVAN,
    attendees,
    group,
    invitees,
    rows,
    sequence,
    told,
    vevent,
)
from vss_contracts import meeting_events as me
from vss_contracts.meeting_events import MeetingKind, PlaceKind
from vss_contracts.types import ActingPerson

ANSWER_BASE = "https://vss.example.se/meetings"
ANSWER_KEY = b"answer-link-key-of-these-tests-" + b"k" * 8


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.service.policy = replace(w.policy, answer_links=AnswerLinks(ANSWER_BASE, ANSWER_KEY))
    yield w
    w.close()


def at_home(meeting_id: UUID, people: Any, *, reason: str, proposed: bool = False) -> me.MeetingScheduled:
    """A resource group meeting at the client's home, with the method's agenda."""
    return me.MeetingScheduled(
        meeting_id=meeting_id,
        kind=MeetingKind.RESOURCE_GROUP,
        starts_at=STARTS,
        ends_at=STARTS + HOUR,
        invitees=invitees(people),
        reason=reason,
        location="Hemma hos brukaren",
        place_kind=PlaceKind.CLIENT_HOME,
        agenda=list(RESOURCE_GROUP_AGENDA),
        proposed=proposed,
    )


def test_the_invitation_names_the_place_and_the_agenda_and_carries_each_invitees_answer_link(
    world: World,
) -> None:
    people = group(world, relatives=False)
    meeting_id = uuid4()
    event = world.meeting(at_home(meeting_id, people, reason="sip_follow_up"))
    world.deliver()
    mails = told(world, event)
    assert set(mails) == {TOLVAN, SARA, PER, PETRA}
    text = text_of(mails[SARA])
    assert "2026-03-12 kl. 10:00, Hemma hos brukaren" in text
    assert "Dagordning:\n1. Utvärdering sedan förra mötet" in text
    assert "4. Genomgång av Tidiga tecken med åtgärder\n5. Nästa möten" in text
    method, vev = vevent(mails[SARA])
    assert method == "REQUEST"
    assert str(vev["LOCATION"]) == "Hemma hos brukaren"
    assert "Dagordning:\n1. Utvärdering sedan förra mötet" in str(vev["DESCRIPTION"])
    # Each recipient's own link, which the meetings service accepts for them alone.
    link = next(line for line in text.splitlines() if line.startswith("Svara om du kommer: "))
    url = urlsplit(link.removeprefix("Svara om du kommer: "))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path == f"/meetings/v1/cases/{world.feed.case_id}/meetings/{meeting_id}/answer"
    assert query["invitee"] == "coordinator:sara"
    assert verify_answer(ANSWER_KEY, world.feed.case_id, meeting_id, "coordinator:sara", query["sig"])
    assert not verify_answer(ANSWER_KEY, world.feed.case_id, meeting_id, "client", query["sig"])


def test_a_proposed_meeting_is_told_to_the_coordinators_and_the_invitations_go_out_on_confirmation(
    world: World,
) -> None:
    people = group(world, relatives=False)
    meeting_id = uuid4()
    proposed = world.meeting(at_home(meeting_id, people, reason="mapping_summarised", proposed=True))
    world.deliver()
    asked = told(world, proposed)
    assert set(asked) == {SARA, PER}  # the coordinators only, and no calendar entry yet
    assert {r.template for r in rows(world, proposed)} == {"meeting_proposed"}
    assert all(not any(p.get_content_type() == "text/calendar" for p in m.walk()) for m in asked.values())
    assert str(asked[SARA]["Subject"]) == "Bekräfta tid och plats: Resursgruppsmöte 2026-03-12 kl. 10:00"

    confirmed = world.meeting(
        me.MeetingConfirmed(
            meeting_id=meeting_id,
            starts_at=STARTS + HOUR,
            ends_at=STARTS + 2 * HOUR,
            place_kind=PlaceKind.OFFICE,
            location="Mottagningen",
            sequence=1,
            confirmed_by=ActingPerson(organisation_id="goteborg-soc", user_id="sara"),
        )
    )
    world.deliver()
    invited = told(world, confirmed)
    assert set(invited) == {TOLVAN, SARA, PER, PETRA}
    method, vev = vevent(invited[TOLVAN])
    assert (method, sequence(vev), str(vev["LOCATION"])) == ("REQUEST", 1, "Mottagningen")
    assert vev.decoded("DTSTART") == STARTS + HOUR
    assert "11:00, Mottagningen" in text_of(invited[TOLVAN])


def test_a_resolved_warnings_crisis_meeting_is_cancelled_for_every_invitee(world: World) -> None:
    people = group(world, relatives=False)
    meeting_id = uuid4()
    scheduled = world.meeting(
        me.CrisisMeetingScheduled(
            meeting_id=meeting_id,
            warning_id=uuid4(),
            starts_at=STARTS,
            ends_at=STARTS + HOUR,
            invitees=invitees(people),
            location="Hemma hos brukaren",
            place_kind=PlaceKind.CLIENT_HOME,
            agenda=list(CRISIS_AGENDA),
        )
    )
    world.deliver()
    invited = told(world, scheduled)
    assert "1. Vad har hänt: tidiga tecken som setts" in text_of(invited[SARA])
    cancelled = world.meeting(
        me.MeetingCancelled(meeting_id=meeting_id, sequence=1, reason="the early warning was resolved")
    )
    world.deliver()
    cancellations = told(world, cancelled)
    assert set(cancellations) == set(invited)
    for mail in cancellations.values():
        method, vev = vevent(mail)
        assert method == "CANCEL"
        assert str(vev["UID"]) == f"{meeting_id}@vss.se"
        assert sequence(vev) == 1
        assert str(vev["STATUS"]) == "CANCELLED"
        assert attendees(vev) == set(invited)
