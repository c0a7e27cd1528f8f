"""Who may see a case's data (the method's consent rule, as the query API enforces it).

A case is visible to the organisations of its current coordinators, and to the
organisations its current consent covers while that consent is neither withdrawn nor
past its ``valid_until``. A withdrawal (entire, or of some organisations) takes effect
with the event: the next read decides on the view that has applied it.
"""

from __future__ import annotations

from services.projections.domain.case_view import View

# An access grant as stored beside the view: (organisation id, valid until or None).
Grant = tuple[str, str | None]


def grants(view: View) -> list[Grant]:
    """The organisations that may see the case, each with the last day it may (None: open-ended)."""
    found: dict[str, str | None] = {}
    consent = view["consent"]
    if consent is not None and not consent["withdrawn"]:
        for organisation in consent["organisations"]:
            found[organisation["id"]] = consent["valid_until"]
    for coordinator in view["coordinators"]:
        found[coordinator["organisation"]["id"]] = None  # coordinators' organisations, always
    return sorted(found.items())


def may_see(view: View, organisation_id: str, today: str) -> bool:
    return any(org == organisation_id and (until is None or until >= today) for org, until in grants(view))
