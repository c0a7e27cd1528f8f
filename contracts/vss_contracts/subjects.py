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
    "DEAD_LETTER_STREAM",
    "DEAD_LETTER_SUBJECT_PREFIX",
    "HEADER_CASE_POSITION",
    "HEADER_DLQ_CONSUMER",
    "HEADER_DLQ_ORIGINAL_MSG_ID",
    "HEADER_DLQ_REASON",
    "HEADER_DLQ_SEQUENCE",
    "HEADER_DLQ_STREAM",
    "HEADER_EVENT_TYPE",
    "HEADER_LOG_POSITION",
    "HEADER_MSG_ID",
    "SHARE_STREAM",
    "SHARE_SUBJECTS",
    "SHARE_SUBJECT_PREFIX",
    "SHARING_EVENT_SOURCE",
    "case_subject",
    "dead_letter_subject",
    "share_subject",
    "share_token",
]

CASE_STREAM = "VSS_CASE"
CASE_SUBJECT_PREFIX = "vss.case"
CASE_SUBJECTS = f"{CASE_SUBJECT_PREFIX}.>"
# CloudEvents ``source`` of every case event: the case service of this system.
CASE_EVENT_SOURCE = "/vss/case"

# Each organisation's share of the case events (the sharing service): the events of the cases
# it may see, on ``vss.share.<organisation token>.<case_id>.<EventName>``, plus SharingEnded
# (``source`` SHARING_EVENT_SOURCE) when it may no longer see a case. VSS_CASE is internal.
SHARE_STREAM = "VSS_SHARE"
SHARE_SUBJECT_PREFIX = "vss.share"
SHARE_SUBJECTS = f"{SHARE_SUBJECT_PREFIX}.>"
SHARING_EVENT_SOURCE = "/vss/sharing"

# Headers on every published event. The body is the structured CloudEvent; headers
# repeat what routing and de-duplication need without parsing it.
HEADER_MSG_ID = "Nats-Msg-Id"  # = the CloudEvent id (the event id): JetStream drops a repeat
HEADER_EVENT_TYPE = "Vss-Event-Type"  # = the CloudEvent type, e.g. se.vss.case.SipDecided.v1
HEADER_LOG_POSITION = "Vss-Log-Position"  # = the event's position in the case store's log
# On a meetings event: the case store's log position the meetings service had applied when it
# decided it (where in the case history it belongs; a replay puts it back there).
HEADER_CASE_POSITION = "Vss-Case-Position"

# Messages a consumer could not apply: the original body and headers plus these.
DEAD_LETTER_STREAM = "VSS_DLQ"
DEAD_LETTER_SUBJECT_PREFIX = "vss.dlq"
HEADER_DLQ_REASON = "Vss-Dlq-Reason"
HEADER_DLQ_STREAM = "Vss-Dlq-Stream"
HEADER_DLQ_SEQUENCE = "Vss-Dlq-Sequence"
HEADER_DLQ_CONSUMER = "Vss-Dlq-Consumer"
# A letter's Nats-Msg-Id is "<consumer>:<stream>:<sequence>"; the original one is kept here.
HEADER_DLQ_ORIGINAL_MSG_ID = "Vss-Dlq-Original-Msg-Id"


def case_subject(case_id: UUID | str, event_name: str, *, prefix: str = CASE_SUBJECT_PREFIX) -> str:
    """The subject an event of ``event_name`` (e.g. ``SipDecided``) of a case is published on."""
    return f"{prefix}.{case_id}.{event_name}"


def dead_letter_subject(
    consumer: str, original_subject: str, *, prefix: str = DEAD_LETTER_SUBJECT_PREFIX
) -> str:
    """Where a consumer parks a message it cannot apply: ``vss.dlq.<consumer>.<original subject>``."""
    return f"{prefix}.{consumer}.{original_subject}"


def share_token(organisation_id: str) -> str:
    """An organisation id as one subject token: ``.`` (allowed in ids, a token separator in
    subjects) becomes ``~`` (never in an id), so the mapping is one-to-one."""
    return organisation_id.replace(".", "~")


def share_subject(
    organisation_id: str, case_id: UUID | str, event_name: str, *, prefix: str = SHARE_SUBJECT_PREFIX
) -> str:
    """Where an organisation receives an event of a case it may see:
    ``vss.share.<organisation token>.<case_id>.<EventName>`` (filter ``vss.share.<token>.>``)."""
    return f"{prefix}.{share_token(organisation_id)}.{case_id}.{event_name}"
