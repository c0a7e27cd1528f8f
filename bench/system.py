"""Whole-system benchmark: `vss up` driven over HTTP by concurrent clients running case lifecycles.

What a coordinator experiences is the whole system, not one part: this bench starts `vss up`
(every service, the embedded nats-server, the local mail sink; SQLite stores, the embedded
defaults) in a temporary directory on free ports, and drives its case API over HTTP.

- **The load**: realistic case lifecycles, the generator's (``services.case.generator``): each
  case's life from its opening through mapping, planning, SIPs, follow-ups, early warnings,
  member and coordinator changes, withdrawals and closing, translated step by step into the
  case API's requests, each with a token of the step's actor (the client's own for what the
  client does). The lives are drawn on a timeline ending now over ``--span-days`` (under a year,
  so that no consent given on it has run out today); what falls after now is not sent. A pool
  of ``--active-cases`` lives runs at once, each case's commands one after the other; a finished
  life is replaced by a new one. The first lives are brought part-way through themselves
  before the steps (16 clients, closed loop, not measured), so that the load holds every phase
  of the method from its first second rather than a wave of openings.
- **Open loop at stepped rates**: commands are sent on a fixed schedule (``--rates``, each
  for ``--seconds``) whatever the answers, at most ``--concurrency`` in flight; a command's
  latency runs from its slot in the schedule (so a client held back by the system counts).
- **A step is sustained** when the commands answered 2xx reach the target rate within 5 %
  (over the time it took to send them: a schedule held back by the system stretches it),
  no answer is a 5xx (nor a connection error), and every durable consumer keeps up: its lag
  (``vss_consumer_lag`` on each part's /metrics, sampled every second) does not grow over the
  second half of the step beyond two seconds' worth of its events, and every lag is back at 0
  within ``--drain-limit`` seconds after it.
  The steps go up until one is not sustained (at least up to ``--latency-rate``); the highest
  sustained step is the system's sustained rate.
- **Latency** of the commands (p50/p99) at ``--latency-rate`` (200/s by default), and end to end
  for a sample of commands: accepted → visible in the query API (``GET /v1/cases/{id}?position=``
  returns), a mapping summary accepted → its resource group meeting booked (the meetings API
  with ``?position=`` lists it), an early warning accepted → its first urgent e-mail accepted by
  the mail sink (``sent_at`` of the delivery record: recorded once the sink answered 250).
- **CPU per command per process**: user + system CPU of every process `vss up` started (the
  local mail sink its own row, ``mail-sink``, as it is its own process; and of `vss up` itself
  and this driver) from a step's start until its consumers caught up, divided by the commands
  accepted in the step; "all of vss up" adds up every part's, the sink's included.
- **Raw references, in the same run** (before `vss up` starts, on the same machine): the
  eventsourcing library's ``Application.save`` on SQLite (bench/append.py), raw nats-py
  ``publish_async`` pipelined and one ``publish`` round trip (bench/relay.py), raw SMTP into the
  project's mail sink (bench/notifications.py). Every figure is printed with its ratio.

Usage::

    .venv/bin/python bench/system.py                    # about 6–8 minutes; needs a quiet machine
    .venv/bin/python bench/system.py --json > run.json  # the same, the table on stderr
    .venv/bin/python bench/system.py --seconds 15 --rates 20 --warmup 2 --active-cases 30 \
        --raw-saves 100 --raw-publishes 1000 --raw-mails 10          # a smoke run (~1.5 min)

Figures are printed as tables with ratios; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages
    sys.path.insert(0, str(ROOT))
    sys.path.insert(1, str(ROOT / "contracts"))

import nats  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.append import raw_eventsourcing  # noqa: E402
from bench.common import Answer, Http, HttpFailed, quiet_logs  # noqa: E402
from bench.notifications import RecordingSink, raw_smtp  # noqa: E402
from bench.relay import _machine_cpu, _process_cpu, delete_streams, pct, raw_round  # noqa: E402
from services.case.domain import commands as cmd  # noqa: E402
from services.case.domain.events import Actor  # noqa: E402
from services.case.generator import STOCKHOLM, _CaseLife, _Step, _World  # noqa: E402
from services.case.infrastructure.store import StoreConfig  # noqa: E402
from services.shared.auth import TokenService  # noqa: E402
from services.shared.bus.embedded import EmbeddedNatsServer, free_port  # noqa: E402
from services.shared.bus.names import BusNames  # noqa: E402
from services.shared.bus.streams import case_stream_config, server_urls  # noqa: E402
from services.shared.settings import AuthSettings  # noqa: E402
from vss_contracts.types import ActorPrincipal  # noqa: E402

SEED = 20261207
RATE_TOLERANCE = 0.05  # a step is sustained when the accepted rate is within 5 % of its target
LAG_SLOPE_SHARE = 0.02  # lag growing faster than 2 % of the target rate (messages/s) is growing
LAG_SAMPLE_SECONDS = 1.0
REQUEST_TIMEOUT = 30.0
PROBE_TIMEOUT = 20.0
PROBE_GRACE = 5.0  # seconds a step's probes may go on after its consumers caught up
PROBE_WAIT = PROBE_TIMEOUT + 5  # one probe request's longest wait for its answer
VISIBLE_PROBES = 4  # at most this many `?position=` probes at once (the query API admits 32 waits)
# At most ten a second: a sample whose cost (the driver's, the query API's) does not grow
# with the rate it measures; 400 in a 40 s step.
VISIBLE_PROBE_INTERVAL = 0.1
BOOKING_PROBES = 8
MAIL_PROBES = 4
MAIL_POLL = 0.25
PREPARING_CLIENTS = 16  # closed-loop clients bringing the first cases part-way through their lives


# ==================================================================== pure parts (unit-tested)
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0–1); NaN when there is nothing to rank."""
    return pct(values, p) if values else math.nan


def lag_slope(samples: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, lag) samples: messages per second the lag grows by."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread


@dataclass(frozen=True)
class Judgement:
    sustained: bool
    achieved: float  # commands accepted (2xx) per second
    reasons: tuple[str, ...]  # why not, one per failed condition


def judge_step(
    target: float,
    seconds: float,
    accepted: int,
    server_errors: int,
    lags: Mapping[str, Sequence[tuple[float, int]]],
    drain_seconds: float | None,
    *,
    events_per_command: float = 1.0,
    tolerance: float = RATE_TOLERANCE,
    slope_share: float = LAG_SLOPE_SHARE,
) -> Judgement:
    """Whether a step at ``target`` commands/s was sustained, and why not.

    Sustained: ``accepted / seconds`` within ``tolerance`` of the target; no 5xx or connection
    error; for every durable, the lag over the second half of the step (after it settled) grows
    no faster than ``slope_share`` × the target's events per second (at least 2 messages/s), or
    ends under two seconds' worth of the target's events (a consumer pulling in batches zigzags,
    and a short backlog is not falling behind); and every lag back at 0 after the step
    (``drain_seconds`` not None). Lags count messages, so the target's rate is turned into
    events with ``events_per_command`` (what the step's commands recorded on average).
    """
    reasons: list[str] = []
    achieved = accepted / seconds if seconds > 0 else 0.0
    if achieved < target * (1 - tolerance):
        reasons.append(f"accepted {achieved:.1f}/s, under {1 - tolerance:.0%} of {target:g}/s")
    if server_errors:
        reasons.append(f"{server_errors} server error(s) (5xx or no answer)")
    events = target * max(events_per_command, 1.0)
    allowed, backlog = max(2.0, slope_share * events), 2 * events
    for durable, series in sorted(lags.items()):
        if not series:
            reasons.append(f"{durable}: lag never read")
            continue
        settled = series[len(series) // 2 :]
        slope = lag_slope(settled)
        last = settled[-1][1]
        if slope > allowed and last > backlog:
            reasons.append(f"{durable}: lag grew {slope:.1f} msgs/s to {last}")
    if drain_seconds is None:
        reasons.append("consumers did not catch up after the step")
    return Judgement(not reasons, achieved, tuple(reasons))


def highest_sustained(judged: Sequence[tuple[float, Judgement]]) -> float | None:
    """The highest target of the ascending steps before the first one not sustained."""
    best: float | None = None
    for target, judgement in judged:
        if not judgement.sustained:
            break
        best = target
    return best


def cpu_per_command(
    before: Mapping[str, tuple[int, float]], after: Mapping[str, tuple[int, float]], commands: int
) -> dict[str, float]:
    """Milliseconds of CPU per command for each process: ``before``/``after`` map a part's name to
    (pid, CPU seconds so far). A part restarted in between (another pid) or gone: NaN."""
    out: dict[str, float] = {}
    for name, (pid, used) in before.items():
        later = after.get(name)
        if later is None or later[0] != pid or commands <= 0 or math.isnan(used) or math.isnan(later[1]):
            out[name] = math.nan
        else:
            out[name] = (later[1] - used) * 1000 / commands
    return out


def all_parts(cpu_ms: Mapping[str, float]) -> float:
    """CPU per command of every process of the system (not the driver's); NaN if one is unknown."""
    values = [v for name, v in cpu_ms.items() if name != "this driver"]
    return sum(values) if values else math.nan


def without_nan(value: Any) -> Any:
    """The report for JSON: NaN (not measured) as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(item) for item in value]
    return value


def ratio(figure: float | None, reference: float | None) -> float:
    if figure is None or reference is None or reference == 0 or math.isnan(figure) or math.isnan(reference):
        return math.nan
    return figure / reference


# =========================================================================== the workload
@dataclass(frozen=True, slots=True)
class HttpCommand:
    """One step of a case's life as the case API's request."""

    kind: str  # the aggregate's method (open_case, complete_worksheet, …)
    method: str
    path: str
    body: dict[str, Any]
    actor: Actor
    case_id: str


# The aggregate's command methods and their routes (services/case/entrypoints/http.py).
ROUTES: dict[str, tuple[str, str]] = {
    "assign_coordinator": ("POST", "coordinators"),
    "unassign_coordinator": ("POST", "coordinators/{1}/{0}/unassignment"),  # (user id, organisation id)
    "give_consent": ("POST", "consents"),
    "withdraw_consent": ("POST", "consents/withdrawal"),
    "complete_worksheet": ("POST", "worksheets"),
    "summarise_mapping": ("POST", "mapping-summary"),
    "change_phase": ("POST", "phase"),
    "set_goal": ("POST", "goals"),
    "change_goal_status": ("POST", "goals/{0}/status"),
    "add_member": ("POST", "resource-group/members"),
    "remove_member": ("POST", "resource-group/members/{0}/removal"),
    "hold_resource_group_meeting": ("POST", "resource-group/meetings"),
    "update_early_warning_plan": ("PUT", "early-warning-plan"),
    "trigger_early_warning": ("POST", "early-warnings"),
    "resolve_early_warning": ("POST", "early-warnings/{0}/resolution"),
    "decide_sip": ("POST", "sips"),
    "confirm_sip": ("POST", "sips/current/confirmation"),
    "complete_action": ("POST", "sips/current/actions/{0}/completion"),
    "record_client_contact": ("POST", "contacts"),
    "set_contact_period": ("POST", "contact-period"),
    "close": ("POST", "closure"),
}


class NamesAServerEventId(Exception):
    """A step that names an event by the id the server made (left out of the driven mix)."""


class _Recording:
    """Stands in for the case: records which command method a step calls, with what."""

    def __init__(self) -> None:
        self.call: tuple[str, tuple[Any, ...]] | None = None

    @property
    def state(self) -> Any:
        # A correction or retraction names an entry by the event id the server made: the
        # generator reads it from the live case, which a request built ahead cannot.
        raise NamesAServerEventId

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.call = (name, args)

        return record


def http_command(step: _Step, today: date) -> HttpCommand:
    """The case API request for a generator step (called before the life's next step is drawn:
    a step's command closes over variables the life goes on to change)."""
    case_id = str(step.case_id)
    if isinstance(step.command, cmd.OpenCase):
        body = step.command.model_dump(mode="json", exclude_unset=True)
        return HttpCommand("open_case", "POST", "/v1/cases", body, step.actor, case_id)
    recording = _Recording()
    step.command(recording)  # type: ignore[arg-type]
    if recording.call is None:
        raise ValueError(f"a step of case {case_id} called no command")
    name, args = recording.call
    if name not in ROUTES:
        raise ValueError(f"no route for the case command {name!r}")
    method, template = ROUTES[name]
    # The path's ids are the positional arguments besides the command, in order.
    ids = [arg for arg in args if not isinstance(arg, cmd.Command)]
    [command] = [arg for arg in args if isinstance(arg, cmd.Command)]
    body = command.model_dump(mode="json", exclude_unset=True)
    if step.actor.principal is ActorPrincipal.CLIENT:
        # What the client does is dated today (the rule for a client's own dates); the
        # generator's clock is the step's, this bench's is now.
        body = {key: today.isoformat() if key.endswith("_on") else value for key, value in body.items()}
    path = f"/v1/cases/{case_id}/" + template.format(*ids)
    return HttpCommand(name, method, path, body, step.actor, case_id)


def case_lives(seed: int, span_days: int, now: datetime | None = None) -> Iterator[list[HttpCommand]]:
    """Case lives without end: each the requests of one generated case, up to now."""
    now = now or datetime.now(UTC)
    end = now.astimezone(STOCKHOLM).date()
    start = end - timedelta(days=span_days)
    rng = random.Random(seed)
    world = _World(random.Random(rng.getrandbits(64)), cmd.CasePolicy())
    while True:
        life = _CaseLife(world, random.Random(rng.getrandbits(64)), start, end)
        commands: list[HttpCommand] = []
        for step in life.run():
            if step.at >= now:
                break
            try:
                commands.append(http_command(step, end))
            except NamesAServerEventId:
                continue  # corrections and retractions: rare, and not part of the load
        if commands:
            yield commands


class Tokens:
    """A bearer token per actor, minted here with the running system's key (as `vss token` does)."""

    def __init__(self, service: TokenService) -> None:
        self.service = service
        self.minted: dict[tuple[str, str], str] = {}

    def header(self, actor: Actor) -> dict[str, str]:
        key = (actor.user_id, actor.organisation_id)
        token = self.minted.get(key)
        if token is None:
            if actor.principal is ActorPrincipal.CLIENT:
                token = self.service.mint_client(actor.user_id)
            else:
                token = self.service.mint(
                    user_id=actor.user_id,
                    organisation_id=actor.organisation_id,
                    organisation_name=actor.organisation_name or None,
                    principal=actor.principal.value,
                    roles=sorted(actor.roles),
                )
            self.minted[key] = token
        return {"Authorization": f"Bearer {token}"}


class Supply:
    """The lives still to run, drawn ahead of a step (while the system is idle, not measured)."""

    def __init__(self, seed: int, span_days: int) -> None:
        self._lives = case_lives(seed, span_days)
        self.ready: deque[list[HttpCommand]] = deque()
        self.commands = 0  # commands in ``ready``

    def top_up(self, commands: int) -> None:
        while self.commands < commands:
            life = next(self._lives)
            self.ready.append(life)
            self.commands += len(life)

    def take(self) -> list[HttpCommand]:
        if not self.ready:  # drawn here only if the estimate fell short
            self.top_up(1)
        life = self.ready.popleft()
        self.commands -= len(life)
        return life


# ========================================================================= the system
@dataclass
class System:
    """`vss up`, started here in a temporary directory on free ports."""

    data: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def case_api(self) -> str:
        return str(self.state["case_api"])

    @property
    def query_api(self) -> str:
        return str(self.state["query_api"])

    @property
    def meetings_api(self) -> str:
        return str(self.state["meetings_api"])

    @property
    def notifications_api(self) -> str:
        return str(self.state["notifications_api"])

    def pids(self) -> dict[str, int]:
        """Every process `vss up` started, and `vss up` itself."""
        parts = json.loads((self.data / "up.json").read_text())["parts"]
        pids = {str(p["name"]): int(p["pid"]) for p in parts if p.get("pid")}
        if self.process is not None:
            pids["vss up"] = self.process.pid
        return pids

    def metrics_urls(self) -> dict[str, str]:
        """/metrics of each part running durable consumers."""
        return {
            "projector": f"http://127.0.0.1:{self.env['VSS_PROJECTOR_METRICS_PORT']}/metrics",
            "meetings": f"{self.meetings_api}/metrics",
            "notifications": f"{self.notifications_api}/metrics",
            "sharing": f"http://127.0.0.1:{self.env['VSS_SHARING_METRICS_PORT']}/metrics",
        }


# What the bench sets itself for `vss up`: its directory and a free port each.
BENCH_SETTINGS = frozenset(
    {
        "VSS_DATA_DIR",
        "VSS_CASE_PORT",
        "VSS_QUERY_PORT",
        "VSS_MEETINGS_PORT",
        "VSS_NOTIFICATIONS_PORT",
        "VSS_SMTP_PORT",
        "VSS_RELAY_METRICS_PORT",
        "VSS_PROJECTOR_METRICS_PORT",
        "VSS_SHARING_METRICS_PORT",
        "VSS_NATS_PORT",
        "VSS_NATS_MONITOR_PORT",
    }
)


def system_env(data: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """`vss up`'s environment: the embedded defaults and ``settings`` (``--setting``), every
    port a free one of this run's own."""
    env = {**os.environ, **(settings or {})}  # (no VSS_ setting of the shell: main() removes them)
    env.update(
        {
            "VSS_DATA_DIR": str(data),
            "VSS_CASE_PORT": str(free_port()),
            "VSS_QUERY_PORT": str(free_port()),
            "VSS_MEETINGS_PORT": str(free_port()),
            "VSS_NOTIFICATIONS_PORT": str(free_port()),
            "VSS_SMTP_PORT": str(free_port()),
            "VSS_RELAY_METRICS_PORT": str(free_port()),
            "VSS_PROJECTOR_METRICS_PORT": str(free_port()),
            "VSS_SHARING_METRICS_PORT": str(free_port()),
            "VSS_NATS_PORT": str(free_port()),
            "VSS_NATS_MONITOR_PORT": str(free_port()),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts")]),
        }
    )
    return env


@contextlib.contextmanager
def running_system(
    tmp: Path, timeout: float = 90.0, settings: Mapping[str, str] | None = None
) -> Iterator[System]:
    """`vss up` until every part is up (up.json written); Ctrl-C (SIGINT) at the end, and any
    part it left behind killed (only those: the pids it recorded)."""
    data = tmp / "data"
    system = System(data, system_env(data, settings), log=tmp / "vss-up.log")
    vss = Path(sys.executable).parent / "vss"
    assert system.log is not None
    with system.log.open("wb") as log:
        system.process = subprocess.Popen([str(vss), "up"], cwd=ROOT, env=system.env, stdout=log, stderr=log)
    started: list[int] = []
    try:
        deadline = time.monotonic() + timeout
        while not (data / "up.json").exists():
            if system.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"`vss up` did not start; see {system.log}:\n{system.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        time.sleep(0.2)  # written whole (write_private), but give it a moment
        system.state = json.loads((data / "up.json").read_text())
        started = [pid for name, pid in system.pids().items() if name != "vss up"]
        yield system
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping it is not to be cut short
        system.process.send_signal(signal.SIGINT)
        try:
            system.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            system.process.kill()
            system.process.wait()
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only if `vss up` failed to stop it


def token_service(system: System) -> TokenService:
    return TokenService.from_settings(AuthSettings(), system.data)


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, tuple[int, float]]:
    return {name: (pid, _process_cpu(pid)) for name, pid in pids.items()}


async def read_lags(client: Http, urls: Mapping[str, str]) -> dict[str, int | None]:
    """``vss_consumer_lag`` of every durable (part/durable: messages not yet applied); None: unread."""
    lags: dict[str, int | None] = {}

    async def one(part: str, url: str) -> None:
        try:
            text = (await client.get(url, timeout=5)).text
        except HttpFailed:
            lags[f"{part}/?"] = None
            return
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "vss_consumer_lag":
                    lags[f"{part}/{sample.labels.get('consumer', '?')}"] = int(sample.value)

    await asyncio.gather(*(one(part, url) for part, url in urls.items()))
    return lags


# =========================================================================== the driver
@dataclass
class Probes:
    """End-to-end samples (ms from the command's acceptance) and the probes that failed."""

    visible: list[float] = field(default_factory=list)
    booked: list[float] = field(default_factory=list)
    mailed: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)


@dataclass
class StepRun:
    target: float
    seconds: float
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer (timeout, connection)
    refusals: Counter[str] = field(default_factory=Counter)  # 4xx by command and code
    kinds: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # ms, slot → answer, accepted commands
    events: int = 0
    late_slots: int = 0  # slots sent more than 100 ms late (no free connection)
    sending_seconds: float = 0.0  # from the first slot until the last command was sent
    lags: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    drain_seconds: float | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)
    machine_busy: float = math.nan  # share of the machine's CPU busy over the step
    probes: Probes = field(default_factory=Probes)

    @property
    def accepted(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)


class Driver:
    """Open-loop load over a pool of case lives, with end-to-end probes and lag sampling."""

    def __init__(self, system: System, tokens: Tokens, supply: Supply, args: argparse.Namespace) -> None:
        self.system = system
        self.tokens = tokens
        self.supply = supply
        self.args = args
        self.idle: deque[deque[HttpCommand]] = deque()  # lives with a next command and none in flight
        self.lives_started = 0
        self.slots = asyncio.Semaphore(args.concurrency)
        self.visible_slots = asyncio.Semaphore(VISIBLE_PROBES)
        self.booking_slots = asyncio.Semaphore(BOOKING_PROBES)
        self.mail_slots = asyncio.Semaphore(MAIL_PROBES)
        self.probe_tasks: set[asyncio.Task[None]] = set()
        self.last_visible_probe = -math.inf  # monotonic
        self.client: Http | None = None  # the commands, to the case API
        self.reader: Http | None = None  # the probes and the lag samples

    def _next_life(self) -> deque[HttpCommand]:
        if self.idle:
            return self.idle.popleft()
        self.lives_started += 1
        return deque(self.supply.take())

    async def run_step(self, step: StepRun, *, measure: bool = True) -> None:
        assert self.client is not None
        assert self.reader is not None
        while len(self.idle) < self.args.active_cases:  # the pool of cases in progress
            self.lives_started += 1
            self.idle.append(deque(self.supply.take()))
        pids = self.system.pids()
        cpu_before, machine_before = cpu_snapshot(pids), _machine_cpu()
        cpu_before["this driver"] = (os.getpid(), _process_cpu(os.getpid()))
        tasks: set[asyncio.Task[None]] = set()
        stop_sampling = asyncio.Event()
        started = time.monotonic()
        sampler = asyncio.create_task(self._sample_lags(step, started, stop_sampling))
        interval = 1.0 / step.target
        n = 0
        while True:
            slot = started + n * interval
            if slot >= started + step.seconds:
                break
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.slots.acquire()
            if time.monotonic() - slot > 0.1:
                step.late_slots += 1
            life = self._next_life()
            task = asyncio.create_task(self._send(step, life, slot, measure))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        step.sent = n
        # Slots sent late (no free connection) stretch the step: the rate is over what it took.
        step.sending_seconds = max(step.seconds, time.monotonic() - started)
        if tasks:
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
        stop_sampling.set()
        await sampler
        step.drain_seconds = await self._drain(step, started)
        cpu_after, machine_after = cpu_snapshot(pids), _machine_cpu()
        cpu_after["this driver"] = (os.getpid(), _process_cpu(os.getpid()))
        step.cpu_ms = cpu_per_command(cpu_before, cpu_after, step.accepted)
        busy, total = (a - b for a, b in zip(machine_after, machine_before, strict=True))
        step.machine_busy = busy / total if total > 0 else math.nan
        if self.probe_tasks:  # after the drain, what is still coming comes soon
            pending = set(self.probe_tasks)
            _, unfinished = await asyncio.wait(pending, timeout=PROBE_GRACE)
            for task in unfinished:
                task.cancel()
            if unfinished:
                step.probes.failed["unfinished after the drain"] += len(unfinished)

    async def _request(self, command: HttpCommand) -> tuple[int, Answer | None]:
        """The command's request; (status, response), status 0 if nothing came back."""
        assert self.client is not None
        try:
            response = await self.client.request(
                command.method,
                command.path,
                json=command.body,
                headers=self.tokens.header(command.actor),
                timeout=REQUEST_TIMEOUT,
            )
        except HttpFailed:
            return 0, None
        return response.status_code, response

    async def _send(self, step: StepRun, life: deque[HttpCommand], slot: float, measure: bool) -> None:
        command = life.popleft()
        try:
            status, response = await self._request(command)
        finally:
            self.slots.release()
        answered = time.monotonic()
        accepted_at = time.time()
        step.statuses[status] += 1
        step.kinds[command.kind] += 1
        if response is not None and 200 <= status < 300:
            step.latencies.append((answered - slot) * 1000)
            result = response.json()
            step.events += len(result.get("events", []))
            if measure:
                self._probe(step, command, result, answered, accepted_at)
        elif 400 <= status < 500:
            try:
                # A problem names its rule (``rule``, or the end of its ``type``).
                problem = response.json() if response is not None else {}
                code = str(problem.get("rule") or str(problem.get("type", status)).rsplit("/", 1)[-1])
            except ValueError:
                code = str(status)
            step.refusals[f"{command.kind} {status} {code}"] += 1
            life.clear()  # the rest of this life builds on what was refused
        if life:
            self.idle.append(life)
        else:  # a case closed (or refused): a new one takes its place, the pool stays its size
            self.lives_started += 1
            self.idle.append(deque(self.supply.take()))

    async def prepare(self, clients: int = PREPARING_CLIENTS) -> tuple[int, Counter[int]]:
        """Fill the pool with cases in progress, not all at their start: each of the first
        ``--active-cases`` lives is first run through a random part of itself (closed loop,
        ``clients`` at once; not measured), so that the steps see every phase of the method
        from their first second, not a wave of openings. (commands sent, statuses)"""
        rng = random.Random(self.args.seed)
        lives: deque[tuple[deque[HttpCommand], int]] = deque()
        for _ in range(self.args.active_cases):
            life = deque(self.supply.take())
            self.lives_started += 1
            lives.append((life, rng.randrange(len(life))))
        statuses: Counter[int] = Counter()
        ready: list[deque[HttpCommand]] = []

        async def client() -> None:
            while lives:
                life, prefix = lives.popleft()
                for _ in range(prefix):
                    status, _ = await self._request(life.popleft())
                    statuses[status] += 1
                    if not 200 <= status < 300:
                        life.clear()
                        break
                if life:
                    ready.append(life)

        await asyncio.gather(*(client() for _ in range(clients)))
        rng.shuffle(ready)
        self.idle.extend(ready)
        return sum(statuses.values()), statuses

    # ------------------------------------------------------------------------ probes
    def _probe(
        self, step: StepRun, command: HttpCommand, result: dict[str, Any], answered: float, at: float
    ) -> None:
        position = int(result["position"])
        if (
            command.kind not in ("open_case", "assign_coordinator")
            and answered - self.last_visible_probe >= VISIBLE_PROBE_INTERVAL
            and not self.visible_slots.locked()
        ):
            self.last_visible_probe = answered
            self._spawn(self._visible(step, command, position, answered))
        if command.kind == "summarise_mapping" and not self.booking_slots.locked():
            self._spawn(self._booked(step, command, position, answered))
        if command.kind == "trigger_early_warning" and not self.mail_slots.locked():
            event_ids = {str(e["id"]) for e in result.get("events", [])}
            self._spawn(self._mailed(step, command, event_ids, at))

    def _spawn(self, probe: Any) -> None:
        task = asyncio.create_task(probe)
        self.probe_tasks.add(task)
        task.add_done_callback(self.probe_tasks.discard)

    async def _visible(self, step: StepRun, command: HttpCommand, position: int, answered: float) -> None:
        """Accepted → the query API answers for the case at the command's position."""
        assert self.reader is not None
        async with self.visible_slots:
            url = f"{self.system.query_api}/v1/cases/{command.case_id}?position={position}"
            try:
                response = await self.reader.get(url, headers=self.tokens.header(command.actor))
            except HttpFailed:
                step.probes.failed["visible: no answer"] += 1
                return
            if response.status_code != 200:
                step.probes.failed[f"visible: {response.status_code}"] += 1
                return
            step.probes.visible.append((time.monotonic() - answered) * 1000)

    async def _booked(self, step: StepRun, command: HttpCommand, position: int, answered: float) -> None:
        """A mapping summary accepted → the meetings API lists the case's first meeting."""
        assert self.reader is not None
        async with self.booking_slots:
            url = f"{self.system.meetings_api}/v1/cases/{command.case_id}/meetings?position={position}"
            deadline = answered + PROBE_TIMEOUT
            while time.monotonic() < deadline:
                try:
                    response = await self.reader.get(url, headers=self.tokens.header(command.actor))
                except HttpFailed:
                    step.probes.failed["booked: no answer"] += 1
                    return
                if response.status_code == 200 and response.json().get("items"):
                    step.probes.booked.append((time.monotonic() - answered) * 1000)
                    return
                if response.status_code not in (200, 404, 503):
                    step.probes.failed[f"booked: {response.status_code}"] += 1
                    return
                await asyncio.sleep(0.05)
            step.probes.failed["booked: not within the probe's time"] += 1

    async def _mailed(self, step: StepRun, command: HttpCommand, event_ids: set[str], at: float) -> None:
        """An early warning accepted → its first urgent e-mail accepted by the mail sink (the
        delivery record's ``sent_at``: when the sink answered 250)."""
        assert self.reader is not None
        async with self.mail_slots:
            url = f"{self.system.notifications_api}/v1/cases/{command.case_id}/notifications"
            deadline = time.monotonic() + PROBE_TIMEOUT
            while time.monotonic() < deadline:
                await asyncio.sleep(MAIL_POLL)
                try:
                    response = await self.reader.get(url, headers=self.tokens.header(command.actor))
                except HttpFailed:
                    continue
                if response.status_code != 200:
                    continue
                sent = [
                    datetime.fromisoformat(item["sent_at"]).timestamp()
                    for item in response.json().get("items", [])
                    if item.get("channel") == "email" and item.get("sent_at") and _caused(item, event_ids, at)
                ]
                if sent:
                    step.probes.mailed.append((min(sent) - at) * 1000)
                    return
            step.probes.failed["mailed: no e-mail within the probe's time"] += 1

    # -------------------------------------------------------------------------- lags
    async def _sample_lags(self, step: StepRun, started: float, stop: asyncio.Event) -> None:
        assert self.reader is not None
        urls = self.system.metrics_urls()
        while not stop.is_set():
            lags = await read_lags(self.reader, urls)
            at = time.monotonic() - started
            for durable, lag in lags.items():
                if lag is not None:  # a scrape that failed once is no sample, not a failure
                    step.lags.setdefault(durable, []).append((at, lag))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAG_SAMPLE_SECONDS)

    async def _drain(self, step: StepRun, started: float) -> float | None:
        """Seconds after the step's end until every lag is 0; None if not within the limit."""
        caught_up = await self.caught_up(self.args.drain_limit)
        return None if caught_up is None else max(0.0, caught_up - (started + step.seconds))

    async def caught_up(self, limit: float) -> float | None:
        """When (monotonic) every durable's lag was 0, waiting at most ``limit`` s; None if never."""
        assert self.reader is not None
        urls = self.system.metrics_urls()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            lags = await read_lags(self.reader, urls)
            if lags and all(lag == 0 for lag in lags.values()):
                return time.monotonic()
            await asyncio.sleep(0.25)
        return None


def _caused(delivery: Mapping[str, Any], event_ids: set[str], at: float) -> bool:
    """Whether a delivery is of the early warning accepted at ``at``: by the event's id, else
    (should the record name the cause otherwise) an early warning's delivery created since."""
    if delivery.get("cause_event_id") in event_ids:
        return True
    created = datetime.fromisoformat(str(delivery.get("created_at"))).timestamp()
    return "EarlyWarningTriggered" in str(delivery.get("cause_event_type")) and created >= at - 1.0


# ======================================================================= raw references
@dataclass
class References:
    save_per_s: float = math.nan  # eventsourcing Application.save on SQLite, one event per save
    save_cpu_ms: float = math.nan  # CPU per save
    publish_per_s: float = math.nan  # nats-py publish_async, pipelined, acks awaited
    publish_round_trip_ms: list[float] = field(default_factory=list)  # one publish → its ack
    smtp_per_s: float = math.nan  # aiosmtplib send_message into the mail sink, one after the other

    @property
    def save_ms(self) -> float:
        return 1000 / self.save_per_s if self.save_per_s > 0 else math.nan

    @property
    def smtp_ms(self) -> float:
        return 1000 / self.smtp_per_s if self.smtp_per_s > 0 else math.nan


def reference_save(tmp: Path, saves: int, rounds: int = 3) -> tuple[float, float]:
    """Best of ``rounds``: saves/s and CPU ms per save (bench/append.py's raw library path)."""
    best_rate, best_cpu = 0.0, math.nan
    for i in range(rounds):
        env = StoreConfig(f"sqlite:///{tmp}/raw-library-{i}.sqlite").eventsourcing_env(create_table=True)
        contender = raw_eventsourcing(env, saves)
        try:
            cpu = time.process_time()
            seconds = contender.round()
            cpu = time.process_time() - cpu
        finally:
            contender.close()
        if saves / seconds > best_rate:
            best_rate, best_cpu = saves / seconds, cpu * 1000 / saves
    return best_rate, best_cpu


async def publish_round_trips(nats_url: str, count: int) -> list[float]:
    """One ``publish`` at a time, each awaited until JetStream acknowledges it (ms)."""
    names = BusNames.unique()
    nc = await nats.connect(server_urls(nats_url))
    try:
        js = nc.jetstream()
        await js.add_stream(case_stream_config(names))
        body = b"x" * 700
        times = []
        for _ in range(count):
            subject = f"{names.subject_prefix}.{uuid.uuid4()}.WorksheetCompleted"
            started = time.perf_counter()
            await js.publish(subject, body, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        await nc.close()
        await delete_streams(nats_url, names)


async def reference_bus_and_mail(tmp: Path, publishes: int, mails: int) -> tuple[float, list[float], float]:
    server = EmbeddedNatsServer(tmp / "raw-jetstream", log_file=tmp / "raw-nats-server.log")
    server.start()
    try:
        rendered = [
            (f".{uuid.uuid4()}.WorksheetCompleted", b"x" * 700, {"Nats-Msg-Id": str(uuid.uuid4())})
            for _ in range(publishes)
        ]
        rounds = [await raw_round(server.url, rendered) for _ in range(3)]
        publish_rate = max(f.rate for f in rounds)
        round_trips = await publish_round_trips(server.url, max(100, publishes // 20))
    finally:
        server.stop()
    sink = RecordingSink(tmp / "raw-mail", keep_files=True)  # files, as `vss up`'s sink keeps them
    await sink.start()
    try:
        seconds = min([await raw_smtp(sink.port, mails) for _ in range(2)])
    finally:
        await sink.stop()
    return publish_rate, round_trips, mails / seconds


def references(tmp: Path, args: argparse.Namespace) -> References:
    say("raw references: the library's save, publish_async, SMTP …")
    refs = References()
    refs.save_per_s, refs.save_cpu_ms = reference_save(tmp, args.raw_saves)
    refs.publish_per_s, refs.publish_round_trip_ms, refs.smtp_per_s = asyncio.run(
        reference_bus_and_mail(tmp, args.raw_publishes, args.raw_mails)
    )
    return refs


# ============================================================================== the run
STARTED = time.monotonic()


def say(line: str) -> None:
    """Progress, on stderr, with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {line}", file=sys.stderr, flush=True)


def estimate(rate: float, seconds: float, active: int) -> int:
    """Commands to have drawn before a step: its own, and the pool's, with a margin."""
    return int(rate * seconds * 1.2) + active * 30


async def drive(system: System, args: argparse.Namespace) -> tuple[list[StepRun], Driver]:
    tokens = Tokens(token_service(system))
    supply = Supply(args.seed, args.span_days)
    driver = Driver(system, tokens, supply, args)
    steps: list[StepRun] = []
    async with (
        Http(system.case_api, connections=args.concurrency) as client,
        Http(connections=VISIBLE_PROBES + BOOKING_PROBES + MAIL_PROBES + 8, timeout=PROBE_WAIT) as reader,
    ):
        driver.client, driver.reader = client, reader
        supply.top_up(args.active_cases * 30)
        say(f"preparing {args.active_cases} cases in progress ({PREPARING_CLIENTS} clients, not measured) …")
        sent, statuses = await driver.prepare()
        say(f"  {sent} commands, answers {dict(sorted(statuses.items()))}; waiting for the consumers …")
        if await driver.caught_up(max(60.0, args.drain_limit)) is None:
            say("  the consumers did not catch up within a minute; going on")
        if args.warmup > 0:
            supply.top_up(estimate(args.rates[0], args.warmup, args.active_cases))
            say(f"warm-up: {args.rates[0]:g} commands/s for {args.warmup:g} s (not judged)")
            warm = StepRun(args.rates[0], args.warmup)
            await driver.run_step(warm, measure=False)
        for rate in args.rates:
            supply.top_up(estimate(rate, args.seconds, args.active_cases))
            await asyncio.sleep(args.pause)
            say(f"step: {rate:g} commands/s for {args.seconds:g} s …")
            step = StepRun(rate, args.seconds)
            await driver.run_step(step)
            steps.append(step)
            judgement = judge(step)
            verdict = "sustained" if judgement.sustained else "NOT sustained: " + "; ".join(judgement.reasons)
            probes = step.probes
            say(
                f"  accepted {judgement.achieved:.1f}/s, p50 {percentile(step.latencies, 0.5):.1f} ms,"
                f" p99 {percentile(step.latencies, 0.99):.1f} ms; drain {step.drain_seconds} s;"
                f" probes: visible {len(probes.visible)}, booked {len(probes.booked)},"
                f" mailed {len(probes.mailed)}, failed {dict(probes.failed)}; {verdict}"
            )
            if not judgement.sustained and rate >= args.latency_rate:
                break  # beyond the sustained rate, and the latency step is done
    return steps, driver


def judge(step: StepRun) -> Judgement:
    return judge_step(
        step.target,
        max(step.seconds, step.sending_seconds),
        step.accepted,
        step.server_errors,
        step.lags,
        step.drain_seconds,
        events_per_command=step.events / step.accepted if step.accepted else 1.0,
    )


# ============================================================================ the report
def _ms(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1f}"


def _x(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}×"


def summary(
    steps: Sequence[StepRun], refs: References, args: argparse.Namespace, meta: dict[str, Any]
) -> dict[str, Any]:
    judged = [(s.target, judge(s)) for s in steps]
    sustained = highest_sustained(judged)
    at = next((s for s in steps if s.target == args.latency_rate), None)
    sustained_step = next((s for s in steps if s.target == sustained), None)
    events_per_command = (
        sustained_step.events / sustained_step.accepted
        if sustained_step and sustained_step.accepted
        else math.nan
    )

    def dist(values: Sequence[float]) -> dict[str, float | int]:
        return {"n": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}

    cpu_step = at or sustained_step
    total_cpu = (
        sum(v for k, v in cpu_step.cpu_ms.items() if k != "this driver" and not math.isnan(v))
        if cpu_step
        else math.nan
    )
    round_trip_p50 = percentile(refs.publish_round_trip_ms, 0.5)
    latency = {
        "rate": args.latency_rate,
        "sustained": bool(at and judge(at).sustained),
        "command": dist(at.latencies) if at else None,
        "visible": dist(at.probes.visible) if at else None,
        "booked": dist(at.probes.booked) if at else None,
        "mailed": dist(at.probes.mailed) if at else None,
    }
    return {
        **meta,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "sustained_rate": sustained,
        "latency": latency,
        "steps": [
            {
                "target": s.target,
                "seconds": s.seconds,
                "sent": s.sent,
                "accepted": s.accepted,
                "achieved": judge(s).achieved,
                "sustained": judge(s).sustained,
                "reasons": list(judge(s).reasons),
                "statuses": {str(k): v for k, v in sorted(s.statuses.items())},
                "refusals": dict(s.refusals.most_common()),
                "events": s.events,
                "late_slots": s.late_slots,
                "sending_seconds": s.sending_seconds,
                "latency_ms": dist(s.latencies),
                "max_lag": {d: max((v for _, v in series), default=None) for d, series in s.lags.items()},
                "lag_slope": {d: lag_slope(series[len(series) // 2 :]) for d, series in s.lags.items()},
                "drain_seconds": s.drain_seconds,
                "cpu_ms_per_command": s.cpu_ms,
                "machine_busy": s.machine_busy,
                "end_to_end_ms": {
                    "visible": dist(s.probes.visible),
                    "booked": dist(s.probes.booked),
                    "mailed": dist(s.probes.mailed),
                    "failed": dict(s.probes.failed),
                },
                "commands": dict(s.kinds.most_common()),
            }
            for s in steps
        ],
        "references": {
            "library_save_per_s": refs.save_per_s,
            "library_save_ms": refs.save_ms,
            "library_save_cpu_ms": refs.save_cpu_ms,
            "publish_async_per_s": refs.publish_per_s,
            "publish_round_trip_ms": dist(refs.publish_round_trip_ms),
            "smtp_per_s": refs.smtp_per_s,
            "smtp_ms": refs.smtp_ms,
        },
        "ratios": {
            "sustained_rate / library saves per s": ratio(sustained, refs.save_per_s),
            "events per s at the sustained rate / publish_async per s": ratio(
                (sustained or math.nan) * events_per_command, refs.publish_per_s
            ),
            "command p50 / library save": ratio(latency["command"]["p50"] if at else None, refs.save_ms),
            "command p99 / library save": ratio(latency["command"]["p99"] if at else None, refs.save_ms),
            "CPU per command (all parts) / library save's CPU": ratio(total_cpu, refs.save_cpu_ms),
            "visible p50 / publish round trip p50": ratio(
                latency["visible"]["p50"] if at else None, round_trip_p50
            ),
            "meeting booked p50 / publish round trip p50": ratio(
                latency["booked"]["p50"] if at else None, round_trip_p50
            ),
            "e-mail accepted p50 / raw SMTP per message": ratio(
                latency["mailed"]["p50"] if at else None, refs.smtp_ms
            ),
        },
        "cpu_step": cpu_step.target if cpu_step else None,
        "cpu_ms_per_command_all_parts": total_cpu,
    }


def print_report(report: dict[str, Any], out: Any) -> None:
    def p(line: str = "") -> None:
        print(line, file=out)

    s = report["settings"]
    p(
        f"\nwhole system: `vss up` (embedded defaults, SQLite), {report['cpus']} cpu(s),"
        f" python {report['python']}, commit {report['commit']}"
        + "".join(f", {name}={value}" for name, value in report.get("system_settings", {}).items())
    )
    p(
        f"open loop, {s['seconds']:g} s per step, at most {s['concurrency']} commands in flight,"
        f" {s['active_cases']} case lives in progress; generator seed {s['seed']}, {s['span_days']} days"
    )
    p(
        f"\n{'target/s':>9}{'accepted/s':>11}{'4xx':>6}{'5xx/err':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max lag':>9}{'drain s':>8}{'machine':>9}  verdict"
    )
    for st in report["steps"]:
        lag = max((v for v in st["max_lag"].values() if v is not None), default=0)
        refused = sum(n for code, n in st["statuses"].items() if code.startswith("4"))
        errors = sum(n for code, n in st["statuses"].items() if code.startswith("5") or code == "0")
        drain = "—" if st["drain_seconds"] is None else f"{st['drain_seconds']:.1f}"
        verdict = "sustained" if st["sustained"] else "no: " + "; ".join(st["reasons"])
        p(
            f"{st['target']:>9g}{st['achieved']:>11.1f}{refused:>6}{errors:>8}"
            f"{_ms(st['latency_ms']['p50']):>8}{_ms(st['latency_ms']['p99']):>8}{lag:>9}{drain:>8}"
            f"{st['machine_busy'] * 100:>8.0f}%  {verdict}"
        )
    sustained = report["sustained_rate"]
    p(
        "\nhighest sustained rate: "
        + ("none of the steps" if sustained is None else f"{sustained:g} commands/s")
        + (
            " (the highest step run: at least this; add higher --rates)"
            if report["steps"][-1]["sustained"]
            else ""
        )
    )
    lat = report["latency"]
    p(f"\nat {lat['rate']:g} commands/s ({'sustained' if lat['sustained'] else 'NOT sustained'}), ms:")
    p(f"  {'':<44}{'n':>6}{'p50':>9}{'p99':>9}")
    names = {
        "command": "command (slot → answered)",
        "visible": "accepted → visible in the query API",
        "booked": "mapping summary → meeting booked",
        "mailed": "early warning → first e-mail accepted",
    }
    for key, name in names.items():
        d = lat[key]
        if d is None:
            p(f"  {name:<44}{'not measured':>24}")
        else:
            p(f"  {name:<44}{d['n']:>6}{_ms(d['p50']):>9}{_ms(d['p99']):>9}")
    at = next((st for st in report["steps"] if st["target"] == lat["rate"]), None)
    if at is not None and at["end_to_end_ms"]["failed"]:
        p(f"  probes without a figure: {at['end_to_end_ms']['failed']}")
    p("\nCPU per command, ms (a step's start until its consumers caught up):")
    parts = sorted({k for st in report["steps"] for k in st["cpu_ms_per_command"]})
    p(f"  {'process':<16}" + "".join(f"{st['target']:>9g}/s" for st in report["steps"]))
    for part in parts:
        p(
            f"  {part:<16}"
            + "".join(f"{_ms(st['cpu_ms_per_command'].get(part, math.nan)):>11}" for st in report["steps"])
        )
    p(
        "  "
        + f"{'all of vss up':<16}"
        + "".join(f"{_ms(all_parts(st['cpu_ms_per_command'])):>11}" for st in report["steps"])
    )
    r = report["references"]
    p("\nraw references (this run, before `vss up` started):")
    p(
        f"  eventsourcing Application.save (SQLite)   {r['library_save_per_s']:>9,.0f}/s"
        f"  {_ms(r['library_save_ms'])} ms, CPU {_ms(r['library_save_cpu_ms'])} ms"
    )
    p(f"  nats-py publish_async (pipelined)         {r['publish_async_per_s']:>9,.0f}/s")
    rt = r["publish_round_trip_ms"]
    p(f"  nats-py publish → ack, one at a time      p50 {_ms(rt['p50'])} ms, p99 {_ms(rt['p99'])} ms")
    p(
        f"  raw SMTP into the mail sink               {r['smtp_per_s']:>9,.0f}/s"
        f"  {_ms(r['smtp_ms'])} ms per message"
    )
    p("\nratios:")
    for name, value in report["ratios"].items():
        p(f"  {name:<58}{_x(value):>9}")
    if any(st["refusals"] for st in report["steps"]):
        p("\nrefused commands (4xx; the rest of such a life is not sent):")
        refusals: Counter[str] = Counter()
        for st in report["steps"]:
            refusals.update(st["refusals"])
        for what, n in refusals.most_common(8):
            p(f"  {n:>6}  {what}")


# ================================================================================== CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        print(f"system.py: {message}", file=sys.stderr)
        raise SystemExit(2)


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {'whole ' if kind is int else ''}number"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}–{high:g}")
        return value

    return parse


MIN_RATE, MAX_RATE, MAX_STEPS = 5, 5000, 20


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: commands/s as whole numbers, comma-separated") from None
    if not 1 <= len(rates) <= MAX_STEPS:
        raise argparse.ArgumentTypeError(f"1–{MAX_STEPS} rates, not {len(rates)}")
    if any(not MIN_RATE <= r <= MAX_RATE for r in rates):
        raise argparse.ArgumentTypeError(f"each rate is {MIN_RATE}–{MAX_RATE} commands/s")
    if rates != sorted(set(rates)):
        raise argparse.ArgumentTypeError("the rates go up, each once")
    return rates


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("VSS_") or not name[4:].replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"{text!r}: VSS_NAME=VALUE expected")
    return name, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rates",
        type=_rates,
        default=[50, 100, 150, 200, 250, 300, 350, 400],
        help="the steps, commands/s, ascending (default 50,…,400)",
    )
    parser.add_argument(
        "--seconds", type=_bounded(float, 5, 600), default=40.0, help="per step (5–600, default 40)"
    )
    parser.add_argument(
        "--latency-rate",
        type=_bounded(int, MIN_RATE, MAX_RATE),
        default=None,
        help="the step whose latencies are reported; one of --rates (default 200,"
        " else the listed rate nearest to it)",
    )
    parser.add_argument(
        "--warmup",
        type=_bounded(float, 0, 120),
        default=10.0,
        help="seconds at the first rate before the steps, not judged (0–120, default 10)",
    )
    parser.add_argument(
        "--pause", type=_bounded(float, 0, 60), default=2.0, help="seconds between steps (0–60, default 2)"
    )
    parser.add_argument(
        "--drain-limit",
        type=_bounded(float, 1, 600),
        default=30.0,
        help="seconds after a step for every consumer lag to reach 0 (1–600, default 30)",
    )
    parser.add_argument(
        "--concurrency",
        type=_bounded(int, 1, 1024),
        default=128,
        help="most commands in flight at once (1–1024, default 128)",
    )
    parser.add_argument(
        "--active-cases",
        type=_bounded(int, 1, 100_000),
        default=300,
        help="case lives in progress at once (1–100000, default 300)",
    )
    parser.add_argument(
        "--span-days",
        type=_bounded(int, 30, 364),
        default=300,
        help="the lives' timeline, days up to today (30–364: no consent on it has run out)",
    )
    parser.add_argument("--seed", type=_bounded(int, 0, 2**63 - 1), default=SEED, help="the generator's seed")
    parser.add_argument(
        "--raw-saves",
        type=_bounded(int, 100, 100_000),
        default=2000,
        help="library saves per reference round (100–100000, default 2000)",
    )
    parser.add_argument(
        "--raw-publishes",
        type=_bounded(int, 1000, 1_000_000),
        default=20_000,
        help="messages per publish_async round (1000–1000000, default 20000)",
    )
    parser.add_argument(
        "--raw-mails",
        type=_bounded(int, 10, 100_000),
        default=300,
        help="messages per raw SMTP round (10–100000, default 300)",
    )
    parser.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        metavar="VSS_NAME=VALUE",
        help="a setting of the system under test (repeatable); none from this shell applies",
    )
    parser.add_argument(
        "--json", action="store_true", help="the figures as JSON on stdout (the table on stderr)"
    )
    args = parser.parse_args(argv)
    own = sorted(name for name, _ in args.setting if name in BENCH_SETTINGS)
    if own:
        parser.error(
            f"argument --setting: {', '.join(own)}: the bench sets it (a directory or port of this run)"
        )
    if args.latency_rate is None:
        args.latency_rate = min(args.rates, key=lambda r: (abs(r - 200), r))
    elif args.latency_rate not in args.rates:
        parser.error(f"argument --latency-rate: {args.latency_rate} is not one of --rates")
    return args


def _stopped(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # the `finally`s stop `vss up` and remove the directory


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stopped)
    quiet_logs()
    for setting in [name for name in os.environ if name.startswith("VSS_")]:
        # The embedded defaults, for `vss up` and for the tokens minted here alike: nothing of
        # a system configured in this shell (another key, another store) applies to this one.
        del os.environ[setting]
    meta = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "commit": _commit(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "system_settings": dict(args.setting),
    }
    with tempfile.TemporaryDirectory(prefix="vss-bench-system-") as tmp_name:
        tmp = Path(tmp_name)
        refs = references(tmp, args)
        say("starting `vss up` …")
        with running_system(tmp, settings=dict(args.setting)) as system:
            steps, driver = asyncio.run(drive(system, args))
            meta["lives_started"] = driver.lives_started
            meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            report = summary(steps, refs, args, meta)
            print_report(report, sys.stderr if args.json else sys.stdout)  # before the stop, which is slow
            if args.json:
                print(json.dumps(without_nan(report), indent=1, default=str))
            say("stopping `vss up` …")


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
