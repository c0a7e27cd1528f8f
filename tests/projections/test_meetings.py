"""Each case's meetings in the read models: stream VSS_MEETINGS -> the projector's third consumer.

The meeting events are built as the meetings service stores them (each case's schedule
hash-chained, the case events' state layout) and published as its relay does (the shared
CloudEvent body, ``Nats-Msg-Id`` = event id, subject ``<prefix>.meetings.<case id>.<EventName>``)
to a stream of the test's own on the real NATS server.
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

from services.projections.application.meetings import MEETINGS_CONSUMER
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import rebuild
from services.projections.settings import ProjectionsSettings
from services.shared.bus import outbox
from services.shared.bus.consumer import Delivery
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, declare_if_missing
from services.shared.ics import STOCKHOLM
from tests.projections.conftest import History, ProjectorThread
from tests.support.bus import read_stream, wait_until
from tests.support.nats import delete_streams
from vss_contracts import meeting_events as me
from vss_contracts.chain import GENESIS_HASH, chain_hash
from vss_contracts.envelope import CloudEvent
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID
from vss_contracts.types import ActingPerson

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
REGION, MUNICIPALITY = "region-vasterbotten", "umea-kommun"
ACTED_BY = ("booked_by", "moved_by", "confirmed_by", "cancelled_by", "recorded_by")
CLIENT = me.Invitee(
    invitee_id="member:client",
    name="Tolvan Tolvansson",
    role=me.InviteeRole.CLIENT,
    email="tolvan@example.se",
)


def starts(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=STOCKHOLM)


def booked(meeting_id: uuid.UUID, day: int, organisation: str = REGION) -> me.MeetingScheduled:
    return me.MeetingScheduled(
        meeting_id=meeting_id,
        kind=me.MeetingKind.RESOURCE_GROUP,
        starts_at=starts(day),
        ends_at=starts(day) + timedelta(hours=1),
        invitees=[CLIENT],
        reason="booked",
        booked_by=ActingPerson(organisation_id=organisation, user_id="anna"),
        location="Vårdcentralen",
    )


def moved(meeting_id: uuid.UUID, day: int, previous: int, sequence: int) -> me.MeetingRescheduled:
    return me.MeetingRescheduled(
        meeting_id=meeting_id,
        starts_at=starts(day),
        ends_at=starts(day) + timedelta(hours=1),
        previous_starts_at=starts(previous),
        sequence=sequence,
        reason="the client is ill",
    )


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: bytes
    headers: dict[str, str]


class MeetingFeed:
    """Each case's meeting schedule as the meetings service keeps it, as its relay publishes it:
    the envelope names who acted, the user the payload names with their organisation (``by``),
    else the service itself."""

    def __init__(self, nats_url: str, names: BusNames) -> None:
        self.nats_url = nats_url
        self.names = names
        self.heads: dict[str, tuple[int, str]] = {}
        self.position = 0

    def event(self, case_id: str, payload: me.MeetingEventData, *, by: str = REGION) -> Message:
        version, previous = self.heads.get(case_id, (0, GENESIS_HASH))
        acted = next((p for p in (getattr(payload, f, None) for f in ACTED_BY) if p is not None), None)
        user = None if acted is None else acted.user_id
        actor_id, actor_org = (user, by) if user is not None else ("vss-meetings", "vss")
        version += 1
        self.position += 1
        event_id = str(uuid.uuid4())
        state: dict[str, Any] = {
            "event_id": event_id,
            "recorded_at": (T0 + timedelta(minutes=self.position)).isoformat(),
            "actor_id": actor_id,
            "actor_organisation": actor_org,
            "principal": "other",
            "correlation_id": event_id,
            "causation_id": None,
            "prev_hash": previous,
            "data": payload.model_dump(mode="json"),
        }
        state["hash"] = chain_hash(case_id, version, payload.TYPE, state)
        self.heads[case_id] = (version, state["hash"])
        body = outbox.cloud_event_body(
            source=me.MEETING_EVENT_SOURCE,
            type_name=payload.TYPE,
            case_id=case_id,
            version=version,
            position=self.position,
            state=state,
        )
        return Message(
            subject=self.names.subject(case_id, payload.event_name()),
            body=orjson.dumps(body, option=orjson.OPT_UTC_Z),
            headers={
                HEADER_MSG_ID: event_id,
                HEADER_EVENT_TYPE: payload.TYPE,
                HEADER_LOG_POSITION: str(self.position),
            },
        )

    def publish(self, messages: Sequence[Message], *, msg_id_suffix: str = "") -> list[int]:
        """Publish (declaring the stream as the meetings relay does); the stream sequences."""

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
def meeting_names(bus_names: BusNames, nats_url: str) -> Iterator[BusNames]:
    """This test's VSS_MEETINGS (sharing its dead-letter stream), deleted afterwards."""
    prefix = bus_names.stream.split("_")[0] + "_"
    names = ProjectionsSettings(
        meetings_stream_prefix=prefix,
        bus_dead_letter_stream=bus_names.dead_letter_stream,
        bus_dead_letter_prefix=bus_names.dead_letter_prefix,
    ).meeting_names()
    assert names == bus_names.sibling(me.MEETING_STREAM, me.MEETING_SUBJECT_PREFIX, prefix)
    assert names.stream.endswith("_VSS_MEETINGS")
    yield names
    asyncio.run(delete_streams(nats_url, [names.stream]))


def _models(location: ReadModelLocation) -> ReadModels:
    generation = location.current()
    assert generation is not None
    return ReadModels(location.connect(generation))


def _delivery(message: Message, sequence: int) -> Delivery:
    event = CloudEvent.model_validate_json(message.body)
    return Delivery(
        event=event,
        data=me.decode_meeting_event(event.type, event.data),
        stream_sequence=sequence,
        subject=message.subject,
        headers=message.headers,
        delivered=2,
        body=message.body,
    )


def test_the_meetings_consumer_keeps_each_cases_meetings_once(
    read_model_location: ReadModelLocation, nats_url: str, bus_names: BusNames, meeting_names: BusNames
) -> None:
    feed = MeetingFeed(nats_url, meeting_names)
    case_a, case_b = str(uuid.uuid4()), str(uuid.uuid4())
    first, second, theirs = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    messages = [
        feed.event(case_a, booked(first, 10)),
        feed.event(case_b, booked(theirs, 9)),
        feed.event(case_a, booked(second, 5, MUNICIPALITY), by=MUNICIPALITY),  # another anna: another person
        feed.event(case_a, moved(first, 12, previous=10, sequence=1)),
        feed.event(
            case_a, me.MeetingReminderDue(meeting_id=second, starts_at=starts(5), days_before=3, sequence=0)
        ),
    ]
    sequences = feed.publish(messages)
    # No case stream at all: the case consumer waits for it; the meetings go on regardless.
    projector = ProjectorThread(read_model_location, nats_url, bus_names, meetings=meeting_names).start()
    models = _models(read_model_location)
    try:
        projector.wait_for_meetings(sequences[-1])
        found = models.meetings(case_a)
        assert [(m["meeting_id"], m["status"], m["sequence"]) for m in found] == [
            (str(second), "scheduled", 0),
            (str(first), "rescheduled", 1),
        ]
        assert found[1]["starts_at"] == "2026-03-12T10:00:00+01:00"
        assert found[1]["previous_starts_at"] == "2026-03-10T10:00:00+01:00"
        assert found[1]["uid"] == f"{first}@vss.se"
        assert found[1]["invitees"][0]["name"] == "Tolvan Tolvansson"
        assert [(m["changed_by"], m["changed_by_organisation"]) for m in found] == [
            ("anna", MUNICIPALITY),
            (None, None),  # moved by the rules: nobody
        ]
        assert "email" not in found[1]["invitees"][0]
        assert all(m["verified"] for m in found)
        assert [m["meeting_id"] for m in models.meetings(case_b)] == [str(theirs)]
        before = models.dump()

        # The relay republished the first booking (after its duplicate window): a new sequence,
        # the same event; then something undecodable: dead-lettered, and the consumer goes on.
        copy = feed.publish([messages[0]], msg_id_suffix=":again")
        garbage = Message(
            meeting_names.subject(case_a, "MeetingScheduled"), b"{not json", {HEADER_MSG_ID: "x"}
        )
        bad = feed.publish([garbage], msg_id_suffix=str(uuid.uuid4()))
        projector.wait_for_meetings(bad[0])
        assert models.dump()["meetings"] == before["meetings"]
        assert models.meetings_applied_through() == bad[0]
        letters = asyncio.run(
            read_stream(nats_url, bus_names.dead_letter_stream, f"{bus_names.dead_letter_prefix}.>")
        )
        assert [m.headers["Vss-Dlq-Sequence"] for m in letters] == [str(bad[0])]
        assert letters[0].headers["Vss-Dlq-Consumer"] == MEETINGS_CONSUMER

        # A message delivered again (same sequence) changes nothing.
        assert projector.meetings is not None
        assert projector.meetings.apply(_delivery(messages[3], sequences[3])) is False
        assert projector.meetings.apply(_delivery(messages[0], copy[0])) is False
        assert models.dump()["meetings"] == before["meetings"]
    finally:
        projector.stop()

    # Restarted, it resumes after what it applied: the cancellation once.
    projector = ProjectorThread(read_model_location, nats_url, bus_names, meetings=meeting_names).start()
    try:
        more = feed.publish(
            [feed.event(case_a, me.MeetingCancelled(meeting_id=first, sequence=2, reason="closed"))]
        )
        projector.wait_for_meetings(more[0])
        found = models.meetings(case_a)
        assert [(m["status"], m["sequence"], m["version"]) for m in found] == [
            ("scheduled", 0, 2),
            ("cancelled", 2, 5),
        ]
    finally:
        projector.stop()
        models.close()


def test_a_rebuild_gives_the_live_meetings_and_the_live_consumer_follows_it(
    history: History, read_model_location: ReadModelLocation, meeting_names: BusNames
) -> None:
    feed = MeetingFeed(history.nats_url, meeting_names)
    case_ids = [str(c) for c in history.store.case_ids()[:4]]
    meeting_ids = {case_id: (uuid.uuid4(), uuid.uuid4()) for case_id in case_ids}
    messages = []
    for i, case_id in enumerate(case_ids):
        a, b = meeting_ids[case_id]
        messages += [
            feed.event(case_id, booked(a, 10 + i)),
            feed.event(case_id, booked(b, 20 + i, MUNICIPALITY), by=MUNICIPALITY),
            feed.event(case_id, moved(a, 16 + i, previous=10 + i, sequence=1)),
            feed.event(
                case_id,
                me.MeetingCancelled(
                    meeting_id=b,
                    sequence=1,
                    reason="closed",
                    cancelled_by=ActingPerson(organisation_id=MUNICIPALITY, user_id="anna"),
                ),
                by=MUNICIPALITY,
            ),
        ]
    sequences = feed.publish(messages)
    projector = ProjectorThread(
        read_model_location, history.nats_url, history.names, meetings=meeting_names
    ).start()
    try:
        projector.wait_for(history.last_sequence)
        projector.wait_for_meetings(sequences[-1])
        live = _models(read_model_location)
        live_dump = live.dump()
        by = {(m["changed_by"], m["changed_by_organisation"]) for m in live.meetings(case_ids[0])}
        live.close()
        assert len(live_dump["meetings"]) == 2 * len(case_ids)
        assert len(live_dump["meeting_heads"]) == len(case_ids)
        assert by == {(None, None), ("anna", MUNICIPALITY)}  # moved by the rules; cancelled by anna

        report = asyncio.run(
            rebuild(read_model_location, history.nats_url, history.names, meetings=meeting_names, batch=5)
        )
        assert report.switched
        assert (report.meetings, report.meetings_position, report.meetings_skipped) == (
            len(messages),
            sequences[-1],
            0,
        )
        rebuilt = _models(read_model_location)
        assert rebuilt.generation == report.generation
        assert rebuilt.dump() == live_dump
        assert rebuilt.meetings_applied_through() == sequences[-1]

        # The running projector follows the switch: the next event lands in the new generation.
        a, _ = meeting_ids[case_ids[0]]
        more = feed.publish(
            [feed.event(case_ids[0], me.MeetingCancelled(meeting_id=a, sequence=2, reason="closed"))]
        )
        assert wait_until(lambda: rebuilt.meetings_applied_through() == more[0], 30), projector.error
        assert [m["status"] for m in rebuilt.meetings(case_ids[0])] == ["cancelled", "cancelled"]
        rebuilt.close()
    finally:
        projector.stop()


def test_a_rebuild_without_a_meetings_stream_leaves_the_meetings_empty(
    history: History, tmp_path: Path, bus_names: BusNames
) -> None:
    missing = bus_names.sibling(me.MEETING_STREAM, me.MEETING_SUBJECT_PREFIX, "TNONE_")
    location = ReadModelLocation(f"sqlite:///{tmp_path}/readmodels")
    report = asyncio.run(rebuild(location, history.nats_url, history.names, meetings=missing))
    assert report.switched
    assert (report.meetings, report.meetings_position) == (0, 0)
    models = _models(location)
    assert models.dump()["meetings"] == []
    assert models.meetings_applied_through() == 0
    models.close()
    location.close()
