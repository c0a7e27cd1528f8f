"""The sharing service on the bus: the case stream in, each organisation's share out.

- :class:`CaseEventHandler` is the shared consumer base's handler: each case event is
  applied with its stream sequence in one transaction (:class:`SharingService`).
- :class:`ShareLog` is the relay's outbox: the store's ``share_log`` as messages for
  ``VSS_SHARE`` (the same relay as the case stream's: in order, once; a page of the
  outbox in one atomic batch when it is long, as single messages when it is short).
- :func:`declare_share_stream` declares ``VSS_SHARE`` (this service owns it) before the
  relay binds to it, with its own description.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from services.shared.bus.consumer import Delivery, ServiceHandler, Undecodable
from services.shared.bus.names import BusNames
from services.shared.bus.outbox import outbox_message
from services.shared.bus.relay import OutboxMessage
from services.shared.bus.streams import case_stream_config, connect, declare_if_missing
from services.sharing.application.service import IncomingEvent, SharingService
from services.sharing.infrastructure.store import LoggedShare, SharingStore
from vss_contracts.registry import upcast
from vss_contracts.subjects import (
    HEADER_LOG_POSITION,
    SHARE_STREAM,
    SHARE_SUBJECT_PREFIX,
    share_subject,
)

# Outbox pages of at least this many rows go out as one atomic batch (below, as single
# messages): about where a batch's fixed cost on the server equals that of single messages
# (docs/adr/0024).
SHARE_BATCH_FROM = 16


def share_bus_names(prefix: str = "", dead_letter: BusNames | None = None) -> BusNames:
    """The share stream's names (tests give a unique prefix)."""
    return (dead_letter or BusNames()).sibling(SHARE_STREAM, SHARE_SUBJECT_PREFIX, prefix)


def share_stream_config(names: BusNames, *, replicas: int = 1) -> StreamConfig:
    """Like the case stream (full history, de-duplicated, atomic batches), described as the share."""
    return replace(
        case_stream_config(names, replicas=replicas),
        description="Each organisation's consent-scoped share of the case events (VSS sharing service)",
    )


class ShareStreamAhead(RuntimeError):
    """VSS_SHARE holds messages the sharing store's outbox does not (a store lost or restored
    from an older backup): the relay would skip that many new messages."""


async def declare_share_stream(nats_url: str, names: BusNames, *, replicas: int = 1) -> bool:
    nc = await connect(nats_url, name="sharing-declare")
    try:
        return await declare_if_missing(nc.jetstream(), share_stream_config(names, replicas=replicas))
    finally:
        await nc.close()


async def check_stream_not_ahead(nats_url: str, names: BusNames, store: SharingStore) -> None:
    """Refuse to start when the share stream ends beyond the store's outbox.

    The relay resumes after the stream's last ``Vss-Log-Position``; an outbox that starts
    again below it (an emptied or restored store) would have its first messages skipped.
    """
    nc = await connect(nats_url, name="sharing-check")
    try:
        try:
            last = await nc.jetstream().get_last_msg(names.stream, names.subjects)
        except NotFoundError:
            return
        published = int((last.headers or {}).get(HEADER_LOG_POSITION, 0))
    finally:
        await nc.close()
    stored = await asyncio.to_thread(store.last_position)
    if published > stored:
        raise ShareStreamAhead(
            f"{names.stream} ends at outbox position {published:,} but the sharing store's outbox at"
            f" {stored:,} ({store.url.redacted()}): restore the store that published it, or delete"
            f" {names.stream} so that it is published again from the start (organisations then re-read)"
        )


class CaseEventHandler(ServiceHandler[SharingService]):
    """Implements the consumer base's ``Handler`` for the sharing service."""

    def apply(self, delivery: Delivery) -> bool:
        return self.service.apply(incoming(delivery))

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        return self.service.apply_many([incoming(delivery) for delivery in deliveries])


def incoming(delivery: Delivery) -> IncomingEvent:
    """A case event as the sharing service applies it."""
    event = delivery.event
    # The payload in the current version of its type: the published dict upcast, not
    # validated again (the case service validated it when it wrote it, the chain covers it
    # since, and the share carries the body as published).
    try:
        current_type, data = upcast(event.type, event.data)
    except (KeyError, TypeError, ValueError) as error:  # an old version's payload not of its type
        raise Undecodable(f"{type(error).__name__}: {error}") from error
    return IncomingEvent(
        case_id=event.subject,
        version=event.caseversion,
        event_id=event.id,
        type_name=event.type,
        event_name=delivery.subject.rsplit(".", 1)[1],
        current_type=current_type,
        data=data,
        time=event.time,
        log_position=event.logposition,
        correlation_id=event.correlationid,
        event_hash=event.eventhash,
        body=delivery.body,
        stream_sequence=delivery.stream_sequence,
    )


class ShareLog:
    """The relay's ``EventLog`` over the sharing store's outbox."""

    def __init__(self, store: SharingStore, names: BusNames) -> None:
        self.store = store
        self.names = names
        self.local = not store.url.is_postgres

    def fetch(self, after: int, limit: int) -> Sequence[LoggedShare]:
        return self.store.read_log(after, limit)

    def render(self, rows: Sequence[LoggedShare]) -> Sequence[OutboxMessage]:
        prefix = self.names.subject_prefix
        # A long page (a busy outbox) goes out as one atomic batch, one key for all rows: a
        # key per case would make one small batch per case event, and the server's cost per
        # batch would then bound the rate. A short page (a trickle of case events) goes out
        # as single messages, each its own key: on an R1 file stream the server stages every
        # batch in a file store of its own, which costs it more than a few single messages
        # (ADR 0024). VSS_SHARE promises no batch (ADR 0009).
        batched = len(rows) >= SHARE_BATCH_FROM
        return [
            outbox_message(
                position=row.position,
                event_id=row.message_id,
                subject=share_subject(row.organisation, row.case_id, row.name, prefix=prefix),
                body=row.body,
                type_name=row.type,
                commit_key="" if batched else str(row.position),
            )
            for row in rows
        ]
