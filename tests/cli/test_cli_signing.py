"""`vss verify` with signatures and the stream, `vss keys`, and sealing by `vss migrate`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.signing import Keyring
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.names import BusNames
from tests.store.test_store_signing import LAST, rewrite_tail, state_of
from tests.support.bus import RelayProcess, read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.scenario import drive_to_first_sip
from tests.support.stores import raw_execute, stored_originator_id
from vss_contracts.signing import PublicKeys
from vss_contracts.verification import CaseVerificationFailed, verify_case

VSS = str(Path(sys.executable).parent / "vss")


def vss(*args: str, data_dir: Path, store_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "VSS_DATA_DIR": str(data_dir), "VSS_CASE_STORE_URL": store_url, **env}
    return subprocess.run(
        [VSS, *args], env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def keyring(data_dir: Path) -> Keyring:
    """The embedded defaults' key directory, as the CLI and the case service find it."""
    return Keyring(data_dir / "case" / "signing")


def signed_cases(tmp_path: Path, count: int) -> tuple[str, list[UUID]]:
    url = f"sqlite:///{tmp_path}/events.sqlite"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url), signer=keyring(tmp_path).ensure())
    try:
        clock = FixedClock()
        service = CaseService(store, clock)
        ids = [drive_to_first_sip(service, clock).case_id for _ in range(count)]
    finally:
        store.close()
    return url, [case_id for case_id in ids if case_id is not None]


def test_a_consistently_rewritten_tail_fails_vss_verify_and_the_contracts_check_of_an_export(
    tmp_path: Path,
) -> None:
    url, (tampered, intact) = signed_cases(tmp_path, 2)
    assert vss("verify", "--all", data_dir=tmp_path, store_url=url).returncode == 0
    store = CaseEventStore(StoreConfig(url))
    try:
        rewrite_tail(url, store, tampered, 12, keep_signature=True)
        assert store.verify(tampered) is None  # hashes and head agree: only the signature tells
    finally:
        store.close()

    result = vss("verify", "--all", data_dir=tmp_path, store_url=url)

    assert result.returncode == 1
    assert f"ok      {intact}" in result.stdout
    assert f"BROKEN  {tampered} at version {LAST}: the signature (key " in result.stdout
    assert result.stderr.strip() == "vss: 1 of 2 case(s) fail verification"
    # An organisation with the exported keys and the case's events (here `vss export`'s), contracts only.
    keys_file = tmp_path / "vss-keys.json"
    assert vss("keys", "export", "--out", str(keys_file), data_dir=tmp_path, store_url=url).returncode == 0
    document = tmp_path / "case.json"
    exported = vss("export", str(tampered), "--out", str(document), data_dir=tmp_path, store_url=url)
    assert exported.returncode == 1  # written, and saying it does not verify
    written = json.loads(document.read_text())
    assert written["verification"]["verifies"] is False
    assert written["verification"]["version"] == LAST
    with pytest.raises(CaseVerificationFailed) as failure:
        verify_case(written["events"], PublicKeys.from_file(keys_file))
    assert (failure.value.case_id, failure.value.version) == (str(tampered), LAST)


def test_a_key_rotation_keeps_old_events_verifying_and_new_commits_carry_the_new_key(tmp_path: Path) -> None:
    url, (case_id,) = signed_cases(tmp_path, 1)
    old = keyring(tmp_path).signer().key_id

    rotated = vss("keys", "rotate", data_dir=tmp_path, store_url=url)

    assert rotated.returncode == 0, rotated.stderr
    new = keyring(tmp_path).signer().key_id
    assert new != old
    assert f"new signing key {new}" in rotated.stdout
    assert not (tmp_path / "case" / "signing" / f"{old}.pem").exists()  # it can sign nothing more
    store = CaseEventStore(StoreConfig(url), signer=keyring(tmp_path).signer())  # the restarted service
    try:
        clock = FixedClock()
        drive_to_first_sip(CaseService(store, clock), clock)
        [event] = [store.cloud_event(n) for n in store.read_log(0) if n.originator_id == case_id][-1:]
        newest = store.cloud_event(store.read_log(0)[-1])
    finally:
        store.close()
    assert event.vsskeyid == old
    assert newest.vsskeyid == new
    exported = vss("keys", "export", data_dir=tmp_path, store_url=url)
    assert {key["kid"] for key in json.loads(exported.stdout)["keys"]} == {old, new}
    verified = vss("verify", "--all", data_dir=tmp_path, store_url=url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 case(s) verified" in verified.stdout


def test_migrate_seals_cases_stored_before_signing_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.sqlite"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))  # unsigned, as before this change
    try:
        clock = FixedClock()
        case_id = drive_to_first_sip(CaseService(store, clock), clock).case_id
    finally:
        store.close()
    keyring(tmp_path).ensure()
    unsigned = vss("verify", str(case_id), data_dir=tmp_path, store_url=url)
    assert unsigned.returncode == 1
    assert f"BROKEN  {case_id} at version {LAST}: the head is not signed" in unsigned.stdout

    sealed = vss("migrate", data_dir=tmp_path, store_url=url)

    assert sealed.returncode == 0, sealed.stderr
    assert "case heads signed with key" in sealed.stdout
    assert vss("verify", str(case_id), data_dir=tmp_path, store_url=url).returncode == 0
    assert "case heads signed" not in vss("migrate", data_dir=tmp_path, store_url=url).stdout


def test_verify_without_keys_or_with_a_bad_key_file_exits_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.sqlite"
    migrate(StoreConfig(url))
    no_keys = vss("verify", "--all", data_dir=tmp_path, store_url=url)
    assert no_keys.returncode == 2
    assert "no public keys" in no_keys.stderr
    (tmp_path / "bad.json").write_text('{"keys": [{"kid": "k", "kty": "RSA"}]}')
    bad = vss("verify", "--all", "--keys", str(tmp_path / "bad.json"), data_dir=tmp_path, store_url=url)
    assert bad.returncode == 2
    assert "not an Ed25519 key" in bad.stderr


def test_a_store_that_lost_events_the_stream_holds_fails_verify_against_the_stream(
    tmp_path: Path, nats_url: str, bus_names: BusNames
) -> None:
    url, (restored, intact) = signed_cases(tmp_path, 2)
    relay = RelayProcess(url, nats_url, bus_names, tmp_path)
    relay.start()
    try:
        published = lambda: len(asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects)))  # noqa: E731
        assert wait_until(lambda: published() >= 2 * LAST, 20), relay.logs()
    finally:
        assert relay.stop() == 0, relay.logs()
    # An organisation's copy, as the real relay published it, verifies with the contracts alone.
    exported_keys = vss("keys", "export", data_dir=tmp_path, store_url=url).stdout
    messages = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
    for case_id in (restored, intact):
        copy = [json.loads(m.body) for m in messages if json.loads(m.body)["subject"] == str(case_id)]
        assert verify_case(copy, PublicKeys.from_json(exported_keys)).version == LAST
    bus = {"VSS_NATS_URL": nats_url, "VSS_BUS_STREAM": bus_names.stream}
    bus["VSS_BUS_SUBJECT_PREFIX"] = bus_names.subject_prefix
    assert vss("verify", "--all", "--against-stream", data_dir=tmp_path, store_url=url, **bus).returncode == 0
    # A restore from a backup taken before the last commit (versions 12–14): a consistent,
    # signed store, but it lacks what the stream holds.
    store = CaseEventStore(StoreConfig(url))
    try:
        table = store.case_recorder.events_table_name
        previous = state_of(url, table, restored, 11)
        raw_execute(
            url,
            f"DELETE FROM {table} WHERE originator_id = %s AND originator_version > 11",
            (stored_originator_id(url, restored),),
        )
        seal = previous["signature"]
        raw_execute(
            url,
            "UPDATE case_heads SET version = 11, hash = %s, key_id = %s, signature = %s WHERE case_id = %s",
            (previous["hash"], seal["key_id"], seal["value"], str(restored)),
        )
    finally:
        store.close()
    assert vss("verify", "--all", data_dir=tmp_path, store_url=url).returncode == 0

    result = vss("verify", "--all", "--against-stream", data_dir=tmp_path, store_url=url, **bus)

    assert result.returncode == 1
    assert f"BROKEN  {restored} at version 12: the stream holds version 12" in result.stdout
    assert f"ok      {intact}" in result.stdout
    one = vss("verify", str(restored), "--against-stream", data_dir=tmp_path, store_url=url, **bus)
    assert one.returncode == 1
    assert f"BROKEN  {restored} at version 12" in one.stdout
