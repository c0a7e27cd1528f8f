"""`vss nats-config`, the organisations file, and `vss status` naming organisations it cannot reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.case.application.service import CaseService
from services.case.entrypoints.http import case_grants
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.authorization import (
    InternalRole,
    internal_seed_path,
    new_user_seed,
    organisation_seed_path,
    public_key,
)
from services.shared.bus.embedded import nats_server_binary
from services.shared.organisations import OrganisationsFileInvalid, parse_organisations
from tests.support.clock import FixedClock
from tests.support.readmodels import project
from tests.support.scenario import drive_to_first_sip

VSS = str(Path(sys.executable).parent / "vss")
REGION, MUNICIPALITY = "vgr-psykiatri-nordost", "goteborg-socialtjanst"


def vss(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "VSS_DATA_DIR": str(data_dir), **env}
    for name in ("VSS_ORGANISATIONS", "VSS_NOTIFY_ORGANISATIONS", "VSS_CASE_STORE_URL"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [VSS, *args], env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_nats_config_writes_public_keys_and_private_seeds(tmp_path: Path) -> None:
    own = public_key(new_user_seed())
    file = write(tmp_path / "orgs.json", {REGION: {}, MUNICIPALITY: {"nats": {"public_key": own}}})
    result = vss("nats-config", "--organisations", str(file), data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    auth = tmp_path / "data" / "nats-auth"
    config = (auth / "authorization.conf").read_text()
    region_seed = organisation_seed_path(auth, REGION)
    seeds = [region_seed, *(internal_seed_path(auth, role) for role in InternalRole)]
    assert {oct(seed.stat().st_mode & 0o777) for seed in seeds} == {"0o600"}
    assert oct((auth / "authorization.conf").stat().st_mode & 0o777) == "0o600"
    # Public keys only: no seed text in the server's file, and the municipality's own key used.
    assert not any(seed.read_text().strip() in config for seed in seeds)
    assert public_key(region_seed.read_bytes()) in config
    assert own in config
    assert not organisation_seed_path(auth, MUNICIPALITY).exists()
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(auth / "authorization.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert str(region_seed) in result.stdout


def test_nats_config_keeps_seeds_and_rotates_only_the_one_named(tmp_path: Path) -> None:
    file = write(tmp_path / "orgs.json", {REGION: {}, MUNICIPALITY: {}})
    data = tmp_path / "data"
    auth = data / "nats-auth"
    assert vss("nats-config", "--organisations", str(file), data_dir=data).returncode == 0
    before = {p: p.read_bytes() for p in auth.rglob("*.nk")}
    assert vss("nats-config", data_dir=data, VSS_ORGANISATIONS=str(file)).returncode == 0
    assert {p: p.read_bytes() for p in auth.rglob("*.nk")} == before
    rotated = vss(
        "nats-config", "--organisations", str(file), "--rotate", REGION, "--rotate", "sharing", data_dir=data
    )
    assert rotated.returncode == 0, rotated.stderr
    after = {p: p.read_bytes() for p in auth.rglob("*.nk")}
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {organisation_seed_path(auth, REGION), internal_seed_path(auth, InternalRole.SHARING)}
    config = (auth / "authorization.conf").read_text()
    assert public_key(before[organisation_seed_path(auth, REGION)]) not in config  # the old key is gone
    assert public_key(after[organisation_seed_path(auth, REGION)]) in config


@pytest.mark.parametrize(
    ("document", "args", "reason"),
    [
        (None, (), "vss: give --organisations FILE (or set VSS_ORGANISATIONS)"),
        ({"vgr.psykiatri": {}}, (), "organisation id 'vgr.psykiatri' must be 1-64 letters"),
        ({REGION: {"webhok": {}}}, (), f"{REGION}: webhok: Extra inputs are not permitted"),
        ({REGION: {"nats": {"public_key": "SUAAAA"}}}, (), "public_key must be a user nkey"),
        ({REGION: {"nats": {"consumers": ["goteborg"]}}}, (), "consumer name 'goteborg' must be"),
        ({REGION: {}}, ("--rotate", "nobody"), "--rotate nobody: neither a VSS role"),
        ([REGION], (), "a JSON object by organisation id is expected"),
    ],
)
def test_nats_config_refuses_bad_input_with_exit_2_and_one_line(
    tmp_path: Path, document: object, args: tuple[str, ...], reason: str
) -> None:
    given = ("--organisations", str(write(tmp_path / "orgs.json", document))) if document is not None else ()
    result = vss("nats-config", *given, *args, data_dir=tmp_path / "data")
    assert result.returncode == 2
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "nats-auth" / "authorization.conf").exists()


def test_a_consumer_name_is_given_to_one_organisation_only() -> None:
    with pytest.raises(OrganisationsFileInvalid, match="given to both"):
        parse_organisations({"a": {"nats": {"consumers": ["a-x"]}}, "a-x": {}})


def test_the_notifications_service_reads_the_shared_organisations_file(tmp_path: Path) -> None:
    from services.notifications.settings import NotificationsSettings  # noqa: PLC0415

    hook = {"url": "https://hook.example.org/n", "secret": "s" * 20}
    file = write(
        tmp_path / "orgs.json", {REGION: {"name": "Region", "nats": {}, "webhook": hook}, MUNICIPALITY: {}}
    )
    os.environ["VSS_ORGANISATIONS"] = str(file)
    try:
        policy = NotificationsSettings(data_dir=tmp_path).policy()
    finally:
        del os.environ["VSS_ORGANISATIONS"]
    assert set(parse_organisations(json.loads(file.read_text()))) == {REGION, MUNICIPALITY}
    assert policy.organisations[REGION].webhook is not None


def test_status_names_organisations_that_may_see_cases_but_are_not_in_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    try:
        clock = FixedClock()
        scenario = drive_to_first_sip(CaseService(store, clock), clock)
        assert scenario.case_id is not None
        state = store.load(scenario.case_id).state
        location, _ = project(store, tmp_path / "rm")
        location.close()
    finally:
        store.close()
    may_see = {org for org, _ in case_grants(state)}  # the one rule, over the case's state
    assert len(may_see) >= 2
    known = sorted(may_see)[0]
    file = write(tmp_path / "orgs.json", {known: {}})
    result = vss(
        "status", "--json", data_dir=tmp_path, VSS_ORGANISATIONS=str(file),
        VSS_READ_MODEL_URL=f"sqlite:///{tmp_path}/rm/readmodels",
    )  # fmt: skip
    report = json.loads(result.stdout)["organisations"]
    assert report["known"] == [known]
    assert report["unknown"] == dict.fromkeys(sorted(may_see - {known}), 1)
