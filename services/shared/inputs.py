"""Sane ranges for what a client sends, checked the same way by every API that records it.

- Every date (and date-time) in a request body lies within a window around today: the dates
  of the method's events (opened_on, signed_on, held_on, due_on, a meeting's start …) are
  the days things happened or will happen, not year 1 or 9999. A date outside the window
  would make the services downstream compute schedules across millennia (one case opened on
  0001-01-01 once made 105,707 "contact cadence missed" events).
- Text refuses control characters: none but TAB, CR and LF anywhere, and in one-line text
  (names, reasons, ids; every text but ``LongText``) not CR or LF either.

Both are checked on the validated request body, so one implementation serves the case and
the meetings APIs; a refusal is a 422 problem whose ``errors`` name each field and rule.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, get_args, get_origin

from fastapi import Path, Query
from pydantic import BaseModel, StringConstraints

from services.shared.problems import ProblemException
from vss_contracts.types import LongText

TEN_YEARS_IN_DAYS = 3653  # 10 × 365 + 3 leap days at most
FIVE_YEARS_IN_DAYS = 1827  # 5 × 365 + 2 leap days

_MULTI_LINE = next(a for a in get_args(LongText)[1:] if isinstance(a, StringConstraints))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 but TAB, LF, CR; and DEL
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class DateWindow:
    """How far before and after today a date a client sends may lie (both ends included)."""

    past_days: int = TEN_YEARS_IN_DAYS
    future_days: int = FIVE_YEARS_IN_DAYS

    def __post_init__(self) -> None:
        if not (0 <= self.past_days <= 36_500 and 0 <= self.future_days <= 36_500):
            raise ValueError("the date window reaches 0 to 36,500 days before and after today")

    def bounds(self, today: date) -> tuple[date, date]:
        return today - timedelta(days=self.past_days), today + timedelta(days=self.future_days)

    def describe(self) -> str:
        return (
            f"from {self.past_days} days before today until {self.future_days} days after"
            " (VSS_DATE_WINDOW_PAST_DAYS, VSS_DATE_WINDOW_FUTURE_DAYS)"
        )

    def error(self, field: str, value: date, today: date) -> dict[str, str] | None:
        """The error entry for a date outside the window, or None."""
        earliest, latest = self.bounds(today)
        if earliest <= value <= latest:
            return None
        return {
            "field": field,
            "rule": "date_window",
            "message": f"{value.isoformat()} is outside {earliest.isoformat()}..{latest.isoformat()}"
            f" ({self.describe()})",
        }


WINDOW_DESCRIPTION = (
    "Every date in a request body lies within a window around today (by default 3653 days back and"
    " 1827 ahead; VSS_DATE_WINDOW_PAST_DAYS, VSS_DATE_WINDOW_FUTURE_DAYS), else 422 with the rule"
    " `date_window`. Text refuses control characters (rule `control_character`): NUL and the"
    " other C0 characters anywhere, CR and LF too in one-line text (all text but long texts such"
    " as summaries, notes and descriptions)."
)


def input_errors(body: BaseModel, *, today: date, window: DateWindow) -> list[dict[str, str]]:
    """Every date outside the window and every text with a control character in ``body``."""
    errors: list[dict[str, str]] = []
    _walk_model(body, "", today, window, errors)
    return errors


def refuse_bad_input(body: BaseModel, *, today: date, window: DateWindow) -> None:
    """Raise a 422 problem naming each field of ``body`` outside its range."""
    errors = input_errors(body, today=today, window=window)
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ProblemException(422, "Invalid request", summary, code="validation_failed", errors=errors)


def _walk_model(
    model: BaseModel, prefix: str, today: date, window: DateWindow, errors: list[dict[str, str]]
) -> None:
    for name, multi_line in _text_fields(type(model)):
        _walk(getattr(model, name), f"{prefix}{name}", multi_line, today, window, errors)


@functools.cache
def _text_fields(model_type: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    """Each field of the model and whether its text may span lines: read off the types once
    per model, not on every request."""
    return tuple(
        (name, _MULTI_LINE in info.metadata or _mentions(info.annotation, _MULTI_LINE))
        for name, info in model_type.model_fields.items()
    )


_COLLECTIONS = (list, tuple, set, frozenset)  # a tuple, not ``list | tuple | …``: no union built per call


def _walk(
    value: Any, field: str, multi_line: bool, today: date, window: DateWindow, errors: list[dict[str, str]]
) -> None:
    # Text first: most values are; the kinds do not overlap, so the order changes no answer.
    if isinstance(value, str):
        control = (_CONTROL if multi_line else _CONTROL_ONE_LINE).search(value)
        if control is not None:
            allowed = "TAB, CR and LF only" if multi_line else "one line, no control characters"
            errors.append(
                {
                    "field": field,
                    "rule": "control_character",
                    "message": f"control character U+{ord(control.group()):04X} in text ({allowed})",
                }
            )
    elif value is None:
        return
    elif isinstance(value, BaseModel):
        _walk_model(value, f"{field}.", today, window, errors)
    elif isinstance(value, _COLLECTIONS):
        for index, item in enumerate(value):
            _walk(item, f"{field}.{index}", multi_line, today, window, errors)
    elif isinstance(value, date):  # a datetime is a date too
        day = value.date() if isinstance(value, datetime) else value
        error = window.error(field, day, today)
        if error is not None:
            errors.append(error)


def _mentions(annotation: Any, constraint: object) -> bool:
    """Whether the type (e.g. ``list[LongText] | None``) carries ``constraint`` anywhere in it."""
    if annotation is None:
        return False
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return constraint in metadata or _mentions(base, constraint)
    return any(_mentions(arg, constraint) for arg in get_args(annotation))


# A person in a path or query (a person is organisation and user id): checked before anything
# about the request is logged, so no control character or megabyte reaches the access log.
USER_ID_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,120}$"
ORGANISATION_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"  # the contracts' OrganisationId

PersonUserId = Annotated[
    str,
    Path(
        max_length=120,
        pattern=USER_ID_PATTERN,
        description="The person's user id (no spaces or control characters)",
    ),
]
PersonOrganisationId = Annotated[
    str,
    Path(
        max_length=64,
        pattern=ORGANISATION_ID_PATTERN,
        description="The person's organisation id (a person is organisation and user id)",
    ),
]
PersonOrganisation = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=ORGANISATION_ID_PATTERN,
        description="The person's organisation (a person is organisation and user id); default: yours",
    ),
]
