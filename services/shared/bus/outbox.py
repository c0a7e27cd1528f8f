"""Stored events as the relay's outbox messages: one CloudEvent envelope, one set of headers.

The case, meetings and notifications stores keep each event as a state document
(``event_id``, ``recorded_at``, actor, correlation, ``prev_hash``, ``data``, ``hash``);
:func:`published_event` is the envelope all three publish it in (the case events'), and
:class:`CloudEventLog` the relay's ``EventLog`` over such a store. :func:`outbox_message`
is the one place the headers of a published message are written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import orjson

from services.shared.bus.names import BusNames
from services.shared.bus.relay import OutboxMessage
from services.shared.eventstore import EventStoreUrl
from services.shared.json_bytes import kept
from services.shared.tracing import TRACEPARENT
from vss_contracts.envelope import dataschema_for
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_LOG_POSITION, HEADER_MSG_ID

_Row = TypeVar("_Row")


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """A stored event as the relay publishes it: its CloudEvent's JSON and what addresses it."""

    position: int
    event_id: str
    case_id: str
    type_name: str
    body: bytes
    traceparent: str | None = None  # the trace that stored it (tracing on): a header, not the body


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A row of a service's own log kept in the state layout (the meetings and notifications
    stores), as the relay reads it and as a store that takes its stream over writes it."""

    position: int  # in the store's log
    case_id: str
    version: int  # in the case's stream of the service's events
    type: str
    state: dict[str, Any]  # metadata, data, prev_hash, hash (the layout cloud_event_body reads)

    @property
    def event_id(self) -> str:
        return str(self.state["event_id"])


def wire_time(recorded_at: str) -> str | datetime:
    """A stored ``recorded_at`` (``datetime.isoformat()``) as the CloudEvent's ``time`` is written.

    Recorded in UTC, "+00:00" is the contracts' "Z" with the same digits, so the string is
    reused (no datetime per event on the relay's path); anything else is parsed, and the
    caller's orjson writes it (``OPT_UTC_Z``).
    """
    return recorded_at[:-6] + "Z" if recorded_at.endswith("+00:00") else datetime.fromisoformat(recorded_at)


def cloud_event_body(
    *, source: str, type_name: str, case_id: str, version: int, position: int, state: dict[str, Any]
) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": state["event_id"],
        "source": source,
        "type": type_name,
        "subject": case_id,
        "time": wire_time(state["recorded_at"]),
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(type_name),
        "data": state["data"],
        "caseversion": version,
        "logposition": position,
        "correlationid": state["correlation_id"],
        "causationid": state["causation_id"],
        "actorid": state["actor_id"],
        "actororg": state["actor_organisation"],
        "actorprincipal": state["principal"],
        "prevhash": state["prev_hash"],
        "eventhash": state["hash"],
    }


def logged_event(body: Mapping[str, Any]) -> LoggedEvent:
    """The inverse of :func:`cloud_event_body`: a published event as its store kept it, for a
    store that takes its stream over.

    The state is the one the event's hash was computed over (``recorded_at`` as stored, as
    :func:`vss_contracts.chain.cloud_event_hash` reads it); the caller checks the hash.
    """
    recorded_at = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00")).isoformat()
    state: dict[str, Any] = {
        "event_id": body["id"],
        "recorded_at": recorded_at,
        "actor_id": body["actorid"],
        "actor_organisation": body["actororg"],
        "principal": body["actorprincipal"],
        "correlation_id": body["correlationid"],
        "causation_id": body["causationid"],
        "prev_hash": body["prevhash"],
        "data": body["data"],
        "hash": body["eventhash"],
    }
    return LoggedEvent(
        int(body["logposition"]), str(body["subject"]), int(body["caseversion"]), str(body["type"]), state
    )


def published_event(
    *,
    source: str,
    type_name: str,
    case_id: str,
    version: int,
    position: int,
    state: dict[str, Any],
    extensions: Mapping[str, object] | None = None,
) -> PublishedEvent:
    """A stored event's CloudEvent JSON; ``extensions`` go last, after the envelope's attributes."""
    body = cloud_event_body(
        source=source, type_name=type_name, case_id=case_id, version=version, position=position, state=state
    )
    if extensions:
        body.update(extensions)
    return PublishedEvent(
        position,
        state["event_id"],
        case_id,
        type_name,
        kept(orjson.dumps(body, option=orjson.OPT_UTC_Z)),  # a relay holds a page of them
        state.get(TRACEPARENT),
    )


def outbox_message(
    *,
    position: int,
    event_id: str,
    subject: str,
    body: bytes,
    type_name: str,
    commit_key: str,
    traceparent: str | None = None,
) -> OutboxMessage:
    """The message the relay publishes, with the headers NATS and the subscribers read."""
    headers = {HEADER_MSG_ID: event_id, HEADER_EVENT_TYPE: type_name, HEADER_LOG_POSITION: str(position)}
    if traceparent is not None:
        headers[TRACEPARENT] = traceparent
    return OutboxMessage(
        position=position,
        event_id=event_id,
        subject=subject,
        body=body,
        headers=headers,
        commit_key=commit_key,
    )


class CloudEventLog(Generic[_Row]):
    """The relay's ``EventLog`` over a store of case-keyed events: a subclass says how to read
    its log (:meth:`fetch`) and how one row is published (:meth:`published`); each event goes
    to ``<prefix>.<case id>.<event name>``, the events of one case in one commit together.
    """

    def __init__(self, names: BusNames, *, type_prefix: str, local: bool) -> None:
        self.names = names
        self.local = local  # the relay's EventLog.local: a fetch is a local file read
        self._type_prefix = type_prefix
        self._event_names: dict[str, str] = {}  # type name -> the subject's last token

    def event_name(self, type_name: str) -> str:
        """``se.vss.case.SipDecided.v1`` -> ``SipDecided`` (the subject's last token)."""
        return type_name.removeprefix(self._type_prefix).rsplit(".", 1)[0]

    def fetch(self, after: int, limit: int) -> Sequence[_Row]:
        raise NotImplementedError

    def published(self, row: _Row) -> PublishedEvent:
        raise NotImplementedError

    def render(self, rows: Sequence[_Row]) -> Sequence[OutboxMessage]:
        published, subject, names = self.published, self.names.subject, self._event_names
        messages = []
        for row in rows:
            event = published(row)
            type_name = event.type_name
            name = names.get(type_name) or names.setdefault(type_name, self.event_name(type_name))
            messages.append(
                outbox_message(
                    position=event.position,
                    event_id=event.event_id,
                    subject=subject(event.case_id, name),
                    body=event.body,
                    type_name=type_name,
                    commit_key=event.case_id,
                    traceparent=event.traceparent,
                )
            )
        return messages


class StoredEventStore(Protocol):
    @property
    def url(self) -> EventStoreUrl: ...

    def read_log(self, after: int, limit: int) -> Sequence[LoggedEvent]: ...


class StoredEventLog(CloudEventLog[LoggedEvent]):
    """The relay's ``EventLog`` over a service's own log of :class:`LoggedEvent` rows,
    published as CloudEvents from ``source``."""

    def __init__(self, store: StoredEventStore, names: BusNames, *, source: str, type_prefix: str) -> None:
        super().__init__(names, type_prefix=type_prefix, local=not store.url.is_postgres)
        self.store = store
        self.source = source

    def fetch(self, after: int, limit: int) -> Sequence[LoggedEvent]:
        return self.store.read_log(after, limit)

    def published(self, row: LoggedEvent) -> PublishedEvent:
        return published_event(
            source=self.source,
            type_name=row.type,
            case_id=row.case_id,
            version=row.version,
            position=row.position,
            state=row.state,
        )
