"""A serving generation built before a column its read models write now: the projector says so
at start, naming the columns and the rebuild, and keeps running so that the rebuild can run."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.live import open_current
from services.projections.infrastructure.readmodels import ReadModels


def _generation_before_the_column(tmp_path: Path) -> ReadModelLocation:
    """The serving generation, as one built before the meetings' ``changed_by_organisation``."""
    location = ReadModelLocation(f"sqlite:///{tmp_path}")
    open_current(location).close()
    generation = location.current()
    assert generation is not None
    models = ReadModels(location.connect(generation))
    models.conn.execute("ALTER TABLE meetings DROP COLUMN changed_by_organisation")
    models.conn.raw.commit()
    models.close()
    return location


def test_a_generation_built_before_a_column_is_named_at_start_with_the_rebuild(tmp_path: Path) -> None:
    location = _generation_before_the_column(tmp_path)

    with capture_logs() as logs:
        models = open_current(location)

    assert models.missing_columns() == ["meetings.changed_by_organisation"]
    models.close()
    [outdated] = [e for e in logs if e["event"] == "projections.read_models_outdated"]
    assert outdated["log_level"] == "error"
    assert outdated["missing"] == ["meetings.changed_by_organisation"]
    assert "vss projections rebuild" in outdated["fix"]


def test_a_current_generation_lacks_nothing(tmp_path: Path) -> None:
    with capture_logs() as logs:
        models = open_current(ReadModelLocation(f"sqlite:///{tmp_path}"))
    assert models.missing_columns() == []
    models.close()
    assert not [e for e in logs if e["event"] == "projections.read_models_outdated"]
