"""The store's cache around one command: the command takes the cached case, its save caches
it again; a refusal puts it back as it was; a failure after recording leaves nothing cached."""

from __future__ import annotations

import sys
import threading
from datetime import timedelta

import pytest

from services.case.application.service import CaseService
from services.case.domain import errors
from services.case.domain.case import Case
from services.case.infrastructure.store import CaseEventStore
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario, new_request, worksheet_command


def test_a_command_takes_the_cached_case_and_its_save_caches_it_again(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    assert store.cached(case_id) is not None
    cached_during: list[Case | None] = []

    def complete(case: Case) -> None:
        cached_during.append(store.cached(case_id))
        case.complete_worksheet(worksheet_command(clock.today()))

    result = consented.service.execute(new_request(consented.actors.region), case_id, complete)

    assert cached_during == [None]  # no other thread could reach the case being changed
    cached = store.cached(case_id)
    assert cached is not None
    assert (cached.version, result.version) == (version + 1, version + 1)
    assert not cached.pending_events
    assert store.head(case_id) == (version + 1, cached.head_hash)


def test_a_refused_command_leaves_the_case_cached_as_it_was(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None
    head_hash = store.load(case_id).head_hash
    tomorrow = clock.today() + timedelta(days=1)

    with pytest.raises(errors.DateInFuture):
        consented.service.execute(
            new_request(consented.actors.region),
            case_id,
            lambda case: case.complete_worksheet(worksheet_command(tomorrow)),
        )

    cached = store.cached(case_id)
    assert cached is not None
    assert (cached.version, cached.head_hash, list(cached.pending_events)) == (version, head_hash, [])


def test_a_command_that_fails_after_recording_leaves_nothing_of_it_cached(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    case_id, version = consented.case_id, consented.version
    assert case_id is not None

    def record_then_fail(case: Case) -> None:
        case.complete_worksheet(worksheet_command(clock.today()))
        raise RuntimeError("the request broke off after the rules were checked")

    with pytest.raises(RuntimeError):
        consented.service.execute(new_request(consented.actors.region), case_id, record_then_fail)

    cached = store.cached(case_id)  # the changed case was dropped, never cached
    assert cached is None or (cached.version, list(cached.pending_events)) == (version, [])
    assert store.load(case_id).version == version
    service = CaseService(store, clock)
    result = service.execute(
        new_request(consented.actors.region),
        case_id,
        lambda case: case.complete_worksheet(worksheet_command(clock.today())),
    )
    assert result.version == version + 1
    assert store.verify(case_id) is None


def test_reads_beside_commands_never_see_a_case_a_command_is_changing(
    consented: CaseScenario, store: CaseEventStore, clock: FixedClock
) -> None:
    """A load (a copy) and a check on the cached case run beside 150 commands on the same case,
    the interpreter switching threads as often as it can: every copy is whole (as many events
    applied as its version says) and no read fails."""
    case_id = consented.case_id
    assert case_id is not None
    region = consented.actors.region
    stop = threading.Event()
    torn: list[tuple[int, int]] = []
    failures: list[str] = []
    loads = 0

    def reader() -> None:
        nonlocal loads
        while not stop.is_set():
            try:
                copy = store.load(case_id)
                loads += 1
                if len(copy.state.event_types) != copy.version:
                    torn.append((copy.version, len(copy.state.event_types)))
                consented.service.may_write_by_cache(case_id, region)
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(150):
            consented.service.execute(
                new_request(region),
                case_id,
                lambda case: case.complete_worksheet(worksheet_command(clock.today())),
            )
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switching)
    assert loads > 0
    assert torn == []
    assert failures == []
