"""The client's *Min plan* in a real browser, as the client uses it on a phone.

The query API and the case API run under uvicorn (tests.support.client_pages); Chromium
signs in with a test token, reads the whole plan, downloads the SIP as a PDF (its text read
back with pypdf), and withdraws the consent through the confirmation step. Screenshots of
each page are kept in test-artefacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page
from pypdf import PdfReader

from services.projections.entrypoints.http import create_app as query_app
from tests.browser.conftest import PHONE
from tests.support.client_pages import PLAN_CONTACT, TOKENS, TOLVAN, case_for_pages
from tests.support.http import serving

pytestmark = pytest.mark.browser


def test_the_client_signs_in_reads_the_plan_prints_it_and_withdraws_the_consent(
    page: Page, screenshot_dir: Path, tmp_path: Path
) -> None:
    with case_for_pages(tmp_path) as system, serving(query_app(system.deps)) as address:
        base = f"http://{address}"
        page.set_viewport_size(PHONE)

        # Not signed in: the plan's address shows the sign-in form.
        page.goto(base + system.path)
        assert page.get_by_role("heading", name="Logga in").is_visible()
        page.fill("#token", TOKENS.mint_client(TOLVAN))
        page.get_by_role("button", name="Logga in").click()
        page.wait_for_url(f"{base}/min-plan/")
        page.screenshot(path=str(screenshot_dir / "client-my-cases.png"), full_page=True)
        page.get_by_role("link", name="Samordning i").click()
        page.wait_for_url(base + system.path)

        # The whole plan: the SIP, the mapping, the early-warning plan, the meeting, the reads.
        for heading in (
            "Min plan",
            "Din SIP",
            "Kartläggningen",
            "Plan för tidiga tecken",
            "Kommande möten",
            "Ditt samtycke",
            "Vem har läst mina uppgifter",
        ):
            assert page.get_by_role("heading", name=heading, exact=True).is_visible(), heading
        text = page.inner_text("main")
        for shown in ("Ansöka om", PLAN_CONTACT, "Sover sämre än vanligt", "Socialkontoret, Storgatan 1"):
            assert shown in text, shown
        assert page.get_by_role("link", name="Lägg till i din kalender").count() == 1
        page.screenshot(path=str(screenshot_dir / "client-my-plan.png"), full_page=True)

        # The SIP as a PDF for the binder at home.
        with page.expect_download() as download:
            page.get_by_role("link", name="Din SIP som PDF").click()
        words = " ".join(p.extract_text() for p in PdfReader(download.value.path()).pages)
        assert "Ansöka om" in words

        # Withdraw the whole consent: a choice, then a confirmation page, then done.
        page.get_by_label("Hela samtycket").check()
        page.get_by_role("button", name="Gå vidare").click()
        page.wait_for_url(f"{base}{system.path}/aterkalla?withdraw=_hela")
        assert page.get_by_role("heading", name="Återkalla samtycke").is_visible()
        page.screenshot(path=str(screenshot_dir / "client-withdraw-confirm.png"), full_page=True)
        page.get_by_role("button", name="Ja, återkalla").click()
        page.wait_for_url(f"{base}{system.path}?position=*")
        case = system.scenario.service.get(system.scenario.case_id)  # type: ignore[arg-type]
        assert case.state.consent is not None
        assert case.state.consent.withdrawn_on is not None
        system.project()  # the relay and the projector catch up
        page.reload()
        assert "Du återkallade ditt samtycke" in page.inner_text("main")
        page.screenshot(path=str(screenshot_dir / "client-after-withdrawal.png"), full_page=True)

    reads = [(resource, outcome) for _, resource, outcome in system.reads(TOLVAN)]
    assert ("my_plan", "granted") in reads
    assert ("sip_pdf", "granted") in reads
    assert ("withdrawal_form", "granted") in reads
