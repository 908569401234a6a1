"""The eight land-cover groups every class table maps to.

Every land-cover class, whatever product it comes from, belongs to exactly one of eight
*groups*: forest, shrub, grassland, cropland, wetland, water, built-up, bare. The groups are
the classes of :data:`terracarbon.conventions.LANDUSE` — same codes (1..8), names and
colours, 0 = nodata — so a study whose raster is already in group codes (the synthetic
study) keeps every number it had, and every model, chart or table that needs few classes
uses the same eight.

>>> GROUPS
('forest', 'shrub', 'grassland', 'cropland', 'wetland', 'water', 'built-up', 'bare')
>>> group_name("Built_up"), group_code("bare")
('built-up', 8)
"""

from __future__ import annotations

from terracarbon.conventions import LANDUSE, ClassTable
from terracarbon.errors import ParameterError

GROUP_TABLE: ClassTable = LANDUSE
"""The groups as a class table: :data:`terracarbon.conventions.LANDUSE` itself."""
GROUPS: tuple[str, ...] = LANDUSE.names
"""Group names in code order (code = position + 1)."""
GROUP_NODATA: int = 0
"""Code of "no value" in group rasters (and in every categorical layer of the cube)."""


def _key(word: str) -> str:
    return word.strip().lower().replace("_", "-").replace(" ", "-")


_BY_KEY = {_key(name): name for name in GROUPS}


def group_name(value: object, *, name: str = "group") -> str:
    """The group called ``value`` (case, ``_``/``-``/space ignored); ParameterError otherwise.

    >>> group_name("Grassland")
    'grassland'
    >>> group_name("urban")
    Traceback (most recent call last):
    ...
    terracarbon.errors.ParameterError: group='urban' is not a land-cover group; expected one of \
['forest', 'shrub', 'grassland', 'cropland', 'wetland', 'water', 'built-up', 'bare'].
    """
    found = _BY_KEY.get(_key(value)) if isinstance(value, str) else None
    if found is None:
        raise ParameterError(f"{name}={value!r} is not a land-cover group; expected one of "
                             f"{list(GROUPS)}.")
    return found


def is_group(value: object) -> bool:
    """True when ``value`` names a group (the spelling rules of :func:`group_name`)."""
    return isinstance(value, str) and _key(value) in _BY_KEY


def group_code(value: object) -> int:
    """Code (1..8) of the group called ``value``."""
    return LANDUSE.code_of(group_name(value))
