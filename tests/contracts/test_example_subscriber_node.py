"""examples/subscriber-node: a Node.js subscriber from the documents alone, on a real organisation's stream.

It reproduces every test vector of docs/verifying.md, loads every committed JSON Schema in Ajv 8
with its default settings, and, with one organisation's credentials on a nats-server with the
generated authorization, receives exactly that organisation's share of the real pipeline
(tests/support/share_pipeline.py), validating each event against its schema and checking every
hash and signature. Skipped where Node.js or npm is absent; the packages are installed with
`npm ci` once per package-lock.json into a directory under the system's temp directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sharing.expected import ENDED
from tests.support.share_pipeline import SharedCases, shared_cases
from tests.support.vectors import expected_report
from vss_contracts.vectors import VECTOR_FILE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "subscriber-node"
SCHEMAS = ROOT / "contracts" / "vss_contracts" / "schemas"
NODE, NPM = shutil.which("node"), shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="Node.js and npm are not installed: the Node.js subscriber example is not run",
)


@pytest.fixture(scope="module")
def installed() -> Path:
    """The example with its packages from `npm ci`, kept between runs while package-lock.json is unchanged."""
    assert NPM is not None
    lock = (EXAMPLE / "package-lock.json").read_bytes()
    where = Path(tempfile.gettempdir()) / f"vss-subscriber-node-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (where / "node_modules" / ".package-lock.json").exists():
        where.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(EXAMPLE / name, where / name)
        done = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(where / "node_modules", ignore_errors=True)
            pytest.skip(f"npm ci failed (no npm registry?): {done.stderr.strip()[-300:]}")
    shutil.copy2(EXAMPLE / "subscriber.js", where / "subscriber.js")  # always the current script
    return where


def node(installed: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    command = [NODE, str(installed / "subscriber.js"), "--schemas", str(SCHEMAS), *args]
    return subprocess.run(
        command, cwd=installed, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_it_reproduces_every_test_vector(installed: Path) -> None:
    done = node(installed, "--vectors", str(VECTOR_FILE))

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {k: report[k] for k in ("vectors", "chains")} == expected_report(VECTOR_FILE)


def test_every_json_schema_loads_in_ajv_8_with_its_defaults(installed: Path) -> None:
    done = node(installed, "--check-schemas")

    assert done.returncode == 0, done.stderr
    ids = {json.loads(path.read_text(encoding="utf-8"))["$id"] for path in SCHEMAS.glob("*.json")}
    assert set(json.loads(done.stdout)["schemas"]) == ids


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedCases]:
    base = tmp_path_factory.mktemp("share-pipeline-node")
    with pytest.MonkeyPatch.context() as monkeypatch, shared_cases(base, monkeypatch) as shared:
        yield shared


def test_it_verifies_and_validates_a_real_organisations_stream(
    installed: Path, pipeline: SharedCases
) -> None:
    organisation = pipeline.by_consent  # it sees cases by consent, so it has SharingEnded too
    args = ["--url", pipeline.server.url, "--organisation", organisation]
    args += [
        "--seed",
        str(pipeline.seed(organisation)),
        "--keys",
        str(pipeline.keys_file),
        "--idle-exit",
        "1.5",
    ]

    done = node(installed, *args)

    assert done.returncode == 0, done.stderr
    lines: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]
    summary = lines.pop()["summary"]
    per_case: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        per_case[line["case_id"]].append(ENDED if "sharing_ended" in line else line["event_id"])
    expected = pipeline.shared_with(organisation)
    assert dict(per_case) == expected  # exactly its share, in order
    events = [line for line in lines if "sharing_ended" not in line]
    assert all(line["schema"] and line["hash"] for line in lines if "hash" in line)
    assert all(line["schema"] for line in lines)
    signed = [line for line in events if line["signature"]]
    assert signed
    assert summary == {
        "events": len(events),
        "hashes": len(events),
        "signatures": len(signed),
        "schemas": len(lines),
        "sharing_ended": sum(items.count(ENDED) for items in expected.values()),
        "cases": len(expected),
    }
    assert summary["sharing_ended"] >= 1
