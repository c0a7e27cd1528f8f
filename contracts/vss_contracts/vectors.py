"""Test vectors of the hash chain and the commit signatures (docs/verifying.md).

``python -m vss_contracts.vectors --write`` regenerates ``testvectors/chain.json`` from the
inputs below with this package's implementation; ``--check`` fails when the committed
file differs. Every implementation, in any language, must reproduce each vector: the
hash input bytes, the ``eventhash``, the signature, and the verdict on the whole chain.

The private key is a published test key: it signs nothing but these vectors.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vss_contracts.chain import GENESIS_HASH, canonical_json, cloud_event_hash
from vss_contracts.envelope import dataschema_for
from vss_contracts.signing import PublicKeys, b64url_encode, signature_input

__all__ = ["VECTOR_FILE", "generate", "hash_input"]

VECTOR_FILE = Path(__file__).parent / "testvectors" / "chain.json"
TEST_KEY_ID = "test-vector-key-1"
TEST_KEY_SEED = hashlib.sha256(b"vss test vector key 1: never sign anything else with it").digest()
CASE_ID = "3f1e6a2c-5b7d-4c8e-9a10-2b3c4d5e6f70"


def hash_input(event: dict[str, Any]) -> str:
    """The text whose UTF-8 bytes are hashed for ``eventhash`` (as :func:`cloud_event_hash` builds it)."""
    captured: list[bytes] = []

    def dumps(document: Any) -> bytes:
        captured.append(canonical_json(document))
        return captured[-1]

    cloud_event_hash(event, dumps=dumps)
    return captured[0].decode("utf-8")


def _events() -> list[dict[str, Any]]:
    """Three events of one case: a commit of one event, then a commit of two."""
    opened = {
        "client": {"personal_identity_number": "191212121212", "name": "Tolvan Tolvansson"},
        "municipality": {"code": "1480", "name": "Göteborg"},
        "region": {"code": "14", "name": "Västra Götalandsregionen"},
        "opened_on": "2026-11-23",
        "opened_by_organisation": {
            "id": "vgr-psykiatri-nordost",
            "name": "Psykiatri Nordost",
            "principal": "region",
        },
    }
    summarised = {
        "summarised_on": "2026-11-24",
        "participants": [{"kind": "client", "name": "Tolvan Tolvansson", "user_id": None, "member_id": None}],
        # Non-ASCII (å ä ö, an en dash, typographic quotes, an emoji outside the BMP) and what JSON escapes.
        "wants_to_change": 'Eget boende – ”på riktigt” 🏠, och "lugn" \\ ro\nnya rader\tflikar',
        "obstacles": "Oro i sociala situationer",
    }
    phase = {
        "from_phase": "mapping",
        "to_phase": "planning",
        "changed_on": "2026-11-24",
        "reason": "mapping_summarised",
    }
    rows = [
        ("se.vss.case.CaseOpened.v1", "2026-11-23T09:00:00Z", opened, None),  # zero microseconds
        ("se.vss.case.MappingSummarised.v1", "2026-11-24T13:45:07.250000Z", summarised, "req-2"),
        ("se.vss.case.PhaseChanged.v1", "2026-11-24T13:45:07.000001Z", phase, "req-2"),
    ]
    events = []
    for version, (type_name, time, data, causation) in enumerate(rows, start=1):
        events.append(
            {
                "specversion": "1.0",
                "id": f"00000000-0000-4000-8000-00000000000{version}",
                "source": "/vss/case",
                "type": type_name,
                "subject": CASE_ID,
                "time": time,
                "datacontenttype": "application/json",
                "dataschema": dataschema_for(type_name),
                "data": data,
                "caseversion": version,
                "logposition": 100 + version,
                "correlationid": "req-1" if version == 1 else "req-2",
                "causationid": causation,
                "actorid": "anna.k",
                "actororg": "vgr-psykiatri-nordost",
                "actorprincipal": "region",
                "prevhash": "",
                "eventhash": "",
            }
        )
    return events


def _chain(events: list[dict[str, Any]], key: Ed25519PrivateKey, signed: set[int]) -> list[dict[str, Any]]:
    """Fill in prevhash/eventhash, and sign the commits ending at the ``signed`` versions."""
    previous = GENESIS_HASH
    for event in events:
        event["prevhash"] = previous
        event["eventhash"] = previous = cloud_event_hash(event)
        event.pop("vsssig", None)
        event.pop("vsskeyid", None)
        if event["caseversion"] in signed:
            event["vsssig"] = b64url_encode(key.sign(signature_input(previous)))
            event["vsskeyid"] = TEST_KEY_ID
    return events


def generate() -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(TEST_KEY_SEED)
    keys = PublicKeys({TEST_KEY_ID: key.public_key()})
    events = _chain(_events(), key, signed={1, 3})
    vectors = [
        {
            "cloudevent": event,
            "hash_input": hash_input(event),
            "eventhash": event["eventhash"],
            **(
                {"signature_input": signature_input(event["eventhash"]).decode("ascii")}
                if "vsssig" in event
                else {}
            ),
        }
        for event in events
    ]
    # A forger without the key: event 2 edited, 2 and 3 rehashed and relinked, 3's old signature kept.
    forged = copy.deepcopy(events)
    forged[1]["data"]["obstacles"] = "Inga"
    _chain(forged, key, signed={1})
    forged[2]["vsssig"], forged[2]["vsskeyid"] = events[2]["vsssig"], TEST_KEY_ID
    return {
        "format": "vss-chain-testvectors/1",
        "description": "Hash chain and commit signature test vectors; the rules are in docs/verifying.md.",
        "keys": keys.to_jwks(),
        "test_private_key": {"kid": TEST_KEY_ID, "seed_base64url": b64url_encode(TEST_KEY_SEED)},
        "vectors": vectors,
        "chains": [
            {"name": "three events, two commits, both signed", "events": events, "verifies": True},
            {
                "name": "event 2 rewritten and the tail rehashed, the old signature kept",
                "events": forged,
                "verifies": False,
                "fails_at_version": 3,
            },
            {
                "name": "the last commit's events dropped: the copy ends signed at version 1",
                "events": events[:1],
                "verifies": True,
            },
            {
                "name": "the last event dropped: version 2 is not covered by a signature",
                "events": events[:2],
                "verifies": False,
                "fails_at_version": 2,
            },
        ],
    }


def render() -> str:
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the vector file")
    group.add_argument("--check", action="store_true", help="fail when the file differs from the code")
    args = parser.parse_args(argv)
    if args.write:
        VECTOR_FILE.parent.mkdir(parents=True, exist_ok=True)
        VECTOR_FILE.write_text(render(), encoding="utf-8")
        return 0
    if not VECTOR_FILE.exists() or VECTOR_FILE.read_text(encoding="utf-8") != render():
        print(f"{VECTOR_FILE} differs from the code", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
