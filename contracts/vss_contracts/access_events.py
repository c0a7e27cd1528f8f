"""The access log on the bus: every read of a case's data, and every refused attempt.

Recorded by every API that serves a case's data (and by ``vss export``), published by
the projections service's query API on stream ``VSS_ACCESS``, subject
``vss.access.<case_id>.<outcome>`` (``none`` for reads that name no case), as a
structured CloudEvent of type :attr:`CaseDataAccessed.TYPE` with ``Nats-Msg-Id`` = the
record id. Records are kept at least five years.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime

from vss_contracts.types import ContractModel

ACCESS_STREAM = "VSS_ACCESS"
ACCESS_SUBJECT_PREFIX = "vss.access"
ACCESS_EVENT_SOURCE = "/vss/projections"


class CaseDataAccessed(ContractModel):
    """Who read (or tried to read) what of a case, when, for which organisation."""

    TYPE: ClassVar[str] = "se.vss.access.CaseDataAccessed.v1"
    record_id: str
    at: AwareDatetime
    user_id: str
    organisation_id: str
    roles: list[str]
    case_id: str | None = None
    read: str  # overview | journal | … | case | case_as_of | history | command | export | meetings | …
    outcome: Literal["granted", "denied"]
    reason: str | None = None
    # The reader's principal (region | municipality | other | client; calendar_link for a feed
    # read through a signed link; plan_link for a plan read through a person's own signed link,
    # the user id then the holder key). Optional: records published before it was added have none.
    principal: str | None = None


def access_subject(case_id: str | None, outcome: str, *, prefix: str = ACCESS_SUBJECT_PREFIX) -> str:
    return f"{prefix}.{case_id or 'none'}.{outcome}"
