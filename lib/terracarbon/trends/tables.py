"""Tables and assembly of trend-stage products: area per class, class shares inside the
planted zones (a check against the synthetic truth), one Dataset of every product."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon.area import uniform_pixel_area_ha
from terracarbon.conventions import AREA_HA_UNITS, LANDUSE_CLASSES
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import ParameterError
from terracarbon.trends.core import check_landuse, class_meanings

__all__ = ["area_shares", "assemble", "zone_trend_table"]


def area_shares(
    classes: xr.DataArray,
    *,
    landuse: xr.DataArray | None = None,
    pixel_area_ha: float | None = None,
) -> pd.DataFrame:
    """Area (ha) and share (%) of each class, overall or within each land-use class.

    Parameters
    ----------
    classes : xarray.DataArray
        Integer class codes with ``flag_values``/``flag_meanings`` (0 = nodata, excluded).
    landuse : xarray.DataArray, optional
        Land-use codes on the same grid (0 = nodata, excluded); defaults to the
        ``landuse`` coordinate attached by
        :func:`~terracarbon.trends.mann_kendall.classify_trend`, if any. Its class names
        come from its CF ``flag_values``/``flag_meanings`` (the study's land-cover table,
        written by data prep, :func:`terracarbon.landcover.prepare_landuse`), else from
        :data:`~terracarbon.conventions.LANDUSE` (the eight groups).
    pixel_area_ha : float, optional
        Pixel area in ha; by default from the grid (:func:`uniform_pixel_area_ha`:
        ``|dx * dy| / 10,000`` on the study's projected grids).

    Returns
    -------
    pandas.DataFrame
        Columns ``class``, ``class_name``, ``n_pixels``, ``area_ha`` (ha), ``share_pct``
        (% of the classified area, or of the land-use class's classified area), plus
        ``landuse`` and ``landuse_name`` when land use is given. Every class is listed
        (zero area included).

    Raises
    ------
    ParameterError
        Missing flag attributes or pixel area.
    GridMismatchError
        ``landuse`` not on the grid of ``classes``.
    """
    if not isinstance(classes, xr.DataArray):
        raise ParameterError(
            f"classes: expected an xarray.DataArray, got {type(classes).__name__}."
        )
    meanings = class_meanings(classes)
    names = {k: v for k, v in meanings.items() if k != 0}
    area = uniform_pixel_area_ha(classes, pixel_area_ha)
    if landuse is None and "landuse" in classes.coords:
        landuse = classes.coords["landuse"]
    landuse = check_landuse(landuse, classes)
    codes = np.asarray(classes.values).astype(np.int64).ravel()
    n_codes = max(max(names, default=0), int(codes.max(initial=0))) + 1
    if landuse is None:
        groups = np.zeros_like(codes)
    else:
        groups = np.asarray(landuse.values).astype(np.int64).ravel()
        codes = np.where(groups > 0, codes, 0)
    counts = np.bincount(groups * n_codes + codes, minlength=(groups.max() + 1) * n_codes)
    counts = counts.reshape(-1, n_codes)
    rows = []
    lu_names = _landuse_names(landuse) if landuse is not None else {}
    for group in (np.unique(groups[groups > 0]) if landuse is not None else [0]):
        total = counts[group, 1:].sum()
        for code, name in names.items():
            n = int(counts[group, code])
            row = {"class": code, "class_name": name, "n_pixels": n, "area_ha": n * area,
                   "share_pct": 100.0 * n / total if total else np.nan}
            if landuse is not None:
                row = {"landuse": int(group), "landuse_name": lu_names.get(int(group), str(group)),
                       **row}
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs = {"units": {"area_ha": AREA_HA_UNITS, "share_pct": "%"},
                "history": update_history(
                    history_line("trends.area_shares", pixel_area_ha=area), classes)}
    return df


def _landuse_names(landuse: xr.DataArray) -> dict[int, str]:
    """``{code: name}`` of a land-use layer: its CF flags (the study's classes), else the
    eight groups of :data:`~terracarbon.conventions.LANDUSE`."""
    values, meanings = landuse.attrs.get("flag_values"), landuse.attrs.get("flag_meanings")
    if values is None or not isinstance(meanings, str):
        return LANDUSE_CLASSES
    codes = [int(v) for v in np.atleast_1d(np.asarray(values)).tolist()]
    names = meanings.split()
    if len(codes) != len(names):
        return LANDUSE_CLASSES
    return {c: n for c, n in zip(codes, names) if c != 0}


# --------------------------------------------------------------------------- checks, assembly
def zone_trend_table(classes: xr.DataArray, zones: xr.DataArray) -> pd.DataFrame:
    """Share (%) of each trend class inside each planted zone (a check against known truth).

    Parameters
    ----------
    classes : xarray.DataArray
        Trend classes with ``flag_values``/``flag_meanings`` (0 = nodata).
    zones : xarray.DataArray
        Integer zones with ``flag_values``/``flag_meanings`` (e.g. the synthetic truth's
        ``zones``: 1 restoration, 2 urbanising, 3 high-carbon mountain; 0 = none).
    """
    zone_names = dict(zip([int(v) for v in zones.attrs.get("flag_values", [])],
                          str(zones.attrs.get("flag_meanings", "")).split()))
    class_names = class_meanings(classes)
    z = np.asarray(zones.values)
    c = np.asarray(classes.values)
    rows = []
    for zone in sorted(int(v) for v in np.unique(z) if v != 0):
        inside = (z == zone) & (c != 0)
        n = int(inside.sum())
        for code, name in class_names.items():
            share = 100.0 * float(((c == code) & inside).sum()) / n if n else np.nan
            rows.append({"zone": zone_names.get(zone, str(zone)), "class_name": name,
                         "share_pct": share})
    table = pd.DataFrame(rows)
    return table.pivot(index="zone", columns="class_name", values="share_pct")


def assemble(
    sen_mk_ds: xr.Dataset,
    *,
    trend3: xr.DataArray,
    trend5: xr.DataArray,
    cv: xr.DataArray,
    stability: xr.DataArray,
    hurst: xr.Dataset,
    future: xr.DataArray,
    partial: xr.Dataset | None = None,
) -> xr.Dataset:
    """Merge every trend-stage product into one Dataset for writing (units kept)."""
    out = sen_mk_ds.copy()
    extra = {"trend3": trend3, "trend5": trend5, "cv": cv, "stability": stability,
             "hurst": hurst["hurst"], "hurst_undefined": hurst["hurst_undefined"],
             "future": future}
    for name, da in extra.items():
        da = da.drop_vars("landuse", errors="ignore")
        out[name] = da
        out[name].attrs.setdefault("units", "1")
    if partial is not None:
        for name, da in partial.data_vars.items():
            key = name if name.startswith(("r_", "p_", "q_")) else f"pcor_{name}"
            out[key] = da
    for name in out.data_vars:
        out[name].attrs.setdefault("units", "1")
        if out[name].dtype == bool:
            out[name] = out[name].astype("int8")
    return out
