"""The notifications store on both backends: the outbox, the record's chain, escalation,
acknowledgement and a redelivery, through the service with real SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, fields
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from services.notifications.application.ports import Decisions, NewDelivery
from services.notifications.application.service import CASE_CONSUMER, Organisation, outcomes_of_record
from services.notifications.domain.audience import Person, Role
from services.notifications.infrastructure.store import NotificationStore, StoreNotMigrated, migrate
from tests.meetings.feed import HOUSING, REGION_PSYCH, SOCIAL
from tests.notifications.support import DAY, START, World
from vss_contracts import case_events as ce
from vss_contracts.chain import GENESIS_HASH, chain_hash
from vss_contracts.notification_events import TYPE_PREFIX
from vss_contracts.types import MemberKind

DUTY = Person(
    key="duty:social", name="Jouren", role=Role.DUTY, organisation_id=SOCIAL.id, email="jour@example.se"
)


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> Iterator[World]:
    migrate(store_url)
    migrate(store_url)  # safe to repeat
    w = World(tmp_path, {SOCIAL.id: Organisation(duty=DUTY)}, store_url=store_url)
    yield w
    w.close()


def test_the_record_on_each_backend(world: World) -> None:
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT)
    feed.add_member(DAY, "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
    feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    feed.sip(DAY, 1, date(2026, 6, 1))
    feed.plan(
        DAY,
        ce.PlanContact(
            name="Bo Boendestöd", relation="boendestöd", phone="+46701234567", email="bo@example.se"
        ),
    )
    feed.trigger(DAY)
    assert world.deliver() > 0
    # A redelivered event is refused by the stored position and decides nothing.
    assert not world.service.apply(
        CASE_CONSUMER,
        case_id=feed.case_id,
        event_id="again",
        event_type=ce.CaseClosed.TYPE,
        recorded_at=START,
        data=ce.CaseClosed(closed_on=DAY, reason=ce.ClosingReason.OTHER),
        stream_sequence=feed.sequence[0],
    )
    # Nobody acknowledges: escalation once, at the configured time.
    world.clock.advance(timedelta(minutes=31))
    assert world.service.escalate_due() == 1
    assert world.service.escalate_due() == 0
    world.deliver()
    rows = world.service.deliveries(feed.case_id)
    assert {r.status for r in rows} == {"sent"}
    assert sorted(r.message_id for r in rows if r.channel == "email") == sorted(
        str(m["Message-ID"]) for m in world.mails()
    )
    assert any(r.template == "early_warning_escalation" and r.address == "jour@example.se" for r in rows)
    # Acknowledged once; a repeat changes nothing.
    urgent = next(r for r in rows if r.urgent and r.template == "early_warning")
    assert world.service.acknowledge(urgent.delivery_key) is not None
    # The record: positions in order, each case's chain unbroken, every type a notification's.
    log = world.store.read_log(0, 10_000)
    assert [e.position for e in log] == sorted(e.position for e in log)
    previous = GENESIS_HASH
    for version, event in enumerate(log, start=1):  # one case: one chain
        state = event.state
        assert event.version == version
        assert state["prev_hash"] == previous
        without = {k: v for k, v in state.items() if k != "hash"}
        assert state["hash"] == chain_hash(event.case_id, event.version, event.type, without)
        assert event.type.startswith(TYPE_PREFIX)
        previous = state["hash"]
    types = [e.type.removeprefix(TYPE_PREFIX).split(".")[0] for e in log]
    assert types.count("NotificationSent") == len(rows)
    assert types.count("NotificationEscalated") == 1
    summary = world.store.summary()
    assert summary["deliveries"] == {"sent": len(rows)}
    assert summary["positions"][CASE_CONSUMER] == feed.sequence[0]


@pytest.mark.postgres
def test_a_connection_the_server_ended_is_replaced_on_the_next_call(postgres_url: str) -> None:
    """A lost PostgreSQL connection (a server restart) fails no call: it is found dead at
    BEGIN, before anything of the caller's ran, and that call goes on on a new one."""
    migrate(postgres_url)
    store = NotificationStore(postgres_url)
    try:
        assert store.audience("no-such-case") is None
        [row] = store.read("SELECT pg_backend_pid() AS pid")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
        assert store.audience("no-such-case") is None
        [again] = store.read("SELECT pg_backend_pid() AS pid")
        assert again["pid"] != row["pid"]
        with store.transaction() as tx:  # a write too
            assert tx.rows("SELECT 1 AS one") == [{"one": 1}]
    finally:
        store.close()


def test_the_people_and_consent_are_kept_by_case_position_and_an_older_store_is_migrated(
    world: World, store_url: str
) -> None:
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, relatives=True)
    consented_at = feed.sequence[0]
    feed.worksheet(DAY)  # changes nobody's standing: nothing kept at its position
    feed.withdraw(DAY)
    store, case = world.store, str(feed.case_id)
    assert store.applied_log_position(CASE_CONSUMER) == feed.sequence[0]
    kept_at, state = store.audience_at(case, consented_at + 1) or (0, {})
    consented = sorted([SOCIAL.id, REGION_PSYCH.id, HOUSING.id])
    assert (kept_at, state["consent_orgs"]) == (consented_at, consented)
    assert "meetings" not in state
    withdrawn_at, state = store.audience_at(case, feed.sequence[0]) or (0, {})
    assert (withdrawn_at, state["consent_orgs"]) == (feed.sequence[0], None)
    assert store.audience_at(case, 0) is None

    # A store made before the history and the log position were kept: refused until migrated.
    with store.transaction() as tx:
        tx.execute("DROP TABLE audience_history")
        tx.execute("ALTER TABLE consumer_positions DROP COLUMN log_position")
    store.close()
    with pytest.raises(StoreNotMigrated, match="vss migrate"):
        store.check_migrated()
    migrate(store_url)
    store.check_migrated()
    assert store.applied_log_position(CASE_CONSUMER) == 0  # kept again from the next case event


def test_an_empty_store_takes_over_the_record_and_settles_what_it_decides_again_by_it(
    world: World,
) -> None:
    """What a rebuilt store does with the delivery record the bus holds (the bus side is in
    tests/notifications/test_bus.py): each adopted event keeps its position, new ones follow
    them, and a delivery decided again is settled as the record says, not sent again."""
    feed = world.feed
    feed.open(DAY)
    feed.assign(DAY, "sara", SOCIAL)
    feed.add_member(DAY, "Tolvan Tolvansson", MemberKind.CLIENT)
    feed.add_member(DAY, "Mamma Tolvansson", MemberKind.RELATIVE)
    feed.consent(DAY, SOCIAL, relatives=True)
    warning = feed.trigger(DAY)
    world.deliver()
    world.clock.advance(timedelta(minutes=31))
    assert world.service.escalate_due() == 1
    world.deliver()
    feed.withdraw(DAY)  # nothing pending any more: withdraws nothing
    feed.sip(DAY, 1, date(2026, 6, 1))  # decided, not sent before the store is moved away
    urgent = next(r for r in world.service.deliveries(feed.case_id) if r.template == "early_warning")
    world.service.acknowledge(urgent.delivery_key)
    store = world.store
    log = store.read_log(0, 10_000)
    rows = {r.delivery_key: r for r in store.deliveries_of_case(str(feed.case_id))}
    alert = store.read("SELECT * FROM alerts")
    audience = store.audience(str(feed.case_id)) or {}
    outcomes, alerts = outcomes_of_record((e.event_id, e.type, e.state["data"]) for e in log)

    # The store is moved away: an empty one takes the record over.
    with store.transaction() as tx:
        for table in ("deliveries", "alerts", "notification_log", "consumer_positions", "audiences"):
            tx.execute(f"DELETE FROM {table}")
    assert store.is_empty()
    store.adopt_record(log, outcomes, alerts)
    assert not store.is_empty()
    with pytest.raises(RuntimeError, match="only an empty"):
        store.adopt_record(log, outcomes, alerts)
    assert store.read_log(0, 10_000) == log

    # Decided again (the same keys): settled as the record says; what it lacks stays pending.
    again = [NewDelivery(**{f: getattr(r, f) for f in NEW_DELIVERY_FIELDS}) for r in rows.values()]
    store.record_decisions(
        Decisions(
            consumer=CASE_CONSUMER,
            stream_sequence=1,
            event_id="replayed",
            case_id=str(feed.case_id),
            at=log[-1].state["recorded_at"],
            audience=audience,
            deliveries=again,
            alert_opened=(str(warning), alert[0]["triggered_at"], alert[0]["escalate_at"]),
        )
    )
    rebuilt = {r.delivery_key: r for r in store.deliveries_of_case(str(feed.case_id))}
    assert {k: asdict(r) for k, r in rebuilt.items() if r.status != "pending"} == {
        k: {**asdict(r), "next_attempt_at": rebuilt[k].next_attempt_at}
        for k, r in rows.items()
        if r.status != "pending"
    }
    assert (
        {k for k, r in rebuilt.items() if r.status == "pending"}
        == {k for k, r in rows.items() if r.status == "pending"}
        != set()
    )
    # The acknowledgement is taken over, so the alert is not escalated again. (An escalation
    # is not taken over: an unacknowledged alert is escalated again, with the same keys.)
    [rebuilt_alert] = store.read("SELECT * FROM alerts")
    assert {**dict(rebuilt_alert), "escalated_at": alert[0]["escalated_at"]} == dict(alert[0])
    assert rebuilt_alert["escalated_at"] is None
    mails = len(world.mails())
    pending = {r.delivery_key for r in store.deliveries_of_case(str(feed.case_id)) if r.status == "pending"}
    assert world.service.escalate_due(world.clock.now() + timedelta(days=1)) == 0

    # A new record event continues the log after the adopted ones, and its case's chain.
    world.deliver()
    assert len(world.mails()) == mails + len(pending)  # only what had not gone yet
    after = store.read_log(log[-1].position, 100)
    assert after
    assert after[0].position == log[-1].position + 1
    assert after[0].state["prev_hash"] == log[-1].state["hash"]


NEW_DELIVERY_FIELDS = [f.name for f in fields(NewDelivery)]
