"""Rebuild the read models from the start of history into a fresh generation, then switch.

The case stream keeps every event (limits retention, no age limit), so it *is* the
history a rebuild reads; then the notifications stream (the journal's delivery rows) and
the meetings stream (each case's meetings), when there are: a missing stream (its
service never ran) leaves its rows empty. The current generation keeps serving
meanwhile; when the new one has caught up with every stream it becomes current, and the
live projector's consumers (if one runs) follow the pointer, each applying whatever
arrived on its stream since.
An interrupted rebuild leaves an unused generation behind, which the next one removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.projections.application.deliveries import DeliveryProjector
from services.projections.application.meetings import MeetingProjector
from services.projections.application.projector import KEPT_VIEWS, Projector
from services.projections.domain.events import MeetingRecord, NotificationRecord
from services.projections.infrastructure.database import Connection, ReadModelLocation, new_generation
from services.projections.infrastructure.decoding import UndecodableEvent, decode_meeting, decode_notification
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.stream_reader import read_decoded
from services.shared.bus.names import BusNames
from services.shared.bus.streams import connect, read_from_start

log = structlog.get_logger("vss.projections.rebuild")


class HistoryIncomplete(RuntimeError):
    """The stream no longer starts at sequence 1: a rebuild from it would lose history."""


@dataclass(frozen=True, slots=True)
class Progress:
    position: int  # the last stream sequence read
    target: int  # the stream's last sequence when last looked at
    events: int  # events applied so far
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        remaining = self.target - self.position
        return remaining / self.rate if self.rate > 0 else None


@dataclass(frozen=True, slots=True)
class RebuildReport:
    generation: str
    previous: str | None
    events: int
    position: int
    seconds: float
    skipped: int  # undecodable messages and events of cases never opened
    switched: bool
    deliveries: int = 0  # delivery rows from the notifications stream
    deliveries_position: int = 0  # the notifications stream's last sequence read (0: none, or no stream)
    deliveries_skipped: int = 0  # undecodable messages of the notifications stream
    meetings: int = 0  # events of the meetings stream applied
    meetings_position: int = 0  # the meetings stream's last sequence read (0: none, or no stream)
    meetings_skipped: int = 0  # undecodable messages of the meetings stream
    views_written_out: int = 0  # case views written before the end to stay within kept_views
    views_read_back: int = 0  # ... and read back at their case's next event

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    location: ReadModelLocation,
    nats_url: str,
    names: BusNames,
    *,
    batch: int = 1000,
    switch: bool = True,
    progress: Callable[[Progress], None] | None = None,
    progress_every: float = 1.0,
    notifications: BusNames | None = None,
    meetings: BusNames | None = None,
    kept_views: int | None = KEPT_VIEWS,
) -> RebuildReport:
    """Rebuild from ``names`` (the case stream) and, if given, ``notifications`` (the delivery
    record) and ``meetings`` (each case's meeting schedule). At most ``kept_views`` case views
    stay in memory (None: every one)."""
    previous = location.current()
    generation = new_generation()
    models = ReadModels(location.connect(generation))
    started = time.perf_counter()
    # The views kept in memory (up to kept_views) are long-lived: each batch's survivors
    # are frozen out of the cyclic garbage collector, which would otherwise traverse all of
    # them again at every full collection (a quarter of the CPU at a million events). Not
    # if the process had frozen objects already: unfreezing at the end would undo that.
    freeze = gc.get_freeze_count() == 0
    # And the collector does not run meanwhile: each batch arrives as tens of thousands of
    # new objects at once, which it would traverse only to find them alive (a few percent
    # of the CPU); what the rebuild leaves behind is freed by reference counting.
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        models.create_tables()
        models.defer_journal_key(lambda: location.connect(generation))
        _commit_without_waiting(models.conn)
        projector = Projector(models, keep_views=True, kept_views=kept_views, skip_orphans=True)
        nc = await connect(nats_url, name="projections-rebuild")
        try:
            js = nc.jetstream()
            info = await js.stream_info(names.stream)
            _check_complete(names.stream, info.state.messages, info.state.first_seq)
            delivered = scheduled = None
            if notifications is not None:  # checked before the long part, not after
                delivered = await _stream_state(js, notifications.stream)
                if delivered is not None:
                    _check_complete(notifications.stream, *delivered)
            if meetings is not None:
                scheduled = await _stream_state(js, meetings.stream)
                if scheduled is not None:
                    _check_complete(meetings.stream, *scheduled)
            target = int(info.state.last_seq)
            position = undecodable = 0
            last_report = started
            async with read_decoded(nats_url, names, batch) as batches:
                async for decoded in batches:
                    for _, error in decoded.undecodable:
                        undecodable += 1
                        log.warning("rebuild.undecodable", error=error)
                    projector.apply(decoded.records)
                    if freeze:
                        gc.freeze()
                    position, target = decoded.position, decoded.target
                    now = time.perf_counter()
                    if progress is not None and now - last_report >= progress_every:
                        last_report = now
                        progress(Progress(position, target, projector.applied, now - started))
            deliveries = DeliveryProjector(models)
            delivery_position = delivery_undecodable = 0
            if notifications is not None and delivered is not None:
                delivery_position, delivery_undecodable = await _rebuild_chained(
                    js, notifications, decode_notification, deliveries, batch, "delivery record"
                )
            schedules = MeetingProjector(models)
            meeting_position = meeting_undecodable = 0
            if meetings is not None and scheduled is not None:
                meeting_position, meeting_undecodable = await _rebuild_chained(
                    js, meetings, decode_meeting, schedules, batch, "meetings"
                )
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
        await asyncio.to_thread(_flush_durably, projector, models.conn)
        seconds = time.perf_counter() - started
        if progress is not None:
            progress(Progress(position, target, projector.applied, seconds))
    finally:
        models.close()
        if freeze:
            gc.unfreeze()
        if collecting:
            gc.enable()
    if switch:
        location.point_to(generation)
        for old in location.generations():
            if old not in (generation, previous):  # keep the previous one: a rollback is a pointer move
                location.drop(old)
    return RebuildReport(
        generation=generation,
        previous=previous,
        events=projector.applied,
        position=position,
        seconds=seconds,
        skipped=undecodable + projector.orphans,
        switched=switch,
        deliveries=deliveries.applied,
        deliveries_position=delivery_position,
        deliveries_skipped=delivery_undecodable,
        meetings=schedules.applied,
        meetings_position=meeting_position,
        meetings_skipped=meeting_undecodable,
        views_written_out=projector.written_out,
        views_read_back=projector.read_back,
    )


def _check_complete(stream: str, messages: int, first_seq: int) -> None:
    if messages and first_seq > 1:
        raise HistoryIncomplete(
            f"stream {stream} starts at sequence {first_seq}, not 1:"
            " the history before it is gone, so a rebuild from the stream would be incomplete"
        )


async def _stream_state(js: JetStreamContext, stream: str) -> tuple[int, int] | None:
    """(messages, first sequence) of the stream, or None if there is no such stream."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return None
    return int(info.state.messages), int(info.state.first_seq)


_Record = TypeVar("_Record", NotificationRecord, MeetingRecord)
_Applied_contra = TypeVar("_Applied_contra", contravariant=True)


class _ChainedProjector(Protocol[_Applied_contra]):
    applied: int

    def apply(
        self, records: Sequence[_Applied_contra], *, stream_sequence: int, event_id: str | None
    ) -> bool: ...


async def _rebuild_chained(
    js: JetStreamContext,
    names: BusNames,
    decode: Callable[[bytes, int], _Record],
    projector: _ChainedProjector[_Record],
    batch: int,
    what: str,
) -> tuple[int, int]:
    """Another service's per-case chained stream (the delivery record, the meetings) from
    sequence 1 to its end into the new generation, a batch per transaction with the
    position; (last sequence read, undecodable)."""
    position = undecodable = 0
    target = (await js.stream_info(names.stream)).state.last_seq
    if target == 0:
        return 0, 0
    sub = await read_from_start(
        js,
        names.stream,
        names.subjects,
        description=f"VSS projections rebuild of the {what} (ephemeral)",
    )
    try:
        while True:
            if position >= target:
                target = (await js.stream_info(names.stream)).state.last_seq
                if position >= target:
                    break
            try:
                messages = await sub.fetch(batch, timeout=2.0)
            except NatsTimeoutError:
                continue
            records = []
            for msg in messages:
                sequence = msg.metadata.sequence.stream
                try:
                    records.append(decode(msg.data, sequence))
                except UndecodableEvent as error:
                    undecodable += 1
                    log.warning("rebuild.undecodable", stream=names.stream, error=str(error))
                position = max(position, sequence)
            if messages:
                last = records[-1] if records and records[-1].stream_sequence == position else None
                projector.apply(records, stream_sequence=position, event_id=last.event_id if last else None)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    log.info("rebuild.stream", what=what, stream=names.stream, applied=projector.applied, position=position)
    return position, undecodable


def _commit_without_waiting(conn: Connection) -> None:
    """Commit the batches without waiting for the disk: nobody reads this generation yet.

    A crash can then lose or (SQLite) damage only the generation being built, which an
    interrupted rebuild leaves unused anyway; :func:`_flush_durably` makes it durable
    before the pointer can name it. On SQLite the generation has no write-ahead log
    meanwhile, only a rollback journal in memory (a failed transaction still rolls back):
    each batch's pages go into the database file once, where with the WAL they went into
    the log and then into the file again at each checkpoint (ADR 0030).
    """
    if conn.is_postgres:
        conn.execute("SET synchronous_commit TO off")
    else:
        conn.execute("PRAGMA synchronous=OFF")
        _journal_mode(conn, "memory")


def _flush_durably(projector: Projector, conn: Connection) -> None:
    """The views, the position and the journal's key (:meth:`ReadModels.defer_journal_key`),
    then everything on disk (before any switch)."""
    if conn.is_postgres:
        # The flush commits with the server's default again, so it waits until the WAL
        # is flushed up to its commit record: every batch committed before it is too.
        conn.execute("RESET synchronous_commit")
        projector.flush()
        return
    # The flush's commit syncs the database file (synchronous on: a rollback journal's
    # commit ends with it), so every batch committed before, written to the same file, is
    # on disk too; nothing else has this file open.
    conn.execute("PRAGMA synchronous=FULL")
    projector.flush()
    # Then the write-ahead log again, as every connection to a served generation has it
    # (database.py), and the connection's own setting.
    _journal_mode(conn, "wal")
    conn.execute("PRAGMA synchronous=NORMAL")


def _journal_mode(conn: Connection, mode: str) -> None:
    (now,) = conn.fetchone(f"PRAGMA journal_mode={mode}")
    if str(now).lower() != mode:
        raise RuntimeError(f"generation {conn.generation}: journal mode {now}, not {mode}")
