"""contracts/ is its own distribution: a subscriber installs the wheel and nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(CONTRACTS),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("vss_contracts-*.whl")
    return built


def test_the_wheel_carries_models_schemas_asyncapi_and_types_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "vss_contracts/case_events.py" in names
    assert "vss_contracts/py.typed" in names
    assert "vss_contracts/schemas/se.vss.case.SipDecided.v1.json" in names
    assert "vss_contracts/schemas/se.vss.CloudEvent.json" in names
    assert "vss_contracts/asyncapi.py" in names
    assert "vss_contracts/asyncapi/vss-bus.asyncapi.json" in names  # the document ships with the code
    assert not [n for n in names if n.startswith("services/")]


def test_the_wheel_depends_on_pydantic_alone(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")
        ]
    assert requires == ["Requires-Dist: pydantic[email]<3,>=2.7"]
