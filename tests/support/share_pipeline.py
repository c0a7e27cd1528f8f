"""The whole share pipeline on a nats-server with the generated authorization, for the examples' tests.

Generated cases, each commit signed (``services.case.generator`` with a ``CommitSigner``) ->
the case store -> the relay -> ``VSS_CASE`` -> the sharing service -> ``VSS_SHARE``, all
under the production names the permissions are written for. What each organisation may see
is computed by the sharing tests' oracle (``tests/sharing/expected.py``, the query API's
rule) from the events as the relay publishes them; the server knows the two organisations
the examples subscribe as: one that sees cases by consent (most ``SharingEnded``) and the one
with the most cases.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from operator import methodcaller
from pathlib import Path

import pytest

from services.case import generator
from services.case.application.service import CaseService, Request
from services.case.domain import commands as cmd
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.signing import CommitSigner
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.authorization import InternalRole, NatsCredentials, inbox_prefix
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from services.shared.organisations import parse_organisations
from services.sharing.bootstrap import bootstrap_sharing
from services.sharing.infrastructure.bus import share_bus_names
from services.sharing.infrastructure.store import migrate as migrate_sharing
from services.sharing.settings import SharingSettings
from tests.bus.conftest import PartsThread, RelayThread
from tests.sharing.expected import ENDED, Expected, expected_shares
from tests.support.actors import make_actor
from tests.support.bus import StreamMessage, read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.nats import NatsServer, authorized_nats_server
from vss_contracts.signing import PublicKeys

END = date(2026, 11, 30)
SPAN_DAYS = 730


@dataclass(frozen=True)
class SharedCases:
    server: NatsServer
    credentials: NatsCredentials
    expected: Expected
    keys_file: Path  # as `vss keys export` writes it
    by_consent: str  # an organisation that sees cases by consent (the most SharingEnded)
    busiest: str  # the other organisation with the most cases

    @property
    def organisations(self) -> tuple[str, str]:
        return self.by_consent, self.busiest

    def seed(self, organisation: str) -> Path:
        seed = self.credentials.organisations[organisation]
        assert seed is not None, "the generated configuration holds the demo organisations' seeds"
        return seed

    def inbox(self, organisation: str) -> str:
        return inbox_prefix(organisation)

    def shared_with(self, organisation: str) -> dict[str, list[str]]:
        """Case id -> the event ids (and ``ENDED``) the organisation may receive, in order."""
        return self.expected.per_org[organisation]


def generate_signed_cases(
    url: str, cases: int, signer: CommitSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Realistic cases, with consent changes more frequent than the generator's defaults."""
    monkeypatch.setattr(generator, "WITHDRAWAL", 0.45)
    monkeypatch.setattr(generator, "CONSENT_FOR_A_YEAR", 0.6)
    monkeypatch.setattr(generator, "COORDINATOR_CHANGE", 0.3)
    monkeypatch.setattr(generator, "ONE_COORDINATOR", 0.35)
    migrate(StoreConfig(url))
    store = generator.generation_store(url, cases, signer=signer)
    try:
        generator.generate(store, generator.GeneratorSettings(cases, seed=17, end=END, span_days=SPAN_DAYS))
    finally:
        store.close()
    withdraw_for_organisations(url, signer)


def withdraw_for_organisations(url: str, signer: CommitSigner, cases: int = 3) -> None:
    """After the timeline: on a few open cases, the client withdraws the consent for one organisation
    it covers besides the coordinators' (the generator's withdrawals are rarer), so SharingEnded occurs."""
    store = CaseEventStore(StoreConfig(url), signer=signer)
    clock = FixedClock(datetime.combine(END + timedelta(days=1), clock_time(9, 0), tzinfo=UTC))
    service = CaseService(store, clock)
    done = 0
    try:
        for case_id in store.case_ids():
            state = store.load(case_id).state
            consent = state.consent
            if state.closed_on or consent is None or consent.withdrawn_on or not state.coordinators:
                continue
            coordinator = next(iter(state.coordinators.values()))
            others = sorted(
                set(consent.organisations) - {c.organisation.id for c in state.coordinators.values()}
            )
            if not others:
                continue
            actor = make_actor(coordinator.user_id, coordinator.organisation, "coordinator")
            withdrawal = cmd.WithdrawConsent(
                withdrawn_on=clock.today(), entire=False, organisation_ids=others[:1]
            )
            service.execute(
                Request(actor, f"withdraw-{case_id}"), case_id, methodcaller("withdraw_consent", withdrawal)
            )
            clock.advance(minutes=5)
            done += 1
            if done == cases:
                break
    finally:
        store.close()


def as_published(store: CaseEventStore, names: BusNames) -> list[StreamMessage]:
    """The case stream the relay will write: the same bodies, in log order."""
    out: list[StreamMessage] = []
    for event in store.published_log(0, 1_000_000):
        subject = names.subject(event.case_id, event.type_name.split(".")[-2])
        out.append(StreamMessage(len(out) + 1, subject, {}, event.body))
    return out


def choose(expected: Expected) -> tuple[str, str]:
    ended = {
        org: sum(items.count(ENDED) for items in cases.values()) for org, cases in expected.per_org.items()
    }
    by_consent = max(ended, key=lambda org: (ended[org], org))
    busiest = max(
        (org for org in expected.per_org if org != by_consent),
        key=lambda org: (len(expected.per_org[org]), org),
    )
    return by_consent, busiest


@contextmanager
def shared_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cases: int = 12) -> Iterator[SharedCases]:
    """The pipeline, run until ``VSS_SHARE`` holds every organisation's share; the server stays up."""
    signer = CommitSigner.generate()
    case_url = f"sqlite:///{tmp_path / 'case.sqlite'}"
    generate_signed_cases(case_url, cases, signer, monkeypatch)
    keys_file = tmp_path / "vss-keys.json"
    keys = PublicKeys({signer.key_id: signer.private_key.public_key()})
    keys_file.write_text(json.dumps(keys.to_jwks()), encoding="utf-8")
    case_names = BusNames()  # the production names: the permissions are written for them
    share_names = share_bus_names("", case_names)
    store = CaseEventStore(StoreConfig(case_url))
    try:
        expected = expected_shares(as_published(store, case_names))
        by_consent, busiest = choose(expected)
        organisations = parse_organisations({by_consent: {}, busiest: {}})
        with authorized_nats_server(organisations) as (server, credentials):
            # The relay and the sharing service run in this process, so with one NATS user: the
            # operator's (each has its own under `vss up`). The subscribers use the organisations'.
            operator = credentials.internal_auth(InternalRole.OPERATOR)
            assert operator.seed_file is not None
            monkeypatch.setenv("VSS_NATS_NKEY_SEED_FILE", str(operator.seed_file))
            sharing_url = f"sqlite:///{tmp_path / 'sharing.sqlite'}"
            migrate_sharing(sharing_url)
            settings = SharingSettings(sharing_store_url=sharing_url, nats_url=server.url, data_dir=tmp_path)
            relay = Relay(
                CaseEventLog(store, case_names),
                server.url,
                settings=RelaySettings(names=case_names, lease_ttl=1.0, ack_timeout=2.0),
            )
            sharing = bootstrap_sharing(
                settings,
                case_names=case_names,
                share_names=share_names,
                relay_settings=RelaySettings(names=share_names, lease_ttl=1.0, ack_timeout=2.0),
            )
            thread = RelayThread(relay).start()
            try:
                with PartsThread(sharing):

                    def shared() -> int:
                        stream = read_stream(
                            server.url, share_names.stream, share_names.subjects, auth=operator
                        )
                        return len(asyncio.run(stream))

                    assert wait_until(lambda: shared() >= expected.total, 90, interval=0.5), (
                        "VSS_SHARE did not fill"
                    )
            finally:
                thread.stop()
            yield SharedCases(server, credentials, expected, keys_file, by_consent, busiest)
    finally:
        store.close()
