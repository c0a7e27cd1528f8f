"""The sharing service on a real nats-server, from generated cases through the real case store and relay.

Generated cases (``services.case.generator``, with more consent changes than its defaults so
that every path occurs: consent given, extended and renewed with each SIP, withdrawn entirely
and for one organisation, given anew after a withdrawal, coordinators changing) -> the case
store -> the relay -> VSS_CASE -> the sharing service -> VSS_SHARE. Each organisation's
subjects must hold exactly what the query API's rule lets it see (``tests/sharing/expected.py``):
history on becoming covered, one SharingEnded on withdrawal, the missed events on renewal, each
message once, each case in order, the case events' bodies byte for byte.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from operator import methodcaller
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.case import generator
from services.case.application.service import CaseService, Request
from services.case.domain import commands as cmd
from services.case.domain.case import Case
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.names import BusNames
from services.shared.bus.relay import RelaySettings, lease_bucket
from services.sharing.bootstrap import SharingParts, bootstrap_sharing
from services.sharing.infrastructure.bus import share_bus_names, share_stream_config
from services.sharing.infrastructure.store import migrate as migrate_sharing
from services.sharing.settings import SharingSettings
from tests.bus.conftest import PartsThread
from tests.sharing.expected import ENDED, Expected, expected_shares
from tests.support.actors import make_actor
from tests.support.bus import ROOT, StreamMessage, read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.nats import delete_streams
from vss_contracts.sharing_events import SharingEnded, SharingEndReason, decode_sharing_event
from vss_contracts.subjects import HEADER_LOG_POSITION, HEADER_MSG_ID, SHARING_EVENT_SOURCE, share_token
from vss_contracts.types import ClosingReason, OrganisationRef

END = date(2026, 11, 30)
SPAN_DAYS = 730


def generate_cases(url: str, cases: int, monkeypatch: pytest.MonkeyPatch, seed: int = 17) -> None:
    """Realistic cases, with consent changes more frequent than the generator's defaults."""
    monkeypatch.setattr(generator, "WITHDRAWAL", 0.45)  # half partial (relatives or an organisation)
    monkeypatch.setattr(generator, "CONSENT_FOR_A_YEAR", 0.6)  # extended by every SIP
    monkeypatch.setattr(generator, "COORDINATOR_CHANGE", 0.3)
    monkeypatch.setattr(generator, "ONE_COORDINATOR", 0.35)  # the other principal sees by consent only
    migrate(StoreConfig(url))
    store = generator.generation_store(url, cases)
    try:
        generator.generate(store, generator.GeneratorSettings(cases, seed=seed, end=END, span_days=SPAN_DAYS))
    finally:
        store.close()


def script_ending_paths(url: str, each: int = 2) -> Counter[str]:
    """After the generated timeline, on cases still open with a consent that covers an
    organisation besides the coordinators': the endings the generator does not make.

    - a consent valid one more day, then the case closed after it ran out (``consent_expired``
      at the closing: expiry takes effect at the next event);
    - a new consent naming only the coordinators' organisations (``consent_replaced``);
    - a consent naming one coordinator's organisation, then the other coordinator unassigned
      (``coordinator_unassigned``).
    """
    store = CaseEventStore(StoreConfig(url))
    clock = FixedClock(datetime.combine(END + timedelta(days=1), clock_time(8, 0), tzinfo=UTC))
    service = CaseService(store, clock)
    done: Counter[str] = Counter()
    try:
        for case_id in store.case_ids():
            state = store.load(case_id).state
            consent = state.consent
            if state.closed_on or consent is None or consent.withdrawn_on or not state.coordinators:
                continue
            coordinators = list(state.coordinators.values())
            coordinating = {c.organisation.id: c.organisation for c in coordinators}
            if not set(consent.organisations) - set(coordinating):
                continue
            first = coordinators[0]
            actor = make_actor(first.user_id, first.organisation, "coordinator")

            def run(action: Callable[[Case], object]) -> None:
                service.execute(Request(actor, f"script-{uuid.uuid4()}"), case_id, action)  # noqa: B023

            def consent_for(orgs: list[OrganisationRef], valid_until: date | None = None) -> cmd.GiveConsent:
                return cmd.GiveConsent(
                    organisations=orgs,
                    covers_relatives=False,
                    signed_on=clock.today(),
                    valid_until=valid_until,
                )

            if done["expired"] < each:
                expiring = consent_for(
                    list(consent.organisations.values()), clock.today() + timedelta(days=1)
                )
                run(methodcaller("give_consent", expiring))
                clock.advance(days=3)
                closing = cmd.CloseCase(closed_on=clock.today(), reason=ClosingReason.OTHER)
                run(methodcaller("close", closing))
                done["expired"] += 1
            elif done["replaced"] < each:
                replacing = consent_for(list(coordinating.values()))
                run(methodcaller("give_consent", replacing))
                done["replaced"] += 1
            elif done["unassigned"] < each and len(coordinating) == 2:
                narrowing = consent_for([first.organisation])
                run(methodcaller("give_consent", narrowing))
                leaving = cmd.UnassignCoordinator(unassigned_on=clock.today(), reason="Slutat")
                run(methodcaller("unassign_coordinator", coordinators[1].user_id, leaving))
                done["unassigned"] += 1
            if min(done["expired"], done["replaced"], done["unassigned"]) >= each:
                break
            clock.advance(minutes=7)
    finally:
        store.close()
    return done


@pytest.fixture
def share_names(bus_names: BusNames, nats_url: str) -> Iterator[BusNames]:
    names = share_bus_names(bus_names.stream.split("_")[0] + "_", bus_names)
    yield names
    asyncio.run(delete_streams(nats_url, [names.stream, f"KV_{lease_bucket(names)}"]))


def sharing_settings(tmp_path: Path, nats_url: str) -> SharingSettings:
    url = f"sqlite:///{tmp_path / 'sharing.sqlite'}"
    migrate_sharing(url)
    return SharingSettings(sharing_store_url=url, nats_url=nats_url, data_dir=tmp_path)


def start_sharing(
    tmp_path: Path, nats_url: str, case_names: BusNames, share_names: BusNames
) -> PartsThread[SharingParts]:
    parts = bootstrap_sharing(
        sharing_settings(tmp_path, nats_url),
        case_names=case_names,
        share_names=share_names,
        relay_settings=RelaySettings(names=share_names, lease_ttl=1.0, ack_timeout=2.0),
    )
    return PartsThread(parts)


@dataclass(frozen=True, slots=True)
class Received:
    organisation: str  # the subject's token
    case_id: str
    item: str  # the event id, or ENDED
    message: StreamMessage


def received(messages: list[StreamMessage]) -> list[Received]:
    out = []
    for message in messages:
        _, _, token, case_id, _name = message.subject.split(".")[-5:]
        event = message.event
        item = ENDED if event.source == SHARING_EVENT_SOURCE else event.id
        out.append(Received(token, case_id, item, message))
    return out


def check_organisation(expected: Expected, organisation: str, got: list[Received]) -> None:
    """What one organisation's subjects hold is exactly what it may see, once, in order."""
    ids = [r.message.headers[HEADER_MSG_ID] for r in got]
    assert len(ids) == len(set(ids)), f"{organisation}: a message twice"
    per_case: dict[str, list[str]] = defaultdict(list)
    for r in got:
        assert r.organisation == share_token(organisation)
        per_case[r.case_id].append(r.item)
        if r.item == ENDED:
            event = r.message.event
            ended = decode_sharing_event(event.type, event.data)
            assert isinstance(ended, SharingEnded)
            assert (ended.organisation_id, str(ended.case_id)) == (organisation, r.case_id)
            assert r.message.headers[HEADER_MSG_ID] == f"{organisation}:{event.id}"
        else:  # the case stream's body, byte for byte, under <organisation>:<event id>
            assert r.message.body == expected.bodies[r.item]
            assert r.message.headers[HEADER_MSG_ID] == f"{organisation}:{r.item}"
    assert dict(per_case) == expected.per_org[organisation], organisation


async def subscribe_and_read(url: str, stream: str, subject_filter: str) -> list[StreamMessage]:
    """An organisation's subscriber: a consumer filtered to its own subjects, read to the end, acked."""
    nc = await nats.connect(url, connect_timeout=2)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30
        )
        sub = await js.pull_subscribe(subject_filter, stream=stream, config=config)
        out: list[StreamMessage] = []
        while True:
            try:
                batch = await sub.fetch(500, timeout=2)
            except TimeoutError:  # nats-py's own, or asyncio's when a fetch times out mid-batch
                if (await sub.consumer_info()).num_pending == 0:
                    break
                continue
            for msg in batch:
                headers = dict(msg.headers or {})
                out.append(StreamMessage(msg.metadata.sequence.stream, msg.subject, headers, msg.data))
                await msg.ack()
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def run_and_check(
    cases: int,
    sqlite_url: str,
    tmp_path: Path,
    nats_url: str,
    bus_names: BusNames,
    share_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    monkeypatch: pytest.MonkeyPatch,
) -> Expected:
    generate_cases(sqlite_url, cases, monkeypatch)
    scripted = script_ending_paths(sqlite_url)
    assert min(scripted["expired"], scripted["replaced"], scripted["unassigned"]) >= 1, scripted
    store = CaseEventStore(StoreConfig(sqlite_url))
    try:
        stored = len(store.read_log(0, 1_000_000))
        with run_relay(store), start_sharing(tmp_path, nats_url, bus_names, share_names):
            assert wait_until(
                lambda: (
                    len(asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))) == stored
                ),
                60,
                interval=0.3,
            )
            case_stream = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
            expected = expected_shares(case_stream)
            assert wait_until(
                lambda: (
                    len(asyncio.run(read_stream(nats_url, share_names.stream, share_names.subjects)))
                    >= expected.total
                ),
                90,
                interval=0.5,
            ), "the share stream did not fill"
    finally:
        store.close()
    shared = received(asyncio.run(read_stream(nats_url, share_names.stream, share_names.subjects)))
    assert len(shared) == expected.total
    by_org: dict[str, list[Received]] = defaultdict(list)
    tokens = {share_token(org): org for org in expected.per_org}
    for r in shared:
        by_org[tokens[r.organisation]].append(r)
    assert set(by_org) == {org for org in expected.per_org if expected.messages(org)}
    for organisation, got in by_org.items():
        check_organisation(expected, organisation, got)
    return expected


def reasons(expected: Expected, nats_url: str, share_names: BusNames) -> set[SharingEndReason]:
    """The reasons of every SharingEnded on the share stream."""
    found = set()
    for message in asyncio.run(read_stream(nats_url, share_names.stream, share_names.subjects)):
        event = message.event
        if event.source == SHARING_EVENT_SOURCE:
            ended = decode_sharing_event(event.type, event.data)
            assert isinstance(ended, SharingEnded)
            found.add(ended.reason)
    return found


def two_subscribers(expected: Expected, nats_url: str, share_names: BusNames) -> None:
    """Two organisations' own subscribers (filtered consumers) each receive exactly their share:
    one that sees cases by consent only (most SharingEnded), and the one with the most cases."""
    ended = {
        org: sum(items.count(ENDED) for items in cases.values()) for org, cases in expected.per_org.items()
    }
    by_consent = max(ended, key=lambda org: (ended[org], org))
    busiest = max(
        (org for org in expected.per_org if org != by_consent),
        key=lambda org: (len(expected.per_org[org]), org),
    )
    for organisation in (by_consent, busiest):
        subject = f"{share_names.subject_prefix}.{share_token(organisation)}.>"
        got = received(asyncio.run(subscribe_and_read(nats_url, share_names.stream, subject)))
        check_organisation(expected, organisation, got)


def test_each_organisation_receives_exactly_what_it_may_see(
    sqlite_url: str,
    tmp_path: Path,
    nats_url: str,
    bus_names: BusNames,
    share_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default suite's variant: fewer cases, every path still occurs."""
    expected = run_and_check(
        40, sqlite_url, tmp_path, nats_url, bus_names, share_names, run_relay, monkeypatch
    )
    assert expected.paths["history on becoming covered"] >= 40
    for ending in ("ConsentWithdrawn", "CaseClosed", "ConsentGiven", "CoordinatorUnassigned"):
        assert expected.paths[f"ended after {ending}"] >= 1, (ending, dict(expected.paths))
    assert reasons(expected, nats_url, share_names) >= {
        SharingEndReason.CONSENT_EXPIRED,
        SharingEndReason.CONSENT_REPLACED,
        SharingEndReason.COORDINATOR_UNASSIGNED,
    }
    two_subscribers(expected, nats_url, share_names)


@pytest.mark.faults
def test_two_hundred_generated_cases_every_path(
    sqlite_url: str,
    tmp_path: Path,
    nats_url: str,
    bus_names: BusNames,
    share_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = run_and_check(
        200, sqlite_url, tmp_path, nats_url, bus_names, share_names, run_relay, monkeypatch
    )
    paths = expected.paths
    print(dict(paths))
    for path in (
        "history on becoming covered",
        "missed events sent on renewal",
        "ConsentWithdrawn entirely",
        "ConsentWithdrawn for an organisation",
        "ConsentRenewed",
        "ended after ConsentWithdrawn",
        "ended after CaseClosed",
        "ended after ConsentGiven",
        "ended after CoordinatorUnassigned",
    ):
        assert paths[path] >= 1, (path, dict(paths))
    assert len(expected.per_org) >= 10
    two_subscribers(expected, nats_url, share_names)


def test_a_store_behind_the_share_stream_stops_the_service_with_one_line(
    tmp_path: Path, nats_url: str, bus_names: BusNames, share_names: BusNames
) -> None:
    """An emptied (or older) sharing store would start its outbox below what VSS_SHARE holds,
    and the relay, resuming after the stream's last position, would skip that many messages."""

    async def publish_one() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(share_stream_config(share_names))
            await js.publish(
                f"{share_names.subject_prefix}.org.c1.CaseOpened",
                b"{}",
                headers={HEADER_MSG_ID: "org:e1", HEADER_LOG_POSITION: "3"},
            )
        finally:
            await nc.close()

    asyncio.run(publish_one())
    settings = sharing_settings(tmp_path, nats_url)  # a migrated, empty store
    env = {
        **os.environ,
        "VSS_SHARING_STORE_URL": str(settings.sharing_store_url),
        "VSS_NATS_URL": nats_url,
        "VSS_BUS_STREAM": bus_names.stream,
        "VSS_BUS_SUBJECT_PREFIX": bus_names.subject_prefix,
        "VSS_SHARE_STREAM_PREFIX": share_names.stream.removesuffix("VSS_SHARE"),
        "VSS_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.sharing.main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]  # the reason, after the service's log lines
    assert line.startswith("sharing: ")
    assert "ends at outbox position 3 but the sharing store's outbox at 0" in line
