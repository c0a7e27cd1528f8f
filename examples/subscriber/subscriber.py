"""An external subscriber to the VSS case events, using only ``vss-contracts`` and ``nats-py``.

It binds to the existing stream (it never creates or changes it) and reads it in order,
through a durable pull consumer (``--durable NAME``: created on first use, resumed
afterwards, each message acknowledged explicitly once applied) or an ordered ephemeral
consumer (the default: nothing to acknowledge, nothing left on the server). It decodes
every message into the contract's typed event (older versions are upcast), skips an
event id it has already seen, and prints one JSON line per event::

    python examples/subscriber/subscriber.py --url nats://127.0.0.1:4422 --idle-exit 2
    python examples/subscriber/subscriber.py --durable acme-sync --subjects 'vss.case.*.SipDecided'
    python examples/subscriber/subscriber.py --stream VSS_DLQ --subjects 'vss.dlq.>' --idle-exit 2

Idempotency here is a set in memory, enough to show the rule: the bus delivers *at
least* once (a redelivery after a lost ack, a copy published again), so a subscriber
must recognise an event it has applied. A real subscriber stores the ids it applied
(or the last stream sequence, since the stream is in order) in its own database, in
the same transaction as the change the event causes; then a crash between "applied"
and "acked" leads to a skip, never to a second application.

Order after a crash: messages a durable had fetched but not acknowledged come again
once their ack wait (30 s) has passed, possibly after later ones. A subscriber that
needs strict order keeps the last stream sequence it applied and, when the durable's
acknowledged floor differs at start, recreates the durable at that sequence + 1 (what
VSS's own consumers do); this example only gives back (naks) what it fetched and did
not apply when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from pydantic import ValidationError

from vss_contracts import CloudEvent, UnknownEventType
from vss_contracts.subjects import (
    CASE_STREAM,
    CASE_SUBJECTS,
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
)

DEFAULT_URL = "nats://127.0.0.1:4422"  # the embedded server of `vss up`
FETCH_BATCH = 100
POLL_SECONDS = 1.0
CONNECT_SECONDS = 15.0

EXIT_OK, EXIT_CONNECT, EXIT_SETUP, EXIT_UNDECODABLE = 0, 1, 2, 3


class SetupError(Exception):
    """The stream or the consumer is not as this subscriber needs it."""


class Undecodable(Exception):
    """A message that is not a case event this version of vss-contracts knows."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Print every VSS case event of a JetStream stream, in order, once.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("NATS_URL", DEFAULT_URL),
        help="NATS server (default: $NATS_URL or %(default)s)",
    )
    parser.add_argument(
        "--creds", help="a NATS credentials file (user JWT and seed), if the server needs one"
    )
    parser.add_argument("--stream", default=CASE_STREAM, help="the stream to bind to (default: %(default)s)")
    parser.add_argument(
        "--subjects",
        default=CASE_SUBJECTS,
        help="subject filter, e.g. 'vss.case.*.SipDecided' (default: %(default)s)",
    )
    parser.add_argument(
        "--durable",
        metavar="NAME",
        help="use (create or resume) this durable pull consumer; without it an ordered ephemeral consumer",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-sequence",
        type=int,
        metavar="N",
        help="start at this stream sequence (default 1: the whole history). A durable that exists"
        " already resumes where it stands",
    )
    start.add_argument(
        "--from-time",
        type=datetime.fromisoformat,
        metavar="ISO8601",
        help="start at the first message stored at or after this time, with an offset"
        " (e.g. 2025-03-14T08:00+01:00)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="exit after this long without a new message (default: run until Ctrl-C)",
    )
    args = parser.parse_args(argv)
    if args.from_sequence is not None and args.from_sequence < 1:
        parser.error("--from-sequence starts at 1")
    if args.from_time is not None and args.from_time.tzinfo is None:
        parser.error("--from-time needs an offset (Z or +01:00)")
    return args


def consumer_config(args: argparse.Namespace) -> ConsumerConfig:
    """Where to start, and which subjects; the rest depends on the kind of consumer."""
    config = ConsumerConfig(filter_subject=args.subjects)
    if args.from_time is not None:
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, args.from_time
    else:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = args.from_sequence or 1
    return config


async def give_back(messages: list[Msg]) -> None:
    """Fetched but not applied: nak them, so they come first, and in order, to the next fetch."""
    for msg in messages:
        await msg.nak()


def dead_letter(msg: Msg) -> dict[str, str] | None:
    """Why and from where a message on the dead-letter stream was parked (None elsewhere)."""
    headers = msg.headers or {}
    if HEADER_DLQ_REASON not in headers:
        return None
    return {
        "reason": headers[HEADER_DLQ_REASON],
        "stream": headers.get(HEADER_DLQ_STREAM, ""),
        "sequence": headers.get(HEADER_DLQ_SEQUENCE, ""),
        "consumer": headers.get(HEADER_DLQ_CONSUMER, ""),
    }


def warn(text: str) -> None:
    print(f"subscriber: {text}", file=sys.stderr, flush=True)


class Subscriber:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seen: set[str] = set()  # a real subscriber keeps this (or the last sequence) in its database
        self.stopping = asyncio.Event()
        self.last_message = time.monotonic()

    # ----------------------------------------------------------------- one message
    def handle(self, msg: Msg) -> bool:
        """Apply one message; False if its event was applied before (a duplicate)."""
        sequence = msg.metadata.sequence.stream
        parked = dead_letter(msg)
        try:
            event = CloudEvent.model_validate_json(msg.data)
            fact = event.typed_data()  # the current model of the type, older versions upcast
        except (ValidationError, UnknownEventType) as error:
            if parked is None:
                raise Undecodable(f"stream sequence {sequence} on {msg.subject}: {error}") from error
            # Reading the dead-letter stream: an undecodable message is what one expects there.
            line = {"stream_sequence": sequence, "subject": msg.subject, "dead_letter": parked}
            print(json.dumps({**line, "undecodable": str(error).splitlines()[0]}), flush=True)
            return True
        # The same event parked by two consumers is two dead letters, not a duplicate.
        key = event.id if parked is None else f"{parked['consumer']}/{parked['sequence']}"
        if key in self.seen:
            warn(f"skipped stream sequence {sequence}: event {event.id} was applied already")
            return False
        # "Apply" the event: here, print it. Your code would update its state from `fact`
        # (a SipDecided, a CaseClosed …) and record event.id / the sequence in one transaction.
        line = {
            "stream_sequence": sequence,
            "subject": msg.subject,
            "type": event.type,
            "case_id": event.subject,
            "case_version": event.caseversion,
            "event_id": event.id,
            "current_type": fact.TYPE,  # = type, unless an older version was upcast
        }
        if parked is not None:
            line["dead_letter"] = parked
        print(json.dumps(line), flush=True)
        self.seen.add(key)
        return True

    # ---------------------------------------------------------------- the loops
    def idle_for_too_long(self) -> bool:
        idle = self.args.idle_exit
        return idle is not None and time.monotonic() - self.last_message >= idle

    def poll_seconds(self) -> float:
        return min(POLL_SECONDS, self.args.idle_exit) if self.args.idle_exit else POLL_SECONDS

    async def run_durable(self, js: JetStreamContext) -> None:
        name = self.args.durable
        await self.create_or_reuse_durable(js, name)
        sub = await js.pull_subscribe_bind(consumer=name, stream=self.args.stream)
        while not self.stopping.is_set() and not self.idle_for_too_long():
            try:
                messages = await sub.fetch(FETCH_BATCH, timeout=self.poll_seconds())
            except NatsTimeoutError:
                continue
            self.last_message = time.monotonic()
            for index, msg in enumerate(messages):
                if self.stopping.is_set():
                    await give_back(messages[index:])
                    break
                try:
                    self.handle(msg)
                except Undecodable:
                    await give_back(messages[index:])  # for the next run, after an upgrade of vss-contracts
                    raise
                await msg.ack()  # after applying: a crash in between means a redelivery, skipped above
        await sub.unsubscribe()  # the durable consumer stays on the server, at its position

    async def create_or_reuse_durable(self, js: JetStreamContext, name: str) -> None:
        try:
            info = await js.consumer_info(self.args.stream, name)
        except NotFoundError:
            config = consumer_config(self.args)
            config.durable_name = config.name = name
            config.ack_policy = AckPolicy.EXPLICIT
            config.ack_wait = 30.0
            config.max_ack_pending = FETCH_BATCH * 2
            await js.add_consumer(self.args.stream, config)
            warn(f"created durable consumer {name} on {self.args.stream}")
            return
        if info.config.deliver_subject:
            raise SetupError(f"consumer {name} is a push consumer, not a pull consumer")
        filters = info.config.filter_subjects or [info.config.filter_subject or ">"]
        if filters != [self.args.subjects]:
            raise SetupError(
                f"durable {name} filters {filters}, not {self.args.subjects!r}:"
                " use another name (an existing consumer is never changed)"
            )
        if self.args.from_sequence is not None or self.args.from_time is not None:
            warn(f"durable {name} exists: it resumes at its own position (--from-* applies to a new one)")
        warn(f"resuming durable consumer {name} ({info.num_pending} pending)")

    async def run_ordered(self, js: JetStreamContext) -> None:
        config = consumer_config(self.args)
        sub = await js.subscribe(
            self.args.subjects,
            stream=self.args.stream,
            ordered_consumer=True,  # ephemeral, in order, no acks: the client restarts it on a gap
            deliver_policy=config.deliver_policy,
            config=config,
        )
        try:
            while not self.stopping.is_set() and not self.idle_for_too_long():
                try:
                    msg = await sub.next_msg(timeout=self.poll_seconds())
                except NatsTimeoutError:
                    continue
                self.last_message = time.monotonic()
                self.handle(msg)  # an ordered consumer has nothing to acknowledge
        finally:
            await sub.unsubscribe()

    async def run(self, nc: Client) -> None:
        js = nc.jetstream()
        try:
            await js.stream_info(self.args.stream)  # bind: the stream must exist; it is never created here
        except NotFoundError:
            raise SetupError(f"no stream {self.args.stream} on {self.args.url}") from None
        runner: Callable[[JetStreamContext], Awaitable[None]] = (
            self.run_durable if self.args.durable else self.run_ordered
        )
        try:
            await runner(js)
        except APIError as error:
            raise SetupError(f"the server refused: {error.description or error}") from error


async def amain(args: argparse.Namespace) -> int:
    subscriber = Subscriber(args)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows: Ctrl-C still stops
            loop.add_signal_handler(signum, subscriber.stopping.set)

    async def on_error(error: Exception) -> None:
        warn(f"nats: {str(error) or type(error).__name__}")

    async def on_disconnected() -> None:
        warn("disconnected; reconnecting")

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                args.url,
                user_credentials=args.creds,
                name="vss-example-subscriber",
                connect_timeout=5,
                max_reconnect_attempts=-1,  # once connected, ride out server restarts
                error_cb=on_error,
                disconnected_cb=on_disconnected,
            ),
            timeout=CONNECT_SECONDS,  # but give up at start if the server never answers
        )
    except Exception as error:
        warn(f"cannot connect to {args.url}: {str(error) or type(error).__name__}")
        return EXIT_CONNECT
    try:
        await subscriber.run(nc)
    except SetupError as error:
        warn(str(error))
        return EXIT_SETUP
    except Undecodable as error:
        warn(f"stopped at an event this vss-contracts cannot decode (upgrade it, then run again): {error}")
        return EXIT_UNDECODABLE
    finally:
        await nc.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
