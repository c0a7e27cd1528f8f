"""Who may do what on the bus: the nats-server authorization ``vss nats-config`` generates.

Every user is an nkey (an Ed25519 key pair): the server's configuration holds only public
keys, a client proves it holds the seed by signing the server's nonce (ADR 0010). There
is one user per VSS role, which may publish only its own subjects, and one per
organisation, which may only read its own share subjects through consumers of its own:

- create a consumer on the share stream only through the filtered form of the API,
  ``$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>``, with a filter under
  ``vss.share.<organisation id>.`` (the server refuses a body whose filter differs from
  the subject's, so the permission on the subject is a permission on the filter);
- consumer names are the organisation's own (its id, or ones it was given in the
  organisations file), so it can neither read nor acknowledge another's consumer;
- replies come to ``_INBOX_<organisation id>.>``, not to the shared ``_INBOX.>``: another
  organisation's client cannot subscribe to them;
- ``$JS.API.INFO`` (account information: the official clients ask it at start) and nothing
  else: no publishing, no other stream, no stream information, no unfiltered consumer.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import nkeys
import orjson

from services.shared.files import write_private
from services.shared.organisations import Organisation, Organisations
from vss_contracts.access_events import ACCESS_SUBJECT_PREFIX
from vss_contracts.meeting_events import MEETING_SUBJECT_PREFIX
from vss_contracts.notification_events import NOTIFICATION_SUBJECT_PREFIX
from vss_contracts.subjects import (
    CASE_SUBJECT_PREFIX,
    DEAD_LETTER_SUBJECT_PREFIX,
    SHARE_STREAM,
    SHARE_SUBJECT_PREFIX,
    share_token,
)


class InternalRole(StrEnum):
    """A VSS process's identity on the bus (``vss up`` gives each process its role's seed)."""

    CASE = "case"  # the case API and the relay: the case stream
    PROJECTIONS = "projections"  # the projector and the query API: the access log
    MEETINGS = "meetings"
    NOTIFICATIONS = "notifications"
    SHARING = "sharing"  # the sharing service: the share stream
    OPERATOR = "operator"  # the `vss` CLI: rebuilds, status, verification against the stream


@dataclass(frozen=True, slots=True)
class BusSubjects:
    """The subject prefixes the permissions are written for (the contracts' by default)."""

    case: str = CASE_SUBJECT_PREFIX
    dead_letter: str = DEAD_LETTER_SUBJECT_PREFIX
    meetings: str = MEETING_SUBJECT_PREFIX
    notifications: str = NOTIFICATION_SUBJECT_PREFIX
    access: str = ACCESS_SUBJECT_PREFIX
    share_stream: str = SHARE_STREAM
    share: str = SHARE_SUBJECT_PREFIX

    def own(self, role: InternalRole) -> list[str]:
        """The event subjects a role publishes (beside the JetStream API every role uses)."""
        return {
            InternalRole.CASE: [f"{self.case}.>"],
            InternalRole.PROJECTIONS: [f"{self.access}.>"],
            InternalRole.MEETINGS: [f"{self.meetings}.>"],
            InternalRole.NOTIFICATIONS: [f"{self.notifications}.>"],
            InternalRole.SHARING: [f"{self.share}.>"],
            InternalRole.OPERATOR: [">"],
        }[role]


# What every VSS process needs besides its own subjects: the JetStream API (streams,
# consumers, key-value leases), acknowledgements and flow control, replies, dead letters.
_INTERNAL_COMMON = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "_INBOX.>"]


def internal_permissions(role: InternalRole, subjects: BusSubjects = BusSubjects()) -> dict[str, Any]:
    publish = [*_INTERNAL_COMMON, f"{subjects.dead_letter}.>", *subjects.own(role)]
    # Reading is through consumers (replies on _INBOX.>) and key-value watches: any subject.
    return {"publish": {"allow": sorted(set(publish))}, "subscribe": {"allow": [">"]}}


def inbox_prefix(organisation_id: str) -> str:
    """The reply prefix of an organisation's client (nats-py ``inbox_prefix``, nats.js ``inboxPrefix``)."""
    return f"_INBOX_{organisation_id}"


def organisation_permissions(
    organisation: Organisation, subjects: BusSubjects = BusSubjects()
) -> dict[str, Any]:
    stream = subjects.share_stream
    publish = ["$JS.API.INFO"]
    for consumer in organisation.consumer_names:
        publish += [
            f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{subjects.share}.{share_token(organisation.id)}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>",
        ]
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": [f"{inbox_prefix(organisation.id)}.>"]},
    }


# --- keys ------------------------------------------------------------------------------------


def new_user_seed() -> bytes:
    """A fresh user nkey seed (``SU…``)."""
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    pair = nkeys.from_seed(bytearray(seed.strip()))
    try:
        return str(pair.public_key.decode())
    finally:
        pair.wipe()


def seed_file(path: Path, *, rotate: bool = False) -> str:
    """The public key of the seed in ``path``, made (0600) if missing or ``rotate``."""
    if rotate or not path.exists():
        write_private(path, new_user_seed() + b"\n")
    return public_key(path.read_bytes())


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """How one client proves who it is: an nkey seed file, a JWT .creds file, or nothing."""

    seed_file: Path | None = None
    creds_file: Path | None = None
    inbox_prefix: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.seed_file is None and self.creds_file is None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's ``connect``."""
        options: dict[str, Any] = {}
        if self.seed_file is not None:
            options["nkeys_seed"] = str(self.seed_file)
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        if self.inbox_prefix:
            options["inbox_prefix"] = self.inbox_prefix
        return options


# --- the configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NatsCredentials:
    """What ``write_nats_config`` wrote: the server's file and each user's seed file."""

    config_file: Path
    internal: dict[InternalRole, Path]
    organisations: dict[str, Path | None]  # None: the organisation holds its own seed
    public_keys: dict[str, str] = field(default_factory=dict)  # user name -> public key

    def internal_auth(self, role: InternalRole) -> NatsAuth:
        return NatsAuth(seed_file=self.internal[role])


def credentials_dir(data_dir: Path) -> Path:
    return data_dir / "nats-auth"


def internal_seed_path(directory: Path, role: InternalRole) -> Path:
    return directory / "internal" / f"{role.value}.nk"


def organisation_seed_path(directory: Path, organisation_id: str) -> Path:
    return directory / "organisations" / f"{organisation_id}.nk"


def render_config(users: list[dict[str, Any]]) -> str:
    """nats-server configuration text (its format reads JSON values; quoted strings are literal)."""
    body = orjson.dumps({"users": users}, option=orjson.OPT_INDENT_2).decode()
    return (
        "# Generated by `vss nats-config`: do not edit; regenerate (ADR 0010, docs/operations.md).\n"
        "# Only public keys: the seeds stay with their users.\n"
        f"authorization: {body}\n"
    )


def write_nats_config(
    directory: Path,
    organisations: Organisations,
    *,
    subjects: BusSubjects = BusSubjects(),
    rotate: frozenset[str] = frozenset(),
    config_file: Path | None = None,
) -> NatsCredentials:
    """Write the server's authorization and the seeds it needs (existing seeds are kept).

    ``rotate`` names users (a role's value or an organisation id) whose seed is replaced.
    An organisation with its own ``public_key`` in the file gets no seed from us.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    users: list[dict[str, Any]] = []
    internal: dict[InternalRole, Path] = {}
    keys: dict[str, str] = {}
    for role in InternalRole:
        path = internal_seed_path(directory, role)
        key = seed_file(path, rotate=role.value in rotate)
        internal[role] = path
        keys[f"vss-{role.value}"] = key
        users.append({"nkey": key, "permissions": internal_permissions(role, subjects)})
    orgs: dict[str, Path | None] = {}
    for organisation in organisations.values():
        if organisation.nats_public_key is not None:
            key, seed_path = organisation.nats_public_key, None
        else:
            seed_path = organisation_seed_path(directory, organisation.id)
            key = seed_file(seed_path, rotate=organisation.id in rotate)
        orgs[organisation.id] = seed_path
        keys[organisation.id] = key
        users.append({"nkey": key, "permissions": organisation_permissions(organisation, subjects)})
    target = config_file or directory / "authorization.conf"
    write_private(target, render_config(users).encode())
    return NatsCredentials(target, internal, orgs, keys)
