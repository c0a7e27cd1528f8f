"""Connecting to NATS and declaring or binding the streams.

Only a stream's owner declares it (the relay for the case stream; the consumer base
for the dead-letter stream), and only when it is missing: an existing stream is never
updated from code, so an operator's changes (replicas, placement) survive a restart.
Everyone else binds to a stream and waits for it to exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.dial import dial
from services.shared.bus.names import BusNames
from services.shared.settings import BusSettings

log = structlog.get_logger("vss.bus")

DUPLICATE_WINDOW_SECONDS = 120.0

# What a request meets while a stream or consumer has no leader (a cluster electing one after
# losing a node, for some seconds): "no responders" or a 503. Not a failure: try again.
NO_LEADER_YET: tuple[type[Exception], ...] = (
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
)


def server_urls(url: str) -> list[str]:
    """The servers a URL setting names: one URL, or several comma-separated (a cluster's nodes).

    nats-py takes a list for several servers; a comma-separated string would be parsed as one.
    """
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(
    url: str,
    *,
    name: str,
    stopping: Callable[[], bool] = lambda: False,
    max_backoff: float = 5.0,
    client: Callable[[], Client] = Client,
    auth: NatsAuth | None = None,
) -> Client:
    """Connect, retrying with backoff until the server answers (it may start after us).

    ``url``: one server, or a cluster's nodes comma-separated (any of them will do; nats-py
    also learns the others from the one it reaches). Once connected, nats-py reconnects by
    itself for ever (``max_reconnect_attempts=-1``), to any node it knows.
    ``client`` makes the (not yet connected) client: nats-py's own, or a subclass of it.
    ``auth``: this process's credentials; unset, the ones its settings name
    (``VSS_NATS_NKEY_SEED_FILE`` / ``VSS_NATS_CREDS_FILE``), so every process connects as the
    user ``vss up`` or the operator gave it (none set: no credentials).
    """
    if auth is None:
        auth = BusSettings().nats_auth()

    def retrying(reason: str, wait: float) -> None:
        log.warning("nats.connect_retry", url=url, error=reason, wait=wait)

    return await dial(
        client,
        retrying=retrying,
        stopping=stopping,
        max_backoff=max_backoff,
        servers=server_urls(url),
        name=name,
        error_cb=_on_error,
        disconnected_cb=_on_disconnected,
        reconnected_cb=_on_reconnected,
        **auth.options(),
    )


async def _on_error(error: Exception) -> None:
    log.warning("nats.error", error=str(error) or type(error).__name__)


async def _on_disconnected() -> None:
    log.info("nats.disconnected")  # also on a planned close; a lasting outage shows as retries


async def _on_reconnected() -> None:
    log.info("nats.reconnected")


def case_stream_config(names: BusNames, *, replicas: int = 1) -> StreamConfig:
    """The case stream: full history (limits, no age or size limit), de-duplicated, atomic batches."""
    return StreamConfig(
        name=names.stream,
        description="Every case event, in the case store's log order (VSS)",
        subjects=[names.subjects],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,  # never drop history to make room: refuse instead
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_atomic=True,
        allow_direct=True,
    )


def dead_letter_stream_config(names: BusNames, *, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=names.dead_letter_stream,
        description="Messages a consumer could not apply, with the reason and original headers (VSS)",
        subjects=[f"{names.dead_letter_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        max_age=0,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def declare_if_missing(js: JetStreamContext, config: StreamConfig) -> bool:
    """Create the stream unless it exists; True if created. An existing one is left as it is."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
        return False
    except NotFoundError:
        pass
    await js.add_stream(config)
    log.info("nats.stream_declared", stream=config.name, subjects=config.subjects)
    return True


async def wait_for_stream(
    js: JetStreamContext, stream: str, *, stopping: Callable[[], bool] = lambda: False
) -> None:
    """Bind, not declare: wait until the stream's owner has created it."""
    delay = 0.1
    while True:
        try:
            await js.stream_info(stream)
            return
        except NotFoundError:
            if stopping():
                raise
            log.info("nats.stream_waiting", stream=stream)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


async def read_from_start(
    js: JetStreamContext, stream: str, subject: str, *, description: str
) -> JetStreamContext.PullSubscription:
    """An ephemeral pull subscription over a whole stream, for a one-off reader (a rebuild, a
    verification): no acks kept, in memory, gone a minute after the reader stops."""
    return await js.pull_subscribe(
        subject,
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=60.0,
            mem_storage=True,
            description=description,
        ),
    )


async def stream_messages(nats_url: str, names: BusNames, *, name: str) -> AsyncGenerator[Msg, None]:
    """Every message the stream holds now, in order (an ordered consumer), for a store that
    takes its own stream over before it replays history; nothing if it is missing or empty."""
    nc = await connect(nats_url, name=name)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(names.stream)
        except NotFoundError:
            return
        sub = await js.subscribe(names.subjects, ordered_consumer=True, stream=names.stream)
        try:
            for _ in range(info.state.messages):
                yield await sub.next_msg(timeout=5)
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
