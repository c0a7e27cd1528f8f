"""Case events for the meetings tests, built as the case service publishes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from uuid import UUID, uuid4

from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import STOCKHOLM
from vss_contracts import case_events as ce
from vss_contracts.case_events import CaseEventData
from vss_contracts.types import (
    ChangeRating,
    ClientRef,
    ClosingReason,
    ContactDetails,
    Coordinator,
    MemberKind,
    Municipality,
    OrganisationRef,
    Participant,
    Phase,
    Principal,
    Region,
    Worksheet,
)

REGION_PSYCH = OrganisationRef(id="vgr-psykiatri", name="Psykiatri Göteborg", principal=Principal.REGION)
SOCIAL = OrganisationRef(id="goteborg-soc", name="Socialtjänsten Göteborg", principal=Principal.MUNICIPALITY)
HOUSING = OrganisationRef(id="boendestod", name="Boendestöd AB", principal=Principal.OTHER)
CLIENT = Participant(kind=MemberKind.CLIENT, name="Tolvan Tolvansson")
COORDINATOR = Participant(kind=MemberKind.COORDINATOR, name="Sara Samordnare", user_id="sara")


@dataclass
class CaseFeed:
    """One case's events, fed to a meetings service in stream order at given local times."""

    service: MeetingsService
    case_id: UUID = field(default_factory=uuid4)
    sequence: list[int] = field(default_factory=lambda: [0])  # shared between feeds of one test
    event_ids: list[str] = field(default_factory=list)

    def send(self, day: date, data: CaseEventData, at: time = time(9, 0)) -> bool:
        self.sequence[0] += 1
        event_id = str(uuid4())
        self.event_ids.append(event_id)
        return self.service.apply_case_event(
            case_id=self.case_id,
            event_id=event_id,
            recorded_at=datetime.combine(day, at, STOCKHOLM),
            data=data,
            stream_sequence=self.sequence[0],
            log_position=self.sequence[0],  # one event per commit: the log follows the stream
        )

    # ---------------------------------------------------------------- the usual facts
    def open(self, day: date) -> None:
        self.send(
            day,
            ce.CaseOpened(
                client=ClientRef(personal_identity_number="19121212-1212", name="Tolvan Tolvansson"),
                municipality=Municipality(code="1480", name="Göteborg"),
                region=Region(code="14", name="Västra Götalandsregionen"),
                opened_on=day,
                opened_by_organisation=SOCIAL,
            ),
        )

    def assign(self, day: date, user_id: str = "sara", organisation: OrganisationRef = SOCIAL) -> None:
        self.send(
            day,
            ce.CoordinatorAssigned(
                coordinator=Coordinator(
                    user_id=user_id,
                    name=f"Samordnare {user_id}",
                    organisation=organisation,
                    contact=ContactDetails(email=f"{user_id}@example.se"),
                ),
                assigned_on=day,
            ),
        )

    def unassign(self, day: date, user_id: str, organisation: OrganisationRef | None = None) -> None:
        """Unassign the person (``organisation``, ``user_id``); without the organisation, as a
        version 1 payload reads (upcast): the coordinator assigned with that user id."""
        organisation_id = organisation.id if organisation is not None else None
        self.send(
            day, ce.CoordinatorUnassigned(organisation_id=organisation_id, user_id=user_id, unassigned_on=day)
        )

    def consent(
        self, day: date, *organisations: OrganisationRef, relatives: bool = True, until: date | None = None
    ) -> None:
        self.send(
            day,
            ce.ConsentGiven(
                consent_id=uuid4(),
                organisations=list(organisations or (SOCIAL, REGION_PSYCH, HOUSING)),
                covers_relatives=relatives,
                signed_on=day,
                valid_until=until,
            ),
        )

    def renew(self, day: date, sip_version: int, until: date | None) -> None:
        """The consent renewal a decided SIP brings (the case service sends it after the SIP)."""
        self.send(
            day,
            ce.ConsentRenewed(consent_id=uuid4(), renewed_on=day, sip_version=sip_version, valid_until=until),
        )

    def withdraw(self, day: date, *organisation_ids: str) -> None:
        self.send(
            day,
            ce.ConsentWithdrawn(
                withdrawn_on=day, entire=not organisation_ids, organisation_ids=list(organisation_ids)
            ),
        )

    def add_member(
        self, day: date, name: str, kind: MemberKind, organisation: OrganisationRef | None = None
    ) -> UUID:
        member_id = uuid4()
        self.send(
            day,
            ce.ResourceGroupMemberAdded(
                member=ce.ResourceGroupMember(
                    member_id=member_id,
                    kind=kind,
                    name=name,
                    organisation=organisation,
                    contact=ContactDetails(email=f"{name.split(maxsplit=1)[0].lower()}@example.se"),
                ),
                added_on=day,
            ),
        )
        return member_id

    def remove_member(self, day: date, member_id: UUID) -> None:
        self.send(day, ce.ResourceGroupMemberRemoved(member_id=member_id, removed_on=day))

    def worksheet(self, day: date, *, rating: bool = False) -> None:
        self.send(
            day,
            ce.WorksheetCompleted(
                worksheet=Worksheet.CHANGE_RATING if rating else Worksheet.INTERVIEW,
                completed_on=day,
                participants=[CLIENT, COORDINATOR],
                summary="Samtal",
                change_rating=ChangeRating(individually=4, interpersonally=5, socially=3, overall=4)
                if rating
                else None,
            ),
        )

    def summarise(self, day: date) -> None:
        self.send(
            day,
            ce.MappingSummarised(
                summarised_on=day,
                participants=[CLIENT, COORDINATOR],
                wants_to_change="Boende",
                obstacles="Oro",
            ),
        )

    def phase(self, day: date, from_phase: Phase, to_phase: Phase) -> None:
        self.send(
            day, ce.PhaseChanged(from_phase=from_phase, to_phase=to_phase, changed_on=day, reason="planen")
        )

    def sip(self, day: date, version: int, follow_up: date) -> None:
        self.send(
            day,
            ce.SipDecided(
                sip_version=version,
                decided_on=day,
                overall_responsibility=SOCIAL,
                goal_ids=[uuid4()],
                actions=[
                    ce.SipAction(
                        action_id=uuid4(),
                        what="Boendestöd",
                        responsible_member_id=uuid4(),
                        due_on=follow_up,
                        how="x",
                    )
                ],
                next_follow_up_on=follow_up,
                participants=[CLIENT, COORDINATOR],
                client_agreed=True,
            ),
        )

    def rg_held(self, day: date) -> None:
        self.send(day, ce.ResourceGroupMeetingHeld(meeting_id=uuid4(), held_on=day, participants=[CLIENT]))

    def plan(self, day: date, *contacts: ce.PlanContact) -> None:
        self.send(
            day,
            ce.EarlyWarningPlanUpdated(
                plan_version=1,
                signs=[ce.WarningSign(sign_id="somn", description="Sover dåligt")],
                client_actions=["Ringa"],
                others_actions=[],
                contacts=list(contacts),
                updated_on=day,
            ),
        )

    def planned_with_contacts(self, day: date, contacts: int) -> None:
        """A case opened, assigned to sara, consented to, and its early warning plan naming
        ``contacts`` people (each with an e-mail address and a phone number)."""
        self.open(day)
        self.assign(day, "sara", SOCIAL)
        self.consent(day)
        self.plan(
            day,
            *(
                ce.PlanContact(
                    name=f"Kontakt {n}", relation="vän", email=f"k{n}@example.se", phone=f"070123450{n}"
                )
                for n in range(contacts)
            ),
        )

    def trigger(self, day: date) -> UUID:
        warning_id = uuid4()
        self.send(
            day,
            ce.EarlyWarningTriggered(
                warning_id=warning_id, plan_version=1, sign_ids=["somn"], observed_on=day
            ),
        )
        return warning_id

    def close(self, day: date) -> None:
        self.send(day, ce.CaseClosed(closed_on=day, reason=ClosingReason.GOALS_ACHIEVED))
