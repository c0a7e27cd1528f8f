"""A realistic data generator: N cases through the whole method, for demos, tests and benchmarks.

Every fact is written through the case application (:class:`CaseService`), so every
rule of the aggregate holds for the generated data exactly as for real data: a command
the rules refuse is a bug in this generator and stops it (nothing is caught and ignored).

One global timeline. Each case is a coroutine that yields its next step (a time, an
actor and a command); a heap of every case's next step runs them in time order on a
simulated clock, so the store's log is chronological like real life. Steps fall on
weekdays in office hours (Europe/Stockholm); the timeline starts ``span_days`` before
``end`` and stops at the end of ``end``: cases still active then just stop.

A case's life: it opens in a municipality (weighted towards Västra Götaland, so that
statistics per municipal association have data), one or two coordinators (from pools
per municipal social services and per regional psychiatry unit, hired as the caseloads
fill, so most carry 15–30 active cases) are assigned, the client consents (both
principals, sometimes also e.g. Försäkringskassan; sometimes covering relatives,
sometimes for a year), the mapping worksheets follow over 2–4 months (the change
rating early, the joint interview and network map, QLS-100, early warning signs), then
the mapping summary, goals (a long-term goal and 1–3 sub-goals), the resource group,
the early warning plan and the first SIP at a resource group meeting. Then every ~3
months (a minority late) a change rating, a meeting and a new SIP version; in between
actions are completed (most; some stay overdue), early warnings are triggered and
resolved (a few stay open), members and coordinators change, some clients withdraw
consent (partly or entirely), and some cases close. Now and then a change rating or a
meeting's notes are corrected, a meeting recorded twice has its second record retracted, and
an action's completion recorded on the wrong action is retracted (ADR 0018).

Deterministic for a given seed: every choice and every id a client may choose comes
from ``random.Random(seed)``. (Ids the aggregate makes itself — event ids and consent
ids — and so the hashes and the event id a correction names, differ from run to run.)

Personal identity numbers are well-formed (date of birth, Luhn digit) but random, and
phone numbers are from the series PTS reserves for fiction (070-174 06 05–99).
"""

from __future__ import annotations

import gc
import heapq
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool

from services.case.application.ports import CaseStore
from services.case.application.service import CaseService, CommandResult, Request
from services.case.domain import commands as cmd
from services.case.domain.case import Case, add_months
from services.case.domain.events import Actor
from services.case.infrastructure.signing import CommitSigner
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.shared.geography import MunicipalityInfo, municipalities
from vss_contracts.case_events import (
    CorrectedMeetingHeld,
    CorrectedWorksheet,
    OthersAction,
    PlanContact,
    WarningSign,
)
from vss_contracts.identity import luhn_check_digit
from vss_contracts.types import (
    ActorPrincipal,
    ChangeRating,
    ClientRef,
    ClosingReason,
    ContactDetails,
    ContactMode,
    ContactPeriod,
    Coordinator,
    GoalKind,
    GoalStatus,
    MemberKind,
    Municipality,
    NetworkPerson,
    OrganisationRef,
    Participant,
    Phase,
    Principal,
    Region,
    Worksheet,
)

__all__ = [
    "GenerationReport",
    "GeneratorSettings",
    "InvalidGeneratorSettings",
    "SimulatedClock",
    "generate",
    "generation_store",
]

STOCKHOLM = ZoneInfo("Europe/Stockholm")
MAX_CASES = 1_000_000
MIN_SPAN_DAYS = 30
MAX_SPAN_DAYS = 36_500


# ---------------------------------------------------------------------------- public API
class InvalidGeneratorSettings(ValueError):
    """The generator's settings make no sense (no cases, a span too short, an end in the future, …)."""


@dataclass(frozen=True, slots=True)
class GeneratorSettings:
    cases: int
    seed: int = 1
    end: date | None = None  # the last day of the timeline; None: today (Europe/Stockholm)
    span_days: int = 1095  # the timeline starts this many days before ``end``

    def validated(self, today: date | None = None) -> GeneratorSettings:
        """These settings with ``end`` filled in; :class:`InvalidGeneratorSettings` if they make no sense."""
        today = today or datetime.now(STOCKHOLM).date()
        if isinstance(self.cases, bool) or not isinstance(self.cases, int):
            raise InvalidGeneratorSettings(f"cases must be a whole number, not {self.cases!r}")
        if not 1 <= self.cases <= MAX_CASES:
            raise InvalidGeneratorSettings(f"cases must be between 1 and {MAX_CASES:,}, not {self.cases}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidGeneratorSettings(f"seed must be a whole number, not {self.seed!r}")
        if isinstance(self.span_days, bool) or not isinstance(self.span_days, int):
            raise InvalidGeneratorSettings(f"span_days must be a whole number, not {self.span_days!r}")
        if not MIN_SPAN_DAYS <= self.span_days <= MAX_SPAN_DAYS:
            raise InvalidGeneratorSettings(
                f"span_days must be between {MIN_SPAN_DAYS} and {MAX_SPAN_DAYS}, not {self.span_days}"
            )
        end = self.end if self.end is not None else today
        if not isinstance(end, date) or isinstance(end, datetime):
            raise InvalidGeneratorSettings(f"end must be a date, not {end!r}")
        if end > today:
            raise InvalidGeneratorSettings(
                f"end {end} is after today ({today}): the generator writes no future"
            )
        if end.year - self.span_days // 366 < 1950:
            raise InvalidGeneratorSettings(f"the timeline would start before 1950 (end {end})")
        return GeneratorSettings(cases=self.cases, seed=self.seed, end=end, span_days=self.span_days)


@dataclass(frozen=True, slots=True)
class GenerationReport:
    cases: int  # cases opened
    events: int  # events stored
    commands: int  # commands run through the application
    seconds: float  # wall time
    last_position: int  # the log position of the last event stored (0 if none)
    closed: int = 0  # cases closed by the end of the timeline
    event_types: Mapping[str, int] = field(default_factory=dict)  # events stored, by type

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class SimulatedClock:
    """The ``Clock`` port on the generator's timeline: it moves only forward, when told."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's time is timezone-aware")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError(f"the clock does not run backwards ({when} < {self._now})")
        self._now = when


@dataclass(frozen=True, slots=True)
class _GenerationStoreConfig(StoreConfig):
    cache_size: int = 1000

    def eventsourcing_env(self, **kwargs: Any) -> dict[str, str]:
        kwargs["cache_size"] = self.cache_size
        # (explicit base class: zero-argument super() fails in a slots dataclass)
        return StoreConfig.eventsourcing_env(self, **kwargs)


_COLLECT_EVERY_DAYS = 30  # simulated days between full garbage collections while generating


def generation_store(
    url: str, cases: int, *, durable: bool = False, signer: CommitSigner | None = None
) -> CaseEventStore:
    """A store on ``url`` made for generating ``cases`` cases (the caller closes it).

    - Its aggregate cache holds every generated case: the generator touches every active
      case about weekly on its timeline, and with the default cache (1,000 cases) a large
      run would reload most cases from the database at every command.
    - On SQLite, unless ``durable``, its connections commit without waiting for the disk
      (WAL with ``synchronous=NORMAL``): about twice as fast here. A crash of the process
      loses nothing; a crash of the machine may lose the last commits, never corrupt the
      store (every commit keeps its events and the case's head together). The setting
      belongs to this store's connections only, never to the database.
    - With ``signer`` (``vss generate``: the case service's key) each commit is signed, as
      the case service signs it.
    """
    store = CaseEventStore(_GenerationStoreConfig(url, cache_size=max(1000, cases + 100)), signer=signer)
    if not durable:
        _commit_without_fsync(store)
    return store


def _commit_without_fsync(store: CaseEventStore) -> bool:
    """SQLite: ``PRAGMA synchronous=NORMAL`` on every connection of the store (the commits'
    and the pool's); whether it applied."""
    pool = getattr(getattr(store.case_recorder, "datastore", None), "pool", None)
    if store.writer is None or not isinstance(pool, SQLiteConnectionPool):
        return False
    store.writer.configure("PRAGMA synchronous=NORMAL")
    create = pool._create_connection

    def create_relaxed() -> SQLiteConnection:
        connection = create()
        connection._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        return connection

    # The pool's hook for new connections (eventsourcing's ConnectionPool._create_connection).
    pool._create_connection = create_relaxed  # type: ignore[method-assign]
    for connection in list(pool._pool):  # any made already
        connection._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
    return True


def generate(
    store: CaseStore,
    settings: GeneratorSettings,
    *,
    policy: cmd.CasePolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationReport:
    """Generate ``settings.cases`` cases into ``store`` through the case application.

    ``progress(days_done, days_total)`` is called as the simulated timeline moves on a day.
    ``policy`` must be the one the case service runs with (the SIP follow-up interval).
    Raises :class:`InvalidGeneratorSettings` for bad settings, ``CaseAlreadyExists`` when
    the store already holds a case of this seed.
    """
    settings = settings.validated()
    assert settings.end is not None
    policy = policy or cmd.CasePolicy()
    started = time.perf_counter()
    end = settings.end
    start = end - timedelta(days=settings.span_days)
    # The timeline ends with the day ``end`` (and never after now, when that is today).
    end_at = min(
        datetime.combine(end + timedelta(days=1), clock_time(0), STOCKHOLM).astimezone(UTC),
        datetime.now(UTC),
    )
    clock = SimulatedClock(datetime.combine(start, clock_time(0), STOCKHOLM))
    service = CaseService(store, clock, policy)
    rng = random.Random(settings.seed)
    world = _World(random.Random(rng.getrandbits(64)), policy)

    # The run holds every case's life and (in the store's cache) every case: millions of
    # long-lived objects that each full collection of the cyclic garbage collector would
    # scan again. At 100,000 cases that was a quarter of the time (py-spy), so it is off
    # while generating, and one full collection per simulated month frees what cycles there are.
    collecting = gc.isenabled()
    gc.disable()
    try:
        heap: list[tuple[datetime, int, Iterator[_Step], _Step]] = []
        sequence = 0
        for _ in range(settings.cases):
            life = _CaseLife(world, random.Random(rng.getrandbits(64)), start, end)
            steps = life.run()
            first = next(steps)
            heap.append((first.at, sequence, steps, first))
            sequence += 1
        heapq.heapify(heap)

        events = commands = last_position = 0
        types: Counter[str] = Counter()
        days_done = collected_on = -1
        open_case, execute = service.open_case, service.execute
        while heap:
            at, _, steps, step = heapq.heappop(heap)
            if at >= end_at:
                break  # every other step is later still
            clock.set(at)
            day = (at.astimezone(STOCKHOLM).date() - start).days
            if day != days_done:
                days_done = day
                if collecting and day - collected_on >= _COLLECT_EVERY_DAYS:
                    collected_on = day
                    gc.collect()
                if progress is not None:
                    progress(day, settings.span_days)
            request = Request(actor=step.actor, correlation_id=step.correlation_id)
            result: CommandResult
            if isinstance(step.command, cmd.OpenCase):
                result = open_case(request, step.command)
            else:
                result = execute(request, step.case_id, step.command)
            commands += 1
            events += len(result.events)
            last_position = result.position
            for event in result.events:
                types[event["type"]] += 1
            following = next(steps, None)
            if following is not None:
                heapq.heappush(heap, (following.at, sequence, steps, following))
                sequence += 1
    finally:
        if collecting:
            gc.enable()
    if progress is not None:
        progress(settings.span_days, settings.span_days)
    return GenerationReport(
        cases=types.get("se.vss.case.CaseOpened.v1", 0),
        events=events,
        commands=commands,
        seconds=time.perf_counter() - started,
        last_position=last_position,
        closed=types.get("se.vss.case.CaseClosed.v1", 0),
        event_types=dict(types),
    )


# ------------------------------------------------------------------------ reference data
FIRST_NAMES_F = (
    "Anna", "Maria", "Eva", "Karin", "Sara", "Lena", "Emma", "Kristina", "Elin", "Ida",
    "Johanna", "Linnea", "Malin", "Sofia", "Hanna", "Amanda", "Fatima", "Leila", "Ebba", "Maja",
    "Helena", "Camilla", "Jenny", "Susanne", "Annika", "Petra", "Nour", "Aisha", "Agnes", "Klara",
)  # fmt: skip
FIRST_NAMES_M = (
    "Erik", "Lars", "Karl", "Anders", "Johan", "Per", "Mikael", "Peter", "Jonas", "Fredrik",
    "Daniel", "Magnus", "Oskar", "Viktor", "Filip", "Ali", "Mohammed", "Ahmed", "Emil", "Hugo",
    "Stefan", "Mattias", "Henrik", "Niklas", "Omar", "Jesper", "Marcus", "Tobias", "Axel", "Linus",
)  # fmt: skip
LAST_NAMES = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
    "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson", "Bengtsson", "Lindberg",
    "Jakobsson", "Magnusson", "Lindström", "Lindqvist", "Lindgren", "Berg", "Axelsson", "Bergström",
    "Lundberg", "Lind", "Lundgren", "Lundqvist", "Mattsson", "Berglund", "Fredriksson", "Sandberg",
    "Henriksson", "Ali", "Mohamed", "Holm", "Sjöberg", "Wallin", "Engström", "Hassan", "Ek", "Nyström",
)  # fmt: skip
_ASCII = str.maketrans({"å": "a", "ä": "a", "ö": "o", "é": "e", "ü": "u", "Å": "a", "Ä": "a", "Ö": "o"})

# Where cases are opened: weight of each region, and of the largest municipalities within it.
REGION_WEIGHTS = {"14": 0.62, "01": 0.14, "12": 0.11, "13": 0.07, "03": 0.06}
CITY_WEIGHTS = {
    "1480": 25, "1490": 6, "1481": 4, "1485": 4, "1488": 4, "1487": 3, "1496": 4, "1494": 3,
    "1499": 2, "1489": 3, "1482": 3, "0180": 25, "0181": 4, "0182": 3, "1280": 15, "1283": 7,
    "1281": 6, "1290": 4, "1380": 6, "1383": 4, "1384": 4, "1382": 3, "0380": 12, "0381": 3,
}  # fmt: skip

# The regional psychiatry unit for a case, by region (and in Västra Götaland by association area).
VGR_UNITS = {
    "GR": ("vgr-su-psykiatri", "Sahlgrenska Universitetssjukhuset, psykiatri"),
    "Fyrbodal": ("vgr-nu-psykiatri", "NU-sjukvården, psykiatri"),
    "Skaraborg": ("vgr-skas-psykiatri", "Skaraborgs Sjukhus, psykiatri"),
    "Boråsregionen": ("vgr-sas-psykiatri", "Södra Älvsborgs Sjukhus, psykiatri"),
}
OTHER_UNITS = {
    "01": ("sll-psykiatri", "Region Stockholm, vuxenpsykiatri"),
    "03": ("rus-psykiatri", "Region Uppsala, psykiatri"),
    "12": ("skane-psykiatri", "Region Skåne, vuxenpsykiatri"),
    "13": ("halland-psykiatri", "Region Halland, psykiatri"),
    "14": ("vgr-psykiatri", "Västra Götalandsregionen, psykiatri"),
}
# Other parties a consent may name: (id, name, principal, probability, role of its professional).
OTHER_PARTIES = (
    ("forsakringskassan", "Försäkringskassan", Principal.OTHER, 0.30, "handläggare"),
    ("arbetsformedlingen", "Arbetsförmedlingen", Principal.OTHER, 0.20, "arbetsförmedlare"),
    ("kriminalvarden-frivard", "Kriminalvården, frivården", Principal.OTHER, 0.06, "frivårdsinspektör"),
)
PRIMARY_CARE_PROBABILITY = 0.25

LIFE_AREAS = {
    "Boende": (
        "Bo i en egen lägenhet med stöd.",
        ("Söka lägenhet via bostadsförmedlingen.", "Få boendestöd två gånger i veckan.",
         "Lära sig sköta tvätt och städning själv."),
    ),
    "Sysselsättning": (
        "Ha en meningsfull sysselsättning på dagarna.",
        ("Börja på daglig verksamhet två dagar i veckan.", "Prova arbetsträning hos Arbetsförmedlingen.",
         "Hitta en studiecirkel eller kurs."),
    ),
    "Hälsa": (
        "Må bättre fysiskt och psykiskt.",
        ("Promenera tre gånger i veckan.", "Ta medicinen regelbundet.", "Sova minst sju timmar per natt."),
    ),
    "Ekonomi": (
        "Ha kontroll över sin ekonomi.",
        ("Göra en budget tillsammans med samordnaren.", "Betala räkningarna i tid varje månad.",
         "Ansöka om sjukersättning."),
    ),
    "Relationer": (
        "Ha bättre kontakt med familj och vänner.",
        ("Träffa sin syster en gång i månaden.", "Gå med i en förening.", "Ringa en vän varje vecka."),
    ),
    "Missbruk": (
        "Leva utan alkohol och droger.",
        ("Delta i behandling på beroendemottagningen.", "Vara nykter på vardagar.",
         "Gå på stödgruppsmöten varje vecka."),
    ),
}  # fmt: skip
QLS_AREAS = (
    "Boende", "Ekonomi", "Arbete", "Fritid", "Vänner", "Familj", "Fysisk hälsa", "Psykisk hälsa",
    "Sömn", "Kärlek och sexualitet", "Självkänsla", "Stress",
)  # fmt: skip
# (what, who should act: "region" | "municipality" | "client" | "coordinator" | an OTHER_PARTIES id, how)
ACTIONS = (
    ("Ansöka om boendestöd.", "municipality", "Samordnaren och klienten fyller i ansökan tillsammans."),
    ("Boka läkarbesök för medicinuppföljning.", "region", "Mottagningen kallar inom fyra veckor."),
    ("Följa upp läkemedelsbehandlingen.", "region", "Sjuksköterskan ringer varannan vecka."),
    ("Ta kontakt med Arbetsförmedlingen om arbetsträning.", "arbetsformedlingen", "Gemensamt möte."),
    ("Utreda rätten till sjukersättning.", "forsakringskassan", "Handläggaren begär in läkarintyg."),
    ("Göra en hushållsbudget.", "coordinator", "Två träffar med genomgång av inkomster och utgifter."),
    ("Promenera tre gånger i veckan.", "client", "Klienten för dagbok och tar med den till mötet."),
    ("Besöka öppenvårdens stödgrupp.", "municipality", "Boendestödjaren följer med första gången."),
    ("Hälsokontroll på vårdcentralen.", "primary", "Klienten bokar själv, samordnaren påminner."),
    ("Planera helgaktiviteter med familjen.", "relative", "Närstående ringer och bestämmer tid."),
    ("Öva på problemlösning i sex steg.", "coordinator", "Hemuppgift mellan träffarna."),
    ("Hålla kontakt med frivården enligt planen.", "kriminalvarden-frivard", "Besök varannan vecka."),
)
WARNING_SIGNS = (
    ("somn", "Sover dåligt flera nätter i rad"),
    ("isolering", "Drar sig undan och svarar inte i telefon"),
    ("roster", "Hör röster oftare än vanligt"),
    ("misstanksamhet", "Blir misstänksam mot grannar"),
    ("irritation", "Blir lättirriterad och arg"),
    ("alkohol", "Dricker mer alkohol"),
    ("aptit", "Slutar äta ordentligt"),
    ("hygien", "Slutar sköta sin hygien"),
    ("medicin", "Slutar ta sin medicin"),
    ("oro", "Känner stark oro och ångest"),
)
CLIENT_ACTIONS = (
    "Ringer min samordnare.", "Tar extra medicin enligt ordination.", "Går en promenad och andas lugnt.",
    "Ringer min syster.", "Undviker alkohol.", "Lägger mig i tid och stänger av telefonen.",
)  # fmt: skip
WANTS = (
    "Vill ha ett eget boende.", "Vill komma tillbaka till arbete eller studier.",
    "Vill ha bättre kontakt med sina barn.", "Vill sluta dricka.", "Vill få ordning på ekonomin.",
    "Vill ha något att göra på dagarna.", "Vill må bättre och sova bättre.",
)  # fmt: skip
OBSTACLES = (
    "Oro i sociala situationer.", "Sömnsvårigheter.", "Skulder och betalningsanmärkningar.",
    "Återkommande psykoser.", "Alkoholberoende.", "Ensamhet och brist på nätverk.",
    "Svårt att passa tider.", "Tidigare dåliga erfarenheter av vården.",
)  # fmt: skip
RELATIONS = ("mamma", "pappa", "syster", "bror", "sambo", "dotter", "son", "vän", "moster")
OUTCOMES = (
    "Samordnaren och mottagningen tog kontakt samma dag; läget stabiliserat.",
    "Extra besök hos läkaren, medicinen justerad.",
    "Kort inläggning i frivillig form, åter hemma efter en vecka.",
    "Närstående och boendestödjaren ökade kontakten under två veckor.",
    "Klienten följde sin plan och mår bättre.",
)
UNASSIGN_REASONS = ("Slutat sin anställning", "Föräldraledig", "Ny tjänst inom förvaltningen", "Sjukskriven")
CLOSING_REASONS = (
    (ClosingReason.GOALS_ACHIEVED, 0.50),
    (ClosingReason.CLIENT_MOVED, 0.14),
    (ClosingReason.TRANSFERRED, 0.10),
    (ClosingReason.CLIENT_DECLINED, 0.12),
    (ClosingReason.CLIENT_DECEASED, 0.03),
    (ClosingReason.OTHER, 0.11),
)
CLOSING_COMMENTS = {
    ClosingReason.GOALS_ACHIEVED: "Målen är nådda; klienten klarar sig med ordinarie insatser.",
    ClosingReason.CLIENT_MOVED: "Klienten har flyttat till en annan kommun.",
    ClosingReason.TRANSFERRED: "Överlämnad till ordinarie psykiatrisk öppenvård.",
    ClosingReason.CLIENT_DECLINED: "Klienten vill inte längre ha vård- och stödsamordning.",
    ClosingReason.CLIENT_DECEASED: "Klienten har avlidit.",
    ClosingReason.OTHER: "Avslutad efter gemensam bedömning.",
}

# Lifecycle rates (per case unless said otherwise).
ONE_COORDINATOR = 0.12  # a case with a single coordinator (the other principal is a professional)
COVERS_RELATIVES = 0.7
CONSENT_FOR_A_YEAR = 0.3
DROP_OUT_IN_MAPPING = 0.04
PLANNED_CLOSING = 0.28
WITHDRAWAL = 0.13
COORDINATOR_CHANGE = 0.12
ACTION_COMPLETED = 0.86  # per action
LATE_FOLLOW_UP = 0.22  # per follow-up
CLIENT_CONFIRMS_SIP = 0.6  # per SIP: the client confirms it in their own name (e-ID)
# Per follow-up meeting of a case with two coordinators: one of them is away and the meeting
# goes on, a recorded deviation from the method (ADR 0017).
COORDINATOR_AWAY = 0.1
AWAY_REASONS = (
    "Samordnaren sjuk; mötet hölls ändå för att inte skjuta upp planen.",
    "Samordnaren på annat akut uppdrag; brukaren ville inte flytta mötet.",
    "Samordnaren på semester; kollegan informeras efter mötet.",
)
WARNING_PER_PERIOD = 0.3
WARNING_RESOLVED = 0.9
PROFESSIONAL_CHANGE_PER_PERIOD = 0.07
PLAN_REVISED_PER_FOLLOW_UP = 0.3


# --------------------------------------------------------------------------------- world
@dataclass(eq=False)
class _Person:
    """A coordinator of an organisation's pool."""

    user_id: str
    name: str
    organisation: OrganisationRef
    phone: str
    capacity: int
    load: int = 0
    actor: Actor = field(init=False)
    coordinator: Coordinator = field(init=False)
    participant: Participant = field(init=False)

    def __post_init__(self) -> None:
        org = self.organisation
        self.actor = Actor(
            self.user_id, org.id, org.name, ActorPrincipal(org.principal.value), frozenset({"coordinator"})
        )
        self.coordinator = Coordinator(
            user_id=self.user_id,
            name=self.name,
            organisation=org,
            contact=ContactDetails(email=f"{self.user_id}@example.org", phone=self.phone),
        )
        self.participant = Participant(
            kind=MemberKind.COORDINATOR, name=self.name, organisation_id=org.id, user_id=self.user_id
        )


class _World:
    """What cases share: the municipalities, the organisations and their coordinator pools."""

    def __init__(self, rng: random.Random, policy: cmd.CasePolicy) -> None:
        self.rng = rng
        self.policy = policy
        places = municipalities()
        regions = [code for code in REGION_WEIGHTS if any(m.region_code == code for m in places)]
        self.places = {code: [m for m in places if m.region_code == code] for code in regions}
        self.region_weights = [REGION_WEIGHTS[code] for code in regions]
        self.place_weights = {
            code: [CITY_WEIGHTS.get(m.code, 1) for m in self.places[code]] for code in regions
        }
        self.regions = regions
        self.pools: dict[str, list[_Person]] = {}
        self.user_ids: set[str] = set()

    def place(self, rng: random.Random) -> MunicipalityInfo:
        region = rng.choices(self.regions, self.region_weights)[0]
        return rng.choices(self.places[region], self.place_weights[region])[0]

    @staticmethod
    def region_unit(place: MunicipalityInfo) -> OrganisationRef:
        if place.region_code == "14" and place.association in VGR_UNITS:
            unit_id, name = VGR_UNITS[place.association]
        else:
            unit_id, name = OTHER_UNITS.get(
                place.region_code,
                (f"region-{place.region_code}-psykiatri", f"{place.region_name}, psykiatri"),
            )
        return OrganisationRef(id=unit_id, name=name, principal=Principal.REGION)

    @staticmethod
    def social_services(place: MunicipalityInfo) -> OrganisationRef:
        return OrganisationRef(
            id=f"kommun-{place.code}-socialtjanst",
            name=f"Socialtjänsten {place.name}",
            principal=Principal.MUNICIPALITY,
        )

    @staticmethod
    def primary_care(place: MunicipalityInfo) -> OrganisationRef:
        return OrganisationRef(
            id=f"vardcentral-{place.code}", name=f"Vårdcentralen {place.name}", principal=Principal.REGION
        )

    def coordinator(self, organisation: OrganisationRef, leaving: _Person | None = None) -> _Person:
        """A coordinator of the organisation with room for one more case (hired if none has)."""
        pool = self.pools.setdefault(organisation.id, [])
        # Fill the busiest coordinator that still has room: a new one is hired only when all are full.
        person: _Person | None = None
        for candidate in pool:
            has_room = candidate is not leaving and candidate.load < candidate.capacity
            if has_room and (person is None or candidate.load > person.load):
                person = candidate
        if person is None:
            person = self._hire(organisation)
            pool.append(person)
        person.load += 1
        return person

    def _hire(self, organisation: OrganisationRef) -> _Person:
        rng = self.rng
        first = rng.choice(FIRST_NAMES_F + FIRST_NAMES_M)
        last = rng.choice(LAST_NAMES)
        base = f"{first}.{last}".lower().translate(_ASCII)
        user_id, n = base, 1
        while user_id in self.user_ids:
            n += 1
            user_id = f"{base}{n}"
        self.user_ids.add(user_id)
        # Most carry 15–30 active cases; the method's guideline is 20–25, so a few exceed 25.
        capacity = round(rng.triangular(15, 31, 23))
        return _Person(user_id, f"{first} {last}", organisation, fictional_phone(rng), capacity)


def fictional_phone(rng: random.Random) -> str:
    """A mobile number from the series PTS reserves for fiction (070-174 06 05 – 070-174 06 99)."""
    return f"070-174 06 {rng.randint(5, 99):02d}"


def personal_identity_number(rng: random.Random, born: date, female: bool) -> str:
    """A well-formed personnummer: the date of birth, a birth number (odd for men) and the Luhn digit."""
    serial = rng.randint(0, 99) * 10 + rng.choice((0, 2, 4, 6, 8) if female else (1, 3, 5, 7, 9))
    nine = f"{born:%y%m%d}{serial:03d}"
    return f"{born:%Y%m%d}-{serial:03d}{luhn_check_digit(nine)}"


def _workday(day: date) -> date:
    weekday = day.weekday()
    return day + timedelta(days=7 - weekday) if weekday >= 5 else day


# ---------------------------------------------------------------------------------- steps
_Correction = TypeVar("_Correction", cmd.CorrectEntry, cmd.RetractEntry)


def _naming_last(case: Case, kind: str, command: _Correction) -> _Correction:
    """The command naming the case's latest entry of ``kind`` (its event's id, which the
    aggregate made)."""
    entries = [event_id for event_id, e in case.state.entries.items() if e.kind == kind]
    return command.model_copy(update={"corrects_event_id": entries[-1]})


def _assigning(command: cmd.AssignCoordinator) -> Callable[[Case], object]:
    return lambda case: case.assign_coordinator(command)


def _removing(member_id: uuid.UUID, command: cmd.RemoveMember) -> Callable[[Case], object]:
    return lambda case: case.remove_member(member_id, command)


@dataclass(slots=True)
class _Step:
    at: datetime  # UTC
    actor: Actor
    case_id: uuid.UUID
    command: cmd.OpenCase | Callable[[Case], object]
    correlation_id: str


@dataclass(slots=True)
class _Member:
    member_id: uuid.UUID
    kind: MemberKind
    name: str
    organisation: OrganisationRef | None = None
    user_id: str | None = None
    phone: str | None = None
    relation: str | None = None

    def participant(self) -> Participant:
        """A coordinator member takes part as the person (organisation, user id)."""
        organisation = self.organisation if self.kind is MemberKind.COORDINATOR else None
        return Participant(
            kind=self.kind,
            name=self.name,
            organisation_id=organisation.id if organisation is not None else None,
            user_id=self.user_id,
            member_id=self.member_id,
        )


@dataclass(slots=True)
class _Action:
    action_id: uuid.UUID
    what: str
    how: str
    responsible: uuid.UUID
    due_on: date
    goal_id: uuid.UUID
    completed: bool = False


# Agenda items of the working phase, in the order they run when due on the same day.
_COMPLETE, _TRIGGER, _RESOLVE, _MEMBER_CHANGE, _COORDINATOR_CHANGE, _WITHDRAW, _RECONSENT = range(7)
_FOLLOW_UP, _BEGIN_CLOSING, _CLOSE = range(7, 10)


class _CaseLife:
    """One case: its plan (drawn up front) and the coroutine that yields its steps."""

    def __init__(self, world: _World, rng: random.Random, start: date, end: date) -> None:
        self.world = world
        self.rng = rng
        self.case_id = self.new_id()
        opened = start + timedelta(days=rng.randrange((end - start).days + 1))
        # a weekend day: the Monday after, or the Friday before when that Monday is after the end
        self.opened_on = (
            _workday(opened) if _workday(opened) <= end else opened - timedelta(days=opened.weekday() - 4)
        )
        self.place = world.place(rng)
        self.region_unit = world.region_unit(self.place)
        self.social_services = world.social_services(self.place)
        female = rng.random() < 0.45
        self.client_first = rng.choice(FIRST_NAMES_F if female else FIRST_NAMES_M)
        self.client_name = f"{self.client_first} {rng.choice(LAST_NAMES)}"
        age = rng.randint(19, 66)
        born = self.opened_on - timedelta(days=age * 365 + rng.randrange(365))
        self.client = ClientRef(
            personal_identity_number=personal_identity_number(rng, born, female), name=self.client_name
        )
        # This case's clock: the day of its last step and the time of its next.
        self.day = self.opened_on
        self.now = datetime.combine(self.opened_on, clock_time(8, 0), STOCKHOLM)
        self.steps = 0
        self.new_day = True
        # State mirrored from the aggregate (what the rules look at).
        self.coordinators: list[_Person] = []
        self.consent_orgs: dict[str, OrganisationRef] = {}
        self.covers_relatives = False
        self.consent_valid_until: date | None = None
        self.consent_period: timedelta | None = None
        self.consent_withdrawn = False
        self.members: dict[uuid.UUID, _Member] = {}
        self.client_member: _Member | None = None
        self.long_term: uuid.UUID | None = None
        self.life_area = rng.choice(list(LIFE_AREAS))
        self.sub_goals: dict[uuid.UUID, str] = {}  # active sub-goals: id -> description
        self.used_sub_goals: set[str] = set()
        self.network: list[NetworkPerson] = []
        self.relatives: list[tuple[str, str]] = []  # (name, relation) from the network map
        self.signs: list[tuple[str, str]] = []
        self.plan_version = 0
        self.sip_version = 0
        self.actions: dict[uuid.UUID, _Action] = {}
        self.open_warnings: set[uuid.UUID] = set()
        self.rating_base = rng.randint(2, 5)
        self.opener: _Person | None = None
        self.closed = False
        self.closing = False
        self.follow_up_missed = False
        # The agenda of the working phase: (day, kind, sequence, data).
        self.agenda: list[tuple[date, int, int, Any]] = []
        self.agenda_sequence = 0

    # ------------------------------------------------------------------------- helpers
    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def on(self, day: date) -> date:
        """Move this case's clock to ``day`` (never back; weekends to Monday); the day it is.

        The first step of a day starts in office hours; each further step is a few minutes later.
        """
        day = _workday(max(day, self.day))
        if day != self.day or not self.steps:
            minutes = self.rng.randrange(0, 8 * 60, 5)  # 08:00-15:55
            self.now = datetime.combine(day, clock_time(8, 0), STOCKHOLM) + timedelta(minutes=minutes)
            self.new_day = True
        self.day = day
        return day

    def step(self, command: cmd.OpenCase | Callable[[Case], object], actor: Actor | None = None) -> _Step:
        if self.new_day:
            self.new_day = False
        else:
            self.now += timedelta(minutes=self.rng.randint(2, 25))
        self.steps += 1
        return _Step(
            at=self.now.astimezone(UTC),
            actor=actor or self.rng.choice(self.coordinators).actor,
            case_id=self.case_id,
            command=command,
            correlation_id=f"gen-{self.rng.getrandbits(64):016x}",
        )

    def schedule(self, day: date, kind: int, data: Any = None) -> None:
        heapq.heappush(self.agenda, (day, kind, self.agenda_sequence, data))
        self.agenda_sequence += 1

    def consent_in_force(self, day: date) -> bool:
        return (
            not self.consent_withdrawn
            and bool(self.consent_orgs)
            and (self.consent_valid_until is None or self.consent_valid_until >= day)
        )

    def client_confirms(self, day: date) -> Iterator[_Step]:
        """The client confirms most SIPs in their own name, signed in with their e-ID. Drawn
        from the case id, not ``self.rng``, so that the rest of the history stays as it was."""
        if random.Random(self.case_id.int + self.sip_version).random() >= CLIENT_CONFIRMS_SIP:
            return
        self.now += timedelta(minutes=1)
        self.steps += 1
        client = Actor(
            self.client.personal_identity_number, "", "", ActorPrincipal.CLIENT, frozenset({"client"})
        )
        command = cmd.ConfirmSip(sip_version=self.sip_version, confirmed_on=day)
        yield _Step(
            at=self.now.astimezone(UTC),
            actor=client,
            case_id=self.case_id,
            command=lambda c: c.confirm_sip(command),
            correlation_id=f"gen-client-{self.case_id.hex[:12]}-{self.sip_version}",
        )

    def coordinator_away(self) -> tuple[_Person | None, str | None]:
        """Whether a coordinator is away from this follow-up meeting, and why. Drawn from the case
        id, not ``self.rng``, so that the rest of the history stays as it was."""
        if len(self.coordinators) < 2:
            return None, None
        draw = random.Random(f"coordinator-away-{self.case_id}-{self.sip_version}")
        if draw.random() >= COORDINATOR_AWAY:
            return None, None
        return draw.choice(self.coordinators), draw.choice(AWAY_REASONS)

    def client_participant(self) -> Participant:
        member_id = self.client_member.member_id if self.client_member else None
        return Participant(kind=MemberKind.CLIENT, name=self.client_name, member_id=member_id)

    def everyone(self, others: Sequence[Participant] = ()) -> list[Participant]:
        """The client, every assigned coordinator, and ``others``."""
        return [self.client_participant(), *(p.participant for p in self.coordinators), *others]

    def sample(self, items: Sequence[Any], low: int, high: int) -> list[Any]:
        return self.rng.sample(list(items), min(len(items), self.rng.randint(low, high)))

    def change_rating(self) -> ChangeRating:
        rng = self.rng
        progress = min(4, self.sip_version // 2)
        base = self.rating_base + progress

        def score() -> int:
            return max(0, min(10, base + rng.randint(-2, 2)))

        return ChangeRating(individually=score(), interpersonally=score(), socially=score(), overall=score())

    # --------------------------------------------------------------------------- the life
    def run(self) -> Iterator[_Step]:
        rng = self.rng
        yield from self.open_case()
        # Consent at (or just before) the first meeting.
        yield from self.give_consent(self.day + timedelta(days=rng.randint(0, 14)))
        yield from self.mapping()
        if self.closed:
            return
        yield from self.planning()
        yield from self.working()

    def open_case(self) -> Iterator[_Step]:
        rng, world = self.rng, self.world
        self.on(self.opened_on)
        shape = rng.random()
        if shape < ONE_COORDINATOR / 2:
            orgs = [self.region_unit]
        elif shape < ONE_COORDINATOR:
            orgs = [self.social_services]
        else:
            orgs = [self.region_unit, self.social_services]
            rng.shuffle(orgs)  # who opens: the region or the municipality
        people = [world.coordinator(org) for org in orgs]
        opener = self.opener = people[0]
        command = cmd.OpenCase(
            case_id=self.case_id,
            client=self.client,
            municipality=Municipality(code=self.place.code, name=self.place.name),
            region=Region(code=self.place.region_code, name=self.place.region_name),
            opened_on=self.day,
        )
        yield self.step(command, opener.actor)
        for offset, person in enumerate(people):
            day = self.on(self.day + timedelta(days=rng.randint(0, 5) if offset else 0))
            assign = cmd.AssignCoordinator(coordinator=person.coordinator, assigned_on=day)
            yield self.step(_assigning(assign), opener.actor)
            self.coordinators.append(person)

    def give_consent(self, day: date) -> Iterator[_Step]:
        rng = self.rng
        day = self.on(day)
        if not self.consent_orgs:  # the first consent: the parties of the case
            orgs = {self.region_unit.id: self.region_unit, self.social_services.id: self.social_services}
            for party_id, name, principal, probability, _ in OTHER_PARTIES:
                if rng.random() < probability:
                    orgs[party_id] = OrganisationRef(id=party_id, name=name, principal=principal)
            if rng.random() < PRIMARY_CARE_PROBABILITY:
                primary = self.world.primary_care(self.place)
                orgs[primary.id] = primary
            for person in self.coordinators:
                orgs.setdefault(person.organisation.id, person.organisation)
            self.consent_orgs = orgs
            self.covers_relatives = rng.random() < COVERS_RELATIVES
        valid_until = day + timedelta(days=365) if rng.random() < CONSENT_FOR_A_YEAR else None
        command = cmd.GiveConsent(
            organisations=list(self.consent_orgs.values()),
            covers_relatives=self.covers_relatives,
            signed_on=day,
            valid_until=valid_until,
        )
        yield self.step(lambda c: c.give_consent(command))
        self.consent_withdrawn = False
        self.consent_valid_until = valid_until
        self.consent_period = None if valid_until is None else valid_until - day

    def at(self, day: date) -> Generator[_Step, None, date]:
        """Move to ``day`` for a step that needs consent: a consent that ran out is signed anew first."""
        day = _workday(max(day, self.day))
        if not self.consent_withdrawn and not self.consent_in_force(day):
            yield from self.give_consent(day)
        return self.on(day)

    def worksheet(self, day: date, sheet: Worksheet, **data: Any) -> Iterator[_Step]:
        rng = self.rng
        day = yield from self.at(day)
        if sheet is Worksheet.CHANGE_RATING:
            participants = [self.client_participant()]  # made by the client alone
        elif sheet in (Worksheet.INTERVIEW, Worksheet.NETWORK_MAP) or rng.random() < 0.5:
            participants = self.everyone()
        else:
            participants = [self.client_participant(), rng.choice(self.coordinators).participant]
        if sheet is Worksheet.CHANGE_RATING:
            data["change_rating"] = self.change_rating()
        command = cmd.CompleteWorksheet(
            worksheet=sheet,
            completed_on=day,
            participants=participants,
            summary=f"Gick igenom arbetsbladet {sheet.value.replace('_', ' ')} med {self.client_first}.",
            **data,
        )
        yield self.step(lambda c: c.complete_worksheet(command))
        if sheet is Worksheet.CHANGE_RATING and rng.random() < 0.05:
            # The scores were typed wrongly; corrected from the client's paper form (ADR 0018).
            value = CorrectedWorksheet(
                kind="worksheet",
                completed_on=day,
                participants=participants,
                summary=command.summary,
                change_rating=self.change_rating(),
            )
            correction = cmd.CorrectEntry(
                corrects_event_id=uuid.UUID(int=0),
                reason="Skattningen fördes in fel; rättad efter pappersblanketten.",
                corrected_on=day,
                value=value,
            )
            yield self.step(lambda c: c.correct_entry(_naming_last(c, "worksheet", correction)))

    def mapping(self) -> Iterator[_Step]:
        """The worksheets over 2–4 months, then the mapping summary (which starts planning)."""
        rng = self.rng
        start = self.day
        length = rng.randint(56, 120)
        relatives = [
            (f"{rng.choice(FIRST_NAMES_F + FIRST_NAMES_M)} {rng.choice(LAST_NAMES)}", relation)
            for relation in rng.sample(RELATIONS, rng.randint(1, 3))
        ]
        self.relatives = relatives
        self.network = [
            *(
                NetworkPerson(
                    name=name, relation=relation, kind=MemberKind.RELATIVE, is_resource=rng.random() < 0.7
                )
                for name, relation in relatives
            ),
            NetworkPerson(
                name=f"{rng.choice(FIRST_NAMES_F)} {rng.choice(LAST_NAMES)}",
                relation="boendestödjare",
                kind=MemberKind.PROFESSIONAL,
                organisation=self.social_services.name,
                is_resource=True,
            ),
        ]
        self.signs = self.sample(WARNING_SIGNS, 3, 5)
        sheets: list[tuple[Worksheet, dict[str, Any]]] = [
            (Worksheet.CONTACT_DETAILS, {}),
            (Worksheet.CHANGE_RATING, {}),  # within a month of the start
            (Worksheet.ORDINARY_DAY, {}),
            (Worksheet.INTERVIEW, {}),
            (Worksheet.EVERYDAY_FUNCTIONING, {}),
            (Worksheet.NETWORK_MAP, {"network": self.network}),
            (Worksheet.QLS_100, {"qls_areas": self.sample(QLS_AREAS, 2, 5)}),
        ]
        if rng.random() < 0.7:
            sheets.append((Worksheet.LIFESTYLE_AND_HEALTH, {}))
        if self.covers_relatives and rng.random() < 0.45:
            sheets.append((Worksheet.RELATIVE_INTERVIEW, {}))
            if rng.random() < 0.5:
                sheets.append((Worksheet.RELATIVE_RATING, {}))
        sheets.append((Worksheet.EARLY_WARNING_SIGNS, {"early_warning_signs": [d for _, d in self.signs]}))
        dropout = rng.randrange(len(sheets)) if rng.random() < DROP_OUT_IN_MAPPING else None
        for index, (sheet, data) in enumerate(sheets):
            if index == dropout:
                yield from self.close(
                    start + timedelta(days=length * index // len(sheets)), ClosingReason.CLIENT_DECLINED
                )
                return
            offset = length * index // len(sheets) + rng.randint(0, 3)
            if sheet is Worksheet.CHANGE_RATING:
                offset = min(offset, 25)
            yield from self.worksheet(start + timedelta(days=offset), sheet, **data)
        day = yield from self.at(start + timedelta(days=length))
        summary = cmd.SummariseMapping(
            summarised_on=day,
            participants=self.everyone(),
            wants_to_change=" ".join(self.sample(WANTS, 1, 3)),
            obstacles=" ".join(self.sample(OBSTACLES, 1, 3)),
            summary=f"Kartläggningen är klar; fokus på {self.life_area.lower()}.",
        )
        yield self.step(lambda c: c.summarise_mapping(summary))

    def planning(self) -> Iterator[_Step]:
        """Goals, the resource group and the early warning plan; then the first SIP."""
        rng = self.rng
        summarised = self.day
        day = yield from self.at(self.day + timedelta(days=rng.randint(3, 14)))
        description, _ = LIFE_AREAS[self.life_area]
        self.long_term = self.new_id()
        goal = cmd.SetGoal(
            goal_id=self.long_term,
            kind=GoalKind.LONG_TERM,
            description=description,
            life_area=self.life_area,
            target_date=day + timedelta(days=rng.randint(300, 720)),
            set_on=day,
        )
        yield self.step(lambda c: c.set_goal(goal))
        # Regular work starts: the coordinators meet the client weekly (the orientation period).
        period = cmd.SetContactPeriod(
            period=ContactPeriod.ORIENTATION, applies_from=day, reason="Behandlingen har kommit igång"
        )
        yield self.step(lambda c: c.set_contact_period(period))
        for _ in range(rng.randint(1, 3)):
            yield from self.set_sub_goal(day)
        # The resource group, as the client chooses it.
        day = self.on(self.day + timedelta(days=rng.randint(0, 7)))
        self.client_member = _Member(self.new_id(), MemberKind.CLIENT, self.client_name)
        yield from self.add_member(day, self.client_member)
        for person in self.coordinators:
            yield from self.add_coordinator_member(day, person)
        if self.covers_relatives:
            for name, relation in self.sample(self.relatives, 0, 2):
                relative = _Member(
                    self.new_id(), MemberKind.RELATIVE, name, phone=fictional_phone(rng), relation=relation
                )
                yield from self.add_member(day, relative)
        for org, role in self.professionals_wanted():
            yield from self.add_professional(day, org, role)
        yield from self.update_plan(self.day + timedelta(days=rng.randint(0, 7)))
        # The first resource group meeting decides the first SIP.
        meeting_day = summarised + timedelta(days=rng.randint(21, 45))
        yield from self.follow_up(meeting_day)

    def professionals_wanted(self) -> list[tuple[OrganisationRef, str]]:
        """Professionals in the group: the principal without a coordinator first, then others."""
        rng = self.rng
        coordinated = {p.organisation.principal for p in self.coordinators}
        wanted: list[tuple[OrganisationRef, str]] = []
        if Principal.REGION not in coordinated:
            wanted.append((self.region_unit, rng.choice(("sjuksköterska", "kurator", "psykiatriker"))))
        if Principal.MUNICIPALITY not in coordinated:
            wanted.append((self.social_services, "boendestödjare"))
        if rng.random() < 0.6:
            wanted.append((self.region_unit, rng.choice(("psykiatriker", "sjuksköterska"))))
        if rng.random() < 0.5:
            wanted.append((self.social_services, rng.choice(("boendestödjare", "biståndshandläggare"))))
        for party_id, _, _, _, role in OTHER_PARTIES:
            if party_id in self.consent_orgs and rng.random() < 0.7:
                wanted.append((self.consent_orgs[party_id], role))
        for org in self.consent_orgs.values():
            if org.id.startswith("vardcentral-") and rng.random() < 0.5:
                wanted.append((org, "distriktsläkare"))
        return wanted

    def set_sub_goal(self, day: date) -> Iterator[_Step]:
        rng = self.rng
        _, options = LIFE_AREAS[self.life_area]
        fresh = [o for o in options if o not in self.used_sub_goals]
        other_area = rng.choice(list(LIFE_AREAS))
        if not fresh:
            fresh = [o for o in LIFE_AREAS[other_area][1] if o not in self.used_sub_goals]
        if not fresh:
            return
        description = rng.choice(fresh)
        self.used_sub_goals.add(description)
        day = yield from self.at(day)
        goal_id = self.new_id()
        goal = cmd.SetGoal(
            goal_id=goal_id,
            kind=GoalKind.SUB_GOAL,
            description=description,
            parent_goal_id=self.long_term,
            target_date=day + timedelta(days=rng.randint(60, 200)),
            set_on=day,
        )
        yield self.step(lambda c: c.set_goal(goal))
        self.sub_goals[goal_id] = description

    def add_member(self, day: date, member: _Member, role: str | None = None) -> Iterator[_Step]:
        day = yield from self.at(day)
        command = cmd.AddMember(
            member_id=member.member_id,
            kind=member.kind,
            name=member.name,
            organisation=member.organisation,
            role=role or member.relation,
            user_id=member.user_id,
            contact=ContactDetails(phone=member.phone) if member.phone else ContactDetails(),
            added_on=day,
        )
        yield self.step(lambda c: c.add_member(command))
        self.members[member.member_id] = member

    def add_coordinator_member(self, day: date, person: _Person) -> Iterator[_Step]:
        member = _Member(
            self.new_id(),
            MemberKind.COORDINATOR,
            person.name,
            organisation=person.organisation,
            user_id=person.user_id,
            phone=person.phone,
        )
        yield from self.add_member(day, member, "vård- och stödsamordnare")

    def add_professional(self, day: date, org: OrganisationRef, role: str) -> Iterator[_Step]:
        rng = self.rng
        name = f"{rng.choice(FIRST_NAMES_F + FIRST_NAMES_M)} {rng.choice(LAST_NAMES)}"
        member = _Member(
            self.new_id(),
            MemberKind.PROFESSIONAL,
            name,
            organisation=org,
            phone=fictional_phone(rng),
            relation=role,
        )
        yield from self.add_member(day, member, role)

    def update_plan(self, day: date) -> Iterator[_Step]:
        """The early warning plan (*tidiga tecken med åtgärder*) as it now stands."""
        rng = self.rng
        day = yield from self.at(day)
        if self.plan_version and rng.random() < 0.5:  # a revision adds a newly recognised sign
            new = [s for s in WARNING_SIGNS if s not in self.signs]
            if new:
                self.signs.append(rng.choice(new))
        contacts = [
            PlanContact(
                name=m.name, relation=m.relation or m.kind.value, phone=m.phone, member_id=m.member_id
            )
            for m in self.members.values()
            if m.phone and m.kind is not MemberKind.CLIENT
        ][:5]
        command = cmd.UpdateEarlyWarningPlan(
            signs=[WarningSign(sign_id=sign_id, description=text) for sign_id, text in self.signs],
            client_actions=self.sample(CLIENT_ACTIONS, 1, 3),
            others_actions=[
                OthersAction(who=p.name, what="Ringer klienten samma dag och informerar mottagningen.")
                for p in self.coordinators
            ],
            contacts=contacts,
            updated_on=day,
        )
        yield self.step(lambda c: c.update_early_warning_plan(command))
        self.plan_version += 1

    def correct_meeting(self, day: date, meeting: cmd.HoldResourceGroupMeeting) -> Iterator[_Step]:
        """Now and then a meeting's notes are corrected, or a meeting recorded twice by mistake
        has its second record retracted (ADR 0018): the case's meetings stay as they were."""
        roll = self.rng.random()
        if roll < 0.04:
            correction = cmd.CorrectEntry(
                corrects_event_id=uuid.UUID(int=0),  # the meeting's event: the aggregate made its id
                reason="Anteckningarna skrevs in ofullständigt.",
                corrected_on=day,
                value=CorrectedMeetingHeld(
                    kind="resource_group_meeting",
                    held_on=meeting.held_on,
                    participants=meeting.participants,
                    notes=f"{meeting.notes} Nästa möte bokades vid mötet.",
                ),
            )
            yield self.step(lambda c: c.correct_entry(_naming_last(c, "resource_group_meeting", correction)))
        elif roll < 0.07:
            twice = meeting.model_copy(update={"meeting_id": self.new_id()})
            yield self.step(lambda c: c.hold_resource_group_meeting(twice))
            retraction = cmd.RetractEntry(
                corrects_event_id=uuid.UUID(int=0), reason="Mötet registrerades två gånger.", retracted_on=day
            )
            yield self.step(lambda c: c.retract_entry(_naming_last(c, "resource_group_meeting", retraction)))

    # ----------------------------------------------------------------------- working phase
    def follow_up(self, day: date) -> Iterator[_Step]:
        """Change rating, resource group meeting, goals revised and a new SIP (renewing consent)."""
        rng = self.rng
        yield from self.contact(day - timedelta(days=rng.randint(1, 6)))
        yield from self.worksheet(day - timedelta(days=rng.randint(0, 5)), Worksheet.CHANGE_RATING)
        day = yield from self.at(day)
        present = [
            m.participant()
            for m in self.members.values()
            if m.kind in (MemberKind.RELATIVE, MemberKind.PROFESSIONAL) and rng.random() < 0.6
        ]
        participants = self.everyone(present)
        away, reason = self.coordinator_away()
        if away is not None:
            participants = [p for p in participants if p != away.participant]
        meeting = cmd.HoldResourceGroupMeeting(
            meeting_id=self.new_id(),
            held_on=day,
            participants=participants,
            notes=f"Resursgruppsmöte {self.sip_version + 1}: uppföljning av planen och tidiga tecken.",
            deviation_reason=reason,
        )
        yield self.step(lambda c: c.hold_resource_group_meeting(meeting))
        yield from self.correct_meeting(day, meeting)
        if self.sip_version:
            for goal_id in list(self.sub_goals):
                roll = rng.random()
                if roll < 0.25:
                    yield from self.goal_status(day, goal_id, GoalStatus.ACHIEVED, "Delmålet är uppnått.")
                elif roll < 0.29:
                    yield from self.goal_status(
                        day, goal_id, GoalStatus.ABANDONED, "Klienten valde bort delmålet."
                    )
            while len(self.sub_goals) < 1 or (len(self.sub_goals) < 3 and rng.random() < 0.3):
                before = len(self.sub_goals)
                yield from self.set_sub_goal(day)
                if len(self.sub_goals) == before:
                    break
            if rng.random() < PLAN_REVISED_PER_FOLLOW_UP:
                yield from self.update_plan(day)
        yield from self.decide_sip(day, participants)

    def contact(self, day: date) -> Iterator[_Step]:
        """A contact for the logbook before a follow-up: often outreach the evening before
        (any day of the week), else a call or a visit, recorded in the morning."""
        rng = self.rng
        day = self.on(day)
        if rng.random() < 0.4:
            mode, began = ContactMode.OUTREACH, self.now - timedelta(hours=rng.randint(10, 14))
        else:
            mode, began = rng.choice((ContactMode.PHONE, ContactMode.VISIT)), self.now - timedelta(hours=1)
        command = cmd.RecordClientContact(
            contact_id=self.new_id(),
            mode=mode,
            occurred_at=max(began, datetime.combine(self.opened_on, clock_time(12, 0), STOCKHOLM)),
            duration_minutes=rng.choice((15, 30, 45, 60, 90)),
            note=f"Pratade med {self.client_first} inför uppföljningen.",
        )
        yield self.step(lambda c: c.record_client_contact(command))

    def goal_status(self, day: date, goal_id: uuid.UUID, status: GoalStatus, comment: str) -> Iterator[_Step]:
        day = yield from self.at(day)
        command = cmd.ChangeGoalStatus(status=status, changed_on=day, comment=comment)
        yield self.step(lambda c: c.change_goal_status(goal_id, command))
        self.sub_goals.pop(goal_id, None)

    def responsible_for(self, hint: str) -> _Member:
        """The member to do an action: one matching the hint if the group has one, else a coordinator."""
        members = list(self.members.values())
        if hint == "client":
            matching = [m for m in members if m.kind is MemberKind.CLIENT]
        elif hint == "relative":
            matching = [m for m in members if m.kind is MemberKind.RELATIVE]
        elif hint in ("region", "municipality"):
            matching = [
                m
                for m in members
                if m.kind is MemberKind.PROFESSIONAL and m.organisation and m.organisation.principal == hint
            ]
        elif hint == "primary":
            matching = [m for m in members if m.organisation and m.organisation.id.startswith("vardcentral-")]
        elif hint == "coordinator":
            matching = []
        else:
            matching = [m for m in members if m.organisation and m.organisation.id == hint]
        if not matching:
            assigned = {p.user_id for p in self.coordinators}
            matching = [m for m in members if m.kind is MemberKind.COORDINATOR and m.user_id in assigned]
        return self.rng.choice(matching)

    def decide_sip(self, day: date, participants: list[Participant]) -> Iterator[_Step]:
        rng = self.rng
        assert self.long_term is not None
        day = yield from self.at(day)
        goal_ids = [self.long_term, *self.sub_goals]
        latest = add_months(day, self.world.policy.follow_up_max_months)
        next_follow_up = min(day + timedelta(days=rng.randint(75, 95)), latest)
        actions: list[_Action] = []
        # Actions not done are carried over (as new actions of the new version).
        for old in self.actions.values():
            if not old.completed and rng.random() < 0.7:
                goal = old.goal_id if old.goal_id in goal_ids else self.long_term
                responsible = (
                    old.responsible
                    if old.responsible in self.members
                    else self.responsible_for("coordinator").member_id
                )
                due = day + timedelta(days=rng.randint(14, (next_follow_up - day).days))
                actions.append(_Action(self.new_id(), old.what, old.how, responsible, due, goal))
        for what, hint, how in self.sample(ACTIONS, 2, 4):
            if any(a.what == what for a in actions):
                continue
            due = day + timedelta(days=rng.randint(14, (next_follow_up - day).days))
            goal = rng.choice(goal_ids)
            actions.append(_Action(self.new_id(), what, how, self.responsible_for(hint).member_id, due, goal))
        # The municipality usually holds the overall responsibility (a choice without the rng,
        # so that generated histories stay as they were).
        principals = sorted(
            (p.organisation for p in self.coordinators),
            key=lambda o: o.principal is not Principal.MUNICIPALITY,
        )
        command = cmd.DecideSip(
            decided_on=day,
            overall_responsibility=principals[0],
            goal_ids=goal_ids,
            actions=[
                cmd.ProposedAction(
                    action_id=a.action_id,
                    what=a.what,
                    responsible_member_id=a.responsible,
                    due_on=a.due_on,
                    how=a.how,
                    goal_id=a.goal_id,
                )
                for a in actions
            ],
            next_follow_up_on=next_follow_up,
            participants=participants,
            client_agreed=True,
        )
        yield self.step(lambda c: c.decide_sip(command))
        self.sip_version += 1
        yield from self.client_confirms(day)
        self.actions = {a.action_id: a for a in actions}
        if self.consent_valid_until is not None and self.consent_period is not None:
            self.consent_valid_until = max(self.consent_valid_until, day + self.consent_period)
        # What happens until the next follow-up meeting (some are late).
        if rng.random() < LATE_FOLLOW_UP:
            meeting = next_follow_up + timedelta(days=rng.randint(7, 50))
        else:
            meeting = next_follow_up + timedelta(days=rng.randint(-10, 2))
        meeting = max(meeting, day + timedelta(days=30))
        if not self.closing:
            self.schedule(meeting, _FOLLOW_UP)
        for action in actions:
            if rng.random() < ACTION_COMPLETED:
                done = action.due_on + timedelta(days=rng.randint(-12, 12))
                self.schedule(
                    max(done, day + timedelta(days=1)), _COMPLETE, (self.sip_version, action.action_id)
                )
        if rng.random() < WARNING_PER_PERIOD:
            self.schedule(day + timedelta(days=rng.randint(5, (meeting - day).days)), _TRIGGER)
        if rng.random() < PROFESSIONAL_CHANGE_PER_PERIOD:
            self.schedule(day + timedelta(days=rng.randint(5, (meeting - day).days)), _MEMBER_CHANGE)

    def working(self) -> Iterator[_Step]:
        """The working phase: the agenda's items in date order until the case closes."""
        rng = self.rng
        first_sip = self.day
        if rng.random() < WITHDRAWAL:
            self.schedule(first_sip + timedelta(days=rng.randint(20, 420)), _WITHDRAW)
        if rng.random() < COORDINATOR_CHANGE:
            self.schedule(first_sip + timedelta(days=rng.randint(60, 600)), _COORDINATOR_CHANGE)
        if rng.random() < PLANNED_CLOSING:
            months = rng.triangular(7, 30, 21)
            closing_day = self.opened_on + timedelta(days=round(months * 30.4))
            self.schedule(max(closing_day, first_sip + timedelta(days=30)), _BEGIN_CLOSING)
        while self.agenda and not self.closed:
            day, kind, _, data = heapq.heappop(self.agenda)
            yield from self.agenda_item(day, kind, data)

    def agenda_item(self, day: date, kind: int, data: Any) -> Iterator[_Step]:
        rng = self.rng
        if kind == _CLOSE:
            yield from self.close(day, data)
            return
        if kind == _RECONSENT:
            yield from self.give_consent(day)
            if self.follow_up_missed:
                self.follow_up_missed = False
                self.schedule(self.day + timedelta(days=rng.randint(7, 30)), _FOLLOW_UP)
            return
        if self.consent_withdrawn:  # nothing about the client until a new consent (or the closing)
            if kind == _FOLLOW_UP:
                self.follow_up_missed = True
            elif kind == _BEGIN_CLOSING:
                yield from self.close(day, ClosingReason.CLIENT_DECLINED)
            return
        if kind == _COMPLETE:
            sip_version, action_id = data
            action = self.actions.get(action_id)
            if sip_version == self.sip_version and action is not None and not action.completed:
                day = yield from self.at(day)
                complete = cmd.CompleteAction(
                    completed_on=day, comment=rng.choice((None, "Klart.", "Genomfört enligt plan."))
                )
                yield self.step(lambda c: c.complete_action(action_id, complete))
                action.completed = True
                if rng.random() < 0.03:  # recorded on the wrong action: retracted, left open
                    retraction = cmd.RetractEntry(
                        corrects_event_id=uuid.UUID(int=0),
                        reason="Registrerades på fel åtgärd.",
                        retracted_on=day,
                    )
                    yield self.step(lambda c: c.retract_entry(_naming_last(c, "sip_action", retraction)))
                    action.completed = False
        elif kind == _FOLLOW_UP:
            yield from self.follow_up(day)
        elif kind == _TRIGGER:
            yield from self.trigger_warning(day)
        elif kind == _RESOLVE:
            if data in self.open_warnings:
                day = yield from self.at(day)
                resolve = cmd.ResolveEarlyWarning(resolved_on=day, outcome=rng.choice(OUTCOMES))
                yield self.step(lambda c: c.resolve_early_warning(data, resolve))
                self.open_warnings.discard(data)
        elif kind == _MEMBER_CHANGE:
            yield from self.professional_change(day)
        elif kind == _COORDINATOR_CHANGE:
            yield from self.coordinator_change(day)
        elif kind == _WITHDRAW:
            yield from self.withdraw(day)
        elif kind == _BEGIN_CLOSING:
            yield from self.begin_closing(day)

    def trigger_warning(self, day: date) -> Iterator[_Step]:
        rng = self.rng
        day = yield from self.at(day)
        warning_id = self.new_id()
        if rng.random() < 0.1:
            sign_ids: list[str] = []
            other: str | None = "Har slutat gå till daglig verksamheten utan att säga till."
        else:
            sign_ids = [sign_id for sign_id, _ in self.sample(self.signs, 1, 2)]
            other = None
        command = cmd.TriggerEarlyWarning(
            warning_id=warning_id,
            sign_ids=sign_ids,
            other_sign=other,
            observed_on=day,
            description="Närstående hörde av sig till samordnaren; planen aktiverades.",
        )
        yield self.step(lambda c: c.trigger_early_warning(command))
        self.open_warnings.add(warning_id)
        if rng.random() < WARNING_RESOLVED:
            self.schedule(day + timedelta(days=rng.randint(1, 30)), _RESOLVE, warning_id)

    def professional_change(self, day: date) -> Iterator[_Step]:
        """A professional leaves the group; a colleague from the same organisation takes over."""
        leaving = [m for m in self.members.values() if m.kind is MemberKind.PROFESSIONAL]
        if not leaving:
            return
        member = self.rng.choice(leaving)
        day = yield from self.at(day)
        remove = cmd.RemoveMember(removed_on=day, reason="Ny handläggare")
        yield self.step(lambda c: c.remove_member(member.member_id, remove))
        del self.members[member.member_id]
        assert member.organisation is not None
        if member.organisation.id in self.consent_orgs:
            yield from self.add_professional(day, member.organisation, member.relation or "handläggare")

    def coordinator_change(self, day: date) -> Iterator[_Step]:
        """A coordinator leaves; a colleague from the same organisation is assigned and joins the group."""
        rng = self.rng
        day = yield from self.at(day)
        leaving = rng.choice(self.coordinators)
        reason = rng.choice(UNASSIGN_REASONS)
        unassign = cmd.UnassignCoordinator(unassigned_on=day, reason=reason)
        yield self.step(
            lambda c: c.unassign_coordinator(leaving.user_id, unassign, leaving.organisation.id),
            leaving.actor,
        )
        self.coordinators.remove(leaving)
        leaving.load -= 1
        successor = self.world.coordinator(leaving.organisation, leaving)
        # Recorded by someone whose organisation still writes to the case: the other coordinator,
        # or (when the leaving one was the only one) the opening organisation.
        assert self.opener is not None
        recorder = self.coordinators[0].actor if self.coordinators else self.opener.actor
        assign = cmd.AssignCoordinator(coordinator=successor.coordinator, assigned_on=day)
        yield self.step(lambda c: c.assign_coordinator(assign), recorder)
        self.coordinators.append(successor)
        old = next(
            (
                m
                for m in self.members.values()
                if m.kind is MemberKind.COORDINATOR and m.user_id == leaving.user_id
            ),
            None,
        )
        if old is not None:
            remove = cmd.RemoveMember(removed_on=day, reason=reason)
            yield self.step(lambda c: c.remove_member(old.member_id, remove))
            del self.members[old.member_id]
        yield from self.add_coordinator_member(day, successor)

    def withdraw(self, day: date) -> Iterator[_Step]:
        """The client withdraws consent: for relatives or another party (then they leave), or entirely."""
        rng = self.rng
        day = yield from self.at(day)
        others = [org_id for org_id, org in self.consent_orgs.items() if org.principal is Principal.OTHER]
        partial = rng.random() < 0.5 and (self.covers_relatives or others)
        if partial:
            if self.covers_relatives and (not others or rng.random() < 0.5):
                command = cmd.WithdrawConsent(
                    withdrawn_on=day,
                    entire=False,
                    relatives=True,
                    reason="Vill inte att familjen får information",
                )
                leaving = [m for m in self.members.values() if m.kind is MemberKind.RELATIVE]
                self.covers_relatives = False
            else:
                org_id = rng.choice(others)
                command = cmd.WithdrawConsent(
                    withdrawn_on=day,
                    entire=False,
                    organisation_ids=[org_id],
                    reason="Ärendet där är avslutat",
                )
                leaving = [m for m in self.members.values() if m.organisation and m.organisation.id == org_id]
                del self.consent_orgs[org_id]
            yield self.step(lambda c: c.withdraw_consent(command))
            for member in leaving:
                remove = cmd.RemoveMember(removed_on=day, reason="Samtycket återkallat")
                yield self.step(_removing(member.member_id, remove))
                del self.members[member.member_id]
            if self.plan_version:
                yield from self.update_plan(day)  # contacts without those who left
            return
        command = cmd.WithdrawConsent(withdrawn_on=day, entire=True, reason="Klienten vill ta en paus")
        yield self.step(lambda c: c.withdraw_consent(command))
        self.consent_withdrawn = True
        if rng.random() < 0.5:
            self.schedule(day + timedelta(days=rng.randint(7, 30)), _CLOSE, ClosingReason.CLIENT_DECLINED)
        else:
            self.schedule(day + timedelta(days=rng.randint(14, 60)), _RECONSENT)

    def begin_closing(self, day: date) -> Iterator[_Step]:
        """Towards the end: goals evaluated, follow-up phase, a last meeting, then the closing."""
        rng = self.rng
        reason = rng.choices([r for r, _ in CLOSING_REASONS], [w for _, w in CLOSING_REASONS])[0]
        self.closing = True
        if reason is not ClosingReason.GOALS_ACHIEVED:
            yield from self.close(day, reason)
            return
        day = yield from self.at(day)
        phase = cmd.ChangePhase(to_phase=Phase.FOLLOW_UP, changed_on=day, reason="Målen i stort sett nådda")
        yield self.step(lambda c: c.change_phase(phase))
        last = day + timedelta(days=rng.randint(14, 45))
        yield from self.worksheet(last, Worksheet.CHANGE_RATING)
        last = yield from self.at(last)
        meeting = cmd.HoldResourceGroupMeeting(
            meeting_id=self.new_id(),
            held_on=last,
            participants=self.everyone(),
            notes="Avslutande uppföljning.",
        )
        yield self.step(lambda c: c.hold_resource_group_meeting(meeting))
        goal_id = self.long_term
        assert goal_id is not None
        status = GoalStatus.ACHIEVED if rng.random() < 0.7 else GoalStatus.PARTIALLY_ACHIEVED
        evaluated = cmd.ChangeGoalStatus(
            status=status, changed_on=last, comment="Utvärderat vid sista mötet."
        )
        yield self.step(lambda c: c.change_goal_status(goal_id, evaluated))
        yield from self.close(last, reason)

    def close(self, day: date, reason: ClosingReason) -> Iterator[_Step]:
        day = self.on(day)
        command = cmd.CloseCase(closed_on=day, reason=reason, comment=CLOSING_COMMENTS[reason])
        yield self.step(lambda c: c.close(command))
        self.closed = True
        for person in self.coordinators:
            person.load -= 1
