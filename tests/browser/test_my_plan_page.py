"""The *Min plan* page in a real browser at a phone's size."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page

from services.projections.presentation import MyPlanLinks, ReaderId, render_my_plan_page
from tests.browser.conftest import PHONE
from tests.unit.projections.plan_view import access_log, meetings, plan_view

pytestmark = pytest.mark.browser

SECTIONS = (
    "Skriva ut",
    "Din SIP",
    "Kartläggningen",
    "Plan för tidiga tecken",
    "Kommande möten",
    "Ditt samtycke",
    "Vem har läst mina uppgifter",
)


@contextmanager
def serving(html: str) -> Iterator[str]:
    """``html`` at ``/`` of a server on a free loopback port, for the length of the block."""
    body = html.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_headings_are_visible_on_a_phone(page: Page, screenshot_dir: Path) -> None:
    html = render_my_plan_page(
        plan_view(),
        meetings(),
        access_log(),
        links=MyPlanLinks("sip.pdf", "tidiga-tecken.pdf", "samtycke"),
        client=ReaderId("klient", "tolvan"),
    )
    page.set_viewport_size(PHONE)
    with serving(html) as url:
        response = page.goto(url)
        assert response is not None
        assert response.ok
        assert page.get_by_role("heading", name="Min plan", level=1).is_visible()
        for name in SECTIONS:
            heading = page.get_by_role("heading", name=name, level=2)
            heading.scroll_into_view_if_needed()
            assert heading.is_visible(), name
            box = heading.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= PHONE["width"], f"{name} runs off the screen"
        # One column, nothing wider than the phone, text no smaller than 16 px.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert float(page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")) >= 16
        page.screenshot(path=str(screenshot_dir / "my-plan-phone.png"), full_page=True)
    assert (screenshot_dir / "my-plan-phone.png").stat().st_size > 0
