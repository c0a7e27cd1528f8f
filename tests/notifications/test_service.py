"""The notifications service end to end below the bus: case events in, real SMTP out.

Each test runs the real store (SQLite), the real SMTP channel and a real SMTP server
(the embedded mail sink, started by the test on a free port, keeping each message as a
file), driven by an injected clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.notifications.application.ports import DeliveryRow
from services.notifications.application.service import (
    CASE_CONSUMER,
    DECIDED_BY_A_LATER_VERSION,
    Organisation,
    causes_of_record,
    outcomes_of_record,
)
from services.notifications.domain import decisions
from services.notifications.domain.audience import (
    CASE_CLOSED,
    MEMBER_LEFT,
    NOT_COVERED,
    Audience,
    Person,
    Role,
)
from tests.meetings.feed import HOUSING, REGION_PSYCH, SOCIAL, CaseFeed
from tests.notifications.support import DAY, START, World
from vss_contracts import case_events as ce
from vss_contracts import notification_events as ne
from vss_contracts.types import ContactDetails, Coordinator, MemberKind


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _group(feed: CaseFeed) -> dict[str, UUID]:
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.assign(DAY, "per", REGION_PSYCH)
    return {
        "client": feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT),
        "housing": feed.add_member(DAY, "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING),
        "mother": feed.add_member(DAY, "Mamma Tolvansson", MemberKind.RELATIVE),
    }


def _sip_rows(world: World) -> dict[str, DeliveryRow]:
    """The case's SIP notices, by recipient name."""
    return {
        r.person["name"]: r
        for r in world.service.deliveries(world.feed.case_id)
        if r.template == "sip_decided"
    }


def test_coordinator_assigned_tells_that_coordinator_only(world: World) -> None:
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    assert world.deliver() == 1
    (mail,) = world.mails()
    assert "sara@example.se" in str(mail["To"])
    assert str(mail["Subject"]).startswith("Du är samordnare i ärende ")
    # No health details: the case reference and a link, not the client's name.
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Tolvan" not in text
    assert str(world.feed.case_id)[:8] in text


def test_sip_reaches_the_resource_group_the_consent_covers_and_nobody_else(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, relatives=False)  # not the housing firm, no relatives
    world.feed.sip(DAY, 1, date(2026, 6, 1))
    world.deliver()
    sip_mails = [m for m in world.mails() if "SIP" in str(m["Subject"])]
    # The client; not the housing firm (not covered), not the mother (relatives not covered).
    assert [str(m["To"]).split("<")[-1].rstrip(">") for m in sip_mails] == ["tolvan@example.se"]
    rows = world.service.deliveries(world.feed.case_id)
    assert [r.person["name"] for r in rows if r.template == "sip_decided"] == ["Tolvan Tolvansson"]


def test_a_redelivered_event_sends_nothing_twice_and_the_record_matches_the_mails(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    world.feed.sip(DAY, 1, date(2026, 6, 1))
    world.deliver()
    sent = len(world.mails())
    # Every event again, with its sequence: the consumer position refuses them all.
    for sequence in range(1, world.feed.sequence[0] + 1):
        assert not world.service.apply(
            CASE_CONSUMER,
            case_id=world.feed.case_id,
            event_id=f"again-{sequence}",
            event_type="x",
            recorded_at=START,
            data=ce.CaseClosed(closed_on=DAY, reason=ce.ClosingReason.OTHER),
            stream_sequence=sequence,
        )
    assert world.deliver() == 0
    assert len(world.mails()) == sent
    rows = world.service.deliveries(world.feed.case_id)
    assert sorted(r.message_id for r in rows if r.status == "sent") == sorted(
        str(m["Message-ID"]) for m in world.mails()
    )


def test_a_withdrawal_cancels_what_is_pending_for_those_no_longer_covered(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    world.feed.sip(DAY, 1, date(2026, 6, 1))  # decided, not yet delivered
    world.feed.withdraw(DAY, HOUSING.id)
    world.deliver()
    rows = _sip_rows(world)
    assert rows["Bo Boendestöd"].status == "cancelled"
    assert rows["Mamma Tolvansson"].status == "sent"
    assert "bo@example.se" not in world.recipients()


def test_a_consent_past_its_end_lets_no_message_go_to_those_it_covered(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True, until=DAY)
    world.clock.advance(hours=14)  # 23:00 in Stockholm: the consent's last day, still in force
    world.feed.sip(DAY, 1, date(2026, 6, 1))
    world.deliver()
    world.clock.advance(hours=1)  # midnight in Stockholm (23:00 UTC): it has ended, no event says so
    # Recorded on the consent's last day and consumed after it: decided by the consent on the
    # event's day (as a replay would decide it), and withdrawn, on the record, when it would leave.
    world.feed.sip(DAY, 2, date(2026, 6, 1))
    world.deliver()
    rows = [r for r in world.service.deliveries(world.feed.case_id) if r.template == "sip_decided"]
    outcome = {(r.context["sip_version"], r.person["name"]): (r.status, r.last_error) for r in rows}
    assert outcome == {
        (1, "Tolvan Tolvansson"): ("sent", None),
        (1, "Bo Boendestöd"): ("sent", None),
        (1, "Mamma Tolvansson"): ("sent", None),
        (2, "Tolvan Tolvansson"): ("sent", None),
        (2, "Bo Boendestöd"): ("cancelled", NOT_COVERED),
        (2, "Mamma Tolvansson"): ("cancelled", NOT_COVERED),
    }


def test_a_sip_renewing_the_consent_moves_its_end(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True, until=DAY)
    world.feed.sip(DAY, 1, date(2026, 6, 1))
    world.feed.renew(DAY, 1, DAY + timedelta(days=30))
    world.deliver()
    world.clock.advance(days=1)  # past the first end, within the renewed one
    world.feed.sip(DAY, 2, date(2026, 6, 1))
    world.deliver()
    told = [
        r.person["name"] for r in world.service.deliveries(world.feed.case_id) if r.template == "sip_decided"
    ]
    assert told.count("Bo Boendestöd") == 2


def test_what_is_pending_when_the_consent_ends_is_cancelled_when_its_turn_comes(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True, until=DAY)
    world.feed.sip(DAY, 1, date(2026, 6, 1))  # decided while the consent is in force, not yet sent
    world.clock.advance(days=1)
    world.deliver()
    rows = _sip_rows(world)
    assert (rows["Bo Boendestöd"].status, rows["Bo Boendestöd"].last_error) == ("cancelled", NOT_COVERED)
    assert (rows["Mamma Tolvansson"].status, rows["Mamma Tolvansson"].last_error) == (
        "cancelled",
        NOT_COVERED,
    )
    assert rows["Tolvan Tolvansson"].status == "sent"
    assert "bo@example.se" not in world.recipients()
    assert "mamma@example.se" not in world.recipients()


def test_the_stored_audience_keeps_the_end_date_and_state_stored_without_it_still_loads() -> None:
    audience = Audience(case_id=uuid4(), consent_orgs={HOUSING.id}, consent_valid_until=DAY)
    housing = Person(key="member:x", name="Bo", role=Role.PROFESSIONAL, organisation_id=HOUSING.id)
    again = Audience.from_json(audience.to_json())
    assert again.consent_valid_until == DAY
    assert not again.covered(housing, DAY + timedelta(days=1))
    old = audience.to_json()
    del old["consent_valid_until"]  # as stored before the end date was kept
    assert Audience.from_json(old).covered(housing, DAY + timedelta(days=1))  # open-ended, as then


def test_a_message_decided_before_a_member_left_or_the_case_closed_is_not_sent_one_after_may_be() -> None:
    bo = Person(key="member:bo", name="Bo", role=Role.PROFESSIONAL, organisation_id=HOUSING.id)
    audience = Audience(case_id=uuid4(), consent_orgs={HOUSING.id})
    audience.left["bo"] = START
    before, after = START - timedelta(minutes=1), START + timedelta(minutes=1)
    assert audience.why_not_told(bo, before, DAY) == MEMBER_LEFT
    assert audience.why_not_told(bo, START, DAY) == MEMBER_LEFT  # the same instant: not after
    assert audience.why_not_told(bo, after, DAY) is None  # e.g. the meeting's cancellation
    audience.closed, audience.closed_at = True, after
    assert audience.why_not_told(bo, after, DAY) == CASE_CLOSED
    assert audience.why_not_told(bo, after + timedelta(minutes=1), DAY) is None
    audience.consent_orgs = set()
    assert audience.why_not_told(bo, after + timedelta(minutes=1), DAY) == NOT_COVERED
    again = Audience.from_json(audience.to_json())
    assert (again.left, again.closed_at) == ({"bo": START}, after)
    # Stored before these times were kept: left or closed before anything was decided.
    old = audience.to_json()
    del old["left"], old["closed_at"]
    assert Audience.from_json(old).why_not_told(bo, after + timedelta(days=1), DAY) == CASE_CLOSED
    old["closed"] = False
    assert Audience.from_json(old).why_not_told(bo, after + timedelta(days=1), DAY) == MEMBER_LEFT


def test_a_member_who_left_gets_nothing_still_pending_for_them(world: World) -> None:
    group = _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    world.feed.sip(DAY, 1, date(2026, 6, 1))  # decided, not yet delivered
    world.feed.remove_member(DAY, group["housing"])
    world.deliver()
    rows = _sip_rows(world)
    assert (rows["Bo Boendestöd"].status, rows["Bo Boendestöd"].last_error) == ("cancelled", MEMBER_LEFT)
    assert rows["Mamma Tolvansson"].status == "sent"
    assert "bo@example.se" not in world.recipients()


def test_closing_the_case_cancels_what_is_still_pending(world: World) -> None:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    world.feed.sip(DAY, 1, date(2026, 6, 1))  # decided, not yet delivered
    world.feed.close(DAY + timedelta(days=1))
    world.deliver()
    rows = [r for r in world.service.deliveries(world.feed.case_id) if r.template == "sip_decided"]
    assert rows
    assert {(r.status, r.last_error) for r in rows} == {("cancelled", CASE_CLOSED)}
    assert not [m for m in world.mails() if "SIP" in str(m["Subject"])]


def _warning_world(world: World) -> UUID:
    _group(world.feed)
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    world.feed.plan(
        DAY,
        ce.PlanContact(
            name="Mamma Tolvansson", relation="mamma", phone="+46701234567", email="mamma@example.se"
        ),
    )
    world.deliver()
    return world.feed.trigger(DAY)


def test_early_warning_is_urgent_to_the_plan_and_the_coordinators_and_escalates_unacknowledged(
    tmp_path: Path,
) -> None:
    duty = Person(
        key="duty:goteborg-soc",
        name="Socialjouren",
        role=Role.DUTY,
        organisation_id=SOCIAL.id,
        email="jour@example.se",
    )
    world = World(tmp_path, {SOCIAL.id: Organisation(duty=duty)})
    try:
        _warning_world(world)
        world.deliver()
        urgent = [r for r in world.service.deliveries(world.feed.case_id) if r.urgent]
        assert {(r.person["name"], r.channel) for r in urgent} == {
            ("Mamma Tolvansson", "email"),
            ("Mamma Tolvansson", "sms"),
            ("Samordnare sara", "email"),
            ("Samordnare per", "email"),
        }
        assert all(r.status == "sent" for r in urgent)
        assert (tmp_path / "sms").exists()
        # 29 minutes: nothing; 30: the duty contact of the coordinators' organisations.
        world.clock.advance(timedelta(minutes=29))
        assert world.service.escalate_due() == 0
        world.clock.advance(timedelta(minutes=1))
        assert world.service.escalate_due() == 1
        world.deliver()
        assert "jour@example.se" in world.recipients()
        world.clock.advance(timedelta(days=1))
        assert world.service.escalate_due() == 0  # once
    finally:
        world.close()


def test_an_acknowledged_warning_does_not_escalate(tmp_path: Path) -> None:
    duty = Person(
        key="duty:goteborg-soc",
        name="Socialjouren",
        role=Role.DUTY,
        organisation_id=SOCIAL.id,
        email="jour@example.se",
    )
    world = World(tmp_path, {SOCIAL.id: Organisation(duty=duty)})
    try:
        _warning_world(world)
        world.deliver()
        first = next(r for r in world.service.deliveries(world.feed.case_id) if r.urgent)
        assert world.service.signer.valid(first.delivery_key, world.service.signer.sign(first.delivery_key))
        acknowledged = world.service.acknowledge(first.delivery_key)
        assert acknowledged is not None
        assert acknowledged.acknowledged_at is not None
        world.clock.advance(timedelta(hours=1))
        assert world.service.escalate_due() == 0
        world.deliver()
        assert "jour@example.se" not in world.recipients()
    finally:
        world.close()


def test_a_crash_between_the_servers_acceptance_and_the_record_resends_a_recognisable_copy(
    world: World,
) -> None:
    """The one case that cannot be exactly once (ADR 0007): the copy has the same Message-ID."""
    world.feed.open(DAY)
    world.feed.assign(DAY, "sara", SOCIAL)
    store = world.store
    finish, release = store.finish, store.release

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("the process died before the outcome was stored")

    store.finish = store.release = crash  # type: ignore[method-assign]
    assert world.deliver() == 1
    store.finish, store.release = finish, release  # type: ignore[method-assign]
    [row] = world.service.deliveries(world.feed.case_id)
    assert row.status == "sending"  # claimed; the record does not know the server has it
    assert world.deliver() == 0  # a claimed delivery is not taken again while claimed
    assert world.service.recover_claims() == 1  # at the restart: released
    assert world.deliver() == 1  # and sent again
    first, second = world.mails()
    assert first["Message-ID"] == second["Message-ID"] == row.message_id
    assert first["X-VSS-Delivery"] == second["X-VSS-Delivery"]
    [row] = world.service.deliveries(world.feed.case_id)
    assert (row.status, row.attempts) == ("sent", 1)


def test_a_coordinator_is_matched_to_a_member_by_organisation_and_user_id_not_user_id_alone(
    world: World,
) -> None:
    """The region's coordinator anna.k has no e-mail on her assignment; a municipality
    professional, also anna.k, is a member with one: she is someone else, and gets none of
    the coordinator's messages (an urgent early warning with its acknowledgement link)."""
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.send(
        DAY,
        ce.CoordinatorAssigned(
            coordinator=Coordinator(
                user_id="anna.k",
                name="Anna Karlsson",
                organisation=REGION_PSYCH,
                contact=ContactDetails(),
            ),
            assigned_on=DAY,
        ),
    )
    feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT)
    feed.send(
        DAY,
        ce.ResourceGroupMemberAdded(
            member=ce.ResourceGroupMember(
                member_id=uuid4(),
                kind=MemberKind.PROFESSIONAL,
                name="Anna Kommunsson",
                organisation=SOCIAL,
                user_id="anna.k",
                contact=ContactDetails(email="anna.kommun@example.se"),
            ),
            added_on=DAY,
        ),
    )
    feed.consent(DAY, SOCIAL, REGION_PSYCH, relatives=False)
    world.deliver()
    feed.trigger(DAY)
    world.deliver()
    urgent = [r for r in world.service.deliveries(feed.case_id) if r.urgent]
    assert {(r.person["name"], r.address) for r in urgent} == {("Samordnare sara", "sara@example.se")}
    assert "anna.kommun@example.se" not in world.recipients()
    # The other way round: her membership borrows no coordinator's address either.
    audience = Audience.from_json(world.store.audience(str(feed.case_id)) or {})
    [anna] = [p for p in audience.resource_group() if p.user_id == "anna.k"]
    assert (anna.organisation_id, anna.email) == (SOCIAL.id, "anna.kommun@example.se")
    [coordinator] = [p for p in audience.coordinator_people() if p.user_id == "anna.k"]
    assert coordinator.email is None


class _Recording:
    """The feed's adapter, keeping each event it applies so that another store can replay the
    same history (the case stream, as a rebuilt store reads it)."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.calls: list[dict[str, Any]] = []

    def apply_case_event(self, **event: Any) -> bool:
        self.calls.append(event)
        return bool(self.adapter.apply_case_event(**event))


def test_a_store_rebuilt_after_a_rule_change_sends_nothing_new_for_history_the_record_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADR 0007 decisions 8 and 10: a rebuilt store replays what the live run decided. A rule
    added since (here: every coordinator gets the plan's message) must not send, for events the
    adopted record's history had passed, messages the version then never decided: those are
    settled as not sent, on the record. A plan update after the rebuild follows the new rule."""
    (tmp_path / "live").mkdir()
    (tmp_path / "rebuilt").mkdir()
    live = World(tmp_path / "live")
    rebuilt = World(tmp_path / "rebuilt")
    try:
        recording = _Recording(live.feed.service)
        feed = CaseFeed(recording, case_id=live.feed.case_id)  # type: ignore[arg-type]
        feed.open(DAY)
        feed.assign(DAY, "sara", SOCIAL)
        feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT)
        feed.consent(DAY, SOCIAL, relatives=True)
        neighbour = ce.PlanContact(
            name="Göran Granne", relation="granne", phone="0701234567", email="goran@example.se"
        )
        with monkeypatch.context() as before:  # the version before: only those the plan names
            before.setattr(decisions, "same_person", lambda one, other: True)
            feed.plan(DAY, neighbour)
        live.deliver()
        plan_mails = {(r.address, r.status) for r in live.service.deliveries(feed.case_id) if _is_plan(r)}
        assert plan_mails == {("goran@example.se", "sent")}

        # The store is rebuilt by the version with the new rule: it adopts the record (with
        # how far the case stream's history had gone in it), then replays the case stream.
        log = live.store.read_log(0, 10_000)
        record = [(e.event_id, e.type, e.state["data"]) for e in log]
        outcomes, alerts = outcomes_of_record(record)
        positions = {str(call["event_id"]): int(call["log_position"]) for call in recording.calls}
        reached = max(positions[cause] for cause in causes_of_record(record))
        assert reached == positions[feed.event_ids[-1]]  # the plan update
        rebuilt.store.adopt_record(log, outcomes, alerts, {CASE_CONSUMER: reached})
        for event in recording.calls:
            assert rebuilt.feed.service.apply_case_event(**event)
        rebuilt.deliver()
        assert rebuilt.mails() == []  # nothing again, and nothing new about the old plan
        coordinators = [
            r for r in rebuilt.service.deliveries(feed.case_id) if _is_plan(r) and "sara" in r.address
        ]
        assert [(r.status, r.last_error) for r in coordinators] == [("cancelled", DECIDED_BY_A_LATER_VERSION)]
        [settled] = [
            e for e in rebuilt.store.read_log(0, 10_000) if e.event_id not in {e.event_id for e in log}
        ]
        assert settled.type == ne.NotificationFailed.TYPE
        assert settled.state["data"]["reason"] == DECIDED_BY_A_LATER_VERSION
        assert settled.state["data"]["delivery_key"] == coordinators[0].delivery_key

        # Live again, after the rebuild: a new plan version reaches the coordinator too.
        after = CaseFeed(rebuilt.feed.service, case_id=feed.case_id, sequence=feed.sequence)
        after.plan(DAY, neighbour)
        rebuilt.deliver()
        assert sorted(rebuilt.recipients()) == ["goran@example.se", "sara@example.se"]
    finally:
        live.close()
        rebuilt.close()


def _is_plan(row: DeliveryRow) -> bool:
    return row.template == "early_warning_plan_updated"
