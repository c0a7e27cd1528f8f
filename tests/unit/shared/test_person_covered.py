"""The one rule for a person named in a case (``person_covered``): who may be told of it and
open their own plan link. Not an organisation's reading of the case (``may_see``): being in a
coordinating organisation lets its coordinators in, not its other people."""

from __future__ import annotations

from typing import Any

import pytest

from services.shared.access import person_covered

TODAY = "2025-03-14"
IN_FORCE: dict[str, Any] = {
    "consent_orgs": ["region", "city"],
    "consent_relatives": True,
    "consent_valid_until": None,
}
WITHDRAWN: dict[str, Any] = {"consent_orgs": None, "consent_relatives": False, "consent_valid_until": None}
NO_RELATIVES: dict[str, Any] = {**IN_FORCE, "consent_relatives": False}
CITY_ONLY: dict[str, Any] = {**IN_FORCE, "consent_orgs": ["city"]}
EXPIRED: dict[str, Any] = {**IN_FORCE, "consent_valid_until": "2025-03-13"}
LAST_DAY: dict[str, Any] = {**IN_FORCE, "consent_valid_until": TODAY}


@pytest.mark.parametrize(
    ("who", "consent", "covered"),
    [
        # The client: always, whatever the consent says.
        ({"client": True}, WITHDRAWN, True),
        ({"client": True}, EXPIRED, True),
        # A coordinator of the case: always while their organisation coordinates.
        ({"person_organisation": "region", "coordinator": True}, WITHDRAWN, True),
        ({"person_organisation": "region", "coordinator": True}, EXPIRED, True),
        # A member of an organisation: while the consent in force covers it.
        ({"person_organisation": "region"}, IN_FORCE, True),
        ({"person_organisation": "region"}, LAST_DAY, True),
        ({"person_organisation": "region"}, WITHDRAWN, False),
        ({"person_organisation": "region"}, EXPIRED, False),
        ({"person_organisation": "housing"}, IN_FORCE, False),
        # The coordinating organisation's other people: only by the consent, like anyone.
        ({"person_organisation": "region"}, CITY_ONLY, False),
        # A relative, and a private person the plan names: while the consent covers relatives.
        ({"relative": True}, IN_FORCE, True),
        ({"relative": True}, NO_RELATIVES, False),
        ({"relative": True}, WITHDRAWN, False),
        ({"relative": True}, EXPIRED, False),
        ({"person_organisation": None}, IN_FORCE, True),
        ({"person_organisation": None}, NO_RELATIVES, False),
    ],
)
def test_who_the_consent_lets_be_told_or_let_in(
    who: dict[str, Any], consent: dict[str, Any], covered: bool
) -> None:
    person = {"person_organisation": None, **who}
    organisation = person.pop("person_organisation")
    assert person_covered(organisation, **person, **consent, today=TODAY) is covered
