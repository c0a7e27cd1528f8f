"""One meeting in a case's schedule, as the schedule holds it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
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


class MeetingBook(MutableMapping[str, Meeting]):
    """A schedule's meetings by id, in the order they came (a stored schedule's: by id).

    A schedule keeps every meeting it ever had, so a long-lived case's schedule holds many
    that are over. Those (held or cancelled) are kept as the JSON its snapshot stores until
    one is asked for: loading and saving a schedule then decodes and encodes only the
    meetings still to come, which are always objects.

    The JSON is shared with the snapshot that :meth:`to_json` gives and :meth:`from_json` was
    given: neither is changed afterwards. A meeting taken from the book is the book's until
    :meth:`settle`; one that is over then goes back to its JSON, so a change to the object
    taken before would not be kept (take it again).
    """

    __slots__ = ("_entries",)

    def __init__(self, meetings: Mapping[str, Meeting] | None = None) -> None:
        self._entries: dict[str, Meeting | dict[str, Any]] = dict(meetings or {})

    @classmethod
    def from_json(cls, value: Mapping[str, dict[str, Any]]) -> MeetingBook:
        book = cls()
        book._entries = {
            key: Meeting.from_json(entry) if entry["status"] == MeetingStatus.SCHEDULED.value else entry
            for key, entry in value.items()
        }
        return book

    def to_json(self) -> dict[str, Any]:
        entries = self._entries
        return {key: e.to_json() if isinstance(e, Meeting) else e for key, e in entries.items()}

    def __getitem__(self, key: str) -> Meeting:
        entry = self._entries[key]
        if not isinstance(entry, Meeting):
            entry = self._entries[key] = Meeting.from_json(entry)
        return entry

    def __setitem__(self, key: str, meeting: Meeting) -> None:
        self._entries[key] = meeting

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __eq__(self, other: object) -> bool:
        # As stored: comparing decodes nothing (the mapping's own equality would decode all).
        if isinstance(other, MeetingBook):
            return self.to_json() == other.to_json()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MeetingBook({self._entries!r})"

    def scheduled(self) -> Iterator[Meeting]:
        """The meetings still to come, without decoding those that are over."""
        return (m for m in self._entries.values() if isinstance(m, Meeting) and m.is_upcoming)

    def with_client(self) -> Iterator[tuple[MeetingStatus, datetime]]:
        """(status, start) of each meeting the client is invited to, without decoding those
        that are over (the contact cadence asks on each of its checks)."""
        for entry in self._entries.values():
            if isinstance(entry, Meeting):
                if "client" in entry.invitees:
                    yield entry.status, entry.starts_at
            elif any(i["invitee_id"] == "client" for i in entry["invitees"]):
                yield MeetingStatus(entry["status"]), datetime.fromisoformat(entry["starts_at"])

    def places(self) -> Iterator[tuple[datetime, PlaceKind, str]]:
        """(start, kind of place, place) of each confirmed resource group meeting not cancelled
        that has both, without decoding those that are over."""
        for entry in self._entries.values():
            if isinstance(entry, Meeting):
                kind, proposed, cancelled = entry.kind, entry.proposed, entry.is_cancelled
                place_kind, location, starts_at = entry.place_kind, entry.location, entry.starts_at
            else:
                kind, proposed = MeetingKind(entry["kind"]), entry.get("proposed", False)
                cancelled = entry["status"] == MeetingStatus.CANCELLED.value
                place_kind = PlaceKind(entry["place_kind"]) if entry.get("place_kind") else None
                location, starts_at = entry["location"], datetime.fromisoformat(entry["starts_at"])
            confirmed = kind is MeetingKind.RESOURCE_GROUP and not proposed and not cancelled
            if confirmed and place_kind is not None and location:
                yield starts_at, place_kind, location

    def settle(self) -> None:
        """Order the meetings by id and keep those that are over as their JSON again, as a
        stored schedule's are (with the stored JSON's sorted keys)."""
        entries = dict(sorted(self._entries.items()))
        for key, entry in entries.items():
            if isinstance(entry, Meeting) and not entry.is_upcoming:
                entries[key] = _keys_sorted(entry.to_json())
        self._entries = entries


def _keys_sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _keys_sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_keys_sorted(item) for item in value]
    return value
