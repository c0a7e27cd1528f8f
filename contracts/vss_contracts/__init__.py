"""VSS public contracts: case event models, the CloudEvents envelope, subjects, schemas.

A subscriber in another organisation needs only this package::

    from vss_contracts import CloudEvent
    event = CloudEvent.model_validate_json(message.data)
    fact = event.typed_data()   # e.g. a SipDecided, upcast from older versions

The names below are imported when first used, not with the package: a program that needs
only a light module (the hash chain's :mod:`vss_contracts.chain`, the subjects) does not
build every event model at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vss_contracts import case_events
    from vss_contracts.case_events import CASE_EVENTS, CaseEventData
    from vss_contracts.envelope import CloudEvent, dataschema_for
    from vss_contracts.identity import InvalidPersonalIdentityNumber, normalise_personal_identity_number
    from vss_contracts.registry import EVENT_TYPES, UnknownEventType, decode_event, upcast
    from vss_contracts.subjects import CASE_STREAM, CASE_SUBJECT_PREFIX, CASE_SUBJECTS, case_subject

__all__ = [
    "CASE_EVENTS",
    "CASE_STREAM",
    "CASE_SUBJECTS",
    "CASE_SUBJECT_PREFIX",
    "EVENT_TYPES",
    "CaseEventData",
    "CloudEvent",
    "InvalidPersonalIdentityNumber",
    "UnknownEventType",
    "case_events",
    "case_subject",
    "dataschema_for",
    "decode_event",
    "normalise_personal_identity_number",
    "upcast",
]

# Each name's module (a name that is a module of the package itself is that module).
_HOMES = {
    "CASE_EVENTS": "case_events",
    "CaseEventData": "case_events",
    "CloudEvent": "envelope",
    "dataschema_for": "envelope",
    "InvalidPersonalIdentityNumber": "identity",
    "normalise_personal_identity_number": "identity",
    "EVENT_TYPES": "registry",
    "UnknownEventType": "registry",
    "decode_event": "registry",
    "upcast": "registry",
    "CASE_STREAM": "subjects",
    "CASE_SUBJECT_PREFIX": "subjects",
    "CASE_SUBJECTS": "subjects",
    "case_subject": "subjects",
}


def __getattr__(name: str) -> Any:
    """A name of ``__all__`` from its module, or a module of the package, on first use."""
    home = _HOMES.get(name)
    if home is None:
        if name.startswith("_"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
