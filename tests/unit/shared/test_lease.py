"""The relay's lease kept against an in-memory key-value bucket: slow, lost and refused renewals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from services.shared.bus.lease import Lease, LeaseLost

TTL = 0.06  # renewals every 20 ms


@dataclass
class Entry:
    value: bytes
    revision: int


@dataclass
class FakeBucket:
    """One key, compare-and-set by revision, as JetStream's key-value store keeps it.

    ``answers`` scripts the next updates: ``"timeout"`` (not stored, no answer),
    ``"stored-unanswered"`` (stored, the answer lost), else a normal update.
    """

    answers: list[str] = field(default_factory=list)
    entry: Entry | None = None
    updates: int = 0

    async def create(self, key: str, value: bytes) -> int:
        if self.entry is not None:
            raise KeyWrongLastSequenceError("wrong last sequence: 1")
        self.entry = Entry(value, 1)
        return 1

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        self.updates += 1
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "timeout":
            raise NatsTimeoutError
        if self.entry is None or last != self.entry.revision:
            raise KeyWrongLastSequenceError(
                f"wrong last sequence: {self.entry.revision if self.entry else 0}"
            )
        self.entry = Entry(value, self.entry.revision + 1)
        if answer == "stored-unanswered":
            raise NatsTimeoutError
        return self.entry.revision

    async def get(self, key: str) -> Entry:
        if self.entry is None:
            raise KeyNotFoundError
        return self.entry

    def taken_over_by(self, owner: str) -> None:
        assert self.entry is not None
        self.entry = Entry(owner.encode(), self.entry.revision + 5)


class FakeJetStream:
    def __init__(self, bucket: FakeBucket) -> None:
        self.bucket = bucket

    async def key_value(self, name: str) -> FakeBucket:
        return self.bucket


async def _held(bucket: FakeBucket) -> Lease:
    lease = Lease(FakeJetStream(bucket), bucket="B", key="leader", owner="relay-a", ttl=TTL)  # type: ignore[arg-type]
    assert await lease.acquire()
    return lease


async def _keep_for(lease: Lease, seconds: float) -> BaseException | None:
    """Keep the lease for ``seconds``; the error that ended it sooner, if any."""
    keeper = asyncio.create_task(lease.keep())
    await asyncio.sleep(seconds)
    if keeper.done():
        return keeper.exception()
    keeper.cancel()
    return None


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_renewal_that_gets_no_answer_is_sent_again_and_the_lease_is_kept() -> None:
    bucket = FakeBucket(answers=["timeout", "timeout"])

    async def main() -> tuple[BaseException | None, int]:
        lease = await _held(bucket)
        return await _keep_for(lease, 4 * TTL), bucket.updates

    error, updates = run(main())
    assert error is None
    assert updates > 3  # both retries, then renewals on schedule
    assert bucket.entry is not None
    assert bucket.entry.value == b"relay-a"


def test_a_renewal_stored_whose_answer_was_lost_is_recognised_as_its_own() -> None:
    bucket = FakeBucket(answers=["stored-unanswered"])

    async def main() -> BaseException | None:
        lease = await _held(bucket)
        return await _keep_for(lease, 4 * TTL)

    assert run(main()) is None  # the next update's "wrong last sequence" finds the key still its own


def test_renewals_unanswered_for_the_whole_ttl_lose_the_lease() -> None:
    bucket = FakeBucket(answers=["timeout"] * 1000)

    async def main() -> BaseException | None:
        lease = await _held(bucket)
        return await _keep_for(lease, 4 * TTL)

    error = run(main())
    assert isinstance(error, LeaseLost)
    assert "within its TTL" in str(error)


def test_a_lease_another_relay_took_over_is_lost_at_the_next_renewal() -> None:
    bucket = FakeBucket()

    async def main() -> BaseException | None:
        lease = await _held(bucket)
        bucket.taken_over_by("relay-b")
        return await _keep_for(lease, 2 * TTL)

    error = run(main())
    assert isinstance(error, LeaseLost)
    assert "taken over" in str(error)


def test_the_lease_bucket_is_created_with_as_many_replicas_as_the_relay_is_given() -> None:
    """An R1 bucket on one node of a cluster would stop the relay when that node is lost."""

    class NoBucketYet:
        created: KeyValueConfig | None = None

        async def key_value(self, name: str) -> FakeBucket:
            raise BucketNotFoundError

        async def create_key_value(self, config: KeyValueConfig) -> FakeBucket:
            self.created = config
            return FakeBucket()

    js = NoBucketYet()
    lease = Lease(js, bucket="B", key="leader", owner="relay-a", ttl=TTL, replicas=3)  # type: ignore[arg-type]
    assert run(lease.acquire())
    assert js.created is not None
    assert (js.created.bucket, js.created.replicas, js.created.ttl) == ("B", 3, TTL)
