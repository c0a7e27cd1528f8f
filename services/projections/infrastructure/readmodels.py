"""The tables of one generation of read models, and the queries the API runs on them.

The read models are registered in :mod:`.tables` (one class each); this writer creates,
writes and compares whatever is registered there:

- ``case_views``: the overview document of each case (JSON) and the columns the
  filters need; ``case_grants`` (who may see it), ``case_coordinator_people`` (caseloads),
  ``open_actions`` (overdue lists) and ``case_facts`` (statistics, no personal data)
  are derived from the document whenever it is written.
- ``journal``: one row per event.
- ``deliveries``: one row per event of the case's delivery record (stream
  ``VSS_NOTIFICATIONS``: who was told what, when, on which channel), applied by the
  projector's second consumer with its own position in ``consumer_positions``.
- ``meetings``: one row per meeting of the case's schedule (stream ``VSS_MEETINGS``),
  changed in place, and ``meeting_heads`` (how far each case's schedule is applied),
  written by the projector's third consumer with its own position.
- ``consumer_positions`` (the shared checkpoint) and ``read_position``: the stream
  sequence and the case-store log position the tables reflect, written in the same
  transaction as the change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import orjson

from services.projections.application.deliveries import DELIVERIES_CONSUMER
from services.projections.application.meetings import MEETINGS_CONSUMER
from services.projections.application.ports import Position
from services.projections.domain import deliveries, meetings
from services.projections.domain.case_view import View
from services.projections.domain.meetings import Head, Meeting
from services.projections.infrastructure.database import Connection
from services.projections.infrastructure.tables import (
    CASE_TABLES,
    READ_MODELS,
    CaseTable,
    Deliveries,
    Journal,
    MeetingHeads,
    Meetings,
)
from services.shared.bus import checkpoint

CONSUMER = "projections"

TABLES = (
    checkpoint.CREATE_POSITIONS_TABLE,
    "CREATE TABLE IF NOT EXISTS read_position (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " stream_sequence BIGINT NOT NULL, log_position BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    *(statement for model in READ_MODELS for statement in model.schema),
)

_COPY_FROM = 50  # rows: fewer go in as INSERTs (COPY costs a round trip more)

# The tables a comparison of two generations looks at (all but bookkeeping timestamps).
COMPARED = {model.table: model.order for model in READ_MODELS}


class ReadModels:
    """One generation's tables over one connection (not shared between threads at once)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._key_session: Callable[[], Connection] | None = None  # see defer_journal_key

    @property
    def generation(self) -> str:
        return self.conn.generation

    def create_tables(self) -> None:
        """Create what is missing; a case table added since the generation was built is filled
        from the overview documents it already holds (no rebuild needed for a new case table)."""
        added = [table for table in CASE_TABLES if not self._exists(table.table)]
        for statement in TABLES:
            self.conn.execute(statement)
        if added and len(added) < len(CASE_TABLES):
            self._fill(added)

    def missing_columns(self) -> list[str]:
        """``table.column`` of each column a read model writes that this generation's table
        lacks (built by an older version: writing to that table fails until a rebuild)."""
        missing = []
        for model in READ_MODELS:
            have = self._columns(model.table)
            missing += [f"{model.table}.{c}" for c in _names(model.columns) if have and c not in have]
        return missing

    def _columns(self, table: str) -> set[str]:
        if self.conn.is_postgres:
            query = (
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?"
            )
            return {row[0] for row in self.conn.fetchall(query, (table,))}
        return {row[1] for row in self.conn.fetchall(f"PRAGMA table_info({table})")}

    def _exists(self, table: str) -> bool:
        query = (
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name = ?"
            if self.conn.is_postgres
            else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        )
        row = self.conn.fetchone(query, (table,))
        return bool(row and row[0])

    def _fill(self, tables: Sequence[CaseTable]) -> None:
        with self.transaction() as cursor:
            ids = cursor.execute(self.conn.sql("SELECT case_id FROM case_views ORDER BY case_id")).fetchall()
            self.derive(cursor, [row[0] for row in ids], tables)

    def close(self) -> None:
        self.conn.close()

    def defer_journal_key(self, session: Callable[[], Connection]) -> None:
        """Drop the journal's key from the (empty) table; the next fresh :meth:`write` builds it again.

        A rebuild appends a million journal rows in stream order, so every batch would
        insert into the key's index at a thousand places; building it once at the end
        sorts instead. It is built while the fresh write makes its rows: on PostgreSQL by
        a session of its own (``session()``, a server process of its own; committed, so
        durable, on its own), giving the table the very same primary key back; on SQLite
        by this connection, in the write's transaction (SQLite works without holding
        Python's lock meanwhile). SQLite cannot add a primary key to a table: there the
        journal is re-created without one, and gets a unique index on the same columns
        (``journal_key``): the same constraint and the same lookups, under another name
        in the schema.
        """
        if self.conn.is_postgres:
            self.conn.execute("ALTER TABLE journal DROP CONSTRAINT journal_pkey")
        else:
            self.conn.execute("DROP TABLE journal")
            self.conn.execute(f"CREATE TABLE journal ({Journal.fields})")
        self._key_session = session

    def _build_journal_key(self) -> None:
        if self.conn.is_postgres:
            self.conn.execute(f"ALTER TABLE journal ADD {Journal.primary_key}")
        else:
            self.conn.execute("CREATE UNIQUE INDEX journal_key ON journal (case_id, version)")

    def _journal_key_meanwhile(self) -> Future[None] | None:
        """The deferred journal key, being built in a thread (None if none is deferred)."""
        session, self._key_session = self._key_session, None
        if session is None:
            return None

        def build() -> None:
            if not self.conn.is_postgres:
                self._build_journal_key()  # this connection: the caller leaves it alone meanwhile
                return
            other = ReadModels(session())
            try:
                other._build_journal_key()
            finally:
                other.close()

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-key")
        try:
            return pool.submit(build)
        finally:
            pool.shutdown(wait=False)  # the thread ends with its one task

    def transaction(self) -> AbstractContextManager[Any]:
        return self.conn.transaction()

    # ---------------------------------------------------------------------- positions
    def position(self) -> Position:
        row = self.conn.fetchone(
            "SELECT stream_sequence, log_position, updated_at FROM read_position WHERE id = 1"
        )
        return Position(int(row[0]), int(row[1]), str(row[2])) if row else Position(0, 0, None)

    def applied_through(self) -> int:
        return self.position().stream_sequence

    def deliveries_applied_through(self) -> int:
        """The last sequence of the notifications stream applied (0: none)."""
        return self._applied_through(DELIVERIES_CONSUMER)

    def meetings_applied_through(self) -> int:
        """The last sequence of the meetings stream applied (0: none)."""
        return self._applied_through(MEETINGS_CONSUMER)

    def _applied_through(self, consumer: str) -> int:
        row = self.conn.fetchone(
            "SELECT stream_sequence FROM consumer_positions WHERE consumer = ?", (consumer,)
        )
        return int(row[0]) if row else 0

    # -------------------------------------------------------------------------- writes
    def load_view(self, case_id: str, cursor: Any | None = None) -> View | None:
        query = self.conn.sql("SELECT doc FROM case_views WHERE case_id = ?")
        row = (cursor or self.conn.raw).execute(query, (case_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def write(
        self,
        cursor: Any,
        views: Iterable[View],
        journal_rows: Sequence[tuple[Any, ...]],
        *,
        stream_sequence: int,
        event_id: str | None,
        log_position: int,
        at: str,
        fresh: bool = False,
    ) -> bool:
        """Write changed views and new journal rows, and move the position, in the caller's transaction.

        False (the caller rolls back) if the position is already at or beyond ``stream_sequence``.
        ``fresh``: the views' tables hold nothing yet (a rebuild's one write of its views), so
        the rows are inserted as they are (on PostgreSQL with ``COPY``), with nothing to
        delete or replace first; a case already there is then an error. A fresh write also
        builds the journal's key if :meth:`defer_journal_key` dropped it.
        """
        sql = self.conn.sql
        if not checkpoint.advance(cursor, CONSUMER, stream_sequence, event_id, p=self.conn.p):
            return False
        cursor.execute(
            sql(
                "INSERT INTO read_position (id, stream_sequence, log_position, updated_at)"
                " VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET stream_sequence = excluded.stream_sequence,"
                " log_position = CASE WHEN excluded.log_position > read_position.log_position"
                " THEN excluded.log_position ELSE read_position.log_position END,"
                " updated_at = excluded.updated_at"
            ),
            (stream_sequence, log_position, at),
        )
        key = self._journal_key_meanwhile() if fresh else None
        try:
            self._write_views(cursor, views, fresh, key)
        except BaseException:
            if key is not None:  # not before it is done: it may be using this connection
                with contextlib.suppress(Exception):
                    key.result()
            raise
        if key is not None:
            key.result()
        self.write_journal(cursor, journal_rows)
        return True

    def _write_views(
        self,
        cursor: Any,
        views: Iterable[View],
        fresh: bool,
        key: Future[None] | None,
        tables: Sequence[CaseTable] = CASE_TABLES,
    ) -> None:
        """The rows ``tables`` (every registered case table) derive from each view, written
        table by table."""
        rows: list[list[tuple[Any, ...]]] = [[] for _ in tables]
        ids: list[tuple[str]] = []
        for view in views:
            ids.append((view["case_id"],))
            for table, table_rows in zip(tables, rows, strict=True):
                table_rows.extend(table.rows(view))
        if key is not None and not self.conn.is_postgres:
            key.result()  # this connection is free again
        if not ids:
            return
        sql = self.conn.sql
        for table, table_rows in zip(tables, rows, strict=True):
            if fresh:
                self._insert(cursor, table.table, table.columns, table_rows)
                continue
            if table.update is None:
                cursor.executemany(sql(f"DELETE FROM {table.table} WHERE case_id = ?"), ids)
            if not table_rows:
                continue
            marks = ", ".join("?" for _ in table.columns.split(","))
            conflict = f" ON CONFLICT (case_id) DO UPDATE SET {table.update}" if table.update else ""
            cursor.executemany(
                sql(f"INSERT INTO {table.table} ({table.columns}) VALUES ({marks}){conflict}"), table_rows
            )

    def write_views(self, cursor: Any, views: Iterable[View]) -> None:
        """Write views as a live write does (each case's rows replaced), without the position."""
        self._write_views(cursor, views, False, None)

    def write_out(self, cursor: Any, views: Iterable[View]) -> None:
        """A rebuild's views written out before its end: their documents (the overview's rows)
        only; :meth:`derive` makes the other tables' rows of those left out at the end."""
        self._write_views(cursor, views, False, None, CASE_TABLES[:1])

    def derive(
        self, cursor: Any, case_ids: Sequence[str], tables: Sequence[CaseTable] = CASE_TABLES[1:]
    ) -> None:
        """The rows of ``tables`` (every case table but the overview) for ``case_ids``, none of
        which has any yet, from their stored documents, a hundred cases at a time."""
        sql, page = self.conn.sql, 100
        for start in range(0, len(case_ids), page):
            chunk = case_ids[start : start + page]
            marks = ", ".join("?" for _ in chunk)
            docs = cursor.execute(sql(f"SELECT doc FROM case_views WHERE case_id IN ({marks})"), chunk)
            views = [orjson.loads(doc[0]) for doc in docs.fetchall()]
            for table in tables:
                self._insert(cursor, table.table, table.columns, [r for v in views for r in table.rows(v)])

    def write_journal(self, cursor: Any, journal_rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert journal rows (a key already there is an error, as for any insert)."""
        self._insert(cursor, Journal.table, Journal.columns, journal_rows)

    def _insert(self, cursor: Any, table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Plain inserts. On PostgreSQL many rows go in with ``COPY``: the same rows, at a fraction
        of the client's and the server's CPU of an ``INSERT`` each (a rebuild's batches)."""
        if not rows:
            return
        if self.conn.is_postgres and len(rows) >= _COPY_FROM:
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in columns.split(","))
        cursor.executemany(self.conn.sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), rows)

    def advance(self, cursor: Any, consumer: str, stream_sequence: int, event_id: str | None) -> bool:
        return checkpoint.advance(cursor, consumer, stream_sequence, event_id, p=self.conn.p)

    def delivery_head(self, cursor: Any, case_id: str) -> tuple[int, str] | None:
        """The last version of the case's delivery record applied here, and its hash."""
        cursor.execute(
            self.conn.sql(
                "SELECT version, event_hash FROM deliveries WHERE case_id = ? ORDER BY version DESC LIMIT 1"
            ),
            (case_id,),
        )
        row = cursor.fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def write_deliveries(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            marks = ", ".join("?" for _ in deliveries.COLUMNS)
            cursor.executemany(
                self.conn.sql(f"INSERT INTO {Deliveries.table} ({Deliveries.columns}) VALUES ({marks})"), rows
            )

    def meeting_head(self, cursor: Any, case_id: str) -> Head | None:
        """The last version of the case's meeting schedule applied here, its hash, and whether
        the schedule so far continued its chain."""
        cursor.execute(
            self.conn.sql("SELECT version, event_hash, verified FROM meeting_heads WHERE case_id = ?"),
            (case_id,),
        )
        row = cursor.fetchone()
        return (int(row[0]), str(row[1]), bool(row[2])) if row else None

    def load_meeting(self, cursor: Any, case_id: str, meeting_id: str) -> Meeting | None:
        cursor.execute(
            self.conn.sql(f"SELECT {Meetings.columns} FROM meetings WHERE case_id = ? AND meeting_id = ?"),
            (case_id, meeting_id),
        )
        row = cursor.fetchone()
        return meetings.from_row(tuple(row)) if row else None

    def write_meetings(
        self, cursor: Any, changed: Sequence[Meeting], heads: Sequence[tuple[str, Head]]
    ) -> None:
        """Insert or replace the changed meetings and move their cases' heads."""
        sql = self.conn.sql
        if changed:
            marks = ", ".join("?" for _ in meetings.COLUMNS)
            cursor.executemany(
                sql(
                    f"INSERT INTO {Meetings.table} ({Meetings.columns}) VALUES ({marks})"
                    f" ON CONFLICT (case_id, meeting_id) DO UPDATE SET {Meetings.update}"
                ),
                [meetings.row(m) for m in changed],
            )
        if heads:
            cursor.executemany(
                sql(
                    f"INSERT INTO {MeetingHeads.table} ({MeetingHeads.columns}) VALUES (?, ?, ?, ?)"
                    f" ON CONFLICT (case_id) DO UPDATE SET {MeetingHeads.update}"
                ),
                [
                    (case_id, version, event_hash, 1 if verified else 0)
                    for case_id, (version, event_hash, verified) in heads
                ],
            )

    # ------------------------------------------------------------------------- queries
    def overview(self, case_id: str) -> View | None:
        return self.load_view(case_id)

    def journal(self, case_id: str, after_version: int, limit: int) -> list[dict[str, Any]]:
        rows = self.conn.fetchall(
            "SELECT version, log_position, event_id, type, time, actor_id, actor_org, actor_principal,"
            " summary, verified FROM journal WHERE case_id = ? AND version > ? ORDER BY version LIMIT ?",
            (case_id, after_version, limit),
        )
        return [
            {
                "version": int(r[0]),
                "log_position": int(r[1]),
                "event_id": r[2],
                "type": r[3],
                "time": r[4],
                "actor_id": r[5],
                "actor_organisation": r[6],
                "actor_principal": r[7],
                "summary": r[8],
                "verified": bool(r[9]),
            }
            for r in rows
        ]

    def deliveries(self, case_id: str, after_version: int, limit: int) -> list[dict[str, Any]]:
        """The case's delivery record in its order (``version`` 1, 2, 3 … of that record)."""
        rows = self.conn.fetchall(
            "SELECT version, event_id, type, status, time, at, delivery_key, recipient_id, recipient_name,"
            " recipient_role, recipient_organisation, recipient_user, channel, template, cause_event_id,"
            " cause_event_type, urgent, warning_id, attempts, message_id, reason, details, summary, verified"
            " FROM deliveries WHERE case_id = ? AND version > ? ORDER BY version LIMIT ?",
            (case_id, after_version, limit),
        )
        return [
            {
                "record_version": int(r[0]),
                "event_id": r[1],
                "type": r[2],
                "status": r[3],
                "time": r[4],
                "at": r[5],
                "delivery_key": r[6],
                "recipient": None
                if r[7] is None
                else {
                    "recipient_id": r[7],
                    "name": r[8],
                    "role": r[9],
                    "organisation_id": r[10],
                    "user_id": r[11],
                },
                "channel": r[12],
                "template": r[13],
                "cause_event_id": r[14],
                "cause_event_type": r[15],
                "urgent": bool(r[16]),
                "warning_id": r[17],
                "attempts": None if r[18] is None else int(r[18]),
                "message_id": r[19],
                "reason": r[20],
                "details": orjson.loads(r[21]),
                "summary": r[22],
                "verified": bool(r[23]),
            }
            for r in rows
        ]

    def meetings(self, case_id: str) -> list[dict[str, Any]]:
        """The case's meetings in the order they start (then by meeting id), whatever their
        status: which are upcoming is for the caller to decide, by its own today."""
        rows = self.conn.fetchall(
            f"SELECT {Meetings.columns} FROM meetings WHERE case_id = ? ORDER BY starts_utc, meeting_id",
            (case_id,),
        )
        return [meetings.answer(meetings.from_row(tuple(r))) for r in rows]

    def visible_cases(
        self,
        organisation_id: str,
        today: str,
        *,
        coordinator: tuple[str, str] | None = None,
        phase: str | None = None,
        municipality: str | None = None,
        overdue: bool | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[View]:
        """Cases the organisation may see, filtered, ordered by case id (keyset paging).

        ``coordinator`` is a person, (organisation id, user id): a user id alone names
        someone different in each organisation.
        """
        where = ["g.organisation_id = ?", "(g.valid_until IS NULL OR g.valid_until >= ?)"]
        params: list[Any] = [organisation_id, today]
        if coordinator is not None:
            where.append(
                "EXISTS (SELECT 1 FROM case_coordinator_people c WHERE c.case_id = v.case_id"
                " AND c.organisation_id = ? AND c.user_id = ?)"
            )
            params.extend(coordinator)
        if phase is not None:
            where.append("v.phase = ?")
            params.append(phase)
        if municipality is not None:
            where.append("v.municipality_code = ?")
            params.append(municipality)
        if overdue is not None:
            condition = (
                "(v.status = 'active' AND (v.next_follow_up_on < ? OR EXISTS (SELECT 1 FROM open_actions a"
                " WHERE a.case_id = v.case_id AND a.due_on < ?)))"
            )
            where.append(condition if overdue else f"NOT {condition}")
            params.extend([today, today])
        if after is not None:
            where.append("v.case_id > ?")
            params.append(after)
        rows = self.conn.fetchall(
            "SELECT v.doc FROM case_views v JOIN case_grants g ON g.case_id = v.case_id"
            f" WHERE {' AND '.join(where)} ORDER BY v.case_id LIMIT ?",
            (*params, limit),
        )
        return [orjson.loads(row[0]) for row in rows]

    def coordinator_cases(self, user_id: str, organisation_id: str) -> list[View]:
        """The active cases the person (organisation, user id) coordinates."""
        rows = self.conn.fetchall(
            "SELECT v.doc FROM case_coordinator_people c JOIN case_views v ON v.case_id = c.case_id"
            " WHERE c.user_id = ? AND c.organisation_id = ? AND v.status = 'active' ORDER BY v.case_id",
            (user_id, organisation_id),
        )
        return [orjson.loads(row[0]) for row in rows]

    def client_cases(self, personal_identity_number: str) -> list[View]:
        """The cases (active and closed) whose client is this person, by case id."""
        rows = self.conn.fetchall(
            "SELECT v.doc FROM client_cases c JOIN case_views v ON v.case_id = c.case_id"
            " WHERE c.personal_identity_number = ? ORDER BY v.case_id",
            (personal_identity_number,),
        )
        return [orjson.loads(row[0]) for row in rows]

    def overdue_actions(self, organisation_id: str, today: str, limit: int) -> list[tuple[str, str, str]]:
        """(case id, action id, due on) of open actions the organisation is responsible for, past due."""
        rows = self.conn.fetchall(
            "SELECT case_id, action_id, due_on FROM open_actions WHERE organisation_id = ? AND due_on < ?"
            " ORDER BY due_on, case_id LIMIT ?",
            (organisation_id, today, limit),
        )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def overdue_follow_ups(self, organisation_id: str, today: str, limit: int) -> list[tuple[str, str]]:
        """(case id, follow-up date) of active cases the organisation coordinates, past their follow-up."""
        rows = self.conn.fetchall(
            "SELECT DISTINCT v.case_id, v.next_follow_up_on FROM case_views v"
            " JOIN case_coordinator_people c ON c.case_id = v.case_id"
            " WHERE c.organisation_id = ? AND v.status = 'active' AND v.next_follow_up_on < ?"
            " ORDER BY v.next_follow_up_on, v.case_id LIMIT ?",
            (organisation_id, today, limit),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def all_facts(self) -> list[dict[str, Any]]:
        return [orjson.loads(row[0]) for row in self.conn.fetchall("SELECT facts FROM case_facts")]

    def case_count(self) -> int:
        return int(self.conn.fetchone("SELECT COUNT(*) FROM case_views")[0])

    def granted_organisations(self, today: str) -> dict[str, int]:
        """Each organisation that may see a case today (coordinates it, or the consent covers it),
        with how many cases: whom VSS shares with (`vss status` names those it cannot reach)."""
        rows = self.conn.fetchall(
            "SELECT organisation_id, COUNT(*) FROM case_grants WHERE valid_until IS NULL OR valid_until >= ?"
            " GROUP BY organisation_id ORDER BY organisation_id",
            (today,),
        )
        return {str(row[0]): int(row[1]) for row in rows}

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every compared table, ordered: two generations built from the same history dump equal."""
        return {
            table: [tuple(row) for row in self.conn.fetchall(f"SELECT * FROM {table} ORDER BY {order}")]
            for table, order in COMPARED.items()
        }


def _names(columns: str) -> list[str]:
    """The column names of a model's ``columns`` list ("a, b, c")."""
    return [name.strip() for name in columns.split(",") if name.strip()]
