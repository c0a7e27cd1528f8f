"""The SQLite pointer to the serving generation: read again only when the file changed, yet
every switch (a rebuild's, from another process) is seen by the next look."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.projections.infrastructure import database
from services.projections.infrastructure.database import ReadModelLocation, new_generation


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    reads: list[Path] = []
    read_text = Path.read_text

    def counted(self: Path, *args: object, **kwargs: object) -> str:
        reads.append(self)
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counted)
    return reads


def test_an_unchanged_pointer_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    location = ReadModelLocation(f"sqlite:///{tmp_path}")
    generation = new_generation()
    location.point_to(generation)
    reads = _counting_reads(monkeypatch)
    assert all(location.current() == generation for _ in range(1000))
    assert len(reads) == 1


def test_every_switch_is_seen_at_once_even_within_a_clock_tick(tmp_path: Path) -> None:
    """Switches faster than the file system's clock, the old file's inode free for the new one:
    the pointer's modification time still moves on, so no look returns the name before."""
    reader = ReadModelLocation(f"sqlite:///{tmp_path}")
    rebuilder = ReadModelLocation(f"sqlite:///{tmp_path}")  # as `vss rebuild` would, elsewhere
    assert reader.current() is None
    for number in range(300):
        generation = f"g{number:05d}_switch"  # one length: the file's size never tells them apart
        rebuilder.point_to(generation)
        assert reader.current() == generation


def test_a_pointer_is_read_again_after_a_while_whatever_its_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backstop for a file system whose times cannot tell two versions apart."""
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    location = ReadModelLocation(f"sqlite:///{tmp_path}")
    location.point_to("g1")
    assert location.current() == "g1"
    assert location._pointer_read is not None
    version, _, until = location._pointer_read
    location._pointer_read = (version, "g0", until)  # as if a switch had left the stat alike
    assert location.current() == "g0"
    clock[0] += database.POINTER_RECHECK_SECONDS
    assert location.current() == "g1"


def test_a_removed_pointer_means_no_generation(tmp_path: Path) -> None:
    location = ReadModelLocation(f"sqlite:///{tmp_path}")
    location.point_to("g1")
    assert location.current() == "g1"
    (tmp_path / "CURRENT").unlink()
    assert location.current() is None
    location.point_to("g2")
    assert location.current() == "g2"
