"""The rebuild's reader process: every event's hash still checked, what does not decode skipped.

A copy of the generated history on a stream of the test's own, with one event's payload
changed after it was hashed and one message that is not an event at all, rebuilt: the
rebuild reads and decodes in a process of its own (:mod:`.stream_reader`), and what
it hands over must carry the same verdicts as decoding in the rebuild's process.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.api import StreamConfig

from services.projections.domain.events import CaseEventRecord
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.decoding import decode
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import rebuild
from services.projections.infrastructure.stream_reader import (
    ReaderFailed,
    read_decoded,
    stream_sequence,
)
from services.shared.bus.names import BusNames
from tests.projections.conftest import History
from tests.support.bus import read_stream
from tests.support.nats import delete_streams


async def _publish(url: str, names: BusNames, bodies: list[tuple[str, bytes]]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=names.stream, subjects=[names.subjects]))
        for subject, body in bodies:
            await js.publish(subject, body)
    finally:
        await nc.close()


@pytest.fixture
def altered(history: History) -> Iterator[tuple[BusNames, int, str, int]]:
    """The history on a stream of its own, with event 5 of one case altered and a stray message.

    (names, messages, the altered case, the altered version).
    """
    messages = asyncio.run(read_stream(history.nats_url, history.names.stream, history.names.subjects))
    tag = secrets.token_hex(4)
    names = BusNames(f"TREADER{tag}_CASE", f"treader{tag}.vss.case", f"TREADER{tag}_DLQ", f"treader{tag}.dlq")
    bodies: list[tuple[str, bytes]] = []
    altered_case, altered_version = "", 0
    for message in messages:
        subject = message.subject.replace(history.names.subject_prefix, names.subject_prefix, 1)
        event = orjson.loads(message.body)
        if not altered_case and event["caseversion"] == 5:
            altered_case, altered_version = event["subject"], 5
            event["data"]["altered"] = True  # after it was hashed: eventhash no longer recomputes
            bodies.append((subject, orjson.dumps(event)))
            bodies.append((subject, b"not an event"))
            continue
        bodies.append((subject, message.body))
    assert altered_case, "the history has a case with five events"
    asyncio.run(_publish(history.nats_url, names, bodies))
    yield names, len(bodies), altered_case, altered_version
    asyncio.run(delete_streams(history.nats_url, [names.stream]))


def test_the_reader_checks_every_hash_and_skips_what_does_not_decode(
    history: History, altered: tuple[BusNames, int, str, int], tmp_path: Path
) -> None:
    names, messages, case_id, version = altered
    location = ReadModelLocation(f"sqlite:///{tmp_path}/readmodels")
    report = asyncio.run(rebuild(location, history.nats_url, names, batch=7))
    assert report.position == messages
    assert report.skipped == 1  # the stray message
    assert report.events == history.report.events
    models = ReadModels(location.connect(report.generation))
    try:
        view = models.overview(case_id)
        assert view is not None
        assert view["chain"]["verifies"] is False
        assert view["chain"]["broken_at"] == version
        assert view["chain"]["reason"] == "the event's content does not match its hash"
        verified = dict(
            models.conn.fetchall("SELECT version, verified FROM journal WHERE case_id = ?", (case_id,))
        )
        assert verified[version] == 0
        assert all(verified[v] == 1 for v in verified if v < version)
        broken = models.conn.fetchall(
            "SELECT case_id FROM journal WHERE verified = 0 AND case_id <> ?", (case_id,)
        )
        assert broken == []  # every other event verifies
    finally:
        models.close()
        location.close()


def test_the_reader_hands_over_what_decoding_here_makes(
    history: History, altered: tuple[BusNames, int, str, int]
) -> None:
    names, messages, _, _ = altered
    expected: list[CaseEventRecord] = []
    undecodable: list[int] = []
    for message in asyncio.run(read_stream(history.nats_url, names.stream, names.subjects)):
        try:
            expected.append(decode(message.body, message.sequence))
        except ValueError:
            undecodable.append(message.sequence)

    async def read() -> tuple[list[CaseEventRecord], list[int], list[int]]:
        records: list[CaseEventRecord] = []
        skipped: list[int] = []
        sizes: list[int] = []
        async with read_decoded(history.nats_url, names, 100) as batches:
            async for batch in batches:
                records += batch.records
                skipped += [sequence for sequence, _ in batch.undecodable]
                sizes.append(len(batch.records) + len(batch.undecodable))
                sequences = [r.stream_sequence for r in batch.records] + [s for s, _ in batch.undecodable]
                assert batch.position == max(sequences)
        return records, skipped, sizes

    records, skipped, sizes = asyncio.run(read())
    assert records == expected
    assert skipped == undecodable
    assert sum(sizes) == messages
    assert all(size == 100 for size in sizes[:-1])


def test_leaving_early_ends_the_reader(history: History) -> None:
    async def read() -> int:
        async with read_decoded(history.nats_url, history.names, 5) as batches:
            async for batch in batches:
                return batch.position
        return 0

    assert asyncio.run(asyncio.wait_for(read(), 30)) == 5


def test_a_reader_that_fails_says_why(history: History) -> None:
    missing = BusNames("TREADER_MISSING_CASE", "treader-missing.vss.case", "TREADER_MISSING_DLQ", "x.dlq")

    async def read() -> None:
        async with read_decoded(history.nats_url, missing, 10) as batches:
            async for _ in batches:
                pass

    with pytest.raises(ReaderFailed, match="stream not found"):
        asyncio.run(read())


def test_the_stream_sequence_is_read_from_either_form_of_reply_subject() -> None:
    assert stream_sequence("$JS.ACK.VSS_CASE.abc.1.42.40.1795484832294680820.7") == 42
    assert stream_sequence("$JS.ACK.hub.ACCHASH.VSS_CASE.abc.1.42.40.1795484832294680820.7.token") == 42
    with pytest.raises(ValueError, match="reply subject"):
        stream_sequence("_INBOX.abc")
