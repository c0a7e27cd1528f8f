"""FastStream's AsyncAPI document of the kit's subscriber (generated without a server)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from faststream.specification import AsyncAPI
from pydantic import BaseModel

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.consumer import ConsumerSettings
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, service_broker


def _resolve(doc: Mapping[str, Any], node: Mapping[str, Any]) -> Any:
    """Follow a local ``$ref`` (JSON Pointer, percent- and ~-escaped) to what it names."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[unquote(part).replace("~1", "/").replace("~0", "~")]
        node = target
    return node


# ----------------------------------------------------------------- the kit's own AsyncAPI output
class _Unused:
    def applied_through(self) -> int:
        return 0

    def apply(self, delivery: Any) -> bool:
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        return None


def test_the_kits_subscriber_is_documented_as_the_contracts_cloud_event_by_default() -> None:
    """FastStream's generator documents the kit's subscriber (its decoded message is not a model)."""
    broker = service_broker("nats://127.0.0.1:4222", name="t", auth=NatsAuth())
    FastStreamSubscriber(broker, _Unused(), ConsumerSettings(durable="t"))
    document = json.loads(AsyncAPI(broker, schema_version="3.0.0").to_specification().to_json())
    (channel,) = document["channels"].values()
    assert channel["address"] == "vss.case.>"
    (reference,) = channel["messages"].values()
    payload = _resolve(document, _resolve(document, reference)["payload"])
    assert payload["title"] == "CloudEvent"


def test_a_batch_subscriber_is_documented_as_a_list_of_its_message() -> None:
    class Batch(_Unused):
        def apply_batch(self, deliveries: Sequence[Any]) -> int:
            return len(deliveries)

    class Message(BaseModel):
        type: str

    broker = service_broker("nats://127.0.0.1:4222", name="t", auth=NatsAuth())
    FastStreamSubscriber(broker, Batch(), ConsumerSettings(durable="t", fetch_batch=10), message=Message)
    document = json.loads(AsyncAPI(broker, schema_version="3.0.0").to_specification().to_json())
    (channel,) = document["channels"].values()
    (reference,) = channel["messages"].values()
    payload = _resolve(document, _resolve(document, reference)["payload"])
    assert payload["type"] == "array"
    assert _resolve(document, payload["items"])["title"] == "Message"
