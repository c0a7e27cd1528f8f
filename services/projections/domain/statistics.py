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
- *consent to first SIP* and *consent to mapping summary* (method fidelity): the median
  and the lower and upper quartile (inclusive method: the middle half of the cases lies
  between them), for the cases whose first SIP, or first mapping summary, fell in the period.
- *joint steps* (method fidelity): the interviews, network maps, mapping summaries and
  resource group meetings held in the period, and at how many every coordinator assigned
  at the time took part (by the participants as persons, organisation and user id, as the
  case's attendance rules; an upcast earlier participant by its user id).
- *follow-ups met by a meeting or a SIP* (method fidelity): from a case's first SIP on,
  every SIP decided and every resource group meeting held calls for the next of either
  within three months; counted like the follow-ups above (deadline in the period, not after
  ``as_of`` nor the closing), met when the next one came on or before the deadline.
- *change-rating trend per quarter*: per calendar quarter the period touches (cut to the
  period), the cases rated in it and the mean of each one's latest total in it.
- *everyday functioning* (*Hur fungerar vardagen*): the worksheet records no score, only
  a summary; so the cases that went through it in the period, and those of them that had
  by the period's end gone through it at least twice.
- *age groups*: every figure in all and per ``by_age_group``: ``adults`` and
  ``children_and_young_people`` (under 18 on the day the case was opened, from the
  personal identity number, a *samordningsnummer*'s day less 60; the number never enters
  the facts), and ``unknown`` for facts stored before the age group was kept (a rebuild
  gives them one).
- corrected and retracted entries (ADR 0018): the facts come from each overview's current
  values, so a corrected change rating counts with its corrected total and a retracted one
  not at all.

Every count below :data:`MIN_COUNT` (except 0) is suppressed (``None``), and so is
every figure computed from fewer than :data:`MIN_COUNT` cases (a count of follow-ups
or warnings included: seven warnings of two clients describe those two), and a share
whose numerator or remainder would be such a figure (it would give it away).

*Secondary suppression* (:func:`protect`). Within one group the figures form tables with
totals: each count of the total is the sum of the age groups' (``adults`` +
``children_and_young_people`` [+ ``unknown``]); in each scope the deviations are the sum of
those per rule, and a count the sum of its parts (follow-ups due = within + not within,
rated twice = improved + worsened + unchanged, joint steps held = with + without every
coordinator). Where a suppressed cell could be derived from what is shown, another is
suppressed, until none can be:

1. A hidden cell is *derivable* when the shown cells and the sums determine it: by
   linear algebra (its unit vector lies in the row space of the sums over the hidden
   cells; one hidden part beside a shown total is the simplest case), or because the
   hidden parts of a shown total sum to as many as there are of them (each hidden cell is
   at least 1, as zeros are shown: they can only all be 1).
2. While one is, the smallest non-zero shown *part* of a sum a derivable cell is in is
   suppressed too (ties by name); when there is none, the smallest such total.
3. Then a figure computed from a suppressed count is suppressed: a share (times its whole
   it gives its part), a rate, a mean, median or quartile (with the total's mean and count
   it gives the other age group's).

The groups of one answer share no sum (there is no total over them in it); an answer at
a coarser level (region) is a separate table, which this does not protect against
combining with a finer one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, Literal, TypeVar

from vss_contracts.types import PracticeRule

MIN_COUNT = 5
T = TypeVar("T")
Level = Literal["municipality", "association", "region"]
AgeGroup = Literal["adult", "child", "unknown"]
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
    # Facts stored before the following were kept have none (a rebuild adds them).
    age_group: AgeGroup = "unknown"
    joint_steps: tuple[tuple[str, date, bool], ...] = ()  # (step, on, every coordinator took part)
    first_mapping_summary_on: date | None = None
    meeting_dates: tuple[date, ...] = ()
    everyday_functioning_dates: tuple[date, ...] = ()
    ratings: tuple[tuple[date, int], ...] = ()  # (rated on, total 0–40)

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
            age_group=facts.get("age_group", "unknown"),
            joint_steps=tuple(
                (step, date.fromisoformat(on), bool(everyone))
                for step, on, everyone in facts.get("joint_steps", ())
            ),
            first_mapping_summary_on=day(facts.get("first_mapping_summary_on")),
            meeting_dates=tuple(date.fromisoformat(d) for d in facts.get("meeting_dates", ())),
            everyday_functioning_dates=tuple(
                date.fromisoformat(d) for d in facts.get("everyday_functioning_dates", ())
            ),
            ratings=tuple((date.fromisoformat(on), total) for on, total in facts.get("ratings", ())),
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


def suppress(count: int, min_count: int = MIN_COUNT) -> int | None:
    return None if 0 < count < min_count else count


def from_enough_cases(value: T, cases: int, min_count: int = MIN_COUNT) -> T | None:
    """``value`` if it was derived from no case or from at least :data:`MIN_COUNT` cases."""
    return None if 0 < cases < min_count else value


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def group_figures(
    cases: list[CaseFacts], period: Period, as_of: date, min_count: int = MIN_COUNT
) -> dict[str, Any]:
    """The figures of one group of cases for the period, each figure derived from fewer than
    ``min_count`` cases suppressed (``min_count`` 1: the figures as they are, unsuppressed)."""

    def hidden(count: int) -> int | None:
        return suppress(count, min_count)

    def enough(value: T, of_cases: int) -> T | None:
        return from_enough_cases(value, of_cases, min_count)

    months = []
    for month in period.months():
        last = month_end(month)
        active = sum(1 for c in cases if c.opened_on <= last and (c.closed_on is None or c.closed_on > last))
        opened = sum(1 for c in cases if month <= c.opened_on <= last)
        closed = sum(1 for c in cases if c.closed_on is not None and month <= c.closed_on <= last)
        months.append(
            {
                "month": month.strftime("%Y-%m"),
                "active": hidden(active),
                "opened": hidden(opened),
                "closed": hidden(closed),
            }
        )

    waits = [
        (c.sip_dates[0] - c.first_consent_on).days
        for c in cases
        if c.sip_dates and c.first_consent_on and period.start <= c.sip_dates[0] <= period.end
    ]

    # Each figure below counts the distinct cases it is derived from (see the module docstring).
    due, in_time, due_cases, in_time_cases, late_cases = _follow_ups(
        [c.sip_dates for c in cases], cases, period, as_of
    )
    due_shown = enough(hidden(due), len(due_cases))
    in_time_shown = enough(hidden(in_time), len(in_time_cases))
    late_shown = enough(hidden(due - in_time), len(late_cases))

    warned = [sum(1 for d in c.warning_dates if period.start <= d <= period.end) for c in cases]
    warnings = sum(warned)
    warnings_shown = enough(hidden(warnings), sum(1 for n in warned if n))
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
    case_years_shown = enough(round(case_years, 2), active_cases)

    rated = [
        c
        for c in cases
        if c.rating_count >= 2
        and c.first_rating_total is not None
        and c.latest_rating_total is not None
        and c.opened_on <= period.end
        and (c.closed_on is None or c.closed_on >= period.start)
    ]
    enough_rated = len(rated) >= min_count
    improved = sum(1 for c in rated if (c.latest_rating_total or 0) > (c.first_rating_total or 0))
    worsened = sum(1 for c in rated if (c.latest_rating_total or 0) < (c.first_rating_total or 0))
    return {
        "months": months,
        "deviations": _deviations(cases, period, min_count),
        "consent_to_first_sip": _waits(waits, min_count),
        "follow_ups": {
            "due": due_shown,
            "within_three_months": in_time_shown,
            "not_within_three_months": late_shown,
            # A share would give away a suppressed count (due is shown): both parts must be large enough.
            "share_within_three_months": _rounded(in_time / due, 3)
            if due >= min_count and None not in (due_shown, in_time_shown, late_shown)
            else None,
        },
        "early_warnings": {
            "count": warnings_shown,
            "case_years": case_years_shown,
            "per_case_year": _rounded(warnings / case_years)
            if warnings >= min_count and warnings_shown is not None and case_years_shown
            else None,
        },
        "change_rating": {
            "cases_rated_twice": hidden(len(rated)),
            "mean_first_total": _rounded(statistics.fmean(c.first_rating_total or 0 for c in rated))
            if rated and enough_rated
            else None,
            "mean_latest_total": _rounded(statistics.fmean(c.latest_rating_total or 0 for c in rated))
            if rated and enough_rated
            else None,
            "improved": hidden(improved) if enough_rated else None,
            "worsened": hidden(worsened) if enough_rated else None,
            "unchanged": hidden(len(rated) - improved - worsened) if enough_rated else None,
            "by_quarter": _rating_trend(cases, period, min_count),
        },
        "everyday_functioning": _everyday_functioning(cases, period, min_count),
        "method_fidelity": _method_fidelity(cases, period, as_of, min_count),
    }


def _deviations(cases: list[CaseFacts], period: Period, min_count: int = MIN_COUNT) -> dict[str, Any]:
    """Deviations in the period, in all and per rule; each count from fewer than
    :data:`MIN_COUNT` cases is suppressed like any other."""

    def shown(rules: set[str]) -> int | None:
        per_case = [
            sum(1 for rule, on in c.deviations if rule in rules and period.start <= on <= period.end)
            for c in cases
        ]
        return from_enough_cases(suppress(sum(per_case), min_count), sum(1 for n in per_case if n), min_count)

    every = {rule.value for rule in PracticeRule}
    return {"count": shown(every), "by_rule": {rule: shown({rule}) for rule in sorted(every)}}


# ------------------------------------------------------------------ method fidelity and trends
def _quartiles(days: list[int], min_count: int) -> dict[str, float | None]:
    """The lower and upper quartile (the middle half of the cases lies between them)."""
    if len(days) < max(min_count, 2):
        return {"lower_quartile_days": None, "upper_quartile_days": None}
    lower, _, upper = statistics.quantiles(days, n=4, method="inclusive")
    return {"lower_quartile_days": round(lower, 1), "upper_quartile_days": round(upper, 1)}


def _follow_ups(
    occasions: Sequence[Sequence[date]], cases: list[CaseFacts], period: Period, as_of: date
) -> tuple[int, int, set[int], set[int], set[int]]:
    """Follow-ups due in ``period``: each occasion (per case, in date order) calls for the next
    within three months; one is due when that deadline falls in the period, not after
    ``as_of`` nor after the case was closed, and met when the next occasion came by then.
    Returns (due, met, the cases with one due, with one met, with one not met)."""
    due = met = 0
    due_cases: set[int] = set()
    met_cases: set[int] = set()
    missed_cases: set[int] = set()
    for number, (c, dates) in enumerate(zip(cases, occasions, strict=True)):
        for index, occasion in enumerate(dates):
            deadline = add_months(occasion, 3)
            if not (period.start <= deadline <= period.end) or deadline > as_of:
                continue
            if c.closed_on is not None and c.closed_on <= deadline:
                continue
            due += 1
            due_cases.add(number)
            following = dates[index + 1] if index + 1 < len(dates) else None
            if following is not None and following <= deadline:
                met += 1
                met_cases.add(number)
            else:
                missed_cases.add(number)
    return due, met, due_cases, met_cases, missed_cases


def _waits(waits: list[int], min_count: int) -> dict[str, Any]:
    return {
        "cases": suppress(len(waits), min_count),
        "median_days": statistics.median(waits) if waits and len(waits) >= min_count else None,
        **_quartiles(waits, min_count),
    }


def _share(
    part: int, whole: int, part_shown: int | None, rest_shown: int | None, whole_shown: int | None
) -> float | None:
    """A share, shown only when the part, the rest and the whole are (it would give them away)."""
    if whole == 0 or None in (part_shown, rest_shown, whole_shown):
        return None
    return _rounded(part / whole, 3)


def _method_fidelity(cases: list[CaseFacts], period: Period, as_of: date, min_count: int) -> dict[str, Any]:
    """How closely the cases followed the method (see the module docstring)."""

    def counted(count: int, of_cases: int) -> int | None:
        return from_enough_cases(suppress(count, min_count), of_cases, min_count)

    # Joint steps in the period, and those at which every assigned coordinator took part.
    steps = [
        [everyone for _, on, everyone in c.joint_steps if period.start <= on <= period.end] for c in cases
    ]
    held = sum(len(s) for s in steps)
    joint = sum(sum(s) for s in steps)
    held_shown = counted(held, sum(1 for s in steps if s))
    joint_shown = counted(joint, sum(1 for s in steps if any(s)))
    short_shown = counted(held - joint, sum(1 for s in steps if not all(s)))

    summary_waits = [
        (c.first_mapping_summary_on - c.first_consent_on).days
        for c in cases
        if c.first_mapping_summary_on
        and c.first_consent_on
        and period.start <= c.first_mapping_summary_on <= period.end
    ]

    # Follow-ups counted from meetings held and SIP versions alike: from the first SIP on,
    # every SIP decided and every meeting held calls for the next of either within three months.
    occasions = [
        sorted({*c.sip_dates, *(d for d in c.meeting_dates if d >= c.sip_dates[0])}) if c.sip_dates else []
        for c in cases
    ]
    due, met, due_cases, met_cases, missed_cases = _follow_ups(occasions, cases, period, as_of)
    due_shown = counted(due, len(due_cases))
    met_shown = counted(met, len(met_cases))
    missed_shown = counted(due - met, len(missed_cases))
    return {
        "joint_steps": {
            "held": held_shown,
            "with_every_coordinator": joint_shown,
            "without_every_coordinator": short_shown,
            "share_with_every_coordinator": _share(joint, held, joint_shown, short_shown, held_shown),
        },
        "consent_to_mapping_summary": _waits(summary_waits, min_count),
        "follow_ups_met_by_meeting_or_sip": {
            "due": due_shown,
            "met_within_three_months": met_shown,
            "not_met_within_three_months": missed_shown,
            "share_met_within_three_months": _share(met, due, met_shown, missed_shown, due_shown),
        },
    }


def quarters(period: Period) -> list[date]:
    """The first day of each calendar quarter the period touches."""
    first = date(period.start.year, (period.start.month - 1) // 3 * 3 + 1, 1)
    found = []
    while first <= period.end:
        found.append(first)
        first = add_months(first, 3)
    return found


def _rating_trend(cases: list[CaseFacts], period: Period, min_count: int) -> list[dict[str, Any]]:
    """Per quarter: the cases rated in it (within the period) and the mean of each one's latest
    total (0–40) in that quarter."""
    trend = []
    for first in quarters(period):
        start, end = max(first, period.start), min(month_end(add_months(first, 2)), period.end)
        latest = [
            max((on, total) for on, total in c.ratings if start <= on <= end)[1]
            for c in cases
            if any(start <= on <= end for on, _ in c.ratings)
        ]
        trend.append(
            {
                "quarter": f"{first.year}-Q{(first.month - 1) // 3 + 1}",
                "cases": suppress(len(latest), min_count),
                "mean_total": _rounded(statistics.fmean(latest))
                if latest and len(latest) >= min_count
                else None,
            }
        )
    return trend


def _everyday_functioning(cases: list[CaseFacts], period: Period, min_count: int) -> dict[str, Any]:
    """*Hur fungerar vardagen*: the worksheet records no score (a summary only), so the trend a
    steering group can have is how many cases went through it and how many again."""
    assessed = [
        c for c in cases if any(period.start <= d <= period.end for d in c.everyday_functioning_dates)
    ]
    again = [c for c in assessed if sum(1 for d in c.everyday_functioning_dates if d <= period.end) >= 2]
    return {
        "cases_assessed": suppress(len(assessed), min_count),
        "cases_reassessed": suppress(len(again), min_count),
    }


# ------------------------------------------------------------------ secondary suppression
Cell = tuple[Any, ...]  # a figure's path in a group's figures, with its scope first
Relation = tuple[Cell, tuple[Cell, ...]]  # a total and the parts it is the sum of

RULES = tuple(sorted(rule.value for rule in PracticeRule))
AGE_GROUPS: dict[str, AgeGroup] = {
    "adults": "adult",
    "children_and_young_people": "child",
    "unknown": "unknown",
}
TOTAL = "total"
# Figures computed from counts: hidden when a count they are computed from is hidden (a share
# times its whole gives the part; a mean of a scope with its count, and the total's, give the
# other scope's sum).
DERIVED: dict[Cell, tuple[Cell, ...]] = {
    ("follow_ups", "share_within_three_months"): (
        ("follow_ups", "due"),
        ("follow_ups", "within_three_months"),
    ),
    ("early_warnings", "per_case_year"): (("early_warnings", "count"), ("early_warnings", "case_years")),
    ("change_rating", "mean_first_total"): (("change_rating", "cases_rated_twice"),),
    ("change_rating", "mean_latest_total"): (("change_rating", "cases_rated_twice"),),
    ("method_fidelity", "joint_steps", "share_with_every_coordinator"): (
        ("method_fidelity", "joint_steps", "held"),
        ("method_fidelity", "joint_steps", "with_every_coordinator"),
    ),
    ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "share_met_within_three_months"): (
        ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "due"),
        ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "met_within_three_months"),
    ),
    **{
        (*waits, figure): ((*waits, "cases"),)
        for waits in (("consent_to_first_sip",), ("method_fidelity", "consent_to_mapping_summary"))
        for figure in ("median_days", "lower_quartile_days", "upper_quartile_days")
    },
}


def derived_figures(figures: dict[str, Any]) -> dict[Cell, tuple[Cell, ...]]:
    """:data:`DERIVED` and each quarter's mean rating (from that quarter's count)."""
    quarterly = {
        ("change_rating", "by_quarter", i, "mean_total"): (("change_rating", "by_quarter", i, "cases"),)
        for i, _ in enumerate(figures["change_rating"]["by_quarter"])
    }
    return {**DERIVED, **quarterly}


def additive_paths(figures: dict[str, Any]) -> list[Cell]:
    """The paths of the figures that add up over the age groups (counts and case-years)."""
    paths: list[Cell] = []
    for index, _ in enumerate(figures["months"]):
        paths += [("months", index, key) for key in ("active", "opened", "closed")]
    paths += [
        ("deviations", "count"),
        *(("deviations", "by_rule", r) for r in figures["deviations"]["by_rule"]),
    ]
    paths += [
        ("consent_to_first_sip", "cases"),
        ("follow_ups", "due"),
        ("follow_ups", "within_three_months"),
        ("follow_ups", "not_within_three_months"),
        ("early_warnings", "count"),
        ("early_warnings", "case_years"),
        ("change_rating", "cases_rated_twice"),
        ("change_rating", "improved"),
        ("change_rating", "worsened"),
        ("change_rating", "unchanged"),
        *(
            ("change_rating", "by_quarter", i, "cases")
            for i, _ in enumerate(figures["change_rating"]["by_quarter"])
        ),
        ("everyday_functioning", "cases_assessed"),
        ("everyday_functioning", "cases_reassessed"),
        ("method_fidelity", "joint_steps", "held"),
        ("method_fidelity", "joint_steps", "with_every_coordinator"),
        ("method_fidelity", "joint_steps", "without_every_coordinator"),
        ("method_fidelity", "consent_to_mapping_summary", "cases"),
        ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "due"),
        ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "met_within_three_months"),
        ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "not_met_within_three_months"),
    ]
    return paths


def _within_scope(scope: str) -> list[Relation]:
    """The totals within one scope: the deviations per rule, each count and its complement."""
    deviations = ((scope, "deviations", "count"), tuple((scope, "deviations", "by_rule", r) for r in RULES))
    splits = [
        (("follow_ups", "due"), ("within_three_months", "not_within_three_months")),
        (("change_rating", "cases_rated_twice"), ("improved", "worsened", "unchanged")),
        (("method_fidelity", "joint_steps", "held"), ("with_every_coordinator", "without_every_coordinator")),
        (
            ("method_fidelity", "follow_ups_met_by_meeting_or_sip", "due"),
            ("met_within_three_months", "not_met_within_three_months"),
        ),
    ]
    return [
        deviations,
        *(((scope, *whole), tuple((scope, *whole[:-1], part) for part in parts)) for whole, parts in splits),
    ]


def _get(figures: dict[str, Any], path: Cell) -> Any:
    value: Any = figures
    for key in path:
        value = value[key]
    return value


def _set(figures: dict[str, Any], path: Cell, value: Any) -> None:
    target: Any = figures
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def protect(values: dict[Cell, float], hidden: set[Cell], relations: list[Relation]) -> set[Cell]:
    """Secondary suppression: the cells to hide so that no hidden cell can be derived.

    ``values`` are every cell's true value, ``hidden`` the cells suppressed already (each
    non-zero: a zero is always shown), and each relation a total that is the sum of its
    parts. A hidden cell can be derived when the shown cells determine it: by linear algebra
    over the relations (one hidden part in a total that is shown is the simplest case), or
    because the hidden parts of a shown total can only all be 1 (two hidden ones summing to
    2). While one can, another cell of a relation it is in is hidden: the smallest non-zero
    shown part, or, when every other part is zero or hidden, the total. Returns ``hidden``
    with the cells added.
    """
    hidden = {cell for cell in hidden if values[cell] != 0}
    for linked in _linked(relations):  # sums that share no cell are protected apart
        while True:
            exposed = derivable(values, hidden, linked)
            choice = _second_cell(values, hidden, linked, exposed) if exposed else None
            if choice is None:  # none derivable (or nothing left to hide)
                break
            hidden.add(choice)
    return hidden


def _linked(relations: list[Relation]) -> list[list[Relation]]:
    """The relations in sets that share cells (a table each), so that each is solved alone."""
    owner: dict[Cell, int] = {}
    sets: dict[int, list[Relation]] = {}
    for number, relation in enumerate(relations):
        total, parts = relation
        joined = {owner[cell] for cell in (total, *parts) if cell in owner}
        merged = [relation]
        for other in joined:
            merged += sets.pop(other)
        sets[number] = merged
        for t, ps in merged:
            for cell in (t, *ps):
                owner[cell] = number
    return list(sets.values())


def _second_cell(
    values: dict[Cell, float], hidden: set[Cell], relations: list[Relation], exposed: list[Cell]
) -> Cell | None:
    """The smallest shown non-zero part of a relation an exposed cell is in; else such a total."""
    around = [(total, parts) for total, parts in relations if total in exposed or set(parts) & set(exposed)]
    parts = {p for _, ps in around for p in ps if p not in hidden and values[p] != 0}
    if parts:
        return min(parts, key=lambda p: (values[p], repr(p)))
    totals = {t for t, _ in around if t not in hidden and values[t] != 0}
    return min(totals, key=lambda t: (values[t], repr(t))) if totals else None


def derivable(values: dict[Cell, float], hidden: set[Cell], relations: list[Relation]) -> list[Cell]:
    """The hidden cells the shown cells and the relations determine (sorted)."""
    cells = {cell for total, parts in relations for cell in (total, *parts)}
    unknowns = sorted(hidden & cells, key=repr)
    index = {cell: i for i, cell in enumerate(unknowns)}
    rows: list[list[Fraction]] = []
    exposed: set[Cell] = set()
    for total, parts in relations:
        row = [Fraction(0)] * len(unknowns)
        for cell, sign in ((total, 1), *((p, -1) for p in parts)):
            if cell in index:
                row[index[cell]] += sign
        if any(row):
            rows.append(row)
        hidden_parts = [p for p in parts if p in hidden]
        if (
            total not in hidden
            and hidden_parts
            and values[total] - sum(values[p] for p in parts if p not in hidden) == len(hidden_parts)
        ):
            exposed.update(hidden_parts)  # every hidden part is at least 1: all are exactly 1
    rank = _rank(rows)
    for cell in unknowns:
        unit = [Fraction(int(i == index[cell])) for i in range(len(unknowns))]
        if _rank([*rows, unit]) == rank:
            exposed.add(cell)
    return sorted(exposed, key=repr)


def _rank(rows: list[list[Fraction]]) -> int:
    matrix = [list(row) for row in rows]
    rank = 0
    columns = len(matrix[0]) if matrix else 0
    for column in range(columns):
        pivot = next((r for r in range(rank, len(matrix)) if matrix[r][column] != 0), None)
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        for r in range(len(matrix)):
            if r != rank and matrix[r][column] != 0:
                factor = matrix[r][column] / matrix[rank][column]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[rank], strict=True)]
        rank += 1
    return rank


def _age_group_table(
    raw: dict[str, dict[str, Any]], shown: dict[str, dict[str, Any]]
) -> tuple[dict[Cell, float], set[Cell], list[Relation]]:
    """One group's cells (scope first: the total or an age group), what is hidden, and how
    they add up: each figure's total is the sum of the age groups', and in every scope the
    deviations are the sum of those per rule."""
    values: dict[Cell, float] = {}
    hidden: set[Cell] = set()
    relations: list[Relation] = []
    scopes = list(shown)
    for path in additive_paths(raw[TOTAL]):
        for scope in scopes:
            cell = (scope, *path)
            values[cell] = _get(raw[scope], path)
            if _get(shown[scope], path) is None:
                hidden.add(cell)
        relations.append(((TOTAL, *path), tuple((scope, *path) for scope in scopes if scope != TOTAL)))
    for scope in scopes:
        relations += _within_scope(scope)
    return values, hidden, relations


def protected_figures(cases: list[CaseFacts], period: Period, as_of: date) -> dict[str, Any]:
    """A group's figures in all and per age group, every one suppressed as the module
    docstring says, the secondary suppression included."""
    scopes: dict[str, list[CaseFacts]] = {TOTAL: cases}
    for name, group in AGE_GROUPS.items():
        members = [c for c in cases if c.age_group == group]
        if members or group != "unknown":  # the unknown group only while facts lack it
            scopes[name] = members
    raw = {scope: group_figures(members, period, as_of, min_count=1) for scope, members in scopes.items()}
    shown = {scope: group_figures(members, period, as_of) for scope, members in scopes.items()}
    values, hidden, relations = _age_group_table(raw, shown)
    for cell in protect(values, hidden, relations):
        _set(shown[cell[0]], cell[1:], None)
    for scope in shown.values():
        for figure, sources in derived_figures(scope).items():
            if any(_get(scope, source) is None for source in sources):
                _set(scope, figure, None)
    total = shown.pop(TOTAL)
    return {**total, "by_age_group": shown}


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
        {"level": level, "key": key, **protected_figures(cases, period, as_of)}
        for key, cases in sorted(groups.items())
    ]
