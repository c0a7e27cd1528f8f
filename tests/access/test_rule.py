"""The access rule is implemented once (services.shared.access); the query API's grants agree."""

from __future__ import annotations

from typing import Any

import pytest

from services.projections.domain import access as view_access
from services.shared.access import grants, may_see


def _view(coordinating: list[str], consent: dict[str, Any] | None) -> Any:
    return {"coordinators": [{"organisation": {"id": org}} for org in coordinating], "consent": consent}


@pytest.mark.parametrize(
    ("coordinating", "consent"),
    [
        (["region"], None),
        (["region", "kommun"], {"withdrawn": False, "valid_until": None, "organisations": [{"id": "fk"}]}),
        (
            ["region"],
            {
                "withdrawn": False,
                "valid_until": "2026-06-30",
                "organisations": [{"id": "region"}, {"id": "fk"}],
            },
        ),
        (["region"], {"withdrawn": True, "valid_until": None, "organisations": [{"id": "fk"}]}),
    ],
)
def test_the_query_apis_grants_are_the_shared_rules(
    coordinating: list[str], consent: dict[str, Any] | None
) -> None:
    in_force = consent is not None and not consent["withdrawn"]
    shared = grants(
        coordinating,
        [o["id"] for o in consent["organisations"]] if consent and in_force else (),
        consent["valid_until"] if consent else None,
    )
    assert view_access.grants(_view(coordinating, consent)) == shared


def test_a_consent_grant_ends_with_its_valid_until_a_coordinators_does_not() -> None:
    case = grants(["region"], ["region", "fk"], "2026-06-30")
    assert may_see("fk", case, "2026-06-30")
    assert not may_see("fk", case, "2026-07-01")
    assert may_see("region", case, "2027-01-01")
    assert not may_see("annan-kommun", case, "2026-01-01")
