"""The SIP and early-warning plan PDFs: their text, read back with pypdf, on both font paths."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from services.projections.presentation import early_warning_plan_pdf, sip_pdf
from services.projections.presentation.pdf import find_unicode_font, to_core_font

from .plan_view import ACTIONS, CONTACT_PHONES, CONTACTS, SIGNS, plan_view

NO_FONT_DIRS: list[Path] = []  # the core font, as on a machine without DejaVu Sans
unicode_font = pytest.mark.skipif(
    find_unicode_font() is None,
    reason="no DejaVu Sans on this machine (Debian: fonts-dejavu-core): the Unicode path cannot run",
)


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() or "" for page in reader.pages).split())


def fonts_of(pdf: bytes) -> set[str]:
    reader = PdfReader(io.BytesIO(pdf))
    names: set[str] = set()
    for page in reader.pages:
        resources: Any = page["/Resources"]
        for font in resources["/Font"].values():
            names.add(str(font.get_object()["/BaseFont"]))
    return names


def assert_sip_text(text: str) -> None:
    assert "Samordnad individuell plan (SIP)" in text
    assert "Tolvan Tolvansson" in text
    assert "Huvudman med övergripande ansvar: Göteborgs Stad, socialförvaltningen Nordost (kommun)" in text
    assert "Långsiktigt mål: Ha ett eget boende" in text
    assert "Delmål: Söka tre lägenheter i maj" in text
    for what, who in ACTIONS.items():
        assert f"Vad: {what}" in text
        assert who in text
    assert "Vem: Tolvan Tolvansson (egen åtgärd)" in text
    assert "Vem: Arbetsförmedlingen (utanför resursgruppen)" in text
    assert "När: senast 31 maj 2025" in text
    assert "Hur: Med stöd av boendestödjaren, två förmiddagar i veckan" in text


def assert_plan_text(text: str) -> None:
    assert "Plan för tidiga tecken" in text
    for sign in SIGNS:
        assert sign in text
    for contact, phone in zip(CONTACTS, CONTACT_PHONES, strict=True):
        assert contact in text
        assert phone in text
    assert "Det här gör Tolvan Tolvansson själv" in text
    assert "Ringa Åsa och berätta hur jag mår" in text
    assert "Åsa (syster): Följa med till vårdcentralen" in text
    assert "E-post: asa@example.org" in text


@unicode_font
def test_the_sip_pdf_holds_the_goals_every_action_and_the_principal_in_dejavu() -> None:
    pdf = sip_pdf(plan_view())
    assert pdf.startswith(b"%PDF-")
    assert_sip_text(text_of(pdf))
    assert any("DejaVuSans" in name for name in fonts_of(pdf))


@unicode_font
def test_the_plan_pdf_holds_the_signs_actions_and_contacts_in_dejavu() -> None:
    pdf = early_warning_plan_pdf(plan_view())
    assert_plan_text(text_of(pdf))
    assert any("DejaVuSans" in name for name in fonts_of(pdf))


@unicode_font
def test_dejavu_keeps_letters_beyond_latin_1() -> None:
    view = plan_view()
    view["early_warning_plan"]["contacts"][0]["name"] = "Łukasz Wąsik"
    assert "Łukasz Wąsik" in text_of(early_warning_plan_pdf(view))


def test_without_dejavu_the_pdfs_fall_back_to_the_core_font_with_swedish_letters_intact() -> None:
    sip = sip_pdf(plan_view(), font_dirs=NO_FONT_DIRS)
    plan = early_warning_plan_pdf(plan_view(), font_dirs=[Path("/nonexistent/fonts")])
    assert_sip_text(text_of(sip))
    assert_plan_text(text_of(plan))
    assert fonts_of(sip) <= {"/Helvetica", "/Helvetica-Bold"}
    assert fonts_of(plan) <= {"/Helvetica", "/Helvetica-Bold"}


def test_without_dejavu_other_letters_are_transliterated_rather_than_failing() -> None:
    view = plan_view()
    view["early_warning_plan"]["contacts"][0]["name"] = "Łukasz Wąsik 🙂"
    view["early_warning_plan"]["signs"][0]["description"] = "Sover ≤ 5 timmar – vaknar tidigt"
    text = text_of(early_warning_plan_pdf(view, font_dirs=NO_FONT_DIRS))
    assert "Lukasz Wasik ?" in text
    assert "Sover <= 5 timmar – vaknar tidigt" in text


def test_transliteration_keeps_what_windows_1252_has() -> None:
    assert to_core_font("Åsa Öberg – “bäst” é ß €") == "Åsa Öberg – “bäst” é ß €"
    assert to_core_font("Đorđe Ćosić, İlkay ő") == "Dorde Cosic, Ilkay o"


def test_a_case_without_sip_or_plan_still_gives_pdfs_that_say_so() -> None:
    view = plan_view()
    view["sip"] = None
    view["early_warning_plan"] = None
    assert "Ingen SIP är beslutad ännu." in text_of(sip_pdf(view, font_dirs=NO_FONT_DIRS))
    assert "Det finns ingen plan för tidiga tecken ännu." in text_of(early_warning_plan_pdf(view))
