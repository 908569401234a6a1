"""Flux towers' IGBP labels joined to the map's classes through the same crosswalk.

FLUXNET labels each tower with an IGBP class (``ENF``, ``EBF``, ``GRA``, ``CRO``, ``WET``,
``WSA`` ...), the abbreviations of MODIS MCD12Q1 LC_Type1. A tower's group is the group of
that class in the ``modis_igbp`` scheme (:mod:`~terracarbon.landcover.schemes`), the same
crosswalk a MODIS-coded map goes through; the map classes a tower speaks for are then the
classes of that group in the study's table (:meth:`LandCoverTable.codes_in_group`).

>>> igbp_group("WSA"), igbp_group(" ebf ")
('forest', 'forest')
>>> from terracarbon.landcover import LandCoverTable
>>> map_classes_for_igbp("WET", LandCoverTable.from_scheme("glc_fcs30"))
(180,)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from terracarbon.errors import InputDataError
from terracarbon.landcover.groups import group_code
from terracarbon.landcover.schemes import scheme

if TYPE_CHECKING:
    import pandas as pd

    from terracarbon.landcover.table import LandCoverTable

IGBP_GROUPS: dict[str, str] = {c.abbreviation: c.group for c in scheme("modis_igbp").classes}
"""IGBP abbreviation -> group, from the ``modis_igbp`` scheme (MCD12Q1 order)."""


def _label(value: object) -> str:
    return str(value).strip().upper()


def igbp_group(label: str) -> str:
    """The group of a tower's IGBP label (case and spaces ignored)."""
    return igbp_groups([label])[0]


def igbp_groups(labels: Iterable[object], *, name: str = "IGBP") -> list[str]:
    """The group of every IGBP label; one InputDataError listing every unknown label.

    >>> igbp_groups(["ENF", "CRO", "CVM"])
    ['forest', 'cropland', 'cropland']
    """
    labels = [_label(v) for v in labels]
    unknown = Counter(v for v in labels if v not in IGBP_GROUPS)
    if unknown:
        listed = ", ".join(f"{v!r} ({n} row(s))" for v, n in sorted(unknown.items()))
        raise InputDataError(f"{name}: unknown IGBP label(s) {listed}; expected one of "
                             f"{list(IGBP_GROUPS)} (MODIS MCD12Q1 LC_Type1 abbreviations).")
    return [IGBP_GROUPS[v] for v in labels]


def map_classes_for_igbp(label: str, table: LandCoverTable) -> tuple[int, ...]:
    """The study table's classes in the group of the IGBP class ``label``."""
    return table.codes_in_group(igbp_group(label))


def towers_with_groups(towers: pd.DataFrame, *, column: str = "igbp") -> pd.DataFrame:
    """A copy of a tower table with columns ``group`` and ``group_code`` (1..8) from its
    IGBP ``column``.

    >>> import pandas as pd
    >>> towers_with_groups(pd.DataFrame({"site": ["A", "B"], "igbp": ["MF", "URB"]}))
      site igbp     group  group_code
    0    A   MF    forest           1
    1    B  URB  built-up           7
    """
    from terracarbon.checks import require_columns

    require_columns(towers, [column], name="towers",
                    fix="Give each tower its IGBP class (FLUXNET's IGBP column).")
    out = towers.copy()
    out["group"] = igbp_groups(out[column], name=f"towers.{column}")
    out["group_code"] = [group_code(g) for g in out["group"]]
    return out
