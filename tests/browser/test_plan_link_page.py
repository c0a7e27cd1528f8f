"""A relative opens their own plan link in a real browser at a phone's size (ADR 0016).

The query API runs over real SQLite read models projected from a real case store
(:mod:`tests.access.test_plan_links`), served on a loopback port; the link is made with
the same signing function and key the notifications service would use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.access.test_plan_links import CLIENT_ACTION, FRIEND, OTHERS_ACTION, SIGNS, PlanCase
from tests.access.test_plan_links import case as case  # noqa: PLC0414 - the fixture, shared
from tests.browser.conftest import PHONE
from tests.support.http import serving

pytestmark = pytest.mark.browser


def test_a_relative_reads_the_whole_plan_and_after_removal_the_link_is_refused(
    page: Page, case: PlanCase, screenshot_dir: Path
) -> None:
    page.set_viewport_size(PHONE)
    with serving(case.client.app) as base:  # type: ignore[arg-type]
        link = f"http://{base}{case.url(case.mother)}"
        response = page.goto(link)
        assert response is not None
        assert response.status == 200
        assert page.get_by_role("heading", name="Plan för tidiga tecken", level=1).is_visible()
        text = page.locator("main").inner_text()
        for expected in (
            *SIGNS,
            CLIENT_ACTION,
            OTHERS_ACTION,
            "Birgitta Tolvansson",
            FRIEND.name,
            FRIEND.phone,
        ):
            assert expected in text, expected
        page.screenshot(path=str(screenshot_dir / "plan-link-relative.png"), full_page=True)

        case.plan(FRIEND)  # a new plan version that no longer names her
        refused = page.goto(link)
        assert refused is not None
        assert refused.status == 403
        assert page.get_by_role("heading", name="Länken fungerar inte längre", level=1).is_visible()
        assert SIGNS[0] not in page.locator("main").inner_text()
        page.screenshot(path=str(screenshot_dir / "plan-link-refused.png"), full_page=True)
    outcomes = [
        (r.outcome, r.reason)
        for _, r in case.access_log.for_case(str(case.case_id), 0, 100)
        if r.user_id == case.mother
    ]
    assert outcomes == [("granted", None), ("denied", "not_named")]
