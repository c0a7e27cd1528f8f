"""The delivery record in a case's journal: who was told what, when, on which channel.

The notifications service publishes its record of each case (``VSS_NOTIFICATIONS``):
a message sent or failed, an urgent message acknowledged, an unacknowledged early
warning escalated. The journal keeps one row per such event beside the case's own
events, with a one-line summary like theirs. The record carries no message content:
the template says what kind of message it was.
"""

from __future__ import annotations

import json
from typing import Any

from services.projections.domain.events import NotificationRecord
from vss_contracts import notification_events as ne
from vss_contracts.chain import GENESIS_HASH

# The status a journal row shows for each event type.
STATUSES: dict[str, str] = {
    ne.NotificationSent.TYPE: "sent",
    ne.NotificationFailed.TYPE: "failed",
    ne.NotificationAcknowledged.TYPE: "acknowledged",
    ne.NotificationEscalated.TYPE: "escalated",
}

# What each template is about, for people (a template this version does not know is named as is).
TEMPLATES: dict[str, str] = {
    "meeting_invitation": "Meeting invitation",
    "meeting_updated": "Meeting update",
    "meeting_cancelled": "Meeting cancellation",
    "meeting_reminder": "Meeting reminder",
    "change_rating_requested": "Change rating request",
    "contact_cadence_missed": "Missed contact notice",
    "coordinator_assigned": "Coordinator assignment",
    "early_warning": "Early warning alert",
    "early_warning_escalation": "Early warning escalation",
    "early_warning_plan_updated": "Early warning plan update",
    "follow_up_overdue": "Overdue follow-up notice",
    "sip_decided": "New SIP notice",
}

CHANNELS: dict[str, str] = {"email": "e-mail", "webhook": "webhook", "sms": "SMS"}

# The columns of a delivery row, in the order :func:`delivery_row` gives them.
COLUMNS = (
    "case_id",
    "version",
    "event_id",
    "type",
    "status",
    "time",
    "at",
    "delivery_key",
    "recipient_id",
    "recipient_name",
    "recipient_role",
    "recipient_organisation",
    "recipient_user",
    "channel",
    "template",
    "cause_event_id",
    "cause_event_type",
    "urgent",
    "warning_id",
    "attempts",
    "message_id",
    "reason",
    "details",
    "summary",
    "event_hash",
    "verified",
)

# The time of the fact itself, per type (the record's ``time`` is when it was recorded).
_AT = {
    ne.NotificationSent.TYPE: "sent_at",
    ne.NotificationFailed.TYPE: "failed_at",
    ne.NotificationAcknowledged.TYPE: "acknowledged_at",
    ne.NotificationEscalated.TYPE: "escalated_at",
}


def _line(text: Any) -> str:
    """Free text on one line."""
    return " ".join(str(text).split())


def _what(template: str | None) -> str:
    if not template:
        return "Message"
    return TEMPLATES.get(template) or _line(template.replace("_", " ")).capitalize()


def _who(recipient: dict[str, Any] | None) -> str:
    if not recipient:
        return "an unnamed recipient"
    details = [str(recipient.get("role") or "").replace("_", " ")]
    if recipient.get("organisation_id"):
        details.append(str(recipient["organisation_id"]))
    described = ", ".join(d for d in details if d)
    name = _line(recipient.get("name") or recipient.get("recipient_id") or "?")
    return f"{name} ({described})" if described else name


def _by(channel: str | None) -> str:
    return f"by {CHANNELS.get(channel or '', channel or 'an unknown channel')}"


def _attempts(n: Any) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def summary(record: NotificationRecord) -> str:
    """One line for people, e.g. "Meeting invitation sent to Anna Karlsson (coordinator, …) by e-mail"."""
    d = record.data
    urgent = " (urgent)" if d.get("urgent") else ""
    if record.type == ne.NotificationSent.TYPE:
        return (
            f"{_what(d.get('template'))}{urgent} sent to {_who(d.get('recipient'))} {_by(d.get('channel'))}"
        )
    if record.type == ne.NotificationFailed.TYPE:
        reason = _line(d.get("reason") or "no reason given")
        return (
            f"{_what(d.get('template'))}{urgent} to {_who(d.get('recipient'))} {_by(d.get('channel'))}"
            f" not delivered after {_attempts(d.get('attempts'))}: {reason}"
        )
    if record.type == ne.NotificationAcknowledged.TYPE:
        return f"Early warning alert acknowledged by {_who(d.get('recipient'))}"
    if record.type == ne.NotificationEscalated.TYPE:
        organisations = ", ".join(d.get("organisation_ids") or ())
        to = f"the duty contacts of {organisations}" if organisations else "no duty contact (none configured)"
        count = d.get("unacknowledged", 0)
        unacknowledged = "1 urgent message" if count == 1 else f"{count} urgent messages"
        return f"Early warning unacknowledged ({unacknowledged}): escalated to {to}"
    return f"{record.type.rsplit('.', 2)[-2]} (a type this version does not describe)"


def status(type_name: str) -> str:
    return STATUSES.get(type_name) or type_name.rsplit(".", 2)[-2].removeprefix("Notification").lower()


def continues_chain(record: NotificationRecord, head: tuple[int, str] | None) -> bool:
    """Does this event follow the case's delivery record so far (``head``: last version and hash)?"""
    version, previous = head if head is not None else (0, GENESIS_HASH)
    return record.version == version + 1 and record.prev_hash == previous and record.hash_ok


def _details(record: NotificationRecord) -> dict[str, Any]:
    d = record.data
    if record.type == ne.NotificationFailed.TYPE:
        return {"permanent": d.get("permanent", True)}
    if record.type == ne.NotificationEscalated.TYPE:
        return {
            "triggered_at": d.get("triggered_at"),
            "organisation_ids": list(d.get("organisation_ids") or ()),
            "unacknowledged": d.get("unacknowledged"),
        }
    return {}


def delivery_row(record: NotificationRecord, verified: bool) -> tuple[Any, ...]:
    """The row of :data:`COLUMNS` for one event of the delivery record."""
    d = record.data
    recipient = d.get("recipient") or {}
    warning = d.get("warning_id")
    return (
        record.case_id,
        record.version,
        record.event_id,
        record.type,
        status(record.type),
        record.time,
        d.get(_AT.get(record.type, ""), record.time),
        d.get("delivery_key"),
        recipient.get("recipient_id"),
        recipient.get("name"),
        recipient.get("role"),
        recipient.get("organisation_id"),
        recipient.get("user_id"),
        d.get("channel"),
        d.get("template"),
        d.get("cause_event_id"),
        d.get("cause_event_type"),
        1 if d.get("urgent") else 0,
        str(warning) if warning else None,
        d.get("attempts"),
        d.get("message_id"),
        d.get("reason"),
        json.dumps(_details(record), separators=(",", ":")),
        summary(record),
        record.event_hash,
        1 if verified else 0,
    )
