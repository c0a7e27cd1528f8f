"""Code and docs are a reference: no sentence points at a tracker's issue.

An issue number means nothing to a reader of the code or of an ADR a year on; what was
decided and why is written where it applies, and git keeps who asked for it (CONTRIBUTING.md).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {".py", ".md", ".html", ".toml", ".txt", ".js", ".mjs", ".json", ".yaml", ".yml", ".cfg"}
# "issue 22", "issues 17 and 18", "issue #5", "the issue", "this issue", "the issue's": a tracker's issue.
# A link to another project's issue (".../issues/123", "owner/repo#123") says where a fact comes from.
ISSUE = re.compile(r"\b(?:issues? #?\d+|(?:the|this) issue(?:'s)?(?! tracker)\b|issue's\b)", re.IGNORECASE)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in listed if Path(name).suffix in TEXT_SUFFIXES or name.endswith("Makefile")]


def references(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if ISSUE.search(line)]


def test_the_pattern_finds_a_tracker_reference_and_leaves_a_link_alone() -> None:
    for sentence in ("as issue 22 asks", "The issue asks for", "the issue's words", "issues 17 and 18"):
        assert references(sentence), sentence
    assert not references("see nats-io/nats-server#7298 and https://github.com/a/b/issues/12")
    assert not references("git history and the issue tracker keep that")


def test_no_file_refers_to_an_issue() -> None:
    files = [path for path in _tracked_text_files() if path.resolve() != Path(__file__).resolve()]
    assert len(files) > 100, "the repository's files were not listed"
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line}"
        for path in files
        if path.is_file()
        for n, line in references(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not found, "these lines refer to a tracker's issue; say the decision instead:\n" + "\n".join(found)
