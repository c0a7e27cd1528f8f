"""Apply case events to the read models: the one code path of live projection and rebuild.

Live, what one pull of the case stream brings is one transaction (or each event its own,
when the pull cannot be applied whole), and the views, the journal rows and the position
move in it. A rebuild hands over thousands at once and keeps the most recently changed views
in memory: it reads back only a view it had to write out to stay within ``kept_views``, and
writes the rest once, at the end, with the position.

Idempotent per event: an event at or below the version its case's view has reached
(a redelivery, or a copy republished by the relay's refill) changes nothing but the
position, so no event is ever applied twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from services.projections.domain import case_view, journal
from services.projections.domain.case_view import View
from services.projections.domain.events import CaseEventRecord
from vss_contracts.case_events import CaseOpened

OPENED = CaseOpened.TYPE
# Case views a rebuild keeps in memory (VSS_REBUILD_KEPT_VIEWS): a generated case's view after
# three years holds about 160 KiB in memory, so some 1.6 GiB at most.
KEPT_VIEWS = 10_000


class ReadModelWriter(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...

    def load_view(self, case_id: str, cursor: Any | None = None) -> View | None: ...

    def write_journal(self, cursor: Any, journal_rows: Sequence[tuple[Any, ...]]) -> None: ...

    def write_views(self, cursor: Any, views: Iterable[View]) -> None: ...

    def write_out(self, cursor: Any, views: Iterable[View]) -> None: ...

    def derive(self, cursor: Any, case_ids: Sequence[str]) -> None: ...

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
    ) -> bool: ...


class EventOfUnknownCase(LookupError):
    """An event of a case whose opening the read models never saw."""


class _AlreadyApplied(Exception):
    pass


class Projector:
    def __init__(
        self,
        models: ReadModelWriter,
        *,
        keep_views: bool = False,
        kept_views: int | None = None,
        skip_orphans: bool = False,
    ) -> None:
        self.models = models
        # An event of a case never opened: the live consumer dead-letters it (raise), a
        # rebuild skips it (the live consumer did not apply it either).
        self.skip_orphans = skip_orphans
        self.orphans = 0
        # A rebuild is the only writer of its fresh generation, so it may keep the views, the
        # most recently changed last: at most ``kept_views`` (None: all). Those beyond are
        # written out (``written``) and read back when their case has another event.
        self.views: OrderedDict[str, View] | None = OrderedDict() if keep_views else None
        if kept_views is not None and kept_views < 1:
            raise ValueError("kept_views must be at least 1")
        self.kept_views = kept_views
        self.written: set[str] = set()
        self.written_out = 0  # views written before the end (each time one was)
        self.read_back = 0
        self.applied = 0
        self.duplicates = 0
        self.chain_breaks = 0
        self._last: tuple[int, str | None, int] = (0, None, 0)  # kept views: sequence, event id, log position

    def apply(self, events: Sequence[CaseEventRecord]) -> bool:
        """Apply events (in stream order) in one transaction. False if already applied.

        With ``keep_views`` only the journal rows are written here; the views and the
        position follow in :meth:`flush` (a rebuild's generation is not served before).
        """
        if not events:
            return True
        last = events[-1]
        try:
            with self.models.transaction() as cursor:
                touched, rows = self._project(events, cursor)
                if self.views is not None:
                    self.models.write_journal(cursor, rows)
                    self._keep(touched, cursor)
                elif not self.models.write(
                    cursor,
                    touched.values(),
                    rows,
                    stream_sequence=last.stream_sequence,
                    event_id=last.event_id,
                    log_position=max(e.log_position for e in events),
                    at=datetime.now(UTC).isoformat(),
                ):
                    raise _AlreadyApplied
        except _AlreadyApplied:
            return False
        if self.views is not None:
            self._last = (
                last.stream_sequence,
                last.event_id,
                max(self._last[2], *(e.log_position for e in events)),
            )
        self.applied += len(rows)
        return True

    def _keep(self, touched: dict[str, View], cursor: Any) -> None:
        """Keep the batch's views as the most recent; write out the least recently changed
        beyond ``kept_views`` (a tenth more at once, so that not every batch writes)."""
        views = self.views
        assert views is not None
        for case_id, view in touched.items():
            views[case_id] = view
            views.move_to_end(case_id)
        if self.kept_views is None or len(views) <= self.kept_views:
            return
        keep = max(1, self.kept_views * 9 // 10)
        out = [views.popitem(last=False)[1] for _ in range(len(views) - keep)]
        self.models.write_out(cursor, out)  # the documents; the other tables at the end
        self.written.update(view["case_id"] for view in out)
        self.written_out += len(out)

    def flush(self) -> None:
        """Write the kept views and the position reached (the end of a rebuild).

        Once: until then a projector that keeps its views has written none but the documents
        of those it wrote out. A kept one of those is written again here as any write does,
        the others' tables are derived from their documents; the rest go in ``fresh``.
        """
        assert self.views is not None, "flush is for a projector that keeps its views"
        sequence, event_id, log_position = self._last
        with self.models.transaction() as cursor:
            again = [view for case_id, view in self.views.items() if case_id in self.written]
            if again:
                self.models.write_views(cursor, again)
            self.models.write(
                cursor,
                (view for case_id, view in self.views.items() if case_id not in self.written),
                (),
                stream_sequence=sequence,
                event_id=event_id,
                log_position=log_position,
                at=datetime.now(UTC).isoformat(),
                fresh=True,
            )
            self.models.derive(cursor, sorted(self.written.difference(self.views)))

    def _project(
        self, events: Sequence[CaseEventRecord], cursor: Any
    ) -> tuple[dict[str, View], list[tuple[Any, ...]]]:
        touched: dict[str, View] = {}
        rows: list[tuple[Any, ...]] = []
        kept = self.views  # a rebuild's: a view not here is new, or written out (read back)
        start, apply, journal_row = case_view.start, case_view.apply, journal.journal_row
        for event in events:
            case_id = event.case_id
            view = touched.get(case_id)
            if view is None:
                if kept is None:
                    view = self.models.load_view(case_id, cursor)
                else:
                    view = kept.get(case_id)
                    if view is None and case_id in self.written:
                        view = self.models.load_view(case_id, cursor)
                        self.read_back += 1
            if view is None:
                if event.type != OPENED or event.version != 1:
                    if self.skip_orphans:
                        self.orphans += 1
                        continue
                    raise EventOfUnknownCase(
                        f"{event.type} v{event.version} of case {case_id}, never opened here"
                    )
                view, verified = start(event)
            elif event.version <= view["version"]:
                self.duplicates += 1
                continue
            else:
                verified = apply(view, event)
            touched[case_id] = view
            rows.append(journal_row(event, verified))
            if not verified:
                self.chain_breaks += 1
        return touched, rows

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        """Move the position past an event that was not applied (dead-lettered)."""
        try:
            with self.models.transaction() as cursor:
                if not self.models.write(
                    cursor,
                    (),
                    (),
                    stream_sequence=stream_sequence,
                    event_id=event_id,
                    log_position=0,
                    at=datetime.now(UTC).isoformat(),
                ):
                    raise _AlreadyApplied
        except _AlreadyApplied:
            return


def batches(events: Iterable[CaseEventRecord], size: int) -> Iterator[list[CaseEventRecord]]:
    batch: list[CaseEventRecord] = []
    for event in events:
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
