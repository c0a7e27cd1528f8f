"""Meeting invitees as services keep them: read back and dumped once per distinct invitee.

The meetings service restores a schedule, and the notifications service reads a case's
audience back, for each event of a case, and both write it again after it: the same few
people, in every meeting the case ever held, were validated by pydantic (their e-mail
addresses by email-validator) and dumped again and again. An :class:`Invitee` is frozen, so
equal ones are shared. Dict operations are atomic, so threads may share the caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.shared.json_bytes import kept
from vss_contracts.meeting_events import Invitee

__all__ = ["invitee_from_json", "invitee_json"]

# Distinct invitees kept (each entry about 1.5 KiB: the key's JSON and the model): both caches
# start again empty when full.
KEPT = 65_536

_READ: dict[bytes, Invitee] = {}
_DUMPED: dict[int, tuple[Invitee, bytes]] = {}


def invitee_from_json(value: Mapping[str, Any]) -> Invitee:
    """The invitee a stored JSON object holds, validated once per distinct value (keyed by
    its JSON with sorted keys)."""
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    known = _READ.get(raw)
    if known is None:
        if len(_READ) >= KEPT:
            _READ.clear()
        known = _READ[kept(raw)] = Invitee.model_validate_json(raw)
    return known


def invitee_json(invitee: Invitee) -> dict[str, Any]:
    """``invitee.model_dump(mode="json")``, dumped once per invitee object and read into a
    document of its own at each call (nested dicts included). Keyed by identity: an entry
    keeps its invitee alive, so the id is not reused meanwhile."""
    known = _DUMPED.get(id(invitee))
    if known is None:
        if len(_DUMPED) >= KEPT:
            _DUMPED.clear()
        known = _DUMPED[id(invitee)] = (invitee, kept(orjson.dumps(invitee.model_dump(mode="json"))))
    return dict(orjson.loads(known[1]))
