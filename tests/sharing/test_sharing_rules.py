"""The sharing decisions, event by event, without a bus: the domain rule and the service on its store.

Given a case's events -> which organisation receives which events and which SharingEnded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.shared.access import grants, may_see
from services.sharing.application.service import IncomingEvent, SharingService
from services.sharing.domain.coverage import CaseAccess, day_of, decide
from services.sharing.infrastructure.store import SharingStore, migrate
from vss_contracts import CloudEvent
from vss_contracts import case_events as ev
from vss_contracts.chain import cloud_event_hash
from vss_contracts.sharing_events import SharingEnded, SharingEndReason, decode_sharing_event

REGION, MUNICIPALITY, FK = "vgr-psykiatri", "goteborg-socialtjanst", "forsakringskassan"
CASE = str(uuid.UUID(int=7))
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def org(org_id: str) -> dict[str, Any]:
    principal = {"vgr-psykiatri": "region", "goteborg-socialtjanst": "municipality"}.get(org_id, "other")
    return {"id": org_id, "name": org_id, "principal": principal}


def assigned(user: str, org_id: str) -> tuple[str, dict[str, Any]]:
    coordinator = {"user_id": user, "name": user, "organisation": org(org_id), "contact": {}}
    return ev.CoordinatorAssigned.TYPE, {"coordinator": coordinator, "assigned_on": "2026-03-02"}


def consent(*orgs: str, valid_until: str | None = None) -> tuple[str, dict[str, Any]]:
    return ev.ConsentGiven.TYPE, {
        "consent_id": str(uuid.uuid4()),
        "organisations": [org(o) for o in orgs],
        "covers_relatives": False,
        "signed_on": "2026-03-02",
        "valid_until": valid_until,
    }


def withdrawn(*orgs: str) -> tuple[str, dict[str, Any]]:
    return ev.ConsentWithdrawn.TYPE, {
        "withdrawn_on": "2026-03-02",
        "entire": not orgs,
        "organisation_ids": list(orgs),
        "relatives": False,
    }


def other() -> tuple[str, dict[str, Any]]:
    return ev.PhaseChanged.TYPE, {"from_phase": "mapping", "to_phase": "planning", "changed_on": "2026-03-02"}


UNASSIGNED = (ev.CoordinatorUnassigned.TYPE, {"user_id": "omar", "unassigned_on": "2026-03-02"})


def share(events: list[tuple[str, dict[str, Any]]], days: list[int] | None = None) -> dict[str, list[Any]]:
    """Run the decisions over ``events`` (on consecutive days unless given): per organisation,
    the versions it receives and ("ended", reason) where sharing ends."""
    access = CaseAccess()
    received: dict[str, tuple[int, bool]] = {}
    out: dict[str, list[Any]] = {}
    for version, (type_name, data) in enumerate(events, start=1):
        day = (date(2026, 3, 2) + timedelta(days=(days or list(range(len(events))))[version - 1])).isoformat()
        decision = decide(version, type_name, data, day, access, received)
        for organisation, first in decision.share.items():
            out.setdefault(organisation, []).extend(range(first, version + 1))
            received[organisation] = (version, True)
        for organisation, reason in decision.ended.items():
            out[organisation].append(("ended", reason))
            received[organisation] = (received[organisation][0], False)
    return out


def opened(org_id: str) -> tuple[str, dict[str, Any]]:
    return ev.CaseOpened.TYPE, {"opened_by_organisation": org(org_id), "opened_on": "2026-03-02"}


def test_a_coordinator_s_organisation_receives_the_history_at_its_assignment() -> None:
    got = share([opened(REGION), assigned("anna", REGION), other(), assigned("omar", MUNICIPALITY)])
    assert got == {REGION: [1, 2, 3, 4], MUNICIPALITY: [1, 2, 3, 4]}


def test_the_opener_receives_the_case_from_its_opening_until_a_consent_not_naming_it() -> None:
    got = share(
        [
            opened(MUNICIPALITY),  # 1: the opener at once, before anyone coordinates
            other(),  # 2
            assigned("anna", REGION),  # 3: the region receives 1-3
            consent(REGION, FK),  # 4: the consent does not name the opener: it ends
            other(),  # 5
            withdrawn(),  # 6: withdrawn, the opener does not see it again
            consent(REGION, MUNICIPALITY),  # 7: naming it: what it missed, 4-7
        ]
    )
    assert got[MUNICIPALITY] == [1, 2, 3, ("ended", SharingEndReason.CONSENT_REPLACED), 4, 5, 6, 7]
    assert got[REGION] == [1, 2, 3, 4, 5, 6, 7]
    assert got[FK] == [1, 2, 3, 4, 5, ("ended", SharingEndReason.CONSENT_WITHDRAWN)]
    # Named by the first consent, the opener's sharing goes on without an end.
    got = share([opened(MUNICIPALITY), consent(MUNICIPALITY, FK), other()])
    assert got == {MUNICIPALITY: [1, 2, 3], FK: [1, 2, 3]}


def test_consent_covers_another_organisation_until_it_is_withdrawn_then_renewal_sends_what_it_missed() -> (
    None
):
    got = share(
        [
            assigned("anna", REGION),  # 1
            consent(REGION, FK),  # 2: FK receives 1-2
            other(),  # 3
            withdrawn(),  # 4: entirely -> FK ends (the region coordinates: it still sees)
            other(),  # 5
            consent(REGION, FK),  # 6: FK receives what it missed, 4-6
            withdrawn(FK),  # 7: for FK only
            other(),  # 8
        ]
    )
    assert got[REGION] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert got[FK] == [
        1,
        2,
        3,
        ("ended", SharingEndReason.CONSENT_WITHDRAWN),
        4,
        5,
        6,
        ("ended", SharingEndReason.CONSENT_WITHDRAWN_FOR_ORGANISATION),
    ]


def test_expiry_ends_sharing_at_the_first_event_after_valid_until_and_a_new_consent_resumes() -> None:
    events = [
        assigned("anna", REGION),
        consent(REGION, FK, valid_until="2026-03-10"),
        other(),
        other(),
        consent(FK),
    ]
    got = share(events, days=[0, 0, 8, 9, 12])  # 2026-03-10 is still valid, 03-11 is not
    assert got[FK] == [1, 2, 3, ("ended", SharingEndReason.CONSENT_EXPIRED), 4, 5]


def test_a_replaced_consent_and_an_unassigned_coordinator_end_sharing_with_their_reasons() -> None:
    got = share(
        [assigned("omar", MUNICIPALITY), consent(MUNICIPALITY, FK), consent(MUNICIPALITY), UNASSIGNED]
    )
    assert got[FK] == [1, 2, ("ended", SharingEndReason.CONSENT_REPLACED)]
    assert got[MUNICIPALITY] == [1, 2, 3, 4]  # the consent still covers it when its coordinator leaves
    got = share([assigned("omar", MUNICIPALITY), consent(REGION), UNASSIGNED])
    assert got[MUNICIPALITY] == [1, 2, ("ended", SharingEndReason.COORDINATOR_UNASSIGNED)]


def test_the_decision_is_the_shared_access_rule() -> None:
    access = CaseAccess()
    for type_name, data in (opened(MUNICIPALITY), assigned("anna", REGION)):
        access.apply(type_name, data)
    case_grants = grants([REGION], opened_by=MUNICIPALITY, consent_given=False)
    assert access.covered("2026-03-10") == {o for o, _ in case_grants} == {REGION, MUNICIPALITY}
    access.apply(*consent(REGION, FK, valid_until="2026-03-10"))
    for day in ("2026-03-10", "2026-03-11"):
        case_grants = grants([REGION], [REGION, FK], "2026-03-10", opened_by=MUNICIPALITY, consent_given=True)
        assert access.covered(day) == {o for o in (REGION, FK, MUNICIPALITY) if may_see(o, case_grants, day)}
    assert day_of(datetime(2026, 3, 10, 23, 30, tzinfo=UTC)) == "2026-03-11"  # Stockholm's date


# ----------------------------------------------------------------------- the service on its store
@pytest.fixture
def service(store_url: str) -> Iterator[SharingService]:
    """The service on its real store: SQLite and PostgreSQL."""
    migrate(store_url)
    store = SharingStore(store_url)
    yield SharingService(store)
    store.close()


def incoming(version: int, type_name: str, data: dict[str, Any], sequence: int) -> IncomingEvent:
    event_id = str(uuid.UUID(int=1000 + version))
    body = orjson.dumps({"id": event_id, "caseversion": version})
    return IncomingEvent(
        case_id=CASE,
        version=version,
        event_id=event_id,
        type_name=type_name,
        event_name=type_name.rsplit(".", 2)[-2],
        current_type=type_name,
        data=data,
        time=START + timedelta(days=version),
        log_position=version,
        correlation_id=f"req-{version}",
        event_hash=f"{version:064x}",
        body=body,
        stream_sequence=sequence,
    )


def test_the_outbox_holds_each_message_once_and_a_redelivery_changes_nothing(service: SharingService) -> None:
    events = [assigned("anna", REGION), consent(REGION, FK), withdrawn(FK), consent(REGION, FK)]
    for version, (type_name, data) in enumerate(events, start=1):
        assert service.apply(incoming(version, type_name, data, sequence=version))
        assert not service.apply(incoming(version, type_name, data, sequence=version))  # redelivered
    store = service.store
    assert isinstance(store, SharingStore)
    log = store.read_log(0, 100)
    assert [(row.organisation, row.name) for row in log] == [
        (REGION, "CoordinatorAssigned"),
        (FK, "CoordinatorAssigned"),  # history on becoming covered
        (FK, "ConsentGiven"),
        (REGION, "ConsentGiven"),
        (REGION, "ConsentWithdrawn"),
        (FK, "SharingEnded"),
        (FK, "ConsentWithdrawn"),  # what it missed, then the new consent
        (FK, "ConsentGiven"),
        (REGION, "ConsentGiven"),
    ]
    assert len({row.message_id for row in log}) == len(log)
    ended = next(row for row in log if row.name == "SharingEnded")
    event = CloudEvent.model_validate_json(ended.body)
    payload = decode_sharing_event(event.type, event.data)
    assert isinstance(payload, SharingEnded)
    assert (payload.reason, payload.last_version, event.caseversion) == (
        SharingEndReason.CONSENT_WITHDRAWN_FOR_ORGANISATION,
        2,
        3,
    )
    assert event.prevhash == f"{2:064x}"  # the last event FK received
    assert cloud_event_hash(orjson.loads(ended.body)) == event.eventhash
    assert ended.message_id == f"{FK}:{event.id}"


def test_the_deploy_definition_of_vss_share_is_what_the_service_declares() -> None:
    from services.sharing.infrastructure.bus import share_bus_names, share_stream_config  # noqa: PLC0415

    deployed = orjson.loads((Path(__file__).resolve().parents[2] / "deploy/nats/VSS_SHARE.json").read_bytes())
    config = share_stream_config(share_bus_names(), replicas=3)
    assert deployed["name"] == config.name == "VSS_SHARE"
    assert deployed["subjects"] == config.subjects
    assert deployed["description"] == config.description
    assert deployed["num_replicas"] == config.num_replicas
    assert deployed["duplicate_window"] == int((config.duplicate_window or 0) * 1e9)
    assert deployed["allow_atomic"] is bool(config.allow_atomic)
    assert (deployed["retention"], deployed["discard"]) == ("limits", "new")
