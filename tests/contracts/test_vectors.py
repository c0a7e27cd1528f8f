"""The committed test vectors (docs/verifying.md) are what this implementation computes."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.case.domain.events import canonical_bytes
from vss_contracts.chain import cloud_event_hash
from vss_contracts.signing import PublicKeys, b64url_decode, b64url_encode, signature_input
from vss_contracts.vectors import VECTOR_FILE, hash_input, main
from vss_contracts.verification import CaseVerificationFailed, verify_case

VECTORS: dict[str, Any] = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))


def documented_time(wire: str) -> str:
    """docs/verifying.md's rule, written apart from the implementation: Z as +00:00, the
    fraction as six digits, left out when it is zero."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)", wire)
    assert match is not None
    seconds, fraction, offset = match.groups()
    micros = int((fraction or "0").ljust(6, "0"))
    return seconds + (f".{micros:06d}" if micros else "") + ("+00:00" if offset == "Z" else offset)


def test_the_committed_file_is_what_the_code_generates() -> None:
    assert main(["--check"]) == 0


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["cloudevent"]["type"])
def test_each_vector_reproduces(vector: dict[str, Any]) -> None:
    event = vector["cloudevent"]
    text = vector["hash_input"]
    assert hash_input(event) == text
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == vector["eventhash"] == event["eventhash"]
    assert cloud_event_hash(event) == vector["eventhash"]
    assert canonical_bytes(json.loads(text)) == text.encode("utf-8")  # the store's encoder agrees
    assert f'"recorded_at":"{documented_time(event["time"])}"' in text
    if "vsssig" in event:
        seed = b64url_decode(VECTORS["test_private_key"]["seed_base64url"])
        assert vector["signature_input"] == "vss-commit-v1:" + vector["eventhash"]
        assert signature_input(vector["eventhash"]) == vector["signature_input"].encode("ascii")
        signed = Ed25519PrivateKey.from_private_bytes(seed).sign(signature_input(vector["eventhash"]))
        assert b64url_encode(signed) == event["vsssig"]  # Ed25519 is deterministic
        assert PublicKeys.from_jwks(VECTORS["keys"]).verifies(
            event["vsskeyid"], event["vsssig"], event["eventhash"]
        )


def test_the_vectors_cover_non_ascii_text_and_times_with_and_without_a_fraction() -> None:
    texts = [v["hash_input"] for v in VECTORS["vectors"]]
    times = [v["cloudevent"]["time"] for v in VECTORS["vectors"]]
    assert any(not t.isascii() for t in texts)
    assert any(
        re.search(r"[^\u0000-\uffff]", t) for t in texts
    )  # outside the BMP (a surrogate pair in UTF-16)
    assert any("." not in t for t in times)
    assert any(t.endswith("0Z") and "." in t for t in times)  # a fraction with trailing zeros
    assert any(re.search(r"\\[n\"\\t]", t) for t in texts)  # what JSON escapes


@pytest.mark.parametrize("chain", VECTORS["chains"], ids=lambda c: c["name"])
def test_each_chain_gets_its_verdict(chain: dict[str, Any]) -> None:
    keys = PublicKeys.from_jwks(VECTORS["keys"])
    if chain["verifies"]:
        assert verify_case(chain["events"], keys).version == len(chain["events"])
        return
    with pytest.raises(CaseVerificationFailed) as failure:
        verify_case(chain["events"], keys)
    assert failure.value.version == chain["fails_at_version"]
    assert failure.value.case_id == chain["events"][0]["subject"]
