"""The load: coordinators' apps driving realistic cases through their lifecycle over HTTP.

Each client thread runs one case at a time, from its opening to its first SIP (the README's
walk-through, with the early warning plan), then a random working period (early warnings
triggered and resolved, meetings booked through the meetings API and moved or cancelled,
actions completed, members joining and leaving, resource group meetings, reads of the
case), and then, for some cases, a coordinator leaving and the consent withdrawn for that
organisation, or the case closed: the mix of `services/case/generator.py`, at the speed of
an HTTP client. Every choice comes from a seeded ``random.Random``.

Every request is recorded (:class:`Sent`). A write carries an ``Idempotency-Key``; when the
connection fails (the API is being killed) or the answer is a 5xx, the same request is sent
again with the same key until an answer comes, so "accepted" is well defined: the final
answer was 2xx, and its events are the ones the API returned.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.case.generator import personal_identity_number
from services.meetings.domain.calendar import WorkingDays

STOCKHOLM = ZoneInfo("Europe/Stockholm")
REGION = {"id": "vgr-psykiatri-nordost", "name": "Psykiatri Nordost", "principal": "region"}
MUNICIPALITY = {"id": "goteborg-socialtjanst", "name": "Socialtjänsten Göteborg", "principal": "municipality"}
ANNA = {"user_id": "anna.k", "name": "Anna Karlsson", "organisation": REGION}
OMAR = {"user_id": "omar.s", "name": "Omar Said", "organisation": MUNICIPALITY}
FIRST_NAMES = ("Tolvan", "Elin", "Mohammed", "Sara", "Johan", "Aisha", "Karin", "Ali", "Lena", "Emil")
GIVING_UP_AFTER = 180.0  # seconds of retrying one request (the API down the whole time: a failure)
WORKING_DAYS = WorkingDays()


@dataclass
class Call:
    """One request of a lifecycle: which API, what, where, with which body."""

    api: str  # "case", "meetings" or "query"
    command: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    as_municipality: bool = False  # sent with the municipal coordinator's token
    idempotent: bool = True  # a write: sent with an Idempotency-Key


@dataclass
class Sent:
    """What a client saw of one request, over all its attempts."""

    client: int
    api: str  # "case", "meetings" or "query"
    target: str  # the part that answers: "case" or "case-2" (a case API process), or the api
    command: str
    method: str
    path: str
    key: str
    started: float  # time.time()
    ended: float = 0.0
    status: int | None = None  # the final answer; None: no answer before giving up
    attempts: int = 0
    connection_errors: int = 0
    answers: list[tuple[float, int]] = field(default_factory=list)  # (time, status) of every answer
    body: dict[str, Any] | None = None  # the final answer's JSON
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Tokens:
    region: str
    municipality: str


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _today() -> date:
    return datetime.now(STOCKHOLM).date()


def lifecycle(rng: random.Random, number: int) -> Generator[Call, dict[str, Any], None]:
    """One case, from opening to its end (or to the end of the run); receives each answer."""
    today = _today()
    first = rng.choice(FIRST_NAMES)
    born = date(rng.randint(1960, 2004), rng.randint(1, 12), rng.randint(1, 28))
    client = {
        "personal_identity_number": personal_identity_number(rng, born, rng.random() < 0.5),
        "name": f"{first} Chaosson",
    }
    opened = yield Call(
        "case",
        "open",
        "POST",
        "/v1/cases",
        {
            "client": client,
            "municipality": {"code": "1480", "name": "Göteborg"},
            "region": {"code": "14", "name": "Västra Götalandsregionen"},
            "opened_on": today.isoformat(),
        },
    )
    case = f"/v1/cases/{opened['case_id']}"
    for who in (ANNA, OMAR):
        coordinator = {**who, "contact": {"email": f"{who['user_id']}@example.org"}}
        yield Call(
            "case",
            "assign_coordinator",
            "POST",
            f"{case}/coordinators",
            {"assigned_on": today.isoformat(), "coordinator": coordinator},
        )
    yield Call(
        "case",
        "give_consent",
        "POST",
        f"{case}/consents",
        {
            "signed_on": today.isoformat(),
            "covers_relatives": rng.random() < 0.5,
            "organisations": [REGION, MUNICIPALITY],
        },
    )
    both = [
        {"kind": "client", "name": first},
        {"kind": "coordinator", "name": "Anna", "user_id": "anna.k"},
        {"kind": "coordinator", "name": "Omar", "user_id": "omar.s"},
    ]
    yield Call(
        "case",
        "worksheet",
        "POST",
        f"{case}/worksheets",
        {
            "worksheet": "interview",
            "completed_on": today.isoformat(),
            "participants": both,
            "summary": "Vill ha eget boende och något att göra på dagarna.",
        },
    )
    yield Call(
        "case",
        "worksheet",
        "POST",
        f"{case}/worksheets",
        {
            "worksheet": "change_rating",
            "completed_on": today.isoformat(),
            "participants": [{"kind": "client", "name": first}],
            "summary": "Första skattningen.",
            "change_rating": {
                "individually": rng.randint(1, 9),
                "interpersonally": rng.randint(1, 9),
                "socially": rng.randint(1, 9),
                "overall": rng.randint(1, 9),
            },
        },
    )
    yield Call(
        "case",
        "summarise_mapping",
        "POST",
        f"{case}/mapping-summary",
        {
            "summarised_on": today.isoformat(),
            "participants": both,
            "wants_to_change": "Eget boende, sysselsättning",
            "obstacles": "Oro i sociala situationer",
        },
    )
    goal = _uuid(rng)
    yield Call(
        "case",
        "set_goal",
        "POST",
        f"{case}/goals",
        {
            "goal_id": goal,
            "kind": "long_term",
            "description": "Bo i egen lägenhet",
            "set_on": today.isoformat(),
        },
    )
    client_m, anna_m, omar_m = _uuid(rng), _uuid(rng), _uuid(rng)
    yield Call(
        "case",
        "add_member",
        "POST",
        f"{case}/resource-group/members",
        {
            "member_id": client_m,
            "kind": "client",
            "name": client["name"],
            "contact": {"email": f"client-{number}@example.org"},
            "added_on": today.isoformat(),
        },
    )
    for member, who in ((anna_m, ANNA), (omar_m, OMAR)):
        yield Call(
            "case",
            "add_member",
            "POST",
            f"{case}/resource-group/members",
            {
                "member_id": member,
                "kind": "coordinator",
                "name": who["name"],
                "user_id": who["user_id"],
                "organisation": who["organisation"],
                "added_on": today.isoformat(),
            },
        )
    yield Call(
        "case",
        "early_warning_plan",
        "PUT",
        f"{case}/early-warning-plan",
        {
            "signs": [
                {"sign_id": "sleep", "description": "Sover dåligt flera nätter i rad"},
                {"sign_id": "isolation", "description": "Drar sig undan, svarar inte i telefon"},
            ],
            "client_actions": ["Ringer Anna eller Omar"],
            "others_actions": [{"who": "Anna", "what": "Ringer upp samma dag"}],
            "contacts": [{"name": "Anna Karlsson", "relation": "samordnare", "phone": "070-1740605"}],
            "updated_on": today.isoformat(),
        },
    )
    action = _uuid(rng)
    follow_up = today + timedelta(days=rng.randint(30, 80))
    yield Call(
        "case",
        "decide_sip",
        "POST",
        f"{case}/sips",
        {
            "decided_on": today.isoformat(),
            "overall_responsibility": rng.choice([MUNICIPALITY, REGION]),
            "goal_ids": [goal],
            "next_follow_up_on": follow_up.isoformat(),
            "client_agreed": True,
            "participants": both,
            "actions": [
                {
                    "action_id": action,
                    "what": "Ansöka om bostad med boendestöd",
                    "responsible_member_id": omar_m,
                    "due_on": follow_up.isoformat(),
                    "how": "Tillsammans på socialkontoret",
                }
            ],
        },
    )
    yield from working(rng, case, today, both, action)
    ending = rng.random()
    if ending < 0.25:  # the municipality's coordinator leaves, then the consent for it ends
        yield Call(
            "case",
            "unassign_coordinator",
            "POST",
            f"{case}/coordinators/omar.s/unassignment",
            {"unassigned_on": today.isoformat(), "reason": "Byter tjänst"},
        )
        yield Call(
            "case",
            "withdraw_consent",
            "POST",
            f"{case}/consents/withdrawal",
            {"withdrawn_on": today.isoformat(), "entire": False, "organisation_ids": [MUNICIPALITY["id"]]},
        )
    elif ending < 0.55:
        yield Call(
            "case",
            "close",
            "POST",
            f"{case}/closure",
            {"closed_on": today.isoformat(), "reason": rng.choice(["goals_achieved", "client_moved"])},
        )


def working(
    rng: random.Random, case: str, today: date, both: list[dict[str, Any]], action: str
) -> Generator[Call, dict[str, Any], None]:
    """The working phase: a few of what happens between two SIPs, in a random order."""
    open_warning: str | None = None
    professional: str | None = None
    meeting: str | None = None
    action_done = False
    for _ in range(rng.randint(3, 9)):
        roll = rng.random()
        if roll < 0.15 and open_warning is None:
            open_warning = _uuid(rng)
            yield Call(
                "case",
                "trigger_early_warning",
                "POST",
                f"{case}/early-warnings",
                {
                    "warning_id": open_warning,
                    "sign_ids": [rng.choice(["sleep", "isolation"])],
                    "observed_on": today.isoformat(),
                    "description": "Anhörig hörde av sig.",
                },
            )
        elif roll < 0.25 and open_warning is not None:
            yield Call(
                "case",
                "resolve_early_warning",
                "POST",
                f"{case}/early-warnings/{open_warning}/resolution",
                {"resolved_on": today.isoformat(), "outcome": "Kontakt tagen, läget lugnt."},
            )
            open_warning = None
        elif roll < 0.40 and meeting is None:
            starts = WORKING_DAYS.add_working_days(today, rng.randint(2, 15))
            booked = yield Call(
                "meetings",
                "book_meeting",
                "POST",
                f"{case}/meetings",
                {"starts_at": _at(starts, 13), "minutes": 45, "location": "Mottagningen"},
            )
            meeting = str(booked["meeting_id"])
        elif roll < 0.50 and meeting is not None:
            if rng.random() < 0.5:
                later = WORKING_DAYS.add_working_days(today, rng.randint(16, 30))
                yield Call(
                    "meetings",
                    "reschedule_meeting",
                    "POST",
                    f"{case}/meetings/{meeting}/reschedule",
                    {"starts_at": _at(later, 14), "reason": "Krockar med annan tid"},
                )
            else:
                yield Call(
                    "meetings",
                    "cancel_meeting",
                    "POST",
                    f"{case}/meetings/{meeting}/cancel",
                    {"reason": "Brukaren är sjuk"},
                )
            meeting = None
        elif roll < 0.60 and not action_done:
            yield Call(
                "case",
                "complete_action",
                "POST",
                f"{case}/sips/current/actions/{action}/completion",
                {"completed_on": today.isoformat(), "comment": "Ansökan inskickad."},
            )
            action_done = True
        elif roll < 0.70 and professional is None:
            professional = _uuid(rng)
            yield Call(
                "case",
                "add_member",
                "POST",
                f"{case}/resource-group/members",
                {
                    "member_id": professional,
                    "kind": "professional",
                    "name": "Eva Boendestöd",
                    "role": "boendestödjare",
                    "organisation": MUNICIPALITY,
                    "contact": {"email": f"eva-{professional[:8]}@example.org"},
                    "added_on": today.isoformat(),
                },
                as_municipality=True,
            )
        elif roll < 0.78 and professional is not None:
            yield Call(
                "case",
                "remove_member",
                "POST",
                f"{case}/resource-group/members/{professional}/removal",
                {"removed_on": today.isoformat(), "reason": "Insatsen avslutad"},
                as_municipality=True,
            )
            professional = None
        elif roll < 0.88:
            yield Call(
                "case",
                "hold_meeting",
                "POST",
                f"{case}/resource-group/meetings",
                {"held_on": today.isoformat(), "participants": both, "notes": "Genomgång av planen."},
            )
        else:
            yield Call("case", "read_case", "GET", case, idempotent=False)
            # And its overview through the query API, as of the app's last write (no draw:
            # the same seed makes the same choices as before the query API was read).
            yield Call("query", "read_case_view", "GET", case, idempotent=False)


def _at(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=STOCKHOLM).isoformat()


class Client(threading.Thread):
    """One coordinator's app: cases one after another until told to stop."""

    def __init__(
        self,
        number: int,
        seed: int,
        apis: dict[str, str],
        tokens: Tokens,
        log: list[Sent],
        lock: threading.Lock,
        case_apis: dict[str, str] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"chaos-client-{number}")
        self.number = number
        self.rng = random.Random(seed)
        self.apis = apis  # "case", "meetings", "query"
        # The case API processes by part name (two on the cluster): each request goes to one
        # of them at random, as behind a load balancer, and its retries to the same one.
        self.case_apis = case_apis or {"case": apis["case"]}
        self.tokens = tokens
        self.log = log
        self.lock = lock
        self.stop = threading.Event()
        self.cases = 0
        self.abandoned: list[str] = []  # lifecycles ended early by a refused or unanswered request
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=15) as http:
                while not self.stop.is_set():
                    self.cases += 1
                    self._one_case(http, lifecycle(self.rng, self.number * 100_000 + self.cases))
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _one_case(self, http: httpx.Client, steps: Generator[Call, dict[str, Any], None]) -> None:
        position = 0  # the last case API write's log position: the meetings API waits for it
        answer: dict[str, Any] | None = None
        while not self.stop.is_set():
            try:
                call = steps.send(answer) if answer is not None else next(steps)
            except StopIteration:
                return
            sent = self._send(http, call, position)
            if not sent.accepted:
                self.abandoned.append(f"{call.command} {sent.status} {sent.detail[:200]}")
                steps.close()
                return
            answer = sent.body or {}
            if call.api == "case" and "position" in answer:
                position = max(position, int(answer["position"]))
            time.sleep(self.rng.uniform(0.0, 0.05))  # a person, not a benchmark

    def _send(self, http: httpx.Client, call: Call, position: int) -> Sent:
        key = f"chaos-{self.number}-{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
        token = self.tokens.municipality if call.as_municipality else self.tokens.region
        headers = {"Authorization": f"Bearer {token}"}
        if call.idempotent:
            headers["Idempotency-Key"] = key
        waits = call.api in ("meetings", "query")  # both wait for ?position= (503 Retry-After if not)
        params = {"position": str(position)} if waits and position else None
        target = call.api
        if call.api == "case":  # the embedded topology's one process draws nothing (same seeds)
            target = self.rng.choice(sorted(self.case_apis)) if len(self.case_apis) > 1 else "case"
        url = (self.case_apis[target] if call.api == "case" else self.apis[call.api]) + call.path
        sent = Sent(self.number, call.api, target, call.command, call.method, call.path, key, time.time())
        with self.lock:
            self.log.append(sent)
        deadline = time.monotonic() + GIVING_UP_AFTER
        while True:
            sent.attempts += 1
            try:
                response = http.request(
                    call.method,
                    url,
                    json=call.body,
                    headers=headers,
                    params=params,
                )
            except httpx.TransportError as error:  # the API is down or was killed mid-request
                sent.connection_errors += 1
                sent.detail = f"{type(error).__name__}: {error}"
                retry_in = 0.5
            else:
                sent.answers.append((time.time(), response.status_code))
                if response.status_code < 500:
                    sent.status = response.status_code
                    sent.body = response.json() if response.content else None
                    sent.detail = response.text if response.status_code >= 400 else ""
                    sent.ended = time.time()
                    return sent
                sent.detail = response.text
                retry_in = float(response.headers.get("Retry-After", "1"))
            if time.monotonic() + retry_in > deadline:
                sent.ended = time.time()
                return sent
            time.sleep(retry_in)
