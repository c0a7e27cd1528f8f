"""Which organisations a case view grants access to, by the one rule in services.shared.access.

A case is visible to the organisations of its current coordinators, to the organisations
its current consent covers while that consent is neither withdrawn nor past its
``valid_until``, and to the organisation that opened it while no consent has been given
(the view's ``consent`` is null until the first one, and stays set after a withdrawal).
A withdrawal (entire, or of some organisations) takes effect with the event: the next
read decides on the view that has applied it.
"""

from __future__ import annotations

from services.projections.domain.case_view import View
from services.shared import access
from services.shared.access import Grant

__all__ = ["Grant", "grants"]


def grants(view: View) -> list[Grant]:
    """The organisations that may see the case, each with the last day it may (None: open-ended):
    the one rule (``services.shared.access.grants``) over the view's coordinators, consent and
    opener."""
    consent = view["consent"]
    in_force = consent is not None and not consent["withdrawn"]
    return access.grants(
        (c["organisation"]["id"] for c in view["coordinators"]),
        (o["id"] for o in consent["organisations"]) if in_force else (),
        consent["valid_until"] if in_force else None,
        opened_by=view["opened_by_organisation"]["id"],
        consent_given=consent is not None,
    )
