"""Notifications benchmark: an early warning committed to its urgent e-mails accepted by SMTP.

The real pipeline, each part in a process of its own as deployed, on servers of the
bench's own (an embedded nats-server on free ports, a mail sink on a free port; never a
NATS, PostgreSQL or SMTP server already on the machine):

    commands: CaseService on an SQLite case store in a temp dir       (process 1)
      -> the case relay: bootstrap_relay, as relay_main runs it      (process 2)
      -> JetStream VSS_CASE: the embedded nats-server                 (process 3)
      -> the notifications service: bootstrap_notifications(with_api=False), run as
         NotificationsParts.run (both durable consumers, the sender, the delivery
         record's relay), SQLite store, VSS_SENDER_INTERVAL ``--sender-interval``  (process 4)
      -> SMTP -> the project's MailSink (each message an fsync'd .eml file; with
         ``--sink memory`` nothing is kept), in this process, subclassed to record when
         it accepted each message (monotonic clock, as it answers 250) and its headers.

This process also declares the (empty) VSS_MEETINGS stream the notifications service
binds to. Each case: opened, two coordinators with e-mail addresses, consent (both
organisations and relatives), an early warning plan naming three relatives with e-mail
and phone. An ``EarlyWarningTriggered`` therefore makes 5 urgent e-mails (3 contacts,
2 coordinators) and 3 SMS files; the setup makes 7 non-urgent e-mails per case, all
accepted before anything is measured.

Measured in the same run:

- **latency**: ``--triggers`` early warnings one at a time, each ``--pause`` s after the
  previous one's e-mails were all accepted. Per trigger: from the command's return in the
  command process (the commit) to the *last* of its urgent e-mails accepted by the sink
  (CLOCK_MONOTONIC is one clock for all processes). E-mails are matched to their trigger
  through the service's deliveries table (X-VSS-Delivery -> cause event id), read after
  the run. Where the time goes: when the event reached VSS_CASE (an ordered push
  subscriber here), and times taken inside the notifications process by wrappers the
  bench sets on four of its objects' methods (the case consumer's ``apply``, the store's
  ``due`` and ``finish``, the e-mail channel's ``send``; instance attributes: the
  service's code is unchanged).
- **throughput**: ``--burst`` triggers (default: one per case) fired as fast as the command
  process can; e-mails/s accepted by SMTP from the first commit to the last urgent e-mail
  accepted; the CPU each process used meanwhile.
- **raw components**, against the same servers: (a) raw SMTP: as many similar messages (the
  service's early-warning template through ``build_email``) sent with aiosmtplib
  ``send_message`` over one connection from a process of its own: best of two rounds (one
  before the pipeline starts, one after it stops), then one round with a NOOP before each
  message, as SmtpChannel checks a kept connection idle for over a second; (b) raw NATS: one JetStream publish
  at a time of an early-warning CloudEvent (the relay's bytes) to a fresh stream, received
  by a plain nats-py pull consumer on another connection (``fetch(100, timeout=1)``, as
  the services' consumer base fetches).

Usage::

    .venv/bin/python bench/notifications.py                  # 200 cases, 200 triggers (~2 min)
    .venv/bin/python bench/notifications.py --cases 20 --triggers 20
    .venv/bin/python bench/notifications.py --sink memory    # an SMTP server that keeps nothing

Figures are printed as tables with ratios; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing as mp
import os
import queue
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib
import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from bench.relay import LogTally, _machine_cpu, _process_cpu, capture_logs, pct
from services.case.application.service import CaseService, Request
from services.case.bootstrap import bootstrap_relay
from services.case.domain import commands as cmd
from services.case.domain.case import Case
from services.case.domain.events import Actor
from services.case.generator import fictional_phone, personal_identity_number
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.case.infrastructure.store import migrate as migrate_case_store
from services.case.settings import CaseRelaySettings
from services.meetings.infrastructure.bus import meeting_bus_names
from services.notifications.application.channels import Channel, OutgoingMessage
from services.notifications.application.ports import AttemptOutcome, DeliveryRow
from services.notifications.application.service import CASE_CONSUMER
from services.notifications.bootstrap import NotificationsParts, bootstrap_notifications
from services.notifications.infrastructure.bus import notification_bus_names
from services.notifications.infrastructure.channels import build_email
from services.notifications.infrastructure.mailsink import MailSink
from services.notifications.infrastructure.store import migrate as migrate_notifications_store
from services.notifications.infrastructure.templates import Templates
from services.notifications.settings import NotificationsSettings
from services.shared.bus.consumer import Delivery
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, declare_if_missing
from services.shared.clock import SystemClock
from vss_contracts.case_events import EarlyWarningTriggered, PlanContact, WarningSign
from vss_contracts.subjects import HEADER_EVENT_TYPE, HEADER_MSG_ID
from vss_contracts.types import (
    ClientRef,
    ContactDetails,
    Coordinator,
    Municipality,
    OrganisationRef,
    Principal,
    Region,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
REGION_ORG = OrganisationRef(
    id="se2321000016-psyk-sodra", name="Psykiatri Södra Stockholm", principal=Principal.REGION
)
MUNICIPALITY_ORG = OrganisationRef(
    id="stockholm-sof-socialpsykiatri",
    name="Stockholms stad, socialpsykiatri",
    principal=Principal.MUNICIPALITY,
)
ACTOR = Actor("bench.region", REGION_ORG.id, REGION_ORG.name, Principal.REGION, frozenset({"coordinator"}))
COORDINATORS_PER_ORGANISATION = 20
PLAN_CONTACTS = 3
# "coordinator assigned" x2, "plan updated" to each contact and to both coordinators (ADR 0016)
SETUP_EMAILS_PER_CASE = 2 + PLAN_CONTACTS + 2
URGENT_EMAILS_PER_TRIGGER = PLAN_CONTACTS + 2  # the plan's contacts and both coordinators
RAW_SMTP_CASE = "raw-smtp"  # the X-VSS-Case of the raw SMTP round's messages
FIRST_NAMES = ("Anna", "Erik", "Maria", "Karl", "Lena", "Johan", "Sara", "Omar", "Aisha", "Nils", "Eva")
LAST_NAMES = ("Lindqvist", "Sjöberg", "Holm", "Andersson", "Nilsson", "Said", "Berg", "Ek", "Lund")
RELATIONS = ("mamma", "pappa", "syster", "bror", "vän", "granne")


def now() -> float:
    """The bench's one clock: CLOCK_MONOTONIC, the same in every process on this machine."""
    return time.monotonic()


# ------------------------------------------------------------------------------ the sink
@dataclass(frozen=True, slots=True)
class Accepted:
    at: float  # monotonic: the message was stored (fsync'd, unless --sink memory); 250 follows
    case: str  # X-VSS-Case (the case id's first 8 characters)
    delivery: str  # X-VSS-Delivery
    urgent: bool  # Importance: high
    size: int


class RecordingSink(MailSink):
    """The project's mail sink, recording when it accepted each message (and what it was)."""

    def __init__(self, directory: Path, *, keep_files: bool) -> None:
        super().__init__(directory, "127.0.0.1", 0)  # a free port
        self.keep_files = keep_files
        self.accepted: list[Accepted] = []
        self.counts: Counter[str] = Counter()  # "urgent", "other", "raw"
        self.urgent_of_case: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await super().start()

    def store(self, mail_from: str | None, rcpt_tos: list[str], content: bytes) -> Path:
        """(In the sink's writer thread.) Store as MailSink does, then note the time."""
        if self.keep_files:
            path = super().store(mail_from, rcpt_tos, content)
        else:
            path = self.directory / "not-kept.eml"
        at = now()
        headers = BytesHeaderParser(policy=compat32).parsebytes(content)
        case = str(headers.get("X-VSS-Case", "")).strip()
        urgent = str(headers.get("Importance", "")).strip().lower() == "high"
        record = Accepted(at, case, str(headers.get("X-VSS-Delivery", "")).strip(), urgent, len(content))
        kind = "raw" if case == RAW_SMTP_CASE else "urgent" if urgent else "other"
        with self._lock:
            self.accepted.append(record)
            self.counts[kind] += 1
            if kind == "urgent":
                self.urgent_of_case[case] += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed.set)
        return path

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (checked after each accepted message); False on timeout."""
        deadline = now() + timeout
        while not done():
            remaining = deadline - now()
            if remaining <= 0:
                return False
            self._changed.clear()
            if done():
                break
            with contextlib.suppress(TimeoutError):  # (asyncio.timeout: a Ctrl-C is not lost)
                async with asyncio.timeout(min(remaining, 1.0)):
                    await self._changed.wait()
        return True


# ------------------------------------------------------------------- the command process
@dataclass(frozen=True, slots=True)
class Fired:
    case_id: str
    event_id: str
    committed: float  # monotonic, right after CaseService.execute returned


def _request() -> Request:
    return Request(actor=ACTOR, correlation_id=f"bench-{uuid.uuid4().hex[:16]}")


def _today() -> date:
    return datetime.now(UTC).astimezone(STOCKHOLM).date()


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _coordinators(rng: random.Random, organisation: OrganisationRef, tag: str) -> list[Coordinator]:
    pool = []
    for i in range(COORDINATORS_PER_ORGANISATION):
        user_id = f"{tag}.coordinator{i:02d}"
        pool.append(
            Coordinator(
                user_id=user_id,
                name=_person(rng),
                organisation=organisation,
                contact=ContactDetails(email=f"{user_id}@{tag}.example.se"),
            )
        )
    return pool


def act(method: str, command: cmd.Command) -> Callable[[Case], object]:
    """The action ``service.execute`` runs: ``case.<method>(command)``."""

    def action(case: Case) -> object:
        return getattr(case, method)(command)

    return action


def set_up_cases(service: CaseService, count: int, seed: int) -> list[str]:
    """``count`` cases, each with 2 coordinators, consent and an early warning plan (5 commands)."""
    rng = random.Random(seed)
    regional = _coordinators(rng, REGION_ORG, "region")
    municipal = _coordinators(rng, MUNICIPALITY_ORG, "kommun")
    ids = []
    for n in range(count):
        today = _today()
        born = date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
        client = ClientRef(
            personal_identity_number=personal_identity_number(rng, born, rng.random() < 0.5),
            name=_person(rng),
        )
        opened = service.open_case(
            _request(),
            cmd.OpenCase(
                client=client,
                municipality=Municipality(code="0180", name="Stockholm"),
                region=Region(code="01", name="Region Stockholm"),
                opened_on=today,
            ),
        )
        case_id = opened.case_id
        for coordinator in (rng.choice(regional), rng.choice(municipal)):
            assign = cmd.AssignCoordinator(coordinator=coordinator, assigned_on=today)
            service.execute(_request(), case_id, act("assign_coordinator", assign))
        consent = cmd.GiveConsent(
            organisations=[REGION_ORG, MUNICIPALITY_ORG], covers_relatives=True, signed_on=today
        )
        service.execute(_request(), case_id, act("give_consent", consent))
        contacts = [
            PlanContact(
                name=_person(rng),
                relation=rng.choice(RELATIONS),
                phone=fictional_phone(rng),
                email=f"kontakt{k}.case{n}@example.se",
            )
            for k in range(PLAN_CONTACTS)
        ]
        plan = cmd.UpdateEarlyWarningPlan(
            signs=[
                WarningSign(sign_id="somn", description="Sover dåligt flera nätter i rad"),
                WarningSign(sign_id="isolering", description="Drar sig undan, svarar inte i telefon"),
            ],
            client_actions=["Ringa min kontaktperson", "Ta kvällsmedicinen"],
            others_actions=[],
            contacts=contacts,
            updated_on=today,
        )
        service.execute(_request(), case_id, act("update_early_warning_plan", plan))
        ids.append(str(case_id))
    return ids


def fire(service: CaseService, case_id: str) -> Fired:
    """One early warning on the case; the commit time is taken as the command returns."""
    trigger = cmd.TriggerEarlyWarning(sign_ids=["somn"], observed_on=_today())
    result = service.execute(_request(), uuid.UUID(case_id), act("trigger_early_warning", trigger))
    committed = now()
    (event,) = result.events
    assert event["type"] == EarlyWarningTriggered.TYPE, event
    return Fired(case_id, str(event["id"]), committed)


def _command_process(case_url: str, inbox: Any, outbox: Any) -> None:
    """Runs what it is sent: ("setup", n, seed), ("trigger", [case ids]), ("stop",)."""
    tally = capture_logs()
    store = CaseEventStore(StoreConfig(case_url))
    service = CaseService(store, SystemClock())
    fired = 0
    try:
        while True:
            message = inbox.get()
            try:
                if message[0] == "setup":
                    started = now()
                    ids = set_up_cases(service, message[1], message[2])
                    outbox.put(("setup", ids, started, now()))
                elif message[0] == "trigger":
                    outbox.put(("trigger", [fire(service, case_id) for case_id in message[1]]))
                    fired += len(message[1])
                else:
                    outbox.put((f"{fired} triggers fired", None, tally.records))
                    return
            except Exception as error:
                outbox.put(("error", f"{type(error).__name__}: {error}"))
    finally:
        store.close()


# ------------------------------------------------------------------- the service processes


async def _run_until(run: Callable[[asyncio.Event], Any], stop: MpEvent) -> None:
    """Run a part's ``run(stop)`` until the bench sets ``stop`` (another process's event)."""
    stopping = asyncio.Event()
    task = asyncio.create_task(run(stopping))
    while not stop.is_set() and not task.done():
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, 30)


def _relay_process(case_url: str, nats_url: str, data_dir: str, stop: MpEvent, out: Any) -> None:
    """The case relay as ``services.case.relay_main`` runs it."""
    tally = capture_logs()

    async def main() -> int:
        settings = CaseRelaySettings(case_store_url=case_url, nats_url=nats_url, data_dir=Path(data_dir))
        parts = bootstrap_relay(settings, names=BusNames())
        try:
            await _run_until(parts.relay.run, stop)
        finally:
            parts.close()
        return parts.relay.published

    try:
        out.put((asyncio.run(main()), None, tally.records))
    except BaseException as error:
        out.put((-1, f"{type(error).__name__}: {error}", tally.records))


@dataclass
class Trace:
    """Times (monotonic) inside the notifications process, taken by wrappers the bench puts
    around four of its objects' methods (instance attributes: the service's code is as is)."""

    apply: dict[str, tuple[float, float]] = field(default_factory=dict)  # case event id -> decide
    due: dict[str, float] = field(default_factory=dict)  # delivery -> the sender's look returned it
    send: dict[str, tuple[float, float]] = field(default_factory=dict)  # delivery -> SmtpChannel.send
    finish: list[tuple[float, float]] = field(default_factory=list)  # each store.finish (any channel)


def traced(parts: NotificationsParts) -> Trace:
    """Time the case consumer's ``apply``, the store's ``due`` and ``finish``, and the e-mail
    channel's ``send``."""
    trace = Trace()
    (handler,) = [c.handler for c in parts.consumers if c.settings.durable == CASE_CONSUMER]
    apply, due, finish = handler.apply, parts.store.due, parts.store.finish
    email = parts.channels[Channel.EMAIL]
    send = email.send

    def timed_apply(delivery: Delivery) -> bool:
        started = now()
        applied = apply(delivery)
        trace.apply[delivery.event.id] = (started, now())
        return applied

    def timed_due(at: str, limit: int, channel: str | None = None) -> list[DeliveryRow]:
        rows = due(at, limit, channel)
        returned = now()
        for row in rows:
            trace.due.setdefault(row.delivery_key, returned)
        return rows

    def timed_finish(delivery_key: str, outcome: AttemptOutcome) -> bool:
        started = now()
        stored = finish(delivery_key, outcome)
        trace.finish.append((started, now()))
        return stored

    async def timed_send(message: OutgoingMessage) -> None:
        started = now()
        await send(message)
        trace.send[message.delivery_key] = (started, now())

    handler.apply = timed_apply  # type: ignore[method-assign]
    parts.store.due = timed_due  # type: ignore[method-assign, assignment]
    parts.store.finish = timed_finish  # type: ignore[method-assign]
    email.send = timed_send  # type: ignore[method-assign]
    return trace


def _notifications_process(settings: dict[str, Any], stop: MpEvent, out: Any) -> None:
    """The notifications service as ``NotificationsParts.run`` runs it (no HTTP API)."""
    tally = capture_logs()
    trace = Trace()

    async def main() -> dict[str, int]:
        nonlocal trace
        parts = bootstrap_notifications(
            NotificationsSettings(**settings),
            with_api=False,
            case_names=BusNames(),
            meeting_names=meeting_bus_names(),
            notification_names=notification_bus_names(),
        )
        trace = traced(parts)
        try:
            await _run_until(parts.run, stop)
        finally:
            parts.close()
        return asdict(parts.service.counters)

    try:
        out.put((asyncio.run(main()), None, tally.records, trace))
    except BaseException as error:
        out.put(({}, f"{type(error).__name__}: {error}", tally.records, trace))


@dataclass
class Child:
    name: str
    process: BaseProcess
    stop: MpEvent | None  # None: stopped by a message (the command process)
    out: Any
    result: Any = None

    @property
    def pid(self) -> int | None:
        return self.process.pid


def stop_child(child: Child, inbox: Any = None) -> None:
    """Ask the child to stop, collect its result, and make sure it has exited."""
    if child.stop is not None:
        child.stop.set()
    elif inbox is not None:
        with contextlib.suppress(Exception):
            inbox.put(("stop",))
    with contextlib.suppress(Exception):  # its result (it may have failed, or stopped already)
        child.result = child.out.get(timeout=40 if child.process.is_alive() else 1)
    child.process.join(15)
    if child.process.is_alive():
        print(f"  {child.name} did not stop: terminating it (pid {child.pid})", flush=True)
        child.process.terminate()
        child.process.join(5)
    if child.process.is_alive():
        child.process.kill()
        child.process.join(5)


# -------------------------------------------------------------------------- raw SMTP
def _similar_messages(count: int) -> list[Any]:
    """Urgent e-mails as the service renders them (its template, ``build_email``)."""
    templates = Templates("sv")
    sender = ("VSS vård- och stödsamordning", "noreply@vss.example.se")
    messages = []
    for i in range(count):
        key = str(uuid.uuid4())
        context = {
            "observed_on": _today().isoformat(),
            "triggered_at": datetime.now(UTC).isoformat(),
            "recipient": "Anna Lindqvist",
            "case_reference": key[:8],
            "case_link": f"http://127.0.0.1:8001/v1/cases/{key}",
            "urgent": True,
            "ack_link": f"http://127.0.0.1:8003/v1/acknowledgements/{key}?signature={'x' * 24}",
        }
        subject, body = templates.render("early_warning", context)
        message = OutgoingMessage(
            delivery_key=key,
            message_id=f"<{key}@vss.se>",
            channel=Channel.EMAIL,
            address=f"kontakt{i}@example.se",
            subject=subject,
            body=body,
            urgent=True,
            headers={"X-VSS-Case": RAW_SMTP_CASE, "X-VSS-Delivery": key},
        )
        messages.append((build_email(message, sender, datetime.now(UTC)), message.address))
    return messages


def _raw_smtp_process(port: int, count: int, noop: bool, out: Any) -> None:
    """aiosmtplib ``send_message``, one connection, one message after the other (timed);
    with ``noop``, a NOOP before each (as SmtpChannel checks a connection idle over a second)."""

    async def main() -> float:
        messages = _similar_messages(count)
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            started = now()
            for email, address in messages:
                if noop:
                    await client.noop()
                await client.send_message(email, sender="noreply@vss.example.se", recipients=[address])
            return now() - started
        finally:
            with contextlib.suppress(Exception):
                await client.quit()

    try:
        out.put((asyncio.run(main()), None))
    except BaseException as error:
        out.put((0.0, f"{type(error).__name__}: {error}"))


async def raw_smtp(port: int, count: int, *, noop: bool = False) -> float:
    """Seconds for ``count`` messages, sent from a process of its own (as the service's sender is)."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    process = ctx.Process(target=_raw_smtp_process, args=(port, count, noop, out), name="raw-smtp")
    process.start()
    try:
        while True:
            try:
                seconds, error = await asyncio.to_thread(out.get, True, 1.0)
                break
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"the raw SMTP process exited ({process.exitcode})") from None
    finally:
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()
            process.join(5)
    if error:
        raise RuntimeError(f"raw SMTP round failed: {error}")
    return float(seconds)


# -------------------------------------------------------------------------- raw NATS
@dataclass
class RawNats:
    received_ms: list[float]  # publish called -> the pull consumer has the message
    acked_ms: list[float]  # publish called -> its ack (stored)


async def raw_nats(nats_url: str, body: bytes, count: int, pause: float) -> RawNats:
    """Publish one message at a time to a fresh stream; a pull consumer (as the services
    fetch: batch 100, 1 s long poll) on another connection receives it."""
    names = BusNames(stream="BENCH_RAW", subject_prefix="bench.raw")
    publisher = await nats.connect(nats_url, name="bench-raw-publisher")
    consumer = await nats.connect(nats_url, name="bench-raw-consumer")
    js = publisher.jetstream()
    await js.add_stream(case_stream_config(names))
    seen: dict[str, float] = {}
    arrived = asyncio.Event()
    stopping = asyncio.Event()
    subscription = await consumer.jetstream().pull_subscribe(
        names.subjects, durable="raw", stream=names.stream
    )

    async def pull() -> None:
        while not stopping.is_set():
            try:
                messages = await subscription.fetch(100, timeout=1.0)
            except NatsTimeoutError:
                continue
            for msg in messages:
                seen[(msg.headers or {}).get(HEADER_MSG_ID, "")] = now()
                arrived.set()
                await msg.ack()

    puller = asyncio.create_task(pull())
    result = RawNats([], [])
    try:
        await asyncio.sleep(0.2)  # the first long poll is waiting
        for _ in range(count):
            msg_id = str(uuid.uuid4())
            arrived.clear()
            started = now()
            await js.publish(
                names.subject(msg_id, "EarlyWarningTriggered"), body, headers={HEADER_MSG_ID: msg_id}
            )
            result.acked_ms.append((now() - started) * 1000)
            while msg_id not in seen:
                async with asyncio.timeout(10):
                    await arrived.wait()
                arrived.clear()
            result.received_ms.append((seen[msg_id] - started) * 1000)
            await asyncio.sleep(pause)
    finally:
        stopping.set()
        puller.cancel()
        await asyncio.gather(puller, return_exceptions=True)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_stream(names.stream)
        await consumer.close()
        await publisher.close()
    return result


# ------------------------------------------------------------------------------- the run
@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    nats_url: str = ""
    nats_pid: int | None = None
    sink: RecordingSink | None = None
    children: list[Child] = field(default_factory=list)
    inbox: Any = None
    outbox: Any = None
    on_stream: dict[str, float] = field(default_factory=dict)  # case event id -> seen on VSS_CASE
    trigger_body: bytes = b""
    raw_smtp_seconds: list[float] = field(default_factory=list)
    raw_smtp_noop_seconds: float = math.nan
    setup: tuple[float, float, float] = (0.0, 0.0, 0.0)  # first commit, last commit, last accepted
    paced: list[Fired] = field(default_factory=list)
    burst: list[Fired] = field(default_factory=list)
    burst_window: tuple[float, float] = (0.0, 0.0)
    burst_cpu: dict[str, float] = field(default_factory=dict)
    burst_machine: float = 0.0
    missing: int = 0
    raw: RawNats | None = None

    @property
    def case_url(self) -> str:
        return f"sqlite:///{self.tmp / 'case' / 'events.sqlite'}"

    @property
    def notifications_path(self) -> Path:
        return self.tmp / "notifications" / "notifications.sqlite"


async def command(run: Run, *message: Any) -> Any:
    """Send the command process a message; its reply (raises if it failed or died)."""
    run.inbox.put(message)
    process = next(c.process for c in run.children if c.name == "commands")
    while True:
        try:
            reply = await asyncio.to_thread(run.outbox.get, True, 1.0)
            break
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"the command process exited ({process.exitcode})") from None
    if reply[0] == "error":
        raise RuntimeError(f"command process: {reply[1]}")
    return reply


def start_pipeline(run: Run) -> None:
    ctx = mp.get_context("spawn")
    assert run.sink is not None
    relay_stop, relay_out = ctx.Event(), ctx.Queue()
    relay = ctx.Process(
        target=_relay_process,
        args=(run.case_url, run.nats_url, str(run.tmp / "relay"), relay_stop, relay_out),
        name="case-relay",
    )
    settings = {
        "notifications_store_url": f"sqlite:///{run.notifications_path}",
        "nats_url": run.nats_url,
        "smtp_host": "127.0.0.1",
        "smtp_port": run.sink.port,
        "data_dir": str(run.tmp / "notifications"),
        "sender_interval": run.args.sender_interval,
    }
    notify_stop, notify_out = ctx.Event(), ctx.Queue()
    notifications = ctx.Process(
        target=_notifications_process, args=(settings, notify_stop, notify_out), name="notifications"
    )
    run.inbox, run.outbox = ctx.Queue(), ctx.Queue()
    commands = ctx.Process(
        target=_command_process, args=(run.case_url, run.inbox, run.outbox), name="commands"
    )
    for child in (
        Child("case relay", relay, relay_stop, relay_out),
        Child("notifications", notifications, notify_stop, notify_out),
        Child("commands", commands, None, run.outbox),
    ):
        child.process.start()
        run.children.append(child)


def stop_pipeline(run: Run) -> None:
    for child in reversed(run.children):  # commands, then notifications, then the relay
        if child.process.pid is not None:
            stop_child(child, run.inbox)


async def watch_case_stream(run: Run) -> Any:
    """An ordered push subscriber on VSS_CASE: when each event reached the stream (and a body)."""
    nc = await nats.connect(run.nats_url, name="bench-watch")
    js = nc.jetstream()
    deadline = now() + 30
    while True:
        try:
            await js.stream_info(BusNames().stream)
            break
        except NotFoundError:
            if now() > deadline:
                raise RuntimeError("the case relay did not declare the case stream") from None
            await asyncio.sleep(0.05)

    async def on_msg(msg: Any) -> None:
        received = now()
        event_id = (msg.headers or {}).get(HEADER_MSG_ID, "")
        run.on_stream.setdefault(event_id, received)
        if not run.trigger_body and (msg.headers or {}).get(HEADER_EVENT_TYPE) == EarlyWarningTriggered.TYPE:
            run.trigger_body = msg.data

    names = BusNames()
    await js.subscribe(names.subjects, stream=names.stream, ordered_consumer=True, cb=on_msg)
    return nc


async def measure(run: Run) -> None:
    args = run.args
    sink = run.sink
    assert sink is not None
    # Setup: the cases, and every non-urgent message they cause, accepted.
    print(f"setting up {args.cases} cases ...", flush=True)
    reply = await command(run, "setup", args.cases, args.seed)
    ids: list[str] = reply[1]
    expected = args.cases * SETUP_EMAILS_PER_CASE
    if not await sink.until(lambda: sink.counts["other"] >= expected, max(60.0, args.cases * 0.5)):
        raise RuntimeError(f"setup: the sink accepted {sink.counts['other']} of {expected} e-mails in time")
    run.setup = (
        reply[2],
        reply[3],
        max(a.at for a in sink.accepted if not a.urgent and a.case != RAW_SMTP_CASE),
    )
    print(
        f"  {args.cases} cases in {reply[3] - reply[2]:.1f} s; their {expected} e-mails all accepted"
        f" {run.setup[2] - reply[3]:.1f} s after the last command",
        flush=True,
    )

    # Latency: one trigger at a time.
    rng = random.Random(args.seed + 1)
    order = [ids[i % len(ids)] for i in range(args.triggers)]
    rng.shuffle(order)
    print(
        f"latency: {args.triggers} triggers one at a time, {args.pause * 1000:.0f} ms apart ...", flush=True
    )
    for case_id in order:
        case = case_id[:8]
        before = sink.urgent_of_case[case]
        reply = await command(run, "trigger", [case_id])
        run.paced.extend(reply[1])

        def delivered(case: str = case, before: int = before) -> bool:
            return sink.urgent_of_case[case] >= before + URGENT_EMAILS_PER_TRIGGER

        if not await sink.until(delivered, 30):
            run.missing += 1
            print(f"  trigger on case {case}: its e-mails were not all accepted within 30 s", flush=True)
        await asyncio.sleep(args.pause)

    # Throughput: a burst of triggers.
    await asyncio.sleep(1.0)  # the last deliveries' records are stored and relayed
    burst_ids = [ids[i % len(ids)] for i in range(args.burst)]
    rng.shuffle(burst_ids)
    print(f"throughput: {args.burst} triggers at once ...", flush=True)
    pids = {child.name: child.pid for child in run.children}
    pids["nats-server"] = run.nats_pid
    pids["this (sink)"] = os.getpid()
    cpu_before = {k: _process_cpu(pid) for k, pid in pids.items()}
    machine_before = _machine_cpu()
    wall_before = now()
    target = sink.counts["urgent"] + args.burst * URGENT_EMAILS_PER_TRIGGER
    reply = await command(run, "trigger", burst_ids)
    run.burst = reply[1]
    if not await sink.until(lambda: sink.counts["urgent"] >= target, 120 + args.burst * 0.2):
        got = sink.counts["urgent"] - target + args.burst * URGENT_EMAILS_PER_TRIGGER
        print(f"  burst: only {got} of {args.burst * URGENT_EMAILS_PER_TRIGGER} e-mails accepted in 120 s")
        run.missing += 1
    wall = now() - wall_before
    machine_after = _machine_cpu()
    run.burst_cpu = {k: (_process_cpu(pid) - cpu_before[k]) / wall for k, pid in pids.items()}
    run.burst_machine = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
    urgent = [a.at for a in sink.accepted if a.urgent and a.case != RAW_SMTP_CASE]
    run.burst_window = (run.burst[0].committed, max(urgent))
    await asyncio.sleep(1.0)  # the delivery record of the last messages


async def main_async(args: argparse.Namespace, tmp: Path) -> Run:
    run = Run(args, tmp)
    server = EmbeddedNatsServer(tmp / "jetstream", log_file=tmp / "nats-server.log")
    server.start()
    watcher = None
    try:
        run.nats_url = server.url
        run.nats_pid = server.process.pid if server.process else None
        nc = await nats.connect(run.nats_url)
        try:  # the meetings stream the notifications service binds to (no meetings service here)
            await declare_if_missing(nc.jetstream(), case_stream_config(meeting_bus_names()))
        finally:
            await nc.close()
        migrate_case_store(StoreConfig(run.case_url))
        migrate_notifications_store(f"sqlite:///{run.notifications_path}")
        run.sink = RecordingSink(tmp / "mail", keep_files=args.sink == "files")
        await run.sink.start()
        try:
            messages = args.burst * URGENT_EMAILS_PER_TRIGGER
            print(f"raw SMTP: {messages} messages over one connection (round 1) ...", flush=True)
            run.raw_smtp_seconds.append(await raw_smtp(run.sink.port, messages))
            start_pipeline(run)
            try:
                watcher = await watch_case_stream(run)
                await measure(run)
            finally:
                if watcher is not None:
                    await watcher.close()
                await asyncio.to_thread(stop_pipeline, run)
            print(f"raw SMTP: {messages} messages over one connection (round 2) ...", flush=True)
            run.raw_smtp_seconds.append(await raw_smtp(run.sink.port, messages))
            print(f"raw SMTP: {messages} messages, a NOOP before each ...", flush=True)
            run.raw_smtp_noop_seconds = await raw_smtp(run.sink.port, messages, noop=True)
        finally:
            await run.sink.stop()
        print(f"raw NATS: {args.triggers} round trips ...", flush=True)
        run.raw = await raw_nats(run.nats_url, run.trigger_body or b"x" * 1100, args.triggers, args.pause)
    finally:
        server.stop()
    return run


# ----------------------------------------------------------------------------- reporting
@dataclass
class Deliveries:
    """The service's deliveries table, read after the run."""

    cause: dict[str, str]  # delivery key -> the event that caused it
    urgent_emails: dict[str, list[str]]  # cause event id -> its urgent e-mails' delivery keys
    statuses: Counter[tuple[str, str, int]]  # (status, channel, urgent) -> count


def read_deliveries(path: Path) -> Deliveries:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT delivery_key, cause_event_id, channel, urgent, status FROM deliveries"
        ).fetchall()
    urgent: dict[str, list[str]] = defaultdict(list)
    for key, cause, channel, is_urgent, _ in rows:
        if channel == "email" and is_urgent:
            urgent[str(cause)].append(str(key))
    return Deliveries(
        {str(r[0]): str(r[1]) for r in rows}, urgent, Counter((str(r[4]), str(r[2]), int(r[3])) for r in rows)
    )


STAGES = (
    "commit -> on VSS_CASE (the relay; push subscriber here)",
    "on VSS_CASE -> the case consumer's apply starts",
    "apply: decide and store (one transaction)",
    "stored -> the sender's look returns the rows",
    "rows -> the first e-mail handed to SmtpChannel.send",
    "its send: MAIL/RCPT/DATA (a NOOP first after a pause), the sink's 250",
    "-> the last e-mail's send returns (the others, in turn)",
)

TOTAL = "together: commit -> the last e-mail's send returns (250 received)"


@dataclass
class Attributed:
    """Per trigger, from its commit (ms): its urgent e-mails found through the deliveries table."""

    first_ms: list[float] = field(default_factory=list)  # first e-mail accepted by the sink
    last_ms: list[float] = field(default_factory=list)  # last e-mail accepted: THE latency
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STAGES, TOTAL)})
    traced: list[tuple[float, list[float]]] = field(default_factory=list)  # (commit, stages + total)
    emails: int = 0
    incomplete: int = 0


def attribute(
    fired: Sequence[Fired],
    accepted: Sequence[Accepted],
    table: Deliveries,
    on_stream: dict[str, float],
    trace: Trace | None,
) -> Attributed:
    at = {a.delivery: a.at for a in accepted if a.urgent}
    out = Attributed()
    for f in fired:
        keys = table.urgent_emails.get(f.event_id, [])
        times = [at[k] for k in keys if k in at]
        out.emails += len(times)
        if not keys or len(times) < len(keys):
            out.incomplete += 1
            continue
        out.first_ms.append((min(times) - f.committed) * 1000)
        out.last_ms.append((max(times) - f.committed) * 1000)
        if trace is None or f.event_id not in trace.apply or f.event_id not in on_stream:
            continue
        applied = trace.apply[f.event_id]
        looks = [trace.due[k] for k in keys if k in trace.due]
        sends = sorted(trace.send[k] for k in keys if k in trace.send)
        if len(looks) < len(keys) or len(sends) < len(keys):
            continue
        look = min(looks)
        last = max(end for _, end in sends)
        marks = (f.committed, on_stream[f.event_id], *applied, look, *sends[0], last)
        values = [(b - a) * 1000 for a, b in itertools.pairwise(marks)] + [(last - f.committed) * 1000]
        for stage, value in zip((*STAGES, TOTAL), values, strict=True):
            out.stages[stage].append(value)
        out.traced.append((f.committed, values))
    return out


HEAD = f"{'n':>6}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"


def _row(name: str, ms: Sequence[float], width: int = 58) -> str:
    if not ms:
        return f"  {name:<{width}}{0:>6}{'—':>8}{'—':>8}{'—':>8}{'—':>8}"
    figures = f"{pct(ms, 0.5):>8.1f}{pct(ms, 0.95):>8.1f}{pct(ms, 0.99):>8.1f}{max(ms):>8.1f}"
    return f"  {name:<{width}}{len(ms):>6}{figures}"


def report(run: Run) -> None:
    args, sink, raw = run.args, run.sink, run.raw
    assert sink is not None
    assert raw is not None
    table = read_deliveries(run.notifications_path)
    notifications = next(c for c in run.children if c.name == "notifications")
    trace: Trace | None = notifications.result[3] if notifications.result else None
    paced = attribute(run.paced, sink.accepted, table, run.on_stream, trace)
    burst = attribute(run.burst, sink.accepted, table, run.on_stream, None)
    service = [a for a in sink.accepted if a.urgent and a.case != RAW_SMTP_CASE]
    raw_sizes = [a.size for a in sink.accepted if a.case == RAW_SMTP_CASE]
    kept = "a MailSink: each message a fsync'd .eml file" if args.sink == "files" else "keeps nothing"

    print(
        f"\n{args.cases} cases (seed {args.seed}); SMTP server: {kept};"
        f" sender_interval {args.sender_interval} s"
        f"\nper trigger: {URGENT_EMAILS_PER_TRIGGER} urgent e-mails and {PLAN_CONTACTS} SMS files; urgent"
        f" e-mails {sum(a.size for a in service) / max(1, len(service)):,.0f} B on average, the raw SMTP"
        f" round's {sum(raw_sizes) / max(1, len(raw_sizes)):,.0f} B"
    )
    first_commit, last_commit, last_setup = run.setup
    setup_mails = args.cases * SETUP_EMAILS_PER_CASE
    print(
        f"setup: {setup_mails} non-urgent e-mails, first commit to last accepted"
        f" {last_setup - first_commit:.1f} s ({setup_mails / (last_setup - first_commit):,.0f}/s;"
        f" the commands took {last_commit - first_commit:.1f} s)"
    )

    print(f"\nlatency: {len(run.paced)} triggers, one at a time ({args.pause * 1000:.0f} ms apart)")
    print(f"  {'from the trigger committed to':<58}{HEAD}   (ms)")
    print(_row("its first urgent e-mail accepted by SMTP", paced.first_ms))
    print(_row("its LAST urgent e-mail accepted by SMTP", paced.last_ms))
    print(_row("raw NATS: publish -> a pull consumer has it", raw.received_ms))
    print(_row("raw NATS: publish -> acked (stored)", raw.acked_ms))
    if paced.incomplete:
        print(f"  {paced.incomplete} triggers without all their e-mails accepted (left out above)")
    print(f"\n  {'where it goes, per trigger (timed in the notifications process too)':<72}{HEAD}")
    for stage in (*STAGES, TOTAL):
        print(_row(stage, paced.stages[stage], 72))
    start = run.paced[0].committed if run.paced else 0.0
    slowest = sorted(paced.traced, key=lambda t: -t[1][-1])[:3]
    print(
        "  the slowest: "
        + "; ".join(
            f"at {at - start:+.1f} s: {', '.join(f'{v:.0f}' for v in values)} ms" for at, values in slowest
        )
    )

    raw_count = args.burst * URGENT_EMAILS_PER_TRIGGER
    raw_best = min(run.raw_smtp_seconds)
    raw_rate = raw_count / raw_best
    begin, end = run.burst_window
    rate = burst.emails / (end - begin) if end > begin else 0.0
    sending = [a.at for a in service if a.at >= begin]
    send_rate = (len(sending) - 1) / (max(sending) - min(sending)) if len(sending) > 1 else 0.0
    fired_for = run.burst[-1].committed - run.burst[0].committed
    print(f"\nthroughput: {len(run.burst)} triggers fired at once (the commands took {fired_for:.2f} s)")
    print(f"  {'path':<58}{'e-mails':>8}{'s':>8}{'e-mails/s':>11}{'× raw':>8}")
    print(
        f"  {'raw aiosmtplib send_message, one connection (best of 2)':<58}{raw_count:>8}"
        f"{raw_best:>8.2f}{raw_rate:>11,.0f}{1.0:>8.2f}"
    )
    print(
        f"  {'service: first commit -> last urgent e-mail accepted':<58}{burst.emails:>8}"
        f"{end - begin:>8.2f}{rate:>11,.0f}{rate / raw_rate:>8.2f}"
    )
    spent = max(sending) - min(sending) if sending else 0.0
    print(
        f"  {'service: first -> last urgent e-mail accepted':<58}{len(sending):>8}"
        f"{spent:>8.2f}{send_rate:>11,.0f}{send_rate / raw_rate:>8.2f}"
    )
    noop_rate = raw_count / run.raw_smtp_noop_seconds
    print(
        f"  {'raw, a NOOP before each message':<58}{raw_count:>8}"
        f"{run.raw_smtp_noop_seconds:>8.2f}{noop_rate:>11,.0f}{noop_rate / raw_rate:>8.2f}"
    )
    rounds = ", ".join(f"{raw_count / s:,.0f}/s" for s in run.raw_smtp_seconds)
    print(f"  raw SMTP rounds (before, after the pipeline): {rounds}")
    print(f"  {'':<58}{HEAD}   (ms)")
    print(_row("commit -> the trigger's last urgent e-mail accepted", burst.last_ms))
    if trace is not None:
        ends = sorted(end for _, end in trace.send.values() if end >= begin)
        gaps = [(b - a) * 1000 for a, b in itertools.pairwise(ends)]
        print(_row("one e-mail's send returns -> the next one's", gaps))
        finishes = [(b - a) * 1000 for a, b in trace.finish if a >= begin]
        print(_row("store.finish: outcome + record event, one transaction", finishes))
    shares = ", ".join(f"{k} {v:.0%}" for k, v in run.burst_cpu.items() if not math.isnan(v))
    cores = os.cpu_count()
    print(f"  CPU meanwhile: machine {run.burst_machine:.0%} busy ({cores} cores); of one core: {shares}")
    if burst.incomplete:
        print(f"  {burst.incomplete} burst triggers without all their e-mails accepted")

    last = paced.last_ms or [math.nan]
    print("\nsummary")
    print(
        f"  {'triggers':>8}{'e-mails':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'service/s':>11}"
        f"{'raw SMTP/s':>12}{'ratio':>7}{'NATS p50':>10}{'NATS p99':>10}"
    )
    print(
        f"  {len(paced.last_ms):>8}{paced.emails:>9}{pct(last, 0.5):>9.1f}{pct(last, 0.99):>9.1f}"
        f"{max(last):>9.1f}{rate:>11,.0f}{raw_rate:>12,.0f}{rate / raw_rate:>7.2f}"
        f"{pct(raw.received_ms, 0.5):>10.2f}{pct(raw.received_ms, 0.99):>10.2f}"
    )
    print(
        "  latency: commit -> the trigger's last urgent e-mail accepted, one trigger at a time;"
        f"\n  service/s: the burst of {len(run.burst)}, first commit -> last accepted;"
        " NATS: publish -> pull consumer (ms)"
    )

    print("\nchecks")
    print(
        "  deliveries (status, channel, urgent): "
        + ", ".join(f"{k}: {v}" for k, v in sorted(table.statuses.items()))
    )
    sms = len(list((run.tmp / "notifications" / "sms").glob("*.json")))
    print(f"  SMS files: {sms}; the sink accepted {dict(sink.counts)}; waits that timed out: {run.missing}")
    for child in run.children:
        if child.result is None:
            print(f"  {child.name}: no result (it did not stop cleanly)")
            continue
        value, error, records = child.result[:3]
        tally = LogTally(records)
        print(f"  {child.name}: {value}{f' FAILED {error}' if error else ''}; log: {tally.summary()}")
        for when, level, name, fields in tally.notable()[:10]:
            print(f"    {when - start:+.1f} s: {level} {name} {fields}")
    log_file = run.tmp / "nats-server.log"
    if log_file.exists():
        text = log_file.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if "[WRN]" in ln or "[ERR]" in ln]
        print(f"  nats-server log: {len(lines)} warning/error lines")
        for line in lines[:10]:
            print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200, help="cases set up before measuring (default 200)")
    parser.add_argument(
        "--triggers", type=int, default=200, help="triggers in the latency run, one at a time"
    )
    parser.add_argument("--burst", type=int, default=None, help="triggers fired at once (default: --cases)")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between latency triggers")
    parser.add_argument("--seed", type=int, default=20261123, help="names, contacts and the trigger order")
    parser.add_argument(
        "--sink", choices=("files", "memory"), default="files", help="what the SMTP sink keeps"
    )
    parser.add_argument(
        "--sender-interval",
        type=float,
        default=NotificationsSettings.model_fields["sender_interval"].default,
        help="the service's VSS_SENDER_INTERVAL (its look for due messages when not woken)",
    )
    args = parser.parse_args()
    args.burst = args.burst or args.cases
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    capture_logs()
    with tempfile.TemporaryDirectory(prefix="vss-bench-notifications-") as name:
        tmp = Path(name)
        started = now()
        run = asyncio.run(main_async(args, tmp))
        report(run)
        print(f"\n(the whole run took {now() - started:.0f} s)")


if __name__ == "__main__":
    main()
