"""``NotificationsService`` over in-memory ports: decide, deliver, retry, cancel, escalate.

The domain decides who is told what (``test_decisions``); here is what the service makes
of it: one delivery per channel, stored with the position, sent once, retried with
backoff, cancelled when it may no longer go, and the record of each outcome.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from uuid import UUID, uuid4

from services.notifications.application.service import (
    CASE_CONSUMER,
    Organisation,
    PlanLinks,
    RetiredKey,
    Signer,
    Webhook,
)
from services.notifications.domain.audience import CASE_CLOSED, MEMBER_LEFT, NOT_COVERED, Person, Role
from services.shared.plan_links import LinkKind, coordinator_holder, member_holder, plan_link
from tests.meetings.feed import HOUSING, REGION_PSYCH, SOCIAL
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.meeting_events import Invitee, InviteeRole, MeetingKind
from vss_contracts.types import ClosingReason, MemberKind

from .world import DAY, START, Notifications

DUTY = Person(
    key=f"duty:{SOCIAL.id}",
    name="Socialjouren",
    role=Role.DUTY,
    organisation_id=SOCIAL.id,
    email="jour@example.se",
)


def with_group(world: Notifications) -> dict[str, UUID]:
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    return {
        "client": feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT),
        "housing": feed.add_member(DAY, "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING),
        "nurse": feed.add_member(DAY, "Nina Sköterska", MemberKind.PROFESSIONAL, REGION_PSYCH),
        "mother": feed.add_member(DAY, "Mamma Tolvansson", MemberKind.RELATIVE),
    }


def test_an_assigned_coordinator_is_told_once_by_mail_and_the_position_moves_with_it() -> None:
    world = Notifications()
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    [row] = world.rows()
    assert (row.template, row.channel, row.address, row.status) == (
        "coordinator_assigned",
        "email",
        "sara@example.se",
        "pending",
    )
    assert row.message_id == f"<{row.delivery_key}@vss.se>"
    assert world.store.applied_through(CASE_CONSUMER) == 2


def test_a_redelivered_event_decides_nothing_twice() -> None:
    world = Notifications()
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    again = world.service.apply(
        CASE_CONSUMER,
        case_id=world.case_id,
        event_id=world.feed.event_ids[-1],
        event_type=ce.CoordinatorAssigned.TYPE,
        recorded_at=START,
        data=ce.CaseClosed(closed_on=DAY, reason=ClosingReason.GOALS_ACHIEVED),
        stream_sequence=2,
    )
    assert again is False  # its sequence is applied already, whatever it carries
    assert len(world.rows()) == 1
    audience = world.store.audience(str(world.case_id))
    assert audience is not None
    assert audience["closed"] is False


def test_a_sip_reaches_the_group_the_consent_covers_and_nobody_else() -> None:
    world = Notifications()
    with_group(world)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, relatives=False)  # not the housing firm, not relatives
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    assert world.told("sip_decided") == {"Tolvan Tolvansson", "Nina Sköterska"}


def test_a_withdrawal_cancels_what_is_pending_for_those_no_longer_covered_on_the_record() -> None:
    world = Notifications()
    with_group(world)
    world.feed.consent(DAY)
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    assert "Bo Boendestöd" in world.told("sip_decided")
    world.feed.withdraw(DAY, HOUSING.id)
    by_name = {r.person["name"]: r for r in world.rows("sip_decided")}
    assert by_name["Bo Boendestöd"].status == "cancelled"
    assert by_name["Bo Boendestöd"].last_error == NOT_COVERED
    assert by_name["Nina Sköterska"].status == "pending"
    [failed] = world.store.records
    assert failed.payload["reason"] == NOT_COVERED
    assert failed.payload["delivery_key"] == by_name["Bo Boendestöd"].delivery_key
    world.deliver()
    assert "bo@example.se" not in {m.address for m in world.email.sent}


def test_a_member_who_left_or_a_closed_case_gets_nothing_still_pending() -> None:
    world = Notifications()
    members = with_group(world)
    world.feed.consent(DAY)
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    world.feed.remove_member(DAY, members["housing"])
    world.feed.close(DAY)
    reasons = {r.person["name"]: r.last_error for r in world.rows("sip_decided")}
    assert reasons["Bo Boendestöd"] == MEMBER_LEFT
    assert reasons["Nina Sköterska"] == CASE_CLOSED
    assert world.deliver() == 0


def test_delivery_renders_the_message_sends_it_once_and_records_it_sent() -> None:
    world = Notifications()
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    assert world.deliver() == 1
    [message] = world.email.sent
    assert message.address == "sara@example.se"
    assert message.subject == f"[{str(world.case_id)[:8]}] coordinator_assigned"
    assert message.headers["X-VSS-Delivery"] == message.delivery_key
    [row] = world.rows()
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, START.isoformat(timespec="microseconds"))
    assert world.store.record_types() == ["NotificationSent"]
    assert world.deliver() == 0  # nothing is sent twice


def test_a_temporary_failure_is_retried_with_backoff_until_it_gets_through() -> None:
    world = Notifications()
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    world.email.refuse_for_a_while(2)
    assert world.deliver() == 1
    [row] = world.rows()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "421 try again later")
    assert world.deliver() == 0  # not before its time
    world.clock.advance(seconds=10)
    world.deliver()
    assert world.rows()[0].attempts == 2
    world.clock.advance(seconds=19)
    assert world.deliver() == 0  # the second wait is twice the first
    world.clock.advance(seconds=1)
    world.deliver()
    [row] = world.rows()
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(world.email.sent) == 1
    assert world.service.counters.retried == 2


def test_a_permanent_failure_fails_at_once_and_the_last_temporary_one_gives_up() -> None:
    world = Notifications(max_attempts=2)
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    world.feed.assign(DAY, "per", REGION_PSYCH)
    world.email.refuse_for_good()
    world.email.refuse_for_a_while(2)
    world.deliver()
    world.clock.advance(seconds=10)
    world.deliver()
    statuses = sorted((r.status, r.attempts, r.last_error or "") for r in world.rows())
    assert statuses == [
        ("failed", 1, "550 no such mailbox"),
        ("failed", 2, "gave up after 2 attempts: 421 try again later"),
    ]
    assert world.store.record_types() == ["NotificationFailed", "NotificationFailed"]
    assert world.email.sent == []


def test_a_template_that_does_not_render_is_retried_not_lost() -> None:
    world = Notifications()
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    world.renderer.broken.add("coordinator_assigned")
    world.deliver()
    [row] = world.rows()
    assert row.status == "pending"
    assert row.last_error is not None
    assert "cannot render" in row.last_error
    world.renderer.broken.clear()
    world.clock.advance(seconds=10)
    world.deliver()
    assert world.rows()[0].status == "sent"


def test_what_is_pending_when_the_consent_ends_is_cancelled_when_its_turn_comes() -> None:
    world = Notifications()
    with_group(world)
    world.feed.consent(DAY, until=DAY)
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    world.clock.advance(days=1)  # the consent's last day has passed; no event says so
    world.deliver()
    sent_to = {m.address for m in world.email.sent}
    assert "bo@example.se" not in sent_to
    assert "tolvan@example.se" in sent_to  # the client is always told
    assert {r.last_error for r in world.rows("sip_decided") if r.status == "cancelled"} == {NOT_COVERED}


def test_an_early_warning_is_urgent_by_mail_and_sms_and_escalates_unless_acknowledged() -> None:
    world = Notifications({SOCIAL.id: Organisation(duty=DUTY)})
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    world.feed.consent(DAY)
    world.feed.plan(
        DAY, ce.PlanContact(name="Mamma", relation="mor", email="mamma@example.se", phone="0701234567")
    )
    world.feed.trigger(DAY)
    urgent = {(r.person["name"], r.channel) for r in world.rows("early_warning")}
    assert urgent == {("Mamma", "email"), ("Mamma", "sms"), ("Samordnare sara", "email")}
    world.deliver()
    assert any("ack_link" in m.body for m in world.email.sent)
    world.clock.advance(minutes=29)
    assert world.service.escalate_due() == 0
    world.clock.advance(minutes=1)
    assert world.service.escalate_due() == 1
    assert world.told("early_warning_escalation") == {"Socialjouren"}
    assert world.service.escalate_due() == 0  # once
    assert "NotificationEscalated" in world.store.record_types()


def test_an_acknowledged_warning_does_not_escalate() -> None:
    world = Notifications({SOCIAL.id: Organisation(duty=DUTY)})
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    world.feed.consent(DAY)
    world.feed.plan(DAY)
    world.feed.trigger(DAY)
    [row] = world.rows("early_warning")
    acknowledged = world.service.acknowledge(row.delivery_key)
    assert acknowledged is not None
    assert acknowledged.acknowledged_at is not None
    world.clock.advance(hours=1)
    assert world.service.escalate_due() == 0
    assert world.store.record_types() == ["NotificationAcknowledged"]
    assert world.service.acknowledge("no-such-delivery") is None


def test_a_claim_left_by_a_stopped_sender_is_released_or_cancelled_at_the_next_start() -> None:
    world = Notifications()
    members = with_group(world)
    world.feed.consent(DAY)
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    rows = {r.person["name"]: r for r in world.rows("sip_decided")}
    for row in rows.values():
        assert world.store.claim(row.delivery_key)  # the sender took them and stopped
    world.feed.remove_member(DAY, members["housing"])  # a claimed delivery is not cancelled by it
    assert world.rows("sip_decided")[0].status == "sending"
    assert world.service.recover_claims() == len(rows)
    after = {r.person["name"]: r for r in world.rows("sip_decided")}
    assert after["Bo Boendestöd"].status == "cancelled"
    assert after["Bo Boendestöd"].last_error is not None
    assert "may have left" in after["Bo Boendestöd"].last_error
    assert after["Nina Sköterska"].status == "pending"
    world.deliver()
    resent = {m.address: m.message_id for m in world.email.sent}
    assert resent["nina@example.se"] == rows["Nina Sköterska"].message_id  # the same Message-ID


def test_a_released_claim_cancelled_before_it_goes_again_says_it_may_have_left() -> None:
    """A claim released at start (it may still go) and then cancelled by an event its
    consumer had not applied before the stop: the record must not say it never left."""
    world = Notifications()
    members = with_group(world)
    world.feed.consent(DAY)
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    nina = next(r for r in world.rows("sip_decided") if r.person["name"] == "Nina Sköterska")
    assert world.store.claim(nina.delivery_key)  # the sender took it and stopped
    assert world.service.recover_claims() == len([nina])
    world.feed.remove_member(DAY, members["nurse"])  # applied after the start
    [after] = [r for r in world.rows("sip_decided") if r.delivery_key == nina.delivery_key]
    assert after.status == "cancelled"
    assert after.last_error is not None
    assert "may have left" in after.last_error
    assert any("may have left" in str(r.payload.get("reason")) for r in world.store.records)


def test_a_covered_members_organisation_with_a_webhook_gets_the_notice_signed_with_its_secret() -> None:
    world = Notifications(
        {REGION_PSYCH.id: Organisation(webhook=Webhook("https://psyk.example/hook", "s3cret"))}
    )
    with_group(world)
    world.feed.consent(DAY)
    world.feed.sip(DAY, 1, follow_up=date(2026, 6, 1))
    world.deliver()
    [hook] = world.webhook.sent
    assert (hook.address, hook.secret) == ("https://psyk.example/hook", "s3cret")
    assert hook.payload is not None
    recipient = hook.payload["recipient"]
    assert (recipient["name"], recipient["role"]) == ("Nina Sköterska", "professional")
    # A user id names a person only with its organisation: the receiver gets both.
    assert recipient["organisation_id"] == REGION_PSYCH.id
    assert set(recipient) == {"key", "name", "role", "organisation_id", "user_id"}


def test_a_meeting_invitation_carries_the_calendar_entry_with_only_the_covered_invitees() -> None:
    world = Notifications()
    with_group(world)
    world.feed.consent(DAY, SOCIAL)  # the region's nurse is not covered
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
            invitee_id="member:nurse",
            name="Nina",
            role=InviteeRole.PROFESSIONAL,
            organisation=REGION_PSYCH,
            email="nina@example.se",
        ),
    ]
    starts = datetime(2026, 3, 10, 9, 0, tzinfo=START.tzinfo)
    world.meeting(
        me.MeetingScheduled(
            meeting_id=uuid4(),
            kind=MeetingKind.RESOURCE_GROUP,
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
            invitees=invitees,
            reason="sip_follow_up",
        )
    )
    rows = world.rows("meeting_invitation")
    assert {r.address for r in rows} == {"tolvan@example.se", "sara@example.se"}
    for row in rows:
        assert row.calendar is not None
        assert row.calendar_method == "REQUEST"
        assert "nina@example.se" not in row.calendar
        assert "sara@example.se" in row.calendar


def test_an_acknowledgement_link_signed_with_the_previous_key_is_valid_for_the_overlap_only() -> None:
    now = [START]
    retired = RetiredKey(b"old-key", retired_at=START)
    signer = Signer(b"new-key", previous=retired, overlap=timedelta(hours=72), now=lambda: now[0])
    old = Signer(b"old-key").sign("delivery-1")
    assert signer.valid("delivery-1", signer.sign("delivery-1"))
    assert signer.valid("delivery-1", old)
    assert not signer.valid("delivery-2", old)
    now[0] = START + timedelta(hours=72)
    assert not signer.valid("delivery-1", old)
    assert not signer.valid("delivery-1", "ö-not-ascii")


def test_the_plan_message_carries_the_recipients_own_signed_link_made_when_sent() -> None:
    world = Notifications()
    key = b"p" * 32
    world.service.policy = replace(world.policy, plan_links=PlanLinks("https://vss.example.se", key))
    members = with_group(world)
    world.feed.consent(DAY)
    world.feed.plan(
        DAY, ce.PlanContact(name="Mamma", relation="mamma", phone="0701234567", member_id=members["mother"])
    )
    world.deliver()
    links = {m.address: m.body for m in world.email.sent}
    holder = member_holder(members["mother"])
    expected = plan_link("https://vss.example.se", key, world.case_id, holder, LinkKind.EARLY_WARNING_PLAN)
    assert f"plan_link: {expected}" in links["mamma@example.se"]
    sara = plan_link(
        "https://vss.example.se",
        key,
        world.case_id,
        coordinator_holder(SOCIAL.id, "sara"),
        LinkKind.EARLY_WARNING_PLAN,
    )
    assert f"plan_link: {sara}" in links["sara@example.se"]
    # The link is not stored with the delivery: only who it is for.
    assert all("plan_link" not in row.context for row in world.rows())


def test_an_audience_is_reused_only_while_the_stored_one_is_what_this_process_wrote() -> None:
    """The audience last written is kept for the case's next event, and read afresh when the
    stored document is no longer the one written (another process wrote it since)."""
    world = Notifications()
    ids = with_group(world)
    case = str(world.case_id)
    document, kept = world.service._audiences[case]
    assert document == world.store.audience(case)
    assert str(ids["nurse"]) in kept.members

    world.feed.add_member(DAY, "Ella Arbetsterapeut", MemberKind.PROFESSIONAL, REGION_PSYCH)
    assert world.service._audiences[case][1] is kept  # the same object, one event on
    assert len(kept.members) == 5

    # Another process records that the nurse left; this one's copy is outdated.
    stored = world.store.audience(case)
    assert stored is not None
    stored["members"] = [m for m in stored["members"] if m["key"] != f"member:{ids['nurse']}"]
    world.store.audiences[case] = stored
    world.feed.add_member(DAY, "Olle Kurator", MemberKind.PROFESSIONAL, HOUSING)
    document, fresh = world.service._audiences[case]
    assert fresh is not kept
    assert str(ids["nurse"]) not in fresh.members
    assert document == world.store.audience(case)
