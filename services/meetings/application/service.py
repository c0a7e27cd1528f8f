"""The meetings use cases: apply a case event, fire due timers, coordinators' requests.

Each use case loads one case's schedule from its snapshot, lets the domain decide,
and stores the decided events with the new snapshot (and, for a case event, the
consumer position) in one transaction. Writes in this process are serialised by the
store's lock; a writer elsewhere is caught by the version check and retried.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson
import structlog

from services.meetings.application.ports import (
    CASE_POSITION,
    AdoptedRequest,
    AlreadyApplied,
    Checkpoint,
    Clock,
    ConcurrentWrite,
    ScheduleStore,
    ScheduleWrite,
    utc_key,
)
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.meeting import Meeting
from services.meetings.domain.schedule import (
    Decided,
    MeetingNotFound,
    MeetingSchedule,
    Rules,
    ScheduleError,
    ScheduleState,
    restore,
    settle,
    snapshot,
    stored_coordinators,
)
from vss_contracts.case_events import CaseEventData
from vss_contracts.chain import GENESIS_HASH, chain_hash
from vss_contracts.types import Principal

log = structlog.get_logger("vss.meetings")

SERVICE_ACTOR = "vss-meetings"
SERVICE_ORGANISATION = "vss"
_T = TypeVar("_T")
# Schedules kept in memory between batches of case events (VSS_MEETINGS_KEPT_SCHEDULES): a
# generated case's schedule after three years holds about 50 KiB, so some 50 MiB at most.
KEPT_SCHEDULES = 1_000


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Requester:
    """A coordinator, from the bearer token."""

    user_id: str
    organisation_id: str
    principal: Principal


@dataclass(frozen=True, slots=True)
class CaseEventIn:
    """One case event as the service applies it (see :meth:`MeetingsService.apply_case_event`)."""

    case_id: UUID
    event_id: str
    recorded_at: datetime
    data: CaseEventData
    stream_sequence: int
    log_position: int | None = None


@dataclass(slots=True)
class _Touched:
    """A schedule a batch changes: as stored before it, and its events so far."""

    schedule: MeetingSchedule  # after the batch's events so far
    expected_revision: int  # the stored snapshot's when loaded (0: none yet)
    stored_coordinators: tuple[str, ...]
    states: list[tuple[int, str, dict[str, Any]]]


def _due_by(schedule: MeetingSchedule, moment: datetime) -> bool:
    """Whether a timer of the schedule is due at or before ``moment``."""
    due = schedule.next_due()
    return due is not None and due <= moment


class _Divergent(Exception):
    """An adopted request does not fit the replayed schedule (a store error is not this)."""


class ReplayInProgress(ScheduleError):
    """A rebuilt schedule is still applying history: a new request waits (503, Retry-After)."""

    status = 503


class CaseUnknown(MeetingNotFound):
    """No schedule exists for the case (the meetings service has seen no event of it)."""


class MeetingsService:
    def __init__(
        self,
        store: ScheduleStore,
        rules: Rules,
        calendar: WorkingDays,
        clock: Clock,
        *,
        kept_schedules: int = KEPT_SCHEDULES,
    ) -> None:
        self.store = store
        self.rules = rules
        self.calendar = calendar
        self.clock = clock
        self.fired = 0  # timer events stored by this process (for status and benchmarks)
        # Schedules a batch of case events wrote, as written, the most recent last: the next
        # batch takes one only while the stored revision is still its own (no other writer).
        self._kept: OrderedDict[str, MeetingSchedule] = OrderedDict()
        self.kept_schedules = kept_schedules  # at most; a case event of another loads its snapshot

    # ------------------------------------------------------------------------------- loads
    def load(self, case_id: UUID) -> MeetingSchedule | None:
        value = self.store.snapshot(case_id)
        return restore(value, self.rules, self.calendar) if value is not None else None

    def _load_or_new(self, case_id: UUID) -> MeetingSchedule:
        return self.load(case_id) or MeetingSchedule(
            ScheduleState(case_id=case_id), self.rules, self.calendar
        )

    def meetings(self, case_id: UUID) -> list[Meeting]:
        schedule = self.load(case_id)
        if schedule is None:
            raise CaseUnknown("case_known", f"no meetings are known for case {case_id}")
        return sorted(schedule.state.meetings.values(), key=lambda m: m.starts_at)

    def schedule(self, case_id: UUID) -> MeetingSchedule:
        schedule = self.load(case_id)
        if schedule is None:
            raise CaseUnknown("case_known", f"no meetings are known for case {case_id}")
        return schedule

    def meetings_of_coordinator(self, user_id: str, organisation_id: str) -> list[Meeting]:
        """The meetings of the person (organisation, user id) in the cases they coordinate."""
        found: list[Meeting] = []
        for case_id in self.store.cases_of_coordinator(user_id):
            schedule = self.load(case_id)
            if schedule is None:
                continue
            # the person: the same user id at another organisation is someone else
            coordinator = schedule.state.coordinator(organisation_id, user_id)
            if coordinator is None:
                continue
            key = coordinator.invitee_id
            found.extend(m for m in schedule.state.meetings.values() if key in m.invitees or key in m.dropped)
        return sorted(found, key=lambda m: m.starts_at)

    # ----------------------------------------------------------------------- case events
    def apply_case_event(
        self,
        *,
        case_id: UUID,
        event_id: str,
        recorded_at: datetime,
        data: CaseEventData,
        stream_sequence: int,
        log_position: int | None = None,
    ) -> bool:
        """Apply one case event; False if its sequence was applied already (a redelivery).

        ``log_position`` (the event's position in the case store's log) is recorded with it:
        what a request's ``?position=`` waits for.
        """

        def attempt() -> bool:
            schedule = self._load_or_new(case_id)
            before = schedule.version
            decided = schedule.on_case_event(UUID(event_id), recorded_at, data)
            try:
                self._save(
                    schedule,
                    before,
                    decided,
                    at=recorded_at,
                    position=(stream_sequence, event_id),
                    log_position=log_position,
                )
            except AlreadyApplied:
                return False
            return True

        with self.store.lock:
            if log_position is not None:
                # A replay: coordinators' requests that live followed an earlier case event go first.
                self._apply_adopted_requests(through=log_position - 1)
            return self._retrying(attempt)

    def apply_case_events(self, events: Sequence[CaseEventIn]) -> int:
        """Apply case events in order, in one transaction with the consumer position of the
        last; the number applied (a sequence applied already is skipped). Raises, changing
        nothing, on failure.

        The same decisions as applying them one by one: each schedule touched is loaded once
        (or taken from those the last batch wrote, while the stored revision is still that
        one) and kept in memory between its events in the form loading it gives (``settle``);
        an event that cannot change a schedule (``MeetingSchedule.changes_nothing``) while no
        timer of its case is due by its time is passed over without loading the schedule.
        """
        with self.store.lock:
            if self.store.has_adopted_requests():
                # A replay with coordinators' requests to put back among the case events: each
                # event in its own transaction, after the requests that went before it.
                return sum(
                    self.apply_case_event(
                        case_id=e.case_id,
                        event_id=e.event_id,
                        recorded_at=e.recorded_at,
                        data=e.data,
                        stream_sequence=e.stream_sequence,
                        log_position=e.log_position,
                    )
                    for e in events
                )
            return self._retrying(lambda: self._apply_batch(events))

    def _apply_batch(self, events: Sequence[CaseEventIn]) -> int:
        through = self.store.applied_through()
        fresh = [e for e in events if e.stream_sequence > through]
        if not fresh:
            return 0
        heads = self.store.heads([str(e.case_id) for e in fresh])
        applied_position: int | None = None
        touched: dict[str, _Touched] = {}
        for event in fresh:
            case_id = str(event.case_id)
            pending = touched.get(case_id)
            if pending is None:
                head = heads.get(case_id)
                if (
                    head is not None
                    and MeetingSchedule.changes_nothing(event.data)
                    and (head.next_due is None or head.next_due > (utc_key(event.recorded_at) or ""))
                ):
                    continue  # nothing due and nothing to change: only the position moves
                kept = self._kept.pop(case_id, None)
                if kept is not None and head is not None and kept.revision == head.revision:
                    schedule = kept
                    settle(schedule)
                else:
                    schedule = self._load_or_new(event.case_id)
                pending = touched[case_id] = _Touched(
                    schedule, schedule.revision, schedule.stored_coordinators, []
                )
            elif MeetingSchedule.changes_nothing(event.data) and not _due_by(
                pending.schedule, event.recorded_at
            ):
                continue
            else:
                # Kept from the batch's earlier event, in the form loading it would give (so
                # with the same decisions), not written and loaded again.
                schedule = pending.schedule
                settle(schedule)
            before = schedule.version
            decided = schedule.on_case_event(UUID(event.event_id), event.recorded_at, event.data)
            if event.log_position is not None:
                case_position: int | None = event.log_position
            else:
                if applied_position is None:
                    applied_position = self.store.applied_log_position()
                case_position = applied_position or None
            pending.states.extend(
                self._chain(schedule, before, decided, at=event.recorded_at, case_position=case_position)
            )
        writes = []
        for case_id, pending in touched.items():
            schedule = pending.schedule
            schedule.revision = pending.expected_revision + 1
            coordinators = stored_coordinators(schedule.state)
            writes.append(
                (
                    pending.states,
                    ScheduleWrite(
                        case_id=case_id,
                        revision=schedule.revision,
                        expected_revision=pending.expected_revision,
                        snapshot=_dumps(snapshot(schedule)),
                        next_due=utc_key(schedule.next_due()),
                        coordinators=coordinators if coordinators != pending.stored_coordinators else None,
                    ),
                )
            )
        last = fresh[-1]
        log_positions = [e.log_position for e in fresh if e.log_position is not None]
        try:
            self.store.write_batch(
                writes,
                Checkpoint(
                    last.stream_sequence, last.event_id, max(log_positions) if log_positions else None
                ),
            )
        except AlreadyApplied:
            return 0  # another writer applied them meanwhile
        for (_, write), pending in zip(writes, touched.values(), strict=True):
            if write.coordinators is not None:
                pending.schedule.stored_coordinators = write.coordinators
            self._kept[write.case_id] = pending.schedule
        while len(self._kept) > self.kept_schedules:
            self._kept.popitem(last=False)
        return len(fresh)

    def applied_through(self) -> int:
        return self.store.applied_through()

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.store.pass_over(stream_sequence, event_id)

    def applied_log_position(self) -> int:
        """The case store's log position this service has applied the case stream through."""
        return self.store.applied_log_position()

    # ----------------------------------------------------------------------------- timers
    def fire_due(self, now: datetime | None = None, *, batch: int = 500) -> int:
        """Fire every timer due by ``now`` (default: the clock); returns the events stored."""
        now = now or self.clock.now()
        with self.store.lock:
            # Called once the case stream is applied: the requests after its last event too.
            self._apply_adopted_requests(through=self.store.applied_log_position(), unplaced=True)
        fired = 0
        while True:
            due = self.store.due(utc_key(now) or "", batch)
            for case_id in due:

                def attempt(case_id: UUID = case_id) -> int:
                    schedule = self.load(case_id)
                    if schedule is None:
                        return 0
                    before = schedule.version
                    decided = schedule.fire_due(now)
                    self._save(schedule, before, decided, at=now)
                    return len(decided)

                fired += self._retrying(attempt)
            if len(due) < batch:
                break
        self.fired += fired
        return fired

    # ----------------------------------------------------------------- coordinators' requests
    def request(
        self, case_id: UUID, requester: Requester, decide: Callable[[MeetingSchedule], Decided]
    ) -> tuple[Decided, Meeting]:
        """Run one coordinator request against the case's schedule; returns the event and the meeting."""

        def attempt() -> tuple[Decided, Meeting]:
            self._apply_adopted_requests(through=self.store.applied_log_position(), unplaced=False)
            if self.store.has_adopted_requests():
                raise ReplayInProgress(
                    "replay_in_progress",
                    "the schedule is being rebuilt from history and still applies coordinators'"
                    " earlier requests; retry shortly",
                )
            schedule = self.schedule(case_id)
            before = schedule.version
            now = self.clock.now()
            # Timers due by now go first, as they would have if the request came a moment later.
            decided = [*schedule.fire_due(now), decide(schedule)]
            decided[-1] = Decided(
                decided[-1].event_id,
                decided[-1].data,
                actor_id=requester.user_id,
                actor_org=requester.organisation_id,
                causation_id=decided[-1].causation_id,
            )
            self._save(schedule, before, decided, at=now, principal=requester.principal)
            meeting_id = getattr(decided[-1].data, "meeting_id")  # noqa: B009 - every request names one
            return decided[-1], schedule.meeting(meeting_id)

        return self._retrying(attempt)

    # ------------------------------------------------------- coordinators' requests in a replay
    def _apply_adopted_requests(self, *, through: int, unplaced: bool = False) -> int:
        """Apply again the coordinators' requests an empty store took over from the meetings
        stream (``adopt_stream``), each where it stood in history: after the case log position
        the service had applied when it decided it (``through``: those placed at or before that
        position; ``unplaced``: also those published without one, once the case stream is
        applied). Each is applied as the fact it became, after the timers due by its time, with
        its own event id, so the replay's state is the live state and nothing is published
        twice. One that no longer fits the schedule is logged and dropped, never allowed to
        stop the case stream. The caller holds the store's lock."""
        applied = 0
        for request in self.store.adopted_requests(through, unplaced=unplaced):

            def attempt(request: AdoptedRequest = request) -> None:
                schedule = self._load_or_new(request.case_id)
                before = schedule.version
                timers = schedule.fire_due(request.recorded_at)
                try:
                    replayed = schedule.replay_request(request.decided)
                except (LookupError, ScheduleError) as error:  # not the schedule it was made on
                    raise _Divergent(str(error) or type(error).__name__) from error
                decided = [*timers, replayed]
                self._save(
                    schedule,
                    before,
                    decided,
                    at=request.recorded_at,
                    principal=request.principal,
                    case_position=request.case_position,
                    adopted_request=request.sequence,
                )

            try:
                self._retrying(attempt)
            except _Divergent as error:  # e.g. a meeting the replay does not hold
                log.error(
                    "meetings.adopted_request_dropped",
                    sequence=request.sequence,
                    event_id=str(request.decided.event_id),
                    error=repr(error),
                )
                self.store.drop_adopted_request(request.sequence)
                continue
            applied += 1
        if applied:
            log.info("meetings.adopted_requests_applied", requests=applied, through=through)
        return applied

    # ------------------------------------------------------------------------------ saving
    def _save(
        self,
        schedule: MeetingSchedule,
        before: int,
        decided: list[Decided],
        *,
        at: datetime,
        position: tuple[int, str | None] | None = None,
        log_position: int | None = None,
        principal: Principal = Principal.OTHER,
        case_position: int | None = None,
        adopted_request: int | None = None,
    ) -> None:
        # Where in the case history these events belong (kept beside the hashed state, and
        # published as Vss-Case-Position): a case event's own position, else what is applied.
        if case_position is None:
            # 0: not known yet (a store migrated since its last case event): no place, not 0.
            case_position = (
                log_position if log_position is not None else self.store.applied_log_position() or None
            )
        states = self._chain(
            schedule, before, decided, at=at, principal=principal, case_position=case_position
        )
        revision = schedule.revision
        schedule.revision += 1
        coordinators = stored_coordinators(schedule.state)
        self.store.write(
            states,
            ScheduleWrite(
                case_id=str(schedule.state.case_id),
                revision=schedule.revision,
                expected_revision=revision,
                snapshot=_dumps(snapshot(schedule)),
                next_due=utc_key(schedule.next_due()),
                # the feed's coordinator rows, only when they change (most writes leave them)
                coordinators=coordinators if coordinators != schedule.stored_coordinators else None,
                position=position,
                log_position=log_position,
                adopted_request=adopted_request,
            ),
        )
        schedule.stored_coordinators = coordinators

    def _chain(
        self,
        schedule: MeetingSchedule,
        before: int,
        decided: list[Decided],
        *,
        at: datetime,
        case_position: int | None,
        principal: Principal = Principal.OTHER,
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """The decided events as stored, each chained to the one before (the schedule's head moves)."""
        case_id = str(schedule.state.case_id)
        prev_hash = schedule.head_hash or GENESIS_HASH
        recorded_at = at.astimezone(UTC).isoformat()
        states: list[tuple[int, str, dict[str, Any]]] = []
        for offset, item in enumerate(decided, start=1):
            version = before + offset
            state: dict[str, Any] = {
                "event_id": str(item.event_id),
                "recorded_at": recorded_at,
                "actor_id": item.actor_id or SERVICE_ACTOR,
                "actor_organisation": item.actor_org or SERVICE_ORGANISATION,
                "principal": (principal if item.actor_id else Principal.OTHER).value,
                "correlation_id": item.causation_id or str(item.event_id),
                "causation_id": item.causation_id,
                "prev_hash": prev_hash,
                "data": item.data.model_dump(mode="json"),
            }
            state["hash"] = prev_hash = chain_hash(case_id, version, item.data.TYPE, state, dumps=_dumps)
            state[CASE_POSITION] = case_position
            states.append((version, item.data.TYPE, state))
        schedule.head_hash = prev_hash if decided else schedule.head_hash
        return states

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        with self.store.lock:
            for tries in range(1, 6):
                try:
                    return attempt()
                except ConcurrentWrite as error:
                    log.info("meetings.concurrent_write", attempt=tries, error=str(error))
            return attempt()
