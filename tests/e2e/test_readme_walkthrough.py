"""End to end, as a user does it: `vss up`, then the README's curl walk-through, verbatim.

The walk-through block is read from README.md, so the README cannot drift from what works.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    port = _free_port()
    env = {**os.environ, "VSS_DATA_DIR": str(tmp_path / "data"), "VSS_CASE_PORT": str(port)}
    env.pop("VSS_CASE_STORE_URL", None)
    vss = Path(sys.executable).parent / "vss"
    process = subprocess.Popen(
        [str(vss), "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                time.sleep(0.2)
        yield port, env
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=20)[0].decode()
        assert process.returncode == 0, output
        assert "VSS stopped." in output


def test_walkthrough_from_opening_to_first_sip(system: tuple[int, dict[str, str]]) -> None:
    port, env = system
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Walk-through.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README.md lost its walk-through"
    script = "set -euo pipefail\n" + block.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(
        ["bash", "-c", script], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    writes = [json.loads(line) for line in lines]
    # Every write answered with the case's version; the SIP committed three events at once.
    sip = writes[-1]
    assert [e["type"] for e in sip["events"]] == [
        "se.vss.case.SipDecided.v1",
        "se.vss.case.ConsentRenewed.v1",
        "se.vss.case.PhaseChanged.v1",
    ]
    assert "phase working" in result.stdout
    assert "15 se.vss.case.PhaseChanged.v1 anna.k" in result.stdout
    assert "1 case(s) verified" in result.stdout
