"""examples/subscriber: an organisation's subscriber, run as its user runs it, against the real pipeline.

Signed generated cases -> case store -> relay -> VSS_CASE -> sharing service -> VSS_SHARE on a
nats-server started with `vss nats-config`'s authorization (tests/support/share_pipeline.py).
The example connects with one organisation's seed and must receive exactly that organisation's
share (the query API's rule), verify every case's chain and signatures, keep a copy that
re-verifies, and a copy rewritten afterwards must fail `--verify-copy` naming case and version.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sharing.expected import ENDED
from tests.support.share_pipeline import SharedCases, shared_cases
from vss_contracts.chain import cloud_event_hash

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "subscriber" / "subscriber.py"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedCases]:
    base = tmp_path_factory.mktemp("share-pipeline")
    with pytest.MonkeyPatch.context() as monkeypatch, shared_cases(base, monkeypatch) as shared:
        yield shared


@dataclass
class Run:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str

    def per_case(self) -> dict[str, list[str]]:
        """Case id -> what arrived in order: event ids, and ENDED for a SharingEnded."""
        out: dict[str, list[str]] = defaultdict(list)
        for line in self.lines:
            out[line["case_id"]].append(ENDED if "reason" in line else line["event_id"])
        return dict(out)


def run(*args: str, cwd: Path) -> Run:
    """The example as its user runs it, outside the repository."""
    command = [sys.executable, str(SCRIPT), *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return Run(result.returncode, lines, result.stderr)


def subscribe(pipeline: SharedCases, organisation: str, copy: Path, *extra: str) -> Run:
    return run(
        "--url",
        pipeline.server.url,
        "--organisation",
        organisation,
        "--seed",
        str(pipeline.seed(organisation)),
        "--keys",
        str(pipeline.keys_file),
        "--copy",
        str(copy),
        "--idle-exit",
        "1.5",
        *extra,
        cwd=copy.parent,
    )


def verify_copy(pipeline: SharedCases, copy: Path) -> Run:
    return run("--verify-copy", "--copy", str(copy), "--keys", str(pipeline.keys_file), cwd=copy.parent)


@pytest.fixture(scope="module")
def copies(pipeline: SharedCases, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Run]]:
    """Each of the two organisations' subscriber, run once to the end of its share."""
    out = {}
    for organisation in pipeline.organisations:
        copy = tmp_path_factory.mktemp(organisation) / "copy"
        out[organisation] = (copy, subscribe(pipeline, organisation, copy))
    return out


@pytest.mark.parametrize("which", ["by_consent", "busiest"])
def test_it_receives_exactly_its_organisations_share_and_verifies_it(
    pipeline: SharedCases, copies: dict[str, tuple[Path, Run]], which: str
) -> None:
    organisation = getattr(pipeline, which)
    _, received = copies[organisation]

    assert received.returncode == 0, received.stderr
    assert received.per_case() == pipeline.shared_with(organisation)
    events = [line for line in received.lines if "reason" not in line]
    assert events
    assert all(line["verified"] for line in events)
    assert {line["signed_through"] for line in events} - {0}  # signatures were checked, not only hashes
    ended = [line for line in received.lines if "reason" in line]
    assert {line["organisation_id"] for line in ended} <= {organisation}
    if which == "by_consent":
        assert ended, "the organisation seeing cases by consent has a SharingEnded"


def test_its_copy_reverifies_later_and_a_second_run_gets_nothing_new(
    pipeline: SharedCases, copies: dict[str, tuple[Path, Run]]
) -> None:
    organisation = pipeline.by_consent
    copy, _ = copies[organisation]
    expected = pipeline.shared_with(organisation)

    checked = verify_copy(pipeline, copy)
    again = subscribe(pipeline, organisation, copy)

    assert checked.returncode == 0, checked.stderr
    assert {line["case_id"] for line in checked.lines} == set(expected)
    for line in checked.lines:
        # A case whose sharing ended is checked without requiring a signed head (it may end mid-commit).
        assert line["sharing_ended"] == (expected[line["case_id"]][-1] == ENDED)
        if not line["sharing_ended"]:
            assert line["signed_through"] == line["version"]
    assert again.returncode == 0, again.stderr
    assert again.lines == []  # the durable consumer resumed after what it acknowledged


def test_a_rewritten_copy_fails_naming_case_and_version(
    pipeline: SharedCases, copies: dict[str, tuple[Path, Run]], tmp_path: Path
) -> None:
    """An event rewritten with its hash recomputed (the chain consistent) no longer matches its signature."""
    source, _ = copies[pipeline.busiest]
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    checked = {line["case_id"]: line for line in verify_copy(pipeline, copy).lines}
    case_id = next(case for case, line in checked.items() if not line["sharing_ended"])
    path = copy / f"{case_id}.jsonl"
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    last = events[-1]
    assert "vsssig" in last  # a case still shared ends at a signed commit
    last["actorid"] = "someone.else"
    last["eventhash"] = cloud_event_hash(last)
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")

    tampered = verify_copy(pipeline, copy)

    assert tampered.returncode == 4
    assert case_id not in {line["case_id"] for line in tampered.lines}
    assert f"case {case_id} does not verify at version {last['caseversion']}" in tampered.stderr
    assert "signature" in tampered.stderr


def test_another_organisations_consumer_name_is_refused(pipeline: SharedCases, tmp_path: Path) -> None:
    mine, other = pipeline.organisations

    refused = subscribe(pipeline, mine, tmp_path / "copy", "--durable", other)

    assert refused.returncode == 2
    assert refused.lines == []
    assert f"no answer creating consumer {other}" in refused.stderr


def test_the_example_needs_vss_contracts_and_nats_py_only() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    third_party = {name.split(".")[0] for name in modules} - set(sys.stdlib_module_names) - {"__future__"}

    assert third_party == {"nats", "vss_contracts"}  # nkeys comes with nats-py's nkeys extra
