"""Statistics against a fixture computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from itertools import product
from typing import Any

from services.projections.domain.statistics import (
    AGE_GROUPS,
    TOTAL,
    CaseFacts,
    Cell,
    Period,
    Relation,
    add_months,
    additive_paths,
    protect,
    statistics_by,
)
from services.shared.geography import association_of


def case(
    code: str,
    opened: str,
    consent: str | None,
    sips: list[str],
    *,
    closed: str | None = None,
    warnings: tuple[str, ...] = (),
    ratings: tuple[int, ...] = (),
) -> CaseFacts:
    return CaseFacts(
        municipality_code=code,
        region_code=code[:2],
        opened_on=date.fromisoformat(opened),
        closed_on=date.fromisoformat(closed) if closed else None,
        first_consent_on=date.fromisoformat(consent) if consent else None,
        sip_dates=tuple(date.fromisoformat(d) for d in sips),
        warning_dates=tuple(date.fromisoformat(d) for d in warnings),
        rating_count=len(ratings),
        first_rating_total=ratings[0] if ratings else None,
        latest_rating_total=ratings[-1] if ratings else None,
    )


GBG, BORAS = "1480", "1490"
FIXTURE = [
    case(
        GBG,
        "2025-01-10",
        "2025-01-15",
        ["2025-02-14", "2025-05-10"],
        warnings=("2025-02-01",),
        ratings=(20, 28),
    ),  # A
    case(GBG, "2025-01-20", "2025-01-20", ["2025-03-01"], ratings=(15, 14)),  # B
    case(
        GBG,
        "2025-02-05",
        "2025-02-10",
        ["2025-03-12"],
        closed="2025-03-31",
        warnings=("2025-03-15", "2025-03-20"),
        ratings=(10, 12),
    ),  # C
    case(
        GBG,
        "2024-12-01",
        "2024-12-05",
        ["2025-01-05", "2025-04-01"],
        warnings=("2025-01-10",),
        ratings=(22, 30),
    ),  # D
    case(
        GBG, "2024-11-01", "2024-11-03", ["2024-12-20", "2025-03-25"], warnings=("2025-02-20",), ratings=(19,)
    ),  # E
    case(GBG, "2025-03-03", "2025-03-05", [], ratings=(18, 25)),  # F
    case(GBG, "2024-12-10", "2024-12-12", ["2025-01-20"], ratings=(30, 20)),  # G
    case(GBG, "2024-06-01", "2024-06-05", ["2024-10-10", "2025-01-05"]),  # H
    case(GBG, "2024-06-01", "2024-06-05", ["2024-11-15", "2025-02-20"]),  # I
    case(GBG, "2024-06-01", "2024-06-05", ["2024-12-01", "2025-02-28"]),  # J
    case(GBG, "2024-06-01", "2024-06-05", ["2024-12-31"]),  # K
    case(GBG, "2024-06-01", "2024-06-05", ["2024-10-31", "2025-01-30"]),  # L
    case(BORAS, "2025-02-01", "2025-02-02", []),  # M
    case(BORAS, "2025-03-01", None, []),  # N
]
PERIOD = Period(date(2025, 1, 1), date(2025, 3, 1))
AS_OF = date(2025, 6, 30)


def test_the_municipality_figures_match_the_hand_computation() -> None:
    groups = {g["key"]: g for g in statistics_by(FIXTURE, "municipality", PERIOD, AS_OF, association_of)}
    gbg = groups[GBG]
    # Active at month end: Jan A B D E G + H–L = 10; Feb + C = 11; Mar: C closed on the 31st, F opened = 11.
    # Opened: Jan A B (2), Feb C (1), Mar F (1); closed: Mar C (1): all below 5, suppressed; zeros are shown.
    assert gbg["months"] == [
        {"month": "2025-01", "active": 10, "opened": None, "closed": 0},
        {"month": "2025-02", "active": 11, "opened": None, "closed": 0},
        {"month": "2025-03", "active": 11, "opened": None, "closed": None},
    ]
    # First SIP in the period: A 30, B 40, C 30, D 31, G 39 days after consent: median 31;
    # the middle half (inclusive quartiles of 30 30 31 39 40) from 30 to 39 days.
    assert gbg["consent_to_first_sip"] == {
        "cases": 5,
        "median_days": 31,
        "lower_quartile_days": 30.0,
        "upper_quartile_days": 39.0,
    }
    # Deadlines (SIP + 3 months) in the period: E 03-20 (late), H 01-10 (ok), I 02-15 (late),
    # J 03-01 (ok), K 03-31 (none held), L 01-31 (ok): 6 due, 3 in time -> the count and the
    # share (which would give it away) are suppressed.
    assert gbg["follow_ups"] == {
        "due": 6,
        "within_three_months": None,
        "not_within_three_months": None,
        "share_within_three_months": None,
    }
    # Warnings in the period: A, C ×2, D, E = 5, but of four cases: suppressed, and so is the rate.
    # Active days: A 81, B 71, C 55, D 90, E 90, F 29, G 90, H–L 5 × 90 = 956 days = 2.6174
    # case-years, of 11 cases: shown.
    assert gbg["early_warnings"] == {"count": None, "case_years": 2.62, "per_case_year": None}
    # Rated twice: A 20→28, B 15→14, C 10→12, D 22→30, F 18→25, G 30→20 (E once): 6 cases,
    # mean first 115/6 = 19.17, mean latest 129/6 = 21.5; 4 improved and 2 worsened: suppressed.
    change = dict(gbg["change_rating"])
    del change["by_quarter"]
    assert change == {
        "cases_rated_twice": 6,
        "mean_first_total": 19.17,
        "mean_latest_total": 21.5,
        "improved": None,
        "worsened": None,
        "unchanged": 0,
    }
    boras = groups[BORAS]
    assert [m["active"] for m in boras["months"]] == [0, None, None]
    assert boras["consent_to_first_sip"] == {
        "cases": 0,
        "median_days": None,
        "lower_quartile_days": None,
        "upper_quartile_days": None,
    }
    assert boras["change_rating"]["mean_first_total"] is None
    # Borås has two cases: not even their case-years are shown.
    assert boras["early_warnings"] == {"count": 0, "case_years": None, "per_case_year": None}


def test_associations_and_regions_group_the_municipalities() -> None:
    by_association = {
        g["key"]: g for g in statistics_by(FIXTURE, "association", PERIOD, AS_OF, association_of)
    }
    assert set(by_association) == {"GR", "Boråsregionen"}
    assert by_association["GR"]["months"][0]["active"] == 10
    by_region = statistics_by(FIXTURE, "region", PERIOD, AS_OF, association_of)
    assert [g["key"] for g in by_region] == ["14"]
    # Feb: 11 in Göteborg + M in Borås = 12; Mar: 11 + M + N = 13.
    assert [m["active"] for m in by_region[0]["months"]] == [10, 12, 13]


def test_no_personal_data_and_small_counts_never_leave() -> None:
    groups = statistics_by(FIXTURE, "municipality", PERIOD, AS_OF, association_of)
    text = repr(groups)
    assert "2025-01-10" not in text  # no dates of single cases, only months
    for group in groups:
        for month in group["months"]:
            for key in ("active", "opened", "closed"):
                assert month[key] is None or month[key] == 0 or month[key] >= 5


def test_months_are_added_to_the_last_day_when_the_day_does_not_exist() -> None:
    assert add_months(date(2024, 10, 31), 3) == date(2025, 1, 31)
    assert add_months(date(2024, 11, 30), 3) == date(2025, 2, 28)
    assert add_months(date(2024, 12, 31), 3) == date(2025, 3, 31)


def test_nothing_is_shown_that_fewer_than_five_cases_make_up() -> None:
    # Five cases in one municipality, but the warnings and follow-ups all come from two of them.
    few = [
        case(
            GBG,
            "2024-06-01",
            "2024-06-02",
            ["2024-10-01", "2024-12-20", "2025-02-10"],
            warnings=("2025-01-05", "2025-01-20", "2025-02-03"),
        ),
        case(
            GBG,
            "2024-06-01",
            "2024-06-02",
            ["2024-10-05", "2024-12-28", "2025-03-01"],
            warnings=("2025-01-07", "2025-02-11", "2025-03-09"),
        ),
        *(case(GBG, "2024-06-01", "2024-06-02", []) for _ in range(3)),
    ]
    [group] = statistics_by(few, "municipality", PERIOD, AS_OF, association_of)
    assert [m["active"] for m in group["months"]] == [5, 5, 5]
    # Six warnings, but of two clients: neither the count nor the rate; 5 × 90 days = 1.23 case-years.
    assert group["early_warnings"] == {"count": None, "case_years": 1.23, "per_case_year": None}
    # Follow-ups due in the period: 2024-12-20 → 03-20 and 12-28 → 03-28, 10-01 → 01-01,
    # 10-05 → 01-05 — four follow-ups of two cases: suppressed with everything derived from them.
    assert group["follow_ups"] == {
        "due": None,
        "within_three_months": None,
        "not_within_three_months": 0,
        "share_within_three_months": None,
    }

    # Five clients with six warnings between them: the count and the rate are shown.
    spread = [
        case(GBG, "2024-06-01", "2024-06-02", [], warnings=tuple(f"2025-0{n % 3 + 1}-1{n}" for n in range(k)))
        for k in (2, 1, 1, 1, 1)
    ]
    [group] = statistics_by(spread, "municipality", PERIOD, AS_OF, association_of)
    assert group["early_warnings"]["count"] == 6
    assert group["early_warnings"]["per_case_year"] == round(6 / (5 * 90 / 365.25), 2)


# ------------------------------------------------------- method fidelity, trends, age groups

SPRING = Period(date(2025, 4, 1), date(2025, 6, 1))


def d(text: str) -> date:
    return date.fromisoformat(text)


def adult(*, age_group: str = "adult", **changes: Any) -> CaseFacts:
    return replace(case(GBG, "2024-06-01", "2024-06-05", []), age_group=age_group, **changes)


def test_method_fidelity_counts_joint_steps_waits_and_follow_ups_by_meeting_or_sip() -> None:
    steps = (("interview", d("2025-04-02"), True), ("network_map", d("2025-04-09"), True))
    short = (*steps, ("mapping_summary", d("2025-04-20"), False))
    cases = [
        # Five with every coordinator at both steps, five without one at the summary: 25 steps,
        # 20 with every coordinator, 5 without (of five cases): the share 0.8 is shown.
        *(adult(joint_steps=steps) for _ in range(5)),
        *(adult(joint_steps=short, first_mapping_summary_on=d("2025-04-20")) for _ in range(5)),
    ]
    # Five copies of the first five, which get the follow-ups below.
    # Consent 2024-06-05 to the summary on 2025-04-20: 319 days for the five summarised.
    # Follow-ups: a SIP on 2025-01-10 (due 04-10) met by a meeting on 03-20 (due 06-20), which
    # the next SIP on 06-15 meets; that SIP is due in September, after the period: two met of
    # two, per case. Five such cases and one more whose meeting of 03-20 was followed by nothing.
    met = {"sip_dates": (d("2025-01-10"), d("2025-06-15")), "meeting_dates": (d("2025-03-20"),)}
    cases += [replace(c, **met) for c in cases[:5]]
    cases[5:10] = [
        replace(c, sip_dates=(d("2025-01-10"),), meeting_dates=(d("2025-03-20"),)) for c in cases[5:10]
    ]
    [group] = statistics_by(cases, "municipality", SPRING, AS_OF, association_of)
    fidelity = group["method_fidelity"]
    assert fidelity["joint_steps"] == {
        # 5 × 2 + 5 × 3 steps, and the five copies' 5 × 2: 35 held, 30 with every coordinator.
        "held": 35,
        "with_every_coordinator": 30,
        "without_every_coordinator": 5,
        "share_with_every_coordinator": round(30 / 35, 3),
    }
    assert fidelity["consent_to_mapping_summary"] == {
        "cases": 5,
        "median_days": 319,
        "lower_quartile_days": 319.0,
        "upper_quartile_days": 319.0,
    }
    # The five copies: 04-10 met by 03-20's meeting, 06-20 met by 06-15's SIP (10 met). Cases
    # 6–10: 04-10 met by the meeting, 06-20 not met (5 met, 5 missed). Due 20 of ten cases.
    assert fidelity["follow_ups_met_by_meeting_or_sip"] == {
        "due": 20,
        "met_within_three_months": 15,
        "not_met_within_three_months": 5,
        "share_met_within_three_months": 0.75,
    }
    # Counted from SIPs alone, 2025-01-10's follow-up was late (the next SIP came in June).
    assert group["follow_ups"]["within_three_months"] == 0


def test_the_change_rating_and_everyday_functioning_trends_per_quarter() -> None:
    cases = [
        adult(
            ratings=((d("2025-02-10"), 14 + n), (d("2025-05-10"), 20 + n), (d("2025-05-30"), 22 + n)),
            everyday_functioning_dates=(d("2025-01-15"), d("2025-05-15")),
        )
        for n in range(5)
    ]
    cases.append(adult(everyday_functioning_dates=(d("2025-04-01"),)))
    whole_year = Period(date(2025, 1, 1), date(2025, 12, 1))
    [group] = statistics_by(cases, "municipality", whole_year, AS_OF, association_of)
    # Q1: 14..18, mean 16; Q2: each case's latest in the quarter, 22..26, mean 24; none after.
    assert group["change_rating"]["by_quarter"] == [
        {"quarter": "2025-Q1", "cases": 5, "mean_total": 16.0},
        {"quarter": "2025-Q2", "cases": 5, "mean_total": 24.0},
        {"quarter": "2025-Q3", "cases": 0, "mean_total": None},
        {"quarter": "2025-Q4", "cases": 0, "mean_total": None},
    ]
    # Six went through Hur fungerar vardagen in the year, five of them twice (no score exists).
    assert group["everyday_functioning"] == {"cases_assessed": 6, "cases_reassessed": 5}
    [spring] = statistics_by(cases, "municipality", SPRING, AS_OF, association_of)
    assert [q["quarter"] for q in spring["change_rating"]["by_quarter"]] == ["2025-Q2"]


def test_every_figure_is_split_into_adults_and_children_and_young_people() -> None:
    cases = [adult() for _ in range(6)] + [adult(age_group="child") for _ in range(5)]
    [group] = statistics_by(cases, "municipality", SPRING, AS_OF, association_of)
    assert set(group["by_age_group"]) == {"adults", "children_and_young_people"}
    assert [m["active"] for m in group["months"]] == [11, 11, 11]
    assert [m["active"] for m in group["by_age_group"]["adults"]["months"]] == [6, 6, 6]
    assert [m["active"] for m in group["by_age_group"]["children_and_young_people"]["months"]] == [5, 5, 5]
    # Each age group carries the same figures as the total.
    for figures in group["by_age_group"].values():
        assert set(figures) == set(group) - {"level", "key", "by_age_group"}
    # Facts stored before the age group was kept count in an unknown group until a rebuild.
    [older] = statistics_by(
        [*cases, adult(age_group="unknown")], "municipality", SPRING, AS_OF, association_of
    )
    assert set(older["by_age_group"]) == {"adults", "children_and_young_people", "unknown"}


# --------------------------------------------------------------------- secondary suppression
def determined(shown: dict[Cell, float | None], relations: list[Relation], bound: int = 40) -> set[Cell]:
    """The hidden cells a reader can derive: those every assignment (each hidden cell 1..bound,
    zeros being shown) consistent with the shown totals gives the same value."""
    hidden = [cell for cell, value in shown.items() if value is None]
    seen: dict[Cell, set[int]] = {cell: set() for cell in hidden}
    for values in product(range(1, bound + 1), repeat=len(hidden)):
        table = {**shown, **dict(zip(hidden, values, strict=True))}
        if all(table[total] == sum(table[p] for p in parts) for total, parts in relations):
            for cell, value in zip(hidden, values, strict=True):
                seen[cell].add(value)
    return {cell for cell, values in seen.items() if len(values) == 1}


def test_a_suppressed_cell_that_totals_would_give_away_takes_a_second_cell_with_it() -> None:
    """Municipality × adults/children with row and column totals: Göteborg's three children
    would be 23 − 20, and the children's column 9 − 6, if only they were hidden."""
    values: dict[Cell, float] = {
        ("gbg", "adults"): 20,
        ("gbg", "children"): 3,
        ("gbg", "total"): 23,
        ("boras", "adults"): 8,
        ("boras", "children"): 6,
        ("boras", "total"): 14,
        ("all", "adults"): 28,
        ("all", "children"): 9,
        ("all", "total"): 37,
    }
    relations: list[Relation] = [
        *(((row, "total"), ((row, "adults"), (row, "children"))) for row in ("gbg", "boras", "all")),
        *(((("all", col)), (("gbg", col), ("boras", col))) for col in ("adults", "children", "total")),
    ]
    primary = {("gbg", "children")}
    alone = {cell: (None if cell in primary else v) for cell, v in values.items()}
    assert determined(alone, relations) == primary  # the leak secondary suppression closes
    hidden = protect(values, primary, relations)
    # The smallest cells that close every sum: a rectangle the totals leave one degree of freedom.
    assert hidden == {("gbg", "children"), ("gbg", "adults"), ("boras", "children"), ("boras", "adults")}
    shown = {cell: (None if cell in hidden else v) for cell, v in values.items()}
    assert determined(shown, relations) == set()
    assert all(shown[cell] is not None for cell in values if cell[1] == "total" or cell[0] == "all")


def test_two_suppressed_ones_beside_a_shown_total_are_hidden_with_the_total() -> None:
    # 1 + 1 = 2: both hidden parts could only be 1; the total goes too.
    values: dict[Cell, float] = {("t",): 2, ("a",): 1, ("b",): 1, ("c",): 0}
    relations: list[Relation] = [(("t",), (("a",), ("b",), ("c",)))]
    assert protect(values, {("a",), ("b",), ("t",)}, relations) == {("a",), ("b",), ("t",)}
    values = {("t",): 7, ("a",): 1, ("b",): 1, ("c",): 5}
    hidden = protect(values, {("a",), ("b",)}, relations)
    assert hidden == {("a",), ("b",), ("c",)}
    assert determined({c: (None if c in hidden else v) for c, v in values.items()}, relations) == set()


def test_no_suppressed_figure_of_the_statistics_can_be_derived_from_its_totals() -> None:
    # Göteborg: twelve adults and three children active; the three would be 15 − 12.
    cases = [adult() for _ in range(12)] + [adult(age_group="child") for _ in range(3)]
    # Deviations: one meeting_requires_coordinators in each of five cases, and seven
    # coordinators_must_attend of one case: the count 12 less 5 would give the 7 of one case away.
    deviation = (("meeting_requires_coordinators", d("2025-04-10")),)
    for n in range(5):
        cases[n] = replace(cases[n], deviations=deviation)
    cases[5] = replace(cases[5], deviations=(("coordinators_must_attend", d("2025-04-11")),) * 7)
    [group] = statistics_by(cases, "municipality", SPRING, AS_OF, association_of)
    children = group["by_age_group"]["children_and_young_people"]
    adults = group["by_age_group"]["adults"]
    assert [m["active"] for m in group["months"]] == [15, 15, 15]
    assert [m["active"] for m in children["months"]] == [None, None, None]  # three
    assert [m["active"] for m in adults["months"]] == [None, None, None]  # would give them away
    # 12 deviations of six cases, 5 of one rule: the 7 of one case would be the rest.
    assert group["deviations"]["by_rule"]["coordinators_must_attend"] is None
    assert group["deviations"]["by_rule"]["meeting_requires_coordinators"] is None
    assert group["deviations"]["count"] == 12

    # Check every table of the answer the way a reader would: fill in each hidden cell.
    scopes = [TOTAL, *AGE_GROUPS]
    figures = {TOTAL: group, **group["by_age_group"]}
    present = [s for s in scopes if s in figures]
    for path in additive_paths(group):
        cells = {(s, *path): _at(figures[s], path) for s in present}
        relation: Relation = ((TOTAL, *path), tuple((s, *path) for s in present if s != TOTAL))
        assert determined(cells, [relation], bound=20) == set(), path
    for scope in present:
        by_rule = figures[scope]["deviations"]["by_rule"]
        cells = {(rule,): value for rule, value in by_rule.items()}
        cells[("count",)] = figures[scope]["deviations"]["count"]
        relation = (("count",), tuple((rule,) for rule in by_rule))
        assert determined(cells, [relation], bound=15) == set(), scope


def _at(figures: dict[str, Any], path: Cell) -> Any:
    value: Any = figures
    for key in path:
        value = value[key]
    return value
