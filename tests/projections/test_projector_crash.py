"""Kill -9 the projections process mid-stream and restart it: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import rebuild
from tests.projections.conftest import History
from tests.support.bus import RelayProcess, read_stream, wait_until


class ProjectorProcess(RelayProcess):
    """``python -m services.projections.main projector`` on the test's stream and read models."""

    command = ("-m", "services.projections.main", "projector")
    log_name = "projector"


def _applied(directory: Path) -> int:
    try:
        generation = (directory / "CURRENT").read_text().strip()
        with sqlite3.connect(directory / f"readmodels-{generation}.sqlite") as conn:
            row = conn.execute("SELECT stream_sequence FROM read_position").fetchone()
            return int(row[0]) if row else 0
    except (FileNotFoundError, sqlite3.OperationalError):
        return 0


@pytest.mark.faults
def test_a_killed_projector_resumes_and_equals_a_clean_rebuild(history: History, tmp_path: Path) -> None:
    directory = tmp_path / "live"
    process = ProjectorProcess(
        history.store_url,
        history.nats_url,
        history.names,
        tmp_path,
        VSS_READ_MODEL_URL=f"sqlite:///{directory}",
        VSS_BUS_DEAD_LETTER_STREAM=history.names.dead_letter_stream,
        VSS_BUS_DEAD_LETTER_PREFIX=history.names.dead_letter_prefix,
        # Its notifications consumer waits for a stream of this test's own (never created here).
        VSS_NOTIFICATIONS_STREAM_PREFIX=history.names.stream.split("_")[0] + "_",
    )
    target = history.last_sequence
    process.start()
    try:
        for fraction in (0.2, 0.5):  # two kills, at different points of the stream
            assert wait_until(lambda f=fraction: _applied(directory) >= target * f, 60), process.logs()
            process.kill()
            killed_at = _applied(directory)
            assert killed_at < target, "the projector finished before it could be killed"
            process.start()
        assert wait_until(lambda: _applied(directory) >= target, 120), process.logs()
    finally:
        process.stop()

    live_location = ReadModelLocation(f"sqlite:///{directory}")
    live = ReadModels(live_location.connect(live_location.current() or ""))
    clean_location = ReadModelLocation(f"sqlite:///{tmp_path / 'clean'}")
    asyncio.run(rebuild(clean_location, history.nats_url, history.names))
    clean = ReadModels(clean_location.connect(clean_location.current() or ""))
    live_dump, clean_dump = live.dump(), clean.dump()
    assert len(live_dump["journal"]) == history.report.events  # each event once: no gap, no repeat
    assert live_dump == clean_dump
    letters = asyncio.run(
        read_stream(
            history.nats_url, history.names.dead_letter_stream, f"{history.names.dead_letter_prefix}.>"
        )
    )
    assert letters == [], "no event was refused (a double apply would have failed on the journal's key)"
    live.close()
    clean.close()
