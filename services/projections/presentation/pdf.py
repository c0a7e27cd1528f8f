"""Printable PDFs of the client's SIP and early-warning plan (fpdf2), in Swedish.

Unicode text needs a TrueType font. The PDFs use DejaVu Sans: Debian's copy
(``fonts-dejavu-core``, on almost every Debian machine, CI's included), else the copy
matplotlib ships when it happens to be installed (not a dependency: a plotting library
with numpy is too much to carry for one font file). Without either they fall back to the
PDF core font Helvetica (Windows-1252, which still has å, ä, ö and é), and characters
outside it are transliterated ("ł" becomes "l", others "?") rather than failing.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from services.projections.domain.case_view import View
from services.projections.presentation import content

SYSTEM_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
REGULAR, BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"
CORE_ENCODING = "windows-1252"

# Characters with no decomposition to a Windows-1252 letter that a name or note may hold.
_TRANSLITERATIONS = {
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "ı": "i",
    "ħ": "h",
    "ŧ": "t",
    "−": "-",
    "‐": "-",
    "‑": "-",
    "≤": "<=",
    "≥": ">=",
    "→": "->",
    "←": "<-",
}


@dataclass(frozen=True)
class FontFiles:
    regular: Path
    bold: Path


def packaged_font_dirs() -> list[Path]:
    """Where an installed matplotlib keeps its DejaVu Sans (found without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) / "mpl-data" / "fonts" / "ttf" for location in spec.submodule_search_locations]


def find_unicode_font(dirs: Iterable[Path] | None = None) -> FontFiles | None:
    """DejaVu Sans, regular and bold, from the first of ``dirs`` that has both (default: the
    system's, then matplotlib's); None when none has."""
    for directory in dirs if dirs is not None else [SYSTEM_FONT_DIR, *packaged_font_dirs()]:
        regular, bold = directory / REGULAR, directory / BOLD
        if regular.is_file() and bold.is_file():
            return FontFiles(regular, bold)
    return None


def _encodable(char: str) -> bool:
    try:
        char.encode(CORE_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def to_core_font(text: str) -> str:
    """``text`` in Windows-1252, the core fonts' encoding: other characters transliterated."""
    out: list[str] = []
    for char in text:
        if _encodable(char):
            out.append(char)
        elif char in _TRANSLITERATIONS:
            out.append(_TRANSLITERATIONS[char])
        else:
            decomposed = unicodedata.normalize("NFKD", char)
            kept = "".join(c for c in decomposed if not unicodedata.combining(c) and _encodable(c))
            out.append(kept or "?")
    return "".join(out)


class _Document(FPDF):
    """An A4 document with headings, paragraphs, labelled fields and bullets."""

    def __init__(self, title: str, fonts: FontFiles | None) -> None:
        super().__init__(format="A4")
        self.set_margins(20, 18, 20)
        self.set_auto_page_break(auto=True, margin=18)
        self.core_fonts_encoding = CORE_ENCODING
        self._unicode = fonts is not None
        if fonts is not None:
            self.add_font("DejaVu", "", str(fonts.regular))
            self.add_font("DejaVu", "B", str(fonts.bold))
            self._family = "DejaVu"
        else:
            self._family = "Helvetica"
        self.set_title(self.t(title))
        self.set_lang("sv")
        self.set_creator("VSS")
        self.add_page()

    def t(self, value: str) -> str:
        return value if self._unicode else to_core_font(value)

    def use(self, size: float, bold: bool = False) -> None:
        self.set_font(self._family, "B" if bold else "", size)

    def footer(self) -> None:
        self.set_y(-13)
        self.use(9)
        self.cell(0, 6, self.t(f"Sida {self.page_no()} av {{nb}}"), align="C")

    def title_block(self, title: str, subtitle: str) -> None:
        self.use(18, bold=True)
        self.multi_cell(0, 9, self.t(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.use(12)
        self.multi_cell(0, 7, self.t(subtitle), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(2)

    def heading(self, text: str, size: float = 14) -> None:
        self.ln(3)
        self.use(size, bold=True)
        self.multi_cell(0, size * 0.55, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)

    def paragraph(self, text: str, indent: float = 0) -> None:
        self.use(11)
        self.set_x(self.l_margin + indent)
        self.multi_cell(0, 6, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def field(self, label: str, value: str, indent: float = 0) -> None:
        self.set_x(self.l_margin + indent)
        self.use(11, bold=True)
        self.write(6, self.t(f"{label}: "))
        self.use(11)
        self.write(6, self.t(value))
        self.ln(6)

    def bullets(self, items: Iterable[str], indent: float = 0) -> None:
        """One item a bullet, its wrapped lines hanging beside the bullet."""
        for item in items:
            self.use(11)
            self.set_x(self.l_margin + indent)
            self.cell(5, 6, "•")
            self.multi_cell(0, 6, self.t(item), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def to_bytes(self) -> bytes:
        return bytes(self.output())


def _document(title: str, font_dirs: Sequence[Path] | None) -> _Document:
    return _Document(title, find_unicode_font(font_dirs))


def _goal_line(goal: content.Goal) -> str:
    target = f" (till {goal.target_date})" if goal.target_date else ""
    note = f" ({goal.note})" if goal.note else ""
    return f"{goal.kind}: {goal.description}{target}, {goal.status}{note}"


def _responsible(action: content.Action, client_name: str) -> str:
    if action.by_client:
        return f"{client_name} (egen åtgärd)"
    who = action.who
    if action.organisation and action.organisation != action.who:
        who = f"{who}, {action.organisation}" if who else action.organisation
    return f"{who} (utanför resursgruppen)" if action.outside_party else who


def sip_pdf(view: View, *, font_dirs: Sequence[Path] | None = None) -> bytes:
    """The current SIP: goals, every action (what, who, when, how), the principal responsible.

    ``font_dirs``: where to look for DejaVu Sans (default: the system's, then matplotlib's).
    """
    client_name = view["client"]["name"]
    doc = _document("Samordnad individuell plan (SIP)", font_dirs)
    doc.title_block("Samordnad individuell plan (SIP)", client_name)
    sip = content.current_sip(view)
    if sip is None:
        doc.paragraph("Ingen SIP är beslutad ännu.")
        return doc.to_bytes()
    initial = " (inledande SIP, beslutad innan kartläggningen var klar)" if sip.initial else ""
    doc.field("Version", f"{sip.version}, beslutad {sip.decided_on}{initial}")
    doc.field(
        "Huvudman med övergripande ansvar",
        sip.overall_responsibility or "inte angiven (planen beslutades innan det registrerades)",
    )
    doc.field("Nästa uppföljning", sip.next_follow_up_on or "inte bestämd")
    doc.field("Brukaren har godkänt planen", "ja" if sip.client_agreed else "nej")

    doc.heading("Mål")
    if not sip.goals:
        doc.paragraph("Inga mål är satta i den här planen ännu.")
    for goal in sip.goals:
        doc.bullets([_goal_line(goal)])
        doc.bullets([_goal_line(sub) for sub in goal.sub_goals], indent=8)

    doc.heading("Åtgärder")
    for number, action in enumerate(sip.actions, start=1):
        doc.heading(f"Åtgärd {number}", size=12)
        doc.field("Vad", action.what)
        doc.field("Vem", _responsible(action, client_name))
        doc.field("När", f"senast {action.due_on}" + (" (datumet har passerat)" if action.overdue else ""))
        doc.field("Hur", action.how)
        if action.goal:
            doc.field("För målet", action.goal)
        if action.done_on:
            doc.field("Klar", action.done_on)
    return doc.to_bytes()


def early_warning_plan_pdf(view: View, *, font_dirs: Sequence[Path] | None = None) -> bytes:
    """The whole early-warning plan: signs, what the client and others do, whom to call."""
    client_name = view["client"]["name"]
    doc = _document("Plan för tidiga tecken", font_dirs)
    doc.title_block("Plan för tidiga tecken", client_name)
    plan = content.warning_plan(view)
    if plan is None:
        doc.paragraph("Det finns ingen plan för tidiga tecken ännu.")
        return doc.to_bytes()
    doc.field("Version", f"{plan.version}, uppdaterad {plan.updated_on}")
    doc.paragraph("Alla som är namngivna i planen ska ha en kopia av den.")
    doc.heading("Tidiga tecken")
    doc.bullets(plan.signs)
    doc.heading(f"Det här gör {client_name} själv")
    doc.bullets(plan.client_actions or ["Inget skrivet."])
    doc.heading("Det här gör andra")
    doc.bullets([f"{who}: {what}" for who, what in plan.others_actions] or ["Inget skrivet."])
    doc.heading("Kontakta")
    if not plan.contacts:
        doc.paragraph("Inga kontakter angivna.")
    for contact in plan.contacts:
        relation = f", {contact.relation}" if contact.relation else ""
        doc.use(11, bold=True)
        doc.multi_cell(0, 6, doc.t(f"{contact.name}{relation}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        doc.field("Telefon", contact.phone, indent=4)
        if contact.email:
            doc.field("E-post", contact.email, indent=4)
    return doc.to_bytes()
