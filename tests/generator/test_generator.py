"""The data generator: deterministic, valid under every rule, the whole lifecycle, plausible dates."""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from services.case.domain.commands import CasePolicy
from services.case.generator import (
    GenerationReport,
    GeneratorSettings,
    InvalidGeneratorSettings,
    generate,
    generation_store,
)
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.geography import (
    ASSOCIATIONS,
    UnknownMunicipality,
    association_of,
    municipalities,
    municipality,
)
from tests.support.stores import open_case_store
from vss_contracts.case_events import CASE_EVENTS

STOCKHOLM = ZoneInfo("Europe/Stockholm")
END = date(2025, 12, 31)  # a fixed end: the same data whenever the tests run
SETTINGS = GeneratorSettings(cases=40, seed=1, end=END)
VSS = str(Path(sys.executable).parent / "vss")


@dataclass(frozen=True)
class Logged:
    position: int
    case_id: UUID
    version: int
    type: str
    state: dict[str, Any]

    @property
    def name(self) -> str:
        return self.type.split(".")[3]

    @property
    def data(self) -> dict[str, Any]:
        return self.state["data"]  # type: ignore[no-any-return]

    @property
    def recorded_at(self) -> datetime:
        return datetime.fromisoformat(self.state["recorded_at"])


@dataclass(frozen=True)
class Generated:
    store: CaseEventStore
    report: GenerationReport
    log: list[Logged]

    def by_case(self) -> dict[UUID, list[Logged]]:
        cases: dict[UUID, list[Logged]] = defaultdict(list)
        for event in self.log:
            cases[event.case_id].append(event)
        return cases


def read_log(store: CaseEventStore) -> list[Logged]:
    log: list[Logged] = []
    after = 0
    while page := store.read_log(after, 1000):
        for n in page:
            case_id = n.originator_id if isinstance(n.originator_id, UUID) else UUID(str(n.originator_id))
            state = store.case_mapper.decode_state(n)
            log.append(Logged(n.id, case_id, n.originator_version, n.topic, state))
        after = page[-1].id
    return log


def run(directory: Path, settings: GeneratorSettings = SETTINGS, **kwargs: Any) -> Generated:
    url = f"sqlite:///{directory}/events.db"
    migrate(StoreConfig(url))
    store = generation_store(url, settings.cases)
    return Generated(store, generate(store, settings, **kwargs), read_log(store))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    result = run(tmp_path_factory.mktemp("generated"))
    yield result
    result.store.close()


def comparable(log: list[Logged]) -> list[tuple[Any, ...]]:
    """The log without what the aggregate draws itself (event and consent ids, hence the hashes,
    and the event id a correction names)."""
    rows = []
    for e in log:
        data = {k: v for k, v in e.data.items() if k not in ("consent_id", "corrects_event_id")}
        rows.append((e.position, str(e.case_id), e.version, e.type, e.state["recorded_at"], data))
    return rows


# ------------------------------------------------------------------------------ the generator
def test_the_same_seed_gives_the_same_events(generated: Generated, tmp_path: Path) -> None:
    again = run(tmp_path / "again")
    other = run(tmp_path / "other", GeneratorSettings(cases=40, seed=2, end=END))
    try:
        assert comparable(again.log) == comparable(generated.log)
        assert comparable(other.log) != comparable(generated.log)
    finally:
        again.store.close()
        other.store.close()


def test_the_report_counts_what_was_stored(generated: Generated) -> None:
    report = generated.report
    assert report.cases == 40 == len(generated.by_case())
    assert report.events == len(generated.log) == sum(report.event_types.values())
    assert report.last_position == generated.log[-1].position
    assert report.commands <= report.events
    assert report.closed == sum(1 for e in generated.log if e.name == "CaseClosed")
    assert report.events_per_second > 0


def test_every_case_hash_chain_verifies(generated: Generated) -> None:
    case_ids = generated.store.case_ids()
    assert len(case_ids) == 40
    assert [generated.store.verify(case_id) for case_id in case_ids] == [None] * 40


def test_the_lifecycle_covers_every_event_type(generated: Generated) -> None:
    assert {e.type for e in generated.log} == {event.TYPE for event in CASE_EVENTS}


def test_at_the_end_some_cases_are_closed_withdrawn_warned_and_overdue(generated: Generated) -> None:
    closed = withdrawn = open_warnings = overdue = 0
    for events in generated.by_case().values():
        names = [e.name for e in events]
        closed += "CaseClosed" in names
        withdrawn += "ConsentWithdrawn" in names
        if "CaseClosed" in names:
            continue
        warnings: set[str] = set()
        actions: dict[str, date] = {}
        for e in events:
            if e.name == "EarlyWarningTriggered":
                warnings.add(e.data["warning_id"])
            elif e.name == "EarlyWarningResolved":
                warnings.discard(e.data["warning_id"])
            elif e.name == "SipDecided":
                actions = {a["action_id"]: date.fromisoformat(a["due_on"]) for a in e.data["actions"]}
            elif e.name == "ActionCompleted":
                actions.pop(e.data["action_id"], None)
        open_warnings += len(warnings)
        overdue += sum(1 for due in actions.values() if due < END)
    assert 3 <= closed <= 25
    assert 1 <= withdrawn <= 8
    assert open_warnings >= 1
    assert overdue >= 1


def test_dates_are_plausible(generated: Generated) -> None:
    start = END - timedelta(days=SETTINGS.span_days)
    first = datetime.combine(start, time(0), STOCKHOLM)
    last = datetime.combine(END + timedelta(days=1), time(0), STOCKHOLM)
    times = [e.recorded_at for e in generated.log]
    assert times == sorted(times), "the log is chronological"
    assert first <= times[0]
    assert times[-1] < last
    for e in generated.log:
        local = e.recorded_at.astimezone(STOCKHOLM)
        assert local.weekday() < 5, e
        assert 8 <= local.hour < 22, e
        if e.name == "ClientContactRecorded":
            # A contact is recorded in office hours, after it happened: in the evening before, at times.
            occurred = datetime.fromisoformat(e.data["occurred_at"])
            assert e.recorded_at - timedelta(days=1) < occurred <= e.recorded_at, e
            continue
        # The fact's own date (opened_on, completed_on, applies_from …) is the day it was recorded.
        fact_dates = [
            v
            for k, v in e.data.items()
            if (k.endswith("_on") or k == "applies_from") and k not in ("next_follow_up_on",)
        ]
        assert fact_dates, e
        assert all(date.fromisoformat(d) == local.date() for d in fact_dates), e


def test_sips_come_roughly_every_three_months(generated: Generated) -> None:
    gaps = []
    for events in generated.by_case().values():
        decided = [date.fromisoformat(e.data["decided_on"]) for e in events if e.name == "SipDecided"]
        gaps += [(b - a).days for a, b in pairwise(decided)]
        for e in events:
            if e.name == "SipDecided":
                follow_up = date.fromisoformat(e.data["next_follow_up_on"])
                assert 0 < (follow_up - date.fromisoformat(e.data["decided_on"])).days <= 92
    assert len(gaps) > 50
    assert 75 <= statistics.median(gaps) <= 100
    assert min(gaps) >= 30
    assert sum(gap > 150 for gap in gaps) <= len(gaps) // 10


def test_cases_are_opened_weighted_towards_vastra_gotaland(generated: Generated) -> None:
    opened = [e.data for e in generated.log if e.name == "CaseOpened"]
    in_vgr = [o for o in opened if o["region"]["code"] == "14"]
    assert len(in_vgr) > len(opened) / 2
    for o in opened:
        place = municipality(o["municipality"]["code"])
        assert (place.name, place.region_code) == (o["municipality"]["name"], o["region"]["code"])


def test_a_case_has_one_or_two_coordinators_at_any_time(generated: Generated) -> None:
    for events in generated.by_case().values():
        assigned: set[tuple[str, str]] = set()  # persons: (organisation id, user id)
        for e in events:
            if e.name == "CoordinatorAssigned":
                coordinator = e.data["coordinator"]
                assigned.add((coordinator["organisation"]["id"], coordinator["user_id"]))
            elif e.name == "CoordinatorUnassigned":
                person = (e.data["organisation_id"], e.data["user_id"])
                assert person in assigned  # the unassignment names an assigned person
                assigned.remove(person)
            assert len(assigned) <= 2
        assert assigned


def test_the_garbage_collector_is_paused_while_generating_and_collects_monthly(tmp_path: Path) -> None:
    enabled_during: set[bool] = set()
    full_collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections.append(1)

    gc.callbacks.append(count)
    try:
        settings = GeneratorSettings(cases=5, seed=3, end=END, span_days=120)

        def progress(day: int, days: int) -> None:
            if day < days:  # the last call comes after the run
                enabled_during.add(gc.isenabled())

        run(tmp_path / "on", settings, progress=progress).store.close()
        assert enabled_during == {False}
        assert gc.isenabled()
        assert 2 <= len(full_collections) <= 5  # at most one per 30 simulated days (120 here)
        gc.disable()
        try:
            full_collections.clear()
            run(tmp_path / "off", settings).store.close()
            assert not gc.isenabled()  # left as the caller had it
            assert not full_collections
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(count)


def test_it_writes_to_a_plain_store_with_a_shorter_follow_up_policy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    migrate(StoreConfig(url))
    store = open_case_store(url)  # as the tests make stores (default cache, durable commits)
    try:
        days: list[tuple[int, int]] = []
        settings = GeneratorSettings(cases=8, seed=5, end=END, span_days=400)
        report = generate(
            store,
            settings,
            policy=CasePolicy(follow_up_max_months=2),
            progress=lambda d, t: days.append((d, t)),
        )
        assert report.cases == 8
        assert days[-1] == (400, 400)
        assert [d for d, _ in days] == sorted(d for d, _ in days)
        for e in read_log(store):
            if e.name == "SipDecided":
                gap = date.fromisoformat(e.data["next_follow_up_on"]) - date.fromisoformat(
                    e.data["decided_on"]
                )
                assert gap.days <= 62
    finally:
        store.close()


def test_the_generation_store_commits_without_fsync_unless_durable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    migrate(StoreConfig(url))
    for durable, expected in ((False, 1), (True, 2)):  # NORMAL, FULL
        store = generation_store(url, 10, durable=durable)
        try:
            assert store.case_recorder.query("PRAGMA synchronous") == [{"synchronous": expected}]
            assert store.writer is not None  # the connection the commits are written on
            assert store.writer.setting("synchronous") == expected
        finally:
            store.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (GeneratorSettings(cases=0), "cases must be between"),
        (GeneratorSettings(cases=-3), "cases must be between"),
        (GeneratorSettings(cases=5, span_days=10), "span_days must be between"),
        (GeneratorSettings(cases=5, end=date.today() + timedelta(days=2)), "writes no future"),
        (GeneratorSettings(cases="5"), "whole number"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_refused_by_name(settings: GeneratorSettings, message: str) -> None:
    with pytest.raises(InvalidGeneratorSettings, match=message) as caught:
        settings.validated()
    assert isinstance(caught.value, ValueError)


def test_the_end_defaults_to_today() -> None:
    today = datetime.now(UTC).astimezone(STOCKHOLM).date()
    assert GeneratorSettings(cases=1).validated(today).end == today


# ------------------------------------------------------------------------------ geography
def test_every_municipality_code_is_four_digits_starting_with_its_region() -> None:
    places = municipalities()
    codes = [m.code for m in places]
    assert len(codes) == len(set(codes)) >= 120
    for m in places:
        assert len(m.code) == 4, m
        assert m.code.isdigit(), m
        assert len(m.region_code) == 2, m
        assert m.code.startswith(m.region_code), m
        assert m.association is None or m.association in ASSOCIATIONS, m
    assert {m.region_code for m in places} >= {"01", "03", "12", "13", "14"}


def test_vastra_gotaland_has_49_municipalities_each_in_an_association() -> None:
    vgr = [m for m in municipalities() if m.region_code == "14"]
    assert len(vgr) == 49
    assert all(m.region_name == "Västra Götalandsregionen" and m.association in ASSOCIATIONS for m in vgr)
    members = defaultdict(list)
    for m in municipalities():
        if m.association:
            members[m.association].append(m.name)
    assert {a: len(names) for a, names in members.items()} == {
        "GR": 13,
        "Fyrbodal": 14,
        "Skaraborg": 15,
        "Boråsregionen": 8,
    }


def test_known_municipalities() -> None:
    assert municipality("1480").name == "Göteborg"
    assert association_of("1480") == "GR"
    kungsbacka = municipality("1384")
    assert (kungsbacka.region_code, kungsbacka.region_name, kungsbacka.association) == (
        "13",
        "Region Halland",
        "GR",
    )
    stockholm = municipality("0180")
    assert (stockholm.name, stockholm.region_name, stockholm.association) == (
        "Stockholm",
        "Region Stockholm",
        None,
    )
    assert association_of("1490") == "Boråsregionen"
    assert association_of("1444") == "Skaraborg"  # Grästorp
    assert association_of("1492") == "Fyrbodal"  # Åmål
    with pytest.raises(UnknownMunicipality):
        municipality("9999")
    with pytest.raises(KeyError):
        association_of("14")


# ------------------------------------------------------------------------------------ CLI
def vss(*args: str, data_dir: Path, store_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VSS_DATA_DIR": str(data_dir)}
    env.pop("VSS_CASE_STORE_URL", None)
    if store_url:
        env["VSS_CASE_STORE_URL"] = store_url
    return subprocess.run([VSS, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_cli_generates_into_the_configured_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    migrate(StoreConfig(url))
    result = vss(
        "generate", "--cases", "6", "--seed", "7", "--end", "2025-06-30", data_dir=tmp_path, store_url=url
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("generated 6 cases, ")
    assert "events/s" in lines[0]
    assert "last log position" in lines[0]
    store = CaseEventStore(StoreConfig(url))
    try:
        assert len(store.case_ids()) == 6
        assert f"last log position {store.max_position():,}" in lines[0]
    finally:
        store.close()
    again = vss(
        "generate", "--cases", "6", "--seed", "7", "--end", "2025-06-30", data_dir=tmp_path, store_url=url
    )
    assert again.returncode == 2
    assert "choose another --seed" in again.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--cases", "0"), "cases must be between 1 and"),
        (("--cases", "many"), "--cases"),
        (("--cases", "3", "--end", "31/12/2025"), "is not a date (YYYY-MM-DD)"),
        (("--cases", "3", "--span-days", "2"), "span_days must be between"),
        (("--cases", "3", "--end", "2999-01-01"), "writes no future"),
        (("--cases", "3"), "run `vss migrate`"),  # the store is not migrated
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    result = vss("generate", *args, data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("vss: ")
    assert reason in lines[0]
