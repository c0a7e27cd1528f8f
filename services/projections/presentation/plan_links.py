"""The page a refused plan link answers with (ADR 0016), in Swedish; pure like the other pages."""

from __future__ import annotations

from services.projections.presentation.pages import _render


def render_link_refused_page() -> str:
    """The link no longer works: why it may be so, and what to do; nothing about the case."""
    return _render("link_refused.html")
