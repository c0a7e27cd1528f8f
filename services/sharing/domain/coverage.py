"""Who may see a case, after each of its events: the rule of ``services.shared.access``.

A case is visible to the organisations of its current coordinators, to those the consent
in force covers until its ``valid_until``, and to the organisation that opened it until a
consent is given. The sharing service decides it on the case's state *after* each event,
at that event's time (its date in Europe/Stockholm, as the case service dates
everything): an organisation covered then receives the event (and, first, whatever it
has not received of the case); one covered before and not now receives a SharingEnded
instead. So the opener receives the case from its CaseOpened on, and a first consent that
does not name it ends its sharing unless its people coordinate. A consent's expiry is the
passing of a date, not an event: it ends sharing at the first event of the case after
``valid_until`` (until then nothing new of the case exists to share).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.shared.access import PersonKey, grants, may_see, unassigns
from services.shared.dispatch import EventHandlers
from vss_contracts import case_events as ev
from vss_contracts.sharing_events import SharingEndReason

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass(slots=True)
class CaseAccess:
    """What of a case decides who may see it (a JSON-ready value the store keeps per case)."""

    opened_by: str | None = None  # the organisation that opened the case
    coordinators: set[PersonKey] = field(default_factory=set)  # (organisation id, user id)
    consent: list[str] | None = None  # organisation ids the consent names; None: no consent
    withdrawn: bool = False  # withdrawn entirely
    valid_until: str | None = None  # ISO date

    def to_json(self) -> dict[str, Any]:
        return {
            "opened_by": self.opened_by,
            "coordinators": [list(person) for person in sorted(self.coordinators)],
            "consent": self.consent,
            "withdrawn": self.withdrawn,
            "valid_until": self.valid_until,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> CaseAccess:
        return cls(
            # Stored before the opener was kept: none, so no opener grant, as then.
            opened_by=value.get("opened_by"),
            coordinators=_persons(value["coordinators"]),
            consent=list(value["consent"]) if value["consent"] is not None else None,
            withdrawn=bool(value["withdrawn"]),
            valid_until=value["valid_until"],
        )

    def apply(self, type_name: str, data: dict[str, Any]) -> None:
        """One case event (its payload in the current version of its type)."""
        handler = HANDLERS.handler(type_name)
        if handler is not None:
            handler(self, data)

    def _case_opened(self, data: dict[str, Any]) -> None:
        self.opened_by = data["opened_by_organisation"]["id"]

    def _coordinator_assigned(self, data: dict[str, Any]) -> None:
        coordinator = data["coordinator"]
        self.coordinators.add((coordinator["organisation"]["id"], coordinator["user_id"]))

    def _coordinator_unassigned(self, data: dict[str, Any]) -> None:
        # the person; an upcast v1 payload the coordinator with its user id (ADR 0023)
        self.coordinators -= {person for person in self.coordinators if unassigns(data, person)}

    def _consent_given(self, data: dict[str, Any]) -> None:
        # A new consent replaces the previous one as a whole.
        self.consent = [org["id"] for org in data["organisations"]]
        self.withdrawn = False
        self.valid_until = _iso(data.get("valid_until"))

    def _consent_withdrawn(self, data: dict[str, Any]) -> None:
        if self.consent is None:
            return
        if data.get("entire", True):
            self.withdrawn = True
        else:
            gone = set(data.get("organisation_ids") or ())
            self.consent = [org for org in self.consent if org not in gone]

    def _consent_renewed(self, data: dict[str, Any]) -> None:
        if self.consent is not None:
            self.valid_until = _iso(data.get("valid_until"))

    def covered(self, day: str) -> set[str]:
        """The organisations that may see the case on ``day`` (ISO date): the shared rule."""
        consented = self.consent if self.consent is not None and not self.withdrawn else ()
        case_grants = grants(
            (organisation_id for organisation_id, _ in self.coordinators),
            consented,
            self.valid_until,
            opened_by=self.opened_by,
            consent_given=self.consent is not None,
        )
        return {org for org, _ in case_grants if may_see(org, case_grants, day)}


def _persons(stored: Any) -> set[PersonKey]:
    """The coordinators as stored: a list of [organisation id, user id]; stored before persons
    were kept, a mapping of user id to organisation id (one coordinator per user id then)."""
    if isinstance(stored, dict):
        return {(organisation_id, user_id) for user_id, organisation_id in stored.items()}
    return {(organisation_id, user_id) for organisation_id, user_id in stored}


# Who may see a case turns on its opener, its coordinators and its consent only.
HANDLERS: EventHandlers[Callable[[CaseAccess, dict[str, Any]], None]] = EventHandlers.of(
    "sharing: case access",
    ev.CASE_EVENTS,
    {
        ev.CaseOpened: CaseAccess._case_opened,
        ev.CoordinatorAssigned: CaseAccess._coordinator_assigned,
        ev.CoordinatorUnassigned: CaseAccess._coordinator_unassigned,
        ev.ConsentGiven: CaseAccess._consent_given,
        ev.ConsentWithdrawn: CaseAccess._consent_withdrawn,
        ev.ConsentRenewed: CaseAccess._consent_renewed,
    },
    ignored=(
        ev.WorksheetCompleted,
        ev.MappingSummarised,
        ev.PhaseChanged,
        ev.GoalSet,
        ev.GoalStatusChanged,
        ev.ResourceGroupMemberAdded,  # a member is not a coordinator; the consent names who may see
        ev.ResourceGroupMemberRemoved,
        ev.EarlyWarningPlanUpdated,
        ev.SipDecided,  # its ConsentRenewed follows it and moves the end
        ev.SipConfirmedByClient,
        ev.ResourceGroupMeetingHeld,
        ev.ActionCompleted,
        ev.EarlyWarningTriggered,
        ev.EarlyWarningResolved,
        ev.MethodDeviationRecorded,  # a deviation from practice changes nobody's access
        ev.ClientContactRecorded,  # the logbook changes nobody's access either
        ev.ContactPeriodSet,
        ev.EntryCorrected,  # nor does a correction; it is shared like every case event (ADR 0018)
        ev.EntryRetracted,
        ev.CaseClosed,  # a closed case stays visible to whom it was (the rule has no end date)
    ),
)


def _iso(value: Any) -> str | None:
    return None if value is None else str(value)


def day_of(time: datetime) -> str:
    """The date an event happened on, as the case service dates it (Europe/Stockholm)."""
    return time.astimezone(STOCKHOLM).date().isoformat()


def end_reason(
    organisation: str, type_name: str, data: dict[str, Any], after: CaseAccess
) -> SharingEndReason:
    """Why ``organisation``, covered before this event and not after it, may no longer see the case."""
    if type_name == ev.ConsentWithdrawn.TYPE:
        if data.get("entire", True):
            return SharingEndReason.CONSENT_WITHDRAWN
        if organisation in (data.get("organisation_ids") or ()):
            return SharingEndReason.CONSENT_WITHDRAWN_FOR_ORGANISATION
    if type_name == ev.ConsentGiven.TYPE:
        # Also the first consent, ending the opener's sight of the case when it does not name it.
        return SharingEndReason.CONSENT_REPLACED
    if type_name == ev.CoordinatorUnassigned.TYPE and (
        after.consent is None or after.withdrawn or organisation not in after.consent
    ):
        return SharingEndReason.COORDINATOR_UNASSIGNED
    return SharingEndReason.CONSENT_EXPIRED


@dataclass(frozen=True, slots=True)
class Decision:
    """What one case event means for each organisation."""

    share: dict[str, int]  # organisation -> the first version to send it (through this event's)
    ended: dict[str, SharingEndReason]  # organisations that may no longer see the case


def decide(
    version: int,
    type_name: str,
    data: dict[str, Any],
    day: str,
    access: CaseAccess,
    received: dict[str, tuple[int, bool]],
) -> Decision:
    """Apply one event to ``access`` (in place) and decide who receives what.

    ``received``: per organisation that ever received the case, (the last version it
    received, whether it is still sharing). An organisation covered after the event gets
    every version after its last one (history when new, what it missed when covered
    again); one sharing before and not covered now gets a SharingEnded.
    """
    access.apply(type_name, data)
    covered = access.covered(day)
    share = {org: received.get(org, (0, False))[0] + 1 for org in sorted(covered)}
    share = {org: first for org, first in share.items() if first <= version}
    ended = {
        org: end_reason(org, type_name, data, access)
        for org, (_, sharing) in sorted(received.items())
        if sharing and org not in covered
    }
    return Decision(share, ended)
