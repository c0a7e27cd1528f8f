"""Follow-up statistics (*uppföljning*) per municipality, municipal association or region.

Pure functions over each case's facts (no personal data: dates, codes and counts
only). Definitions, as documented in docs/operations.md:

- *active* in a month: opened on or before its last day and not closed by then;
  *opened* / *closed*: by the date of the fact, in that month.
- *consent to first SIP*: days from the first consent to the first SIP, for the
  cases whose first SIP was decided in the period; the median.
- *follow-ups within three months*: every SIP calls for a follow-up at most three
  months later. A follow-up counts in the period when that deadline falls in it (and
  is not after ``as_of``, nor after the case was closed); it was *in time* when the
  next SIP was decided on or before the deadline.
- *early warnings per case-year*: warnings observed in the period over the years the
  cases were active in it.
- *change-rating trend*: for the cases active in the period that were rated at least
  twice, the mean first and mean latest total (0–40), and how many improved.
- *deviations from the method*: the recorded deviations (ADR 0017) whose fact falls in
  the period, in all and per practice rule.
- corrected and retracted entries (ADR 0018): the facts come from each overview's current
  values, so a corrected change rating counts with its corrected total and a retracted one
  not at all.

Every count below :data:`MIN_COUNT` (except 0) is suppressed (``None``), and so is
every figure computed from fewer than :data:`MIN_COUNT` cases (a count of follow-ups
or warnings included: seven warnings of two clients describe those two), and a share
whose numerator or remainder would be such a figure (it would give it away).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, TypeVar

from vss_contracts.types import PracticeRule

MIN_COUNT = 5
T = TypeVar("T")
Level = Literal["municipality", "association", "region"]
NO_ASSOCIATION = "(no association)"


@dataclass(frozen=True, slots=True)
class CaseFacts:
    municipality_code: str
    region_code: str
    opened_on: date
    closed_on: date | None
    first_consent_on: date | None
    sip_dates: tuple[date, ...]
    warning_dates: tuple[date, ...]
    rating_count: int
    first_rating_total: int | None
    latest_rating_total: int | None
    deviations: tuple[tuple[str, date], ...] = ()  # (rule, the date of the fact that deviates)

    @classmethod
    def from_json(cls, facts: dict[str, Any]) -> CaseFacts:
        def day(value: str | None) -> date | None:
            return date.fromisoformat(value) if value else None

        return cls(
            municipality_code=facts["municipality_code"],
            region_code=facts["region_code"],
            opened_on=date.fromisoformat(facts["opened_on"]),
            closed_on=day(facts["closed_on"]),
            first_consent_on=day(facts["first_consent_on"]),
            sip_dates=tuple(date.fromisoformat(d) for d in facts["sip_dates"]),
            warning_dates=tuple(date.fromisoformat(d) for d in facts["warning_dates"]),
            rating_count=facts["rating_count"],
            first_rating_total=facts["first_rating_total"],
            latest_rating_total=facts["latest_rating_total"],
            # Facts stored before deviations were kept have none.
            deviations=tuple((rule, date.fromisoformat(on)) for rule, on in facts.get("deviations", ())),
        )


@dataclass(frozen=True, slots=True)
class Period:
    first_month: date  # the first day of the first month
    last_month: date  # the first day of the last month

    @property
    def start(self) -> date:
        return self.first_month

    @property
    def end(self) -> date:
        return month_end(self.last_month)

    def months(self) -> list[date]:
        months, month = [], self.first_month
        while month <= self.last_month:
            months.append(month)
            month = add_months(month, 1)
        return months


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    last = month_end(date(year, month, 1)).day
    return date(year, month, min(day.day, last))


def month_end(first: date) -> date:
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - timedelta(days=1)


def suppress(count: int) -> int | None:
    return None if 0 < count < MIN_COUNT else count


def from_enough_cases(value: T, cases: int) -> T | None:
    """``value`` if it was derived from no case or from at least :data:`MIN_COUNT` cases."""
    return None if 0 < cases < MIN_COUNT else value


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def group_figures(cases: list[CaseFacts], period: Period, as_of: date) -> dict[str, Any]:
    """The figures of one group of cases for the period."""
    months = []
    for month in period.months():
        last = month_end(month)
        active = sum(1 for c in cases if c.opened_on <= last and (c.closed_on is None or c.closed_on > last))
        opened = sum(1 for c in cases if month <= c.opened_on <= last)
        closed = sum(1 for c in cases if c.closed_on is not None and month <= c.closed_on <= last)
        months.append(
            {
                "month": month.strftime("%Y-%m"),
                "active": suppress(active),
                "opened": suppress(opened),
                "closed": suppress(closed),
            }
        )

    waits = [
        (c.sip_dates[0] - c.first_consent_on).days
        for c in cases
        if c.sip_dates and c.first_consent_on and period.start <= c.sip_dates[0] <= period.end
    ]

    # Each figure below counts the distinct cases it is derived from (see the module docstring).
    due = in_time = 0
    due_cases: set[int] = set()
    in_time_cases: set[int] = set()
    late_cases: set[int] = set()
    for number, c in enumerate(cases):
        for index, decided in enumerate(c.sip_dates):
            deadline = add_months(decided, 3)
            if not (period.start <= deadline <= period.end) or deadline > as_of:
                continue
            if c.closed_on is not None and c.closed_on <= deadline:
                continue
            due += 1
            due_cases.add(number)
            following = c.sip_dates[index + 1] if index + 1 < len(c.sip_dates) else None
            if following is not None and following <= deadline:
                in_time += 1
                in_time_cases.add(number)
            else:
                late_cases.add(number)
    due_shown = from_enough_cases(suppress(due), len(due_cases))
    in_time_shown = from_enough_cases(suppress(in_time), len(in_time_cases))
    late_shown = from_enough_cases(suppress(due - in_time), len(late_cases))

    warned = [sum(1 for d in c.warning_dates if period.start <= d <= period.end) for c in cases]
    warnings = sum(warned)
    warnings_shown = from_enough_cases(suppress(warnings), sum(1 for n in warned if n))
    active_days = 0
    active_cases = 0
    horizon = min(period.end, as_of)
    for c in cases:
        first = max(c.opened_on, period.start)
        last = min(c.closed_on or horizon, horizon)
        if last >= first:
            active_days += (last - first).days + 1
            active_cases += 1
    case_years = active_days / 365.25
    case_years_shown = from_enough_cases(round(case_years, 2), active_cases)

    rated = [
        c
        for c in cases
        if c.rating_count >= 2
        and c.first_rating_total is not None
        and c.latest_rating_total is not None
        and c.opened_on <= period.end
        and (c.closed_on is None or c.closed_on >= period.start)
    ]
    enough_rated = len(rated) >= MIN_COUNT
    improved = sum(1 for c in rated if (c.latest_rating_total or 0) > (c.first_rating_total or 0))
    worsened = sum(1 for c in rated if (c.latest_rating_total or 0) < (c.first_rating_total or 0))
    return {
        "months": months,
        "deviations": _deviations(cases, period),
        "consent_to_first_sip": {
            "cases": suppress(len(waits)),
            "median_days": statistics.median(waits) if len(waits) >= MIN_COUNT else None,
        },
        "follow_ups": {
            "due": due_shown,
            "within_three_months": in_time_shown,
            # A share would give away a suppressed count (due is shown): both parts must be large enough.
            "share_within_three_months": _rounded(in_time / due, 3)
            if due >= MIN_COUNT and None not in (due_shown, in_time_shown, late_shown)
            else None,
        },
        "early_warnings": {
            "count": warnings_shown,
            "case_years": case_years_shown,
            "per_case_year": _rounded(warnings / case_years)
            if warnings >= MIN_COUNT and warnings_shown is not None and case_years_shown
            else None,
        },
        "change_rating": {
            "cases_rated_twice": suppress(len(rated)),
            "mean_first_total": _rounded(statistics.fmean(c.first_rating_total or 0 for c in rated))
            if enough_rated
            else None,
            "mean_latest_total": _rounded(statistics.fmean(c.latest_rating_total or 0 for c in rated))
            if enough_rated
            else None,
            "improved": suppress(improved) if enough_rated else None,
            "worsened": suppress(worsened) if enough_rated else None,
        },
    }


def _deviations(cases: list[CaseFacts], period: Period) -> dict[str, Any]:
    """Deviations in the period, in all and per rule; each count from fewer than
    :data:`MIN_COUNT` cases is suppressed like any other."""

    def shown(rules: set[str]) -> int | None:
        per_case = [
            sum(1 for rule, on in c.deviations if rule in rules and period.start <= on <= period.end)
            for c in cases
        ]
        return from_enough_cases(suppress(sum(per_case)), sum(1 for n in per_case if n))

    every = {rule.value for rule in PracticeRule}
    return {"count": shown(every), "by_rule": {rule: shown({rule}) for rule in sorted(every)}}


def statistics_by(
    facts: Iterable[CaseFacts],
    level: Level,
    period: Period,
    as_of: date,
    association_of: Callable[[str], str | None],
) -> list[dict[str, Any]]:
    """One entry per group (sorted by key) with its figures for the period."""
    groups: dict[str, list[CaseFacts]] = {}
    for case in facts:
        if level == "municipality":
            key = case.municipality_code
        elif level == "region":
            key = case.region_code
        else:
            key = association_of(case.municipality_code) or NO_ASSOCIATION
        groups.setdefault(key, []).append(case)
    return [
        {"level": level, "key": key, **group_figures(cases, period, as_of)}
        for key, cases in sorted(groups.items())
    ]
