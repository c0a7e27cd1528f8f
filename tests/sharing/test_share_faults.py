"""Fault run: the sharing service killed with SIGKILL at random moments while commands are written.

The service runs as its own process (``python -m services.sharing.main``), as ``vss up`` starts
it; cases are generated through the case application meanwhile (paced, so the kills fall while
commands are written), published by the real relay. At the end every organisation's subjects
on VSS_SHARE hold exactly what it may see, each message once, each case in order.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import pytest

from services.case import generator
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.names import BusNames
from services.sharing.infrastructure.store import migrate as migrate_sharing
from tests.sharing.expected import expected_shares
from tests.sharing.test_share_bus import Received, check_organisation, received, share_names  # noqa: F401
from tests.support.bus import RelayProcess, read_stream, wait_until
from vss_contracts.subjects import share_token

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CASES = 80


class SharingProcess(RelayProcess):
    command = ("-m", "services.sharing.main")
    log_name = "sharing"


def write_cases(url: str, stop: threading.Event, errors: list[BaseException]) -> None:
    """Generated cases through the case application, about 7 ms per simulated day."""

    def paced(done: int, total: int) -> None:
        if not stop.is_set():
            time.sleep(0.007)

    store = generator.generation_store(url, CASES)
    try:
        generator.generate(
            store,
            generator.GeneratorSettings(CASES, seed=23, end=date(2026, 11, 30), span_days=900),
            progress=paced,
        )
    except BaseException as error:
        errors.append(error)
    finally:
        store.close()


def test_sharing_killed_at_random_moments_shares_each_message_once(
    sqlite_url: str,
    tmp_path: Path,
    nats_url: str,
    bus_names: BusNames,
    share_names: BusNames,  # noqa: F811 - the fixture
    run_relay: Callable[..., AbstractContextManager[object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generator, "WITHDRAWAL", 0.45)
    monkeypatch.setattr(generator, "ONE_COORDINATOR", 0.35)
    migrate(StoreConfig(sqlite_url))
    sharing_url = f"sqlite:///{tmp_path / 'sharing.sqlite'}"
    migrate_sharing(sharing_url)
    process = SharingProcess(
        sqlite_url,
        nats_url,
        bus_names,
        tmp_path,
        VSS_SHARING_STORE_URL=sharing_url,
        VSS_BUS_DEAD_LETTER_STREAM=bus_names.dead_letter_stream,
        VSS_BUS_DEAD_LETTER_PREFIX=bus_names.dead_letter_prefix,
        VSS_SHARE_STREAM_PREFIX=share_names.stream.split("_")[0] + "_",
        VSS_DATA_DIR=str(tmp_path / "data"),
    )
    assert process.env["VSS_SHARE_STREAM_PREFIX"] + "VSS_SHARE" == share_names.stream
    store = CaseEventStore(StoreConfig(sqlite_url))
    stop = threading.Event()
    errors: list[BaseException] = []
    writer = threading.Thread(target=write_cases, args=(sqlite_url, stop, errors))
    rng = random.Random(11)
    kills = 0
    try:
        with run_relay(store):
            process.start()
            writer.start()
            while writer.is_alive() or kills < 5:
                # Each kill lands in a run, not in the interpreter's start: on a loaded machine
                # starting takes longer than the random moment (bounded: a start that never
                # resumes is killed anyway, and the checks below tell).
                wait_until(lambda: "relay.resume" in process.current_log(), 30, interval=0.1)
                time.sleep(rng.uniform(0.5, 1.5))
                process.kill()
                kills += 1
                process.start()
            writer.join()
            assert errors == []
            stored = len(store.read_log(0, 1_000_000))
            assert wait_until(
                lambda: (
                    len(asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))) == stored
                ),
                60,
                interval=0.3,
            )
            expected = expected_shares(
                asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
            )
            complete = wait_until(
                lambda: (
                    len(asyncio.run(read_stream(nats_url, share_names.stream, share_names.subjects)))
                    >= expected.total
                ),
                90,
                interval=0.5,
            )
            assert complete, process.logs()[-3000:]
            time.sleep(1.0)  # anything more (a duplicate) would have arrived by now
    finally:
        stop.set()
        writer.join(30)
        process.stop()
        store.close()
    assert kills >= 5
    shared = received(asyncio.run(read_stream(nats_url, share_names.stream, share_names.subjects)))
    assert len(shared) == expected.total, "a message twice, or one too many"
    tokens = {share_token(org): org for org in expected.per_org}
    by_org: dict[str, list[Received]] = defaultdict(list)
    for r in shared:
        by_org[tokens[r.organisation]].append(r)
    for organisation, got in by_org.items():
        check_organisation(expected, organisation, got)
    assert expected.paths["ended after ConsentWithdrawn"] >= 1
    # It was killed mid-run: later starts resumed publishing from a tail the killed ones left.
    resumed = [
        log.read_text() for log in sorted(tmp_path.glob("sharing-*.log")) if log.name != "sharing-1.log"
    ]
    assert sum(bool(re.search(r"relay.resume\s+position=[1-9]", text)) for text in resumed) >= 2
