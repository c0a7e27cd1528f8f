"""FastStream's AsyncAPI document of a service's subscribers, from the service's own subscriptions.

The services consume through the kit's :class:`.faststream_subscriber.FastStreamSubscriber`,
built from :class:`.consumer.Subscription` values (durable, stream, subject filter, the event
types the handler acts on). :func:`subscriber_broker` registers the same subscriptions as the
kit's subscribers on a broker that is never connected, with
the event types as the subscriber's message: one CloudEvent model per type (its ``type`` a
constant, its ``data`` the contracts' payload model), so FastStream's own AsyncAPI generator
(:func:`asyncapi`) documents what each subscriber accepts. ``tests/contracts`` compares that
document with the contracts' AsyncAPI document.

In the document a subscriber is the channel ``<durable>:<stream>`` (the kit's title), at the
address of its subject filter; its payload is one of the CloudEvent models, told apart by
``type``. Earlier versions of a type, which the consumers upcast on decode, are accepted
messages of their own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import Annotated, Any, Literal, Union

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import ConfigDict, Field, create_model

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.consumer import Delivery, Subscription
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, service_broker
from services.shared.dispatch import ContractEvent
from services.shared.settings import BusSettings
from vss_contracts.case_events import CASE_EVENTS, LEGACY_CASE_EVENTS
from vss_contracts.envelope import CloudEvent
from vss_contracts.meeting_events import LEGACY_MEETING_EVENTS, MEETING_EVENTS, MEETING_UPCASTERS
from vss_contracts.notification_events import NOTIFICATION_EVENTS, NOTIFICATION_UPCASTERS
from vss_contracts.registry import UPCASTERS

# Every payload model of the contracts' streams by type name, earlier versions included.
_PAYLOADS: tuple[type[ContractEvent], ...] = (
    *CASE_EVENTS,
    *LEGACY_CASE_EVENTS,
    *MEETING_EVENTS,
    *LEGACY_MEETING_EVENTS,
    *NOTIFICATION_EVENTS,
)
_MODELS: dict[str, type[ContractEvent]] = {cls.TYPE: cls for cls in _PAYLOADS}
# type name -> the earlier versions a consumer upcasts to it
_EARLIER: dict[str, list[str]] = {}
for _old, (_next, _) in (*UPCASTERS.items(), *MEETING_UPCASTERS.items(), *NOTIFICATION_UPCASTERS.items()):
    _EARLIER.setdefault(_next, []).append(_old)


def wire_types(type_names: Iterable[str]) -> tuple[str, ...]:
    """The types on the wire that decode as ``type_names``: each, then the versions upcast to it."""
    found: list[str] = []

    def add(type_name: str) -> None:
        if type_name not in found:
            found.append(type_name)
            for older in _EARLIER.get(type_name, ()):
                add(older)

    for type_name in type_names:
        add(type_name)
    return tuple(found)


def accepted(subscription: Subscription) -> tuple[str, ...]:
    """The CloudEvent types the subscription's handler acts on, as they come over the wire."""
    return wire_types(subscription.handles)


def ignored(subscription: Subscription) -> tuple[str, ...]:
    """The CloudEvent types its dispatch table ignores by name, as they come over the wire."""
    return wire_types(subscription.ignores)


@functools.cache
def cloud_event_model(type_name: str) -> type[CloudEvent]:
    """The contracts' CloudEvent carrying one type: ``type`` that constant, ``data`` its payload model.

    One class per type (cached), so that subscribers sharing a type share its schema.
    """
    data = _MODELS[type_name]
    qualified, _, number = type_name.rpartition(".v")
    event_name = qualified.rsplit(".", 1)[-1]
    model: type[CloudEvent] = create_model(
        f"{event_name}_v{number}",
        __base__=CloudEvent,
        __doc__=f"A CloudEvent of type {type_name}.",
        type=(Literal[type_name], Field(description="The versioned event type.")),  # type: ignore[arg-type]
        data=(data, ...),
    )
    model.model_config = ConfigDict(**{**CloudEvent.model_config, "title": type_name})
    model.model_rebuild(force=True)
    return model


def message_of(subscription: Subscription) -> Any:
    """What the subscriber accepts, for FastStream's AsyncAPI: a CloudEvent model per type,
    told apart by ``type`` (the contracts' CloudEvent when it acts on no type)."""
    models = [cloud_event_model(t) for t in accepted(subscription)]
    if not models:
        return CloudEvent
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007 - built at run time


class _Describing:
    """The handler of a subscriber that is only described, never run."""

    def applied_through(self) -> int:
        raise NotImplementedError("a described subscriber does not consume")

    def apply(self, delivery: Delivery) -> bool:
        raise NotImplementedError("a described subscriber does not consume")

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        raise NotImplementedError("a described subscriber does not consume")


def subscriber_broker(
    subscriptions: Sequence[Subscription], *, name: str, url: str | None = None
) -> NatsBroker:
    """A service's broker with the kit's subscriber registered for each subscription (never
    connected): what FastStream would run, for FastStream's AsyncAPI generator. ``url``: the
    server the document names (default: the one the bus settings name)."""
    broker = service_broker(url or BusSettings().nats(), name=name, auth=NatsAuth())
    for subscription in subscriptions:
        FastStreamSubscriber(
            broker, _Describing(), subscription.consumer_settings(), message=message_of(subscription)
        )
    return broker


def asyncapi(
    subscriptions: Sequence[Subscription], *, service: str, url: str | None = None
) -> dict[str, Any]:
    """FastStream's AsyncAPI 3.0 document of the service's subscribers (no server is reached)."""
    broker = subscriber_broker(subscriptions, name=service, url=url)
    specification = AsyncAPI(
        broker,
        title=f"VSS {service}: subscribers",
        version=version("vss"),
        description=f"What the {service} service consumes, as FastStream describes its subscribers.",
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = json.loads(specification.to_json())
    return document
