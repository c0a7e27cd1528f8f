"""The notifications API over HTTP: the delivery record under the access rule, and the
signed acknowledgement link (real store, real SMTP server, FastAPI's TestClient)."""

from __future__ import annotations

import html
import re
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from services.notifications import main as notifications_main
from services.notifications.application.service import Signer
from services.notifications.entrypoints.http import NotificationsApiDependencies, create_app
from services.notifications.settings import NotificationsSettings
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.meetings.feed import HOUSING, REGION_PSYCH, SOCIAL
from tests.notifications.support import DAY
from tests.notifications.test_service import World, _warning_world

TOKENS = TokenService(key="test-secret-" + "n" * 40, algorithm="HS256", issuer="vss", audience="vss")


def headers(organisation: str = SOCIAL.id, roles: tuple[str, ...] = ("coordinator",)) -> dict[str, str]:
    token = TOKENS.mint(
        user_id="sara", organisation_id=organisation, principal="municipality", roles=list(roles)
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def access_log(tmp_path: Path) -> AccessLogStore:
    return AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")


@pytest.fixture
def api(tmp_path: Path, access_log: AccessLogStore) -> Iterator[tuple[World, TestClient]]:
    world = World(tmp_path)
    _warning_world(world)
    world.deliver()
    deps = NotificationsApiDependencies(service=world.service, tokens=TOKENS, access_log=access_log)
    yield world, TestClient(create_app(deps))
    world.close()


def test_the_record_lists_every_message_with_its_outcome(api: tuple[World, TestClient]) -> None:
    world, client = api
    answer = client.get(f"/v1/cases/{world.feed.case_id}/notifications", headers=headers())
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert {(i["recipient_name"], i["template"], i["channel"], i["status"]) for i in items} >= {
        ("Samordnare sara", "coordinator_assigned", "email", "sent"),
        ("Mamma Tolvansson", "early_warning", "sms", "sent"),
        ("Mamma Tolvansson", "early_warning_plan_updated", "email", "sent"),
    }
    sent = {i["message_id"] for i in items if i["status"] == "sent"}
    assert sent == {str(m["Message-ID"]) for m in world.mails()} | {
        i["message_id"] for i in items if i["channel"] == "sms"
    }


def test_the_record_follows_the_access_rule(api: tuple[World, TestClient]) -> None:
    world, client = api
    path = f"/v1/cases/{world.feed.case_id}/notifications"
    assert client.get(path, headers=headers(HOUSING.id)).status_code == 200  # covered by the consent
    refused = client.get(path, headers=headers("annan-kommun"))
    assert refused.status_code == 403
    assert refused.json()["rule"] == "no_consent"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=headers(roles=("analyst",))).status_code == 403
    unknown = client.get("/v1/cases/00000000-0000-4000-8000-000000000000/notifications", headers=headers())
    assert unknown.status_code == 404


def test_a_consent_past_its_end_no_longer_lets_its_organisations_read_the_record(
    api: tuple[World, TestClient],
) -> None:
    world, client = api
    path = f"/v1/cases/{world.feed.case_id}/notifications"
    world.feed.consent(DAY, SOCIAL, REGION_PSYCH, HOUSING, until=DAY + timedelta(days=1))
    assert client.get(path, headers=headers(HOUSING.id)).status_code == 200  # its last day is ahead
    world.clock.advance(days=2)
    refused = client.get(path, headers=headers(HOUSING.id))
    assert (refused.status_code, refused.json()["rule"]) == (403, "no_consent")
    assert client.get(path, headers=headers()).status_code == 200  # the coordinators' organisation


def test_every_read_and_every_refusal_is_in_the_access_log(
    api: tuple[World, TestClient], access_log: AccessLogStore
) -> None:
    world, client = api
    path = f"/v1/cases/{world.feed.case_id}/notifications"
    client.get(path, headers=headers())
    client.get(path, headers=headers("annan-kommun"))
    records = [r for _, r in access_log.for_case(str(world.feed.case_id), 0, 100)]
    assert [(r.user_id, r.organisation_id, r.resource, r.outcome) for r in records] == [
        ("sara", SOCIAL.id, "notifications", "granted"),
        ("sara", "annan-kommun", "notifications", "denied"),
    ]
    assert records[1].reason is not None
    assert "annan-kommun" in records[1].reason


def test_a_signed_link_acknowledges_once_and_a_forged_one_is_refused(api: tuple[World, TestClient]) -> None:
    world, client = api
    urgent = next(r for r in world.service.deliveries(world.feed.case_id) if r.urgent)
    forged = client.get(f"/v1/acknowledgements/{urgent.delivery_key}", params={"signature": "x" * 24})
    assert forged.status_code == 403
    assert forged.json()["field"] == "signature"
    assert (
        client.post(f"/v1/acknowledgements/{urgent.delivery_key}", params={"signature": "x" * 24}).status_code
        == 403
    )
    assert world.service.store.delivery(urgent.delivery_key).acknowledged_at is None  # type: ignore[union-attr]
    link = {"signature": world.service.signer.sign(urgent.delivery_key)}
    first = client.post(f"/v1/acknowledgements/{urgent.delivery_key}", params=link)
    assert first.status_code == 200, first.text
    again = client.post(f"/v1/acknowledgements/{urgent.delivery_key}", params=link)
    assert again.json()["acknowledged_at"] == first.json()["acknowledged_at"]  # the first time counts


def test_opening_a_link_shows_what_is_confirmed_and_acknowledges_nothing(
    api: tuple[World, TestClient], access_log: AccessLogStore
) -> None:
    world, client = api
    urgent = next(r for r in world.service.deliveries(world.feed.case_id) if r.urgent)
    path = f"/v1/acknowledgements/{urgent.delivery_key}"
    link = {"signature": world.service.signer.sign(urgent.delivery_key)}
    for _ in range(3):  # a mail scanner, a preview, the person
        page = client.get(path, params=link)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
    assert world.service.store.delivery(urgent.delivery_key).acknowledged_at is None  # type: ignore[union-attr]
    text = page.text
    assert "Tidiga varningstecken" in text
    assert urgent.case_id[:8] in text
    assert "<script" not in text
    assert urgent.person["name"] not in text  # the role, not who
    assert urgent.address not in text
    form = re.search(r'<form method="post" action="([^"]+)">', text)
    assert form is not None
    assert "<button" in text
    action = html.unescape(form.group(1))
    assert action == f"{urgent.delivery_key}?signature={quote(link['signature'], safe='')}"

    # The button (a browser posts the form, asking for HTML): acknowledged.
    confirmed = client.post(f"/v1/acknowledgements/{action}", headers={"Accept": "text/html"})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.headers["content-type"].startswith("text/html")
    assert "Tack, bekräftat" in confirmed.text
    assert world.service.store.delivery(urgent.delivery_key).acknowledged_at is not None  # type: ignore[union-attr]
    assert "Redan bekräftat" in client.get(path, params=link).text
    # Each read through the link is in the access log, as the recipient it was made for.
    reads = [
        (r.user_id, r.principal, r.resource, r.outcome)
        for _, r in access_log.for_case(urgent.case_id, 0, 100)
        if r.principal == "ack_link"
    ]
    holder = urgent.person["key"]
    assert reads == [
        *[(holder, "ack_link", "acknowledgement_page", "granted")] * 3,
        (holder, "ack_link", "acknowledgement", "granted"),
        (holder, "ack_link", "acknowledgement_page", "granted"),
    ]
    # A wrong signature names nobody: refused, and nothing is written.
    before = access_log.count()
    wrong = world.service.signer.sign("another-delivery")
    assert client.get(path, params={"signature": wrong}).status_code == 403
    assert access_log.count() == before


def test_a_key_rotation_keeps_links_already_sent_working_for_the_overlap(
    api: tuple[World, TestClient], tmp_path: Path
) -> None:
    world, client = api
    settings = NotificationsSettings(data_dir=tmp_path / "vss", ack_link_key_overlap_hours=72)
    before = Signer(settings.link_key())
    first, second = [r for r in world.service.deliveries(world.feed.case_id) if r.urgent][:2]
    sent = {r.delivery_key: {"signature": before.sign(r.delivery_key)} for r in (first, second)}

    settings.rotate_link_key(world.clock.now())
    rotated = Signer(
        settings.link_key(), settings.previous_link_key(), settings.link_key_overlap(), world.clock.now
    )
    assert rotated.key != before.key
    assert rotated.sign(first.delivery_key) != sent[first.delivery_key]["signature"]
    world.service.signer = rotated
    for path in (settings.link_key_file(), settings.link_key_file().with_suffix(".previous.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    world.clock.advance(hours=71)  # within the overlap: a link sent before the rotation works
    within = client.post(f"/v1/acknowledgements/{first.delivery_key}", params=sent[first.delivery_key])
    assert within.status_code == 200, within.text
    world.clock.advance(hours=2)  # past it: refused; a link signed with the new key works
    past = client.post(f"/v1/acknowledgements/{second.delivery_key}", params=sent[second.delivery_key])
    assert past.status_code == 403
    assert past.json()["type"].endswith("bad_signature")
    fresh = {"signature": rotated.sign(second.delivery_key)}
    assert client.post(f"/v1/acknowledgements/{second.delivery_key}", params=fresh).status_code == 200


@pytest.mark.parametrize(
    ("environment", "previous_file", "reason"),
    [
        (
            {"VSS_ACK_LINK_KEY": "k" * 48, "VSS_ACK_LINK_PREVIOUS_KEY": "p" * 48},
            None,
            "VSS_ACK_LINK_PREVIOUS_KEY needs VSS_ACK_LINK_KEY_ROTATED_AT with an offset",
        ),
        (
            {
                "VSS_ACK_LINK_KEY": "k" * 48,
                "VSS_ACK_LINK_PREVIOUS_KEY": "p" * 48,
                "VSS_ACK_LINK_KEY_ROTATED_AT": "2026-03-02T08:00:00",
            },
            None,
            "VSS_ACK_LINK_PREVIOUS_KEY needs VSS_ACK_LINK_KEY_ROTATED_AT with an offset",
        ),
        ({}, b'{"key": "p"}', "not a previous acknowledgement key"),
        ({}, b"not json", "not a previous acknowledgement key"),
    ],
)
def test_the_service_stops_at_start_with_one_line_on_a_previous_link_key_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    environment: dict[str, str],
    previous_file: bytes | None,
    reason: str,
) -> None:
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if previous_file is not None:
        path = NotificationsSettings(data_dir=tmp_path).link_key_file().with_suffix(".previous.json")
        path.parent.mkdir(parents=True)
        path.write_bytes(previous_file)
    assert notifications_main.main() == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("notifications: ")
    assert reason in line
