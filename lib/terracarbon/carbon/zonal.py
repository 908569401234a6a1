"""Tables by zone: storage and area per land-use class or reporting unit, and the area outside
the model's area of applicability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import (
    POOLS,
    area_values,
    codes_to_index,
    history,
    same_grid,
    var,
    year_selections,
    years_of,
)
from terracarbon.checks import require_vars
from terracarbon.conventions import LANDUSE_CLASSES, T_PER_TG
from terracarbon.errors import InputDataError


def _zone_slices(zones: xr.DataArray, storage_ds: xr.Dataset, arg: str) -> list[np.ndarray]:
    """Zone codes for each storage year (zones may be static or annual)."""
    zones = same_grid(storage_ds, zones, arg)
    years = years_of(storage_ds)
    if "year" not in zones.dims:
        return [np.asarray(zones.transpose("y", "x").values)] * max(len(years), 1)
    if not years:
        raise InputDataError(f"{arg}: annual zones need storage data with a 'year' dimension.")
    missing = sorted(set(years) - set(years_of(zones)))
    if missing:
        raise InputDataError(
            f"{arg}: has no layer for years {missing} of the storage data "
            f"(available: {years_of(zones)}); give one per mapped year or a static (y, x) map."
        )
    return [np.asarray(zones.sel(year=y).transpose("y", "x").values) for y in years]


def _zonal_table(
    storage_ds: xr.Dataset,
    zones: xr.DataArray,
    names: Mapping[int, str],
    *,
    arg: str,
    code_col: str,
    name_col: str,
    pools: Sequence[str] | None,
    func: str,
) -> pd.DataFrame:
    """One row per (year, pool, zone code) of ``names``; ``func`` names the caller in the
    table's ``history``."""
    if pools is None:  # the pools the study maps, and their total
        pools = [p for p in POOLS if var(p, "storage") in storage_ds] or ["total"]
    require_vars(storage_ds, [var(p, "storage") for p in pools] + ["pixel_area"],
                 name="storage_ds")
    codes = [int(c) for c in names]
    n = len(codes)
    area = np.asarray(storage_ds["pixel_area"].transpose("y", "x").values, "float64").ravel()
    frames = []
    for (year, sel), zone_codes in zip(
        year_selections(storage_ds), _zone_slices(zones, storage_ds, arg), strict=True
    ):
        index = codes_to_index(zone_codes, codes, arg).ravel()
        inside = index >= 0
        zone_area = np.bincount(index[inside], weights=area[inside], minlength=n)
        for pool in pools:
            values = storage_ds[var(pool, "storage")].isel(sel).transpose("y", "x").values
            values = np.asarray(values, "float64").ravel()
            ok = inside & np.isfinite(values)
            stored = np.bincount(index[ok], weights=values[ok], minlength=n)
            valid_area = np.bincount(index[ok], weights=area[ok], minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_density = np.where(valid_area > 0, stored / valid_area, np.nan)
            frames.append(pd.DataFrame({
                "year": year, "pool": pool, code_col: codes, name_col: [names[c] for c in codes],
                "area_ha": zone_area, "storage_Tg": stored / T_PER_TG,
                "mean_density_t_ha": mean_density,
            }))
    df = pd.concat(frames, ignore_index=True)
    df["year"] = df["year"].astype("Int64")
    df.attrs = {"units": "ha (area_ha); Tg C (storage_Tg); t C ha-1 (mean_density_t_ha)",
                "history": history(func, *(storage_ds[var(p, "storage")] for p in pools),
                                   zones)}
    return df


def totals_by_class(
    storage_ds: xr.Dataset,
    landuse: xr.DataArray,
    *,
    classes: Mapping[int, str] = LANDUSE_CLASSES,
    pools: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Carbon storage and area per land-use class, year and pool.

    Parameters
    ----------
    storage_ds : xarray.Dataset
        Output of :func:`~terracarbon.carbon.stocks.storage` (t C per pixel, ``pixel_area``
        in ha).
    landuse : xarray.DataArray
        Land-use codes (``1``, 0 = nodata) on ``(year, y, x)`` (one layer per storage year) or
        static ``(y, x)``.
    classes : mapping of int to str
        Class code -> name; defaults to :data:`~terracarbon.conventions.LANDUSE_CLASSES`.
    pools : sequence of str
        Pools to tabulate.

    Returns
    -------
    pandas.DataFrame
        ``year``, ``pool``, ``landuse_code``, ``landuse_class``, ``area_ha`` (class area, ha),
        ``storage_Tg`` (Tg C), ``mean_density_t_ha`` (t C ha-1 over pixels with data).

    Raises
    ------
    InputDataError
        Codes not in ``classes``, missing years or variables.
    GridMismatchError
        If ``landuse`` is on another grid.
    """
    return _zonal_table(storage_ds, landuse, classes, arg="landuse", code_col="landuse_code",
                        name_col="landuse_class", pools=pools, func="totals_by_class")


def totals_by_region(
    storage_ds: xr.Dataset,
    regions: xr.DataArray,
    *,
    names: Mapping[int, str] | None = None,
    pools: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Carbon storage and area per administrative / reporting unit, year and pool.

    Parameters
    ----------
    storage_ds : xarray.Dataset
        As in :func:`totals_by_class`.
    regions : xarray.DataArray
        Integer unit ids on ``(y, x)``; 0 = outside every unit.
    names : mapping of int to str, optional
        Unit id -> name; by default every id present, named ``"region <id>"``.
    pools : sequence of str
        As in :func:`totals_by_class`.

    Returns
    -------
    pandas.DataFrame
        ``year``, ``pool``, ``region_id``, ``region``, ``area_ha`` (ha), ``storage_Tg``
        (Tg C), ``mean_density_t_ha`` (t C ha-1).

    Raises
    ------
    InputDataError
        Ids not in ``names``, non-integer ids, missing variables.
    GridMismatchError
        If ``regions`` is on another grid.
    """
    if names is None:
        ids = np.unique(np.asarray(regions.values))
        ids = ids[np.isfinite(ids) & (ids != 0)] if ids.dtype.kind == "f" else ids[ids != 0]
        names = {int(i): f"region {int(i)}" for i in ids}
    return _zonal_table(storage_ds, regions, names, arg="regions", code_col="region_id",
                        name_col="region", pools=pools, func="totals_by_region")


def outside_aoa_share(
    mask_aoa: xr.DataArray,
    area_ha: xr.DataArray | float,
    *,
    region_mask: xr.DataArray | None = None,
) -> pd.DataFrame:
    """Area and share of the study region outside the model's area of applicability (AOA).

    Parameters
    ----------
    mask_aoa : xarray.DataArray
        True (or 1) where a pixel is inside the AOA, False (0) outside; NaN = not assessed
        (outside the region). Dims ``(y, x)`` or ``(year, y, x)``.
    area_ha : xarray.DataArray or float
        Pixel area (ha).
    region_mask : xarray.DataArray, optional
        True inside the study boundary (``(y, x)``); by default every assessed pixel. Pass it
        with ``models.aoa.aoa_map(...)["aoa"]``, which is 0 outside the region too.

    Returns
    -------
    pandas.DataFrame
        One row per year (``year`` NA for a static mask): ``area_ha`` (assessed area, ha),
        ``outside_area_ha`` (ha) and ``outside_percent`` (%).

    Raises
    ------
    InputDataError
        Values other than True/False/1/0/NaN.
    GridMismatchError
        Inputs on different grids.
    """
    values_all = np.asarray(mask_aoa.values)
    if values_all.dtype.kind == "f":
        finite = values_all[np.isfinite(values_all)]
        if not np.all(np.isin(finite, (0.0, 1.0))):
            raise InputDataError("mask_aoa: expected True/False (or 1/0, NaN = not assessed).")
    elif values_all.dtype.kind not in "biu" or not np.all(np.isin(values_all, (0, 1))):
        raise InputDataError("mask_aoa: expected True/False (or 1/0, NaN = not assessed).")
    area = area_values(area_ha, mask_aoa).reshape(mask_aoa.sizes["y"], mask_aoa.sizes["x"])
    region = np.ones_like(area, dtype=bool)
    if region_mask is not None:
        region = np.asarray(same_grid(mask_aoa, region_mask, "region_mask")
                            .transpose("y", "x").values).astype(bool)
    rows = []
    years = years_of(mask_aoa) or [pd.NA]
    for year in years:
        layer = mask_aoa.sel(year=year) if year is not pd.NA else mask_aoa
        values = np.asarray(layer.transpose("y", "x").values, dtype="float64")
        assessed = region & np.isfinite(values)
        assessed_area = float(np.sum(area, where=assessed))
        outside = float(np.sum(area, where=assessed & (values == 0)))
        share = 100.0 * outside / assessed_area if assessed_area else np.nan
        rows.append({"year": year, "area_ha": assessed_area, "outside_area_ha": outside,
                     "outside_percent": share})
    df = pd.DataFrame(rows)
    df["year"] = df["year"].astype("Int64")
    df.attrs = {"units": "ha (area_ha, outside_area_ha); % (outside_percent)",
                "history": history("outside_aoa_share", mask_aoa, area_ha, region_mask)}
    return df
