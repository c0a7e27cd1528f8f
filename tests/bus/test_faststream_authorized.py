"""The kit's FastStream subscriber as a service runs it: its own NATS user, the generated permissions."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from services.shared.bus.authorization import InternalRole
from services.shared.bus.consumer import ConsumerSettings
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, service_broker
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, connect
from services.shared.organisations import parse_organisations
from tests.support.bus import read_stream
from tests.support.nats import authorized_nats_server
from tests.support.projection import EventTable

ORGANISATIONS = parse_organisations({"vgr-psykiatri-nordost": {}})


def test_a_service_user_consumes_the_case_stream_and_parks_letters_without_declaring_the_stream(
    tmp_path: Path,
) -> None:
    names = BusNames()  # the permissions are written for the contracts' names
    table = EventTable(tmp_path / "state.sqlite", "projections")

    with authorized_nats_server(ORGANISATIONS) as (server, credentials):

        async def main() -> tuple[int, int]:
            case = await connect(server.url, name="relay", auth=credentials.internal_auth(InternalRole.CASE))
            js = case.jetstream()
            await js.add_stream(case_stream_config(names))  # its owner declares it
            for _ in range(3):
                await js.publish(names.subject(uuid.uuid4(), "CaseOpened"), b"{}")
            await case.close()

            auth = credentials.internal_auth(InternalRole.PROJECTIONS)
            broker = service_broker(server.url, name="projections", auth=auth)
            kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable="projections", names=names))
            await kit.prepare()
            await broker.start()
            for _ in range(250):
                if kit.dead_lettered == 3:
                    break
                await asyncio.sleep(0.02)
            await broker.stop()
            return kit.dead_lettered, table.applied_through()

        dead_lettered, applied_through = asyncio.run(main())
        letters = asyncio.run(
            read_stream(
                server.url,
                names.dead_letter_stream,
                f"{names.dead_letter_prefix}.>",
                auth=credentials.internal_auth(InternalRole.OPERATOR),
            )
        )
    assert dead_lettered == 3  # the bodies are no CloudEvents
    assert applied_through == 3
    assert [letter.subject.split(".")[2] for letter in letters] == ["projections"] * 3
    table.close()
