"""The client's *Min plan* pages and printable PDFs, rendered from the case overview view.

Pure functions: no HTTP, no database. The routes that serve them are the query API's.
"""

from services.projections.presentation.content import ReaderId
from services.projections.presentation.pages import (
    CSRF_FIELD,
    WITHDRAW_ENTIRE,
    WITHDRAW_FIELD,
    MyPlanLinks,
    NotAWithdrawChoice,
    WithdrawChoice,
    render_crisis_plan_page,
    render_my_plan_page,
    render_withdraw_confirmation_page,
    withdraw_choice,
)
from services.projections.presentation.pdf import early_warning_plan_pdf, sip_pdf

__all__ = [
    "CSRF_FIELD",
    "WITHDRAW_ENTIRE",
    "WITHDRAW_FIELD",
    "MyPlanLinks",
    "NotAWithdrawChoice",
    "ReaderId",
    "WithdrawChoice",
    "early_warning_plan_pdf",
    "render_crisis_plan_page",
    "render_my_plan_page",
    "render_withdraw_confirmation_page",
    "sip_pdf",
    "withdraw_choice",
]
