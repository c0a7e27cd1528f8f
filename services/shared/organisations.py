"""The organisations file: the organisations VSS shares with, one file for every part that needs them.

``{organisation id: {"name", "nats", "webhook", "duty"}}`` (JSON). Each part reads its own
sections: the NATS configuration (``vss nats-config``) and the sharing service the id and
``nats``; the notifications service ``webhook`` and ``duty`` (it validates those itself).
An organisation id is also a NATS subject token (``vss.share.<organisation id>.…``) and a
consumer name, so it is restricted to letters, digits, ``-`` and ``_``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ORGANISATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# A user's public nkey: 'U' and 55 more base32 characters.
USER_NKEY = re.compile(r"^U[A-Z2-7]{55}$")

# The README walkthrough's organisations: `vss up` shares with these when no file is given.
DEMO_ORGANISATIONS: dict[str, str] = {
    "vgr-psykiatri-nordost": "Västra Götalandsregionen, psykiatri nordost",
    "goteborg-socialtjanst": "Göteborgs Stad, socialtjänsten",
}


class OrganisationsFileInvalid(ValueError):
    """The organisations file cannot be read or breaks its rules (the message names the file)."""


class _Nats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: str | None = Field(
        default=None,
        description="The organisation's own user nkey (public part, U…): it keeps the seed itself."
        " Unset: VSS generates a seed for it under the data directory.",
    )
    consumers: list[str] | None = Field(
        default=None,
        description="Consumer names it may use on the share stream; default: its organisation id."
        " Each is the id itself or starts with '<id>-'.",
    )

    @field_validator("public_key")
    @classmethod
    def _user_key(cls, value: str | None) -> str | None:
        if value is not None and not USER_NKEY.match(value):
            raise ValueError("public_key must be a user nkey (U followed by 55 base32 characters)")
        return value


class _Organisation(BaseModel):
    # The notifications service's sections are validated by it; the rest are ours.
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    nats: _Nats | None = None
    webhook: dict[str, Any] | None = None
    duty: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str | None = None
    nats_public_key: str | None = None  # None: VSS generates and keeps its seed
    consumers: tuple[str, ...] = ()

    @property
    def consumer_names(self) -> tuple[str, ...]:
        return self.consumers or (self.id,)


@dataclass(frozen=True, slots=True)
class Organisations(Mapping[str, Organisation]):
    """The organisations of one file, by id (file order kept)."""

    by_id: dict[str, Organisation] = field(default_factory=dict)
    source: Path | None = None

    def __getitem__(self, key: str) -> Organisation:
        return self.by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_id)

    def __len__(self) -> int:
        return len(self.by_id)

    def unknown(self, organisation_ids: set[str] | frozenset[str]) -> list[str]:
        """Those of ``organisation_ids`` the file does not name (sorted): VSS cannot share with them."""
        return sorted(org for org in organisation_ids if org not in self.by_id)


def parse_organisations(raw: Any, *, source: Path | None = None) -> Organisations:
    where = f"organisations file {source}" if source else "organisations"
    if not isinstance(raw, dict):
        raise OrganisationsFileInvalid(f"{where}: a JSON object by organisation id is expected")
    found: dict[str, Organisation] = {}
    owners: dict[str, str] = {}
    for org_id, value in raw.items():
        if not ORGANISATION_ID.match(str(org_id)):
            raise OrganisationsFileInvalid(
                f"{where}: organisation id {org_id!r} must be 1-64 letters, digits, '-' or '_'"
                " (it is a NATS subject token)"
            )
        try:
            parsed = _Organisation.model_validate(value)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
            )
            raise OrganisationsFileInvalid(f"{where}: {org_id}: {problems}") from None
        consumers = tuple(parsed.nats.consumers or ()) if parsed.nats else ()
        for name in consumers or (org_id,):
            if name != org_id and not (name.startswith(f"{org_id}-") and ORGANISATION_ID.match(name)):
                raise OrganisationsFileInvalid(
                    f"{where}: {org_id}: consumer name {name!r} must be {org_id!r} or start with '{org_id}-'"
                )
            if name in owners:
                raise OrganisationsFileInvalid(
                    f"{where}: consumer name {name!r} is given to both {owners[name]} and {org_id}"
                )
            owners[name] = org_id
        found[org_id] = Organisation(
            id=org_id,
            name=parsed.name,
            nats_public_key=parsed.nats.public_key if parsed.nats else None,
            consumers=consumers,
        )
    return Organisations(found, source)


def load_organisations(path: Path | None) -> Organisations:
    """The organisations of the file at ``path``; none without a file."""
    if path is None:
        return Organisations()
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise OrganisationsFileInvalid(f"organisations file {path}: {error}") from None
    return parse_organisations(raw, source=path)


def demo_organisations_document() -> bytes:
    """The embedded defaults' organisations file (no webhooks: nothing leaves the machine)."""
    return orjson.dumps(
        {org: {"name": name} for org, name in DEMO_ORGANISATIONS.items()}, option=orjson.OPT_INDENT_2
    )
