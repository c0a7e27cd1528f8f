"""One meeting in a case's schedule, as the schedule holds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from services.shared.ics import identity_from_json, identity_to_json, meeting_uid
from services.shared.invitees import invitee_from_json, invitee_json
from vss_contracts.meeting_events import Answer, AnswerVia, Invitee, MeetingKind, PlaceKind


class MeetingStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Answered:
    """An invitee's answer (*OSA*): to which SEQUENCE of the invitation, how and when."""

    answer: Answer
    via: AnswerVia
    sequence: int
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer.value,
            "via": self.via.value,
            "sequence": self.sequence,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Answered:
        return cls(
            answer=Answer(value["answer"]),
            via=AnswerVia(value["via"]),
            sequence=int(value["sequence"]),
            at=datetime.fromisoformat(value["at"]),
        )


@dataclass
class Meeting:
    """A meeting and its iCalendar identity: ``uid`` never changes, ``sequence`` grows with each change."""

    meeting_id: UUID
    case_id: UUID
    kind: MeetingKind
    starts_at: datetime  # aware, Europe/Stockholm
    ends_at: datetime
    invitees: dict[str, Invitee]  # by invitee_id, in the order they were invited
    reason: str
    sequence: int = 0
    status: MeetingStatus = MeetingStatus.SCHEDULED
    sip_version: int | None = None
    warning_id: UUID | None = None
    location: str | None = None
    held_on: date | None = None
    dropped: dict[str, Invitee] = field(default_factory=dict)  # uninvited: they get a CANCEL
    reminders_sent: list[int] = field(default_factory=list)  # days_before, for this sequence
    rating_requested: bool = False
    place_kind: PlaceKind | None = None
    agenda: list[str] = field(default_factory=list)  # *dagordning*, in order
    proposed: bool = False  # the schedule's suggestion: nobody invited until a coordinator confirms
    answers: dict[str, Answered] = field(default_factory=dict)  # by invitee_id

    @property
    def partstats(self) -> dict[str, str]:
        """The invitees' answers as iCalendar PARTSTAT values, by invitee id."""
        return {key: a.answer.value.upper() for key, a in self.answers.items()}

    @property
    def uid(self) -> str:
        """The iCalendar UID: stable for the meeting's whole life."""
        return meeting_uid(self.meeting_id)

    @property
    def is_cancelled(self) -> bool:
        return self.status is MeetingStatus.CANCELLED

    @property
    def is_upcoming(self) -> bool:
        return self.status is MeetingStatus.SCHEDULED

    def to_json(self) -> dict[str, Any]:
        return {
            **identity_to_json(self),
            "invitees": [invitee_json(i) for i in self.invitees.values()],
            "reason": self.reason,
            "sequence": self.sequence,
            "status": self.status.value,
            "sip_version": self.sip_version,
            "warning_id": str(self.warning_id) if self.warning_id else None,
            "location": self.location,
            "held_on": self.held_on.isoformat() if self.held_on else None,
            "dropped": [invitee_json(i) for i in self.dropped.values()],
            "reminders_sent": list(self.reminders_sent),
            "rating_requested": self.rating_requested,
            "place_kind": self.place_kind.value if self.place_kind else None,
            "agenda": list(self.agenda),
            "proposed": self.proposed,
            "answers": {k: a.to_json() for k, a in self.answers.items()},
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Meeting:
        invitees = [invitee_from_json(i) for i in value["invitees"]]
        dropped = [invitee_from_json(i) for i in value["dropped"]]
        return cls(
            **identity_from_json(value),
            invitees={i.invitee_id: i for i in invitees},
            reason=value["reason"],
            sequence=value["sequence"],
            status=MeetingStatus(value["status"]),
            sip_version=value["sip_version"],
            warning_id=UUID(value["warning_id"]) if value["warning_id"] else None,
            location=value["location"],
            held_on=date.fromisoformat(value["held_on"]) if value["held_on"] else None,
            dropped={i.invitee_id: i for i in dropped},
            reminders_sent=list(value["reminders_sent"]),
            rating_requested=value["rating_requested"],
            # Snapshots stored before places, agendas, proposals and answers have none of them.
            place_kind=PlaceKind(value["place_kind"]) if value.get("place_kind") else None,
            agenda=list(value.get("agenda", [])),
            proposed=value.get("proposed", False),
            answers={k: Answered.from_json(a) for k, a in value.get("answers", {}).items()},
        )
