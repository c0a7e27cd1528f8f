"""Verify a case's events with the contracts alone: the hash chain and the commit signatures.

An organisation that keeps a copy of the events it received (the CloudEvents of
``VSS_CASE`` or ``VSS_SHARE``, or a ``vss export`` document's ``events``) checks it with
the case service's public keys (``/.well-known/vss-keys.json``)::

    from vss_contracts.signing import PublicKeys
    from vss_contracts.verification import CaseVerificationFailed, verify_case

    keys = PublicKeys.from_json(open("vss-keys.json").read())
    try:
        verified = verify_case(events, keys)
    except CaseVerificationFailed as failure:
        print(failure.case_id, failure.version, failure.reason)

What holds when it returns: versions run 1, 2, 3 … without a gap; each event's
``eventhash`` recomputes from its content and ``prevhash`` is the previous event's hash;
every ``vsssig`` present verifies, with a key of the set, over its event's hash; and (unless
``require_signed_head=False``) the last event is signed, so the whole copy is covered by a
signature: rewriting any event changes the hash of every later one, which the key holder
alone can sign. The rules are specified language-neutrally in docs/verifying.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vss_contracts.chain import GENESIS_HASH, cloud_event_hash
from vss_contracts.envelope import CloudEvent
from vss_contracts.signing import PublicKeys

__all__ = ["CaseVerificationFailed", "CaseVerified", "verify_case"]


class CaseVerificationFailed(ValueError):
    """The first place where a case's events do not verify: which case, which version, why."""

    def __init__(self, case_id: str, version: int, reason: str) -> None:
        super().__init__(f"case {case_id} does not verify at version {version}: {reason}")
        self.case_id = case_id
        self.version = version
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CaseVerified:
    """What a verified copy holds: its last version and hash, and how far a signature covers it."""

    case_id: str
    version: int
    head_hash: str
    signed_through: int  # the last signed version (0: none); everything up to it is covered
    key_ids: frozenset[str]  # the keys whose signatures were checked


def _as_mapping(event: Mapping[str, Any] | CloudEvent) -> Mapping[str, Any]:
    return event.model_dump(mode="json") if isinstance(event, CloudEvent) else event


def verify_case(
    events: Iterable[Mapping[str, Any] | CloudEvent],
    keys: PublicKeys,
    *,
    require_signed_head: bool = True,
) -> CaseVerified:
    """Check one case's events (CloudEvent JSON objects or models, in ``caseversion`` order, from 1).

    Raises :class:`CaseVerificationFailed` naming the case and the first version that fails.
    """
    case_id: str | None = None
    expected_prev = GENESIS_HASH
    version = signed_through = 0
    used: set[str] = set()
    for item in events:
        event = _as_mapping(item)
        subject = str(event.get("subject"))
        case_id = case_id or subject
        version += 1
        if subject != case_id:
            raise CaseVerificationFailed(
                case_id, version, f"an event of another case ({subject}) is mixed in"
            )
        got = event.get("caseversion")
        if got != version:
            raise CaseVerificationFailed(
                case_id, version, f"version {version} is missing (the next event is version {got})"
            )
        if event.get("prevhash") != expected_prev:
            raise CaseVerificationFailed(case_id, version, "prevhash does not match the previous event")
        try:
            recomputed = cloud_event_hash(event)
        except (KeyError, TypeError, ValueError) as error:
            raise CaseVerificationFailed(
                case_id, version, f"the event lacks what its hash covers: {error}"
            ) from None
        if recomputed != event.get("eventhash"):
            raise CaseVerificationFailed(case_id, version, "the event's content does not match its hash")
        signature, key_id = event.get("vsssig"), event.get("vsskeyid")
        if signature is not None or key_id is not None:
            if not isinstance(key_id, str) or key_id not in keys:
                raise CaseVerificationFailed(case_id, version, f"signed with an unknown key ({key_id})")
            if not isinstance(signature, str) or not keys.verifies(key_id, signature, recomputed):
                raise CaseVerificationFailed(
                    case_id, version, f"the signature (key {key_id}) does not verify"
                )
            signed_through = version
            used.add(key_id)
        expected_prev = recomputed
    if case_id is None:
        raise CaseVerificationFailed("?", 1, "no events")
    if require_signed_head and signed_through != version:
        raise CaseVerificationFailed(
            case_id,
            version,
            f"no signature covers versions {signed_through + 1}–{version} (the last event is not signed)",
        )
    return CaseVerified(case_id, version, expected_prev, signed_through, frozenset(used))
