"""Browser tests: pages as a person sees them, in the system's headless Chromium.

Playwright drives Debian's ``chromium`` (``/usr/bin/chromium``, or ``VSS_CHROMIUM``); it
never downloads a browser of its own (no ``playwright install``). Where no Chromium is
installed, every test that asks for a page is skipped, saying so. ``.ci/run`` installs it.
Screenshots go to ``test-artefacts/screenshots/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

CHROMIUM = Path(os.environ.get("VSS_CHROMIUM", "/usr/bin/chromium"))
# Headless, and quiet: no sandbox (root in CI), no GPU, and nothing fetched from outside.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The Chromium executable; the test is skipped where there is none."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: browser test not run"
            " (install Debian's chromium, as .ci/run does, or set VSS_CHROMIUM)"
        )
    return CHROMIUM


@pytest.fixture
def browser_context(chromium: Path, tmp_path: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile of its own, closed after the test."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path / "chromium-profile",
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            locale="sv-SE",
            timezone_id="Europe/Stockholm",
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Page:
    return browser_context.pages[0] if browser_context.pages else browser_context.new_page()


@pytest.fixture
def screenshot_dir() -> Path:
    """Where screenshots are kept: ``test-artefacts/screenshots/``."""
    directory = ARTEFACTS / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
