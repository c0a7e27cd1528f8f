"""An organisation's subscriber to its share of VSS, using only ``vss-contracts`` and ``nats-py`` (+ nkeys).

It connects as its organisation (the nkey seed the operator gave it, replies under
``_INBOX_<id>``), creates or resumes its own durable consumer on ``VSS_SHARE`` filtered to
``vss.share.<organisation>.>`` (the only consumer the server lets it create), and for every
message:

- a case event (``source`` ``/vss/case``): checks the case's hash chain and commit
  signatures so far with ``vss_contracts.verification.verify_case`` and the case service's
  published keys, appends the event to its local copy (``<copy>/<case id>.jsonl``, the
  bodies as received) and prints one JSON line;
- a ``SharingEnded`` (``source`` ``/vss/sharing``): records it in the copy, prints it and
  stops expecting that case; the copy is kept (what to do with it is the organisation's
  policy). If the case is shared again, the missed events follow and the copy goes on.

Each message is acknowledged once it is in the copy; an event id already in the copy (a
redelivery after a crash between writing and acking) is skipped, so the copy is also the
subscriber's record of what it applied::

    python examples/subscriber/subscriber.py --organisation vgr-psykiatri-nordost \\
        --seed .vss/nats-auth/organisations/vgr-psykiatri-nordost.nk \\
        --keys http://127.0.0.1:8000/.well-known/vss-keys.json --copy ./share-copy --idle-exit 3
    python examples/subscriber/subscriber.py --verify-copy --copy ./share-copy --keys vss-keys.json

``--verify-copy`` re-checks every case of the copy later, without connecting: a copy edited
since (an event rewritten, hashes recomputed or not) fails, naming the case and version.

Signed heads: the case service signs each commit over its last event, so a case whose copy
ends at a commit's end is wholly covered by a signature, and the check requires it. A case
whose sharing ended can end inside a commit (the commit's later event, e.g. the
``ConsentWithdrawn``, is not shared), so for such a case the copy is checked with
``require_signed_head=False``: every hash and every signature it holds, but its last events
after the last signature are vouched for by the chain only.
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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError

from vss_contracts.signing import InvalidKeySet, PublicKeys
from vss_contracts.subjects import (
    CASE_EVENT_SOURCE,
    SHARE_STREAM,
    SHARE_SUBJECT_PREFIX,
    SHARING_EVENT_SOURCE,
    share_token,
)
from vss_contracts.verification import CaseVerificationFailed, CaseVerified, verify_case

DEFAULT_URL = "nats://127.0.0.1:4422"  # the embedded server of `vss up`
FETCH_BATCH = 100
POLL_SECONDS = 1.0
REQUEST_SECONDS = 5.0  # a refused request gets no reply: the client times out

EXIT_OK, EXIT_CONNECT, EXIT_SETUP, EXIT_UNDECODABLE, EXIT_UNVERIFIED = 0, 1, 2, 3, 4


class SetupError(Exception):
    """The server, the credentials, the keys or the consumer are not as this subscriber needs them."""


class Undecodable(Exception):
    """A message that is not a CloudEvent from VSS."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Receive, verify and keep an organisation's share of VSS (stream VSS_SHARE).",
    )
    parser.add_argument("--url", default=os.environ.get("NATS_URL", DEFAULT_URL), help="NATS server")
    parser.add_argument("--organisation", metavar="ID", help="your organisation id (as in the filter)")
    parser.add_argument("--seed", type=Path, metavar="FILE", help="your organisation's nkey seed (SU…)")
    parser.add_argument(
        "--keys",
        required=True,
        metavar="URL|FILE",
        help="the case service's public keys: its /.well-known/vss-keys.json or a `vss keys export` file",
    )
    parser.add_argument("--copy", type=Path, required=True, metavar="DIR", help="the local copy")
    parser.add_argument(
        "--durable", metavar="NAME", help="your consumer's name (default: your organisation id)"
    )
    parser.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="exit after this long without a message"
    )
    parser.add_argument(
        "--verify-copy", action="store_true", help="only re-verify the local copy (no connection)"
    )
    args = parser.parse_args(argv)
    if not args.verify_copy and (args.organisation is None or args.seed is None):
        parser.error("--organisation and --seed are needed to subscribe")
    return args


def warn(text: str) -> None:
    print(f"subscriber: {text}", file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


# ------------------------------------------------------------------------------ the keys
def load_keys(source: str) -> PublicKeys:
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(
                source, timeout=10
            ) as response:  # the operator's URL (http/https only)
                return PublicKeys.from_json(response.read())
        return PublicKeys.from_file(Path(source))
    except (OSError, InvalidKeySet) as error:
        raise SetupError(f"cannot load the keys from {source}: {error}") from None


# ----------------------------------------------------------------------- the local copy
@dataclass
class CaseCopy:
    """One case as received: its file, its case events and whether sharing has ended."""

    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)  # source /vss/case, in version order
    ids: set[str] = field(default_factory=set)  # every message id in the file (SharingEnded too)
    ended: dict[str, Any] | None = None  # the last SharingEnded's data, while sharing stays ended

    @classmethod
    def load(cls, path: Path) -> CaseCopy:
        copy = cls(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            copy.take(json.loads(line))
        return copy

    def take(self, event: dict[str, Any]) -> None:
        self.ids.add(event["id"])
        if event.get("source") == SHARING_EVENT_SOURCE:
            self.ended = event["data"]
        else:
            self.events.append(event)
            self.ended = None  # shared again: the missed events come first

    def append(self, body: bytes, event: dict[str, Any]) -> None:
        with self.path.open("ab") as file:  # the body as received, one per line
            file.write(body.rstrip(b"\n") + b"\n")
            file.flush()
            os.fsync(file.fileno())
        self.take(event)

    def verify(self, keys: PublicKeys, *, complete: bool) -> CaseVerified:
        """``complete``: the copy should end at a commit's end (not while a batch is half-read)."""
        return verify_case(self.events, keys, require_signed_head=complete and self.ended is None)


def load_copy(directory: Path) -> dict[str, CaseCopy]:
    directory.mkdir(parents=True, exist_ok=True)
    return {path.stem: CaseCopy.load(path) for path in sorted(directory.glob("*.jsonl"))}


def verify_copy(args: argparse.Namespace) -> int:
    keys = load_keys(args.keys)
    failed = 0
    for case_id, copy in load_copy(args.copy).items():
        try:
            verified = copy.verify(keys, complete=True)
        except CaseVerificationFailed as failure:
            warn(str(failure))
            failed += 1
            continue
        emit(
            {
                "case_id": case_id,
                "verified": True,
                "version": verified.version,
                "signed_through": verified.signed_through,
                "sharing_ended": copy.ended is not None,
            }
        )
    return EXIT_UNVERIFIED if failed else EXIT_OK


# -------------------------------------------------------------------------- the subscriber
class Subscriber:
    def __init__(self, args: argparse.Namespace, keys: PublicKeys) -> None:
        self.args = args
        self.keys = keys
        self.copies = load_copy(args.copy)
        self.stopping = asyncio.Event()
        self.last_message = time.monotonic()
        self.durable = args.durable or args.organisation
        self.filter = f"{SHARE_SUBJECT_PREFIX}.{share_token(args.organisation)}.>"

    def copy_of(self, case_id: str) -> CaseCopy:
        if case_id not in self.copies:
            self.copies[case_id] = CaseCopy(self.args.copy / f"{case_id}.jsonl")
        return self.copies[case_id]

    def verified(self, copy: CaseCopy, event: dict[str, Any]) -> CaseVerified:
        """The case so far with ``event`` at its end; keys fetched again once for a new key id."""
        candidate = CaseCopy(copy.path, [*copy.events, event])
        try:
            return candidate.verify(self.keys, complete=False)
        except CaseVerificationFailed as failure:
            if "unknown key" not in failure.reason or not self.args.keys.startswith("http"):
                raise
            self.keys = load_keys(self.args.keys)  # a key rotated since start
            return candidate.verify(self.keys, complete=False)

    def handle(self, msg: Msg) -> None:
        try:
            event = json.loads(msg.data)
            case_id, source, event_id = str(event["subject"]), event["source"], str(event["id"])
        except (ValueError, KeyError, TypeError) as error:
            raise Undecodable(f"{msg.subject}: not a CloudEvent ({error})") from None
        copy = self.copy_of(case_id)
        if event_id in copy.ids:
            warn(f"skipped {msg.subject}: event {event_id} is in the copy already")
            return
        if source == SHARING_EVENT_SOURCE:
            copy.append(msg.data, event)
            emit({"case_id": case_id, "type": event["type"], "event_id": event_id, **event["data"]})
            return
        if source != CASE_EVENT_SOURCE:
            raise Undecodable(f"{msg.subject}: unknown source {source!r}")
        verified = self.verified(copy, event)  # raises CaseVerificationFailed: not stored, not acked
        copy.append(msg.data, event)
        emit(
            {
                "case_id": case_id,
                "case_version": event["caseversion"],
                "type": event["type"],
                "event_id": event_id,
                "verified": True,
                "signed_through": verified.signed_through,
            }
        )

    def idle_for_too_long(self) -> bool:
        idle = self.args.idle_exit
        return idle is not None and time.monotonic() - self.last_message >= idle

    async def run(self, nc: Client) -> None:
        js = nc.jetstream(timeout=REQUEST_SECONDS)
        config = ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,  # it keeps its position between runs
            filter_subject=self.filter,  # one subject: the client puts it in the checked API subject
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_ack_pending=FETCH_BATCH * 2,
        )
        try:
            await js.add_consumer(SHARE_STREAM, config)  # the same config again changes nothing
        except APIError as error:
            raise SetupError(f"the server refused the consumer: {error.description or error}") from None
        except NatsTimeoutError:
            raise SetupError(
                f"no answer creating consumer {self.durable} on {SHARE_STREAM} (refused by the"
                " server's permissions? the name must be yours, the filter your own)"
            ) from None
        sub = await js.pull_subscribe_bind(durable=self.durable, stream=SHARE_STREAM)
        poll = min(POLL_SECONDS, self.args.idle_exit) if self.args.idle_exit else POLL_SECONDS
        while not self.stopping.is_set() and not self.idle_for_too_long():
            try:
                messages = await sub.fetch(FETCH_BATCH, timeout=poll)
            except TimeoutError:  # nats-py's own, or asyncio's when a fetch times out mid-batch
                continue
            self.last_message = time.monotonic()
            for index, msg in enumerate(messages):
                if self.stopping.is_set():
                    break
                try:
                    self.handle(msg)
                except (Undecodable, CaseVerificationFailed):
                    for rest in messages[index:]:
                        await rest.nak()
                    raise
                await msg.ack()  # after the copy holds it
            # What was fetched and not handled (Ctrl-C) comes again after the ack wait.
        await sub.unsubscribe()
        self.check_heads()

    def check_heads(self) -> None:
        """At the end, every case still shared ends at a signed commit (the batches were read whole)."""
        for copy in self.copies.values():
            if copy.events and copy.ended is None:
                copy.verify(self.keys, complete=True)


async def amain(args: argparse.Namespace) -> int:
    try:
        keys = load_keys(args.keys)
        subscriber = Subscriber(args, keys)
    except SetupError as error:
        warn(str(error))
        return EXIT_SETUP
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows: Ctrl-C still stops
            loop.add_signal_handler(signum, subscriber.stopping.set)
    try:
        nc = await nats.connect(
            args.url,
            nkeys_seed=str(args.seed),
            inbox_prefix=f"_INBOX_{args.organisation}",  # replies on the shared _INBOX are refused
            connect_timeout=5,
            max_reconnect_attempts=3,
            allow_reconnect=True,
        )
    except Exception as error:  # refused, wrong seed, no server: one line
        warn(f"cannot connect to {args.url} as {args.organisation}: {error or type(error).__name__}")
        return EXIT_CONNECT
    try:
        await subscriber.run(nc)
    except SetupError as error:
        warn(str(error))
        return EXIT_SETUP
    except Undecodable as error:
        warn(f"stopped at a message it cannot decode: {error}")
        return EXIT_UNDECODABLE
    except CaseVerificationFailed as failure:
        warn(f"stopped: {failure}")
        return EXIT_UNVERIFIED
    finally:
        await nc.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.verify_copy:
        try:
            return verify_copy(args)
        except SetupError as error:
            warn(str(error))
            return EXIT_SETUP
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
