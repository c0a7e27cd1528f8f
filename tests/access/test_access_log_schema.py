"""The access log's principal column: added to a log made before it, old rows kept readable.

On both backends: SQLite (embedded) and PostgreSQL (the tests' own server, ``store_url``),
whose form of the change (``ADD COLUMN IF NOT EXISTS``) differs.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import orjson
import psycopg

from services.shared.access import AccessRecord
from services.shared.access_log import AccessLogStore, published_body
from vss_contracts.access_events import CaseDataAccessed

# The table as it was before records named the reader's principal ({serial}: per backend).
OLD_TABLE = (
    "CREATE TABLE access_log (seq {serial}, record_id TEXT NOT NULL UNIQUE,"
    " recorded_at TEXT NOT NULL, user_id TEXT NOT NULL, organisation_id TEXT NOT NULL,"
    " roles TEXT NOT NULL, case_id TEXT, resource TEXT NOT NULL, outcome TEXT NOT NULL,"
    " reason TEXT, published INTEGER NOT NULL DEFAULT 0)"
)


OLD_ROW = (
    "INSERT INTO access_log (record_id, recorded_at, user_id, organisation_id, roles, case_id,"
    " resource, outcome) VALUES ('old-1', '2025-01-02T00:00:00+00:00', 'anna.k', 'vgr', 'coordinator',"
    " 'c-1', 'overview', 'granted')"
)


def _old_log(url: str) -> None:
    """An access log as a release before the principal column made it, with one record."""
    if url.startswith("sqlite"):
        with sqlite3.connect(unquote(urlsplit(url).path)) as conn:
            conn.execute(OLD_TABLE.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
            conn.execute(OLD_ROW)
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(OLD_TABLE.format(serial="BIGSERIAL PRIMARY KEY"))
        pg.execute(OLD_ROW)


def test_an_old_access_log_gains_the_principal_and_keeps_its_rows(store_url: str) -> None:
    _old_log(store_url)
    store = AccessLogStore(store_url)
    AccessLogStore(store_url)  # a second process opening it: no second ALTER, no error
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


def test_a_record_after_a_postgresql_restart_is_kept(postgres_url: str) -> None:
    """A connection the server ended (a restart) costs the reader's request nothing: the
    record goes in on a new connection, once."""
    log = AccessLogStore(postgres_url)
    record = AccessRecord(
        record_id="before",
        recorded_at=datetime.now(UTC).isoformat(),
        user_id="anna.k",
        organisation_id="vgr",
        roles=("coordinator",),
        case_id="c-1",
        resource="overview",
        outcome="granted",
        principal="region",
    )
    log.record([record])
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # every connection of the log
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    log.record([dataclasses.replace(record, record_id="after")])
    assert [r.record_id for _, r in log.for_case("c-1", 0, 10)] == ["before", "after"]
