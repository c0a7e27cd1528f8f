"""The delivery record in a case's journal: stream VSS_NOTIFICATIONS -> projector -> query API.

The notification events are built as the notifications service stores them (each case's
record hash-chained, the case events' state layout) and published as its relay does
(the shared CloudEvent body, ``Nats-Msg-Id`` = event id, subject
``<prefix>.notifications.<case id>.<EventName>``) to a stream of the test's own on the
real NATS server; the projector's second durable consumer applies them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.infrastructure.store import CaseEventStore
from services.projections.application.deliveries import DELIVERIES_CONSUMER
from services.projections.bootstrap import bootstrap_query_api
from services.projections.domain import deliveries as domain
from services.projections.domain.events import NotificationRecord
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import rebuild
from services.projections.settings import ProjectionsSettings
from services.shared.bus import outbox
from services.shared.bus.consumer import Delivery
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, declare_if_missing
from services.shared.settings import AuthSettings
from tests.projections.conftest import History, ProjectorThread
from tests.projections.test_query_api import (
    JWT_KEY,
    MUNICIPALITY,
    REGION,
    STRANGER,
    Pipeline,
    open_shared_case,
)
from tests.support.bus import read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.nats import delete_streams
from vss_contracts import notification_events as ne
from vss_contracts.chain import GENESIS_HASH, chain_hash
from vss_contracts.envelope import CloudEvent
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

ANNA = ne.Recipient(
    recipient_id=f"coordinator:{REGION.user_id}",
    name="Anna Lindqvist",
    role="coordinator",
    organisation_id=REGION.organisation_id,
    user_id=REGION.user_id,
)
ERIK = ne.Recipient(
    recipient_id=f"coordinator:{MUNICIPALITY.user_id}",
    name="Erik Sjöberg",
    role="coordinator",
    organisation_id=MUNICIPALITY.organisation_id,
    user_id=MUNICIPALITY.user_id,
)
CLIENT = ne.Recipient(recipient_id="member:11111111", name="Tolvan Tolvansson", role="client")


# ------------------------------------------------------------------------ the delivery record
def sent(
    recipient: ne.Recipient, template: str, channel: str, at: datetime, **extra: Any
) -> ne.NotificationSent:
    return ne.NotificationSent(
        delivery_key=f"{template}:{recipient.recipient_id}:{channel}:{at.isoformat()}",
        message_id=f"<{uuid.uuid4()}@vss.example.se>",
        cause_event_id=str(uuid.uuid4()),
        cause_event_type="se.vss.meetings.MeetingScheduled.v1",
        template=template,
        recipient=recipient,
        channel=ne.DeliveryChannel(channel),
        attempts=extra.pop("attempts", 1),
        sent_at=at,
        **extra,
    )


def failed(
    recipient: ne.Recipient, template: str, channel: str, at: datetime, reason: str
) -> ne.NotificationFailed:
    return ne.NotificationFailed(
        delivery_key=f"{template}:{recipient.recipient_id}:{channel}",
        message_id="-",
        cause_event_id=str(uuid.uuid4()),
        cause_event_type="se.vss.case.SipDecided.v1",
        template=template,
        recipient=recipient,
        channel=ne.DeliveryChannel(channel),
        attempts=3,
        failed_at=at,
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: bytes
    headers: dict[str, str]
    case_id: str
    version: int


class DeliveryFeed:
    """Each case's delivery record as the notifications service keeps it, as its relay publishes it."""

    def __init__(self, nats_url: str, names: BusNames) -> None:
        self.nats_url = nats_url
        self.names = names
        self.heads: dict[str, tuple[int, str]] = {}
        self.position = 0

    def event(self, case_id: str, payload: ne.NotificationEventData, *, edited: bool = False) -> Message:
        version, previous = self.heads.get(case_id, (0, GENESIS_HASH))
        version += 1
        self.position += 1
        event_id = str(uuid.uuid4())
        data = payload.model_dump(mode="json")
        recorded = next(
            (
                getattr(payload, f)
                for f in ("sent_at", "failed_at", "acknowledged_at", "escalated_at")
                if hasattr(payload, f)
            ),
            T0,
        )
        state: dict[str, Any] = {
            "event_id": event_id,
            "recorded_at": recorded.isoformat(),
            "actor_id": "vss-notifications",
            "actor_organisation": "vss",
            "principal": "other",
            "correlation_id": data.get("cause_event_id") or event_id,
            "causation_id": data.get("cause_event_id"),
            "prev_hash": previous,
            "data": data,
        }
        state["hash"] = chain_hash(case_id, version, payload.TYPE, state)
        self.heads[case_id] = (version, state["hash"])
        body = outbox.cloud_event_body(
            source=ne.NOTIFICATION_EVENT_SOURCE,
            type_name=payload.TYPE,
            case_id=case_id,
            version=version,
            position=self.position,
            state=state,
        )
        if edited:  # changed after it was stored: its hash no longer recomputes
            body["data"] = {**data, "template": "edited"}
        return Message(
            subject=self.names.subject(case_id, payload.event_name()),
            body=orjson.dumps(body, option=orjson.OPT_UTC_Z),
            headers={
                HEADER_MSG_ID: event_id,
                HEADER_EVENT_TYPE: payload.TYPE,
                HEADER_LOG_POSITION: str(self.position),
            },
            case_id=case_id,
            version=version,
        )

    def publish(self, messages: Sequence[Message], *, msg_id_suffix: str = "") -> list[int]:
        """Publish (declaring the stream as the notifications relay does); the stream sequences."""

        async def run() -> list[int]:
            nc = await nats.connect(self.nats_url)
            try:
                js = nc.jetstream()
                await declare_if_missing(js, case_stream_config(self.names))
                sequences = []
                for m in messages:
                    headers = {**m.headers, HEADER_MSG_ID: m.headers[HEADER_MSG_ID] + msg_id_suffix}
                    ack = await js.publish(m.subject, m.body, headers=headers, timeout=5)
                    sequences.append(int(ack.seq))
                return sequences
            finally:
                await nc.close()

        return asyncio.run(run())


@pytest.fixture
def notification_names(bus_names: BusNames, nats_url: str) -> Iterator[BusNames]:
    """This test's VSS_NOTIFICATIONS (sharing its dead-letter stream), deleted afterwards."""
    prefix = bus_names.stream.split("_")[0] + "_"
    names = ProjectionsSettings(
        notifications_stream_prefix=prefix,
        bus_dead_letter_stream=bus_names.dead_letter_stream,
        bus_dead_letter_prefix=bus_names.dead_letter_prefix,
    ).notification_names()
    assert names == bus_names.sibling(ne.NOTIFICATION_STREAM, ne.NOTIFICATION_SUBJECT_PREFIX, prefix)
    assert names.stream.endswith("_VSS_NOTIFICATIONS")
    yield names
    asyncio.run(delete_streams(nats_url, [names.stream]))


def _models(location: ReadModelLocation) -> ReadModels:
    generation = location.current()
    assert generation is not None
    return ReadModels(location.connect(generation))


# --------------------------------------------------------------------------------- the API
@dataclass
class DeliveryPipeline:
    api: Pipeline
    projector: ProjectorThread
    feed: DeliveryFeed


@pytest.fixture
def pipeline(
    tmp_path: Path,
    store: CaseEventStore,
    service: CaseService,
    clock: FixedClock,
    run_relay,  # type: ignore[no-untyped-def]
    nats_url: str,
    bus_names: BusNames,
    notification_names: BusNames,
) -> Iterator[DeliveryPipeline]:
    location = ReadModelLocation(f"sqlite:///{tmp_path}/readmodels")
    tag = bus_names.stream.split("_")[0]
    settings = ProjectionsSettings(
        data_dir=tmp_path,
        read_model_url=f"sqlite:///{tmp_path}/readmodels",
        access_log_url=f"sqlite:///{tmp_path}/access.sqlite",
        nats_url=nats_url,
        access_stream=f"{tag}_ACCESS",
        access_subject_prefix=f"{tag.lower()}.vss.access",
        query_wait_limit=1.0,
    )
    parts = bootstrap_query_api(settings, auth=AuthSettings(jwt_key=JWT_KEY), today=clock.today)
    with run_relay(store):
        # Started before the notifications stream exists (the notifications service not running).
        projector = ProjectorThread(location, nats_url, bus_names, notifications=notification_names).start()
        try:
            with TestClient(parts.app) as client:
                api = Pipeline(
                    client,
                    parts.tokens,
                    service,
                    clock,
                    settings.access_stream,
                    settings.access_subject_prefix,
                    nats_url,
                )
                yield DeliveryPipeline(api, projector, DeliveryFeed(nats_url, notification_names))
        finally:
            projector.stop()
            location.close()
            asyncio.run(delete_streams(nats_url, [settings.access_stream]))


def test_the_journal_shows_who_was_told_what_and_when(pipeline: DeliveryPipeline) -> None:
    api, feed = pipeline.api, pipeline.feed
    scenario = open_shared_case(api)
    case_id = str(scenario.case_id)
    position = scenario.results[-1].position
    url = f"/v1/cases/{case_id}/journal"

    # The notifications stream does not exist yet: the journal has the case's events, no deliveries.
    before = api.client.get(url, params={"position": position}, headers=api.token(MUNICIPALITY))
    assert before.status_code == 200, before.text
    assert [e["version"] for e in before.json()["items"]] == [1, 2, 3, 4]
    assert before.json()["deliveries"] == []
    assert before.json()["deliveries_verify"] is True

    warning = uuid.uuid4()
    messages = [
        feed.event(case_id, sent(ANNA, "meeting_invitation", "email", T0)),
        feed.event(case_id, sent(ERIK, "meeting_invitation", "email", T0 + timedelta(seconds=1))),
        feed.event(
            case_id, failed(CLIENT, "sip_decided", "sms", T0 + timedelta(minutes=5), "the gateway refused it")
        ),
        feed.event(
            case_id,
            sent(ERIK, "early_warning", "email", T0 + timedelta(hours=1), urgent=True, warning_id=warning),
        ),
        feed.event(
            case_id,
            ne.NotificationAcknowledged(
                delivery_key="early_warning:erik",
                warning_id=warning,
                recipient=ERIK,
                acknowledged_at=T0 + timedelta(hours=1, minutes=10),
            ),
        ),
        feed.event(
            case_id,
            ne.NotificationEscalated(
                warning_id=warning,
                triggered_at=T0 + timedelta(hours=1),
                escalated_at=T0 + timedelta(hours=2),
                organisation_ids=[REGION.organisation_id],
                unacknowledged=1,
            ),
        ),
    ]
    sequences = feed.publish(messages)
    pipeline.projector.wait_for_deliveries(sequences[-1])

    response = api.client.get(url, params={"position": position}, headers=api.token(MUNICIPALITY))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["version"] for e in body["items"]] == [1, 2, 3, 4], "the case's events are as they were"
    assert body["chain_verifies"] is True
    rows = body["deliveries"]
    assert [d["record_version"] for d in rows] == [1, 2, 3, 4, 5, 6]
    assert [d["status"] for d in rows] == ["sent", "sent", "failed", "sent", "acknowledged", "escalated"]
    assert [d["event_id"] for d in rows] == [m.headers[HEADER_MSG_ID] for m in messages]
    assert body["deliveries_verify"] is True
    assert all(d["verified"] for d in rows)
    assert body["next_after_delivery"] is None

    first = rows[0]
    assert first["recipient"] == {
        "recipient_id": ANNA.recipient_id,
        "name": "Anna Lindqvist",
        "role": "coordinator",
        "organisation_id": REGION.organisation_id,
        "user_id": REGION.user_id,
    }
    assert (first["channel"], first["template"], first["urgent"], first["attempts"]) == (
        "email",
        "meeting_invitation",
        False,
        1,
    )
    assert datetime.fromisoformat(first["at"].replace("Z", "+00:00")) == T0
    assert first["message_id"].endswith("@vss.example.se>")
    assert first["summary"] == (
        f"Meeting invitation sent to Anna Lindqvist (coordinator, {REGION.organisation_id}) by e-mail"
    )
    assert rows[2]["reason"] == "the gateway refused it"
    assert rows[2]["details"] == {"permanent": True}
    assert rows[2]["summary"] == (
        "New SIP notice to Tolvan Tolvansson (client) by SMS not delivered after 3 attempts:"
        " the gateway refused it"
    )
    assert rows[3]["urgent"] is True
    assert rows[3]["warning_id"] == str(warning)
    assert rows[3]["summary"].startswith("Early warning alert (urgent) sent to Erik Sjöberg")
    assert rows[4]["summary"] == (
        f"Early warning alert acknowledged by Erik Sjöberg (coordinator, {MUNICIPALITY.organisation_id})"
    )
    assert rows[5]["recipient"] is None
    assert rows[5]["channel"] is None
    assert rows[5]["details"]["organisation_ids"] == [REGION.organisation_id]
    assert rows[5]["summary"] == (
        f"Early warning unacknowledged (1 urgent message): escalated to the duty contacts of"
        f" {REGION.organisation_id}"
    )
    assert all("\n" not in d["summary"] for d in rows)

    # The deliveries are paged on their own.
    page = api.client.get(url, params={"limit": 4}, headers=api.token(REGION)).json()
    assert [d["record_version"] for d in page["deliveries"]] == [1, 2, 3, 4]
    assert page["next_after_delivery"] == 4
    rest = api.client.get(url, params={"limit": 4, "after_delivery": 4}, headers=api.token(REGION)).json()
    assert [d["record_version"] for d in rest["deliveries"]] == [5, 6]
    assert rest["next_after_delivery"] is None
    assert [e["version"] for e in rest["items"]] == [1, 2, 3, 4]

    # An organisation neither coordinating nor covered by the consent: 403, nothing of the record.
    denied = api.client.get(url, headers=api.token(STRANGER))
    assert denied.status_code == 403
    assert denied.json()["rule"] == "no_consent"
    assert "deliveries" not in denied.json()
    assert "Anna" not in denied.text

    # Every read of the journal is one access-log record, the refusal too.
    log = api.client.get(f"/v1/cases/{case_id}/access-log", headers=api.token(REGION)).json()["items"]
    assert [(e["user_id"], e["read"], e["outcome"]) for e in log if e["read"] == "journal"] == [
        (MUNICIPALITY.user_id, "journal", "granted"),
        (MUNICIPALITY.user_id, "journal", "granted"),
        (REGION.user_id, "journal", "granted"),
        (REGION.user_id, "journal", "granted"),
        (STRANGER.user_id, "journal", "denied"),
    ]


# ------------------------------------------------------------------------- the projector
def _delivery(message: Message, sequence: int) -> Delivery:
    event = CloudEvent.model_validate_json(message.body)
    return Delivery(
        event=event,
        data=ne.decode_notification_event(event.type, event.data),
        stream_sequence=sequence,
        subject=message.subject,
        headers=message.headers,
        delivered=2,
        body=message.body,
    )


def test_a_redelivery_or_a_republished_copy_adds_nothing(
    read_model_location: ReadModelLocation, nats_url: str, bus_names: BusNames, notification_names: BusNames
) -> None:
    feed = DeliveryFeed(nats_url, notification_names)
    case_a, case_b = str(uuid.uuid4()), str(uuid.uuid4())
    messages = [
        feed.event(case_a, sent(ANNA, "meeting_invitation", "email", T0)),
        feed.event(case_b, sent(ERIK, "coordinator_assigned", "webhook", T0)),
        feed.event(case_a, sent(ANNA, "meeting_updated", "email", T0 + timedelta(days=1))),
        feed.event(case_a, sent(CLIENT, "meeting_reminder", "sms", T0 + timedelta(days=2))),
    ]
    sequences = feed.publish(messages)
    # No case stream at all: the case consumer waits for it; the deliveries go on regardless.
    projector = ProjectorThread(read_model_location, nats_url, bus_names, notifications=notification_names)
    projector.start()
    try:
        projector.wait_for_deliveries(sequences[-1])
        models = _models(read_model_location)
        before = models.dump()["deliveries"]
        assert [(r[0], r[1]) for r in before] == sorted([(case_a, 1), (case_a, 2), (case_a, 3), (case_b, 1)])

        # The relay republished a copy (after its duplicate window): a new sequence, the same event.
        copy = feed.publish([messages[2]], msg_id_suffix=":again")
        # Something undecodable on the stream: dead-lettered, and the consumer goes on.
        garbage = Message(
            notification_names.subject(case_a, "NotificationSent"),
            b"{not json",
            {HEADER_MSG_ID: "x"},
            case_a,
            0,
        )
        bad = feed.publish([garbage], msg_id_suffix=str(uuid.uuid4()))
        edited = feed.event(case_b, sent(ERIK, "sip_decided", "webhook", T0 + timedelta(days=3)), edited=True)
        last = feed.publish([edited])
        projector.wait_for_deliveries(last[0])
        after = models.dump()["deliveries"]
        assert len(after) == len(before) + 1
        assert [r for r in after if r[0] == case_a] == [r for r in before if r[0] == case_a]  # not the copy
        new = models.deliveries(case_b, 1, 10)
        assert [(d["record_version"], d["verified"]) for d in new] == [
            (2, False)
        ]  # its hash does not recompute
        assert models.deliveries_applied_through() == last[0]
        letters = asyncio.run(
            read_stream(nats_url, bus_names.dead_letter_stream, f"{bus_names.dead_letter_prefix}.>")
        )
        assert [m.headers["Vss-Dlq-Sequence"] for m in letters] == [str(bad[0])]
        assert letters[0].headers["Vss-Dlq-Consumer"] == DELIVERIES_CONSUMER

        # A message delivered again (same sequence) changes nothing.
        assert projector.deliveries is not None
        assert projector.deliveries.apply(_delivery(messages[3], sequences[3])) is False
        assert projector.deliveries.apply(_delivery(messages[2], copy[0])) is False
        # And a whole pull delivered again (each pull is applied whole when it can be).
        assert projector.deliveries_consumer is not None
        assert projector.deliveries_consumer.batched
        assert projector.consumer.batched
        pull = [_delivery(messages[2], sequences[2]), _delivery(messages[3], sequences[3])]
        assert projector.deliveries.apply_batch(pull) == 0
        assert models.dump()["deliveries"] == after
    finally:
        projector.stop()

    # Restarted, it resumes after what it applied: nothing again, the next one once.
    projector = ProjectorThread(read_model_location, nats_url, bus_names, notifications=notification_names)
    projector.start()
    try:
        more = feed.publish(
            [feed.event(case_a, sent(ANNA, "follow_up_overdue", "email", T0 + timedelta(days=9)))]
        )
        projector.wait_for_deliveries(more[0])
        final = models.dump()["deliveries"]
        assert len(final) == len(after) + 1
        assert [d["record_version"] for d in models.deliveries(case_a, 0, 100)] == [1, 2, 3, 4]
        assert all(d["verified"] for d in models.deliveries(case_a, 0, 100))
    finally:
        projector.stop()
        models.close()


def test_a_rebuild_reproduces_the_delivery_record_and_the_live_consumer_follows_it(
    history: History, read_model_location: ReadModelLocation, notification_names: BusNames
) -> None:
    feed = DeliveryFeed(history.nats_url, notification_names)
    case_ids = [str(c) for c in history.store.case_ids()[:6]]
    messages = [
        feed.event(case_id, sent(person, template, "email", T0 + timedelta(hours=i)))
        for i, case_id in enumerate(case_ids)
        for person, template in (
            (ANNA, "meeting_invitation"),
            (ERIK, "meeting_invitation"),
            (CLIENT, "sip_decided"),
        )
    ]
    sequences = feed.publish(messages)
    projector = ProjectorThread(
        read_model_location, history.nats_url, history.names, notifications=notification_names
    ).start()
    try:
        projector.wait_for(history.last_sequence)
        projector.wait_for_deliveries(sequences[-1])
        live = _models(read_model_location)
        live_dump = live.dump()
        live.close()
        assert len(live_dump["deliveries"]) == len(messages)

        report = asyncio.run(
            rebuild(read_model_location, history.nats_url, history.names, notifications=notification_names)
        )
        assert report.switched
        assert (report.deliveries, report.deliveries_position, report.deliveries_skipped) == (
            len(messages),
            sequences[-1],
            0,
        )
        rebuilt = _models(read_model_location)
        assert rebuilt.generation == report.generation
        assert rebuilt.dump() == live_dump
        assert rebuilt.deliveries_applied_through() == sequences[-1]

        # The running projector follows the switch: the next delivery lands in the new generation.
        more = feed.publish(
            [feed.event(case_ids[0], sent(ANNA, "meeting_reminder", "email", T0 + timedelta(days=3)))]
        )
        assert wait_until(lambda: len(rebuilt.deliveries(case_ids[0], 3, 10)) == 1, 30), projector.error
        assert rebuilt.deliveries_applied_through() == more[0]
        assert rebuilt.deliveries(case_ids[0], 3, 10)[0]["verified"] is True
        rebuilt.close()
    finally:
        projector.stop()


def test_a_rebuild_without_a_notifications_stream_leaves_the_delivery_record_empty(
    history: History, tmp_path: Path, bus_names: BusNames
) -> None:
    missing = bus_names.sibling(ne.NOTIFICATION_STREAM, ne.NOTIFICATION_SUBJECT_PREFIX, "TNONE_")
    location = ReadModelLocation(f"sqlite:///{tmp_path}/readmodels")
    report = asyncio.run(rebuild(location, history.nats_url, history.names, notifications=missing))
    assert report.switched
    assert report.deliveries == 0
    assert report.deliveries_position == 0
    models = _models(location)
    assert models.dump()["deliveries"] == []
    assert models.deliveries_applied_through() == 0
    assert len(models.dump()["journal"]) == history.report.events
    models.close()
    location.close()


# --------------------------------------------------------------------------- the summaries
def _record(payload: ne.NotificationEventData) -> NotificationRecord:
    return NotificationRecord(
        case_id="c",
        version=1,
        type=payload.TYPE,
        data=payload.model_dump(mode="json"),
        event_id="e",
        time=T0.isoformat(),
        stream_sequence=1,
        prev_hash=GENESIS_HASH,
        event_hash="0" * 64,
        hash_ok=True,
    )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            sent(CLIENT, "meeting_cancelled", "webhook", T0),
            "Meeting cancellation sent to Tolvan Tolvansson (client) by webhook",
        ),
        (
            sent(ANNA, "a_new_template", "sms", T0),
            f"A new template sent to Anna Lindqvist (coordinator, {REGION.organisation_id}) by SMS",
        ),
        (
            failed(ERIK, "meeting_invitation", "email", T0, "550 mailbox\nunavailable"),
            f"Meeting invitation to Erik Sjöberg (coordinator, {MUNICIPALITY.organisation_id}) by e-mail"
            " not delivered after 3 attempts: 550 mailbox unavailable",
        ),
        (
            ne.NotificationEscalated(
                warning_id=uuid.uuid4(),
                triggered_at=T0,
                escalated_at=T0,
                organisation_ids=[],
                unacknowledged=2,
            ),
            "Early warning unacknowledged (2 urgent messages):"
            " escalated to no duty contact (none configured)",
        ),
    ],
)
def test_each_delivery_has_a_one_line_summary(payload: ne.NotificationEventData, expected: str) -> None:
    record = _record(payload)
    assert domain.summary(record) == expected
    row = dict(zip(domain.COLUMNS, domain.delivery_row(record, True), strict=True))
    assert row["summary"] == expected
    assert row["status"] == domain.status(payload.TYPE)
