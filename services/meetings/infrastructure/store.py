"""The meetings store: each case's schedule stream with the eventsourcing library, and its side tables.

One transaction writes a schedule's new events, its snapshot (with the time its next
timer is due), the coordinators it involves and, for a case event, the consumer's
position: so a crash loses nothing, a redelivered case event changes nothing, and a
timer due while the service was down is found by one indexed query when it is back.

Events are stored as the case events are (orjson state with a hash chain per case,
topics the contracts' type names); the log (``rowid`` / ``notification_id``) is what
the relay publishes to ``VSS_MEETINGS``, shifted by the ``log_offset`` a rebuilt store
takes over from the stream (see :meth:`MeetingStore.adopt_stream`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import orjson
import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Mapper, Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from eventsourcing.utils import Environment
from psycopg.rows import DictRow

from services.meetings.application.ports import (
    AdoptedRequest,
    AlreadyApplied,
    Checkpoint,
    ConcurrentWrite,
    ScheduleHead,
    ScheduleWrite,
    eligible_requests,
)
from services.meetings.domain.schedule import Decided
from services.shared.bus import checkpoint
from services.shared.bus.outbox import LoggedEvent
from services.shared.bus.wake import store_bell
from services.shared.eventstore import EventStoreUrl, PostgresRecorderSql, RecorderTopics, SQLiteRecorderSql
from vss_contracts.envelope import CloudEvent
from vss_contracts.types import Principal

CONSUMER = "meetings"
LOG_CHANNEL = "vss_meetings_log"

SIDE_TABLES_SQL = (
    "CREATE TABLE IF NOT EXISTS schedules ("
    " case_id TEXT PRIMARY KEY, revision BIGINT NOT NULL, snapshot TEXT NOT NULL, next_due TEXT)",
    "CREATE INDEX IF NOT EXISTS schedules_next_due ON schedules (next_due)",
    "CREATE TABLE IF NOT EXISTS schedule_coordinators ("
    " user_id TEXT NOT NULL, case_id TEXT NOT NULL, PRIMARY KEY (user_id, case_id))",
    "CREATE TABLE IF NOT EXISTS already_published (event_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS log_offset (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)",
    # Coordinators' requests taken over from the meetings stream, until applied again (the
    # CloudEvent as published; case_position: the case log position it followed).
    "CREATE TABLE IF NOT EXISTS adopted_requests ("
    " sequence BIGINT PRIMARY KEY, case_id TEXT NOT NULL, case_position BIGINT, event TEXT NOT NULL)",
    checkpoint.CREATE_POSITIONS_TABLE,
)


class StoreNotMigrated(RuntimeError):
    """The meetings store lacks tables or columns of this version: run ``vss migrate``."""


class _SideWrites:
    """The side-table statements, for one placeholder style."""

    def __init__(self, p: str) -> None:
        self.p = p
        self.insert_schedule = (
            f"INSERT INTO schedules (case_id, revision, snapshot, next_due) VALUES ({p}, {p}, {p}, {p})"
        )
        self.update_schedule = (
            f"UPDATE schedules SET revision = {p}, snapshot = {p}, next_due = {p}"
            f" WHERE case_id = {p} AND revision = {p} RETURNING revision"
        )

    def write(self, c: Any, w: ScheduleWrite) -> None:
        if w.position is not None and not checkpoint.advance(
            c, CONSUMER, *w.position, p=self.p, log_position=w.log_position
        ):
            raise AlreadyApplied(f"sequence {w.position[0]} is applied already")
        snapshot = w.snapshot.decode()
        if w.expected_revision == 0:
            try:
                c.execute(self.insert_schedule, (w.case_id, w.revision, snapshot, w.next_due))
            except Exception as error:  # the other writer created it first
                raise ConcurrentWrite(str(error)) from error
        else:
            c.execute(
                self.update_schedule, (w.revision, snapshot, w.next_due, w.case_id, w.expected_revision)
            )
            if c.fetchone() is None:  # not rowcount: -1 in psycopg's pipeline mode
                raise ConcurrentWrite(f"schedule {w.case_id} is not at revision {w.expected_revision}")
        if w.adopted_request is not None:
            c.execute(f"DELETE FROM adopted_requests WHERE sequence = {self.p}", (w.adopted_request,))
        if w.coordinators is None:
            return
        c.execute(f"DELETE FROM schedule_coordinators WHERE case_id = {self.p}", (w.case_id,))
        for user_id in w.coordinators:
            c.execute(
                f"INSERT INTO schedule_coordinators (user_id, case_id) VALUES ({self.p}, {self.p})",
                (user_id, w.case_id),
            )

    def write_all(self, c: Any, writes: Sequence[ScheduleWrite], position: Checkpoint | None) -> None:
        """Several schedules' rows and, once, the consumer position of the last case event."""
        if position is not None and not checkpoint.advance(
            c,
            CONSUMER,
            position.stream_sequence,
            position.event_id,
            p=self.p,
            log_position=position.log_position,
        ):
            raise AlreadyApplied(f"sequence {position.stream_sequence} is applied already")
        for w in writes:
            self.write(c, w)


_SQLITE = _SideWrites("?")
_PG = _SideWrites("%s")


class SQLiteMeetingsRecorder(SQLiteRecorderSql, SQLiteApplicationRecorder):
    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        _SQLITE.write_all(c.sqlite_cursor, kwargs["side"], kwargs.get("position"))
        return ids

    def side_only(self, writes: Sequence[ScheduleWrite], position: Checkpoint | None = None) -> None:
        with self.datastore.transaction(commit=True) as c:
            _SQLITE.write_all(c.sqlite_cursor, writes, position)

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        with self.datastore.transaction(commit=True) as c:
            checkpoint.advance(c.sqlite_cursor, CONSUMER, stream_sequence, event_id, p="?")

    def create_side_tables(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for statement in SIDE_TABLES_SQL:
                c.execute(statement)
            checkpoint.add_log_position(c.sqlite_cursor, postgres=False)


class PostgresMeetingsRecorder(PostgresRecorderSql, PostgresApplicationRecorder):
    def _insert_events(
        self, curs: psycopg.Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        _PG.write_all(curs, kwargs["side"], kwargs.get("position"))
        curs.execute(f"NOTIFY {LOG_CHANNEL}")  # delivered at commit: wakes the relay

    def side_only(self, writes: Sequence[ScheduleWrite], position: Checkpoint | None = None) -> None:
        with self.datastore.transaction(commit=True) as curs:
            _PG.write_all(curs, writes, position)

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        with self.datastore.transaction(commit=True) as curs:
            checkpoint.advance(curs, CONSUMER, stream_sequence, event_id, p="%s")  # type: ignore[arg-type]

    def create_side_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for statement in SIDE_TABLES_SQL:
                curs.execute(statement)  # type: ignore[arg-type]
            checkpoint.add_log_position(curs, postgres=True)


MeetingsRecorder = SQLiteMeetingsRecorder | PostgresMeetingsRecorder


class _BytesMapper(Mapper[UUID]):
    """Stored events are built by :class:`MeetingStore` itself; the library only keeps them."""

    def __init__(self) -> None:
        super().__init__(transcoder=JSONTranscoder())


class MeetingsApplication(Application[UUID]):
    name = "meetings"

    def construct_env(self, name: str, env: Any = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        return _BytesMapper()


class MeetingStore:
    def __init__(self, url: str, *, create_table: bool = False) -> None:
        self.url = EventStoreUrl(url)
        env = {
            "CREATE_TABLE": "y" if create_table else "n",
            **self.url.persistence_env(
                RecorderTopics(f"{__name__}:SQLiteMeetingsRecorder", f"{__name__}:PostgresMeetingsRecorder")
            ),
        }
        self.app = MeetingsApplication(env=env)
        self.recorder = cast(MeetingsRecorder, self.app.recorder)
        self._offset: int | None = None
        self._published: set[str] | None = None  # ids adopted from the stream (read once)
        self._requests: list[AdoptedRequest] | None = None  # adopted, not yet applied (read once)
        self.lock = threading.RLock()  # one writer at a time in this process
        self.bell = store_bell(self.url)  # SQLite: each commit of meeting events wakes the relay

    def close(self) -> None:
        self.bell.close()
        self.app.close()

    # ----------------------------------------------------------------------------- writes
    def write(self, states: Sequence[tuple[int, str, dict[str, Any]]], side: ScheduleWrite) -> list[int]:
        """Store events ((version, type, state) of one case) and the side rows, in one transaction."""
        ids = self.write_batch([(states, side)])
        if side.adopted_request is not None and self._requests:
            self._requests = [r for r in self._requests if r.sequence != side.adopted_request]
        return ids

    def write_batch(
        self,
        writes: Sequence[tuple[Sequence[tuple[int, str, dict[str, Any]]], ScheduleWrite]],
        position: Checkpoint | None = None,
    ) -> list[int]:
        """Store several schedules' events and side rows and (once) the consumer position, in
        one transaction: a batch of case events applied together."""
        sides = [side for _, side in writes]
        stored = [
            StoredEvent(
                originator_id=UUID(side.case_id),
                originator_version=version,
                topic=type_name,
                state=orjson.dumps(state, option=orjson.OPT_SORT_KEYS),
            )
            for states, side in writes
            for version, type_name, state in states
        ]
        if not stored:
            self.recorder.side_only(sides, position)
            return []
        try:
            ids = self.recorder.insert_events(stored, side=sides, position=position)
        except IntegrityError as error:
            raise ConcurrentWrite(str(error)) from error
        self.bell.ring()  # committed: the relay may publish them now
        return [i + self.log_offset() for i in ids or []]

    # ------------------------------------------------------------------------------ reads
    def snapshot(self, case_id: UUID) -> dict[str, Any] | None:
        rows = self.recorder.query("SELECT snapshot FROM schedules WHERE case_id = %s", (str(case_id),))
        return cast(dict[str, Any], orjson.loads(rows[0]["snapshot"])) if rows else None

    def heads(self, case_ids: Sequence[str]) -> dict[str, ScheduleHead]:
        """The stored revision and next timer of these cases' schedules (those that exist)."""
        found: dict[str, ScheduleHead] = {}
        unique = list(dict.fromkeys(case_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = self.recorder.query(
                "SELECT case_id, revision, next_due FROM schedules"
                f" WHERE case_id IN ({', '.join(['%s'] * len(chunk))})",
                tuple(chunk),
            )
            for row in rows:
                found[row["case_id"]] = ScheduleHead(int(row["revision"]), row["next_due"])
        return found

    def due(self, now_utc_iso: str, limit: int) -> list[UUID]:
        rows = self.recorder.query(
            "SELECT case_id FROM schedules WHERE next_due IS NOT NULL AND next_due <= %s"
            " ORDER BY next_due LIMIT %s",
            (now_utc_iso, limit),
        )
        return [UUID(row["case_id"]) for row in rows]

    def timer_count(self) -> int:
        rows = self.recorder.query("SELECT COUNT(*) AS n FROM schedules WHERE next_due IS NOT NULL")
        return int(rows[0]["n"])

    def cases_of_coordinator(self, user_id: str) -> list[UUID]:
        rows = self.recorder.query(
            "SELECT case_id FROM schedule_coordinators WHERE user_id = %s ORDER BY case_id", (user_id,)
        )
        return [UUID(row["case_id"]) for row in rows]

    def applied_through(self) -> int:
        rows = self.recorder.query(
            "SELECT stream_sequence FROM consumer_positions WHERE consumer = %s", (CONSUMER,)
        )
        return int(rows[0]["stream_sequence"]) if rows else 0

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.recorder.pass_over(stream_sequence, event_id)

    def applied_log_position(self) -> int:
        """The case store's log position of the last case event applied (0: none known)."""
        rows = self.recorder.query(
            "SELECT log_position FROM consumer_positions WHERE consumer = %s", (CONSUMER,)
        )
        return int(rows[0]["log_position"] or 0) if rows else 0

    def events(self, case_id: UUID) -> list[LoggedEvent]:
        return [
            LoggedEvent(0, str(case_id), s.originator_version, s.topic, orjson.loads(s.state))
            for s in self.recorder.select_events(case_id)
        ]

    # ------------------------------------------------------------------------- the log
    def log_offset(self) -> int:
        if self._offset is None:
            rows = self.recorder.query("SELECT value FROM log_offset WHERE id = 1")
            self._offset = int(rows[0]["value"]) if rows else 0
        return self._offset

    def read_log(self, after: int, limit: int) -> list[LoggedEvent]:
        """Events after a (shifted) position, in log order, less those the stream holds already."""
        offset = self.log_offset()
        skip = self._already_published()
        notifications: Sequence[Notification] = self.recorder.select_notifications(
            start=max(0, after - offset), limit=limit, inclusive_of_start=False
        )
        events = []
        for n in notifications:
            state = orjson.loads(n.state)
            if skip and state["event_id"] in skip:
                continue
            case_id = n.originator_id if isinstance(n.originator_id, UUID) else UUID(str(n.originator_id))
            events.append(LoggedEvent(n.id + offset, str(case_id), n.originator_version, n.topic, state))
        return events

    def _already_published(self) -> set[str]:
        # Written only by adopt_stream, before the replay: read once, not per page of the log.
        if self._published is None:
            rows = self.recorder.query("SELECT event_id FROM already_published")
            self._published = {row["event_id"] for row in rows}
        return self._published

    def is_empty(self) -> bool:
        return not self.recorder.max_notification_id() and not self.recorder.query(
            "SELECT case_id FROM schedules LIMIT 1"
        )

    def adopt_stream(
        self,
        tail_position: int,
        published_ids: Sequence[str],
        requests: Sequence[tuple[int, str, int | None, bytes]] = (),
    ) -> None:
        """Before an empty store replays history: the stream's events are not published again,
        and the coordinators' requests on it are applied again in their place.

        The store's positions continue after the stream's last one, and the events the
        replay derives with an id the stream holds are skipped by :meth:`read_log`.
        ``requests``: (stream sequence, case id, case log position followed, CloudEvent JSON).
        """
        if not self.is_empty():
            raise RuntimeError("only an empty meetings store adopts a stream")
        # An adoption cut short (stopped before the first schedule was written) starts afresh.
        for table in ("log_offset", "already_published", "adopted_requests"):
            self.recorder.execute(f"DELETE FROM {table}")
        self.recorder.execute("INSERT INTO log_offset (id, value) VALUES (1, %s)", (tail_position,))
        for event_id in published_ids:
            self.recorder.execute("INSERT INTO already_published (event_id) VALUES (%s)", (event_id,))
        for sequence, case_id, case_position, event in requests:
            self.recorder.execute(
                "INSERT INTO adopted_requests (sequence, case_id, case_position, event)"
                " VALUES (%s, %s, %s, %s)",
                (sequence, case_id, case_position, event.decode()),
            )
        self._offset = tail_position
        self._published = set(published_ids)
        self._requests = None

    def adopted_requests(self, through: int, *, unplaced: bool = False) -> list[AdoptedRequest]:
        if self._requests is None:  # written only by adopt_stream: read once, then kept here
            rows = self.recorder.query(
                "SELECT sequence, case_position, event FROM adopted_requests ORDER BY sequence"
            )
            self._requests = [_adopted(int(r["sequence"]), r["case_position"], r["event"]) for r in rows]
        return eligible_requests(self._requests, through, unplaced=unplaced)

    def has_adopted_requests(self) -> bool:
        self.adopted_requests(0)  # read once
        return bool(self._requests)

    def drop_adopted_request(self, sequence: int) -> None:
        self.recorder.execute("DELETE FROM adopted_requests WHERE sequence = %s", (sequence,))
        if self._requests:
            self._requests = [r for r in self._requests if r.sequence != sequence]

    def check_migrated(self) -> None:
        try:
            self.recorder.query("SELECT 1 FROM schedules LIMIT 1")
            self.recorder.query("SELECT log_position FROM consumer_positions LIMIT 1")
            self.recorder.query("SELECT sequence FROM adopted_requests LIMIT 1")
            self.recorder.max_notification_id()
        except Exception as error:
            raise StoreNotMigrated(
                f"the meetings store at {self.url.redacted()} lacks tables or columns:"
                f" run `vss migrate` ({error})"
            ) from error


def _adopted(sequence: int, case_position: int | None, event: str) -> AdoptedRequest:
    cloud_event = CloudEvent.model_validate_json(event)
    return AdoptedRequest(
        sequence=sequence,
        case_id=UUID(cloud_event.subject),
        case_position=None if case_position is None else int(case_position),
        recorded_at=cloud_event.time,
        principal=Principal(cloud_event.actorprincipal),  # staff make meeting requests
        decided=Decided(
            UUID(cloud_event.id),
            cloud_event.meeting_data(),
            actor_id=cloud_event.actorid,
            actor_org=cloud_event.actororg,
            causation_id=cloud_event.causationid,
        ),
    )


def migrate(url: str) -> None:
    """Create the meetings store's tables (idempotent)."""
    location = EventStoreUrl(url)
    if not location.is_postgres:
        Path(location.sqlite_path()).parent.mkdir(parents=True, exist_ok=True)
    store = MeetingStore(url, create_table=True)
    try:
        store.recorder.create_side_tables()
    finally:
        store.close()
