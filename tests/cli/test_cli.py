"""The `vss` CLI as an operator runs it: exit codes and one-line reasons."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.signing import Keyring
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.case.settings import CaseSettings
from services.cli.main import _parts
from services.cli.registry import mail_sink
from services.cli.supervisor import Part
from services.notifications.application.service import Signer
from services.notifications.settings import NotificationsSettings
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.settings import AccessLogSettings, AuthSettings, BusSettings
from services.sharing.infrastructure.store import SharingStore
from tests.support.clock import FixedClock
from tests.support.scenario import drive_to_first_sip
from vss_contracts.chain import GENESIS_HASH, cloud_event_hash
from vss_contracts.envelope import CloudEvent

VSS = str(Path(sys.executable).parent / "vss")


def vss(*args: str, data_dir: Path, store_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VSS_DATA_DIR": str(data_dir)}
    env.pop("VSS_CASE_STORE_URL", None)
    if store_url:
        env["VSS_CASE_STORE_URL"] = store_url
    return subprocess.run([VSS, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_token_is_valid_for_the_embedded_defaults(tmp_path: Path) -> None:
    result = vss(
        "token", "--user", "anna.k", "--org", "vgr-psyk", "--principal", "region",
        "--role", "coordinator", "--role", "operator", data_dir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    claims = TokenService.from_settings(AuthSettings(), tmp_path).verify(result.stdout.strip())
    assert (claims.user_id, claims.organisation_id, claims.principal) == ("anna.k", "vgr-psyk", "region")
    assert claims.roles == {"coordinator", "operator"}


def test_a_clients_token_for_the_embedded_defaults(tmp_path: Path) -> None:
    result = vss("token", "--client", "19121212-1212", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    claims = TokenService.from_settings(AuthSettings(), tmp_path).verify(result.stdout.strip())
    assert (claims.user_id, claims.organisation_id, claims.principal) == ("191212121212", "", "client")
    assert claims.roles == {"client"}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ("token", "--user", "a", "--org", "b", "--principal", "kommun", "--role", "coordinator"),
            "--principal",
        ),
        (("token", "--client", "19121212-1213"), "Luhn"),
        (("token", "--client", "19121212-1212", "--role", "coordinator"), "--client takes none of --role"),
        (("token", "--user", "a"), "missing --org, --principal, --role"),
        (("verify",), "give a CASE_ID or --all"),
        (("verify", "not-a-case"), "is not a case id"),
        (("export", "not-a-case"), "is not a case id"),
        (("export", "00000000-0000-4000-8000-000000000000"), "run `vss migrate`"),
        (("nosuch",), "No such command"),
        (("projections", "status"), "no read models yet"),
        (("projections", "rebuild", "--batch", "0"), "--batch"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    result = vss(*args, data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("vss: ")
    assert reason in lines[0]


def test_migrate_refuses_an_unknown_store_url(tmp_path: Path) -> None:
    result = vss("migrate", data_dir=tmp_path, store_url="mysql://db/vss")
    assert result.returncode == 2
    assert "sqlite:///PATH or postgresql://" in result.stderr


def test_migrate_prepares_the_sharing_store_too(tmp_path: Path) -> None:
    result = vss("migrate", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = "".join(result.stdout.split())  # (the console wraps long lines)
    assert f"sharingstoreready:sqlite:///{(tmp_path / 'sharing.sqlite').resolve()}" in printed
    store = SharingStore(f"sqlite:///{tmp_path / 'sharing.sqlite'}")
    store.check_migrated()  # raises if it has no tables
    store.close()
    assert vss("migrate", data_dir=tmp_path).returncode == 0  # safe to repeat


def test_verify_names_the_broken_case_and_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.sqlite"
    migrate(StoreConfig(url))
    # Signed with the data directory's key, as the case service signs (vss verify checks it).
    signer = Keyring(tmp_path / "case" / "signing").ensure()
    store = CaseEventStore(StoreConfig(url), signer=signer)
    try:
        clock = FixedClock()
        service = CaseService(store, clock)
        intact = drive_to_first_sip(service, clock).case_id
        tampered = drive_to_first_sip(service, clock).case_id
    finally:
        store.close()
    assert vss("verify", "--all", data_dir=tmp_path, store_url=url).returncode == 0

    with sqlite3.connect(tmp_path / "events.sqlite") as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'Tolvan', 'Tolvan!') "
            "WHERE originator_id = ? AND originator_version = 5",
            (tampered.hex,),  # type: ignore[union-attr]
        )
    result = vss("verify", "--all", data_dir=tmp_path, store_url=url)
    assert result.returncode == 1
    assert f"ok      {intact}" in result.stdout
    assert f"BROKEN  {tampered} at version 5" in result.stdout
    assert result.stderr.strip() == "vss: 1 of 2 case(s) fail verification"


def test_export_writes_the_case_as_cloud_events_a_receiver_can_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.sqlite"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    try:
        clock = FixedClock()
        case_id = drive_to_first_sip(CaseService(store, clock), clock).case_id
    finally:
        store.close()
    target = tmp_path / "case.json"
    result = vss(
        "export", str(case_id), "--out", str(target), "--operator", "ops.olle",
        data_dir=tmp_path, store_url=url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # An operator reading the whole case: one record in the access log.
    access_log = AccessLogStore(AccessLogSettings(data_dir=tmp_path).access_log())
    [(_, record)] = access_log.for_case(str(case_id), 0, 10)
    assert (record.user_id, record.organisation_id, record.roles, record.principal) == (
        "ops.olle", "vss-operations", ("operator",), "other",
    )  # fmt: skip
    assert (record.resource, record.outcome) == ("export", "granted")
    assert target.stat().st_mode & 0o777 == 0o600  # a whole case: the operator's alone
    document = json.loads(target.read_text())
    assert document["format"] == "vss-case-export/1"
    assert document["verification"] == {"verifies": True}
    events = document["events"]
    assert [e["caseversion"] for e in events] == list(range(1, len(events) + 1))
    assert document["head"] == {"version": len(events), "hash": events[-1]["eventhash"]}
    # With the contracts alone: each event decodes, and the chain recomputes.
    previous = GENESIS_HASH
    for body in events:
        event = CloudEvent.model_validate(body)
        event.typed_data()
        assert body["prevhash"] == previous
        assert cloud_event_hash(body) == body["eventhash"]
        previous = body["eventhash"]
    assert document["state"]["phase"] == "working"
    # It never overwrites; a tampered store exports, says so, and exits 1.
    again = vss("export", str(case_id), "--out", str(target), data_dir=tmp_path, store_url=url)
    assert again.returncode == 2
    assert "exists already" in again.stderr
    with sqlite3.connect(tmp_path / "events.sqlite") as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'Tolvan', 'Tolvan!')"
            " WHERE originator_version = 5"
        )
    broken = vss("export", str(case_id), data_dir=tmp_path, store_url=url)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["verification"]["version"] == 5
    assert broken.stderr.startswith(f"vss: case {case_id} does not verify at version 5")


@pytest.mark.parametrize(
    ("command", "variable", "value", "prefix"),
    [
        ([VSS, "status"], "VSS_NATS_PORT", "abc", "vss: invalid settings: VSS_NATS_PORT: "),
        ([VSS, "up"], "VSS_CASE_PORT", "x", "vss: invalid settings: VSS_CASE_PORT: "),
        (
            [sys.executable, "-m", "services.case.relay_main"],
            "VSS_RELAY_LEASE_TTL",
            "abc",
            "case relay: invalid settings: VSS_RELAY_LEASE_TTL: ",
        ),
        (
            [sys.executable, "-m", "services.case.main"],
            "VSS_CASE_PORT",
            "x",
            "case service: invalid settings: VSS_CASE_PORT: ",
        ),
        (
            [sys.executable, "-m", "services.projections.main", "api"],
            "VSS_ACCESS_LOG_RETENTION_DAYS",
            "365",
            "projections: invalid settings: VSS_ACCESS_LOG_RETENTION_DAYS: ",
        ),
        (
            [sys.executable, "-m", "services.projections.main", "projector"],
            "VSS_READ_MODEL_URL",
            "mysql://db/x",
            "projections: VSS_READ_MODEL_URL must be sqlite:///DIRECTORY or postgresql://",
        ),
        (
            [sys.executable, "-m", "services.sharing.main"],
            "VSS_NICE",
            "20",
            "sharing: invalid settings: VSS_NICE: ",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    tmp_path: Path, command: list[str], variable: str, value: str, prefix: str
) -> None:
    env = {**os.environ, "VSS_DATA_DIR": str(tmp_path), variable: value}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix)
    assert not (tmp_path / "up.json").exists()


def test_rotate_ack_key_keeps_the_previous_key_for_the_overlap(tmp_path: Path) -> None:
    settings = NotificationsSettings(data_dir=tmp_path)
    before = Signer(settings.link_key()).sign("delivery-1")
    result = vss("notifications", "rotate-ack-key", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "72 h" in result.stdout
    previous = settings.previous_link_key()
    assert previous is not None
    rotated = Signer(settings.link_key(), previous, settings.link_key_overlap())
    assert rotated.sign("delivery-1") != before
    assert rotated.valid("delivery-1", before)  # links already sent still work
    for key_file in settings.link_key_file().parent.iterdir():
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277])
def test_log_files_are_the_owners_alone_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    older = tmp_path / "logs" / "older.log"
    older.parent.mkdir()
    older.write_bytes(b"from before\n")
    older.chmod(0o644)
    previous = os.umask(umask)
    try:
        for log_file in (tmp_path / "logs" / "case.log", older, tmp_path / "new" / "query.log"):
            part = Part("echo", [sys.executable, "-c", "print('logged')"], "", log_file=log_file)
            part.start(dict(os.environ))
            assert part.process is not None
            assert part.process.wait(30) == 0
            assert stat.S_IMODE(log_file.stat().st_mode) == 0o600, log_file
            assert log_file.read_text().endswith("logged\n")
        assert older.read_text() == "from before\nlogged\n"
        nats = EmbeddedNatsServer(tmp_path / "nats", log_file=tmp_path / "logs" / "nats.log")
        nats.start()
        nats.stop()
        assert stat.S_IMODE((tmp_path / "logs" / "nats.log").stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_vss_up_runs_the_mail_sink_as_its_own_part_and_points_notifications_at_it(tmp_path: Path) -> None:
    settings = CaseSettings(data_dir=tmp_path)
    sink = mail_sink(NotificationsSettings(data_dir=tmp_path, smtp_host="", smtp_port=2526))
    assert sink is not None
    assert (sink.url, sink.mail_dir) == ("smtp://127.0.0.1:2526", str((tmp_path / "mail").resolve()))
    parts = _parts(settings, BusSettings(), embedded_nats=True, sink=sink)
    names = [part.name for part in parts]
    assert names.index("mail-sink") == names.index("notifications") - 1  # up before its client
    started = {part.name: part for part in parts}
    assert started["mail-sink"].command == [sys.executable, "-m", "services.notifications.mailsink_main"]
    assert started["mail-sink"].url == "smtp://127.0.0.1:2526"
    assert started["mail-sink"].log_file == tmp_path.resolve() / "logs" / "mail-sink.log"
    # As at a real relay: the notifications service so started runs no sink of its own.
    notifications = started["notifications"].env
    assert (notifications["VSS_SMTP_HOST"], notifications["VSS_SMTP_PORT"]) == ("127.0.0.1", "2526")
    assert not any("VSS_SMTP_HOST" in part.env for name, part in started.items() if name != "notifications")


def test_with_a_relay_given_vss_up_starts_no_mail_sink(tmp_path: Path) -> None:
    relay = NotificationsSettings(data_dir=tmp_path, smtp_host="smtp.example.se", smtp_port=587)
    assert mail_sink(relay) is None
    parts = _parts(CaseSettings(data_dir=tmp_path), BusSettings(), embedded_nats=True, sink=mail_sink(relay))
    assert "mail-sink" not in [part.name for part in parts]
    notifications = next(part for part in parts if part.name == "notifications")
    assert "VSS_SMTP_HOST" not in notifications.env  # the relay of its own environment


def test_vss_up_runs_the_parts_whose_work_may_wait_at_a_lower_priority(tmp_path: Path) -> None:
    settings = CaseSettings(data_dir=tmp_path, background_nice=7)
    parts = {part.name: part for part in _parts(settings, BusSettings(), embedded_nats=True)}
    lowered = {name for name, part in parts.items() if part.env.get("VSS_NICE") == "7"}
    assert lowered == {"projector", "meetings", "sharing"}
    # What answers a person or carries events on stays at the supervisor's priority, whatever
    # VSS_NICE the shell has.
    assert all(parts[name].env["VSS_NICE"] == "0" for name in ("case", "relay", "query", "notifications"))

    # A service applies it before anything else: its process (and so its threads) runs at it.
    probe = (
        "import os, threading; from services.shared.serve import yield_cpu; "
        "before = os.nice(0); yield_cpu(7); seen = []; "
        "t = threading.Thread(target=lambda: seen.append(os.nice(0))); t.start(); t.join(); "
        "print(os.nice(0) - before, seen[0] - before)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["7", "7"]
