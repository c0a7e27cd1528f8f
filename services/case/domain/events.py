"""The stored form of a case event: the contract payload plus who, when, why and the chain.

A :class:`CaseEvent` is what the Case aggregate triggers and what the event store
keeps. Its ``data`` is the public contract model (the stored fact and the published
fact are the same fact); its metadata says who recorded it, for which organisation,
in which request, and links it to the previous event of the case by hash.

The hash is sha256 over canonical JSON (sorted keys, orjson) of the case id, version,
type and the stored state without the hash itself. :func:`verify_chain` recomputes it
from the stored bytes, so an edited, inserted or deleted row is detected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from vss_contracts.case_events import CaseEventData
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.chain import chain_hash as contract_chain_hash
from vss_contracts.signing import PublicKeys
from vss_contracts.types import ActorPrincipal

if TYPE_CHECKING:
    from services.case.domain.case import Case


@dataclass(frozen=True, slots=True)
class Actor:
    """Who records a fact: from the bearer token, never from a request body."""

    user_id: str
    organisation_id: str
    organisation_name: str
    principal: ActorPrincipal
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class EventMetadata:
    event_id: UUID
    actor_id: str
    actor_organisation: str
    principal: ActorPrincipal
    correlation_id: str
    causation_id: str | None
    prev_hash: str
    hash: str


def canonical_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def chain_hash(case_id: UUID, version: int, type_name: str, state_without_hash: dict[str, Any]) -> str:
    """The contracts' definition (subscribers recompute it), with the fast orjson encoder."""
    return contract_chain_hash(str(case_id), version, type_name, state_without_hash, dumps=canonical_bytes)


@dataclass(slots=True, kw_only=True, eq=False)  # eq=False: an event is equal only to itself
class CaseEvent:
    """One event of a case's stream (implements the eventsourcing mutate protocol)."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    data: CaseEventData = field(repr=False)  # personal data: never in a log line by repr
    meta: EventMetadata
    # The stored state exactly as hashed (and, for a new event, as it will be written).
    state: dict[str, Any] = field(repr=False)

    @property
    def type(self) -> str:
        return self.data.TYPE

    @classmethod
    def new(
        cls,
        *,
        originator_id: UUID,
        originator_version: int,
        timestamp: datetime,
        data: CaseEventData,
        event_id: UUID,
        actor: Actor,
        correlation_id: str,
        causation_id: str | None,
        prev_hash: str,
    ) -> CaseEvent:
        state: dict[str, Any] = {
            "event_id": str(event_id),
            "recorded_at": timestamp.isoformat(),
            "actor_id": actor.user_id,
            "actor_organisation": actor.organisation_id,
            "principal": actor.principal.value,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "prev_hash": prev_hash,
            "data": data.model_dump(mode="json"),
        }
        digest = chain_hash(originator_id, originator_version, data.TYPE, state)
        state["hash"] = digest
        meta = EventMetadata(
            event_id=event_id,
            actor_id=actor.user_id,
            actor_organisation=actor.organisation_id,
            principal=actor.principal,
            correlation_id=correlation_id,
            causation_id=causation_id,
            prev_hash=prev_hash,
            hash=digest,
        )
        return cls(
            originator_id=originator_id,
            originator_version=originator_version,
            timestamp=timestamp,
            data=data,
            meta=meta,
            state=state,
        )

    def mutate(self, aggregate: Case | None) -> Case:
        from services.case.domain.case import Case  # noqa: PLC0415 - Case imports this module

        return Case.evolve(aggregate, self)

    def __repr__(self) -> str:
        return f"CaseEvent({self.type}, case={self.originator_id}, v{self.originator_version})"


# Kept in the stored state beside the hashed fields, never hashed: the hash itself, on a
# commit's last event the commit's signature ({"key_id", "value"}), made over that hash, and
# with tracing on the trace of the request that stored it (services.shared.tracing).
UNHASHED_KEYS = ("hash", "signature", "traceparent")


@dataclass(frozen=True, slots=True)
class CommitSeal:
    """A commit's signature: Ed25519 over its last event's hash, by the key ``key_id``."""

    key_id: str
    value: str  # base64url

    def as_state(self) -> dict[str, str]:
        return {"key_id": self.key_id, "value": self.value}


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where and why a case's hash chain does not verify."""

    case_id: UUID
    version: int
    reason: str


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A stored event as read from the database, before any decoding or upcasting."""

    case_id: UUID
    version: int
    type: str
    state: dict[str, Any]


def verify_chain(
    case_id: UUID,
    events: Iterable[RawEvent],
    head: tuple[int, str] | None = None,
    *,
    keys: PublicKeys | None = None,
    head_seal: CommitSeal | None = None,
) -> ChainBreak | None:
    """Recompute the chain of one case; the first break found, or None if it holds.

    ``head`` is the (version, hash) recorded with the last write; it catches a deleted
    or edited last event, which the chain alone cannot. With ``keys`` the signatures are
    checked too: every commit signature stored with an event must verify, and the head
    must be signed (``head_seal``, recorded with the head): so a tail rewritten with its
    head, hashes and all, is caught by whoever lacks the private key.
    """
    expected_prev = GENESIS_HASH
    expected_version = 1
    last: tuple[int, str] | None = None
    for raw in events:
        if raw.version != expected_version:
            return ChainBreak(case_id, expected_version, f"version {expected_version} is missing")
        state = dict(raw.state)
        stored_hash = state.pop("hash", None)
        seal = state.pop("signature", None)
        state.pop("traceparent", None)  # the request's trace (tracing on): not part of the fact
        if state.get("prev_hash") != expected_prev:
            return ChainBreak(case_id, raw.version, "prev_hash does not match the previous event")
        if chain_hash(case_id, raw.version, raw.type, state) != stored_hash:
            return ChainBreak(case_id, raw.version, "the event's content does not match its hash")
        if keys is not None and seal is not None:
            broken = _seal_break(case_id, raw.version, str(stored_hash), seal, keys)
            if broken is not None:
                return broken
        expected_prev = str(stored_hash)
        expected_version += 1
        last = (raw.version, expected_prev)
    if head is not None and last != head:
        if last is None or last[0] < head[0]:
            return ChainBreak(case_id, (last[0] + 1) if last else 1, "events after this version are missing")
        return ChainBreak(case_id, last[0], "the last event does not match the recorded head")
    if keys is not None and last is not None:
        if head_seal is None:
            return ChainBreak(case_id, last[0], "the head is not signed")
        return _seal_break(case_id, last[0], last[1], head_seal.as_state(), keys, what="the head's signature")
    return None


def _seal_break(
    case_id: UUID, version: int, digest: str, seal: Any, keys: PublicKeys, *, what: str = "the signature"
) -> ChainBreak | None:
    key_id = seal.get("key_id") if isinstance(seal, dict) else None
    if not isinstance(key_id, str) or key_id not in keys:
        return ChainBreak(case_id, version, f"{what} names an unknown key ({key_id})")
    if not keys.verifies(key_id, str(seal.get("value")), digest):
        return ChainBreak(case_id, version, f"{what} (key {key_id}) does not verify")
    return None
