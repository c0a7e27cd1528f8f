"""Generate the committed JSON Schema files from the models.

``python -m vss_contracts.jsonschema --write`` regenerates ``vss_contracts/schemas/``;
``--check`` exits non-zero when the committed files differ from the code (CI runs a
test that does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vss_contracts.case_events import CASE_EVENTS, LEGACY_CASE_EVENTS, CaseEventData
from vss_contracts.envelope import CloudEvent, dataschema_for
from vss_contracts.meeting_events import LEGACY_MEETING_EVENTS, MEETING_EVENTS, MeetingEventData
from vss_contracts.notification_events import NOTIFICATION_EVENTS, NotificationEventData
from vss_contracts.sharing_events import SHARING_EVENTS, SharingEventData

SCHEMA_DIR = Path(__file__).parent / "schemas"
# The schemas of earlier versions are frozen as published: kept, never regenerated.
FROZEN = frozenset(
    [
        *(f"{cls.TYPE}.json" for cls in LEGACY_CASE_EVENTS),
        *(f"{cls.TYPE}.json" for cls in LEGACY_MEETING_EVENTS),
    ]
)
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text of every schema."""
    files: dict[str, str] = {}
    events: tuple[
        type[CaseEventData] | type[MeetingEventData] | type[NotificationEventData] | type[SharingEventData],
        ...,
    ] = (*CASE_EVENTS, *MEETING_EVENTS, *NOTIFICATION_EVENTS, *SHARING_EVENTS)
    for cls in events:
        schema = cls.model_json_schema()
        schema = {"$schema": DIALECT, "$id": dataschema_for(cls.TYPE), **schema}
        schema["title"] = cls.TYPE
        files[f"{cls.TYPE}.json"] = _render(schema)
    envelope = CloudEvent.model_json_schema()
    envelope = {"$schema": DIALECT, "$id": dataschema_for("se.vss.CloudEvent"), **envelope}
    files["se.vss.CloudEvent.json"] = _render(envelope)
    return files


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, stale or no longer generated."""
    expected = generate()
    present = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    stale = [name for name, text in expected.items() if present.get(name) != text]
    extra = [name for name in present if name not in expected and name not in FROZEN]
    missing_frozen = [name for name in FROZEN if name not in present]
    return sorted(stale + extra + missing_frozen)


def write(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    expected = generate()
    for path in directory.glob("*.json"):
        if path.name not in expected and path.name not in FROZEN:
            path.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the schema files")
    group.add_argument("--check", action="store_true", help="fail when the files drifted")
    args = parser.parse_args(argv)
    if args.write:
        write()
        return 0
    stale = drift()
    if stale:
        print("schemas drifted from the code: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
