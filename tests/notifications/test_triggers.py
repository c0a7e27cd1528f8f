"""Each trigger of the notifications service: the right message to the right people, and to
nobody else, under the consent rules; and delivery through SMTP and webhooks that fail
for a while.

Service level, below the bus: case events from :class:`~tests.meetings.feed.CaseFeed`,
meeting events built from the contracts and fed to the meetings consumer, the real store
(SQLite), the real SMTP channel to the real mail sink (each message a file), a real
webhook receiver that verifies signatures, and an injected clock that the retries follow.

The case used throughout (:func:`group`): the client Tolvan, the coordinators sara (the
municipality's social services) and per (the region's psychiatry), and the members Bo
(a housing support firm), Mamma (a relative), Petra (the region's psychiatry) and Frida
(social services; a phone number, no e-mail address). The consent covers social services
and psychiatry unless a test says otherwise: not the housing firm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import icalendar
import orjson
import pytest

from services.notifications.application.ports import DeliveryRow, iso
from services.notifications.application.service import Organisation, PlanLinks, Webhook
from services.notifications.infrastructure.mailsink import MailSink
from services.shared.plan_links import LinkKind, contact_holder, coordinator_holder, member_holder, plan_link
from tests.meetings.feed import CLIENT, COORDINATOR, HOUSING, REGION_PSYCH, SOCIAL
from tests.notifications.support import (
    DAY,
    SECRET,
    Collector,
    Receiver,
    World,
    address_of,
    calendar_of,
    smtp_server,
    text_of,
)
from tests.support.clock import STOCKHOLM
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts import notification_events as ne
from vss_contracts import webhooks
from vss_contracts.meeting_events import Invitee, InviteeRole, MeetingKind
from vss_contracts.types import (
    ContactDetails,
    ContactPeriod,
    MemberKind,
    NamedCoordinator,
    OrganisationRef,
    Principal,
)

STARTS = datetime(2026, 3, 12, 10, 0, tzinfo=STOCKHOLM)
MOVED_TO = datetime(2026, 3, 19, 13, 0, tzinfo=STOCKHOLM)
HOUR = timedelta(hours=1)
PLAN_LINK_BASE = "https://vss.example.se"
PLAN_LINK_KEY = b"plan-link-key-of-these-tests-" + b"k" * 8
PLAN = LinkKind.EARLY_WARNING_PLAN
INSURANCE = OrganisationRef(id="fk", name="Försäkringskassan", principal=Principal.OTHER)

TOLVAN, SARA, PER = "tolvan@example.se", "sara@example.se", "per@example.se"
BO, MAMMA, PETRA = "bo@example.se", "mamma@example.se", "petra@example.se"


@dataclass(frozen=True)
class Group:
    client: UUID
    housing: UUID  # Bo, the housing support firm
    mother: UUID  # Mamma, a relative
    psych: UUID  # Petra, the region's psychiatry
    no_mail: UUID  # Frida, social services: a phone number and no e-mail address


def group(
    world: World,
    *organisations: OrganisationRef,
    relatives: bool = True,
    consent: bool = True,
) -> Group:
    """The case's people and its consent (default: social services and psychiatry), with
    the coordinators' assignment messages already delivered."""
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.assign(DAY, "per", REGION_PSYCH)
    frida = uuid4()
    feed.send(
        DAY,
        ce.ResourceGroupMemberAdded(
            member=ce.ResourceGroupMember(
                member_id=frida,
                kind=MemberKind.PROFESSIONAL,
                name="Frida Utanpost",
                organisation=SOCIAL,
                contact=ContactDetails(phone="+46701112233"),
            ),
            added_on=DAY,
        ),
    )
    people = Group(
        client=feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT),
        housing=feed.add_member(DAY, "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING),
        mother=feed.add_member(DAY, "Mamma Tolvansson", MemberKind.RELATIVE),
        psych=feed.add_member(DAY, "Petra Psykolog", MemberKind.PROFESSIONAL, REGION_PSYCH),
        no_mail=frida,
    )
    if consent:
        feed.consent(DAY, *(organisations or (SOCIAL, REGION_PSYCH)), relatives=relatives)
    world.deliver()
    assert sorted(world.recipients()) == [PER, SARA]
    return people


def invitees(people: Group) -> list[Invitee]:
    """The meeting's invitees as the meetings service names them."""
    return [
        Invitee(invitee_id="client", name="Tolvan Tolvansson", role=InviteeRole.CLIENT, email=TOLVAN),
        *(
            Invitee(
                invitee_id=f"coordinator:{user}",
                name=f"Samordnare {user}",
                role=InviteeRole.COORDINATOR,
                organisation=organisation,
                user_id=user,
                email=f"{user}@example.se",
            )
            for user, organisation in (("sara", SOCIAL), ("per", REGION_PSYCH))
        ),
        member(people.housing, "Bo Boendestöd", InviteeRole.PROFESSIONAL, HOUSING, BO),
        member(people.mother, "Mamma Tolvansson", InviteeRole.RELATIVE, None, MAMMA),
        member(people.psych, "Petra Psykolog", InviteeRole.PROFESSIONAL, REGION_PSYCH, PETRA),
        member(people.no_mail, "Frida Utanpost", InviteeRole.PROFESSIONAL, SOCIAL, None, "+46701112233"),
    ]


def member(
    member_id: UUID,
    name: str,
    role: InviteeRole,
    organisation: OrganisationRef | None,
    email: str | None,
    phone: str | None = None,
) -> Invitee:
    return Invitee(
        invitee_id=f"member:{member_id}",
        name=name,
        role=role,
        organisation=organisation,
        email=email,
        phone=phone,
    )


def schedule(world: World, people: Group, meeting_id: UUID, *, location: str | None = None) -> str:
    return world.meeting(
        me.MeetingScheduled(
            meeting_id=meeting_id,
            kind=MeetingKind.RESOURCE_GROUP,
            starts_at=STARTS,
            ends_at=STARTS + HOUR,
            invitees=invitees(people),
            reason="booked",
            location=location,
        )
    )


# ----------------------------------------------------------------------------------- helpers
def rows(world: World, event_id: str) -> list[DeliveryRow]:
    """The deliveries one event decided."""
    return [r for r in world.service.deliveries(world.feed.case_id) if r.cause_event_id == event_id]


def told(world: World, event_id: str) -> dict[str, EmailMessage]:
    """The e-mails one event sent, by address: every one of its deliveries sent, and one
    mail file for each e-mail delivery (and no file the store does not know of)."""
    decided = rows(world, event_id)
    assert decided, "the event decided no delivery"
    assert {r.status for r in decided} == {"sent"}, [(r.address, r.status, r.last_error) for r in decided]
    assert_one_file_per_delivery(world)
    ids = {r.message_id: r.address for r in decided if r.channel == "email"}
    mails = {address_of(m): m for m in world.mails() if str(m["Message-ID"]) in ids}
    assert sorted(mails) == sorted(ids.values())
    return mails


def assert_one_file_per_delivery(world: World) -> None:
    sent = sorted(
        r.message_id
        for r in world.service.deliveries(world.feed.case_id)
        if r.status == "sent" and r.channel == "email"
    )
    assert sorted(str(m["Message-ID"]) for m in world.mails()) == sent


def vevent(mail: EmailMessage) -> tuple[str, icalendar.Event]:
    calendar = calendar_of(mail)
    [event] = calendar.walk("VEVENT")
    assert isinstance(event, icalendar.Event)
    return str(calendar["METHOD"]), event


def sequence(event: icalendar.Event) -> int:
    return int(event.decoded("SEQUENCE"))


def attendees(event: icalendar.Event) -> set[str]:
    found = event.get("ATTENDEE", [])
    found = found if isinstance(found, list) else [found]
    return {str(a).removeprefix("mailto:") for a in found}


def log_records(world: World, case_id: UUID) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.state["data"]) for e in world.store.read_log(0, 1000) if e.case_id == str(case_id)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    # The deployment's plan links (ADR 0016): the query API's URL and the key it checks with.
    w.service.policy = replace(w.policy, plan_links=PlanLinks(PLAN_LINK_BASE, PLAN_LINK_KEY))
    yield w
    w.close()


# ------------------------------------------------------------------------ meeting scheduled
@pytest.mark.parametrize("relatives", [True, False], ids=["relatives-covered", "relatives-not-covered"])
def test_a_scheduled_meeting_invites_every_covered_invitee_with_an_address(
    world: World, relatives: bool
) -> None:
    people = group(world, relatives=relatives)
    meeting_id = uuid4()
    event = schedule(world, people, meeting_id, location="Storgatan 1")
    world.deliver()

    expected = {TOLVAN, SARA, PER, PETRA} | ({MAMMA} if relatives else set())
    mails = told(world, event)
    # Not Bo (the consent does not cover the housing firm); Mamma only if it covers
    # relatives; Frida has no address: no delivery at all (an invitation is not urgent: no SMS).
    assert set(mails) == expected
    assert {r.channel for r in rows(world, event)} == {"email"}
    for address, mail in mails.items():
        assert str(mail["Subject"]) == "Kallelse: Resursgruppsmöte 2026-03-12 kl. 10:00"
        assert "Storgatan 1" in text_of(mail)
        assert str(world.feed.case_id)[:8] in text_of(mail)
        method, vev = vevent(mail)
        assert method == "REQUEST"
        assert str(vev["UID"]) == f"{meeting_id}@vss.se"
        assert sequence(vev) == 0
        assert vev.decoded("DTSTART") == STARTS
        assert vev.decoded("DTEND") == STARTS + HOUR
        assert str(vev["STATUS"]) == "CONFIRMED"
        # Everyone told, and nobody the consent does not cover, is named to the others.
        assert attendees(vev) == expected, address


def test_no_consent_yet_invites_only_the_client_and_the_coordinators(world: World) -> None:
    people = group(world, consent=False)
    event = schedule(world, people, uuid4())
    world.deliver()
    mails = told(world, event)
    assert set(mails) == {TOLVAN, SARA, PER}
    assert attendees(vevent(mails[TOLVAN])[1]) == {TOLVAN, SARA, PER}


def test_a_crisis_meeting_invites_like_any_meeting(world: World) -> None:
    people = group(world, relatives=False)
    meeting_id = uuid4()
    event = world.meeting(
        me.CrisisMeetingScheduled(
            meeting_id=meeting_id,
            warning_id=uuid4(),
            starts_at=STARTS,
            ends_at=STARTS + HOUR,
            invitees=invitees(people),
        )
    )
    world.deliver()
    mails = told(world, event)
    assert set(mails) == {TOLVAN, SARA, PER, PETRA}
    assert {str(m["Subject"]) for m in mails.values()} == {"Kallelse: Krismöte 2026-03-12 kl. 10:00"}
    assert str(vevent(mails[SARA])[1]["SUMMARY"]) == "Krismöte"


# ------------------------------------------------------------------- rescheduled, cancelled
def test_a_rescheduled_meeting_updates_and_a_cancelled_one_cancels_the_same_calendar_entry(
    world: World,
) -> None:
    people = group(world, relatives=True)
    meeting_id = uuid4()
    scheduled = schedule(world, people, meeting_id)
    world.deliver()
    expected = {TOLVAN, SARA, PER, PETRA, MAMMA}
    assert set(told(world, scheduled)) == expected

    moved = world.meeting(
        me.MeetingRescheduled(
            meeting_id=meeting_id,
            starts_at=MOVED_TO,
            ends_at=MOVED_TO + HOUR,
            previous_starts_at=STARTS,
            sequence=1,
            reason="Krockade med en helgdag",
        )
    )
    world.deliver()
    updates = told(world, moved)
    assert set(updates) == expected
    for mail in updates.values():
        assert str(mail["Subject"]) == "Ändrad tid: Resursgruppsmöte 2026-03-19 kl. 13:00"
        method, vev = vevent(mail)
        assert method == "REQUEST"
        assert str(vev["UID"]) == f"{meeting_id}@vss.se"  # the same entry, updated in place
        assert sequence(vev) == 1
        assert vev.decoded("DTSTART") == MOVED_TO
        assert vev.decoded("DTEND") == MOVED_TO + HOUR
        assert attendees(vev) == expected

    cancelled = world.meeting(me.MeetingCancelled(meeting_id=meeting_id, sequence=2, reason="Inställt"))
    world.deliver()
    cancellations = told(world, cancelled)
    assert set(cancellations) == expected
    for mail in cancellations.values():
        assert str(mail["Subject"]) == "Inställt: Resursgruppsmöte 2026-03-19 kl. 13:00"
        method, vev = vevent(mail)
        assert method == "CANCEL"
        assert str(vev["UID"]) == f"{meeting_id}@vss.se"
        assert sequence(vev) == 2
        assert str(vev["STATUS"]) == "CANCELLED"
        assert attendees(vev) == expected


def test_a_reschedule_of_a_meeting_never_seen_tells_nobody(world: World) -> None:
    group(world)
    event = world.meeting(
        me.MeetingRescheduled(
            meeting_id=uuid4(),
            starts_at=MOVED_TO,
            ends_at=MOVED_TO + HOUR,
            previous_starts_at=STARTS,
            sequence=1,
            reason="x",
        )
    )
    assert rows(world, event) == []


# --------------------------------------------------------------------------- invitees changed
def test_invitees_changed_invites_the_added_and_cancels_for_the_removed_still_covered(
    world: World,
) -> None:
    people = group(world, relatives=True)
    everyone = {i.invitee_id: i for i in invitees(people)}
    petra, mamma, bo = (everyone[f"member:{m}"] for m in (people.psych, people.mother, people.housing))
    meeting_id = uuid4()
    world.meeting(
        me.MeetingScheduled(
            meeting_id=meeting_id,
            kind=MeetingKind.RESOURCE_GROUP,
            starts_at=STARTS,
            ends_at=STARTS + HOUR,
            invitees=[i for i in everyone.values() if i != petra],
            reason="booked",
        )
    )
    world.deliver()
    # Petra is new; the client's address changed (already invited: the invitation again, to
    # the new address); Mamma and Bo are dropped.
    client = everyone["client"].model_copy(update={"email": "tolvan.ny@example.se"})
    changed = world.meeting(
        me.MeetingInviteesChanged(
            meeting_id=meeting_id,
            added=[petra, client],
            removed=[mamma, bo],
            sequence=1,
            reason="member_removed",
        )
    )
    world.deliver()

    mails = told(world, changed)
    # Not sara, per (unchanged), not Bo (dropped, but the consent does not cover him), not the
    # client's old address.
    assert set(mails) == {PETRA, "tolvan.ny@example.se", MAMMA}
    now_invited = {"tolvan.ny@example.se", SARA, PER, PETRA}
    for address in (PETRA, "tolvan.ny@example.se"):
        assert str(mails[address]["Subject"]).startswith("Kallelse: ")
        method, vev = vevent(mails[address])
        assert (method, sequence(vev)) == ("REQUEST", 1)
        assert str(vev["UID"]) == f"{meeting_id}@vss.se"
        assert attendees(vev) == now_invited
    assert str(mails[MAMMA]["Subject"]).startswith("Inställt: ")
    method, vev = vevent(mails[MAMMA])
    assert (method, sequence(vev), str(vev["STATUS"])) == ("CANCEL", 1, "CANCELLED")
    assert str(vev["UID"]) == f"{meeting_id}@vss.se"
    assert attendees(vev) == {MAMMA}  # the cancellation names only the one it uninvites


def test_a_withdrawal_of_relatives_cancels_a_pending_invitation_to_a_relative(world: World) -> None:
    people = group(world, relatives=True)
    event = schedule(world, people, uuid4())
    # Decided, not yet delivered: the client withdraws the consent for relatives.
    world.feed.send(DAY, ce.ConsentWithdrawn(withdrawn_on=DAY, entire=False, relatives=True))
    world.deliver()
    by_address = {r.address: r for r in rows(world, event)}
    assert by_address[MAMMA].status == "cancelled"
    assert {a for a, r in by_address.items() if r.status == "sent"} == {TOLVAN, SARA, PER, PETRA}
    assert MAMMA not in world.recipients()
    withdrawn = [
        data for kind, data in log_records(world, world.feed.case_id) if kind == ne.NotificationFailed.TYPE
    ]
    assert [(d["delivery_key"], d["permanent"]) for d in withdrawn] == [
        (by_address[MAMMA].delivery_key, True)
    ]


# ------------------------------------------------------------- reminders and change ratings
@pytest.mark.parametrize("consent", [True, False], ids=["everyone-covered", "no-consent"])
@pytest.mark.parametrize("trigger", ["reminder", "change_rating"])
def test_reminders_and_change_rating_requests_go_to_the_client_and_the_coordinators_only(
    world: World, trigger: str, consent: bool
) -> None:
    people = group(world, SOCIAL, REGION_PSYCH, HOUSING, relatives=True, consent=consent)
    meeting_id = uuid4()
    schedule(world, people, meeting_id)
    world.deliver()
    data: me.MeetingEventData
    if trigger == "reminder":
        data = me.MeetingReminderDue(meeting_id=meeting_id, starts_at=STARTS, days_before=2, sequence=0)
        subject = "Påminnelse: resursgruppsmöte 2026-03-12 kl. 10:00"
    else:
        data = me.ChangeRatingRequested(meeting_id=meeting_id, meeting_starts_at=STARTS)
        subject = "Dags för skattning inför resursgruppsmötet"
    event = world.meeting(data)
    world.deliver()
    mails = told(world, event)
    # Not Bo, Mamma or Petra, though invited to the meeting and (here) covered.
    assert set(mails) == {TOLVAN, SARA, PER}
    assert {str(m["Subject"]) for m in mails.values()} == {subject}
    assert all(list(m.iter_attachments()) == [] for m in mails.values())  # no calendar entry


# -------------------------------------------------------------------- early warning plan
@pytest.mark.parametrize("relatives", [True, False], ids=["relatives-covered", "relatives-not-covered"])
def test_an_updated_early_warning_plan_goes_to_everyone_it_names_whom_the_consent_covers(
    world: World, relatives: bool
) -> None:
    people = group(world, relatives=relatives)
    world.feed.send(
        DAY,
        ce.EarlyWarningPlanUpdated(
            plan_version=2,
            signs=[ce.WarningSign(sign_id="somn", description="Sover dåligt flera nätter")],
            client_actions=["Ringa mamma"],
            others_actions=[],
            contacts=[
                # a member, reached at the member's address
                ce.PlanContact(
                    name="Mamma Tolvansson", relation="mamma", phone="+46701234567", member_id=people.mother
                ),
                # a member, reached at the address the plan gives
                ce.PlanContact(
                    name="Petra Psykolog",
                    relation="psykolog",
                    phone="+46317654321",
                    email="petra.jour@example.se",
                    member_id=people.psych,
                ),
                # a member of an organisation the consent does not cover
                ce.PlanContact(
                    name="Bo Boendestöd",
                    relation="boendestöd",
                    phone="+46311234567",
                    member_id=people.housing,
                ),
                # a friend, no member: a private person, like a relative
                ce.PlanContact(
                    name="Kompis Karlsson", relation="vän", phone="+46709876543", email="kompis@example.se"
                ),
            ],
            updated_on=DAY,
        ),
    )
    event = world.feed.event_ids[-1]
    world.deliver()
    mails = told(world, event)
    # Not the client or Frida: the plan does not name them (the client has it anyway); the
    # coordinators, named or not, get it with their own link.
    expected = {"petra.jour@example.se", SARA, PER} | ({MAMMA, "kompis@example.se"} if relatives else set())
    assert set(mails) == expected
    for mail in mails.values():
        assert str(mail["Subject"]) == f"Krisplanen är uppdaterad i ärende {str(world.feed.case_id)[:8]}"
        assert "version 2" in text_of(mail)
        assert "Sover" not in text_of(mail)  # no health details: the signs stay in the case
    assert {r.channel for r in rows(world, event)} == {"email"}  # not urgent: no SMS
    # Each their own link to the whole plan, signed for them (ADR 0016).
    holders = {
        "petra.jour@example.se": member_holder(people.psych),
        SARA: coordinator_holder(SOCIAL.id, "sara"),
        PER: coordinator_holder(REGION_PSYCH.id, "per"),
        MAMMA: member_holder(people.mother),
        "kompis@example.se": contact_holder("Kompis Karlsson", "+46709876543", "kompis@example.se"),
    }
    for address, mail in mails.items():
        link = plan_link(PLAN_LINK_BASE, PLAN_LINK_KEY, world.feed.case_id, holders[address], PLAN)
        assert f"din egen länk, dela den inte): {link}\n" in text_of(mail)
    assert "du är samordnare i ärendet" in text_of(mails[SARA])
    assert "du är namngiven i krisplanen" in text_of(mails["petra.jour@example.se"])


# ---------------------------------------------------------------- follow-up, contact cadence
@pytest.mark.parametrize("trigger", ["follow_up_overdue", "contact_cadence_missed"])
def test_an_overdue_follow_up_and_a_missed_contact_cadence_go_to_the_coordinators_only(
    world: World, trigger: str
) -> None:
    group(world, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)

    coordinators = [
        NamedCoordinator(organisation_id=SOCIAL.id, user_id="sara"),
        NamedCoordinator(organisation_id=REGION_PSYCH.id, user_id="per"),
    ]

    def send() -> str:
        if trigger == "follow_up_overdue":
            return world.meeting(
                me.FollowUpOverdue(sip_version=1, follow_up_on=date(2026, 3, 1), coordinators=coordinators)
            )
        return world.meeting(
            me.ContactCadenceMissed(
                period=ContactPeriod.SOCIAL_RECOVERY,
                period_set=True,
                period_days=14,
                period_start=date(2026, 2, 15),
                period_end=date(2026, 3, 1),
                last_contact_on=date(2026, 2, 10),
                coordinators=coordinators,
            )
        )

    subject = {
        "follow_up_overdue": "Uppföljningen är försenad i ärende",
        "contact_cadence_missed": "Ingen kontakt med brukaren i ärende",
    }[trigger]
    event = send()
    world.deliver()
    mails = told(world, event)
    assert set(mails) == {SARA, PER}
    assert all(str(m["Subject"]).startswith(subject) for m in mails.values())
    if trigger == "contact_cadence_missed":  # the message names the period and its interval
        assert "som social återhämtning (satt av samordnarna) kräver" in text_of(mails[SARA])
        assert "under 14 dagar" in text_of(mails[SARA])
    # A coordinator unassigned is no longer told.
    world.feed.unassign(DAY, "per")
    event = send()
    world.deliver()
    assert set(told(world, event)) == {SARA}


# ------------------------------------------------------------------------------ SIP decided
def sip_decided(people: Group, *actions: tuple[UUID, str, date]) -> ce.SipDecided:
    return ce.SipDecided(
        sip_version=1,
        decided_on=DAY,
        overall_responsibility=SOCIAL,
        goal_ids=[uuid4()],
        actions=[
            ce.SipAction(
                action_id=uuid4(),
                what=what,
                responsible_member_id=responsible,
                due_on=due,
                how="Enligt överenskommelse i resursgruppen",
            )
            for responsible, what, due in actions
        ],
        next_follow_up_on=date(2026, 6, 1),
        participants=[CLIENT, COORDINATOR],
        client_agreed=True,
    )


def test_each_member_is_told_the_sip_with_the_actions_they_are_responsible_for_and_their_dates(
    world: World,
) -> None:
    people = group(world, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    world.feed.send(
        DAY,
        sip_decided(
            people,
            (people.housing, "Hjälp att handla varje vecka", date(2026, 4, 30)),
            (people.mother, "Följa med till resursgruppsmötet", date(2026, 6, 1)),
            (people.housing, "Följa med till banken", date(2026, 4, 1)),
            (people.no_mail, "Ansöka om kontaktperson", date(2026, 3, 31)),
        ),
    )
    event = world.feed.event_ids[-1]
    world.deliver()
    mails = told(world, event)
    # Every member the consent covers and who has an address (Frida has none); coordinators
    # are told as members when they are members.
    assert set(mails) == {TOLVAN, BO, MAMMA, PETRA}
    reference = str(world.feed.case_id)[:8]
    texts = {address: text_of(mail) for address, mail in mails.items()}
    for address, mail in mails.items():
        assert str(mail["Subject"]) == f"En ny SIP är beslutad i ärende {reference}"  # neutral
        assert "Nästa uppföljning: 2026-06-01" in texts[address]
        assert "Enligt överenskommelse" not in texts[address]  # the "how" stays in the case
    assert "Du är ansvarig för 2 insats(er):\n" in texts[BO]
    assert (
        "- Följa med till banken (klar senast 2026-04-01)\n"
        "- Hjälp att handla varje vecka (klar senast 2026-04-30)\n"
    ) in texts[BO]
    assert "- Följa med till resursgruppsmötet (klar senast 2026-06-01)" in texts[MAMMA]
    for address, text in texts.items():  # each sees their own actions, nobody another's
        assert ("banken" in text) is (address == BO)
        assert ("resursgruppsmötet (klar" in text) is (address == MAMMA)
        assert "kontaktperson" not in text
    for address in (TOLVAN, PETRA):
        assert "Du har inga egna insatser i planen." in texts[address]
    # After their own actions, each member's own link to the whole SIP (ADR 0016).
    members = {TOLVAN: people.client, BO: people.housing, MAMMA: people.mother, PETRA: people.psych}
    for address, member_id in members.items():
        link = plan_link(
            PLAN_LINK_BASE, PLAN_LINK_KEY, world.feed.case_id, member_holder(member_id), LinkKind.SIP
        )
        own = f"Hela planen (SIP) som den är nu, din egen länk: {link}\n"
        assert own in texts[address]
        assert texts[address].index(own) > texts[address].index("Nästa uppföljning")
    assert texts[BO].index("banken") < texts[BO].index("Hela planen (SIP)")


# --------------------------------------------------------------- SMTP refusing for a while
def test_mail_refused_for_a_while_is_delivered_once_the_server_recovers_nothing_lost(
    world: World, tmp_path: Path
) -> None:
    people = group(world, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    port = world.sink.port
    world.loop.run_until_complete(world.sink.stop())  # nothing listening: connection refused
    world.feed.send(DAY, sip_decided(people, (people.housing, "Handla", date(2026, 4, 1))))
    event = world.feed.event_ids[-1]
    expected = {TOLVAN, BO, MAMMA, PETRA}

    def state() -> set[tuple[str, str, int]]:
        return {(r.address, r.status, r.attempts) for r in rows(world, event)}

    t0 = world.clock.now()
    assert world.deliver() == 4
    assert state() == {(a, "pending", 1) for a in expected}
    assert all("cannot connect" in (r.last_error or "") for r in rows(world, event))
    assert {r.next_attempt_at for r in rows(world, event)} == {iso(t0 + timedelta(seconds=10))}
    assert world.deliver() == 0  # not yet due
    world.clock.advance(seconds=9)
    assert world.deliver() == 0

    # Back, but unable to store what it is given (its directory is gone): 451, try again later.
    before = world.sink_dir.rename(tmp_path / "mail-before")  # the assignments' messages, aside
    world.sink = MailSink(world.sink_dir, port=port)
    world.loop.run_until_complete(world.sink.start())
    world.sink_dir.rmdir()
    world.clock.advance(seconds=1)
    assert world.deliver() == 4
    assert state() == {(a, "pending", 2) for a in expected}
    assert all("451" in (r.last_error or "") for r in rows(world, event))
    # The backoff doubles: 20 s after the second attempt.
    assert {r.next_attempt_at for r in rows(world, event)} == {iso(t0 + timedelta(seconds=30))}
    world.clock.advance(seconds=19)
    assert world.deliver() == 0

    world.sink_dir.mkdir()  # recovered
    world.clock.advance(seconds=1)
    assert world.deliver() == 4
    assert state() == {(a, "sent", 3) for a in expected}
    assert len(world.sink.files()) == 4
    for kept in before.iterdir():  # back with the rest, to check the whole case's messages
        kept.rename(world.sink_dir / kept.name)
    mails = told(world, event)  # one file per delivery, none twice
    assert set(mails) == expected
    sent = [d for kind, d in log_records(world, world.feed.case_id) if kind == ne.NotificationSent.TYPE]
    assert sorted(
        (d["recipient"]["name"], d["attempts"]) for d in sent if d["template"] == "sip_decided"
    ) == [
        ("Bo Boendestöd", 3),
        ("Mamma Tolvansson", 3),
        ("Petra Psykolog", 3),
        ("Tolvan Tolvansson", 3),
    ]
    assert not [k for k, _ in log_records(world, world.feed.case_id) if k == ne.NotificationFailed.TYPE]
    world.clock.advance(timedelta(days=1))
    assert world.deliver() == 0
    assert len(world.sink.files()) == 4 + 2


def test_mail_refused_with_5xx_fails_at_once_with_the_reason_on_record(world: World) -> None:
    collector = Collector(data_replies=["554 5.7.1 Message rejected by policy"])
    world.loop.run_until_complete(world.smtp.close())  # the next message opens a new connection

    async def deliver_to_the_refusing_server() -> int:
        async with smtp_server(collector) as port:
            world.smtp.port = port
            attempts = await world.service.deliver_due()
            world.clock.advance(timedelta(days=1))
            attempts += await world.service.deliver_due()  # nothing again: it is not retried
            await world.smtp.close()
            return attempts

    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    assert world.loop.run_until_complete(deliver_to_the_refusing_server()) == 1
    [row] = world.service.deliveries(world.feed.case_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None
    assert "554 5.7.1 Message rejected by policy" in row.last_error
    assert collector.attempts == 1
    assert collector.messages == []
    [(kind, data)] = log_records(world, world.feed.case_id)
    assert kind == ne.NotificationFailed.TYPE
    assert data["delivery_key"] == row.delivery_key
    assert data["template"] == "coordinator_assigned"
    assert data["permanent"] is True
    assert data["attempts"] == 1
    assert "554" in data["reason"]
    assert world.service.summary()["deliveries"] == {"failed": 1}


def test_mail_that_never_gets_through_fails_after_the_last_attempt(tmp_path: Path) -> None:
    world = World(tmp_path, max_attempts=3)
    try:
        world.loop.run_until_complete(world.sink.stop())
        world.feed.open(DAY)
        world.feed.assign(DAY, "sara", SOCIAL)
        assert world.deliver() == 1
        for wait in (10, 20):  # first_retry, then doubled
            world.clock.advance(seconds=wait - 1)
            assert world.deliver() == 0
            world.clock.advance(seconds=1)
            assert world.deliver() == 1
        [row] = world.service.deliveries(world.feed.case_id)
        assert (row.status, row.attempts) == ("failed", 3)
        assert row.last_error is not None
        assert row.last_error.startswith("gave up after 3 attempts: ")
        [(kind, data)] = log_records(world, world.feed.case_id)
        assert (kind, data["attempts"]) == (ne.NotificationFailed.TYPE, 3)
        world.loop.run_until_complete(world.sink.start())
        world.clock.advance(timedelta(days=1))
        assert world.deliver() == 0
        assert world.mails() == []
    finally:
        world.close()


# ------------------------------------------------------------------------------- webhooks
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def webhook_world(tmp_path: Path, receiver: Receiver) -> tuple[World, Group, UUID]:
    """The housing firm and the social insurance office have webhooks; the consent covers
    the housing firm, not the insurance office."""
    world = World(
        tmp_path,
        {
            HOUSING.id: Organisation(webhook=Webhook(receiver.url + "/vss/boendestod", SECRET)),
            INSURANCE.id: Organisation(webhook=Webhook(receiver.url + "/vss/fk", SECRET)),
        },
    )
    fia = uuid4()
    world.feed.send(
        DAY,
        ce.ResourceGroupMemberAdded(
            member=ce.ResourceGroupMember(
                member_id=fia,
                kind=MemberKind.PROFESSIONAL,
                name="Fia Handläggare",
                organisation=INSURANCE,
                contact=ContactDetails(email="fia@example.se"),
            ),
            added_on=DAY,
        ),
    )
    people = group(world, SOCIAL, REGION_PSYCH, HOUSING, relatives=False)
    return world, people, fia


def test_a_covered_members_notice_is_posted_to_their_organisations_webhook_signed(
    tmp_path: Path, receiver: Receiver
) -> None:
    world, people, fia = webhook_world(tmp_path, receiver)
    try:
        world.feed.send(DAY, sip_decided(people, (people.housing, "Handla", date(2026, 4, 1))))
        event = world.feed.event_ids[-1]
        world.deliver()
        mails = told(world, event)
        assert set(mails) == {TOLVAN, BO, PETRA}  # not Fia: the insurance office is not covered
        [hook] = [r for r in rows(world, event) if r.channel == "webhook"]
        assert (hook.person["key"], hook.address, hook.status) == (
            f"member:{people.housing}",
            receiver.url + "/vss/boendestod",
            "sent",
        )
        [request] = receiver.requests  # nothing to the insurance office's webhook
        assert request.verified == "ok"
        assert request.path == "/vss/boendestod"
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers[webhooks.DELIVERY_HEADER.lower()] == hook.delivery_key
        assert headers[webhooks.MESSAGE_ID_HEADER.lower()] == hook.message_id
        payload = orjson.loads(request.body)
        assert payload["template"] == "sip_decided"
        assert payload["case_id"] == str(world.feed.case_id)
        assert payload["recipient"]["key"] == f"member:{people.housing}"
        assert payload["subject"] == str(mails[BO]["Subject"])
        assert "- Handla (klar senast 2026-04-01)" in payload["body"]
        sent = [d for k, d in log_records(world, world.feed.case_id) if k == ne.NotificationSent.TYPE]
        assert [d["channel"] for d in sent if d["delivery_key"] == hook.delivery_key] == ["webhook"]
        assert not [
            r for r in world.service.deliveries(world.feed.case_id) if r.person["key"] == f"member:{fia}"
        ]
    finally:
        world.close()


def test_a_webhook_receiver_failing_for_a_while_gets_the_notice_when_it_recovers(
    tmp_path: Path, receiver: Receiver
) -> None:
    world, people, _ = webhook_world(tmp_path, receiver)
    try:
        receiver.status = 500
        world.feed.send(DAY, sip_decided(people, (people.housing, "Handla", date(2026, 4, 1))))
        event = world.feed.event_ids[-1]
        world.deliver()
        [hook] = [r for r in rows(world, event) if r.channel == "webhook"]
        assert (hook.status, hook.attempts) == ("pending", 1)
        assert hook.last_error is not None
        assert "webhook answered 500" in hook.last_error
        assert {r.status for r in rows(world, event) if r.channel == "email"} == {"sent"}

        receiver.status = 204
        world.clock.advance(seconds=9)
        assert world.deliver() == 0
        world.clock.advance(seconds=1)
        assert world.deliver() == 1
        again = world.store.delivery(hook.delivery_key)
        assert again is not None
        assert (again.status, again.attempts) == ("sent", 2)
        assert [r.verified for r in receiver.requests] == ["ok", "ok"]
        keys = {r.headers[webhooks.DELIVERY_HEADER] for r in receiver.requests}
        assert keys == {hook.delivery_key}  # the same delivery: a receiver can tell a retry
    finally:
        world.close()


# ------------------------------------------------------------------------------- language
def test_english_templates_give_english_messages(tmp_path: Path) -> None:
    world = World(tmp_path, language="en")
    try:
        people = group(world)
        reference = str(world.feed.case_id)[:8]
        assert {str(m["Subject"]) for m in world.mails()} == {f"You coordinate case {reference}"}
        invited = schedule(world, people, uuid4())
        world.feed.send(DAY, sip_decided(people, (people.psych, "Samtal", date(2026, 4, 1))))
        decided = world.feed.event_ids[-1]
        world.deliver()
        assert {str(m["Subject"]) for m in told(world, invited).values()} == {
            "Invitation: Resource group meeting 2026-03-12 at 10:00"
        }
        sip = told(world, decided)
        assert str(sip[PETRA]["Subject"]) == f"A new SIP was decided in case {reference}"
        assert "You are responsible for 1 action(s):\n- Samtal (due 2026-04-01)" in text_of(sip[PETRA])
        assert "You have no actions of your own in the plan." in text_of(sip[TOLVAN])
    finally:
        world.close()


# --------------------------------------------------------------------- an edited template
def test_an_edited_template_that_does_not_render_is_retried_not_lost(tmp_path: Path) -> None:
    edited = tmp_path / "templates" / "sv" / "coordinator_assigned.txt"
    edited.parent.mkdir(parents=True)
    edited.write_text("Subject: Ärende {{ case_reference }}\n\nHej {{ mottagare }}!\n")
    world = World(tmp_path, templates_dir=tmp_path / "templates")
    try:
        world.feed.open(DAY)
        world.feed.assign(DAY, "sara", SOCIAL)
        assert world.deliver() == 1  # no exception out of the sender
        [row] = world.service.deliveries(world.feed.case_id)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error is not None
        assert "cannot render 'coordinator_assigned'" in row.last_error
        assert "mottagare" in row.last_error
        # Other messages still go.
        world.feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT)
        event = world.meeting(
            me.MeetingReminderDue(meeting_id=uuid4(), starts_at=STARTS, days_before=2, sequence=0)
        )
        world.deliver()
        assert {r.address: r.status for r in rows(world, event)} == {TOLVAN: "sent", SARA: "sent"}

        edited.write_text("Subject: Ärende {{ case_reference }}\n\nHej {{ recipient }}!\n")
        later = edited.stat().st_mtime + 10
        os.utime(edited, (later, later))  # templates are re-read when their file changes
        world.clock.advance(seconds=10)
        assert world.deliver() == 1
        fixed = world.store.delivery(row.delivery_key)
        assert fixed is not None
        assert (fixed.status, fixed.attempts) == ("sent", 2)
        assert "Hej Samordnare sara!" in text_of(
            next(m for m in world.mails() if str(m["Message-ID"]) == row.message_id)
        )
    finally:
        world.close()
