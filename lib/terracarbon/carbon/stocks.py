"""Density to storage: the total pool (with its bounds) and carbon per pixel (t C).

Inputs in other units of the same dimension are converted first (``Mg C ha-1`` and
``kg C m-2`` densities to ``t C ha-1``, areas in ``m2`` to ``ha``); units of another dimension
raise :class:`~terracarbon.errors.InputDataError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from terracarbon.carbon._common import (
    BOUNDS,
    DERIVED_ATTR,
    INTERVAL_METHODS,
    POOL_LONG_NAMES,
    POOLS,
    IntervalMethod,
    check_pool_set,
    crs_of,
    dataset_in_units,
    history,
    in_units,
    keep_crs,
    log,
    pool_sum,
    pools_in,
    same_grid,
    var,
    with_attrs,
)
from terracarbon.checks import check_choice, require_vars
from terracarbon.conventions import AREA_HA_UNITS, DENSITY_UNITS, STORAGE_UNITS
from terracarbon.errors import InputDataError


def _combine_bounds(
    parts: Sequence[tuple[Any, Any, Any]], method: str
) -> tuple[Any, Any]:
    """Lower/upper of a sum of quantities given (value, lower, upper) for each part."""
    if method == "correlated":
        return sum(p[1] for p in parts), sum(p[2] for p in parts)
    value = sum(p[0] for p in parts)
    lower_hw = sum((p[0] - p[1]) ** 2 for p in parts) ** 0.5
    upper_hw = sum((p[2] - p[0]) ** 2 for p in parts) ** 0.5
    return value - lower_hw, value + upper_hw


def add_total(
    ds: xr.Dataset, *, interval_method: IntervalMethod = "correlated"
) -> xr.Dataset:
    """Add ``total_carbon_density``, the sum of the mapped pools, (and its bounds) to ``ds``.

    Parameters
    ----------
    ds : xarray.Dataset
        One ``<pool>_carbon_density`` per mapped pool (any of ``above``, ``below``, ``dead``,
        ``veg``, ``soil``; t C ha-1, or other units of carbon mass per area), optionally with
        ``_lower``/``_upper`` bounds.
    interval_method : {"correlated", "independent"}
        How the pools' bounds combine per pixel (module notes of :mod:`terracarbon.carbon`).

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``total_carbon_density`` (t C ha-1; attribute ``pools``, e.g.
        ``"veg soil"``) and, when every pool has bounds, ``total_carbon_density_lower``/
        ``_upper`` (t C ha-1, attribute ``derived_from="veg+soil"``). A total already
        present is kept, bounds included. Every ``*_carbon_density*`` variable is in t C
        ha-1.

    Raises
    ------
    InputDataError
        If no pool density is present or a density has units that are not carbon mass per
        area.
    ParameterError
        If ``interval_method`` is unknown or pools overlap (``veg`` with ``above``/``below``).

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"veg_carbon_density": ("x", [40.0], {"units": "t C ha-1"}),
    ...                  "soil_carbon_density": ("x", [6.0], {"units": "kg C m-2"})})
    >>> add_total(ds)["total_carbon_density"].values.tolist()  # 40 + 6 x 10 t C ha-1
    [100.0]
    >>> above = xr.Dataset({"above_carbon_density": ("x", [30.0], {"units": "t C ha-1"})})
    >>> add_total(above)["total_carbon_density"].attrs["pools"]
    'above'
    """
    check_choice(interval_method, INTERVAL_METHODS, name="interval_method")
    pools = check_pool_set(pools_in(ds), where="ds")
    if not pools:
        raise InputDataError(
            f"ds: no carbon pool density; expected any of "
            f"{[var(p, 'density') for p in POOLS if p != 'total']}, got {list(ds.data_vars)}.")
    names = [var(p, "density") for p in pools]
    every_density = [var(p, "density", b) for p in POOLS for b in (None, *BOUNDS)]
    ds = dataset_in_units(ds, every_density, DENSITY_UNITS, "ds", required=names)
    out = ds.copy()
    if var("total", "density") in ds:
        log.info("add_total: ds already has total_carbon_density; keeping it")
        return out
    total = pool_sum({p: ds[var(p, "density")] for p in pools})
    out[var("total", "density")] = with_attrs(
        total, units=DENSITY_UNITS, long_name=f"total carbon density ({' + '.join(pools)})",
        history=history("add_total", *(ds[n] for n in names), interval_method=interval_method),
        pools=" ".join(pools),
    )
    bound_names = [var(p, "density", b) for p in pools for b in BOUNDS]
    present = [n in ds for n in bound_names]
    if all(present):
        parts = [tuple(ds[var(p, "density", b)] for b in (None, *BOUNDS)) for p in pools]
        lower, upper = _combine_bounds(parts, interval_method)
        for bound, value in zip(BOUNDS, (lower, upper), strict=True):
            out[var("total", "density", bound)] = with_attrs(
                value,
                units=DENSITY_UNITS,
                long_name=f"total carbon density, {bound} bound",
                history=history("add_total", *(ds[var(p, "density", bound)] for p in pools),
                                interval_method=interval_method),
                **{DERIVED_ATTR: "+".join(pools), "interval_method": interval_method},
                pools=" ".join(pools),
            )
    elif any(present):
        log.warning("add_total: only some of %s present; total has no bounds", bound_names)
    return out


def storage(
    density_ds: xr.Dataset,
    area_ha: xr.DataArray | float,
    *,
    interval_method: IntervalMethod = "correlated",
) -> xr.Dataset:
    """Carbon storage per pixel (t C) from carbon density (t C ha-1) and pixel area (ha).

    Parameters
    ----------
    density_ds : xarray.Dataset
        ``veg_carbon_density`` and ``soil_carbon_density`` (t C ha-1; other units of carbon
        mass per area such as ``Mg C ha-1`` or ``kg C m-2`` are converted) on
        ``(year, y, x)`` or ``(y, x)``; optionally ``total_carbon_density`` and
        ``<var>_lower``/``_upper`` bounds.
    area_ha : xarray.DataArray or float
        Pixel area (ha, or other area units) on the same ``(y, x)`` grid
        (:func:`~terracarbon.carbon.area.pixel_area_ha`), or one number (ha) for every pixel.
    interval_method : {"correlated", "independent"}
        Rule used to build total bounds from veg and soil bounds when the total has none.

    Returns
    -------
    xarray.Dataset
        ``veg_carbon_storage``, ``soil_carbon_storage``, ``total_carbon_storage`` (t C, float64)
        and their ``_lower``/``_upper`` bounds where available (t C), plus ``pixel_area`` (ha),
        which :func:`~terracarbon.carbon.regional_totals.totals` and the zonal tables reuse.

    Raises
    ------
    InputDataError
        Missing pools, units of the wrong dimension or negative / non-finite areas.
    GridMismatchError
        If ``area_ha`` is on a different grid.

    Examples
    --------
    A 1 x 2 grid of 0.25 ha pixels holding 40 and 60 t C ha-1 of vegetation and 100 of soil:
    (40 + 100) x 0.25 = 35 t C and (60 + 100) x 0.25 = 40 t C.

    >>> import xarray as xr
    >>> t_ha = {"units": "t C ha-1"}
    >>> ds = xr.Dataset({"veg_carbon_density": (("y", "x"), [[40.0, 60.0]], t_ha),
    ...                  "soil_carbon_density": (("y", "x"), [[100.0, 100.0]], t_ha)},
    ...                 coords={"y": [25.0], "x": [25.0, 75.0]})
    >>> storage(ds, 0.25)["total_carbon_storage"].values.tolist()
    [[35.0, 40.0]]
    """
    dens = add_total(density_ds, interval_method=interval_method)
    crs = crs_of(dens)
    if isinstance(area_ha, xr.DataArray):
        area = in_units(same_grid(dens, area_ha, "area_ha"), AREA_HA_UNITS, "area_ha")
    else:
        area = xr.DataArray(np.full((dens.sizes["y"], dens.sizes["x"]), float(area_ha)),
                            dims=("y", "x"), coords={"y": dens["y"], "x": dens["x"]})
    area_values = np.asarray(area.values, dtype="float64")
    if not np.all(np.isfinite(area_values)) or np.any(area_values < 0):
        raise InputDataError("area_ha: pixel areas must be finite and >= 0 (ha).")
    area = area.astype("float64")
    out = xr.Dataset()
    for pool in POOLS:
        for bound in (None, *BOUNDS):
            src = var(pool, "density", bound)
            if src not in dens:
                continue
            long_name = f"{POOL_LONG_NAMES[pool]} carbon storage"
            long_name += f", {bound} bound" if bound else ""
            extra = {k: dens[src].attrs[k] for k in (DERIVED_ATTR, "interval_method")
                     if k in dens[src].attrs}
            out[var(pool, "storage", bound)] = with_attrs(
                dens[src] * area,  # area is float64, so float32 densities are promoted
                units=STORAGE_UNITS, long_name=long_name,
                history=history("storage", dens[src], area_ha, interval_method=interval_method),
                **extra,
            )
    out["pixel_area"] = with_attrs(
        area, units=AREA_HA_UNITS, long_name="pixel area",
        history=history("storage", area_ha, interval_method=interval_method))
    return keep_crs(out, crs)
