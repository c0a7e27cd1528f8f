"""Decisions depend on history alone: a replay decides what live decided.

A meeting event is judged by the case's people and consent as of the case log position it
followed, whether the case consumer has reached just that position or is far beyond it
when the meeting event arrives (live, the two consumers race; in a replay the case consumer
is usually at the end). The consent is read on the event's own day, not the day it is
consumed. Whether a decided message may still leave is asked again when it would leave.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid4

from services.notifications.domain.audience import NOT_COVERED
from tests.meetings.feed import HOUSING, REGION_PSYCH, SOCIAL
from vss_contracts import meeting_events as me
from vss_contracts.meeting_events import Invitee, InviteeRole, MeetingKind

from .test_notifications_service import with_group
from .world import DAY, START, Notifications

MEETING_ID = uuid4()


def _scheduled(members: dict[str, UUID]) -> me.MeetingScheduled:
    invitees = [
        Invitee(invitee_id="client", name="Tolvan", role=InviteeRole.CLIENT, email="tolvan@example.se"),
        Invitee(
            invitee_id="coordinator:sara",
            name="Sara",
            role=InviteeRole.COORDINATOR,
            organisation=SOCIAL,
            user_id="sara",
            email="sara@example.se",
        ),
        Invitee(
            invitee_id=f"member:{members['mother']}",
            name="Mamma",
            role=InviteeRole.RELATIVE,
            email="mamma@example.se",
        ),
        Invitee(
            invitee_id=f"member:{members['housing']}",
            name="Bo",
            role=InviteeRole.PROFESSIONAL,
            organisation=HOUSING,
            email="bo@example.se",
        ),
    ]
    starts = datetime(2026, 3, 10, 9, 0, tzinfo=START.tzinfo)
    return me.MeetingScheduled(
        meeting_id=MEETING_ID,
        kind=MeetingKind.RESOURCE_GROUP,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        invitees=invitees,
        reason="sip_follow_up",
    )


def _invited(world: Notifications) -> dict[str, str]:
    """What was decided: each invitation by address, with who its calendar lists."""
    return {
        r.address: ",".join(sorted(_attendees(r.calendar or ""))) for r in world.rows("meeting_invitation")
    }


def _outcomes(world: Notifications) -> dict[str, tuple[str, str | None]]:
    """What became of each invitation: its status and why it was not sent."""
    return {r.address: (r.status, r.last_error) for r in world.rows("meeting_invitation")}


def _attendees(calendar: str) -> set[str]:
    unfolded = calendar.replace("\r\n ", "")
    return {line.rsplit("mailto:", 1)[1] for line in unfolded.splitlines() if line.startswith("ATTENDEE")}


def _world() -> tuple[Notifications, dict[str, UUID]]:
    """A case whose consent covers the housing support and relatives, and its members."""
    world = Notifications()
    members = with_group(world)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    return world, members


def test_a_meeting_event_is_judged_as_of_its_case_position_however_far_the_case_consumer_is() -> None:
    # Live order: the meeting is booked and told, then the client withdraws the consent.
    live, members = _world()
    live.meeting(_scheduled(members), case_position=live.feed.sequence[0])
    live.feed.withdraw(DAY)
    # Replay order: the case consumer has read the withdrawal before the meeting event comes.
    replay, members = _world()
    booked_at = replay.feed.sequence[0]
    replay.feed.withdraw(DAY)
    replay.meeting(_scheduled(members), case_position=booked_at)

    assert _invited(live) == _invited(replay)
    invited = _invited(replay)
    everyone = "bo@example.se,mamma@example.se,sara@example.se,tolvan@example.se"
    # Everyone the consent covered when the meeting was booked is told, and named to the others...
    assert invited == dict.fromkeys(everyone.split(","), everyone)
    # ...and those it no longer covers are not sent it: the withdrawal cancelled it (live) or
    # the look before sending does (replay), on the record either way.
    live.deliver()
    replay.deliver()
    assert _outcomes(live) == _outcomes(replay)
    for address in ("mamma@example.se", "bo@example.se"):
        assert _outcomes(replay)[address] == ("cancelled", NOT_COVERED)
    for address in ("tolvan@example.se", "sara@example.se"):
        assert _outcomes(replay)[address] == ("sent", None)


def test_a_meeting_event_after_the_withdrawal_tells_nobody_it_no_longer_covers_in_either_order() -> None:
    world, members = _world()
    world.feed.withdraw(DAY)
    world.meeting(_scheduled(members), case_position=world.feed.sequence[0])
    both = "sara@example.se,tolvan@example.se"
    assert _invited(world) == dict.fromkeys(both.split(","), both)  # nobody else told or named


def test_states_no_later_meeting_event_can_need_are_pruned_and_unchanged_people_add_none() -> None:
    world, members = _world()
    consented_at = world.feed.sequence[0]
    case = str(world.case_id)
    kept_before = dict(world.store.history[case])
    world.feed.worksheet(DAY)  # changes nobody's standing: no state kept
    assert world.store.history[case] == kept_before
    world.feed.withdraw(DAY)
    withdrawn_at = world.feed.sequence[0]
    world.meeting(_scheduled(members), case_position=consented_at + 1)  # after the worksheet
    # The state in force at the meeting's position (the consent's) and the later one stay.
    assert sorted(world.store.history[case]) == [consented_at, withdrawn_at]


def test_a_meeting_event_without_a_case_position_is_judged_by_the_state_as_it_is() -> None:
    world, members = _world()
    world.feed.withdraw(DAY)
    world.meeting(_scheduled(members))  # published before meeting events named their case position
    assert set(_invited(world)) == {"tolvan@example.se", "sara@example.se"}


def test_a_case_event_is_decided_by_the_consent_on_its_own_day_and_withdrawn_if_it_has_ended() -> None:
    world = Notifications()
    with_group(world)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True, until=DAY)
    world.clock.advance(days=3)  # consumed three days after it was recorded, the consent ended
    world.feed.sip(DAY, 1, DAY + timedelta(days=90))
    rows = {r.person["name"]: r for r in world.rows("sip_decided")}
    assert set(rows) == {"Tolvan Tolvansson", "Bo Boendestöd", "Mamma Tolvansson", "Nina Sköterska"}
    world.deliver()
    rows = {r.person["name"]: r for r in world.rows("sip_decided")}
    assert rows["Tolvan Tolvansson"].status == "sent"
    for name in ("Bo Boendestöd", "Mamma Tolvansson", "Nina Sköterska"):
        assert (rows[name].status, rows[name].last_error) == ("cancelled", NOT_COVERED)
    assert [e.payload["reason"] for e in world.store.records if e.payload.get("reason")] == [NOT_COVERED] * 3
