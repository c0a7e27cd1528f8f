"""Input ranges in the notifications API: an acknowledgement link's signature is URL-safe
base64. A non-ASCII one (which hmac.compare_digest refuses as a str) is a 422 naming the
parameter, and the message stays unacknowledged.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.notifications.support import World
from tests.notifications.test_http import access_log as access_log  # noqa: PLC0414 - fixtures, shared
from tests.notifications.test_http import api as api  # noqa: PLC0414


@pytest.mark.parametrize("signature", ["åäöåäöåäöåäöåäöåäöåäöåäö", "x" * 23 + "\u2603", "ab\x00cdefghij"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_non_ascii_signature_is_422_and_nothing_acknowledged(
    api: tuple[World, TestClient], signature: str, method: str
) -> None:
    world, client = api
    urgent = next(r for r in world.service.deliveries(world.feed.case_id) if r.urgent)
    log_before = len(world.store.read_log(0, 100_000))
    response = client.request(
        method, f"/v1/acknowledgements/{urgent.delivery_key}", params={"signature": signature}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = {(e["field"], e["rule"]) for e in response.json()["errors"]}
    assert ("query.signature", "string_pattern_mismatch") in errors
    assert world.service.store.delivery(urgent.delivery_key).acknowledged_at is None  # type: ignore[union-attr]
    assert len(world.store.read_log(0, 100_000)) == log_before


def test_the_signer_answers_false_for_a_non_ascii_signature(api: tuple[World, TestClient]) -> None:
    world, _ = api
    assert world.service.signer.valid("some-delivery", "åäö" * 8) is False
