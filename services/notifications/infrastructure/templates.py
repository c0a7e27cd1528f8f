"""Message templates: editable text files, Swedish by default, English available.

A template is ``<language>/<name>.txt``: a ``Subject:`` line, a blank line, the body,
in Jinja2 (plain text, undefined names are errors). Files in ``VSS_NOTIFY_TEMPLATES_DIR``
take precedence over the built-in ones (``services/notifications/templates``), so a
deployment edits a copy without touching the code. The built-in templates name no
health details: a neutral subject, the case reference and a link; the one exception is
``sip_decided``, which lists the recipient's own SIP actions (what, and the due date),
as each member is to see what they are responsible for. A deployment that wants even
that out of e-mail drops ``{{ action.what }}`` from its copy.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from services.shared.ics import STOCKHOLM

BUILT_IN = Path(__file__).resolve().parents[1] / "templates"
LANGUAGES = ("sv", "en")

_MEETINGS = {
    "sv": {"resource_group": "Resursgruppsmöte", "client_contact": "Samordningsmöte", "crisis": "Krismöte"},
    "en": {
        "resource_group": "Resource group meeting",
        "client_contact": "Coordination meeting",
        "crisis": "Crisis meeting",
    },
}
_AT = {"sv": "kl.", "en": "at"}


class TemplateMissing(LookupError):
    """No template of that name in the language (nor a built-in one)."""


class Templates:
    def __init__(self, language: str = "sv", directory: Path | None = None) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
        self.language = language
        roots = [d for d in (directory, BUILT_IN) if d is not None]
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(root / language)) for root in roots]),
            undefined=StrictUndefined,
            autoescape=False,  # plain text; nothing here is HTML
            keep_trailing_newline=False,
        )
        self.env.filters["day"] = _day
        self.env.filters["when"] = self._when
        self.env.filters["meeting"] = lambda kind: _MEETINGS[language].get(str(kind), str(kind))

    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str]:
        try:
            text = self.env.get_template(f"{template}.txt").render(**context)
        except TemplateNotFound:
            raise TemplateMissing(f"no template {template!r} in {self.language!r}") from None
        head, _, body = text.partition("\n\n")
        if not head.startswith("Subject:"):
            raise ValueError(f"template {template!r} must start with a 'Subject:' line")
        return head.removeprefix("Subject:").strip(), body.strip() + "\n"

    def names(self) -> list[str]:
        return sorted(p.stem for p in (BUILT_IN / self.language).glob("*.txt"))

    def _when(self, value: str | datetime | None) -> str:
        if value is None:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        local = moment.astimezone(STOCKHOLM)
        return f"{local:%Y-%m-%d} {_AT[self.language]} {local:%H:%M}"


def _day(value: str | date | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()
