"""The case use cases: load the case, run one command on it, save what it decided.

Every write goes through :meth:`CaseService.execute`, which adds what all commands
share: optimistic concurrency (``expected_version``), idempotent retries
(``idempotency_key``), the clock, the request's correlation and the actor.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from services.case.application.ports import (
    CaseAlreadyExists,
    CaseNotFound,
    CaseNotYetOpened,
    CaseStore,
    Clock,
    ConcurrentWrite,
    HistoryEntry,
    IdempotencyRecord,
    SaveResult,
)
from services.case.domain import commands as cmd
from services.case.domain.case import Case
from services.case.domain.errors import CaseRuleViolation, InvalidCommand, NotAllowed
from services.case.domain.events import Actor

STOCKHOLM = ZoneInfo("Europe/Stockholm")
RETRIES_WITHOUT_EXPECTED_VERSION = 3


class CaseTurns:
    """One command at a time per case in this process.

    Two commands on one case at once could only end in a conflict and a retry (or, after
    the retries, a 409 to a caller who sent no ``If-Match``): the second decides on the
    version the first is writing. Taking turns in the process leaves optimistic concurrency
    for what it is for, writers in other processes. A case's lock lives while someone holds
    or waits for it. Each waiter holds a worker thread of the API (40 at most), so at most
    ``most_waiting`` wait per case, a fifth of them: a command beyond them goes ahead at once,
    on optimistic concurrency alone (a conflict, a retry), rather than one busy case taking
    every thread.
    """

    def __init__(self, most_waiting: int = 8) -> None:
        self.most_waiting = most_waiting
        self._guard = threading.Lock()
        self._held: dict[UUID, tuple[threading.Lock, list[int]]] = {}  # lock, [holders + waiters]

    @contextmanager
    def of(self, case_id: UUID) -> Iterator[None]:
        with self._guard:
            held = self._held.get(case_id)
            if held is None:
                held = self._held[case_id] = (threading.Lock(), [0])
            lock, count = held
            queued = count[0] <= self.most_waiting  # the holder and up to most_waiting before it
            if queued:
                count[0] += 1
        if not queued:
            yield
            return
        try:
            with lock:
                yield
        finally:
            with self._guard:
                count[0] -= 1
                if not count[0]:
                    del self._held[case_id]

    def __len__(self) -> int:
        """The cases held or waited for now."""
        return len(self._held)


class VersionConflict(Exception):
    """The case is not at the version the client expected (If-Match)."""

    def __init__(self, case_id: UUID, expected: int, actual: int) -> None:
        super().__init__(f"case {case_id} is at version {actual}, not {expected}")
        self.case_id, self.expected, self.actual = case_id, expected, actual


class IdempotencyKeyReused(Exception):
    """The same Idempotency-Key came with a different request."""


class CaseUnreadable(Exception):
    """The case's rules refused a writer who may not read the case (:attr:`Request.reads`):
    the refusal would tell of the case (its people, its facts), so it is not given."""

    def __init__(self, case_id: UUID) -> None:
        super().__init__(f"case {case_id}: the writer may not read it")
        self.case_id = case_id


@dataclass(frozen=True, slots=True)
class Request:
    """Who sends a command and how: from the HTTP layer (or a test)."""

    actor: Actor
    correlation_id: str
    causation_id: str | None = None
    expected_version: int | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    # The API's read rule for the writer, asked of the version a refused command was decided
    # on: False turns the refusal into CaseUnreadable. None: the refusal as it is.
    reads: Callable[[Case], bool] | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    case_id: UUID
    version: int
    position: int
    events: list[dict[str, Any]]
    created_id: str | None = None
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": str(self.case_id),
            "version": self.version,
            "position": self.position,
            "events": self.events,
            "created_id": self.created_id,
        }


class CaseService:
    def __init__(self, store: CaseStore, clock: Clock, policy: cmd.CasePolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy or cmd.CasePolicy()
        self.turns = CaseTurns()

    def context(self, request: Request) -> cmd.CommandContext:
        now = self.clock.now()
        return cmd.CommandContext(
            actor=request.actor,
            now=now,
            today=now.astimezone(STOCKHOLM).date(),
            correlation_id=request.correlation_id,
            causation_id=request.causation_id,
            policy=self.policy,
        )

    # ------------------------------------------------------------------------- commands
    def open_case(self, request: Request, command: cmd.OpenCase) -> CommandResult:
        replay = self._replay(request)
        if replay is not None:
            return replay
        if command.case_id is not None and self.store.exists(command.case_id):
            raise CaseAlreadyExists(command.case_id)
        case = Case.open(self.context(request), command)
        try:
            return self._save(request, case, created_id=str(case.id))
        except ConcurrentWrite:
            replay = self._replay(request)
            if replay is not None:
                return replay
            raise CaseAlreadyExists(case.id) from None

    def execute(
        self,
        request: Request,
        case_id: UUID,
        action: Callable[[Case], object],
    ) -> CommandResult:
        """Run ``action`` (one command method) on the case and store its events, after any
        other command on the case in this process (:class:`CaseTurns`)."""
        with self.turns.of(case_id):
            return self._execute(request, case_id, action)

    def _execute(self, request: Request, case_id: UUID, action: Callable[[Case], object]) -> CommandResult:
        attempts = 1 if request.expected_version is not None else RETRIES_WITHOUT_EXPECTED_VERSION
        for attempt in range(1, attempts + 1):
            replay = self._replay(request)
            if replay is not None:
                return replay
            case, loaded_version, outcome = self._decide(request, case_id, action)
            try:
                return self._save(request, case, created_id=_as_id(outcome))
            except ConcurrentWrite:
                replay = self._replay(request)
                if replay is not None:
                    return replay
                if attempt == attempts:
                    actual = self.store.load(case_id).version
                    raise VersionConflict(
                        case_id, request.expected_version or loaded_version, actual
                    ) from None
        raise AssertionError("unreachable")

    def _decide(
        self, request: Request, case_id: UUID, action: Callable[[Case], object]
    ) -> tuple[Case, int, object]:
        """Load the case and run the command; a refusal is only final on a fresh load.

        The store may hand out a cached copy that another process has outdated. An accepted
        command on a stale copy fails at the insert (the version is taken) and is retried;
        a refused one must be checked again on what is stored, or a valid command could be
        refused (e.g. consent given through another instance).

        The case is taken out of the store's cache for the command (``take``): one that
        records nothing is put back; one that records is cached again by the save.
        """
        for fresh in (False, True):
            if fresh:
                self.store.forget(case_id)
            case = self.store.take(case_id)
            if request.expected_version is not None and case.version != request.expected_version:
                self.store.put_back(case)
                if not fresh:
                    continue
                raise VersionConflict(case_id, request.expected_version, case.version)
            loaded_version = case.version
            try:
                case.ensure_actor_may_write(request.actor)
                try:
                    outcome = action(case.handling(self.context(request)))
                except (CaseRuleViolation, InvalidCommand):
                    # Who may write is the case's rule; what a refusal says (a rule's, or a
                    # field judged against the case's state) is the reads' (a writer the
                    # consent leaves out still records what happened, ADR 0008).
                    if request.reads is not None and not request.reads(case):
                        raise CaseUnreadable(case_id) from None
                    raise
            except (CaseRuleViolation, InvalidCommand, CaseUnreadable):
                self.store.put_back(case)  # only if the refusal left it as it was taken
                if fresh:
                    raise
                continue
            return case, loaded_version, outcome
        raise AssertionError("unreachable")

    def ensure_may_write(self, case_id: UUID, actor: Actor) -> None:
        """Refuse early (``ActorNotInvolved``) whoever may not write the case at all.

        Decided on the cached case, and again on the stored one before refusing (a cached
        copy may be stale); :meth:`execute` decides again on the version it writes.
        """
        try:
            self.store.load(case_id).ensure_actor_may_write(actor)
        except NotAllowed:
            self.get(case_id).ensure_actor_may_write(actor)

    def may_write_by_cache(self, case_id: UUID, actor: Actor) -> bool:
        """Whether the cached case lets ``actor`` write: no I/O, so an API may ask on its event
        loop. False when it is not cached or refuses: then ask :meth:`ensure_may_write`."""

        def allows(case: Case) -> bool:
            try:
                case.ensure_actor_may_write(actor)
            except NotAllowed:
                return False
            return True

        return self.store.read_cached(case_id, allows) or False

    def store_reachable(self) -> dict[str, str]:
        """For the health check: a process that cannot reach its store cannot take a command,
        so it is not ready (a balancer or `vss status` then says so) until the store answers."""
        self.store.ping()
        return {"store": "ok"}

    # -------------------------------------------------------------------------- queries
    def get(self, case_id: UUID) -> Case:
        """The case as stored now (never a cached copy that another process may have outdated)."""
        self.store.forget(case_id)
        return self.store.load(case_id)

    def as_of(self, case_id: UUID, moment: datetime) -> Case:
        """The case as it stood at ``moment``: its events recorded until then, folded again.

        The events are the same stored, hash-chained facts the case is made of now; nothing
        is kept per date. A moment before the case was opened raises CaseNotYetOpened.
        """
        if moment.tzinfo is None:
            raise ValueError("the moment needs a time zone")
        version, after = 0, 0
        while page := self.history(case_id, after, 500):
            stood = [e.version for e in page if e.recorded_at <= moment]
            if stood:
                version = stood[-1]
            if len(stood) < len(page):
                break
            after = page[-1].version
        if version == 0:
            raise CaseNotYetOpened(f"case {case_id} was not opened by {moment.isoformat()}")
        return self.store.load_version(case_id, version)

    def history(self, case_id: UUID, after_version: int = 0, limit: int = 100) -> list[HistoryEntry]:
        if not self.store.exists(case_id):  # 404 for an unknown case, not an empty page
            raise CaseNotFound(case_id)
        return self.store.history(case_id, after_version, limit)

    # -------------------------------------------------------------------------- helpers
    def _replay(self, request: Request) -> CommandResult | None:
        if request.idempotency_key is None:
            return None
        found = self.store.find_idempotency(_key_hash(request))
        if found is None:
            return None
        if found.fingerprint != request.fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different request; use a new key")
        result = found.result
        first_version = result["events"][0]["version"]
        entries = self.store.history(found.case_id, first_version - 1, len(result["events"]))
        positions = {entry.version: entry.position for entry in entries}
        events = [{**event, "position": positions[event["version"]]} for event in result["events"]]
        return CommandResult(
            case_id=found.case_id,
            version=result["version"],
            position=positions[result["version"]],
            events=events,
            created_id=result.get("created_id"),
            replayed=True,
        )

    def _save(self, request: Request, case: Case, created_id: str | None) -> CommandResult:
        pending = list(case.pending_events)
        if not pending:
            raise AssertionError("a command that succeeds records at least one event")
        last_version = pending[-1].originator_version
        events = [
            {"id": str(e.meta.event_id), "type": e.type, "version": e.originator_version}  # type: ignore[attr-defined]
            for e in pending
        ]
        idempotency = None
        if request.idempotency_key is not None:
            # Stored in the same transaction as the events. Log positions are only known
            # after the insert, so a replay reads them back (see _replay).
            idempotency = IdempotencyRecord(
                key_hash=_key_hash(request),
                fingerprint=request.fingerprint,
                case_id=case.id,
                result={
                    "case_id": str(case.id),
                    "version": last_version,
                    "events": [dict(event) for event in events],
                    "created_id": created_id,
                },
            )
        saved: SaveResult = self.store.save(case, idempotency)
        for event, ref in zip(events, saved.events, strict=True):  # both in the case's order
            event["position"] = ref.position
        assert saved.version == last_version
        return CommandResult(
            case_id=case.id,
            version=saved.version,
            position=saved.position,
            events=events,
            created_id=created_id,
        )


def _key_hash(request: Request) -> str:
    assert request.idempotency_key is not None
    # A key is the person's (organisation, user id): two organisations' "anna" never share one.
    actor = request.actor
    material = f"{actor.organisation_id}\x00{actor.user_id}\x00{request.idempotency_key}".encode()
    return hashlib.sha256(material).hexdigest()


def _as_id(outcome: object) -> str | None:
    if outcome is None:
        return None
    return str(outcome)
