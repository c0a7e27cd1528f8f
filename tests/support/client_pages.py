"""A case after its first SIP, with an early-warning plan and a coming meeting, for the client's pages.

The case API runs under uvicorn on a free port (the withdrawal page sends the client's own
command to it over HTTP); the query API's read models are SQLite files, projected in-process
from the case store and from one published meeting, as the relay and the projector would.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.case.entrypoints.http import create_app as case_app
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.projections.application.meetings import MeetingProjector
from services.projections.application.projector import Projector
from services.projections.application.queries import QueryPolicy
from services.projections.domain.events import MeetingRecord
from services.projections.entrypoints.http import QueryDependencies
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.decoding import decode
from services.projections.infrastructure.live import open_current
from services.projections.infrastructure.serving import ServedGenerations
from services.shared import geography
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.support.clock import FixedClock
from tests.support.http import serving
from tests.support.scenario import CaseScenario, drive_to_first_sip
from vss_contracts import meeting_events as me
from vss_contracts.chain import GENESIS_HASH

TOKENS = TokenService(key="test-secret-" + "p" * 40, algorithm="HS256", issuer="vss", audience="vss")
TOLVAN = "191212121212"  # the client of the case
MEETING = UUID("3b9f0d1e-2c4a-4e6f-8a1b-9c0d2e3f4a51")
PLAN_CONTACT = "Åsa Öberg"


def project_since(store: CaseEventStore, location: ReadModelLocation, projected: int) -> int:
    """The relay and the projector, in-process: the events stored after the first ``projected``
    go into the serving read models; returns how many are projected now."""
    published = store.published_log(0, 10_000)
    models = open_current(location)
    try:
        Projector(models).apply([decode(e.body, n) for n, e in enumerate(published, start=1)][projected:])
    finally:
        models.close()
    return len(published)


@dataclass
class CaseForPages:
    deps: QueryDependencies
    scenario: CaseScenario
    store: CaseEventStore
    location: ReadModelLocation
    access_log: AccessLogStore
    projected: int = 0

    @property
    def path(self) -> str:
        return f"/min-plan/{self.scenario.case_id}"

    def project(self) -> None:
        """The relay and the projector, in-process: every event stored since the last call."""
        self.projected = project_since(self.store, self.location, self.projected)

    def reads(self, user_id: str, organisation_id: str = "") -> list[tuple[str | None, str, str]]:
        found = self.access_log.for_user(user_id, organisation_id, 0, 1000)
        return [(r.case_id, r.resource, r.outcome) for _, r in found]


def _meeting(case_id: str) -> MeetingRecord:
    """The first resource group meeting, a week from now, as the meetings service publishes it."""
    starts = (datetime.now(UTC) + timedelta(days=7)).replace(hour=9, minute=0, second=0, microsecond=0)
    payload = me.MeetingScheduled(
        meeting_id=MEETING,
        kind=me.MeetingKind.RESOURCE_GROUP,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        invitees=[me.Invitee(invitee_id="client", name="Tolvan Tolvansson", role=me.InviteeRole.CLIENT)],
        reason="booked",
        location="Socialkontoret, Storgatan 1",
    )
    event_hash = hashlib.sha256(f"{case_id}/1/{GENESIS_HASH}".encode()).hexdigest()
    return MeetingRecord(
        case_id=case_id,
        version=1,
        type=payload.TYPE,
        data=payload.model_dump(mode="json"),
        event_id="7c1d2e3f-4a5b-4c6d-8e7f-90a1b2c3d4e5",
        time=datetime.now(UTC).isoformat(),
        stream_sequence=1,
        prev_hash=GENESIS_HASH,
        event_hash=event_hash,
        hash_ok=True,
        actor_id="vss-meetings",
        actor_org="vss",
    )


@contextlib.contextmanager
def case_for_pages(tmp_path: Path) -> Iterator[CaseForPages]:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    clock = FixedClock()
    service = CaseService(store, clock)
    scenario = drive_to_first_sip(service, clock)
    plan = cmd.UpdateEarlyWarningPlan(
        signs=[{"sign_id": "somn", "description": "Sover sämre än vanligt"}],
        client_actions=["Ringer Åsa"],
        others_actions=[{"who": "Åsa (syster)", "what": "Följer med till vårdcentralen"}],
        contacts=[{"name": PLAN_CONTACT, "relation": "syster", "phone": "070-123 45 67"}],
        updated_on=clock.today(),
    )
    scenario.run(lambda c: c.update_early_warning_plan(plan))
    access_log = AccessLogStore(f"sqlite:///{tmp_path / 'access.sqlite'}")
    location = ReadModelLocation(f"sqlite:///{tmp_path / 'readmodels'}")
    with serving(case_app(service, TOKENS, access_log)) as case_api:
        deps = QueryDependencies(
            served=ServedGenerations(location),
            access_log=access_log,
            tokens=TOKENS,
            today=clock.today,
            wait_limit=0.5,
            policy=QueryPolicy(),
            association_of=geography.association_of,
            case_api=f"http://{case_api}",
            page_key=b"k" * 32,
        )
        found = CaseForPages(deps, scenario, store, location, access_log)
        found.project()
        models = open_current(location)
        record = _meeting(str(scenario.case_id))
        MeetingProjector(models).apply([record], stream_sequence=1, event_id=record.event_id)
        models.close()
        try:
            yield found
        finally:
            location.close()
            store.close()
