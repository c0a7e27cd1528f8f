"""NATS JetStream stream and subject names for the case events.

Subjects are ``vss.case.<case_id>.<EventName>`` with the unversioned event name, so
a subscriber may filter on one case (``vss.case.<id>.>``), one kind of event
(``vss.case.*.SipDecided``) or everything (``vss.case.>``).
"""

from __future__ import annotations

from uuid import UUID

__all__ = [
    "CASE_EVENT_SOURCE",
    "CASE_STREAM",
    "CASE_SUBJECTS",
    "CASE_SUBJECT_PREFIX",
    "case_subject",
]

CASE_STREAM = "VSS_CASE"
CASE_SUBJECT_PREFIX = "vss.case"
CASE_SUBJECTS = f"{CASE_SUBJECT_PREFIX}.>"
# CloudEvents ``source`` of every case event: the case service of this system.
CASE_EVENT_SOURCE = "/vss/case"


def case_subject(case_id: UUID | str, event_name: str) -> str:
    """The subject an event of ``event_name`` (e.g. ``SipDecided``) of a case is published on."""
    return f"{CASE_SUBJECT_PREFIX}.{case_id}.{event_name}"
