"""The sharing service's use case: one case event in, each organisation's share out.

Everything one event changes is written in one transaction with the consumer's position
(:mod:`services.shared.bus.checkpoint`): the event's body kept, the case's access state,
what each organisation has received, and the outbox rows ("this body to this
organisation"). The relay publishes the outbox to ``VSS_SHARE`` in its order, so a crash
anywhere loses nothing and repeats nothing: a redelivered event finds its sequence
recorded and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from services.sharing.domain.coverage import CaseAccess, day_of, decide
from services.sharing.domain.ended import sharing_ended_body
from vss_contracts.sharing_events import SharingEnded

CONSUMER = "sharing"


@dataclass(frozen=True, slots=True)
class KeptEvent:
    """A case event as the sharing service keeps it (to send as history later)."""

    case_id: str
    version: int
    event_id: str
    type_name: str  # as published
    event_name: str  # the subject's last token, e.g. SipDecided
    body: bytes  # the CloudEvent exactly as on the case stream
    event_hash: str


@dataclass(frozen=True, slots=True)
class ShareMessage:
    """One row of the outbox: a body for one organisation (a kept case event's, by its version)."""

    organisation: str
    case_id: str
    message_id: str  # Nats-Msg-Id: <organisation>:<event id>
    event_name: str
    type_name: str
    version: int | None  # a kept case event: its body is the kept one (not copied per organisation)
    body: bytes | None = None  # a message of the service's own (SharingEnded)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    case_id: str
    version: int
    event_id: str
    type_name: str  # as published
    event_name: str
    current_type: str  # after upcasting (what the access rule reads)
    data: dict[str, Any]  # the payload in the current version of its type
    time: datetime
    log_position: int | None
    correlation_id: str
    event_hash: str
    body: bytes
    stream_sequence: int


class ShareTx(Protocol):
    def advance(self, consumer: str, stream_sequence: int, event_id: str | None) -> bool: ...

    def keep(self, event: KeptEvent) -> None: ...

    def kept(self, case_id: str, first: int, last: int) -> Sequence[KeptEvent]: ...

    def case_state(self, case_id: str) -> tuple[CaseAccess, dict[str, tuple[int, bool]]]:
        """The case's access state, and per organisation that ever received the case: (its last
        version, still sharing). A case not seen yet: an empty state."""
        ...

    def save_case_state(
        self, case_id: str, access: CaseAccess, received: dict[str, tuple[int, bool]]
    ) -> None: ...

    def enqueue(self, messages: Sequence[ShareMessage]) -> None: ...


class SharingStore(Protocol):
    def transaction(self) -> AbstractContextManager[ShareTx]: ...

    def applied_through(self, consumer: str) -> int: ...

    def pass_over(self, consumer: str, stream_sequence: int, event_id: str | None) -> None: ...


def message_id(organisation: str, event_id: str) -> str:
    return f"{organisation}:{event_id}"


class SharingService:
    def __init__(self, store: SharingStore, consumer: str = CONSUMER) -> None:
        self.store = store
        self.consumer = consumer

    def applied_through(self) -> int:
        return self.store.applied_through(self.consumer)

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.store.pass_over(self.consumer, stream_sequence, event_id)

    def apply(self, event: IncomingEvent) -> bool:
        """Share one case event; False (nothing changed) if its sequence was applied already."""
        with self.store.transaction() as tx:
            return self._apply(tx, event)

    def apply_many(self, events: Sequence[IncomingEvent]) -> int:
        """Share several case events in order, in one transaction; how many were not applied before."""
        with self.store.transaction() as tx:
            return sum(self._apply(tx, event) for event in events)

    def _apply(self, tx: ShareTx, event: IncomingEvent) -> bool:
        if not tx.advance(self.consumer, event.stream_sequence, event.event_id):
            return False
        this = KeptEvent(
            event.case_id,
            event.version,
            event.event_id,
            event.type_name,
            event.event_name,
            event.body,
            event.event_hash,
        )
        tx.keep(this)
        access, received = tx.case_state(event.case_id)
        decision = decide(event.version, event.current_type, event.data, day_of(event.time), access, received)
        messages: list[ShareMessage] = []
        now = dict(received)
        for organisation, first in decision.share.items():
            history = [this] if first == event.version else [*_before(tx, event, first), this]
            messages += [_share(organisation, kept) for kept in history]
            now[organisation] = (event.version, True)
        for organisation, reason in decision.ended.items():
            last_version = received[organisation][0]
            last = tx.kept(event.case_id, last_version, last_version) if last_version else ()
            body = sharing_ended_body(
                organisation=organisation,
                case_id=event.case_id,
                reason=reason,
                cause_event_id=event.event_id,
                cause_type=event.type_name,
                cause_version=event.version,
                cause_time=event.time,
                cause_position=event.log_position,
                correlation_id=event.correlation_id,
                last_version=last_version,
                last_hash=last[0].event_hash if last else None,
            )
            messages.append(
                ShareMessage(
                    organisation,
                    event.case_id,
                    message_id(organisation, str(body["id"])),
                    SharingEnded.event_name(),
                    SharingEnded.TYPE,
                    None,
                    orjson.dumps(body),
                )
            )
            now[organisation] = (last_version, False)
        tx.save_case_state(event.case_id, access, now)
        tx.enqueue(messages)
        return True


def _before(tx: ShareTx, event: IncomingEvent, first: int) -> Iterator[KeptEvent]:
    """The kept events of the case from ``first`` up to (not including) this one."""
    yield from (kept for kept in tx.kept(event.case_id, first, event.version - 1))


def _share(organisation: str, kept: KeptEvent) -> ShareMessage:
    return ShareMessage(
        organisation,
        kept.case_id,
        message_id(organisation, kept.event_id),
        kept.event_name,
        kept.type_name,
        kept.version,
    )
