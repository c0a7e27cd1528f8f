"""The client's pages (*Min plan*) over real stores: sign-in, the plan, PDFs, a withdrawal.

The query API runs in-process over SQLite read models projected from the case store; the
case API runs under uvicorn on a free port, because the withdrawal page sends the client's
own command to it over HTTP, with the client's token.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from services.projections.entrypoints.http import create_app as query_app
from services.projections.entrypoints.pages import SESSION_COOKIE
from tests.support.client_pages import MEETING, TOKENS, TOLVAN, CaseForPages, case_for_pages
from tests.support.scenario import CaseScenario


@dataclass
class Pages:
    client: TestClient
    system: CaseForPages

    @property
    def case(self) -> str:
        return self.system.path

    @property
    def scenario(self) -> CaseScenario:
        return self.system.scenario

    def sign_in(self, token: str) -> Any:
        return self.client.post(
            "/min-plan/logga-in",
            content=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )

    def reads(self, user_id: str) -> list[tuple[str | None, str, str]]:
        return self.system.reads(user_id)

    def project(self) -> None:
        self.system.project()


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[Pages]:
    with (
        case_for_pages(tmp_path) as system,
        TestClient(query_app(system.deps), raise_server_exceptions=False) as client,
    ):
        yield Pages(client, system)


def test_a_page_without_a_sign_in_is_the_sign_in_page(pages: Pages) -> None:
    answer = pages.client.get(pages.case, follow_redirects=False)
    assert answer.status_code == 401
    assert "<h1>Logga in</h1>" in answer.text
    assert 'action="/min-plan/logga-in"' in answer.text


def test_signing_in_keeps_a_clients_token_in_an_http_only_lax_cookie(pages: Pages) -> None:
    answer = pages.sign_in(TOKENS.mint_client(TOLVAN))
    assert (answer.status_code, answer.headers["location"]) == (303, "/min-plan/")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=lax", "Path=/min-plan", "Max-Age="):
        assert attribute in cookie
    assert "Secure" not in cookie  # the test server is this machine's loopback: plain HTTP


def test_the_cookie_is_secure_anywhere_but_on_loopback(pages: Pages) -> None:
    answer = pages.client.post(
        "https://vss.region.example.se/min-plan/logga-in",
        content=f"token={TOKENS.mint_client(TOLVAN)}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert "Secure" in answer.headers["set-cookie"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("&".join(f"f{n}=x" for n in range(25)), 400),  # more fields than a form has
        ("token=" + "x" * 20_000, 413),  # larger than any token
        (b"token=\xff\xfe", 400),  # not UTF-8
    ],
    ids=["fields", "size", "encoding"],
)
def test_a_malformed_sign_in_form_is_a_4xx_page(pages: Pages, body: str | bytes, status: int) -> None:
    answer = pages.client.post(
        "/min-plan/logga-in", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_a_staff_sign_in_is_refused_and_logged(pages: Pages) -> None:
    staff = TOKENS.mint(user_id="anna", organisation_id="vgr-psyk", principal="region", roles=["coordinator"])
    assert pages.sign_in(staff).status_code == 403
    assert pages.system.reads("anna", "vgr-psyk")[-1] == (None, "my_plan", "denied")


def test_a_non_ascii_form_token_is_refused_not_an_error(pages: Pages) -> None:
    pages.sign_in(TOKENS.mint_client(TOLVAN))
    answer = pages.client.post(
        pages.case + "/aterkalla",
        content="csrf_token=%C3%A9&withdraw=_hela",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403


def test_a_staff_token_or_a_bad_one_does_not_sign_in(pages: Pages) -> None:
    staff = TOKENS.mint(user_id="anna", organisation_id="vgr-psyk", principal="region", roles=["coordinator"])
    assert pages.sign_in(staff).status_code == 403
    assert pages.sign_in("not-a-token").status_code == 401
    assert SESSION_COOKIE not in pages.client.cookies


def test_the_client_reads_the_whole_plan_and_the_read_is_logged(pages: Pages) -> None:
    pages.sign_in(TOKENS.mint_client(TOLVAN))
    listing = pages.client.get("/min-plan/")
    assert listing.status_code == 200
    assert f'href="{pages.case}"' in listing.text
    page = pages.client.get(pages.case)
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for text in ("Sover sämre än vanligt", "Åsa Öberg", "070-123 45 67", "Följer med till vårdcentralen"):
        assert text in page.text
    sip = pages.client.get(pages.case + "/sip.pdf")
    assert sip.headers["content-type"] == "application/pdf"
    words = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(sip.content)).pages)
    assert "SIP" in words
    assert "Resursgruppsmöte" in page.text or "resursgrupp" in page.text.lower()
    ics = pages.client.get(f"{pages.case}/moten/{MEETING}.ics")
    assert ics.headers["content-type"].startswith("text/calendar")
    assert f"UID:{MEETING}@vss.se" in ics.text
    plan = pages.client.get(pages.case + "/tidiga-tecken.pdf")
    assert "Åsa Öberg" in " ".join(p.extract_text() for p in PdfReader(io.BytesIO(plan.content)).pages)
    case_id = str(pages.scenario.case_id)
    assert pages.reads(TOLVAN)[-5:] == [
        (case_id, "my_cases", "granted"),
        (case_id, "my_plan", "granted"),
        (case_id, "sip_pdf", "granted"),
        (case_id, "meeting_ics", "granted"),
        (case_id, "early_warning_plan_pdf", "granted"),
    ]


def test_another_persons_case_is_refused_and_the_attempt_logged(pages: Pages) -> None:
    pages.sign_in(TOKENS.mint_client("198112189876"))
    refused = pages.client.get(pages.case)
    assert refused.status_code == 403
    assert "Ärendet är inte ditt" in refused.text
    assert pages.reads("198112189876")[-1] == (str(pages.scenario.case_id), "my_plan", "denied")


def test_the_client_withdraws_the_consent_after_confirming_it(pages: Pages) -> None:
    pages.sign_in(TOKENS.mint_client(TOLVAN))
    confirm = pages.client.get(pages.case + "/aterkalla", params={"withdraw": "_hela"})
    assert confirm.status_code == 200, confirm.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text)
    assert token, confirm.text
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    forged = pages.client.post(
        pages.case + "/aterkalla", content="csrf_token=forged&withdraw=_hela", headers=form
    )
    assert forged.status_code == 403
    done = pages.client.post(
        pages.case + "/aterkalla",
        content=f"csrf_token={token.group(1)}&withdraw=_hela",
        headers=form,
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(f"{pages.case}?position=")
    case = pages.scenario.service.get(pages.scenario.case_id)  # type: ignore[arg-type]
    assert case.state.consent is not None
    assert case.state.consent.withdrawn_on is not None
    history = pages.scenario.service.history(case.id, case.version - 1, 1)
    assert (history[-1].type, history[-1].actor_id) == ("se.vss.case.ConsentWithdrawn.v1", TOLVAN)
    pages.project()
    after = pages.client.get(done.headers["location"])
    assert "Du återkallade ditt samtycke" in after.text


def _confirmed_withdrawal(pages: Pages, client: TestClient, choice: str) -> Any:
    confirm = client.get(pages.case + "/aterkalla", params={"withdraw": choice})
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text)
    assert token, confirm.text
    return client.post(
        pages.case + "/aterkalla",
        content=f"csrf_token={token.group(1)}&withdraw={choice}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )


def test_a_case_api_that_does_not_answer_is_a_503_page_and_nothing_is_recorded(pages: Pages) -> None:
    unreachable = replace(pages.system.deps, case_api="http://127.0.0.1:9")
    with TestClient(query_app(unreachable), raise_server_exceptions=False) as client:
        client.post(
            "/min-plan/logga-in",
            content=f"token={TOKENS.mint_client(TOLVAN)}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = _confirmed_withdrawal(pages, client, "_hela")
    assert answer.status_code == 503
    case = pages.scenario.service.get(pages.scenario.case_id)  # type: ignore[arg-type]
    assert case.state.consent is not None
    assert case.state.consent.withdrawn_on is None


def test_a_withdrawal_the_case_refuses_is_a_409_page(pages: Pages) -> None:
    pages.sign_in(TOKENS.mint_client(TOLVAN))
    assert _confirmed_withdrawal(pages, pages.client, "_hela").status_code == 303
    # The read models have not caught up: the page still offers a part of the withdrawn consent.
    organisation = pages.scenario.service.get(pages.scenario.case_id).state.consent  # type: ignore[arg-type, union-attr]
    assert organisation is not None
    again = _confirmed_withdrawal(pages, pages.client, next(iter(organisation.organisations)))
    assert again.status_code == 409
    assert "Återkallelsen gick inte igenom" in again.text
