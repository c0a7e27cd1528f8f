"""docs/verifying.md is enough: a Node.js implementation from the text reproduces every vector."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.vectors import expected_report
from vss_contracts.vectors import VECTOR_FILE

NODE = shutil.which("node")
SCRIPT = Path(__file__).parent / "node" / "vectors.js"


@pytest.mark.skipif(
    NODE is None, reason="Node.js is not installed: the JavaScript check of the vectors is skipped"
)
def test_a_javascript_implementation_of_the_spec_reproduces_every_vector() -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(SCRIPT), str(VECTOR_FILE)], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("vectors", "chains")} == expected_report(VECTOR_FILE)
