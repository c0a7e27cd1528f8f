"""Realistic organisations and the coordinators who act for them.

A case is usually shared by a region's psychiatry unit and a municipality's social
services, each with one coordinator; an unrelated organisation is useful to test
who may not write.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.case.domain.events import Actor
from vss_contracts.types import Coordinator, Municipality, OrganisationRef, Principal, Region

STOCKHOLM_REGION = Region(code="01", name="Region Stockholm")
STOCKHOLM_MUNICIPALITY = Municipality(code="0180", name="Stockholm")

REGION_PSYCHIATRY = OrganisationRef(
    id="se2321000016-psyk-sodra",
    name="Psykiatri Södra Stockholm, allmänpsykiatrisk öppenvård",
    principal=Principal.REGION,
)
MUNICIPALITY_SOCIAL_SERVICES = OrganisationRef(
    id="stockholm-sof-socialpsykiatri",
    name="Stockholms stad, socialförvaltningen, socialpsykiatri",
    principal=Principal.MUNICIPALITY,
)
SOCIAL_INSURANCE_AGENCY = OrganisationRef(
    id="forsakringskassan-stockholm",
    name="Försäkringskassan, lokalkontor Stockholm",
    principal=Principal.OTHER,
)


def make_actor(user_id: str, organisation: OrganisationRef, *roles: str) -> Actor:
    """An actor as the API builds it from a bearer token (roles default to coordinator)."""
    return Actor(
        user_id=user_id,
        organisation_id=organisation.id,
        organisation_name=organisation.name,
        principal=organisation.principal,
        roles=frozenset(roles or ("coordinator",)),
    )


def organisation_of(actor: Actor) -> OrganisationRef:
    return OrganisationRef(id=actor.organisation_id, name=actor.organisation_name, principal=actor.principal)


# Display names of the people below (a token carries the user id, not the name).
NAMES = {
    "anna.lindqvist": "Anna Lindqvist",
    "erik.sjoberg": "Erik Sjöberg",
    "maria.holm": "Maria Holm",
}


def coordinator_for(actor: Actor) -> Coordinator:
    """The actor as an assigned coordinator of their own organisation."""
    return Coordinator(
        user_id=actor.user_id,
        name=NAMES.get(actor.user_id, actor.user_id),
        organisation=organisation_of(actor),
    )


@dataclass(frozen=True, slots=True)
class Actors:
    """The cast of a case: ``region`` opens it, ``municipality`` joins it, ``outsider`` does not."""

    region: Actor
    municipality: Actor
    outsider: Actor

    @property
    def coordinators(self) -> tuple[Actor, Actor]:
        return (self.region, self.municipality)


ACTORS = Actors(
    region=make_actor("anna.lindqvist", REGION_PSYCHIATRY),
    municipality=make_actor("erik.sjoberg", MUNICIPALITY_SOCIAL_SERVICES),
    outsider=make_actor("maria.holm", SOCIAL_INSURANCE_AGENCY),
)
