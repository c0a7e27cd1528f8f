"""The projectors over in-memory read models: one code path for live projection and rebuild."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from services.projections.application.deliveries import DELIVERIES_CONSUMER, DeliveryProjector
from services.projections.application.projector import EventOfUnknownCase, Projector, batches
from services.projections.domain.events import NotificationRecord
from tests.domain import specs
from tests.unit.stories import Stream, story, tampered
from vss_contracts import notification_events as ne
from vss_contracts.chain import GENESIS_HASH, chain_hash

from .fakes import InMemoryReadModels

OTHER_CASE = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f02")


def test_each_event_moves_the_view_the_journal_and_the_position_together() -> None:
    models, stream = InMemoryReadModels(), Stream()
    records = stream.records(story(*specs.CONSENTED))
    projector = Projector(models)
    for record in records:
        assert projector.apply([record])
    view = models.overview(str(specs.CASE_ID))
    assert view is not None
    assert view["version"] == len(records) == len(models.journal(str(specs.CASE_ID), 0, 100))
    assert [c["user_id"] for c in view["coordinators"]] == [specs.ANNA.user_id, specs.ERIK.user_id]
    assert view["chain"]["verifies"]
    assert models.position().stream_sequence == records[-1].stream_sequence
    assert models.transactions == len(records)


def test_a_redelivered_event_is_not_applied_twice() -> None:
    models, stream = InMemoryReadModels(), Stream()
    records = stream.records(story(*specs.COORDINATED))
    projector = Projector(models)
    projector.apply(records)
    assert projector.apply(records[-1:]) is False  # its sequence is applied already
    republished = records[-1]._replace(stream_sequence=records[-1].stream_sequence + 1)
    assert projector.apply([republished])  # a copy the relay republished: only the position moves
    assert projector.applied == len(records)
    assert len(models.journal(str(specs.CASE_ID), 0, 100)) == len(records)
    assert models.position().stream_sequence == republished.stream_sequence


def test_an_event_of_a_case_never_opened_is_refused_live_and_skipped_in_a_rebuild() -> None:
    models, stream = InMemoryReadModels(), Stream()
    orphans = stream.records(story(*specs.COORDINATED, case_id=OTHER_CASE))[1:]
    with pytest.raises(EventOfUnknownCase):
        Projector(models).apply(orphans)
    assert models.views == {}
    assert models.position().stream_sequence == 0  # nothing of the transaction stays
    rebuild = Projector(models, skip_orphans=True)
    assert rebuild.apply(orphans)
    assert rebuild.orphans == len(orphans)


def test_a_break_in_the_hash_chain_is_recorded_in_the_view_and_the_journal() -> None:
    models, stream = InMemoryReadModels(), Stream()
    records = stream.records(story(*specs.CONSENTED))
    records[2] = tampered(records[2])
    projector = Projector(models)
    projector.apply(records)
    view = models.overview(str(specs.CASE_ID))
    assert view is not None
    assert (view["chain"]["verifies"], view["chain"]["broken_at"]) == (False, 3)
    assert view["chain"]["reason"] == "the event's content does not match its hash"
    assert [e["verified"] for e in models.journal(str(specs.CASE_ID), 0, 100)] == [True, True, False, True]
    assert projector.chain_breaks == 1


def test_a_rebuild_keeps_the_views_and_writes_them_once_at_the_end() -> None:
    live, rebuilt, stream = InMemoryReadModels(), InMemoryReadModels(), Stream()
    records = stream.records(story(*specs.WORKING)) + stream.records(
        story(*specs.CONSENTED, case_id=OTHER_CASE)
    )
    for record in records:
        Projector(live).apply([record])
    rebuild = Projector(rebuilt, keep_views=True)
    for batch in batches(records, 5):
        rebuild.apply(batch)
    assert rebuilt.views == {}  # not served before the end
    rebuild.flush()
    assert rebuilt.views == live.views
    assert rebuilt.derived == set(live.views)
    assert rebuilt.journal_rows == live.journal_rows
    assert rebuilt.position().stream_sequence == live.position().stream_sequence


def test_a_rebuild_keeping_fewer_views_than_cases_writes_the_others_out_and_reads_them_back() -> None:
    live, rebuilt, stream = InMemoryReadModels(), InMemoryReadModels(), Stream()
    first = stream.records(story(*specs.WORKING))
    second = stream.records(story(*specs.CONSENTED, case_id=OTHER_CASE))
    # The two cases' events interleaved, so that each batch changes both, in stream order.
    mixed = [e for pair in zip(first, second, strict=False) for e in pair]
    mixed += first[len(second) :] + second[len(first) :]
    # Redelivered copies (the first case's opening among them) after both were written out.
    mixed += [first[0], second[1], first[2]]
    records = [record._replace(stream_sequence=n) for n, record in enumerate(mixed, start=1)]
    for record in records:
        Projector(live).apply([record])
    rebuild = Projector(rebuilt, keep_views=True, kept_views=1)
    for batch in batches(records, 3):
        rebuild.apply(batch)
    assert rebuild.written_out > 0
    assert rebuild.read_back > 0
    assert rebuild.duplicates == 3  # recognised on views read back, not applied again
    assert len(rebuild.views or {}) == 1
    rebuild.flush()
    assert rebuilt.views == live.views
    assert rebuilt.derived == set(live.views)  # each case's other tables written once
    assert rebuilt.journal_rows == live.journal_rows
    assert rebuilt.position().stream_sequence == live.position().stream_sequence


def test_a_dead_lettered_event_is_passed_over_once() -> None:
    models = InMemoryReadModels()
    projector = Projector(models)
    projector.pass_over(7, "event-7")
    projector.pass_over(7, "event-7")
    assert models.position().stream_sequence == 7
    assert models.views == {}


def delivery_record(case_id: str, version: int, prev_hash: str) -> NotificationRecord:
    data = ne.NotificationSent(
        delivery_key=f"key-{version}",
        message_id=f"<key-{version}@vss.se>",
        cause_event_id=str(uuid4()),
        cause_event_type="se.vss.case.SipDecided.v1",
        template="sip_decided",
        recipient=ne.Recipient(recipient_id="member:1", name="Leila Haddad", role="professional"),
        channel=ne.DeliveryChannel.EMAIL,
        urgent=False,
        sent_at=datetime(2025, 3, 14, 8, 45, tzinfo=UTC),
        attempts=1,
    ).model_dump(mode="json")
    event_hash = chain_hash(
        case_id, version, ne.NotificationSent.TYPE, {"prev_hash": prev_hash, "data": data}
    )
    return NotificationRecord(
        case_id=case_id,
        version=version,
        type=ne.NotificationSent.TYPE,
        data=data,
        event_id=str(uuid4()),
        time="2025-03-14T08:45:00+00:00",
        stream_sequence=version,
        prev_hash=prev_hash,
        event_hash=event_hash,
        hash_ok=True,
    )


def test_the_delivery_record_is_applied_in_order_and_a_gap_in_its_chain_is_marked() -> None:
    models = InMemoryReadModels()
    projector = DeliveryProjector(models)
    case_id = str(specs.CASE_ID)
    first = delivery_record(case_id, 1, GENESIS_HASH)
    second = delivery_record(case_id, 2, first.event_hash)
    fourth = delivery_record(case_id, 4, second.event_hash)
    for record in (first, second, fourth):
        assert projector.apply([record], stream_sequence=record.stream_sequence, event_id=record.event_id)
    rows = models.deliveries(case_id, 0, 10)
    assert [(r["record_version"], r["verified"]) for r in rows] == [(1, True), (2, True), (4, False)]
    assert rows[0]["summary"] == "New SIP notice sent to Leila Haddad (professional) by e-mail"
    assert projector.apply([second], stream_sequence=2, event_id=second.event_id) is False
    assert projector.apply([second], stream_sequence=5, event_id=second.event_id)  # republished: skipped
    assert projector.duplicates == 1
    assert models.positions.position(DELIVERIES_CONSUMER) == 5
