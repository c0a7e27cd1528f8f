"""The notifications store on both backends: the outbox, the record's chain, escalation,
acknowledgement and a redelivery, through the service with real SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from services.notifications.application.service import CASE_CONSUMER, Organisation
from services.notifications.domain.audience import Person, Role
from services.notifications.infrastructure.store import NotificationStore, migrate
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
