"""What a resource group or crisis meeting is about (*dagordning*) and where it is (*plats*).

The agendas follow the method manual: every resource group meeting (*resursgruppsmöte*)
evaluates what was done since the last one (*utvärdering av åtgärder och måluppfyllelse*),
looks at the client's change rating (*skattning av förändring*), revises the goals and the
SIP, reads the early-warning plan through (*"I samband med varje resursgruppsmöte läser
gruppen igenom Tidiga tecken med åtgärder"*) and books the next meetings. A crisis meeting
(*krismöte*) after early warning signs (*tidiga tecken*) goes through what happened, reads
the plan's actions, agrees on actions and on the next contact.

The items name the method's steps, never anything about the client: they travel in
calendar entries that colleagues and shared calendars see.
"""

from __future__ import annotations

from vss_contracts.meeting_events import MeetingKind, PlaceKind

RESOURCE_GROUP_AGENDA: tuple[str, ...] = (
    "Utvärdering sedan förra mötet (åtgärder och måluppfyllelse)",
    "Förändringsskattning",
    "Mål och revidering av SIP",
    "Genomgång av Tidiga tecken med åtgärder",
    "Nästa möten",
)

CRISIS_AGENDA: tuple[str, ...] = (
    "Vad har hänt: tidiga tecken som setts",
    "Genomgång av Tidiga tecken med åtgärder",
    "Åtgärder: vem gör vad",
    "Nästa kontakt",
)

AGENDAS: dict[MeetingKind, tuple[str, ...]] = {
    MeetingKind.RESOURCE_GROUP: RESOURCE_GROUP_AGENDA,
    MeetingKind.CRISIS: CRISIS_AGENDA,
}

# The calendar's name of a kind of place when the coordinator gives no text: the client's home
# is named as such, never by its address (the calendar entry is seen by others).
PLACE_LABELS: dict[PlaceKind, str] = {
    PlaceKind.CLIENT_HOME: "Hemma hos brukaren",
    PlaceKind.OFFICE: "Kontor",
    PlaceKind.VIDEO: "Videomöte",
    PlaceKind.PHONE: "Telefonmöte",
    PlaceKind.OTHER: "Annan plats",
}


def agenda_of(kind: MeetingKind) -> list[str]:
    """The method's agenda of a kind of meeting (none for a meeting with the client)."""
    return list(AGENDAS.get(kind, ()))


def place_text(kind: PlaceKind, text: str | None) -> str:
    """The place as the calendar names it: the coordinator's text, else the kind's label."""
    return text.strip() if text and text.strip() else PLACE_LABELS[kind]
