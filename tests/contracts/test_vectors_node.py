"""docs/verifying.md is enough: a Node.js implementation from the text reproduces every vector."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

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
    vectors = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    assert report["vectors"] == [
        {
            "version": v["cloudevent"]["caseversion"],
            "hash_input": True,
            "eventhash": True,
            "signature": True if "vsssig" in v["cloudevent"] else None,
        }
        for v in vectors["vectors"]
    ]
    assert report["chains"] == [
        {"name": c["name"], "fails_at": None if c["verifies"] else c["fails_at_version"]}
        for c in vectors["chains"]
    ]
