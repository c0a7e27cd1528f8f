"""Decoding a message: the envelope and its type at once, the typed payload when a handler reads it.

A payload that does not decode is dead-lettered at once, without retries, by whichever
handler reads it; a handler that never reads it (it forwards the body, or decodes the body
itself) does not pay for it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pytest
from nats.aio.msg import Msg

from services.shared.bus.consumer import (
    ConsumerSettings,
    Delivery,
    GiveUp,
    Undecodable,
    apply_in_place,
    decode,
)
from services.shared.bus.names import BusNames
from services.sharing.infrastructure.bus import incoming
from vss_contracts.case_events import SipDecidedV1, WorksheetCompleted

WORKSHEET = {
    "worksheet": "ordinary_day",
    "completed_on": "2026-11-23",
    "participants": [{"kind": "client", "name": "Tolvan"}],
    "summary": "Sover till tio, promenad med hunden.",
}


def _body(type_name: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "urn:vss:case",
            "type": type_name,
            "subject": str(uuid.uuid4()),
            "time": "2026-11-23T09:00:00+00:00",
            "datacontenttype": "application/json",
            "dataschema": "https://vss.example/schemas/x.json",
            "data": data,
            "caseversion": 3,
            "correlationid": "c",
            "actorid": "anna.k",
            "actororg": "vgr-psykiatri",
            "actorprincipal": "region",
            "prevhash": "a" * 64,
            "eventhash": "b" * 64,
        }
    )


@dataclass
class _Sequence:
    stream: int


@dataclass
class _Metadata:
    sequence: _Sequence
    num_delivered: int = 1


@dataclass
class _Msg:
    """A JetStream message as :func:`decode` reads it."""

    data: bytes
    subject: str = "vss.case.x.WorksheetCompleted"
    headers: dict[str, str] | None = None
    metadata: _Metadata = field(default_factory=lambda: _Metadata(_Sequence(7)))


def _decoded(body: bytes) -> Delivery:
    return decode(cast(Msg, _Msg(body)))


def test_the_payload_is_decoded_when_first_read_and_once() -> None:
    calls: list[str] = []

    def typed(event: Any) -> Any:
        calls.append(event.type)
        return event.typed_data()

    delivery = decode(cast(Msg, _Msg(_body(WorksheetCompleted.TYPE, WORKSHEET))), typed)
    assert calls == []  # the envelope alone so far
    assert delivery.event.type == WorksheetCompleted.TYPE
    assert delivery.stream_sequence == 7
    assert isinstance(delivery.data, WorksheetCompleted)
    assert delivery.data is delivery.data
    assert calls == [WorksheetCompleted.TYPE]


def test_an_envelope_or_a_type_the_contracts_do_not_know_fails_on_decode() -> None:
    with pytest.raises(Undecodable, match="ValidationError"):
        _decoded(b"{not json")
    with pytest.raises(Undecodable, match=r"UnknownEventType: se\.vss\.case\.NeverHeardOf\.v1"):
        _decoded(_body("se.vss.case.NeverHeardOf.v1", {}))


def test_a_payload_not_of_its_type_fails_when_read() -> None:
    delivery = _decoded(_body(WorksheetCompleted.TYPE, {**WORKSHEET, "worksheet": 42}))
    assert delivery.body  # the envelope and the body are there
    with pytest.raises(Undecodable, match="ValidationError"):
        _ = delivery.data
    with pytest.raises(Undecodable):  # not cached as a value: read again, fails again
        _ = delivery.data


class _ReadsThePayload:
    applies_in_loop = True

    def __init__(self) -> None:
        self.attempts = 0

    def applied_through(self) -> int:
        return 0

    def apply(self, delivery: Delivery) -> bool:
        self.attempts += 1
        _ = delivery.data
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        pass


def test_a_handler_reading_an_undecodable_payload_gives_up_at_once_with_the_reason() -> None:
    delivery = _decoded(_body(WorksheetCompleted.TYPE, {**WORKSHEET, "worksheet": 42}))
    handler = _ReadsThePayload()
    settings = ConsumerSettings(durable="d", names=BusNames(), max_attempts=5, backoff=(0.0,))

    async def in_progress() -> None:
        pass

    outcome = asyncio.run(apply_in_place(handler, delivery, settings, 7, in_progress))
    assert isinstance(outcome, GiveUp)
    assert outcome.reason.startswith("undecodable: ValidationError")
    assert handler.attempts == 1  # no retry mends a payload


def test_the_sharing_service_refuses_at_once_an_old_version_its_upcaster_cannot_read() -> None:
    # The sharing service reads the published dict, not ``data``: an earlier version's
    # payload that does not upcast is undecodable there too, not a failure to retry.
    delivery = _decoded(_body(SipDecidedV1.TYPE, {"decided_on": "2026-11-23"}))  # no actions
    with pytest.raises(Undecodable, match="KeyError"):
        incoming(delivery)
