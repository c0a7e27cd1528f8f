"""contracts/ is its own distribution: a subscriber installs the wheel and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(CONTRACTS),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("vss_contracts-*.whl")
    return built


def test_the_wheel_carries_models_schemas_asyncapi_and_types_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "vss_contracts/case_events.py" in names
    assert "vss_contracts/notification_events.py" in names  # the delivery record's events
    assert "vss_contracts/webhooks.py" in names  # what a webhook receiver verifies with
    assert "vss_contracts/schemas/se.vss.notifications.NotificationSent.v1.json" in names
    assert "vss_contracts/py.typed" in names
    assert "vss_contracts/schemas/se.vss.case.SipDecided.v1.json" in names
    assert "vss_contracts/schemas/se.vss.CloudEvent.json" in names
    assert "vss_contracts/asyncapi.py" in names
    assert "vss_contracts/asyncapi/vss-bus.asyncapi.json" in names  # the document ships with the code
    assert "vss_contracts/verification.py" in names  # what an organisation verifies its copy with
    assert "vss_contracts/testvectors/chain.json" in names  # the vectors of docs/verifying.md
    assert not [n for n in names if n.startswith("services/")]


def test_the_wheel_depends_on_pydantic_and_cryptography_alone(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")
        ]
    # cryptography: Ed25519, to verify the case service's commit signatures.
    assert sorted(requires) == ["Requires-Dist: cryptography>=42", "Requires-Dist: pydantic[email]<3,>=2.7"]


_VERIFIER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from importlib.resources import files
from vss_contracts.signing import PublicKeys
from vss_contracts.verification import CaseVerificationFailed, verify_case

vectors = json.loads(files("vss_contracts").joinpath("testvectors/chain.json").read_text("utf-8"))
keys = PublicKeys.from_jwks(vectors["keys"])
verdicts = []
for chain in vectors["chains"]:
    try:
        verify_case(chain["events"], keys)
        verdicts.append([chain["verifies"], None])
    except CaseVerificationFailed as failure:
        verdicts.append([chain["verifies"], failure.version, chain.get("fails_at_version")])
loaded = sorted(m for m in sys.modules if m.startswith("services"))
print(json.dumps({"verdicts": verdicts, "services": loaded}))
"""


def test_the_packaged_test_vectors_verify_with_the_installed_package_alone(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    result = subprocess.run(
        [sys.executable, "-I", "-c", _VERIFIER, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert report["services"] == []
    for verdict in report["verdicts"]:
        if verdict[0]:
            assert verdict == [True, None]
        else:
            assert verdict[1] == verdict[2]


# Run by the test below against the wheel's own files (unpacked, first on sys.path): a webhook
# receiver and a delivery-record subscriber need nothing but the installed package.
_RECEIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import vss_contracts
from vss_contracts import CloudEvent, webhooks
from vss_contracts.webhooks import WebhookSignatureInvalid, sign, verify

secret, now = "s3cret-shared-with-the-receiver", 1750000000
body = json.dumps({"delivery_key": "k-1", "subject": "Kallelse"}).encode()
signature = sign(secret, now, body)
verify(secret, timestamp_header=str(now), signature_header=signature, body=body, now=now + 60)
refused = []
for changed in (
    dict(body=body + b" "),
    dict(signature_header=sign("another-secret", now, body)),
    dict(now=now + webhooks.TOLERANCE_SECONDS + 1),
):
    arguments = dict(timestamp_header=str(now), signature_header=signature, body=body, now=now)
    try:
        verify(secret, **{**arguments, **changed})
    except WebhookSignatureInvalid as error:
        refused.append(str(error))

event = CloudEvent.model_validate_json(sys.argv[2])
print(json.dumps({
    "package": vss_contracts.__file__,
    "webhooks": webhooks.__file__,
    "signature": signature,
    "refused": refused,
    "decoded": type(event.notification_data()).__name__,
    "services": sorted(m for m in sys.modules if m.split(".")[0] == "services"),
}))
"""


def test_a_webhook_signature_verifies_with_the_installed_package_alone(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a pure wheel installs by unpacking
        archive.extractall(site)
    data = json.loads((GOLDEN / "se.vss.notifications.NotificationSent.v1.json").read_text(encoding="utf-8"))
    event = {
        "specversion": "1.0",
        "id": "1a2b3c4d-5e6f-5a7b-8c9d-0e1f2a3b4c5d",
        "source": "/vss/notifications",
        "type": "se.vss.notifications.NotificationSent.v1",
        "subject": "6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01",
        "time": "2025-06-01T07:15:03.412907Z",
        "dataschema": "urn:vss:schema:se.vss.notifications.NotificationSent.v1",
        "data": data,
        "caseversion": 1,
        "logposition": 3,
        "correlationid": data["cause_event_id"],
        "actorid": "vss-notifications",
        "actororg": "vss",
        "actorprincipal": "other",
        "prevhash": "0" * 64,
        "eventhash": "ab" * 32,
    }

    result = subprocess.run(
        [sys.executable, "-I", "-c", _RECEIVER, str(site), json.dumps(event)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = json.loads(result.stdout)

    assert Path(out["package"]).is_relative_to(site)  # the wheel's copy, not the source tree
    assert Path(out["webhooks"]) == site / "vss_contracts" / "webhooks.py"
    # the same signature as the source's module makes (what the notifications service sends)
    from vss_contracts.webhooks import sign  # noqa: PLC0415

    secret, body = (
        "s3cret-shared-with-the-receiver",
        json.dumps({"delivery_key": "k-1", "subject": "Kallelse"}),
    )
    assert out["signature"] == sign(secret, 1750000000, body.encode())
    assert [reason.split(":")[0] for reason in out["refused"]] == [
        "signature mismatch",
        "signature mismatch",
        "stale X-VSS-Timestamp",
    ]
    assert out["decoded"] == "NotificationSent"
    assert out["services"] == []
