"""A lease in a JetStream key-value bucket: only one relay publishes to a stream at a time.

The holder creates the key (which fails while another holds it) and renews it by
updating it at its revision; the bucket's TTL removes a key whose holder died, so a
waiting relay takes over at most one TTL after a crash. Correctness does not rest on the
lease alone: every publish also asserts the stream's last sequence, so even two relays
that both believe they hold it can neither duplicate nor reorder events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.streams import server_urls

log = structlog.get_logger("vss.bus.lease")


class LeaseLost(RuntimeError):
    """The lease expired or was taken over: stop publishing at once."""


class Lease:
    def __init__(
        self, js: JetStreamContext, *, bucket: str, key: str, owner: str, ttl: float, replicas: int = 1
    ) -> None:
        self.js = js
        self.bucket = bucket
        self.key = key
        self.owner = owner
        self.ttl = ttl
        # As many as the stream the lease guards: on one node of a cluster, that node's
        # loss would stop the relay while the stream itself was still writable.
        self.replicas = replicas
        self._kv: KeyValue | None = None
        self._revision: int | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    KeyValueConfig(
                        bucket=self.bucket,
                        ttl=self.ttl,
                        history=1,
                        storage=StorageType.FILE,
                        replicas=self.replicas,
                    )
                )
        return self._kv

    async def acquire(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Wait until this owner holds the lease; False if asked to stop first."""
        kv = await self._bucket()
        waiting_logged = False
        while not stopping():
            try:
                self._revision = await kv.create(self.key, self.owner.encode())
                log.info("lease.acquired", key=self.key, owner=self.owner)
                return True
            except KeyWrongLastSequenceError:
                if not waiting_logged:
                    holder = await self.holder()
                    log.info("lease.waiting", key=self.key, holder=holder, ttl=self.ttl)
                    waiting_logged = True
                await asyncio.sleep(min(1.0, self.ttl / 4))
        return False

    async def holder(self) -> str | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(self.key)
        except (NotFoundError, KeyError):
            return None
        return entry.value.decode() if entry.value else None

    async def renew(self) -> None:
        kv = await self._bucket()
        if self._revision is None:
            raise LeaseLost(f"{self.owner} does not hold {self.key}")
        try:
            self._revision = await kv.update(self.key, self.owner.encode(), last=self._revision)
        except KeyWrongLastSequenceError as error:
            # A renewal whose answer was lost may have been stored: still ours if it says so.
            try:
                entry = await kv.get(self.key)
            except (NotFoundError, KeyError):
                entry = None
            if entry is not None and entry.value == self.owner.encode() and entry.revision is not None:
                self._revision = entry.revision
                return
            self._revision = None
            raise LeaseLost(f"lease {self.key} was taken over: {error}") from error

    async def keep(self) -> None:
        """Renew every third of the TTL until cancelled; raises LeaseLost once it slipped away.

        Renewals are timed from when the last one was sent (the server ages the key from
        when it stored it), not from its answer, so a slow answer does not push the next
        renewal later. A renewal that fails for want of an answer (a busy or reconnecting
        server) is sent again at once while the lease may still be alive; past the TTL it
        is lost. A late wake-up of this task (a blocked event loop) is logged: it is the
        one way left for a lease to expire under the holder's own load.
        """
        interval = self.ttl / 3
        sent = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, sent + interval - time.monotonic()))
            late = time.monotonic() - sent - interval
            if late > interval:
                log.warning("lease.renewal_late", key=self.key, owner=self.owner, late_s=round(late, 2))
            attempt = time.monotonic()
            while True:
                try:
                    await self.renew()
                    break
                except (NatsTimeoutError, TimeoutError, NatsError, OSError) as error:
                    if time.monotonic() - sent >= self.ttl:
                        self._revision = None
                        raise LeaseLost(f"lease {self.key} not renewed within its TTL: {error!r}") from error
                    log.warning("lease.renewal_retry", key=self.key, owner=self.owner, error=repr(error))
                    await asyncio.sleep(min(0.1, self.ttl / 30))
            sent = attempt

    async def release(self) -> None:
        if self._kv is None or self._revision is None:
            return
        with contextlib.suppress(Exception):  # best effort: the TTL frees it anyway
            await self._kv.delete(self.key, last=self._revision)
        self._revision = None
        log.info("lease.released", key=self.key, owner=self.owner)


async def current_holder(nats_url: str, *, bucket: str, key: str, auth: NatsAuth | None = None) -> str | None:
    """Who holds a lease now (None: nobody, or the server cannot be reached)."""
    import nats  # noqa: PLC0415 (kept local: only the CLI's health check needs a one-off connection)

    try:
        nc = await nats.connect(
            server_urls(nats_url),
            connect_timeout=1,
            max_reconnect_attempts=0,
            allow_reconnect=False,
            **(auth.options() if auth else {}),
        )
    except Exception:
        return None
    try:
        kv = await nc.jetstream().key_value(bucket)
        entry = await kv.get(key)
        return entry.value.decode() if entry.value else None
    except Exception:
        return None
    finally:
        await nc.close()
