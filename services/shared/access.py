"""The access log's record (*loggning av åtkomst*), shared by every API that serves a case's data.

Each API records a read of a case's data, and each refused attempt, before it answers;
the records go to one durable access log (``services.shared.access_log``) that the
query API serves per case and per user and publishes to the bus.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

# An access grant: (organisation id, the last day it may see the case, ISO date; None: open-ended).
Grant = tuple[str, str | None]


def grants(
    coordinating: Iterable[str],
    consented: Iterable[str] = (),
    consent_valid_until: str | None = None,
    *,
    opened_by: str | None = None,
    consent_given: bool = True,
) -> list[Grant]:
    """The organisations that may see a case: those of its current coordinators (always), those
    its consent in force covers (until its ``valid_until``), and the organisation that opened it
    (``opened_by``) while no consent has ever been given in it (``consent_given`` False).

    Pass no ``consented`` when no consent is in force (none given, or withdrawn). Once a consent
    has been given it governs the opener as anyone else, also after it is withdrawn: the opener
    entered the client's data itself, so it may see them until the client has a say.
    """
    found: dict[str, str | None] = dict.fromkeys(consented, consent_valid_until)
    if opened_by is not None and not consent_given:
        found[opened_by] = None
    found.update(dict.fromkeys(coordinating))
    return sorted(found.items())


class KeptConsent(Protocol):
    """What a service keeps of a case's opener and consent (the meetings schedule's state, the
    notifications audience): enough for the rule's grants."""

    @property
    def opened_by(self) -> str | None: ...
    @property
    def consent_orgs(self) -> Iterable[str] | None:  # None: no consent in force
        ...
    @property
    def consent_given(self) -> bool:  # a consent was ever given (withdrawn or not)
        ...
    @property
    def consent_valid_until(self) -> date | None:  # the consent's last day; None: open-ended
        ...


def kept_grants(case: KeptConsent, coordinating: Iterable[str]) -> list[Grant]:
    """:func:`grants` over what a service keeps of a case, given its coordinators' organisations."""
    until = case.consent_valid_until
    return grants(
        coordinating,
        case.consent_orgs or (),
        until.isoformat() if until else None,
        opened_by=case.opened_by,
        consent_given=case.consent_given,
    )


def consent_in_force(case: KeptConsent, today: date) -> bool:
    """Whether a consent is in force on ``today``: given, not withdrawn, not past its last day."""
    until = case.consent_valid_until
    return case.consent_orgs is not None and (until is None or until >= today)


# A person: (organisation id, user id). A user id alone names nobody: the same id at another
# organisation is someone else (ADR 0023). Every service keeps a case's coordinators by it.
PersonKey = tuple[str, str]


def unassigns(unassignment: Mapping[str, Any], coordinator: PersonKey) -> bool:
    """Whether a ``CoordinatorUnassigned`` payload (the current version) names ``coordinator``.

    Version 2 names the person. A version 1 payload, upcast, has ``organisation_id`` null: it
    named the user id alone when a case held at most one coordinator per user id, so it means
    the coordinator assigned with that user id, whatever their organisation (ADR 0023).
    """
    organisation_id, user_id = coordinator
    if unassignment["user_id"] != user_id:
        return False
    named = unassignment.get("organisation_id")
    return named is None or named == organisation_id


# The longest invitee or recipient id the meeting and notification contracts take.
MAX_PERSON_ID = 160


def coordinator_id(coordinator: PersonKey, taken: Iterable[str]) -> str:
    """The id a service gives an assigned coordinator among a case's people (an invitee, a
    recipient): ``coordinator:<user id>``, as ever; when another coordinator assigned to the
    case (of another organisation) holds that id, ``coordinator:<organisation id>/<user id>``.
    Given the case's events in order every service makes the same ids, and a case whose
    coordinators' user ids differ keeps the ids it always had (ADR 0023)."""
    organisation_id, user_id = coordinator
    plain = f"coordinator:{user_id}"
    if plain not in set(taken):
        return plain
    qualified = f"coordinator:{organisation_id}/{user_id}"
    if len(qualified) <= MAX_PERSON_ID:
        return qualified
    # A long organisation and user id together: the user id by its digest, within the ids' limit.
    digest = hashlib.sha256(f"{organisation_id}\x00{user_id}".encode()).hexdigest()[:32]
    return f"coordinator:{organisation_id}/#{digest}"


def may_see(organisation_id: str, case_grants: Iterable[Grant], today: str) -> bool:
    """An organisation's part of the rule: it holds a grant of the case today."""
    return any(org == organisation_id and (until is None or until >= today) for org, until in case_grants)


def person_covered(
    person_organisation: str | None,
    *,
    client: bool = False,
    coordinator: bool = False,
    relative: bool = False,
    consent_orgs: Iterable[str] | None,
    consent_relatives: bool,
    consent_valid_until: str | None,
    today: str,
) -> bool:
    """Whether the consent lets a *person named in the case* be told of it, or open their own
    link to its plans, on ``today`` (ISO date): the one rule for messages and plan links.

    This is not :func:`may_see`, which is about an organisation reading the case: a
    coordinating organisation's grant is there so that its coordinators can run the case,
    not a reason to tell its other people anything. So:

    - the client (``client``): always, it is their case;
    - a coordinator of the case (``coordinator``: assigned, or their organisation's duty
      contact, while it coordinates): always, coordinators are how the case is run;
    - with no consent in force (``consent_orgs`` None: none given or withdrawn entirely; or
      past ``consent_valid_until``): nobody else;
    - a relative, or anyone without an organisation (a private person the plan names):
      while the consent in force covers relatives (``consent_relatives``);
    - anyone else: while the consent in force covers their organisation (its own grants,
      :func:`grants` of the consent alone), also in a coordinating organisation.
    """
    if client or coordinator:
        return True
    if consent_orgs is None or (consent_valid_until is not None and consent_valid_until < today):
        return False
    if relative or not person_organisation:
        return consent_relatives
    return may_see(person_organisation, grants((), consent_orgs, consent_valid_until), today)


CLIENT_PRINCIPAL = "client"  # the principal of a reader who is a client (services.shared.auth)


def may_read(reader: Person, case_grants: Iterable[Grant], case_client: str | None, today: str) -> bool:
    """The access rule every API applies to a case's data, for any reader.

    A client (*brukaren*) reads their own case, always: the plan is theirs, whatever the
    consent says of the organisations; ``case_client`` is the case's personal identity
    number (None where a store kept none: then no client reads it). Anyone else reads it
    for an organisation that holds a grant today (:func:`grants`, :func:`may_see`).
    """
    if reader.principal == CLIENT_PRINCIPAL:
        return case_client is not None and reader.user_id == case_client
    return bool(reader.organisation_id) and may_see(reader.organisation_id, case_grants, today)


def refusal(reader: Person, case_id: object) -> tuple[str, str]:
    """Why :func:`may_read` refused ``reader``: the rule and the detail every API answers with."""
    if reader.principal == CLIENT_PRINCIPAL:
        return "not_your_case", f"case {case_id} is not yours: a client reads their own cases only"
    return "no_consent", (
        f"organisation {reader.organisation_id} neither coordinates case {case_id}"
        " nor is covered by its current consent"
    )


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One read of a case's data, or one refused attempt (*loggning av åtkomst*)."""

    record_id: str
    recorded_at: str  # ISO 8601 UTC
    user_id: str
    organisation_id: str
    roles: tuple[str, ...]
    case_id: str | None
    resource: str  # overview | journal | … | meetings | calendar | notifications
    outcome: str  # granted | denied
    reason: str | None = None
    # region | municipality | other | client | calendar_link | plan_link; None in old records
    principal: str | None = None


class AccessRecorder(Protocol):
    def record(self, records: Sequence[AccessRecord]) -> None: ...


class Person(Protocol):
    """Who reads: a person of an organisation (a token's claims, or the case service's actor)."""

    @property
    def user_id(self) -> str: ...

    @property
    def organisation_id(self) -> str: ...

    @property
    def principal(self) -> str | None: ...  # None: a reader whose token named no principal

    @property
    def roles(self) -> frozenset[str]: ...


def record_access(
    log: AccessRecorder,
    reader: Person,
    case_id: str | None,
    resource: str,
    outcome: str,
    reason: str | None = None,
) -> None:
    """Record one read (``granted``) or refused attempt (``denied``) by ``reader``, durably, now."""
    record_accesses(log, reader, [case_id], resource, outcome, reason)


def record_accesses(
    log: AccessRecorder,
    reader: Person,
    case_ids: Iterable[str | None],
    resource: str,
    outcome: str,
    reason: str | None = None,
) -> None:
    """One record per case of a read that spans cases (a caseload, a list), in one write."""
    now = datetime.now(UTC).isoformat()
    log.record(
        [
            AccessRecord(
                record_id=str(uuid.uuid4()),
                recorded_at=now,
                user_id=reader.user_id,
                organisation_id=reader.organisation_id,
                roles=tuple(sorted(reader.roles)),
                case_id=case_id,
                resource=resource,
                outcome=outcome,
                reason=reason,
                principal=None if reader.principal is None else str(reader.principal),
            )
            for case_id in case_ids
        ]
    )
