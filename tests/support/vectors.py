"""What an implementation of docs/verifying.md must report for the committed test vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def expected_report(vector_file: Path) -> dict[str, Any]:
    """Every vector's hash input, hash and signature reproduced; every chain's verdict."""
    vectors = json.loads(vector_file.read_text(encoding="utf-8"))
    return {
        "vectors": [
            {
                "version": v["cloudevent"]["caseversion"],
                "hash_input": True,
                "eventhash": True,
                "signature": True if "vsssig" in v["cloudevent"] else None,
            }
            for v in vectors["vectors"]
        ],
        "chains": [
            {"name": c["name"], "fails_at": None if c["verifies"] else c["fails_at_version"]}
            for c in vectors["chains"]
        ],
    }
