"""Signed links to a case's plans for the people they name (ADR 0016).

A plan link is ``<base>/v1/plan-links/<case id>/<holder>?sig=<signature>``: the signature is
the credential (a relative named in the early-warning plan has no account). It is an
HMAC-SHA256, under the plan-link key, of the case id, the holder key and the kind of link,
so a link is a pure function of those three and of the key: the notifications service
writes the same link on every replay, and the query API checks it without any store.

Whether the link still works is the query API's decision, on its read model alone: the
holder must still be named (in the plan, among the coordinators, in the resource group) and
covered by the consent. Removing someone from the plan therefore revokes their link at
once; changing the key revokes every link handed out.

A holder key names a person the same way in both services, from the case's events alone:

- ``coordinator:<organisation id>:<user id>``: a coordinator (a user id is unique within
  its organisation only, ADR 0008);
- ``member:<member id>``: a resource group member, also when the plan names them as a
  contact (a plan contact with a ``member_id``);
- ``contact:<digest>``: anyone else the plan names, by a digest of their normalised name,
  phone and email. Such a contact keeps their link over new plan versions while the plan
  names them with the same details; one whose details change gets a new link in the
  message about that version, and the old one stops working.

Characters a URL path segment cannot carry (a user id may hold any but whitespace) are
written as ``~`` and their UTF-8 bytes in hex, so a holder key is always one segment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from enum import StrEnum
from typing import Any
from uuid import UUID

from services.shared.signed_links import sign_parts
from vss_contracts.types import OrganisationId, UserId

PLAN_LINK_PRINCIPAL = "plan_link"  # the access log's principal of a read through a plan link
MIN_KEY_BYTES = 32
ROUTE_PREFIX = "/v1/plan-links"

_SAFE = re.compile(r"[A-Za-z0-9._@+=-]")
_DIGITS = re.compile(r"[^0-9+]")


def _max_length(annotated: Any) -> int:
    """The ``max_length`` of a contracts type (``Annotated[str, StringConstraints(...)]``)."""
    return next(int(m.max_length) for m in annotated.__metadata__ if getattr(m, "max_length", None))


# The longest character a user id may hold is written as "~" and its UTF-8 bytes (at most
# four) in hex: nine characters. An organisation id is all safe characters.
_ESCAPED_CHAR = 1 + 2 * 4
MAX_HOLDER_LENGTH = (
    len("coordinator:") + _max_length(OrganisationId) + len(":") + _max_length(UserId) * _ESCAPED_CHAR
)
"""The longest holder key: a coordinator's, of the longest organisation and user ids (a
member's and a contact's are shorter), so a route's limit is derived from the contracts."""


class LinkKind(StrEnum):
    """What a link opens: the early-warning plan, or the whole SIP (a resource group member's)."""

    EARLY_WARNING_PLAN = "early_warning_plan"
    SIP = "sip"


class PlanLinkKeyTooShort(ValueError):
    """VSS_PLAN_LINK_KEY is shorter than :data:`MIN_KEY_BYTES` (a start error, one line)."""


# ----------------------------------------------------------------------------- holder keys
def _segment(text: str) -> str:
    return "".join(c if _SAFE.fullmatch(c) else "~" + c.encode().hex() for c in text)


def coordinator_holder(organisation_id: str, user_id: str) -> str:
    return f"coordinator:{_segment(organisation_id)}:{_segment(user_id)}"


def member_holder(member_id: UUID | str) -> str:
    return f"member:{UUID(str(member_id))}"


def _normal(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").casefold().split())


def contact_holder(name: str, phone: str | None, email: str | None) -> str:
    """A plan contact who is not a member, by their normalised name, phone and email."""
    canonical = "\n".join((_normal(name), _DIGITS.sub("", phone or ""), _normal(email)))
    return "contact:" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def plan_contact_holder(member_id: UUID | str | None, name: str, phone: str | None, email: str | None) -> str:
    """The holder key of one contact of the early-warning plan (event payload or view)."""
    if member_id:
        return member_holder(member_id)
    return contact_holder(name, phone, email)


# ------------------------------------------------------------------------------ signatures
_PURPOSE = "vss-plan-link-v1"


def sign(key: bytes, case_id: UUID | str, holder: str, kind: LinkKind) -> str:
    """The link's signature: HMAC-SHA256 over (case id, holder, kind), URL-safe base64."""
    return sign_parts(key, _PURPOSE, str(UUID(str(case_id))), holder, kind.value)


def verify(key: bytes, case_id: UUID | str, holder: str, kind: LinkKind, signature: str) -> bool:
    """Whether ``signature`` is the key's signature of this link (constant time)."""
    try:
        expected = sign(key, case_id, holder, kind)
    except ValueError:  # not a case id
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError).
    return hmac.compare_digest(expected.encode(), signature.encode())


def link_path(case_id: UUID | str, holder: str, kind: LinkKind) -> str:
    """The route of a link, without the query: the plan page, or the whole SIP as a PDF."""
    base = f"{ROUTE_PREFIX}/{UUID(str(case_id))}/{holder}"
    return base if kind is LinkKind.EARLY_WARNING_PLAN else f"{base}/sip.pdf"


def plan_link(base_url: str, key: bytes, case_id: UUID | str, holder: str, kind: LinkKind) -> str:
    """The whole link a message carries."""
    path = link_path(case_id, holder, kind)
    return f"{base_url.rstrip('/')}{path}?sig={sign(key, case_id, holder, kind)}"
