"""What the delivery record says became of each delivery and alert (a rebuilt store takes
it over instead of sending again): read from real record events the service wrote."""

from __future__ import annotations

from datetime import timedelta

from services.notifications.application.ports import AdoptedAlert, AdoptedOutcome
from services.notifications.application.service import Organisation, outcomes_of_record
from services.notifications.domain.audience import NOT_COVERED
from tests.meetings.feed import HOUSING, SOCIAL

from .test_notifications_service import DUTY, with_group
from .world import DAY, Notifications


def test_each_outcome_and_each_alert_is_read_from_the_record_the_service_wrote() -> None:
    world = Notifications({SOCIAL.id: Organisation(duty=DUTY)}, max_attempts=2)
    members = with_group(world)
    world.feed.consent(DAY, SOCIAL, HOUSING, relatives=True)
    warning = world.feed.trigger(DAY)
    world.email.refuse_for_a_while(1)  # the first e-mail attempts fail once, then go
    world.deliver()
    world.clock.advance(timedelta(minutes=1))
    world.deliver()
    world.clock.advance(timedelta(minutes=30))
    assert world.service.escalate_due() == 1
    world.email.refuse_for_good()
    world.deliver()  # the duty contact's e-mail fails for good
    world.feed.remove_member(DAY, members["mother"])  # nothing of hers pending: nothing withdrawn
    world.feed.sip(DAY, 1, DAY + timedelta(days=90))
    world.feed.withdraw(DAY)  # the SIP's messages to those it no longer covers are withdrawn
    urgent = [r for r in world.rows("early_warning") if r.channel == "email"]
    for row in urgent:
        world.service.acknowledge(row.delivery_key)
    records = [(r.event_id, r.type, r.payload) for r in world.store.records]

    outcomes, alerts = outcomes_of_record(records)

    by_key = {o.delivery_key: o for o in outcomes}
    rows = {r.delivery_key: r for r in world.service.deliveries(world.case_id)}
    for key, outcome in by_key.items():
        row = rows.get(key)
        if row is None:  # the escalation's deliveries are the duty contact's, of no case row here
            continue
        assert outcome == AdoptedOutcome(
            key, row.status, row.attempts, row.last_error, row.sent_at, row.acknowledged_at
        ), row
    statuses = {o.status for o in by_key.values()}
    assert statuses == {"sent", "failed", "cancelled"}
    assert {o.last_error for o in by_key.values() if o.status == "cancelled"} == {NOT_COVERED}
    # Pending deliveries have no record: nothing to take over, they go when rebuilt.
    assert {k for k, r in rows.items() if r.status == "pending"}.isdisjoint(by_key)
    first = urgent[0]
    assert alerts == [
        AdoptedAlert(
            str(warning),
            escalated_at=world.store.alerts[str(warning)].escalated_at,
            acknowledged_at=rows[first.delivery_key].acknowledged_at,
            acknowledged_by=first.delivery_key,  # the first acknowledgement counts
        )
    ]
