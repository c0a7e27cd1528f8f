"""An organisation's NATS credentials reach its own share subjects and nothing else.

Against a real nats-server started with the authorization `vss nats-config` generates. A
refusal is shown twice: the client gets no answer (the server drops the request), and the
server reports a permissions violation naming the subject; then, with VSS's own
credentials, that nothing was created or stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError

from services.shared.bus.authorization import (
    InternalRole,
    NatsAuth,
    NatsCredentials,
    inbox_prefix,
    new_user_seed,
    public_key,
)
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, connect
from services.shared.organisations import parse_organisations
from tests.support.nats import NatsServer, authorized_nats_server
from vss_contracts.subjects import SHARE_STREAM

REGION = "vgr-psykiatri-nordost"
MUNICIPALITY = "goteborg-socialtjanst"
CASES = ["0b7c1f0e-0000-4000-8000-000000000001", "0b7c1f0e-0000-4000-8000-000000000002"]
OWN_KEY = "kommun-med-egen-nyckel"  # made its key pair itself: VSS has only the public key
OWN_SEED = new_user_seed()
ORGANISATIONS = parse_organisations(
    {
        REGION: {},
        MUNICIPALITY: {"nats": {"consumers": [MUNICIPALITY, f"{MUNICIPALITY}-verify"]}},
        OWN_KEY: {"nats": {"public_key": public_key(OWN_SEED)}},
    }
)


@dataclass
class Setup:
    server: NatsServer
    credentials: NatsCredentials
    own_seed_file: Path
    per_organisation: dict[str, int] = field(default_factory=dict)

    def organisation_auth(self, organisation: str) -> NatsAuth:
        seed = self.credentials.organisations[organisation] or self.own_seed_file
        return NatsAuth(seed_file=seed, inbox_prefix=inbox_prefix(organisation))


@asynccontextmanager
async def client(setup: Setup, auth: NatsAuth, errors: list[str] | None = None) -> AsyncIterator[Client]:
    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(str(error))

    nc = await nats.connect(
        setup.server.url, connect_timeout=2, max_reconnect_attempts=0, error_cb=on_error, **auth.options()
    )
    try:
        yield nc
    finally:
        await nc.close()


async def _prepare(setup: Setup) -> None:
    """VSS's own users declare the streams and publish share messages for both organisations."""
    async with client(setup, setup.credentials.internal_auth(InternalRole.CASE)) as nc:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(BusNames()))
        await js.publish(f"vss.case.{CASES[0]}.CaseOpened", b"{}", timeout=5)
    async with client(setup, setup.credentials.internal_auth(InternalRole.SHARING)) as nc:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=SHARE_STREAM, subjects=["vss.share.>"]))
        for organisation, count in ((REGION, 3), (MUNICIPALITY, 2), (OWN_KEY, 1)):
            for n in range(count):
                subject = f"vss.share.{organisation}.{CASES[n % 2]}.CaseOpened"
                await js.publish(subject, f'{{"n": {n}}}'.encode(), timeout=5)
            setup.per_organisation[organisation] = count


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    own_seed_file = tmp_path_factory.mktemp("own") / f"{OWN_KEY}.nk"
    own_seed_file.write_bytes(OWN_SEED)
    with authorized_nats_server(ORGANISATIONS) as (server, credentials):
        assert credentials.organisations[OWN_KEY] is None  # no seed of it on VSS's side
        prepared = Setup(server, credentials, own_seed_file)
        asyncio.run(_prepare(prepared))
        yield prepared


async def _consumer_filter(setup: Setup, stream: str, name: str) -> str | None:
    """The filter of a consumer ("" unfiltered), None if there is none."""
    async with client(setup, setup.credentials.internal_auth(InternalRole.OPERATOR)) as nc:
        try:
            return (await nc.jetstream().consumer_info(stream, name)).config.filter_subject or ""
        except NotFoundError:
            return None


async def _stream_messages(setup: Setup, stream: str) -> int:
    async with client(setup, setup.credentials.internal_auth(InternalRole.OPERATOR)) as nc:
        return int((await nc.jetstream().stream_info(stream)).state.messages)


def _refused(errors: list[str], subject: str, what: str = "Publish") -> bool:
    # nats-py lower-cases the server's -ERR text.
    return any(
        f"permissions violation for {what} to".lower() in e.lower() and subject.lower() in e.lower()
        for e in errors
    )


async def _settle(errors: list[str], subject: str, what: str = "Publish") -> None:
    for _ in range(40):  # the server's -ERR arrives asynchronously
        if _refused(errors, subject, what):
            return
        await asyncio.sleep(0.05)


# --- what an organisation may do --------------------------------------------------------------


def test_an_organisation_reads_and_acknowledges_its_own_subjects(setup: Setup) -> None:
    async def main() -> tuple[list[str], int, int]:
        errors: list[str] = []
        async with client(setup, setup.organisation_auth(REGION), errors) as nc:
            js = nc.jetstream()
            await js.account_info()  # $JS.API.INFO: the official clients ask it at start
            await js.add_consumer(
                SHARE_STREAM,
                ConsumerConfig(
                    name=REGION,
                    durable_name=REGION,
                    filter_subject=f"vss.share.{REGION}.>",
                    ack_policy=AckPolicy.EXPLICIT,
                ),
                timeout=3,
            )
            sub = await js.pull_subscribe_bind(durable=REGION, stream=SHARE_STREAM)
            messages = await sub.fetch(10, timeout=2)
            for message in messages:
                await message.ack_sync(timeout=3)
            info = await js.consumer_info(SHARE_STREAM, REGION)
            return [m.subject for m in messages], info.num_ack_pending, info.ack_floor.stream_seq
        return [], -1, -1

    subjects, pending, _ = asyncio.run(main())
    assert len(subjects) == setup.per_organisation[REGION]
    assert all(s.startswith(f"vss.share.{REGION}.") for s in subjects)
    assert pending == 0  # every one acknowledged


def test_an_organisation_may_use_a_consumer_name_it_was_given(setup: Setup) -> None:
    async def main() -> int:
        async with client(setup, setup.organisation_auth(MUNICIPALITY)) as nc:
            js = nc.jetstream()
            name = f"{MUNICIPALITY}-verify"
            await js.add_consumer(
                SHARE_STREAM,
                ConsumerConfig(name=name, durable_name=name, filter_subject=f"vss.share.{MUNICIPALITY}.>"),
                timeout=3,
            )
            messages = await (await js.pull_subscribe_bind(durable=name, stream=SHARE_STREAM)).fetch(
                10, timeout=2
            )
            for message in messages:
                await message.ack_sync(timeout=3)
            return len(messages)

    assert asyncio.run(main()) == setup.per_organisation[MUNICIPALITY]


def test_an_organisation_with_its_own_key_pair_connects_with_its_seed(setup: Setup) -> None:
    async def main() -> list[str]:
        async with client(setup, setup.organisation_auth(OWN_KEY)) as nc:
            js = nc.jetstream()
            config = ConsumerConfig(
                name=OWN_KEY, durable_name=OWN_KEY, filter_subject=f"vss.share.{OWN_KEY}.>"
            )
            await js.add_consumer(SHARE_STREAM, config, timeout=3)
            messages = await (await js.pull_subscribe_bind(durable=OWN_KEY, stream=SHARE_STREAM)).fetch(
                5, timeout=2
            )
            for message in messages:
                await message.ack_sync(timeout=3)
            return [m.subject for m in messages]

    assert asyncio.run(main()) == [f"vss.share.{OWN_KEY}.{CASES[0]}.CaseOpened"]


# --- what the server refuses -----------------------------------------------------------------


REFUSED_CONSUMERS = {
    "on the case stream": (
        "VSS_CASE",
        ConsumerConfig(name=REGION, durable_name=REGION, filter_subject="vss.case.>"),
    ),
    "on another organisation's subjects": (
        SHARE_STREAM,
        ConsumerConfig(name=REGION, durable_name=REGION, filter_subject=f"vss.share.{MUNICIPALITY}.>"),
    ),
    "unfiltered": (SHARE_STREAM, ConsumerConfig(name=REGION, durable_name=REGION)),
    "filtered to everything": (
        SHARE_STREAM,
        ConsumerConfig(name=REGION, durable_name=REGION, filter_subject=">"),
    ),
    "under another organisation's name": (
        SHARE_STREAM,
        ConsumerConfig(name=MUNICIPALITY, durable_name=MUNICIPALITY, filter_subject=f"vss.share.{REGION}.>"),
    ),
    "by the legacy durable subject (filter not visible to the server)": (
        SHARE_STREAM,
        ConsumerConfig(durable_name=REGION, filter_subject=f"vss.share.{REGION}.>"),
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_CONSUMERS))
def test_the_server_refuses_an_organisation_a_consumer(setup: Setup, case: str) -> None:
    stream, config = REFUSED_CONSUMERS[case]
    name = config.name or config.durable_name
    assert name is not None

    async def main() -> tuple[list[str], BaseException | None]:
        errors: list[str] = []
        failure: BaseException | None = None
        async with client(setup, setup.organisation_auth(REGION), errors) as nc:
            try:
                await nc.jetstream().add_consumer(stream, config, timeout=1)
            except Exception as error:
                failure = error
            await _settle(errors, expected)
        return errors, failure

    kind = "CREATE" if config.name else "DURABLE.CREATE"
    expected = f"$JS.API.CONSUMER.{kind}.{stream}.{name}"
    errors, failure = asyncio.run(main())
    assert failure is not None, "the consumer was created"
    assert _refused(errors, expected), errors
    # None, or the organisation's own consumer of another test, unchanged.
    assert asyncio.run(_consumer_filter(setup, stream, name)) in (None, f"vss.share.{name}.>")


@pytest.mark.parametrize(
    "subject",
    [
        f"vss.share.{REGION}.{CASES[0]}.CaseOpened",
        f"vss.share.{MUNICIPALITY}.{CASES[0]}.CaseOpened",
        f"vss.case.{CASES[0]}.CaseOpened",
        "vss.dlq.x.y",
        "anything.at.all",
        "_INBOX.someone-else",
    ],
)
def test_the_server_refuses_an_organisation_any_publish(setup: Setup, subject: str) -> None:
    stored_before = {s: asyncio.run(_stream_messages(setup, s)) for s in ("VSS_CASE", SHARE_STREAM)}

    async def main() -> list[str]:
        errors: list[str] = []
        async with client(setup, setup.organisation_auth(REGION), errors) as nc:
            await nc.publish(subject, b'{"forged": true}', headers={"Nats-Msg-Id": "forged"})
            await nc.flush()
            await _settle(errors, subject)
        return errors

    errors = asyncio.run(main())
    assert _refused(errors, subject), errors
    assert {s: asyncio.run(_stream_messages(setup, s)) for s in ("VSS_CASE", SHARE_STREAM)} == stored_before


@pytest.mark.parametrize(
    "subject",
    [
        f"$JS.API.STREAM.INFO.{SHARE_STREAM}",  # message counts of every organisation
        "$JS.API.STREAM.INFO.VSS_CASE",
        f"$JS.API.STREAM.MSG.GET.{SHARE_STREAM}",
        f"$JS.API.DIRECT.GET.{SHARE_STREAM}",
        f"$JS.API.CONSUMER.MSG.NEXT.{SHARE_STREAM}.{MUNICIPALITY}",  # another's consumer
        f"$JS.API.CONSUMER.DELETE.{SHARE_STREAM}.{MUNICIPALITY}",
        f"$JS.API.STREAM.PURGE.{SHARE_STREAM}",
    ],
)
def test_the_server_refuses_an_organisation_other_api_requests(setup: Setup, subject: str) -> None:
    async def main() -> tuple[list[str], BaseException | None]:
        errors: list[str] = []
        failure: BaseException | None = None
        async with client(setup, setup.organisation_auth(REGION), errors) as nc:
            try:
                await nc.request(subject, b"{}", timeout=1)
            except Exception as error:
                failure = error
            await _settle(errors, subject)
        return errors, failure

    errors, failure = asyncio.run(main())
    assert failure is not None
    assert _refused(errors, subject), errors


def test_an_organisation_cannot_listen_to_replies_meant_for_others(setup: Setup) -> None:
    async def main() -> list[str]:
        errors: list[str] = []
        async with client(setup, setup.organisation_auth(REGION), errors) as nc:
            await nc.subscribe("_INBOX.>")
            await nc.subscribe(f"{inbox_prefix(MUNICIPALITY)}.>")
            await nc.flush()
            await _settle(errors, f"{inbox_prefix(MUNICIPALITY)}.>", "Subscription")
        return errors

    errors = asyncio.run(main())
    assert _refused(errors, "_INBOX.>", "Subscription"), errors
    assert _refused(errors, f"{inbox_prefix(MUNICIPALITY)}.>", "Subscription"), errors


def test_a_client_without_credentials_is_refused(setup: Setup) -> None:
    async def anonymous() -> None:
        await nats.connect(
            setup.server.url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False
        )

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(anonymous())


def test_vss_processes_connect_through_the_shared_connect_with_their_role(setup: Setup) -> None:
    async def main() -> int:
        nc = await connect(
            setup.server.url, name="test-relay", auth=setup.credentials.internal_auth(InternalRole.CASE)
        )
        try:
            ack = await nc.jetstream().publish(f"vss.case.{CASES[1]}.CaseOpened", b"{}", timeout=5)
            return int(ack.seq)
        finally:
            await nc.close()

    assert asyncio.run(main()) >= 2


def test_a_vss_role_publishes_only_its_own_subjects(setup: Setup) -> None:
    """Least privilege among VSS's processes: only the case role writes the case stream."""

    async def main() -> list[str]:
        errors: list[str] = []
        async with client(setup, setup.credentials.internal_auth(InternalRole.SHARING), errors) as nc:
            await nc.publish(f"vss.case.{CASES[0]}.CaseOpened", b"{}")
            await nc.flush()
            await _settle(errors, "vss.case.")
        return errors

    before = asyncio.run(_stream_messages(setup, "VSS_CASE"))
    errors = asyncio.run(main())
    assert _refused(errors, f"vss.case.{CASES[0]}.CaseOpened"), errors
    assert asyncio.run(_stream_messages(setup, "VSS_CASE")) == before


def test_a_push_consumer_cannot_deliver_into_the_case_stream(setup: Setup) -> None:
    """Subject permissions cannot see a consumer's body: its deliver subject is the server's to guard.

    An organisation's own push consumer aimed at ``vss.case.…`` must not land its messages
    in the internal stream (nats-server delivers only to subscribers; a stream does not count).
    """
    name = f"{MUNICIPALITY}-verify"
    before = asyncio.run(_stream_messages(setup, "VSS_CASE"))

    async def main() -> None:
        async with client(setup, setup.organisation_auth(MUNICIPALITY)) as nc:
            js = nc.jetstream()
            with suppress(NotFoundError):  # made by another test
                await js.delete_consumer(SHARE_STREAM, name)
            await js.add_consumer(
                SHARE_STREAM,
                ConsumerConfig(
                    name=name,
                    durable_name=name,
                    filter_subject=f"vss.share.{MUNICIPALITY}.>",
                    deliver_subject=f"vss.case.{CASES[0]}.Injected",
                ),
                timeout=3,
            )
            await asyncio.sleep(1.0)
            await js.delete_consumer(SHARE_STREAM, name)

    asyncio.run(main())
    assert asyncio.run(_stream_messages(setup, "VSS_CASE")) == before
