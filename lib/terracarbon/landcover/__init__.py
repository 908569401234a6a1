"""Land cover as users have it: class tables, built-in schemes, groups, validation.

A study declares its land-cover classes once — a built-in scheme (CLCD, GLC_FCS30,
GLC_FCS30D, CNLUCC, ESA WorldCover, MODIS IGBP) or its own code -> name, group, colour
table, plus a reclassification — in the ``landcover`` section of its params; every stage
reads that one :class:`LandCoverTable`. Subtypes (the table's codes) are kept where they
matter; the eight groups (:data:`terracarbon.conventions.LANDUSE`) serve where few classes
are needed. Without a ``landcover`` section the table is the eight groups themselves.

Modules, one concern each:

* :mod:`.groups` — the eight groups (:data:`GROUPS`, :func:`group_name`);
* :mod:`.schemes` — built-in schemes with their official codes, names, sources and
  crosswalk to the groups (:data:`SCHEMES`, :func:`scheme`);
* :mod:`.table` — :class:`LandCoverTable` (to a ``ClassTable``, :meth:`~LandCoverTable.
  to_groups`, :meth:`~LandCoverTable.reclassify`, :meth:`~LandCoverTable.level1`);
* :mod:`.params` — the ``landcover:`` params section (YAML form there),
  :func:`landcover_from_params`;
* :mod:`.validate` — :func:`validate_landcover`, a raster against the table, chunk-wise;
* :mod:`.towers` — flux towers' IGBP labels to groups and map classes;
* :mod:`.lookup` — the NumPy kernels (code lookup, code counts);
* :mod:`.study` — the classes in the stages: the cube's ``landuse`` (groups) and
  ``landcover`` (the study's classes) layers (:func:`prepare_landuse`), stage tables at the
  class and the group level (:func:`class_levels`, :func:`totals_by_level` ...).

>>> import terracarbon.landcover as lc
>>> lc.landcover_from_params({"scheme": "clcd"}).to_class_table().names[:3]
('cropland', 'forest', 'shrub')
"""

from __future__ import annotations

from terracarbon.landcover.groups import GROUP_TABLE, GROUPS, group_code, group_name
from terracarbon.landcover.params import landcover_from_params, landcover_problems
from terracarbon.landcover.schemes import (
    DEFAULT_SCHEME,
    SCHEMES,
    Scheme,
    SchemeClass,
    crosswalk,
    scheme,
    scheme_names,
)
from terracarbon.landcover.table import LandClass, LandCoverTable
from terracarbon.landcover.towers import (
    IGBP_GROUPS,
    igbp_group,
    igbp_groups,
    map_classes_for_igbp,
    towers_with_groups,
)
from terracarbon.landcover.validate import LandcoverCounts, code_counts, validate_landcover
from terracarbon.landcover.study import (
    ClassLevels,
    check_group_sums,
    class_layer,
    class_levels,
    codes_present,
    contribution_by_level,
    counts_table,
    decomposition_summary,
    is_group_table,
    prepare_landuse,
    stack_levels,
    totals_by_level,
    transitions_by_level,
)


def default_table() -> LandCoverTable:
    """The table of a study without a ``landcover`` section: the eight groups."""
    return landcover_from_params(None)


__all__ = [
    "ClassLevels", "check_group_sums", "class_layer", "class_levels",
    "codes_present", "contribution_by_level",
    "counts_table", "decomposition_summary", "is_group_table", "prepare_landuse",
    "stack_levels", "totals_by_level", "transitions_by_level",
    "DEFAULT_SCHEME", "GROUPS", "GROUP_TABLE", "IGBP_GROUPS", "SCHEMES", "LandClass",
    "LandCoverTable", "LandcoverCounts", "Scheme", "SchemeClass", "code_counts", "crosswalk",
    "default_table", "group_code", "group_name", "igbp_group", "igbp_groups",
    "landcover_from_params", "landcover_problems", "map_classes_for_igbp", "scheme",
    "scheme_names", "towers_with_groups", "validate_landcover",
]
