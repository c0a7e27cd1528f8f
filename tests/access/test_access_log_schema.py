"""The access log's principal column: added to a log made before it, old rows kept readable."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson

from services.shared.access import AccessRecord
from services.shared.access_log import AccessLogStore, published_body
from vss_contracts.access_events import CaseDataAccessed

# The table as it was before records named the reader's principal.
OLD_TABLE = (
    "CREATE TABLE access_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE,"
    " recorded_at TEXT NOT NULL, user_id TEXT NOT NULL, organisation_id TEXT NOT NULL,"
    " roles TEXT NOT NULL, case_id TEXT, resource TEXT NOT NULL, outcome TEXT NOT NULL,"
    " reason TEXT, published INTEGER NOT NULL DEFAULT 0)"
)


def test_an_old_access_log_gains_the_principal_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_TABLE)
        conn.execute(
            "INSERT INTO access_log (record_id, recorded_at, user_id, organisation_id, roles, case_id,"
            " resource, outcome) VALUES ('old-1', ?, 'anna.k', 'vgr', 'coordinator', 'c-1', 'overview',"
            " 'granted')",
            (datetime(2025, 1, 2, tzinfo=UTC).isoformat(),),
        )
    conn.close()
    store = AccessLogStore(f"sqlite:///{path}")
    AccessLogStore(f"sqlite:///{path}")  # a second process opening it: no second ALTER
    store.record(
        [
            AccessRecord(
                record_id="new-1",
                recorded_at=datetime.now(UTC).isoformat(),
                user_id="anna.k",
                organisation_id="vgr",
                roles=("coordinator",),
                case_id="c-1",
                resource="journal",
                outcome="granted",
                principal="region",
            )
        ]
    )
    [(_, old), (_, new)] = store.for_case("c-1", 0, 10)
    assert (old.record_id, old.principal) == ("old-1", None)
    assert (new.record_id, new.principal) == ("new-1", "region")
    # Both publish as valid events; an event without the principal (published before) still decodes.
    published = [CaseDataAccessed.model_validate(orjson.loads(published_body(r))["data"]) for r in (old, new)]
    assert [p.principal for p in published] == [None, "region"]
    assert (
        CaseDataAccessed.model_validate(
            {
                "record_id": "x",
                "at": "2025-01-02T00:00:00+00:00",
                "user_id": "anna.k",
                "organisation_id": "vgr",
                "roles": [],
                "read": "overview",
                "outcome": "granted",
            }
        ).principal
        is None
    )
