"""Swedish personal identity numbers (*personnummer* and *samordningsnummer*).

The canonical form is twelve digits, ``YYYYMMDDNNNC``: the date of birth with the
century, a three-digit birth number and a Luhn check digit computed over the last
ten digits. A *samordningsnummer* (coordination number, for people not registered in
Sweden) adds 60 to the day of the month and is accepted as well.
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "InvalidPersonalIdentityNumber",
    "birth_date",
    "luhn_check_digit",
    "normalise_personal_identity_number",
]

_PATTERN = re.compile(r"^(\d{8})-?(\d{4})$")


class InvalidPersonalIdentityNumber(ValueError):
    """The text is not a valid Swedish personal identity number."""


def luhn_check_digit(nine_digits: str) -> int:
    """The Luhn check digit over the nine digits YYMMDDNNN."""
    total = 0
    for index, char in enumerate(nine_digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return (10 - total % 10) % 10


def birth_date(normalised: str) -> date:
    """The date of birth in a normalised (twelve-digit) number."""
    day = int(normalised[6:8])
    return date(int(normalised[:4]), int(normalised[4:6]), day - 60 if day > 60 else day)


def normalise_personal_identity_number(text: str, *, today: date | None = None) -> str:
    """Validate ``YYYYMMDD-NNNC`` or ``YYYYMMDDNNNC`` and return the twelve-digit form.

    Checks, in order: the format, that the date exists (day minus 60 for a
    *samordningsnummer*), that it is not after ``today`` when given, and the Luhn digit.
    """
    match = _PATTERN.match(text.strip())
    if match is None:
        raise InvalidPersonalIdentityNumber("expected twelve digits as YYYYMMDD-NNNC or YYYYMMDDNNNC")
    birth, tail = match.groups()
    year, month, day = int(birth[:4]), int(birth[4:6]), int(birth[6:8])
    if day > 60:  # samordningsnummer
        day -= 60
    try:
        born = date(year, month, day)
    except ValueError:
        raise InvalidPersonalIdentityNumber(f"{birth} is not a valid date") from None
    if year < 1850:
        raise InvalidPersonalIdentityNumber(f"{birth} is not a plausible date of birth")
    if today is not None and born > today:
        raise InvalidPersonalIdentityNumber(f"{birth} is in the future")
    digits = birth[2:] + tail
    if luhn_check_digit(digits[:9]) != int(digits[9]):
        raise InvalidPersonalIdentityNumber("the check digit (Luhn) does not match")
    return birth + tail
