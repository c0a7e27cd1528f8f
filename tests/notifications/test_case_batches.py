"""The case consumer's batches: a fetch applied in one transaction decides what one by one does.

Generated case lifecycles (the generator, through the case service), rendered as the case
relay publishes them, go through the case stream's handler on a real store twice: one event
at a time, and in fetches (``apply_batch``). The stores then hold the same deliveries,
audiences, kept history and position; a redelivered event inside a batch is skipped alone; a
batch that fails changes nothing; the sender is woken once a batch is committed, when its
deliveries can be read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.case.generator import GeneratorSettings, generate, generation_store
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.case.infrastructure.store import migrate as migrate_case_store
from services.notifications.application.service import CASE_CONSUMER, NotificationsService, Policy, Signer
from services.notifications.infrastructure.bus import CaseEventHandler
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.templates import Templates
from services.shared.bus.consumer import Delivery
from tests.support.clock import FixedClock
from vss_contracts.envelope import CloudEvent

from .support import START


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> list[Delivery]:
    """Every event of four generated cases, as the case consumer receives them."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cases') / 'cases.sqlite'}"
    migrate_case_store(StoreConfig(url))
    store = generation_store(url, 4)
    try:
        generate(store, GeneratorSettings(cases=4, seed=11, end=date(2026, 6, 30), span_days=400))
    finally:
        store.close()
    store = CaseEventStore(StoreConfig(url))
    log = CaseEventLog(store)
    deliveries: list[Delivery] = []
    try:
        after = 0
        while rows := log.fetch(after, 500):
            for message in log.render(rows):
                event = CloudEvent.model_validate_json(message.body)
                deliveries.append(
                    Delivery(event, event.typed_data(), message.position, message.subject, message.headers, 1)
                )
            after = rows[-1][0]
    finally:
        store.close()
    assert len(deliveries) > 100
    return deliveries


class Handler:
    def __init__(self, path: Path | str) -> None:
        self.store = NotificationStore(path if isinstance(path, str) else f"sqlite:///{path}")
        self.store.migrate()
        self.service = NotificationsService(
            self.store, Templates(), {}, FixedClock(START), Signer(b"test-key"), Policy()
        )
        self.handler = CaseEventHandler(self.service, self.store, CASE_CONSUMER)

    def contents(self) -> dict[str, Any]:
        read = self.store.read
        return {
            "deliveries": read(
                "SELECT delivery_key, status, address, template, created_at FROM deliveries"
                " ORDER BY delivery_key"
            ),
            "audiences": read("SELECT case_id, snapshot FROM audiences ORDER BY case_id"),
            "history": read("SELECT * FROM audience_history ORDER BY case_id, case_position"),
            "alerts": read("SELECT * FROM alerts ORDER BY warning_id"),
            "log": read("SELECT event_id, case_id, version, type FROM notification_log ORDER BY position"),
            "position": (
                self.store.applied_through(CASE_CONSUMER),
                self.store.applied_log_position(CASE_CONSUMER),
            ),
        }


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[tuple[Handler, Handler]]:
    one, batched = Handler(tmp_path / "one.sqlite"), Handler(tmp_path / "batched.sqlite")
    yield one, batched
    one.store.close()
    batched.store.close()


def test_batches_decide_what_one_event_at_a_time_decides(
    feed: list[Delivery], handlers: tuple[Handler, Handler]
) -> None:
    one, batched = handlers
    assert sum(one.handler.apply(d) for d in feed) == len(feed)
    applied = 0
    for start in range(0, len(feed), 37):
        applied += batched.handler.apply_batch(feed[start : start + 37])
    assert applied == len(feed)
    expected = one.contents()
    assert expected["deliveries"], "the generated cases tell somebody something"
    assert batched.contents() == expected
    # Again, as a redelivery: nothing is applied twice.
    assert batched.handler.apply_batch(feed[:50]) == 0
    assert batched.contents() == expected


def test_a_redelivered_event_inside_a_batch_is_skipped_alone(
    feed: list[Delivery], handlers: tuple[Handler, Handler]
) -> None:
    one, batched = handlers
    for d in feed[:80]:
        one.handler.apply(d)
    batched.handler.apply_batch(feed[:40])
    # The batch starts with ten events applied already, then forty new ones.
    assert batched.handler.apply_batch(feed[30:80]) == 40
    assert batched.contents() == one.contents()


def test_a_batch_that_fails_changes_nothing(feed: list[Delivery], handlers: tuple[Handler, Handler]) -> None:
    _, batched = handlers
    batched.handler.apply_batch(feed[:20])
    before = batched.contents()
    original = batched.service.apply
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> bool:
        calls[0] += 1
        if calls[0] == 15:
            raise RuntimeError("database is locked")
        return original(*args, **kwargs)

    batched.service.apply = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        batched.handler.apply_batch(feed[20:60])
    assert calls[0] == 15
    assert batched.contents() == before
    batched.service.apply = original  # type: ignore[method-assign]
    assert batched.handler.apply_batch(feed[20:60]) == 40


def test_the_sender_is_woken_once_a_batch_is_committed(
    feed: list[Delivery], handlers: tuple[Handler, Handler]
) -> None:
    _, batched = handlers
    path = batched.store.url.sqlite_path()
    seen: list[int] = []

    def wake() -> None:  # what the sender would read now, from its own thread and connection
        reader = NotificationStore(f"sqlite:///{path}")
        box: list[int] = []
        thread = threading.Thread(target=lambda: box.append(len(reader.read("SELECT 1 FROM deliveries"))))
        thread.start()
        thread.join()
        reader.close()
        seen.append(box[0])

    batched.service.on_decided = wake
    batched.handler.apply_batch(feed)
    decided = len(batched.store.read("SELECT 1 FROM deliveries"))
    assert decided > 0
    assert seen == [decided]  # once, after the commit: every delivery of the batch visible


@pytest.mark.postgres
def test_batches_on_postgresql_decide_what_one_event_at_a_time_decides(
    feed: list[Delivery], tmp_path: Path, postgres_url: str
) -> None:
    """psycopg nests each event's transaction (and the reads between) as savepoints of the
    batch's: the same decisions as one by one."""
    one, batched = Handler(tmp_path / "one.sqlite"), Handler(postgres_url)
    try:
        for d in feed:
            one.handler.apply(d)
        for start in range(0, len(feed), 37):
            batched.handler.apply_batch(feed[start : start + 37])
        assert batched.handler.apply_batch(feed[30:80]) == 0  # redelivered
        expected, got = one.contents(), batched.contents()
        assert got["deliveries"] == expected["deliveries"]
        assert got["history"] == expected["history"]
        assert got["alerts"] == expected["alerts"]
        assert got["log"] == expected["log"]
        assert got["position"] == expected["position"]
        # Snapshots compared as JSON (PostgreSQL and SQLite keep the same text).
        assert got["audiences"] == expected["audiences"]
    finally:
        one.store.close()
        batched.store.close()
