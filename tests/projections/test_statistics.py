"""Statistics against a fixture computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

from datetime import date

from services.projections.domain.statistics import CaseFacts, Period, add_months, statistics_by
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
    assert gbg["follow_ups"] == {"due": 6, "within_three_months": None, "share_within_three_months": None}
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
