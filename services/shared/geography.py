"""Swedish municipalities, their regions and municipal associations (reference data).

The data is ``data/municipalities.csv`` next to this module, read once on first use:
the municipality code (*kommunkod*, four digits, the first two the county code), the
region and, where the municipality belongs to one, the municipal association
(*kommunalförbund*) the regions report follow-up figures by: ``GR``
(Göteborgsregionen, including Kungsbacka in Region Halland), ``Fyrbodal``,
``Skaraborg`` and ``Boråsregionen`` (Sjuhärads kommunalförbund). It covers all of
Västra Götaland and the municipalities of Stockholm, Uppsala, Skåne and Halland; an
empty association means none is recorded.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "ASSOCIATIONS",
    "MunicipalityInfo",
    "UnknownMunicipality",
    "association_of",
    "municipalities",
    "municipality",
]

# The municipal associations of Västra Götaland (DOMAIN.md: follow-up figures per association).
ASSOCIATIONS: tuple[str, ...] = ("GR", "Fyrbodal", "Skaraborg", "Boråsregionen")
_COLUMNS = ["code", "name", "region_code", "region_name", "association"]


class UnknownMunicipality(KeyError):
    """No municipality with this code in the reference data."""


@dataclass(frozen=True, slots=True)
class MunicipalityInfo:
    code: str  # kommunkod, e.g. "1480"
    name: str  # e.g. "Göteborg"
    region_code: str  # länskod, e.g. "14"
    region_name: str  # e.g. "Västra Götalandsregionen"
    association: str | None  # kommunalförbund, e.g. "GR"; None when none is recorded


@functools.cache
def _load() -> tuple[tuple[MunicipalityInfo, ...], dict[str, MunicipalityInfo]]:
    text = resources.files(__package__ or "services.shared").joinpath("data", "municipalities.csv")
    reader = csv.DictReader(io.StringIO(text.read_text(encoding="utf-8")))
    if reader.fieldnames != _COLUMNS:
        raise ValueError(f"municipalities.csv: expected columns {_COLUMNS}, got {reader.fieldnames}")
    rows = tuple(
        MunicipalityInfo(
            code=row["code"],
            name=row["name"],
            region_code=row["region_code"],
            region_name=row["region_name"],
            association=row["association"] or None,
        )
        for row in reader
    )
    return rows, {row.code: row for row in rows}


def municipalities() -> tuple[MunicipalityInfo, ...]:
    """Every municipality in the reference data, in code order."""
    return _load()[0]


def municipality(code: str) -> MunicipalityInfo:
    """The municipality with this four-digit code; :class:`UnknownMunicipality` if none."""
    try:
        return _load()[1][code]
    except KeyError:
        raise UnknownMunicipality(f"no municipality with code {code!r}") from None


def association_of(code: str) -> str | None:
    """The municipal association of the municipality (None when it has none recorded)."""
    return municipality(code).association
