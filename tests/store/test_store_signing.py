"""Signed commits: each commit's last event is signed; a rewritten tail fails without the key."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
import pytest

from services.case.application.service import CaseService
from services.case.domain.events import canonical_bytes, chain_hash
from services.case.infrastructure.signing import CommitSigner
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from tests.support.clock import FixedClock
from tests.support.scenario import FIRST_SIP_EVENT_TYPES, drive_to_first_sip
from tests.support.stores import StoreFactory, raw_execute, raw_query, stored_originator_id
from vss_contracts.signing import PublicKeys, b64url_decode, signature_input
from vss_contracts.verification import CaseVerificationFailed, verify_case

LAST = len(FIRST_SIP_EVENT_TYPES)
# drive_to_first_sip's commits end at these versions (two commits store several events).
COMMIT_ENDS = [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 14]


def keys_of(*signers: CommitSigner) -> PublicKeys:
    keys = PublicKeys()
    for signer in signers:
        keys = keys.with_key(signer.key_id, signer.private_key.public_key())
    return keys


def published_events(store: CaseEventStore, case_id: UUID) -> list[dict[str, Any]]:
    """The case's events as the relay publishes them (an organisation's copy)."""
    bodies = [orjson.loads(p.body) for p in store.published_log(0, 10_000)]
    return [body for body in bodies if body["subject"] == str(case_id)]


def state_of(url: str, table: str, case_id: UUID, version: int) -> dict[str, Any]:
    ((state,),) = raw_query(
        url,
        f"SELECT state FROM {table} WHERE originator_id = %s AND originator_version = %s",
        (stored_originator_id(url, case_id), version),
    )
    return dict(orjson.loads(bytes(state)))


def rewrite_tail(url: str, store: CaseEventStore, case_id: UUID, first: int, *, keep_signature: bool) -> None:
    """An administrator's consistent forgery: events ``first``…LAST edited and rehashed, each
    ``prev_hash`` relinked, the head row updated to the new last hash."""
    table = store.case_recorder.events_table_name
    previous = state_of(url, table, case_id, first - 1)["hash"]
    for version in range(first, LAST + 1):
        state = state_of(url, table, case_id, version)
        signature = state.pop("signature", None)
        state.pop("hash")
        state["prev_hash"] = previous
        if version == first:
            state["actor_id"] = "someone.else"
        state["hash"] = previous = chain_hash(case_id, version, FIRST_SIP_EVENT_TYPES[version - 1], state)
        if signature is not None and keep_signature:
            state["signature"] = signature
        raw_execute(
            url,
            f"UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
            (canonical_bytes(state), stored_originator_id(url, case_id), version),
        )
    assert (
        raw_execute(url, "UPDATE case_heads SET hash = %s WHERE case_id = %s", (previous, str(case_id))) == 1
    )


def test_each_commit_is_signed_once_over_its_last_event(
    service: CaseService,
    store: CaseEventStore,
    store_url: str,
    clock: FixedClock,
    commit_signer: CommitSigner,
) -> None:
    case_id = drive_to_first_sip(service, clock).case_id
    assert case_id is not None
    events = published_events(store, case_id)

    assert [e["caseversion"] for e in events if "vsssig" in e] == COMMIT_ENDS
    assert {e.get("vsskeyid") for e in events} == {commit_signer.key_id, None}
    head = state_of(store_url, store.case_recorder.events_table_name, case_id, LAST)
    assert head["signature"]["key_id"] == commit_signer.key_id
    assert store.head_seal(case_id) is not None
    assert store.head_seal(case_id).value == head["signature"]["value"]  # type: ignore[union-attr]
    keys = keys_of(commit_signer)
    assert store.verify(case_id, keys) is None
    verified = verify_case(events, keys)
    assert (verified.version, verified.signed_through, verified.key_ids) == (
        LAST,
        LAST,
        frozenset({commit_signer.key_id}),
    )
    assert [store.cloud_event(n).vsssig is not None for n in store.read_log(0)] == [
        e["caseversion"] in COMMIT_ENDS for e in events
    ]


@pytest.mark.parametrize("keep_signature", [True, False], ids=["old-signature-kept", "signature-dropped"])
def test_a_consistently_rewritten_tail_fails_verification_naming_case_and_version(
    service: CaseService,
    store: CaseEventStore,
    store_url: str,
    clock: FixedClock,
    commit_signer: CommitSigner,
    keep_signature: bool,
) -> None:
    tampered = drive_to_first_sip(service, clock).case_id
    intact = drive_to_first_sip(service, clock).case_id
    assert tampered is not None
    assert intact is not None
    keys = keys_of(commit_signer)

    rewrite_tail(store_url, store, tampered, 12, keep_signature=keep_signature)

    # The hash chain and the head alone are fooled (ADR 0001's known limit) …
    assert store.verify(tampered) is None
    # … the signatures are not: the store's check and an organisation's, with the contracts alone.
    broken = store.verify(tampered, keys)
    assert broken is not None
    assert (broken.case_id, broken.version) == (tampered, LAST)
    with pytest.raises(CaseVerificationFailed) as failure:
        verify_case(published_events(store, tampered), keys)
    assert (failure.value.case_id, failure.value.version) == (str(tampered), LAST)
    assert store.verify(intact, keys) is None
    verify_case(published_events(store, intact), keys)


def test_after_a_key_rotation_old_events_verify_and_new_commits_carry_the_new_key(
    store_url: str,
    store: CaseEventStore,
    open_store: StoreFactory,
    clock: FixedClock,
    commit_signer: CommitSigner,
) -> None:
    scenario = drive_to_first_sip(CaseService(store, clock), clock)
    case_id = scenario.case_id
    assert case_id is not None
    rotated = CommitSigner.generate("test-key-2")
    after = CaseEventStore(StoreConfig(store_url), signer=rotated)  # the service restarted on the new key
    try:
        scenario.service = CaseService(after, clock)
        scenario.hold_meeting()
        events = published_events(after, case_id)
        assert events[-1]["caseversion"] == LAST + 1
        assert events[-1]["vsskeyid"] == rotated.key_id
        assert {e["vsskeyid"] for e in events[:-1] if "vsskeyid" in e} == {commit_signer.key_id}
        both = keys_of(commit_signer, rotated)
        assert after.verify(case_id, both) is None
        assert verify_case(events, both).key_ids == {commit_signer.key_id, rotated.key_id}
        # Without the old public key, the old signatures cannot be checked: named, not skipped.
        with pytest.raises(CaseVerificationFailed, match="unknown key"):
            verify_case(events, keys_of(rotated))
    finally:
        after.close()


def test_migrate_seals_the_heads_of_cases_stored_unsigned_and_refuses_a_broken_one(
    store_url: str, open_store: StoreFactory, clock: FixedClock, commit_signer: CommitSigner
) -> None:
    migrate(StoreConfig(store_url))
    legacy = open_store()  # no signer: as stores were before commits were signed
    good = drive_to_first_sip(CaseService(legacy, clock), clock).case_id
    bad = drive_to_first_sip(CaseService(legacy, clock), clock).case_id
    assert good is not None
    assert bad is not None
    keys = keys_of(commit_signer)
    unsigned = legacy.verify(good, keys)
    assert unsigned is not None
    assert unsigned.reason == "the head is not signed"
    state = state_of(store_url, legacy.case_recorder.events_table_name, bad, 5)
    state["data"]["summary"] = "ändrat"
    raw_execute(
        store_url,
        f"UPDATE {legacy.case_recorder.events_table_name} SET state = %s"
        " WHERE originator_id = %s AND originator_version = 5",
        (canonical_bytes(state), stored_originator_id(store_url, bad)),
    )

    report = migrate(StoreConfig(store_url), commit_signer)

    assert report.sealed == 1
    assert [(b.case_id, b.version) for b in report.not_sealed] == [(bad, 5)]
    assert legacy.verify(good, keys) is None
    assert legacy.head_seal(bad) is None
    assert migrate(StoreConfig(store_url), commit_signer).sealed == 0  # once
    # The published copy of a sealed legacy case has no signed event yet: verifiable as a
    # chain, and covered by the next signed commit.
    assert verify_case(published_events(legacy, good), keys, require_signed_head=False).signed_through == 0


def test_migrate_adds_the_signature_columns_to_a_store_of_the_first_schema(
    store_url: str, open_store: StoreFactory, clock: FixedClock, commit_signer: CommitSigner
) -> None:
    raw_execute(
        store_url,
        "CREATE TABLE case_heads (case_id TEXT PRIMARY KEY, version BIGINT NOT NULL, hash TEXT NOT NULL)",
    )
    migrate(StoreConfig(store_url))

    store = open_store()
    store.check_migrated()
    case_id = drive_to_first_sip(CaseService(store, clock), clock).case_id
    assert case_id is not None
    assert store.verify(case_id) is None


@pytest.mark.parametrize("event_hash", ["0" * 64, "ab" * 32, "f" * 64])
def test_the_libsodium_seal_is_the_ed25519_signature_the_key_makes(event_hash: str) -> None:
    """Commits are signed through libsodium; the key files are cryptography's: one signature."""
    signer = CommitSigner.generate("k-1")
    seal = signer.seal(event_hash)
    assert seal.key_id == "k-1"
    assert b64url_decode(seal.value) == signer.private_key.sign(signature_input(event_hash))
    signer.private_key.public_key().verify(b64url_decode(seal.value), signature_input(event_hash))
