"""Swedish words for the codes a case overview holds, and Swedish dates and times."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from services.projections.domain.case_view import MAPPING_SUMMARY_STEP
from vss_contracts.meeting_events import MeetingKind
from vss_contracts.types import GoalKind, GoalStatus, MemberKind, Principal, Worksheet

STOCKHOLM = ZoneInfo("Europe/Stockholm")

CHECKLIST_STEPS: dict[str, str] = {
    Worksheet.CONTACT_DETAILS: "Kontaktuppgifter",
    Worksheet.ORDINARY_DAY: "En vanlig dag",
    Worksheet.CHANGE_RATING: "Skattning av förändring",
    Worksheet.EVERYDAY_FUNCTIONING: "Hur fungerar vardagen",
    Worksheet.NETWORK_MAP: "Nätverkskarta",
    Worksheet.INTERVIEW: "Intervju",
    Worksheet.QLS_100: "QLS-100",
    Worksheet.LIFESTYLE_AND_HEALTH: "Livsstil och hälsa",
    Worksheet.RELATIVE_INTERVIEW: "Närståendeintervju",
    Worksheet.RELATIVE_RATING: "Närståendeskattning",
    Worksheet.EARLY_WARNING_SIGNS: "Tidiga varningstecken",
    MAPPING_SUMMARY_STEP: "Sammanfattning av kartläggningen",
}

PRINCIPALS: dict[str, str] = {
    Principal.REGION: "region",
    Principal.MUNICIPALITY: "kommun",
    Principal.OTHER: "annan organisation",
}

GOAL_KINDS: dict[str, str] = {GoalKind.LONG_TERM: "Långsiktigt mål", GoalKind.SUB_GOAL: "Delmål"}

GOAL_STATUSES: dict[str, str] = {
    GoalStatus.ACTIVE: "pågår",
    GoalStatus.ACHIEVED: "uppnått",
    GoalStatus.PARTIALLY_ACHIEVED: "delvis uppnått",
    GoalStatus.NOT_ACHIEVED: "inte uppnått",
    GoalStatus.ABANDONED: "avslutat",
}

MEMBER_KINDS: dict[str, str] = {
    MemberKind.CLIENT: "du själv",
    MemberKind.COORDINATOR: "samordnare",
    MemberKind.RELATIVE: "närstående",
    MemberKind.PROFESSIONAL: "yrkesperson",
}

MEETING_KINDS: dict[str, str] = {
    MeetingKind.RESOURCE_GROUP: "Resursgruppsmöte",
    MeetingKind.CLIENT_CONTACT: "Möte med din samordnare",
    MeetingKind.CRISIS: "Krismöte",
}

# How a coordinator was in contact with the client (the contact logbook, ADR 0019).
CONTACT_MODES: dict[str, str] = {
    "visit": "Besök",
    "phone": "Telefon",
    "video": "Videosamtal",
    "outreach": "Uppsökande",
}

# The contact periods (Loggboken, 000_*.txt).
CONTACT_PERIODS: dict[str, str] = {
    "assessment": "bedömningsfasen",
    "orientation": "orienteringsfasen",
    "social_recovery": "social återhämtning",
    "re_orientation": "nyorientering",
}

# What an access-log record says was read (services.shared.access.AccessRecord.resource).
READS: dict[str, str] = {
    "overview": "översikten över ditt ärende",
    "journal": "journalen över ditt ärende",
    "case": "ditt ärende",
    "case_as_of": "ditt ärende som det såg ut vid en tidigare tidpunkt",
    "history": "historiken i ditt ärende",
    "case_list": "en lista över ärenden där ditt finns med",
    "caseload": "en samordnares lista över ärenden där ditt finns med",
    "overdue": "en lista över försenade åtgärder där ditt ärende finns med",
    "access_log": "loggen över vem som har läst dina uppgifter",
    "meetings": "dina möten",
    "meeting": "ett av dina möten",
    "meeting_calendar": "kalenderfilen för ett av dina möten",
    "calendar_feed": "en kalender där dina möten finns med",
    "notifications": "meddelandena som skickats om ditt ärende",
    "acknowledgement_page": "en länk i ett meddelande om ditt ärende",
    "export": "en export av ditt ärende",
    "command": "en ändring i ditt ärende",
}

_MONTHS = (
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
)


def day(value: str | None) -> str:
    """``2025-03-03`` as ``3 mars 2025``; empty for none."""
    if not value:
        return ""
    parsed = date.fromisoformat(value[:10])
    return f"{parsed.day} {_MONTHS[parsed.month - 1]} {parsed.year}"


def local_time(value: str | datetime) -> datetime:
    """An instant (ISO 8601 or a datetime) in Swedish time; one without an offset is UTC."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(STOCKHOLM)


def moment(value: str | datetime | None) -> str:
    """An ISO 8601 instant as ``6 december 2026 kl. 23.48`` in Swedish time."""
    if not value:
        return ""
    local = local_time(value)
    return f"{day(local.date().isoformat())} kl. {local:%H.%M}"


def clock(value: str | datetime | None) -> str:
    """The Swedish time of day of an ISO 8601 instant, ``10.00``."""
    return f"{local_time(value):%H.%M}" if value else ""


def label(table: dict[str, str], code: str | None) -> str:
    """The Swedish word for ``code``, or the code itself when none is known."""
    if code is None:
        return ""
    return table.get(code, code)
