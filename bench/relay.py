"""Relay benchmark: store to acknowledged in JetStream, and commit to consumer latency.

Measured in the same run, against the same nats-server:

- **throughput**: a case store pre-filled with N real case events (cases opened and
  consented, then worksheets through ``CaseService``); a :class:`Relay` on a fresh
  stream is timed from its start (connect, declare, lease) until ``relay.published == N``.
  Beside it, raw nats-py: the same N message bodies, subjects and headers (pre-rendered),
  ``publish_async`` pipelined into a fresh stream of the same config, timed from connect
  until every ack is in. Best of 3 rounds each, interleaved. For information, where the
  time goes: the same relay over the same messages held in memory (no store read), and
  the store read + render alone (``CaseEventLog.read`` over the whole log), and the
  store's multi-event commits published raw as atomic batches against as single messages.
  When the store has multi-event commits, also the relay as before ADR 0004 decision 11 (one
  atomic batch per commit) and the store's messages published raw by three policies
  (:func:`policy_groups`). ``--store FILE`` runs these over a copy of another SQLite case
  store (e.g. the rebuild bench's generated one, whose commits often carry several events).
- **latency**: commands at a steady rate (default 200/s for 10 s after 1 s of warm-up)
  from a separate process (as the API would be), the relay in another process (the
  settings ``bootstrap_relay`` gives it: on SQLite woken by each commit's datagram with a
  100 ms fallback poll, or with ``--no-wake`` a 10 ms poll alone; LISTEN/NOTIFY on
  PostgreSQL), and in this process the receivers: the real ``DurableConsumer`` as
  services configure it, and an ordered push subscriber on the stream (the relay's share
  alone). Per event: from the command's return (commit) to the handler receiving it;
  also the CPU each process used, and the relay's CPU while idle.

With ``--cluster`` both are measured again on a three-node JetStream cluster on loopback
(:class:`EmbeddedNatsCluster`, every stream and the relay's lease at three replicas, as in
production), after the single node, on a store of its own; the bench then prints the two
side by side with the ratio cluster / single node.

Every run uses its own stream names (``BusNames.unique()``); the streams are deleted after.
Relay and consumer log events are collected and summarised (resyncs, warnings, errors),
and the embedded nats-server's log is scanned for warnings.

Usage::

    .venv/bin/python bench/relay.py                            # SQLite, embedded nats-server (~1 min)
    .venv/bin/python bench/relay.py --postgres --skip-sqlite   # PostgreSQL only (~2 min)
    .venv/bin/python bench/relay.py --postgres                 # both (~3 min)
    .venv/bin/python bench/relay.py --nats-url nats://127.0.0.1:4222
    .venv/bin/python bench/relay.py --cluster                  # and on a three-node R3 cluster (~2 min)
    .venv/bin/python bench/relay.py --no-wake                  # SQLite polled only, as before ADR 0004 d. 9
    .venv/bin/python bench/relay.py --skip-throughput --seconds 5   # the latency alone (~15 s)
    .venv/bin/python bench/relay.py --store .bench-cache/cases-173-….sqlite --rounds 2  # a generated store
    .venv/bin/python bench/relay.py --store .bench-cache/cases-5000-….sqlite --no-diagnostics  # a large one

Figures are printed as tables with ratios; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import NotFoundError

import services.shared.bus.relay as relay_module
from bench.append import ACTOR, WORKSHEET, Clock, Figure, _open_cases, _postgres_server
from services.case.application.service import CaseService, Request
from services.case.domain import commands as cmd
from services.case.infrastructure.log_waiter import PostgresLogWaiter, waiter_for
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.consumer import ConsumerSettings, Delivery, DurableConsumer
from services.shared.bus.embedded import EmbeddedNatsCluster, EmbeddedNatsServer
from services.shared.bus.names import BusNames
from services.shared.bus.relay import (
    OutboxMessage,
    Relay,
    RelaySettings,
    group_commits,
    lease_bucket,
    pack_commits,
)
from services.shared.bus.streams import case_stream_config, server_urls
from services.shared.bus.wake import WakeWaiter
from vss_contracts.subjects import HEADER_MSG_ID

ROUNDS = 3
READ_LIMIT = RelaySettings().read_limit
MAX_IN_FLIGHT = RelaySettings().max_in_flight
SQLITE_POLL = RelaySettings().idle_wait  # the relay's default poll interval (VSS_RELAY_POLL_INTERVAL)
SQLITE_WAKE_POLL = 0.1  # its fallback poll while woken by commits (VSS_RELAY_WAKE_POLL_INTERVAL)
POSTGRES_IDLE_WAIT = 1.0  # what services/case/bootstrap.py gives the relay with LISTEN/NOTIFY
IDLE_SECONDS = 2.0  # the relay's CPU is sampled this long with nothing to publish


def best_of(name: str, rounds: list[Figure]) -> Figure:
    best = max(rounds, key=lambda f: f.rate)
    return Figure(name, best.ops, best.seconds)


# ---------------------------------------------------------------------------------- logs
@dataclass
class LogTally:
    """Every structlog event of the relay and consumers, kept instead of printed."""

    records: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        level = str(event.pop("level", "?"))
        name = str(event.pop("event", "?"))
        self.records.append((time.monotonic(), level, name, dict(event)))
        raise structlog.DropEvent

    def summary(self) -> str:
        counts = Counter((level, name) for _, level, name, _ in self.records)
        return ", ".join(f"{name} ×{n} ({level})" for (level, name), n in sorted(counts.items())) or "none"

    def notable(self) -> list[tuple[float, str, str, dict[str, Any]]]:
        """Warnings and errors, and the info events that mean something went round again."""
        again = {"relay.resync", "lease.waiting", "consumer.repoint", "nats.reconnected"}
        return [r for r in self.records if r[1] not in {"info", "debug"} or r[2] in again]


def capture_logs() -> LogTally:
    tally = LogTally()
    structlog.configure(
        processors=[structlog.processors.add_log_level, tally], cache_logger_on_first_use=False
    )
    return tally


# ----------------------------------------------------------------------------- the store
def fill_store(url: str, events: int, cases: int) -> list[Any]:
    """Real case events: ``cases`` cases opened and consented, then worksheets round-robin."""
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    try:
        service = CaseService(store, Clock())
        ids = _open_cases(service, cases)
        command = cmd.CompleteWorksheet.model_validate(WORKSHEET)
        for i in range(events - store.max_position()):  # one event per worksheet
            service.execute(Request(ACTOR, "bench"), ids[i % cases], lambda c: c.complete_worksheet(command))
        return ids
    finally:
        store.close()


def read_everything(log_: CaseEventLog) -> list[OutboxMessage]:
    out: list[OutboxMessage] = []
    while page := log_.render(log_.fetch(out[-1].position if out else 0, READ_LIMIT)):
        out.extend(page)
    return out


class MemoryLog:
    """The same messages, already read and rendered: the relay's cost without the store's."""

    def __init__(self, messages: Sequence[OutboxMessage], names: BusNames) -> None:
        prefix = BusNames().subject_prefix
        self.messages = [
            OutboxMessage(
                m.position,
                m.event_id,
                names.subject_prefix + m.subject.removeprefix(prefix),
                m.body,
                dict(m.headers),
                m.commit_key,
            )
            for m in messages
        ]
        self.index = {m.position: i for i, m in enumerate(self.messages)}
        self.local = True  # as the SQLite store's log: fetched in the relay's loop

    def fetch(self, after: int, limit: int) -> Sequence[OutboxMessage]:
        start = self.index[after] + 1 if after else 0
        return self.messages[start : start + limit]

    def render(self, rows: Sequence[OutboxMessage]) -> Sequence[OutboxMessage]:
        return rows


# ---------------------------------------------------------------------------- NATS bits
async def delete_streams(nats_url: str, names: BusNames) -> None:
    nc = await nats.connect(server_urls(nats_url), connect_timeout=2)
    try:
        js = nc.jetstream()
        for stream in (names.stream, f"KV_{lease_bucket(names)}", names.dead_letter_stream):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await nc.close()


async def stream_state(js: JetStreamContext, stream: str) -> tuple[int, int]:
    info = await js.stream_info(stream)
    return info.state.messages, info.state.last_seq


# ----------------------------------------------------------------------------- throughput
@contextlib.contextmanager
def batch_per_commit() -> Iterator[None]:
    """The relay as before ADR 0004 decision 11 in this process: one atomic batch per commit."""
    packing = relay_module.pack_commits
    relay_module.pack_commits = lambda commits, limit=0: list(commits)  # type: ignore[assignment]
    try:
        yield
    finally:
        relay_module.pack_commits = packing


async def relay_round(
    store: CaseEventStore,
    config: StoreConfig,
    nats_url: str,
    n: int,
    tally: LogTally,
    setups: list[float],
    messages: Sequence[OutboxMessage] | None = None,
    *,
    replicas: int = 1,
    per_commit: bool = False,
) -> Figure:
    """A relay on a fresh stream, timed from its start until N acks; over ``messages`` if given;
    with ``per_commit``, one atomic batch per multi-event commit (before decision 11)."""
    with batch_per_commit() if per_commit else contextlib.nullcontext():
        return await _relay_round(store, config, nats_url, n, tally, setups, messages, replicas=replicas)


async def _relay_round(
    store: CaseEventStore,
    config: StoreConfig,
    nats_url: str,
    n: int,
    tally: LogTally,
    setups: list[float],
    messages: Sequence[OutboxMessage] | None = None,
    *,
    replicas: int = 1,
) -> Figure:
    names = BusNames.unique()
    waiter = waiter_for(config)
    relay = Relay(
        CaseEventLog(store, names) if messages is None else MemoryLog(messages, names),
        nats_url,
        settings=RelaySettings(
            names=names,
            replicas=replicas,
            idle_wait=POSTGRES_IDLE_WAIT if config.is_postgres else SQLITE_POLL,
        ),
        waiter=waiter,
        name="bench-relay",
    )
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    since = time.monotonic()
    last = messages[-1].position if messages else store.max_position()
    try:
        # Its position, not its acks: after a resync (an ack late on a busy machine) the stream
        # holds what landed unacknowledged, and the relay's position is the stream's tail.
        while relay.position < last:
            if task.done():
                task.result()
                raise RuntimeError(f"the relay stopped at position {relay.position} of {last}")
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        resumed = [r[0] for r in tally.records if r[2] == "relay.resume" and r[0] >= since]
        setups.append(resumed[0] - since if resumed else math.nan)
        stop.set()
        await asyncio.wait_for(task, 30)
        nc = await nats.connect(server_urls(nats_url))
        stored, last = await stream_state(nc.jetstream(), names.stream)
        await nc.close()
        if stored != n or last != n:
            raise RuntimeError(f"relay round: the stream holds {stored} messages (last {last}), expected {n}")
    finally:
        stop.set()
        if isinstance(waiter, PostgresLogWaiter):
            await waiter.close()
        await delete_streams(nats_url, names)
    name = (
        "relay: store → acked in JetStream" if messages is None else "relay over the same messages in memory"
    )
    return Figure(name, n, elapsed)


async def raw_round(
    nats_url: str, rendered: Sequence[tuple[str, bytes, dict[str, str]]], *, replicas: int = 1
) -> Figure:
    """publish_async of the same bodies and headers, pipelined (nats-py's default 4000 pending)."""
    names = BusNames.unique()
    subjects = [f"{names.subject_prefix}{suffix}" for suffix, _, _ in rendered]  # not timed
    headers = [dict(h) for _, _, h in rendered]
    n = len(rendered)
    started = time.perf_counter()
    nc = await nats.connect(server_urls(nats_url))
    try:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(names, replicas=replicas))

        async def publish_all() -> list[Any]:
            futures = [
                await js.publish_async(subject, body, headers=h)
                for subject, (_, body, _), h in zip(subjects, rendered, headers, strict=True)
            ]
            return list(await asyncio.gather(*futures))

        acks = await asyncio.wait_for(publish_all(), 120)
        elapsed = time.perf_counter() - started
        if [a.seq for a in acks] != list(range(1, n + 1)) or any(a.duplicate for a in acks):
            raise RuntimeError("raw round: acks out of order or duplicates")
    finally:
        await nc.close()
        await delete_streams(nats_url, names)
    return Figure("raw nats-py publish_async (same messages)", n, elapsed)


async def _reply_inbox(nc: Any) -> tuple[str, dict[str, asyncio.Future[bytes]]]:
    """An inbox whose replies complete the future registered under their subject."""
    inbox = nc.new_inbox()
    futures: dict[str, asyncio.Future[bytes]] = {}

    async def on_reply(msg: Any) -> None:
        future = futures.get(msg.subject)
        if future is not None and not future.done():
            future.set_result(msg.data)

    await nc.subscribe(f"{inbox}.*", cb=on_reply)
    return inbox, futures


async def commits_round(
    nats_url: str,
    commits: Sequence[Sequence[tuple[str, bytes, dict[str, str]]]],
    *,
    atomic: bool,
    replicas: int = 1,
) -> float:
    """Seconds to publish ``commits`` pipelined and have every ack: as atomic batches or as singles.

    Raw nats-py with our own reply inbox (``publish_async`` cannot send a batch's
    un-acknowledged messages); only the multi-event commits of the store, for the cost of
    an atomic batch against the same messages published one by one.
    """
    names = BusNames.unique()
    nc = await nats.connect(server_urls(nats_url))
    try:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(names, replicas=replicas))
        inbox, futures = await _reply_inbox(nc)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for k, commit in enumerate(commits):
            batch = uuid.uuid4().hex
            for index, (suffix, body, headers) in enumerate(commit, start=1):
                h = dict(headers)
                last = index == len(commit)
                if atomic:
                    h |= {Header.BATCH_ID: batch, Header.BATCH_SEQUENCE: str(index)}
                    if last:
                        h[Header.BATCH_COMMIT] = "1"
                subject = f"{names.subject_prefix}{suffix}"
                if atomic and not last:
                    await nc.publish(subject, body, headers=h)
                    continue
                reply = f"{inbox}.{k}x{index}"
                futures[reply] = loop.create_future()
                await nc.publish(subject, body, reply=reply, headers=h)
        replies = await asyncio.wait_for(asyncio.gather(*futures.values()), 60)
        elapsed = time.perf_counter() - started
        errors = [r for r in replies if b'"error"' in r]
        if errors:
            raise RuntimeError(f"commits round: {len(errors)} refused, e.g. {errors[0][:200]!r}")
        expected = sum(len(c) for c in commits)
        stored, _ = await stream_state(js, names.stream)
        if stored != expected:
            raise RuntimeError(f"commits round: the stream holds {stored} messages, expected {expected}")
    finally:
        await nc.close()
        await delete_streams(nats_url, names)
    return elapsed


def policy_groups(
    messages: Sequence[OutboxMessage], policy: str, limit: int = READ_LIMIT
) -> list[list[OutboxMessage]]:
    """The store's messages in the groups a policy publishes (a group of several: one atomic batch).

    ``commit``: one atomic batch per multi-event commit, single messages otherwise (the relay
    before ADR 0004 decision 11); ``page``: each page of ``limit`` messages as the relay reads
    it, its commits packed into atomic batches when any of them has several events (decision
    11); ``plain``: every message on its own (commits no longer atomic: for comparison only).
    """
    if policy == "plain":
        return [[m] for m in messages]
    if policy == "commit":
        return group_commits(messages, complete=True)
    groups: list[list[OutboxMessage]] = []
    for start in range(0, len(messages), limit):
        groups.extend(pack_commits(group_commits(messages[start : start + limit], complete=True)))
    return groups


async def policy_round(
    nats_url: str, groups: Sequence[Sequence[OutboxMessage]], names_prefix: str, *, replicas: int = 1
) -> float:
    """Seconds to publish every group pipelined (a group of several as one atomic batch, acked on
    its last message), each group's first message asserting the stream's last sequence, as the
    relay publishes; until every ack is in."""
    names = BusNames.unique()
    nc = await nats.connect(server_urls(nats_url))
    try:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(names, replicas=replicas))
        inbox, futures = await _reply_inbox(nc)
        loop = asyncio.get_running_loop()
        window: deque[tuple[asyncio.Future[bytes], int]] = deque()
        pending = 0
        started = time.perf_counter()
        sequence = 0
        for k, group in enumerate(groups):
            batch = uuid.uuid4().hex if len(group) > 1 else None
            for index, message in enumerate(group, start=1):
                h = dict(message.headers)
                if index == 1:
                    h[Header.EXPECTED_LAST_SEQUENCE] = str(sequence)
                last = index == len(group)
                if batch is not None:
                    h |= {Header.BATCH_ID: batch, Header.BATCH_SEQUENCE: str(index)}
                    if last:
                        h[Header.BATCH_COMMIT] = "1"
                subject = names.subject_prefix + message.subject.removeprefix(names_prefix)
                if not last:
                    await nc.publish(subject, message.body, headers=h)
                    continue
                reply = f"{inbox}.{k}"
                futures[reply] = future = loop.create_future()
                await nc.publish(subject, message.body, reply=reply, headers=h)
            sequence += len(group)
            window.append((future, len(group)))
            pending += len(group)
            if pending >= MAX_IN_FLIGHT:  # the relay's window: wait until it is half empty
                while pending >= MAX_IN_FLIGHT // 2:
                    oldest, size = window.popleft()
                    await asyncio.wait_for(oldest, 60)
                    pending -= size
        replies = await asyncio.wait_for(asyncio.gather(*futures.values()), 120)
        elapsed = time.perf_counter() - started
        errors = [r for r in replies if b'"error"' in r]
        if errors:
            raise RuntimeError(f"policy round: {len(errors)} refused, e.g. {errors[0][:200]!r}")
        stored, last_seq = await stream_state(js, names.stream)
        if stored != sequence or last_seq != sequence:
            raise RuntimeError(f"policy round: the stream holds {stored} messages, expected {sequence}")
    finally:
        await nc.close()
        await delete_streams(nats_url, names)
    return elapsed


POLICIES = ("commit", "page", "plain")


@dataclass(frozen=True)
class Throughput:
    """The best rounds' events/s, and an atomic batch's time (NaN: the store had none)."""

    relay: float
    raw: float
    memory: float
    batch_ms: float


def copy_store(source: str, url: str) -> int:
    """A copy of an SQLite case store (a generated one, e.g. the rebuild bench's cache) at ``url``."""
    import sqlite3  # noqa: PLC0415

    target = StoreConfig(url).sqlite_path()
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    store = CaseEventStore(StoreConfig(url))
    try:
        return store.max_position()
    finally:
        store.close()


async def bench_throughput(
    url: str,
    nats_url: str,
    n: int,
    cases: int,
    tally: LogTally,
    *,
    replicas: int = 1,
    source: str | None = None,
    rounds: int = ROUNDS,
    diagnostics: bool = True,
) -> Throughput:
    config = StoreConfig(url)
    logged = len(tally.records)
    started = time.perf_counter()
    if source is None:
        fill_store(url, n, cases)
    else:
        n = copy_store(source, url)
    fill_seconds = time.perf_counter() - started
    store = CaseEventStore(config)
    try:
        if store.max_position() != n:
            raise RuntimeError(f"the store holds {store.max_position()} events, expected {n}")
        reads: list[Figure] = []
        messages: list[OutboxMessage] = []
        for _ in range(rounds):
            log_ = CaseEventLog(store, BusNames())
            t0 = time.perf_counter()
            messages = read_everything(log_)
            reads.append(
                Figure("store read + render (CaseEventLog.read)", len(messages), time.perf_counter() - t0)
            )
        prefix = BusNames().subject_prefix
        rendered = [(m.subject.removeprefix(prefix), m.body, dict(m.headers)) for m in messages]
        commits = group_commits(messages, complete=True)
        batches = sum(1 for c in commits if len(c) > 1)
        sizes = sorted(len(m.body) for m in messages)

        by_position = {m.position: r for m, r in zip(messages, rendered, strict=True)}
        multi = [[by_position[m.position] for m in c] for c in commits if len(c) > 1]
        # The rounds that show where a multi-event commit's cost goes (the relay as before
        # decision 11, the raw policies, the commits alone) take minutes over a large store.
        diagnose = diagnostics and bool(multi)

        relays: list[Figure] = []
        per_commit: list[Figure] = []
        raws: list[Figure] = []
        memory: list[Figure] = []
        setups: list[float] = []
        as_batches: list[float] = []
        as_singles: list[float] = []
        groups = {policy: policy_groups(messages, policy) for policy in POLICIES}
        policies: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        for _ in range(rounds):
            relays.append(await relay_round(store, config, nats_url, n, tally, setups, replicas=replicas))
            if diagnose:
                per_commit.append(
                    await relay_round(
                        store, config, nats_url, n, tally, [], replicas=replicas, per_commit=True
                    )
                )
                for policy in POLICIES:
                    policies[policy].append(
                        await policy_round(nats_url, groups[policy], prefix, replicas=replicas)
                    )
            raws.append(await raw_round(nats_url, rendered, replicas=replicas))
            memory.append(
                await relay_round(store, config, nats_url, n, tally, [], messages, replicas=replicas)
            )
            if diagnose:
                as_batches.append(await commits_round(nats_url, multi, atomic=True, replicas=replicas))
                as_singles.append(await commits_round(nats_url, multi, atomic=False, replicas=replicas))
    finally:
        store.close()

    read, relay, raw = (
        best_of(reads[0].name, reads),
        best_of(relays[0].name, relays),
        best_of(raws[0].name, raws),
    )
    mem = best_of(memory[0].name, memory)
    print(
        f"\n{'PostgreSQL' if config.is_postgres else 'SQLite (WAL, file)'} throughput: {n} events"
        + (
            f" (filled in {fill_seconds:.1f} s: {cases} cases opened + consented, then worksheets),"
            if source is None
            else f" (a copy of {source}),"
        )
        + f" best of {rounds} rounds"
    )
    print(
        f"  bodies {sizes[0]}–{sizes[-1]} B (median {sizes[len(sizes) // 2]}),"
        f" {len(commits)} commits of which {batches} atomic batches (consecutive events of one case)"
    )
    print(f"  {'path':<48}{'events/s':>10}{'µs/event':>10}{'× raw':>8}   rounds (events/s)")
    shown = [(raw, raws), (relay, relays), (mem, memory), (read, reads)]
    if per_commit:
        name = "relay, one atomic batch per commit (before)"
        shown.insert(2, (best_of(name, [Figure(name, f.ops, f.seconds) for f in per_commit]), per_commit))
    for f, figures in shown:
        detail = ", ".join(f"{r.rate:.0f}" for r in figures)
        print(f"  {f.name:<48}{f.rate:>10.0f}{1e6 / f.rate:>10.1f}{f.rate / raw.rate:>8.2f}   {detail}")
    ratio = relay.rate / raw.rate
    print(f"  relay / raw = {ratio:.2f} ({'meets' if ratio >= 0.6 else 'MISSES'} the 0.6× target)")
    share = (1 / read.rate) / (1 / relay.rate)
    print(f"  read + render alone is {share:.0%} of the relay's time per event")
    print(
        "  relay start to publishing (connect, declare, KV lease, read the tail):"
        f" {min(setups) * 1000:.0f}–{max(setups) * 1000:.0f} ms"
        " (inside the relay's timing; the raw rounds' connect and add_stream are inside theirs)"
    )
    if diagnose:
        in_multi = sum(len(c) for c in multi)
        print(
            f"  the {len(multi)} multi-event commits ({in_multi} messages), raw, pipelined, best of {rounds}:"
            f" as atomic batches {min(as_batches) * 1000:.0f} ms"
            f" ({min(as_batches) * 1000 / len(multi):.1f} ms per commit),"
            f" as single publishes {min(as_singles) * 1000:.0f} ms"
        )
    if diagnose:
        print(f"  raw, the relay's way (expected last sequence, own acks), best of {rounds}, by policy:")
        for policy in POLICIES:
            batches = sum(1 for g in groups[policy] if len(g) > 1)
            rate = n / min(policies[policy])
            print(
                f"    {policy:<8}{len(groups[policy]):>8} publishes, {batches:>6} atomic batches:"
                f" {rate:>8.0f} events/s ({rate / raw.rate:.2f}× raw publish_async)"
            )
    relay_log = LogTally(tally.records[logged:])
    print(f"  relay log ({2 * rounds + len(per_commit)} relay runs): {relay_log.summary()}")
    notes = Counter(f"{level} {name} {fields}" for _, level, name, fields in relay_log.notable())
    for note, count in notes.items():
        print(f"    {note} ×{count}")
    batch_ms = min(as_batches) * 1000 / len(multi) if diagnose else math.nan
    return Throughput(relay.rate, raw.rate, mem.rate, batch_ms)


# -------------------------------------------------------------------------------- latency
def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; NaN elsewhere)."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processes_cpu(pids: Sequence[int | None]) -> float:
    """CPU seconds of a group of processes (a cluster's nodes)."""
    return sum(_process_cpu(pid) for pid in pids) if pids else math.nan


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot (Linux /proc; NaN elsewhere)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return math.nan, math.nan
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def _command_process(url: str, ids: list[Any], rate: float, total: int, go: MpEvent, out: Any) -> None:
    """Commands at a steady rate on a monotonic schedule; (event id, commit time, index) each."""
    store = CaseEventStore(StoreConfig(url))
    service = CaseService(store, Clock())
    command = cmd.CompleteWorksheet.model_validate(WORKSHEET)
    for case_id in ids:
        store.load(case_id)  # warm the cache, as a running API has it
    records: list[tuple[str, float, int]] = []
    lags: list[float] = []  # how late each command started against its schedule, ms
    go.set()
    cpu = time.process_time()
    start = time.monotonic() + 0.05
    for i in range(total):
        target = start + i / rate
        now = time.monotonic()
        if now < target:
            time.sleep(target - now)
        lags.append(max(0.0, time.monotonic() - target) * 1000)
        result = service.execute(
            Request(ACTOR, "bench"), ids[i % len(ids)], lambda c: c.complete_worksheet(command)
        )
        done = time.monotonic()
        records.extend((str(e["id"]), done, i) for e in result.events)
    cpu = time.process_time() - cpu
    store.close()
    out.put((records, lags, start, cpu))


def _relay_process(
    url: str, nats_url: str, names: BusNames, replicas: int, wake: bool, stop: MpEvent, out: Any
) -> None:
    tally = capture_logs()
    config = StoreConfig(url)

    async def main() -> int:
        store = CaseEventStore(config)
        waiter = waiter_for(config, wake=wake, wake_poll_interval=SQLITE_WAKE_POLL)
        relay = Relay(
            CaseEventLog(store, names),
            nats_url,
            settings=RelaySettings(
                names=names,
                replicas=replicas,
                idle_wait=POSTGRES_IDLE_WAIT if config.is_postgres else SQLITE_POLL,
            ),
            waiter=waiter,
            name="bench-relay",
        )
        stop_event = asyncio.Event()
        task = asyncio.create_task(relay.run(stop_event))
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        stop_event.set()
        await task
        if isinstance(waiter, PostgresLogWaiter | WakeWaiter):
            await waiter.close()
        store.close()
        return relay.published

    try:
        published = asyncio.run(main())
        out.put((published, None, tally.records))
    except BaseException as error:
        out.put((-1, repr(error), tally.records))


class Receipts:
    """A minimal consumer handler: when each event reached it (in memory, position kept)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.through = 0

    def applied_through(self) -> int:
        return self.through

    def apply(self, delivery: Delivery) -> bool:
        received = time.monotonic()
        if delivery.stream_sequence <= self.through:
            return False
        self.seen.setdefault(delivery.event.id, received)
        self.through = delivery.stream_sequence
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.through = stream_sequence


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


@dataclass
class Latencies:
    name: str
    ms: list[float]
    missing: int

    def row(self) -> str:
        if not self.ms:
            return f"  {self.name:<52}{'—':>8}{'—':>8}{'—':>8}{'—':>8}{self.missing:>10}"
        return (
            f"  {self.name:<52}{pct(self.ms, 0.5):>8.1f}{pct(self.ms, 0.95):>8.1f}{pct(self.ms, 0.99):>8.1f}"
            f"{max(self.ms):>8.1f}{self.missing:>10}"
        )


@dataclass(frozen=True)
class LatencySummary:
    """Commit → received, ms (NaN: nothing measured)."""

    consumer_p50: float
    consumer_p99: float
    push_p99: float


async def bench_latency(
    url: str,
    nats_url: str,
    nats_pids: Sequence[int],
    cases: int,
    rate: float,
    seconds: float,
    warmup: float,
    tally: LogTally,
    *,
    replicas: int = 1,
    wake: bool = True,
) -> LatencySummary:
    config = StoreConfig(url)
    logged = len(tally.records)
    ids = fill_store(url, 0, cases)
    store = CaseEventStore(config)
    setup_events = store.max_position()
    store.close()
    names = BusNames.unique()
    ctx = mp.get_context("spawn")
    stop, go = ctx.Event(), ctx.Event()
    relay_out: Any = ctx.Queue()
    relay_args = (url, nats_url, names, replicas, wake, stop, relay_out)
    relay_proc = ctx.Process(target=_relay_process, args=relay_args)
    relay_proc.start()

    receipts = Receipts()
    consumer_stop = asyncio.Event()
    consumer = DurableConsumer(
        nats_url, receipts, ConsumerSettings(durable="bench", names=names, replicas=replicas)
    )
    consumer_task = asyncio.create_task(consumer.run(consumer_stop))
    pushed: dict[str, float] = {}
    nc = await nats.connect(server_urls(nats_url))
    js = nc.jetstream()
    relay_result: tuple[int, str | None, list[Any]] = (-1, "not collected", [])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await js.stream_info(names.stream)
                break
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the relay did not declare the stream") from None
                await asyncio.sleep(0.05)

        async def on_msg(msg: Any) -> None:
            received = time.monotonic()
            pushed.setdefault((msg.headers or {}).get(HEADER_MSG_ID, ""), received)

        sub = await js.subscribe(names.subjects, stream=names.stream, ordered_consumer=True, cb=on_msg)
        while receipts.through < setup_events or len(pushed) < setup_events:
            if time.monotonic() > deadline:
                raise RuntimeError("the consumers did not catch up with the setup events")
            await asyncio.sleep(0.05)

        idle_cpu = _process_cpu(relay_proc.pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle_cpu = (_process_cpu(relay_proc.pid) - idle_cpu) / IDLE_SECONDS

        warm = int(rate * warmup)
        total = warm + int(rate * seconds)
        out: Any = ctx.Queue()
        commands = ctx.Process(target=_command_process, args=(url, ids, rate, total, go, out))
        commands.start()
        await asyncio.to_thread(go.wait, 60)
        pids: dict[str, Sequence[int | None]] = {
            "commands": [commands.pid],
            "relay": [relay_proc.pid],
            "consumer": [os.getpid()],
            "nats": nats_pids,  # a cluster's: its three nodes together
        }
        cpu_before = {k: _processes_cpu(group) for k, group in pids.items()}
        machine_before, wall_before = _machine_cpu(), time.monotonic()
        records, lags, start, command_cpu = await asyncio.to_thread(out.get, True, seconds + warmup + 120)
        machine_after, wall_after = _machine_cpu(), time.monotonic()
        cpu = {k: _processes_cpu(group) - cpu_before[k] for k, group in pids.items()}
        cpu["commands"] = command_cpu  # its own count, from its first command to its last
        await asyncio.to_thread(commands.join, 10)
        measured = [(event_id, t, i) for event_id, t, i in records if i >= warm]
        wanted = {event_id for event_id, _, _ in measured}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
            wanted <= pushed.keys() and wanted <= receipts.seen.keys()
        ):
            await asyncio.sleep(0.05)
        await sub.unsubscribe()
        achieved = (total - warm) / (measured[-1][1] - (start + warm / rate))
        messages, _ = await stream_state(js, names.stream)
        expected = setup_events + len(records)
    finally:
        consumer_stop.set()
        await asyncio.wait_for(asyncio.gather(consumer_task, return_exceptions=True), 15)
        stop.set()
        with contextlib.suppress(Exception):
            relay_result = await asyncio.to_thread(relay_out.get, True, 30)
        await asyncio.to_thread(relay_proc.join, 15)
        await nc.close()
        await delete_streams(nats_url, names)

    published, relay_error, relay_records = relay_result
    relay_tally = LogTally(relay_records)

    def latencies(name: str, seen: dict[str, float]) -> Latencies:
        ms = [(seen[e] - t) * 1000 for e, t, _ in measured if e in seen]
        return Latencies(name, ms, len(measured) - len(ms))

    rows = [
        latencies("ordered push subscriber on the stream", pushed),
        latencies("DurableConsumer (services' settings) handler", receipts.seen),
    ]
    kind = (
        "PostgreSQL (relay on LISTEN/NOTIFY)"
        if config.is_postgres
        else f"SQLite (relay woken by commits, fallback poll {SQLITE_WAKE_POLL * 1000:.0f} ms)"
        if wake
        else f"SQLite (relay polls every {SQLITE_POLL * 1000:.0f} ms, no wake-ups)"
    )
    late = lags[warm:]
    print(
        f"\n{kind} latency: {rate:.0f} commands/s for {seconds:.0f} s after {warmup:.0f} s warm-up,"
        f" achieved {achieved:.1f}/s, {len(measured)} events measured"
    )
    print(
        f"  command start vs schedule: p50 {pct(late, 0.5):.1f} ms, p99 {pct(late, 0.99):.1f} ms,"
        f" max {max(late):.1f} ms late"
    )
    wall = wall_after - wall_before
    busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
    shares = ", ".join(f"{k} {v / wall:.0%}" for k, v in cpu.items() if not math.isnan(v))
    print(f"  CPU over the run: machine {busy:.0%} of {os.cpu_count()} cores busy; of one core: {shares}")
    print(f"  the relay idle (no commands, {IDLE_SECONDS:.0f} s before the run): {idle_cpu:.0%} of one core")
    print(f"  {'commit → received by':<52}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'missing':>10}   (ms)")
    for row in rows:
        print(row.row())
    target = rows[-1]
    if target.ms:
        p99 = pct(target.ms, 0.99)
        verdict = "meets" if p99 < 50 else "MISSES"
        print(f"  DurableConsumer p99 = {p99:.1f} ms ({verdict} the < 50 ms target)")
    print(
        f"  stream holds {messages} messages, store {expected} events; relay published {published} in its run"
    )
    if relay_error:
        print(f"  relay process failed: {relay_error}")
    if consumer.dead_lettered or consumer.skipped:
        print(f"  consumer: dead-lettered {consumer.dead_lettered}, skipped {consumer.skipped}")
    print(f"  relay log: {relay_tally.summary()}")
    for when, level, name, fields in relay_tally.notable():
        print(f"    relay {level} {name} {fields} (t={when - start:+.3f} s from the first command)")
    for when, level, name, fields in LogTally(tally.records[logged:]).notable():
        print(f"    consumer {level} {name} {fields} (t={when - start:+.3f} s)")
    consumer_ms, push_ms = rows[1].ms, rows[0].ms
    return LatencySummary(
        pct(consumer_ms, 0.5) if consumer_ms else math.nan,
        pct(consumer_ms, 0.99) if consumer_ms else math.nan,
        pct(push_ms, 0.99) if push_ms else math.nan,
    )


# ---------------------------------------------------------------------------------- runner
@dataclass(frozen=True)
class Nats:
    url: str  # a cluster's: every node, comma-separated
    label: str  # what the figures are printed under
    replicas: int  # of every stream the bench creates, and of the relay's lease
    pids: tuple[int, ...] = ()  # the embedded servers' processes (for their CPU share)
    log_files: tuple[Path, ...] = ()


@contextlib.contextmanager
def _nats(url: str | None, tmp: Path) -> Iterator[Nats]:
    if url:
        yield Nats(url, f"NATS at {url}", 1)
        return
    log_file = tmp / "nats-server.log"
    server = EmbeddedNatsServer(tmp / "jetstream", log_file=log_file)
    server.start()
    try:
        pids = (server.process.pid,) if server.process else ()
        yield Nats(server.url, "single nats-server, R1", 1, pids, (log_file,))
    finally:
        server.stop()


@contextlib.contextmanager
def _cluster(tmp: Path) -> Iterator[Nats]:
    with EmbeddedNatsCluster(tmp / "cluster") as cluster:
        pids = tuple(node.process.pid for node in cluster.nodes if node.process)
        logs = tuple(node.log_file for node in cluster.nodes if node.log_file)
        yield Nats(cluster.url, "three-node cluster, R3", 3, pids, logs)


def _server_warnings(server: Nats) -> None:
    for log_file in server.log_files:
        if not log_file.exists():
            continue
        text = log_file.read_text(errors="replace").splitlines()
        lines = [ln for ln in text if "[WRN]" in ln or "[ERR]" in ln]
        print(f"\nnats-server log {log_file.parent.name}/{log_file.name}: {len(lines)} warning/error lines")
        for line in lines[:20]:
            print(f"  {line}")


def run_store(
    kind: str, url_for: Callable[[str], str], server: Nats, args: argparse.Namespace, tally: LogTally
) -> tuple[Throughput, LatencySummary]:
    print(f"\n=== {kind}, {server.label}")
    suffix = "" if server.replicas == 1 else f"-r{server.replicas}"  # a store of its own per server
    throughput = Throughput(math.nan, math.nan, math.nan, math.nan)
    if not args.skip_throughput:
        url = url_for(f"throughput{suffix}")
        throughput = asyncio.run(
            bench_throughput(
                url,
                server.url,
                args.n,
                args.cases,
                tally,
                replicas=server.replicas,
                source=args.store,
                rounds=args.rounds,
                diagnostics=not args.no_diagnostics,
            )
        )
    latency = asyncio.run(
        bench_latency(
            url_for(f"latency{suffix}"),
            server.url,
            server.pids,
            args.cases,
            args.rate,
            args.seconds,
            args.warmup,
            tally,
            replicas=server.replicas,
            wake=not args.no_wake,
        )
    )
    return throughput, latency


def compare(
    kind: str,
    single: tuple[Throughput, LatencySummary],
    cluster: tuple[Throughput, LatencySummary],
) -> None:
    """The cluster's figures beside the single node's, and their ratio (no target)."""
    (t1, l1), (t3, l3) = single, cluster
    rows = [
        ("relay: store → acked in JetStream, events/s", t1.relay, t3.relay),
        ("raw nats-py publish_async, events/s", t1.raw, t3.raw),
        ("relay over the messages in memory, events/s", t1.memory, t3.memory),
        ("relay / raw", t1.relay / t1.raw, t3.relay / t3.raw),
        ("atomic batch, ms per commit", t1.batch_ms, t3.batch_ms),
        ("commit → DurableConsumer p50, ms", l1.consumer_p50, l3.consumer_p50),
        ("commit → DurableConsumer p99, ms", l1.consumer_p99, l3.consumer_p99),
        ("commit → ordered push subscriber p99, ms", l1.push_p99, l3.push_p99),
    ]
    print(f"\n=== {kind}: three-node cluster (R3) against the single node (R1), this run")
    print(f"  {'measure':<48}{'single':>10}{'cluster':>10}{'cluster / single':>18}")
    for name, one, three in rows:
        print(f"  {name:<48}{one:>10.2f}{three:>10.2f}{three / one:>18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="events in the store for the throughput rounds")
    parser.add_argument("--cases", type=int, default=50, help="cases the events are spread over")
    parser.add_argument("--rate", type=float, default=200.0, help="commands/s in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of the latency run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of commands before measuring")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved throughput rounds")
    parser.add_argument(
        "--store",
        default=None,
        help="throughput over a copy of this SQLite case store (e.g. the rebuild bench's generated"
        " one in .bench-cache/) instead of a filled one",
    )
    parser.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="only the relay, the relay over messages in memory, the read and raw publish_async rounds:"
        " not the multi-event commits' diagnostic rounds (minutes over a large store)",
    )
    parser.add_argument("--nats-url", default=None, help="a NATS server to use (default: an embedded one)")
    parser.add_argument("--postgres", action="store_true", help="also benchmark PostgreSQL")
    parser.add_argument("--skip-sqlite", action="store_true", help="only PostgreSQL (with --postgres)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the latency run")
    parser.add_argument(
        "--no-wake", action="store_true", help="SQLite: the relay polls only (VSS_RELAY_WAKE=false)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also measure on a three-node JetStream cluster (R3) and print cluster / single node",
    )
    args = parser.parse_args()
    if args.store and args.postgres:
        parser.error("--store is an SQLite case store: it copies into SQLite only (leave out --postgres)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    tally = capture_logs()

    with (
        tempfile.TemporaryDirectory(prefix="vss-bench-relay-") as tmp,
        _nats(args.nats_url, Path(tmp)) as server,
        contextlib.ExitStack() as servers,
    ):
        cluster = servers.enter_context(_cluster(Path(tmp))) if args.cluster else None

        def run_both(kind: str, url_for: Callable[[str], str]) -> None:
            single = run_store(kind, url_for, server, args, tally)
            if cluster is not None:
                compare(kind, single, run_store(kind, url_for, cluster, args, tally))

        if not args.skip_sqlite:
            run_both("SQLite (WAL, file)", lambda name: f"sqlite:///{tmp}/{name}.sqlite")
        if args.postgres:
            with _postgres_server() as pg:
                from tests.support.postgres import fresh_database  # noqa: PLC0415

                with contextlib.ExitStack() as stack:
                    stores = ("throughput", "latency", "throughput-r3", "latency-r3")
                    urls = {k: stack.enter_context(fresh_database(pg)) for k in stores}
                    run_both("PostgreSQL", urls.__getitem__)
        for each in (server, cluster):
            if each is not None:
                _server_warnings(each)
    print(f"\nthis process's relay/consumer log: {tally.summary()}")


if __name__ == "__main__":
    main()
