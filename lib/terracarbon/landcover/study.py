"""The study's land-cover classes in the stages: the cube's land-use layers, tables at two levels.

A study's land-cover raster (``data.layers.landuse``, or the synthetic study's) holds the codes
of the study's table (the ``landcover`` params section,
:func:`~terracarbon.landcover.landcover_from_params`). Data prep checks it against the table
and gives the cube its land-use layers (:func:`prepare_landuse`):

* ``landuse`` — the **eight groups** (codes 1..8 of :data:`terracarbon.conventions.LANDUSE`).
  Everything that needs few classes reads this layer: the models (one-hot or integer
  features, the land-use lookup baseline), conformal bounds per class, root:shoot ratios,
  the flux path's one-hot cover, the trend stage's charts. A study whose raster holds
  subtypes therefore trains its models on groups: a few hundred plots cannot fit 29
  subtype levels, and every model sees the classes the default study's models see.
* ``landcover`` — the **study's classes** (the table's codes, after ``landcover.reclassify``),
  with CF ``flag_values``/``flag_meanings`` and ``flag_colors`` from the table; only when
  they are not the eight groups themselves. Per-class totals, ecosystem contributions,
  transition matrices and the conversion decomposition are reported with it.

A study whose classes are the eight groups (the default, scheme ``terracarbon``) keeps one
``landuse`` layer, untouched, so its numbers and tables do not change.

Stage tables come at two **levels** (:class:`ClassLevels`): ``class`` (the study's classes;
for the default study the groups) and ``group`` (the eight groups, only when the classes are
subtypes). The level of each table is in its output id (``by_landuse`` /
``by_landuse_group`` ...). Group rows are sums of their classes' rows, checked when both
levels are made (:func:`check_group_sums`).

>>> import xarray as xr
>>> from terracarbon.landcover import LandCoverTable
>>> raw = xr.DataArray(np.array([[[52, 11], [0, 210]]], dtype=np.int16),
...                    dims=("year", "y", "x"), coords={"year": [2020]}, name="landuse")
>>> cube = prepare_landuse(xr.Dataset({"landuse": raw}), LandCoverTable.from_scheme("glc_fcs30"))
>>> cube["landuse"].values.tolist(), cube["landcover"].values.tolist()
([[[1, 4], [0, 6]]], [[[52, 11], [0, 210]]])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.conventions import LANDUSE
from terracarbon.errors import InputDataError
from terracarbon.landcover.groups import GROUP_TABLE
from terracarbon.landcover.table import LandCoverTable
from terracarbon.landcover.validate import LandcoverCounts, validate_landcover

LANDUSE_LAYER = "landuse"
"""Cube variable of the eight groups (what models and charts read)."""
LANDCOVER_LAYER = "landcover"
"""Cube variable of the study's classes, when they are subtypes of the groups."""
LEVELS = ("class", "group")
"""Levels a stage table can be reported at: the study's classes, the eight groups."""


def is_group_table(table: LandCoverTable) -> bool:
    """True when the table's classes are the eight groups themselves (codes 1..8, each its own
    group), so group rasters and class rasters are the same.

    >>> is_group_table(LandCoverTable.from_scheme("terracarbon"))
    True
    >>> is_group_table(LandCoverTable.from_scheme("clcd"))
    False
    """
    return all(c.code == c.group_code for c in table.classes)


def flag_colors(table: LandCoverTable) -> str:
    """The classes' colours in ``flag_values`` order (nodata first, white), space-separated:
    the ``flag_colors`` attribute a legend reads (:mod:`terracarbon.viz.classes`)."""
    return " ".join(["#ffffff", *(c.color for c in table.classes)])


def prepare_landuse(
    cube: xr.Dataset,
    table: LandCoverTable,
    *,
    layer: str = LANDUSE_LAYER,
    counts: LandcoverCounts | None = None,
) -> xr.Dataset:
    """Check the cube's land-cover raster against the study's table and give the cube its
    land-use layers.

    Parameters
    ----------
    cube : xarray.Dataset
        The data-prep cube, lazy or loaded; ``cube[layer]`` holds the codes as the raster
        holds them (before reclassification), int, 0 = no data.
    table : LandCoverTable
        The study's classes (:func:`~terracarbon.landcover.landcover_from_params`).
    layer : str
        The land-cover variable (``landuse``).
    counts : LandcoverCounts, optional
        The result of :func:`~terracarbon.landcover.validate_landcover` on ``cube[layer]``,
        when already checked (the raster is not counted twice).

    Returns
    -------
    xarray.Dataset
        ``cube`` itself when the table is the eight groups and reclassifies nothing (the
        default study); else a copy whose ``landuse`` holds the groups
        (:meth:`LandCoverTable.to_groups`) and, when the classes are subtypes, ``landcover``
        the study's classes (:meth:`LandCoverTable.reclassify`) with ``flag_colors``. Lazy
        inputs stay lazy (the layers are computed chunk by chunk when written).

    Raises
    ------
    InputDataError
        One message listing every code of the raster the table does not name, with its
        pixel count and share, non-integer values, or a raster of no data only.
    ParameterError
        When ``cube`` is not a Dataset holding ``layer``.

    Notes
    -----
    The cube's ``landuse`` then always holds groups, so models, lookup baselines, per-class
    interval bounds and the flux path see the eight classes they see in the default study.
    """
    from terracarbon.errors import ParameterError

    if not isinstance(cube, xr.Dataset) or layer not in cube:
        raise ParameterError(f"prepare_landuse: expected a Dataset with a {layer!r} variable "
                             f"(the land-cover raster), got {type(cube).__name__}"
                             + (f" with {sorted(cube.data_vars)}" if isinstance(cube, xr.Dataset)
                                else "") + ".")
    raw = cube[layer]
    if counts is None:
        validate_landcover(raw, table, name=f"data.layers.{layer}",
                           source=raw.attrs.get("source"))
    if is_group_table(table) and not table.reclass and not table.fill:
        return cube
    out = cube.copy()
    out[LANDUSE_LAYER] = table.to_groups(raw, name=LANDUSE_LAYER)
    if not is_group_table(table):
        classes = table.reclassify(raw, name=LANDCOVER_LAYER)
        classes.attrs["flag_colors"] = flag_colors(table)
        classes.attrs["long_name"] = f"land cover, the study's classes ({table.scheme})"
        out[LANDCOVER_LAYER] = classes
    return out


def counts_table(counts: LandcoverCounts) -> pd.DataFrame:
    """Pixels per class of a checked raster (:func:`~terracarbon.landcover.validate_landcover`):
    ``code, name, group, pixels, share_pct`` (% of the pixels with a class), every class of the
    table listed; no-data pixels in a last row ``code`` 0."""
    table, by_class = counts.table, counts.by_class
    total = sum(by_class.values())
    rows = [{"code": c.code, "name": c.name, "group": c.group, "pixels": by_class.get(c.code, 0),
             "share_pct": 100.0 * by_class.get(c.code, 0) / total if total else np.nan}
            for c in table.classes]
    rows.append({"code": table.nodata, "name": "nodata", "group": "", "pixels":
                 counts.nodata_pixels, "share_pct": np.nan})
    return pd.DataFrame(rows)


def class_layer(cube: xr.Dataset) -> xr.DataArray:
    """The cube's layer of the study's classes: ``landcover`` when the classes are subtypes,
    else ``landuse`` (KeyError without either)."""
    if LANDCOVER_LAYER in cube:
        return cube[LANDCOVER_LAYER]
    return cube[LANDUSE_LAYER]


def codes_present(layer: xr.DataArray) -> np.ndarray:
    """The sorted distinct codes of a class layer (every year), nodata code included.

    Chunk by chunk on a dask-backed layer (each chunk's codes, then their union), so a
    (year, y, x) land-use stack at national scale is never held in memory.

    Examples
    --------
    >>> import dask.array as dsa
    >>> codes = np.array([[[3, 1], [1, 0]], [[3, 5], [5, 5]]], dtype="int16")
    >>> lazy = xr.DataArray(dsa.from_array(codes, chunks=1), dims=("year", "y", "x"))
    >>> codes_present(lazy).tolist()
    [0, 1, 3, 5]
    """
    data = layer.data
    if hasattr(data, "dask"):
        import dask.array as dsa

        return np.asarray(dsa.unique(data).compute())
    return np.unique(np.asarray(data))


@dataclass(frozen=True)
class ClassLevels:
    """The levels a study's per-class tables come at, with the cube layer of each.

    Attributes
    ----------
    table : LandCoverTable
        The study's classes.
    layers : dict of str to xarray.DataArray
        ``class``: the study's classes (``landcover``, or ``landuse`` when they are the
        groups); ``group``: the eight groups (``landuse``), only when the classes are not.
    """

    table: LandCoverTable
    layers: dict[str, xr.DataArray]

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.layers)

    def names(self, level: str) -> dict[int, str]:
        """``{code: name}`` of ``level`` (the study's classes or the eight groups)."""
        if level == "class":
            return dict(zip(self.table.codes, self.table.names))
        if level == "group":
            return GROUP_TABLE.as_dict()
        raise KeyError(f"level {level!r}; expected one of {list(LEVELS)}")

    def describe(self) -> pd.DataFrame:
        """One row per level: ``level``, ``layer`` (cube variable), ``classes`` (how many),
        ``scheme`` and what the level is used for — the table the report shows so every
        table's level is stated."""
        use = {"class": "per-class totals, contributions, transitions (subtypes kept)",
               "group": "the same grouped; models, lookup baseline, charts"}
        if "group" not in self.layers:
            use["class"] = ("per-class totals, contributions, transitions; models (the classes "
                            "are the eight groups)")
        return pd.DataFrame([
            {"level": level, "layer": str(da.name), "classes": len(self.names(level)),
             "scheme": self.table.scheme if level == "class" else "terracarbon (groups)",
             "used_for": use[level]}
            for level, da in self.layers.items()])

    def crosswalk(self) -> pd.DataFrame:
        """The study's classes and their groups (:meth:`LandCoverTable.crosswalk`) with the
        scheme: the table a stage writes so readers can regroup any class-level table."""
        return self.table.crosswalk().assign(scheme=self.table.scheme)


def class_levels(cube: xr.Dataset, table: LandCoverTable) -> ClassLevels | None:
    """The :class:`ClassLevels` of a prepared cube (:func:`prepare_landuse`), or None when it
    has no land use.

    Raises
    ------
    InputDataError
        When the cube was prepared with another table than ``table`` (rerun data prep).
    """
    if LANDUSE_LAYER not in cube:
        return None
    if is_group_table(table):
        if LANDCOVER_LAYER in cube:
            raise InputDataError(
                f"the cube holds the subtype layer 'landcover' "
                f"({cube[LANDCOVER_LAYER].attrs.get('landcover_scheme')}) but the study's "
                f"landcover table is {table.scheme!r} (the eight groups); rerun data prep "
                "(01_data_prep) with the same landcover section.")
        return ClassLevels(table, {"class": cube[LANDUSE_LAYER]})
    if LANDCOVER_LAYER not in cube:
        raise InputDataError(
            f"the study's landcover table is {table.scheme!r} ({len(table)} classes) but the "
            "cube has no 'landcover' layer of those classes; rerun data prep (01_data_prep) "
            "with the same landcover section.")
    found = cube[LANDCOVER_LAYER].attrs.get("landcover_scheme")
    if found is not None and found != table.scheme:
        raise InputDataError(
            f"the cube's 'landcover' layer holds scheme {found!r} but the study's landcover "
            f"table is {table.scheme!r}; rerun data prep (01_data_prep).")
    return ClassLevels(table, {"class": cube[LANDCOVER_LAYER], "group": cube[LANDUSE_LAYER]})


# --------------------------------------------------------------------------- stage tables
def _group_of(levels: ClassLevels) -> dict[int, int]:
    return {c.code: c.group_code for c in levels.table.classes}


def check_group_sums(tables: Mapping[str, pd.DataFrame], levels: ClassLevels, *,
                     values: tuple[str, ...], keys: tuple[str, ...] = (),
                     code: str = "landuse_code", what: str = "table") -> None:
    """Check that each group row of ``tables['group']`` is the sum of its classes' rows of
    ``tables['class']`` (within float rounding); InputDataError listing the rows that are not.

    ``keys`` are further columns rows are matched on (``year``, ``pool``); ``values`` the
    summed columns (``area_ha``, ``storage_Tg`` ...).
    """
    if "group" not in tables or "class" not in tables:
        return
    fine, coarse = tables["class"], tables["group"]
    regrouped = (fine.assign(**{code: fine[code].map(_group_of(levels))})
                 .groupby([*keys, code], as_index=False)[list(values)].sum())
    merged = coarse.merge(regrouped, on=[*keys, code], how="left", suffixes=("", "_classes"))
    bad = []
    for value in values:
        a, b = merged[value].to_numpy(float), merged[f"{value}_classes"].to_numpy(float)
        scale = np.maximum(1.0, np.nanmax(np.abs(a), initial=0.0))
        # a share is NaN when the total change is zero, at both levels alike
        wrong = np.isfinite(a) & ~np.isclose(a, np.nan_to_num(b), rtol=1e-9, atol=1e-9 * scale)
        bad += [f"{value} {dict(zip([*keys, code], r))}: group {x:.6g} vs sum of classes "
                f"{y:.6g}" for r, x, y, w in zip(merged[[*keys, code]].itertuples(index=False),
                                                  a, b, wrong) if w]
    if bad:
        raise InputDataError(f"{what}: group rows differ from the sums of their classes "
                             f"({len(bad)}): " + "; ".join(bad[:5]))


def totals_by_level(storage_ds: xr.Dataset, levels: ClassLevels,
                    **kwargs: Any) -> dict[str, pd.DataFrame]:
    """:func:`terracarbon.carbon.totals_by_class` at every level of ``levels``: ``{level:
    table}`` (``year, pool, landuse_code, landuse_class, area_ha, storage_Tg,
    mean_density_t_ha``; ha, Tg C, t C ha-1). Group rows are checked against the sums of
    their classes."""
    from terracarbon.carbon import totals_by_class

    out = {level: totals_by_class(storage_ds, da, classes=levels.names(level), **kwargs)
           for level, da in levels.layers.items()}
    check_group_sums(out, levels, values=("area_ha", "storage_Tg"), keys=("year", "pool"),
                     what="totals by land-use class")
    return out


def contribution_by_level(storage_ds: xr.Dataset, levels: ClassLevels, *, start: int, end: int,
                          **kwargs: Any) -> dict[str, pd.DataFrame]:
    """:func:`terracarbon.carbon.ecosystem_contribution` at every level: ``{level: table}``
    (``landuse_code, landuse_class, area_ha, change_Tg, contribution_percent``). Group rows
    are checked against the sums of their classes."""
    from terracarbon.carbon import ecosystem_contribution

    out = {level: ecosystem_contribution(storage_ds, da, start=start, end=end,
                                         classes=levels.names(level), **kwargs)
           for level, da in levels.layers.items()}
    check_group_sums(out, levels, values=("area_ha", "change_Tg", "contribution_percent"),
                     what="ecosystem contribution")
    return out


def transitions_by_level(density: xr.Dataset, levels: ClassLevels, area_ha: Any, *,
                         start: int, end: int, pool: str = "total"
                         ) -> dict[str, tuple[pd.DataFrame, dict[str, Any]]]:
    """The transition matrix (ha) and conversion decomposition
    (:func:`terracarbon.carbon.transition_matrix`,
    :func:`~terracarbon.carbon.conversion_decomposition`) from ``start`` to ``end`` at every
    level: ``{level: (matrix, decomposition)}``.

    Every level covers the same pixels, so the total change is the same; the group matrix is
    the class matrix summed by group (checked). A change of subtype within a group is a
    conversion at the class level and unchanged at the group level.
    """
    from terracarbon.carbon import conversion_decomposition, transition_matrix

    out = {}
    for level, lu in levels.layers.items():
        lu0, lu1 = lu.sel(year=start), lu.sel(year=end)
        names = levels.names(level)
        matrix = transition_matrix(lu0, lu1, area_ha, classes=names)
        decomposition = conversion_decomposition(density.sel(year=start), density.sel(year=end),
                                                 lu0, lu1, area_ha, pool=pool, classes=names)
        out[level] = (matrix, decomposition)
    if "group" in out:
        fine, coarse = out["class"][0], out["group"][0]
        group_name = {levels.names("class")[c]: LANDUSE.name_of(g)
                      for c, g in _group_of(levels).items()}
        summed = fine.groupby(group_name).sum().T.groupby(group_name).sum().T
        summed = summed.reindex(index=coarse.index, columns=coarse.columns, fill_value=0.0)
        if not np.allclose(summed.to_numpy(), coarse.to_numpy(), rtol=1e-9,
                           atol=1e-9 * max(1.0, float(np.abs(coarse.to_numpy()).max()))):
            raise InputDataError("transitions: the group matrix differs from the class matrix "
                                 "summed by group")
        total = [out[level][1]["total_t"] for level in out]
        if not np.isclose(total[0], total[1], rtol=1e-9, atol=1e-6):
            raise InputDataError(f"transitions: total change differs between levels {total}")
    return out


def stack_levels(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The tables of every level one below the other, with a first column ``level`` (for
    display)."""
    frames = [t.assign(level=level)[["level", *t.columns]] for level, t in tables.items()
              if t is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def decomposition_summary(decompositions: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per level: total, conversion and unchanged change (Tg C), converted area (ha)
    and the conversion share (%)."""
    keys = ("total_Tg", "conversion_Tg", "unchanged_Tg", "conversion_area_ha",
            "conversion_percent")
    return pd.DataFrame([{"level": level, **{k: d[k] for k in keys}}
                         for level, d in decompositions.items()])


__all__ = [
    "LANDCOVER_LAYER", "LANDUSE_LAYER", "LEVELS", "ClassLevels", "check_group_sums",
    "class_layer", "class_levels", "contribution_by_level", "counts_table", "decomposition_summary",
    "flag_colors", "is_group_table", "prepare_landuse", "stack_levels", "totals_by_level",
    "transitions_by_level",
]
