"""Which organisations a case view grants access to (the rule itself: services.shared.access).

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
    """The organisations that may see the case, each with the last day it may (None: open-ended).

    The same as ``services.shared.access.grants`` over the view's coordinators and consent
    (the domain imports no shared code; a test holds the two equal).
    """
    found: dict[str, str | None] = {}
    consent = view["consent"]
    if consent is not None and not consent["withdrawn"]:
        for organisation in consent["organisations"]:
            found[organisation["id"]] = consent["valid_until"]
    for coordinator in view["coordinators"]:
        found[coordinator["organisation"]["id"]] = None  # coordinators' organisations, always
    return sorted(found.items())
