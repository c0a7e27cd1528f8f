"""FastStream's AsyncAPI document of each service's subscribers agrees with the contracts' document.

For every downstream service, its subscriptions (the ones its composition root builds its
durable consumers from) are registered as the kit's FastStream subscribers and FastStream
generates its AsyncAPI document (no server is reached). Compared with the committed
contracts' document:

- every subscriber's subject filter holds channels of the contracts' document, all on the
  stream the subscriber reads (its channel is ``<durable>:<stream>``);
- the CloudEvent types its message accepts, with the types its dispatch table ignores by name,
  are exactly the types the contracts' document lists on those channels, and none is both.

The negative cases change one fact (a dropped handler, a renamed subject, another stream, a type
the contracts gain or lose) and expect the comparison to name it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import pytest
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from services.meetings import bootstrap as meetings
from services.meetings.domain.schedule import CASE_HANDLERS
from services.meetings.settings import MeetingsSettings
from services.notifications import bootstrap as notifications
from services.notifications.settings import NotificationsSettings
from services.projections import bootstrap as projections
from services.projections.settings import ProjectionsSettings
from services.shared.bus.authorization import NatsAuth
from services.shared.bus.consumer import ConsumerSettings, Subscription
from services.shared.bus.faststream_asyncapi import accepted, asyncapi, ignored
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, service_broker
from services.shared.bus.names import BusNames
from services.sharing import bootstrap as sharing
from services.sharing.settings import SharingSettings
from vss_contracts import case_events as ce
from vss_contracts.asyncapi import ASYNCAPI_FILE
from vss_contracts.subjects import CASE_STREAM

SUBSCRIPTIONS: dict[str, Callable[[], Sequence[Subscription]]] = {
    "meetings": lambda: meetings.subscriptions(MeetingsSettings()),
    "notifications": lambda: notifications.subscriptions(NotificationsSettings()),
    "projections": lambda: projections.subscriptions(ProjectionsSettings()),
    "sharing": lambda: sharing.subscriptions(SharingSettings()),
}


@pytest.fixture(scope="module")
def contracts_doc() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ASYNCAPI_FILE.read_text(encoding="utf-8"))
    return document


# ================================================================= reading the two documents
def _resolve(doc: Mapping[str, Any], node: Mapping[str, Any]) -> Any:
    """Follow a local ``$ref`` (JSON Pointer, percent- and ~-escaped) to what it names."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[unquote(part).replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _payload_types(doc: Mapping[str, Any], payload: Mapping[str, Any]) -> set[str]:
    """The CloudEvent ``type`` constants a FastStream payload schema admits."""
    schema = _resolve(doc, payload)
    if "items" in schema:  # a batch subscriber: a list of messages
        return _payload_types(doc, schema["items"])
    variants = schema.get("oneOf") or schema.get("anyOf")
    if variants is not None:
        return set().union(*(_payload_types(doc, v) for v in variants))
    const = schema.get("properties", {}).get("type", {}).get("const")
    return {const} if const is not None else set()


def faststream_subscribers(doc: Mapping[str, Any]) -> dict[str, tuple[str, set[str]]]:
    """FastStream's document: channel (``<durable>:<stream>``) -> (subject filter, accepted types)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for key, channel in doc["channels"].items():
        types: set[str] = set()
        for reference in channel["messages"].values():
            types |= _payload_types(doc, _resolve(doc, reference)["payload"])
        found[key] = (channel["address"], types)
    return found


def contract_channels(doc: Mapping[str, Any]) -> dict[str, tuple[list[str], str, set[str]]]:
    """The contracts' document: channel -> (subject tokens, a parameter as ``*``; stream; types)."""
    found: dict[str, tuple[list[str], str, set[str]]] = {}
    for key, channel in doc["channels"].items():
        tokens = ["*" if t.startswith("{") else t for t in channel["address"].split(".")]
        types = {_resolve(doc, m)["name"] for m in channel["messages"].values()}
        found[key] = (tokens, channel["x-nats-stream"], types)
    return found


def within(subject_filter: str, tokens: Sequence[str]) -> bool:
    """Whether every subject of a channel (``tokens``, ``*`` one token) matches ``subject_filter``."""
    wanted = subject_filter.split(".")
    for i, want in enumerate(wanted):
        if want == ">":
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(wanted)


def disagreements(
    faststream_doc: Mapping[str, Any],
    contracts_doc: Mapping[str, Any],
    ignores: Mapping[str, set[str]],
) -> list[str]:
    """What FastStream's document of a service's subscribers says that the contracts' does not.

    ``ignores``: per FastStream channel, the types its consumer's dispatch table ignores by name.
    """
    channels = contract_channels(contracts_doc)
    problems: list[str] = []
    for key, (address, documented) in faststream_subscribers(faststream_doc).items():
        stream = key.rsplit(":", 1)[1]
        covered = {name: ch for name, ch in channels.items() if within(address, ch[0])}
        if not covered:
            problems.append(f"{key}: no channel of the contracts' document is within {address}")
            continue
        for name, (_, on_stream, _) in sorted(covered.items()):
            if on_stream != stream:
                problems.append(f"{key}: channel {name} is on {on_stream}, the subscriber reads {stream}")
        listed = set().union(*(types for _, _, types in covered.values()))
        skipped = ignores.get(key, set())
        problems += [
            f"{key}: {t} is on its channels but neither accepted nor ignored"
            for t in sorted(listed - documented - skipped)
        ]
        problems += [
            f"{key}: accepts {t}, which the contracts do not list on {address}"
            for t in sorted(documented - listed)
        ]
        problems += [
            f"{key}: ignores {t}, which the contracts do not list on {address}"
            for t in sorted(skipped - listed)
        ]
        problems += [f"{key}: {t} both accepted and ignored" for t in sorted(documented & skipped)]
    return problems


def _ignores(subscriptions: Sequence[Subscription]) -> dict[str, set[str]]:
    return {f"{s.durable}:{s.names.stream}": set(ignored(s)) for s in subscriptions}


def _compare(service: str, subscriptions: Sequence[Subscription], contracts: Mapping[str, Any]) -> list[str]:
    return disagreements(asyncapi(subscriptions, service=service), contracts, _ignores(subscriptions))


# ==================================================================================== the tests
@pytest.mark.parametrize("service", sorted(SUBSCRIPTIONS))
def test_the_subscribers_agree_with_the_contracts(service: str, contracts_doc: dict[str, Any]) -> None:
    assert _compare(service, SUBSCRIPTIONS[service](), contracts_doc) == []


@pytest.mark.parametrize("service", sorted(SUBSCRIPTIONS))
def test_the_document_shows_each_subscription_as_the_consumer_reads_it(service: str) -> None:
    """Channel, subject filter and accepted types come from the subscriptions the services
    build their subscribers from (``subscriber_of``), not from a second list."""
    subscriptions = SUBSCRIPTIONS[service]()
    document = faststream_subscribers(asyncapi(subscriptions, service=service))
    expected = {}
    for subscription in subscriptions:
        settings = subscription.consumer_settings()
        expected[f"{settings.durable}:{settings.names.stream}"] = (
            settings.filter_subject,
            set(accepted(subscription)),
        )
    assert document == expected


def test_every_consumer_is_described() -> None:
    described = {s.durable: s.names.stream for subs in SUBSCRIPTIONS.values() for s in subs()}
    assert described == {
        "meetings": "VSS_CASE",
        "notifications-case": "VSS_CASE",
        "notifications-meetings": "VSS_MEETINGS",
        "projections": "VSS_CASE",
        "projections-notifications": "VSS_NOTIFICATIONS",
        "projections-meetings": "VSS_MEETINGS",
        "sharing": "VSS_CASE",
    }


def test_an_earlier_version_is_accepted_with_its_type(contracts_doc: dict[str, Any]) -> None:
    """The consumers upcast SipDecided v1, which stays on the stream: it is an accepted message."""
    (subscription,) = SUBSCRIPTIONS["meetings"]()
    _, types = faststream_subscribers(asyncapi([subscription], service="meetings"))["meetings:VSS_CASE"]
    assert {ce.SipDecided.TYPE, ce.SipDecidedV1.TYPE} <= types
    assert ce.GoalSet.TYPE not in types  # ignored by the schedule's table
    assert ce.GoalSet.TYPE in ignored(subscription)


# -------------------------------------------------------------- a real disagreement is reported
def _meetings() -> Subscription:
    (subscription,) = SUBSCRIPTIONS["meetings"]()
    return subscription


def _without_channel_message(doc: dict[str, Any], channel: str, message: str) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    del changed["channels"][channel]["messages"][message]
    return changed


def _with_new_case_type(doc: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    changed["components"]["messages"]["CaseArchived_v1"] = {"name": "se.vss.case.CaseArchived.v1"}
    changed["channels"]["CaseArchived"] = {
        "address": "vss.case.{caseId}.CaseArchived",
        "messages": {"CaseArchived_v1": {"$ref": "#/components/messages/CaseArchived_v1"}},
        "x-nats-stream": CASE_STREAM,
    }
    return changed


def _identity(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


NEGATIVE: dict[str, tuple[Callable[[], Subscription], Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    # A consumer whose table forgot a type: it neither accepts nor ignores it.
    "a dropped handler": (
        lambda: Subscription.dispatched("meetings", BusNames(), CASE_HANDLERS.without(ce.CaseClosed.TYPE)),
        _identity,
        "meetings:VSS_CASE: se.vss.case.CaseClosed.v1 is on its channels but neither accepted nor ignored",
    ),
    # A subject filter that no channel of the contracts' document is within.
    "a renamed channel": (
        lambda: replace(_meetings(), names=replace(BusNames(), subject_prefix="vss.cases")),
        _identity,
        "meetings:VSS_CASE: no channel of the contracts' document is within vss.cases.>",
    ),
    # The case subjects read from another stream than the one the contracts put them on.
    "another stream": (
        lambda: replace(_meetings(), names=replace(BusNames(), stream="VSS_CASES")),
        _identity,
        "meetings:VSS_CASES: channel CaseClosed is on VSS_CASE, the subscriber reads VSS_CASES",
    ),
    # The contracts gain a case event type the consumer has not decided about.
    "a type the contracts gained": (
        _meetings,
        _with_new_case_type,
        "meetings:VSS_CASE: se.vss.case.CaseArchived.v1 is on its channels but neither accepted nor ignored",
    ),
    # The contracts no longer list a type the subscriber accepts (an earlier version dropped).
    "a type the contracts dropped": (
        _meetings,
        lambda doc: _without_channel_message(doc, "SipDecided", "SipDecided_v1"),
        "meetings:VSS_CASE: accepts se.vss.case.SipDecided.v1, which the contracts do not list on vss.case.>",
    ),
    # The contracts no longer list a type the consumer's table ignores.
    "an ignored type the contracts dropped": (
        _meetings,
        lambda doc: _without_channel_message(doc, "GoalSet", "GoalSet_v1"),
        "meetings:VSS_CASE: ignores se.vss.case.GoalSet.v1, which the contracts do not list on vss.case.>",
    ),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_a_disagreement_is_reported(case: str, contracts_doc: dict[str, Any]) -> None:
    subscription, change, expected = NEGATIVE[case]
    problems = _compare("meetings", [subscription()], change(contracts_doc))
    assert expected in problems, problems


def test_a_subscriber_documenting_an_ignored_type_is_reported(contracts_doc: dict[str, Any]) -> None:
    """A table cannot both handle and ignore a type; a hand-made subscription can, and is caught."""
    subscription = replace(_meetings(), ignores=(ce.CaseClosed.TYPE, *_meetings().ignores))
    problems = _compare("meetings", [subscription], contracts_doc)
    assert problems == ["meetings:VSS_CASE: se.vss.case.CaseClosed.v1 both accepted and ignored"]


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
