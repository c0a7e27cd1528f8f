"""The relay and a durable consumer work under the generated NATS authorization.

VSS's own processes connect through the shared ``connect()``, which takes their NATS user
from their settings (``VSS_NATS_NKEY_SEED_FILE``), as `vss up` gives it to each process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore
from services.shared.bus.authorization import InternalRole, NatsCredentials
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from services.shared.organisations import parse_organisations
from tests.bus.conftest import RelayThread
from tests.support.bus import read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.nats import NatsServer, authorized_nats_server
from tests.support.scenario import drive_to_first_sip

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def authorized() -> Iterator[tuple[NatsServer, NatsCredentials]]:
    with authorized_nats_server(parse_organisations({"vgr-psykiatri-nordost": {}})) as running:
        yield running


def test_the_relay_publishes_as_the_case_role_under_the_generated_authorization(
    service,  # type: ignore[no-untyped-def]
    store: CaseEventStore,
    clock: FixedClock,
    authorized: tuple[NatsServer, NatsCredentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, credentials = authorized
    names = BusNames()  # the production names: the permissions are written for them
    monkeypatch.setenv("VSS_NATS_NKEY_SEED_FILE", str(credentials.internal[InternalRole.CASE]))
    drive_to_first_sip(service, clock)
    log = store.read_log(0, 1000)
    operator = credentials.internal_auth(InternalRole.OPERATOR)

    def published() -> int:
        return len(asyncio.run(read_stream(server.url, names.stream, names.subjects, auth=operator)))

    relay = Relay(
        CaseEventLog(store, names),
        server.url,
        settings=RelaySettings(names=names, lease_ttl=1.0, ack_timeout=2.0),
    )
    thread = RelayThread(relay).start()
    try:
        assert wait_until(lambda: published() == len(log), 10)
    finally:
        thread.stop()
    messages = asyncio.run(read_stream(server.url, names.stream, names.subjects, auth=operator))
    assert [m.position for m in messages] == [n.id for n in log]
