"""Carbon accounting: pixel areas, storage, totals, change, transitions and lookup carbon.

Inputs follow ``docs/architecture.md``: density maps are ``xarray`` objects with dims
``(year, y, x)`` or ``(y, x)`` (pixel centres in CRS units, CRS attached with rioxarray) and
variables ``veg_carbon_density`` / ``soil_carbon_density`` in ``t C ha-1``, optionally with
``<var>_lower`` / ``<var>_upper`` prediction bounds; ``landuse`` is ``int16`` with codes 1..8
(0 = nodata).

Naming used throughout: a *pool* is ``veg``, ``soil`` or ``total``; per-pixel density is
``<pool>_carbon_density`` (t C ha-1), per-pixel storage is ``<pool>_carbon_storage`` (t C),
and tables carry their units in column names (``storage_Tg``, ``area_ha``).

Uncertainty propagation (``interval_method``)
---------------------------------------------
Per-pixel bounds are quantiles of each pixel's predictive distribution. Summing them over
pixels (or over pools) needs an assumption about how errors co-vary:

``"correlated"`` (default, conservative)
    errors perfectly correlated (comonotonic): the lower bound of a sum is the sum of the lower
    bounds. This is exact for comonotonic errors and never narrower than the truth for
    positively correlated ones, which is the usual case for model-based maps (a biased model is
    biased everywhere).
``"independent"``
    errors independent between pixels (and between pools): the half-widths
    ``value - lower`` and ``upper - value`` are added in quadrature, each side separately.
    Assumes roughly symmetric, near-Gaussian errors; it is much narrower for many pixels and
    understates uncertainty when errors are spatially autocorrelated.

The total pool is never double counted: when the density data carry their own
``total_carbon_density_lower/upper`` those are used; otherwise the total's bounds are built
from the veg and soil bounds with the *same* rule (see :func:`add_total` and :func:`totals`).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.data import io
from terracarbon.errors import GridMismatchError, InputDataError, ModelError, ParameterError
from terracarbon.conventions import (
    AREA_HA_UNITS,
    DENSITY_UNITS,
    M2_PER_HA,
    STORAGE_UNITS,
    T_PER_PG,
    T_PER_TG,
)

from terracarbon.conventions import LANDUSE_CLASSES  # noqa: E402  re-exported

log = logging.getLogger(__name__)


POOLS: tuple[str, ...] = ("veg", "soil", "total")
"""Carbon pools handled by the accounting functions."""
POOL_LONG_NAMES = {
    "veg": "vegetation", "soil": "soil organic", "total": "total (vegetation + soil)"
}
BOUNDS: tuple[str, ...] = ("lower", "upper")
VEG_COMPONENTS: tuple[str, ...] = ("above", "below", "dead")
"""InVEST pools summed into ``veg_carbon_density`` by :func:`lookup_carbon`."""

PRODUCT_PREFIXES: dict[str, str] = {
    "veg_carbon_density": "vcd",
    "soil_carbon_density": "scd",
    "total_carbon_density": "tcd",
    "veg_carbon_storage": "vcs",
    "soil_carbon_storage": "scs",
    "total_carbon_storage": "tcs",
}
"""File-name prefixes of the Guangdong carbon dataset, one per exported layer."""

IntervalMethod = Literal["correlated", "independent"]
Pool = Literal["veg", "soil", "total"]
_INTERVAL_METHODS = ("correlated", "independent")
_DERIVED_ATTR = "derived_from"


# --------------------------------------------------------------------------- names, checks
def _var(pool: str, kind: str, bound: str | None = None) -> str:
    name = f"{pool}_carbon_{kind}"
    return f"{name}_{bound}" if bound else name


def _check_choice(value: Any, choices: Sequence[str], arg: str) -> None:
    if value not in choices:
        raise ParameterError(f"{arg}={value!r} is not supported; expected one of {list(choices)}.")


def _require_vars(ds: xr.Dataset, names: Sequence[str], arg: str) -> None:
    if not isinstance(ds, xr.Dataset):
        raise InputDataError(f"{arg}: expected an xarray.Dataset, got {type(ds).__name__}.")
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InputDataError(
            f"{arg}: missing variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}. "
            f"Provide {missing} (names as in docs/architecture.md)."
        )


def _check_units(da: xr.DataArray, expected: str, arg: str) -> None:
    units = da.attrs.get("units")
    if units is None:
        log.warning("%s: '%s' has no 'units' attribute; assuming %r", arg, da.name, expected)
    elif units != expected:
        raise InputDataError(
            f"{arg}: '{da.name}' has units {units!r}, expected {expected!r}; convert it first."
        )


def _years(obj: xr.Dataset | xr.DataArray) -> list[int]:
    return [int(y) for y in obj["year"].values] if "year" in obj.dims else []


def _check_year(obj: xr.Dataset | xr.DataArray, year: Any, arg: str) -> int:
    if "year" not in obj.dims:
        raise ParameterError(
            f"{arg}={year!r}: the data have no 'year' dimension (dims {obj.dims})."
        )
    available = _years(obj)
    if year not in available:
        raise ParameterError(
            f"{arg}={year!r} is not in the data; available years: {available}. Pick one of them."
        )
    return int(year)


def _check_period(obj: xr.Dataset | xr.DataArray, start: Any, end: Any) -> tuple[int, int]:
    start = _check_year(obj, start, "start")
    end = _check_year(obj, end, "end")
    if start >= end:
        raise ParameterError(f"start={start} must be earlier than end={end}.")
    return start, end


def _same_grid(ref: xr.DataArray | xr.Dataset, other: Any, arg: str) -> Any:
    """Return ``other`` with ``ref``'s x/y coordinates, after checking the grids agree."""
    for dim in ("y", "x"):
        if dim not in other.dims or dim not in ref.dims:
            raise GridMismatchError(f"{arg}: expected dims including ('y', 'x'), got {other.dims}.")
        a, b = ref[dim].values, other[dim].values
        step = abs(float(a[1] - a[0])) if a.size > 1 else 1.0
        if a.size != b.size or not np.allclose(a, b, rtol=0.0, atol=1e-6 * step):
            raise GridMismatchError(
                f"{arg}: its {dim} coordinates ({b.size} values, {b[:1]}..{b[-1:]}) differ from "
                f"the density grid ({a.size} values, {a[:1]}..{a[-1:]}); put both on one grid "
                "(prep alignment) first."
            )
    return other.assign_coords(y=ref["y"], x=ref["x"])


def _with_attrs(da: xr.DataArray, *, units: str, long_name: str, history: str, **extra: Any):
    out = da.copy(deep=False)
    out.attrs = {"units": units, "long_name": long_name, "history": history, **extra}
    return out


def _crs_of(obj: xr.Dataset | xr.DataArray):
    import rioxarray  # noqa: F401  registers the .rio accessor

    return obj.rio.crs


def _keep_crs(out: Any, crs: Any) -> Any:
    # Only ever called on objects built inside this module; in place avoids rioxarray's deep
    # copy of every array (seconds on a province-sized cube).
    return out.rio.write_crs(crs, inplace=True) if crs is not None else out


# --------------------------------------------------------------------------- pixel areas
def _axis_step(obj: xr.Dataset | xr.DataArray, dim: str) -> float:
    coord = np.asarray(obj[dim].values, dtype="float64")
    if coord.size < 2:
        try:
            res_x, res_y = obj.rio.resolution()
        except Exception as exc:  # rioxarray raises its own error types here
            raise InputDataError(
                f"da: cannot tell the pixel size along {dim!r} from one coordinate and no "
                "transform; give at least two pixels or a GeoTransform."
            ) from exc
        return abs(float(res_x if dim == "x" else res_y))
    steps = np.diff(coord)
    step = float(np.median(steps))
    if step == 0 or not np.allclose(steps, step, rtol=1e-6, atol=0.0):
        raise InputDataError(
            f"da: {dim!r} coordinates are not evenly spaced (steps {steps.min()}..{steps.max()}); "
            "pixel areas need a regular grid; regrid first."
        )
    return abs(step)


def _ellipsoid_band_area_m2(
    lat_south_deg: np.ndarray, lat_north_deg: np.ndarray, dlon_deg: float, a: float, es: float
) -> np.ndarray:
    # Exact area between two parallels on an ellipsoid of revolution (Snyder 1987, eq. 3-12,
    # the authalic q-function): A = a^2 * dlon * (q(phi2) - q(phi1)) / 2.
    phi1, phi2 = np.radians(lat_south_deg), np.radians(lat_north_deg)
    dlon = math.radians(dlon_deg)
    if es == 0.0:
        return a * a * dlon * (np.sin(phi2) - np.sin(phi1))
    e = math.sqrt(es)

    def q(phi: np.ndarray) -> np.ndarray:
        s = np.sin(phi)
        log_term = np.log((1.0 - e * s) / (1.0 + e * s)) / (2.0 * e)
        return (1.0 - es) * (s / (1.0 - es * s * s) - log_term)

    return a * a * dlon * (q(phi2) - q(phi1)) / 2.0


def pixel_area_ha(da: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Area of every pixel of a grid, in hectares.

    Parameters
    ----------
    da : xarray.DataArray or xarray.Dataset
        Anything on the grid, with ``x``/``y`` pixel-centre coordinates (CRS units) and a CRS
        attached by rioxarray.

    Returns
    -------
    xarray.DataArray
        ``pixel_area`` on ``(y, x)``, float64, units ``ha``.

    Raises
    ------
    ParameterError
        If no CRS is attached.
    InputDataError
        If the coordinates are not evenly spaced.

    Warns
    -----
    UserWarning
        If the grid is geographic (degrees): areas then vary with latitude, or if the CRS is a
        Mercator projection (areas inflated by ``1/cos^2(lat)``).

    Notes
    -----
    Projected CRS: ``|dx * dy| * k^2 / 1e4`` for every pixel, ``k`` the metres per CRS unit.
    Geographic CRS: exact cell areas on the CRS's ellipsoid from the authalic-latitude formula
    ``A = a^2 * dlon * (q(phi_n) - q(phi_s)) / 2`` (Snyder 1987, *Map Projections: a Working
    Manual*, eqs. 3-12), evaluated once per row since the area depends only on latitude.

    Examples
    --------
    >>> area = pixel_area_ha(cube)  # doctest: +SKIP
    """
    import pyproj

    crs = _crs_of(da)
    if crs is None:
        raise ParameterError(
            "da: no CRS attached; pixel areas need one. Attach it with "
            "da.rio.write_crs('EPSG:32649') (the study's target CRS)."
        )
    crs = pyproj.CRS.from_user_input(crs.to_wkt())
    dx, dy = _axis_step(da, "x"), _axis_step(da, "y")
    y = np.asarray(da["y"].values, dtype="float64")
    ny, nx = da.sizes["y"], da.sizes["x"]
    if crs.is_geographic:
        warnings.warn(
            f"pixel_area_ha: the grid is geographic ({crs.to_string()}, degrees); computing true "
            "cell areas on the ellipsoid, which shrink towards the poles. Reproject to the "
            "study's projected CRS for equal pixel areas.",
            UserWarning,
            stacklevel=2,
        )
        geod = crs.get_geod()
        south = np.clip(y - dy / 2.0, -90.0, 90.0)
        north = np.clip(y + dy / 2.0, -90.0, 90.0)
        row_m2 = _ellipsoid_band_area_m2(south, north, min(dx, 360.0), geod.a, geod.es)
        values = np.broadcast_to((row_m2 / M2_PER_HA)[:, None], (ny, nx)).copy()
    else:
        method = crs.coordinate_operation.method_name if crs.coordinate_operation else ""
        if "mercator" in method.lower() and "transverse" not in method.lower():
            warnings.warn(
                f"pixel_area_ha: {crs.to_string()} is a {method} projection; its pixel areas are "
                "inflated by 1/cos^2(latitude). Use an equal-area or UTM CRS.",
                UserWarning,
                stacklevel=2,
            )
        metres = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        values = np.full((ny, nx), dx * dy * metres * metres / M2_PER_HA)
    area = xr.DataArray(
        values, dims=("y", "x"), coords={"y": da["y"], "x": da["x"]}, name="pixel_area"
    )
    area.attrs = {
        "units": AREA_HA_UNITS,
        "long_name": "pixel area",
        "history": io.history_line("carbon.pixel_area_ha", crs=crs.to_string()),
    }
    return area.rio.write_crs(crs.to_wkt(), inplace=True)


# --------------------------------------------------------------------------- density -> storage
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
    """Add ``total_carbon_density`` = veg + soil (and its bounds) to a density dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        ``veg_carbon_density`` and ``soil_carbon_density`` (t C ha-1), optionally with
        ``_lower``/``_upper`` bounds (t C ha-1).
    interval_method : {"correlated", "independent"}
        How veg and soil bounds combine per pixel (module notes).

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``total_carbon_density`` (t C ha-1) and, when both pools have
        bounds, ``total_carbon_density_lower``/``_upper`` (t C ha-1, attribute
        ``derived_from="veg+soil"``). A total already present is kept, bounds included.

    Raises
    ------
    InputDataError
        If veg or soil density is missing or has units other than ``t C ha-1``.
    ParameterError
        If ``interval_method`` is unknown.
    """
    _check_choice(interval_method, _INTERVAL_METHODS, "interval_method")
    names = [_var("veg", "density"), _var("soil", "density")]
    _require_vars(ds, names, "ds")
    for name in names:
        _check_units(ds[name], DENSITY_UNITS, "ds")
    out = ds.copy()
    if _var("total", "density") in ds:
        log.info("add_total: ds already has total_carbon_density; keeping it")
        return out
    history = io.history_line("carbon.add_total", interval_method=interval_method)
    total = ds[names[0]] + ds[names[1]]
    out[_var("total", "density")] = _with_attrs(
        total, units=DENSITY_UNITS, long_name="total carbon density", history=history
    )
    bound_names = [_var(p, "density", b) for p in ("veg", "soil") for b in BOUNDS]
    present = [n in ds for n in bound_names]
    if all(present):
        parts = [tuple(ds[_var(p, "density", b)] for b in (None, *BOUNDS)) for p in ("veg", "soil")]
        lower, upper = _combine_bounds(parts, interval_method)
        for bound, value in zip(BOUNDS, (lower, upper), strict=True):
            out[_var("total", "density", bound)] = _with_attrs(
                value,
                units=DENSITY_UNITS,
                long_name=f"total carbon density, {bound} bound",
                history=history,
                **{_DERIVED_ATTR: "veg+soil", "interval_method": interval_method},
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
        ``veg_carbon_density`` and ``soil_carbon_density`` (t C ha-1) on ``(year, y, x)`` or
        ``(y, x)``; optionally ``total_carbon_density`` and ``<var>_lower``/``_upper`` bounds.
    area_ha : xarray.DataArray or float
        Pixel area (ha) on the same ``(y, x)`` grid (:func:`pixel_area_ha`), or one number for
        every pixel.
    interval_method : {"correlated", "independent"}
        Rule used to build total bounds from veg and soil bounds when the total has none.

    Returns
    -------
    xarray.Dataset
        ``veg_carbon_storage``, ``soil_carbon_storage``, ``total_carbon_storage`` (t C, float64)
        and their ``_lower``/``_upper`` bounds where available (t C), plus ``pixel_area`` (ha),
        which :func:`totals` and the zonal tables reuse.

    Raises
    ------
    InputDataError
        Missing pools, wrong units or negative / non-finite areas.
    GridMismatchError
        If ``area_ha`` is on a different grid.
    """
    dens = add_total(density_ds, interval_method=interval_method)
    crs = _crs_of(dens)
    if isinstance(area_ha, xr.DataArray):
        area = _same_grid(dens, area_ha, "area_ha")
        _check_units(area, AREA_HA_UNITS, "area_ha")
    else:
        area = xr.DataArray(np.full((dens.sizes["y"], dens.sizes["x"]), float(area_ha)),
                            dims=("y", "x"), coords={"y": dens["y"], "x": dens["x"]})
    area_values = np.asarray(area.values, dtype="float64")
    if not np.all(np.isfinite(area_values)) or np.any(area_values < 0):
        raise InputDataError("area_ha: pixel areas must be finite and >= 0 (ha).")
    area = area.astype("float64")
    history = io.history_line("carbon.storage", interval_method=interval_method)
    out = xr.Dataset()
    for pool in POOLS:
        for bound in (None, *BOUNDS):
            src = _var(pool, "density", bound)
            if src not in dens:
                continue
            long_name = f"{POOL_LONG_NAMES[pool]} carbon storage"
            long_name += f", {bound} bound" if bound else ""
            extra = {k: dens[src].attrs[k] for k in (_DERIVED_ATTR, "interval_method")
                     if k in dens[src].attrs}
            out[_var(pool, "storage", bound)] = _with_attrs(
                dens[src] * area,  # area is float64, so float32 densities are promoted
                units=STORAGE_UNITS, long_name=long_name, history=history, **extra,
            )
    out["pixel_area"] = _with_attrs(area, units=AREA_HA_UNITS, long_name="pixel area",
                                    history=history)
    return _keep_crs(out, crs)


# --------------------------------------------------------------------------- totals
def _sum(values: np.ndarray) -> float:
    finite = np.isfinite(values)
    return float(np.sum(values, where=finite)) if finite.any() else float("nan")


def _pool_interval(
    ds: xr.Dataset, pool: str, sel: dict, method: str
) -> tuple[float, float]:
    """Summed lower/upper storage (t C) of ``pool`` under ``method``; NaN when no bounds."""
    def arr(name: str) -> np.ndarray:
        return np.asarray(ds[name].isel(sel).values, dtype="float64")

    own = [_var(pool, "storage", b) for b in BOUNDS]
    derived = pool == "total" and all(n in ds for n in own) and (
        _DERIVED_ATTR in ds[own[0]].attrs
    )
    if derived or (pool == "total" and not all(n in ds for n in own)):
        parts = ["veg", "soil"]
    else:
        parts = [pool]
    names = [[_var(p, "storage", b) for b in (None, *BOUNDS)] for p in parts]
    if not all(n in ds for group in names for n in group):
        return float("nan"), float("nan")
    if method == "correlated":
        return (sum(_sum(arr(g[1])) for g in names), sum(_sum(arr(g[2])) for g in names))
    value = sum(_sum(arr(g[0])) for g in names)
    lower_var = sum(_sum((arr(g[0]) - arr(g[1])) ** 2) for g in names)
    upper_var = sum(_sum((arr(g[2]) - arr(g[0])) ** 2) for g in names)
    return value - math.sqrt(lower_var), value + math.sqrt(upper_var)


def _year_selections(ds: xr.Dataset) -> list[tuple[Any, dict]]:
    if "year" in ds.dims:
        return [(int(y), {"year": i}) for i, y in enumerate(ds["year"].values)]
    return [(pd.NA, {})]


def totals(
    storage_ds: xr.Dataset,
    *,
    truth: xr.Dataset | None = None,
    interval_method: IntervalMethod = "correlated",
) -> pd.DataFrame:
    """Total carbon storage per year and pool, in teragrams of carbon, with an interval.

    Parameters
    ----------
    storage_ds : xarray.Dataset
        Output of :func:`storage` (t C per pixel, with ``pixel_area`` in ha).
    truth : xarray.Dataset, optional
        True carbon density (``veg_carbon_density``, ``soil_carbon_density``, t C ha-1) on the
        same grid and years; its totals use the same pixel areas (``truth_Tg`` column).
    interval_method : {"correlated", "independent"}
        How per-pixel bounds add up over pixels (module notes): ``correlated`` sums bounds,
        ``independent`` adds half-widths in quadrature.

    Returns
    -------
    pandas.DataFrame
        One row per year and pool (``veg``, ``soil``, ``total``): ``year``, ``pool``,
        ``storage_Tg``, ``lower_Tg``, ``upper_Tg`` (Tg C; NaN without bounds), ``area_ha``
        (area with a finite storage value, ha) and ``truth_Tg`` when ``truth`` is given.
        NaN pixels are skipped. Use :func:`to_pg` for petagrams.

    Raises
    ------
    InputDataError
        If storage variables or ``pixel_area`` are missing or ``truth`` lacks years/pools.
    GridMismatchError
        If ``truth`` is on another grid.
    ParameterError
        If ``interval_method`` is unknown.

    Notes
    -----
    Total-pool bounds come from ``total_carbon_storage_lower/upper`` when those were given
    with the input; when they were derived from veg + soil (or are absent) they are rebuilt
    here from the veg and soil bounds under ``interval_method``, so veg, soil and total follow
    one rule and nothing is counted twice.
    """
    _check_choice(interval_method, _INTERVAL_METHODS, "interval_method")
    _require_vars(storage_ds, [_var(p, "storage") for p in POOLS] + ["pixel_area"], "storage_ds")
    for pool in POOLS:
        _check_units(storage_ds[_var(pool, "storage")], STORAGE_UNITS, "storage_ds")
    truth_storage = _truth_storage(storage_ds, truth) if truth is not None else None
    area = np.asarray(storage_ds["pixel_area"].values, dtype="float64")
    rows = []
    for year, sel in _year_selections(storage_ds):
        for pool in POOLS:
            values = np.asarray(storage_ds[_var(pool, "storage")].isel(sel).values, "float64")
            lower, upper = _pool_interval(storage_ds, pool, sel, interval_method)
            row = {
                "year": year,
                "pool": pool,
                "storage_Tg": _sum(values) / T_PER_TG,
                "lower_Tg": lower / T_PER_TG,
                "upper_Tg": upper / T_PER_TG,
                "area_ha": float(np.sum(np.broadcast_to(area, values.shape),
                                        where=np.isfinite(values))),
            }
            if truth_storage is not None:
                tsel = {"year": truth_storage.indexes["year"].get_loc(year)} if sel else {}
                truth_values = truth_storage[_var(pool, "storage")].isel(tsel).values
                row["truth_Tg"] = _sum(np.asarray(truth_values, "float64")) / T_PER_TG
            rows.append(row)
    df = pd.DataFrame(rows)
    df["year"] = df["year"].astype("Int64")
    df.attrs = {
        "units": "Tg C (storage_Tg, lower_Tg, upper_Tg, truth_Tg); ha (area_ha)",
        "interval_method": interval_method,
        "history": io.history_line("carbon.totals", interval_method=interval_method),
    }
    return df


def _truth_storage(storage_ds: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    _require_vars(truth, [_var("veg", "density"), _var("soil", "density")], "truth")
    truth = _same_grid(storage_ds, truth, "truth")
    if "year" in storage_ds.dims:
        missing = sorted(set(_years(storage_ds)) - set(_years(truth)))
        if "year" not in truth.dims or missing:
            raise InputDataError(
                f"truth: lacks years {missing or _years(storage_ds)} of the storage data "
                f"(truth years: {_years(truth)}); give truth for every mapped year."
            )
        truth = truth.sel(year=storage_ds["year"].values)
    plain = truth[[_var("veg", "density"), _var("soil", "density")]]
    return storage(plain, storage_ds["pixel_area"])


def to_pg(totals_df: pd.DataFrame) -> pd.DataFrame:
    """Express the ``*_Tg`` columns of a table in petagrams (``*_Pg``; 1 Pg = 1000 Tg).

    Parameters
    ----------
    totals_df : pandas.DataFrame
        Table with columns ending in ``_Tg`` (Tg C).

    Returns
    -------
    pandas.DataFrame
        A copy with every ``<name>_Tg`` column replaced by ``<name>_Pg`` (Pg C).
    """
    tg_cols = [c for c in totals_df.columns if str(c).endswith("_Tg")]
    if not tg_cols:
        raise InputDataError(f"totals_df: no '_Tg' columns to convert; columns {list(totals_df)}.")
    out = totals_df.copy()
    for col in tg_cols:
        out[col] = out[col] * T_PER_TG / T_PER_PG
    out.attrs = {**totals_df.attrs, "units": "Pg C"}
    return out.rename(columns={c: c[: -len("_Tg")] + "_Pg" for c in tg_cols})


# --------------------------------------------------------------------------- zonal tables
def _codes_to_index(codes: np.ndarray, class_codes: Sequence[int], arg: str) -> np.ndarray:
    """Map integer codes to positions 0..n-1 of ``class_codes``; 0 (nodata) -> -1."""
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        filled = np.where(np.isnan(codes), 0.0, codes)
        if not np.all(filled == np.round(filled)):
            raise InputDataError(f"{arg}: class codes must be integers, got dtype {codes.dtype}.")
        codes = filled.astype("int64")
    if codes.size and codes.min() < 0:
        raise InputDataError(f"{arg}: negative class codes {np.unique(codes[codes < 0]).tolist()}.")
    known = np.asarray(list(class_codes), dtype="int64")
    size = int(max(codes.max() if codes.size else 0, known.max() if known.size else 0)) + 1
    lut = np.full(size, -2, dtype="int64")
    lut[0] = -1
    lut[known] = np.arange(known.size)
    index = lut[codes]
    unknown = np.unique(codes[index == -2])
    if unknown.size:
        raise InputDataError(
            f"{arg}: class codes {unknown.tolist()} are not in the class table "
            f"{sorted(int(c) for c in known)}; add them to the table / classes mapping "
            "(0 is nodata)."
        )
    return index


def _zone_slices(zones: xr.DataArray, storage_ds: xr.Dataset, arg: str) -> list[np.ndarray]:
    """Zone codes for each storage year (zones may be static or annual)."""
    zones = _same_grid(storage_ds, zones, arg)
    years = _years(storage_ds)
    if "year" not in zones.dims:
        return [np.asarray(zones.transpose("y", "x").values)] * max(len(years), 1)
    if not years:
        raise InputDataError(f"{arg}: annual zones need storage data with a 'year' dimension.")
    missing = sorted(set(years) - set(_years(zones)))
    if missing:
        raise InputDataError(
            f"{arg}: has no layer for years {missing} of the storage data "
            f"(available: {_years(zones)}); give one per mapped year or a static (y, x) map."
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
    pools: Sequence[str],
) -> pd.DataFrame:
    _require_vars(storage_ds, [_var(p, "storage") for p in pools] + ["pixel_area"], "storage_ds")
    codes = [int(c) for c in names]
    n = len(codes)
    area = np.asarray(storage_ds["pixel_area"].transpose("y", "x").values, "float64").ravel()
    frames = []
    for (year, sel), zone_codes in zip(
        _year_selections(storage_ds), _zone_slices(zones, storage_ds, arg), strict=True
    ):
        index = _codes_to_index(zone_codes, codes, arg).ravel()
        inside = index >= 0
        zone_area = np.bincount(index[inside], weights=area[inside], minlength=n)
        for pool in pools:
            values = storage_ds[_var(pool, "storage")].isel(sel).transpose("y", "x").values
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
    return df


def totals_by_class(
    storage_ds: xr.Dataset,
    landuse: xr.DataArray,
    *,
    classes: Mapping[int, str] = LANDUSE_CLASSES,
    pools: Sequence[str] = POOLS,
) -> pd.DataFrame:
    """Carbon storage and area per land-use class, year and pool.

    Parameters
    ----------
    storage_ds : xarray.Dataset
        Output of :func:`storage` (t C per pixel, ``pixel_area`` in ha).
    landuse : xarray.DataArray
        Land-use codes (``1``, 0 = nodata) on ``(year, y, x)`` (one layer per storage year) or
        static ``(y, x)``.
    classes : mapping of int to str
        Class code -> name; defaults to :data:`LANDUSE_CLASSES`.
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
    df = _zonal_table(storage_ds, landuse, classes, arg="landuse", code_col="landuse_code",
                      name_col="landuse_class", pools=pools)
    df.attrs = {"units": "ha (area_ha); Tg C (storage_Tg); t C ha-1 (mean_density_t_ha)",
                "history": io.history_line("carbon.totals_by_class")}
    return df


def totals_by_region(
    storage_ds: xr.Dataset,
    regions: xr.DataArray,
    *,
    names: Mapping[int, str] | None = None,
    pools: Sequence[str] = POOLS,
) -> pd.DataFrame:
    """Carbon storage and area per administrative / reporting unit, year and pool.

    Parameters
    ----------
    storage_ds : xarray.Dataset
        Output of :func:`storage` (t C per pixel, ``pixel_area`` in ha).
    regions : xarray.DataArray
        Integer unit ids on ``(y, x)``; 0 = outside every unit.
    names : mapping of int to str, optional
        Unit id -> name; by default every id present, named ``"region <id>"``.
    pools : sequence of str
        Pools to tabulate.

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
    df = _zonal_table(storage_ds, regions, names, arg="regions", code_col="region_id",
                      name_col="region", pools=pools)
    df.attrs = {"units": "ha (area_ha); Tg C (storage_Tg); t C ha-1 (mean_density_t_ha)",
                "history": io.history_line("carbon.totals_by_region")}
    return df


# --------------------------------------------------------------------------- change
def change(ds: xr.Dataset, *, start: int, end: int) -> xr.Dataset:
    """Per-pixel change of carbon density or storage between two years (``end - start``).

    Parameters
    ----------
    ds : xarray.Dataset
        Density (t C ha-1) or storage (t C) dataset on ``(year, y, x)``.
    start, end : int
        Calendar years present in ``ds``; ``start < end``.

    Returns
    -------
    xarray.Dataset
        ``<var>_change`` for every ``*_carbon_density`` / ``*_carbon_storage`` variable, in the
        variable's units (t C ha-1 or t C). Bounds are not differenced: the bounds of a
        difference are not the difference of bounds.

    Raises
    ------
    ParameterError
        A year not in the data (the message lists the available years) or ``start >= end``.
    InputDataError
        No carbon variable in ``ds``.
    """
    start, end = _check_period(ds, start, end)
    names = [n for n in ds.data_vars
             if str(n).endswith(("_carbon_density", "_carbon_storage")) and "year" in ds[n].dims]
    if not names:
        raise InputDataError(
            f"ds: no annual '*_carbon_density' or '*_carbon_storage' variable; it has "
            f"{sorted(map(str, ds.data_vars))}."
        )
    history = io.history_line("carbon.change", start=start, end=end)
    out = xr.Dataset()
    for name in names:
        diff = ds[name].sel(year=end, drop=True) - ds[name].sel(year=start, drop=True)
        default_units = DENSITY_UNITS if "density" in str(name) else STORAGE_UNITS
        units = ds[name].attrs.get("units", default_units)
        long_name = ds[name].attrs.get("long_name", str(name).replace("_", " "))
        out[f"{name}_change"] = _with_attrs(
            diff, units=units, long_name=f"change in {long_name}, {start} to {end}",
            history=history, start_year=start, end_year=end,
        )
    return _keep_crs(out, _crs_of(ds))


def change_table(totals_df: pd.DataFrame) -> pd.DataFrame:
    """Change of total storage between consecutive years and over the whole period, per pool.

    Parameters
    ----------
    totals_df : pandas.DataFrame
        Output of :func:`totals` (``year``, ``pool``, ``storage_Tg`` in Tg C; ``truth_Tg``
        optional).

    Returns
    -------
    pandas.DataFrame
        ``pool``, ``start_year``, ``end_year``, ``period`` (``"interval"`` or ``"whole"``),
        ``change_Tg``, ``change_Pg``, ``change_percent`` (relative to the start value, %),
        ``rate_Tg_per_yr`` (Tg C yr-1) and ``truth_change_Tg`` when ``truth_Tg`` is present.

    Raises
    ------
    InputDataError
        Missing columns or fewer than two years for a pool.
    """
    needed = ["year", "pool", "storage_Tg"]
    missing = [c for c in needed if c not in totals_df.columns]
    if missing:
        raise InputDataError(f"totals_df: missing columns {missing}; pass the output of totals().")
    with_truth = "truth_Tg" in totals_df.columns
    rows = []
    for pool, group in totals_df.groupby("pool", sort=False):
        group = group.sort_values("year")
        years = group["year"].astype("int64").to_numpy()
        if years.size < 2:
            raise InputDataError(f"totals_df: pool {pool!r} has {years.size} year(s); need >= 2.")
        stored = group["storage_Tg"].to_numpy(dtype="float64")
        truth = group["truth_Tg"].to_numpy(dtype="float64") if with_truth else None
        pairs = [(i, i + 1, "interval") for i in range(years.size - 1)] + [
            (0, years.size - 1, "whole")
        ]
        for i, j, period in pairs:
            delta = stored[j] - stored[i]
            row = {
                "pool": pool, "start_year": int(years[i]), "end_year": int(years[j]),
                "period": period, "change_Tg": delta, "change_Pg": delta * T_PER_TG / T_PER_PG,
                "change_percent": 100.0 * delta / stored[i] if stored[i] else np.nan,
                "rate_Tg_per_yr": delta / (years[j] - years[i]),
            }
            if truth is not None:
                row["truth_change_Tg"] = truth[j] - truth[i]
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs = {"units": "Tg C (change_Tg), Pg C (change_Pg), % (change_percent)",
                "history": io.history_line("carbon.change_table")}
    return df


def _signed(value: float, decimals: int) -> str:
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0.0:
        return f"±{text}"
    return f"+{text}" if value > 0 else f"\u2212{text}"


def describe_change(
    change_df: pd.DataFrame,
    *,
    start: int | None = None,
    end: int | None = None,
    units: Literal["Tg", "Pg"] = "Pg",
    decimals: int = 2,
) -> str:
    """One sentence on the change of total carbon and its veg / soil parts.

    Parameters
    ----------
    change_df : pandas.DataFrame
        Output of :func:`change_table`.
    start, end : int, optional
        The period; by default the whole period.
    units : {"Tg", "Pg"}
        Mass unit of the figures (of carbon).
    decimals : int
        Decimals shown.

    Returns
    -------
    str
        E.g. ``"From 2000 to 2021 total carbon storage changed by +0.11 Pg C: vegetation
        +0.19 Pg C, soil −0.08 Pg C."`` (negative numbers with a true minus sign).

    Raises
    ------
    ParameterError
        Unknown ``units`` or a period not in the table (the message lists those available).
    """
    _check_choice(units, ("Tg", "Pg"), "units")
    if "change_Tg" not in change_df.columns:
        raise InputDataError("change_df: no 'change_Tg' column; pass the output of change_table().")
    if start is None and end is None:
        rows = change_df[change_df["period"] == "whole"]
    else:
        start = int(change_df["start_year"].min()) if start is None else start
        end = int(change_df["end_year"].max()) if end is None else end
        rows = change_df[(change_df["start_year"] == start) & (change_df["end_year"] == end)]
    rows = rows.drop_duplicates("pool").set_index("pool")
    if not {"veg", "soil", "total"} <= set(rows.index):
        periods = sorted(set(zip(change_df["start_year"], change_df["end_year"], strict=True)))
        raise ParameterError(
            f"describe_change: period {start}-{end} not in change_df for all pools; "
            f"available periods: {periods}."
        )
    scale = 1.0 if units == "Tg" else T_PER_TG / T_PER_PG
    fig = {p: _signed(float(rows.loc[p, "change_Tg"]) * scale, decimals) for p in POOLS}
    s, e = int(rows.loc["total", "start_year"]), int(rows.loc["total", "end_year"])
    return (
        f"From {s} to {e} total carbon storage changed by {fig['total']} {units} C: "
        f"vegetation {fig['veg']} {units} C, soil {fig['soil']} {units} C."
    )


def _storage_change_values(
    storage_ds: xr.Dataset, pool: str, start: int, end: int
) -> np.ndarray:
    name = _var(pool, "storage")
    _require_vars(storage_ds, [name], "storage_ds")
    start_values = storage_ds[name].sel(year=start).transpose("y", "x").values
    end_values = storage_ds[name].sel(year=end).transpose("y", "x").values
    return np.asarray(end_values, "float64") - np.asarray(start_values, "float64")


def ecosystem_contribution(
    storage_ds: xr.Dataset,
    landuse: xr.DataArray,
    *,
    start: int,
    end: int,
    pool: Pool = "total",
    attribute_to: Literal["end", "start"] = "end",
    classes: Mapping[int, str] = LANDUSE_CLASSES,
) -> pd.DataFrame:
    """Contribution of each ecosystem (land-use) type to the change of carbon storage.

    Parameters
    ----------
    storage_ds : xarray.Dataset
        Output of :func:`storage` on ``(year, y, x)`` (t C per pixel).
    landuse : xarray.DataArray
        Land-use codes on ``(year, y, x)`` (must hold ``start`` and ``end``) or ``(y, x)``.
    start, end : int
        Calendar years in ``storage_ds``.
    pool : {"veg", "soil", "total"}
        Pool whose change is attributed.
    attribute_to : {"end", "start"}
        Whose land-use class a pixel's change is attributed to.
    classes : mapping of int to str
        Class code -> name.

    Returns
    -------
    pandas.DataFrame
        One row per class: ``landuse_code``, ``landuse_class``, ``area_ha`` (area of the class
        in the attribution year, ha), ``change_Tg`` (Tg C) and ``contribution_percent`` (%).
        ``attrs["total_change_Tg"]`` holds the total change.

    Raises
    ------
    ParameterError
        Years not in the data, bad ``pool`` or ``attribute_to``.
    InputDataError
        Unknown land-use codes.

    Notes
    -----
    ``dC_k = sum over pixels whose class in the attribution year is k of (C_end - C_start)``
    (t C) and ``contribution_k = dC_k / sum_k dC_k * 100``. Pixels with nodata class or a
    missing storage value in either year are left out of numerator and denominator alike, so
    the contributions sum to 100 %. A class can contribute a negative share or more than
    100 % when classes change in opposite directions; shares are unstable when the total
    change is near zero (NaN when it is exactly zero).
    """
    _check_choice(pool, POOLS, "pool")
    _check_choice(attribute_to, ("end", "start"), "attribute_to")
    start, end = _check_period(storage_ds, start, end)
    _require_vars(storage_ds, ["pixel_area"], "storage_ds")
    delta = _storage_change_values(storage_ds, pool, start, end).ravel()
    year = end if attribute_to == "end" else start
    lu = _same_grid(storage_ds, landuse, "landuse")
    if "year" in lu.dims:
        lu = lu.sel(year=_check_year(lu, year, f"landuse year ({attribute_to})"))
    codes = list(classes)
    index = _codes_to_index(np.asarray(lu.transpose("y", "x").values), codes, "landuse").ravel()
    area = np.asarray(storage_ds["pixel_area"].transpose("y", "x").values, "float64").ravel()
    ok = (index >= 0) & np.isfinite(delta)
    change_t = np.bincount(index[ok], weights=delta[ok], minlength=len(codes))
    class_area = np.bincount(index[index >= 0], weights=area[index >= 0], minlength=len(codes))
    total = float(change_t.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = change_t / total * 100.0 if total != 0 else np.full(len(codes), np.nan)
    df = pd.DataFrame({
        "landuse_code": codes, "landuse_class": [classes[c] for c in codes],
        "area_ha": class_area, "change_Tg": change_t / T_PER_TG, "contribution_percent": percent,
    })
    df.attrs = {
        "units": "ha (area_ha); Tg C (change_Tg); % (contribution_percent)",
        "total_change_Tg": total / T_PER_TG, "start": start, "end": end, "pool": pool,
        "history": io.history_line("carbon.ecosystem_contribution", start=start, end=end,
                                   pool=pool, attribute_to=attribute_to),
    }
    return df


# --------------------------------------------------------------------------- transitions
def _class_pair_index(
    lu_start: xr.DataArray, lu_end: xr.DataArray, codes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from_index = _codes_to_index(np.asarray(lu_start.transpose("y", "x").values), codes,
                                 "lu_start").ravel()
    to_index = _codes_to_index(np.asarray(lu_end.transpose("y", "x").values), codes,
                               "lu_end").ravel()
    valid = (from_index >= 0) & (to_index >= 0)
    return from_index, to_index, valid


def _area_values(area_ha: xr.DataArray | float, ref: xr.DataArray) -> np.ndarray:
    if isinstance(area_ha, xr.DataArray):
        area = _same_grid(ref, area_ha, "area_ha")
        values = np.asarray(area.transpose("y", "x").values, "float64").ravel()
    else:
        values = np.full(ref.sizes["y"] * ref.sizes["x"], float(area_ha))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InputDataError("area_ha: pixel areas must be finite and >= 0 (ha).")
    return values


def _check_2d(da: Any, arg: str) -> None:
    if not isinstance(da, xr.DataArray) or set(da.dims) != {"y", "x"}:
        dims = getattr(da, "dims", type(da).__name__)
        raise InputDataError(
            f"{arg}: expected a 2-D (y, x) DataArray, got {dims}; select one year with "
            ".sel(year=...)."
        )


def transition_matrix(
    lu_start: xr.DataArray,
    lu_end: xr.DataArray,
    area_ha: xr.DataArray | float,
    *,
    classes: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Land-use transition matrix: area (ha) that went from each class to each class.

    Parameters
    ----------
    lu_start, lu_end : xarray.DataArray
        Land-use codes on ``(y, x)`` at the start and end of the period; 0 = nodata.
    area_ha : xarray.DataArray or float
        Pixel area (ha) on the same grid, or one value for all pixels.
    classes : mapping of int to str, optional
        Class code -> name; default :data:`LANDUSE_CLASSES`.

    Returns
    -------
    pandas.DataFrame
        Square table in ha: rows = ``from`` class, columns = ``to`` class (class names), all
        classes listed. The diagonal is unchanged area. Pixels that are nodata in either year
        are left out.

    Raises
    ------
    InputDataError
        Unknown codes, non-2-D input or bad areas.
    GridMismatchError
        Inputs on different grids.
    """
    classes = dict(LANDUSE_CLASSES if classes is None else classes)
    _check_2d(lu_start, "lu_start")
    _check_2d(lu_end, "lu_end")
    lu_end = _same_grid(lu_start, lu_end, "lu_end")
    codes = list(classes)
    n = len(codes)
    from_index, to_index, valid = _class_pair_index(lu_start, lu_end, codes)
    area = _area_values(area_ha, lu_start)
    pair = from_index[valid] * n + to_index[valid]
    matrix = np.bincount(pair, weights=area[valid], minlength=n * n).reshape(n, n)
    names = [classes[c] for c in codes]
    df = pd.DataFrame(matrix, index=pd.Index(names, name="from"),
                      columns=pd.Index(names, name="to"))
    df.attrs = {"units": AREA_HA_UNITS, "long_name": "land-use transition area",
                "history": io.history_line("carbon.transition_matrix")}
    return df


def transition_matrices(
    landuse: xr.DataArray,
    area_ha: xr.DataArray | float,
    *,
    classes: Mapping[int, str] | None = None,
    include_whole_period: bool = True,
) -> dict[tuple[int, int], pd.DataFrame]:
    """Transition matrices (ha) for every pair of consecutive years, and the whole period.

    Parameters
    ----------
    landuse : xarray.DataArray
        Land-use codes on ``(year, y, x)`` with at least two years.
    area_ha : xarray.DataArray or float
        Pixel area (ha).
    classes : mapping of int to str, optional
        Class code -> name; default :data:`LANDUSE_CLASSES`.
    include_whole_period : bool
        Also return the first-to-last-year matrix.

    Returns
    -------
    dict of (int, int) to pandas.DataFrame
        ``{(start_year, end_year): matrix}`` as :func:`transition_matrix` (ha).

    Raises
    ------
    InputDataError
        Fewer than two years, unknown codes.
    """
    years = _years(landuse)
    if len(years) < 2:
        raise InputDataError(
            f"landuse: need a 'year' dimension with >= 2 years, got years {years} (dims "
            f"{landuse.dims})."
        )
    years = sorted(years)
    pairs = list(zip(years[:-1], years[1:], strict=True))
    if include_whole_period and (years[0], years[-1]) not in pairs:
        pairs.append((years[0], years[-1]))
    return {
        (a, b): transition_matrix(landuse.sel(year=a, drop=True), landuse.sel(year=b, drop=True),
                                  area_ha, classes=classes)
        for a, b in pairs
    }


def _pool_density(density: xr.DataArray | xr.Dataset, pool: str, arg: str) -> xr.DataArray:
    if isinstance(density, xr.DataArray):
        _check_units(density, DENSITY_UNITS, arg)
        return density
    name = _var(pool, "density")
    if name not in density and pool == "total":
        density = add_total(density)
    _require_vars(density, [name], arg)
    _check_units(density[name], DENSITY_UNITS, arg)
    return density[name]


def conversion_decomposition(
    density_start: xr.DataArray | xr.Dataset,
    density_end: xr.DataArray | xr.Dataset,
    lu_start: xr.DataArray,
    lu_end: xr.DataArray,
    area_ha: xr.DataArray | float,
    *,
    pool: Pool = "total",
    classes: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Split a carbon-storage change into land-use conversions and change within classes.

    Parameters
    ----------
    density_start, density_end : xarray.DataArray or xarray.Dataset
        Carbon density (t C ha-1) on ``(y, x)`` at the start and end; a Dataset is reduced to
        ``<pool>_carbon_density``.
    lu_start, lu_end : xarray.DataArray
        Land-use codes on ``(y, x)`` at the start and end; 0 = nodata.
    area_ha : xarray.DataArray or float
        Pixel area (ha).
    pool : {"veg", "soil", "total"}
        Pool used when the densities are Datasets.
    classes : mapping of int to str, optional
        Class code -> name; default :data:`LANDUSE_CLASSES`.

    Returns
    -------
    dict
        ``by_transition``: DataFrame with one row per observed ``from`` -> ``to`` pair
        (``from_code``, ``from_class``, ``to_code``, ``to_class``, ``kind`` =
        ``"conversion"``/``"unchanged"``, ``area_ha``, ``change_t`` in t C, ``change_Tg`` in
        Tg C); ``total_t``, ``conversion_t``, ``unchanged_t`` (t C, the exact-sum level),
        ``total_Tg``, ``conversion_Tg``, ``unchanged_Tg`` (Tg C), ``conversion_area_ha`` (ha),
        ``conversion_percent`` (%) and ``history``.

    Raises
    ------
    InputDataError
        Unknown codes, missing pools, wrong units, non-2-D inputs.
    GridMismatchError
        Inputs on different grids.

    Notes
    -----
    Per pixel ``dC = (D_end - D_start) * area`` (t C). Pixels whose class differs between the
    years make up the *conversion* part (by transition), the others the *unchanged* part; pixels
    with nodata class or missing density in either year are left out of every sum, so
    ``total = conversion + unchanged`` exactly up to float rounding (and exactly when the
    per-pixel changes are integers in t C). ``conversion_percent = conversion / total * 100``
    (signed; NaN when the total change is zero), the "contribution rate of land-use conversion".
    """
    _check_choice(pool, POOLS, "pool")
    classes = dict(LANDUSE_CLASSES if classes is None else classes)
    d0 = _pool_density(density_start, pool, "density_start")
    d1 = _pool_density(density_end, pool, "density_end")
    for da, arg in ((d0, "density_start"), (d1, "density_end"), (lu_start, "lu_start"),
                    (lu_end, "lu_end")):
        _check_2d(da, arg)
    d1 = _same_grid(d0, d1, "density_end")
    lu_start = _same_grid(d0, lu_start, "lu_start")
    lu_end = _same_grid(d0, lu_end, "lu_end")
    codes = list(classes)
    n = len(codes)
    from_index, to_index, valid = _class_pair_index(lu_start, lu_end, codes)
    area = _area_values(area_ha, d0)
    delta = (np.asarray(d1.transpose("y", "x").values, "float64")
             - np.asarray(d0.transpose("y", "x").values, "float64")).ravel() * area
    ok = valid & np.isfinite(delta)
    pair = from_index[ok] * n + to_index[ok]
    change_t = np.bincount(pair, weights=delta[ok], minlength=n * n)
    pair_area = np.bincount(pair, weights=area[ok], minlength=n * n)
    pixel_count = np.bincount(pair, minlength=n * n)
    seen = np.flatnonzero(pixel_count)
    src, dst = np.divmod(seen, n)
    kind = np.where(src == dst, "unchanged", "conversion")
    by_transition = pd.DataFrame({
        "from_code": [codes[i] for i in src], "from_class": [classes[codes[i]] for i in src],
        "to_code": [codes[i] for i in dst], "to_class": [classes[codes[i]] for i in dst],
        "kind": kind, "area_ha": pair_area[seen], "change_t": change_t[seen],
        "change_Tg": change_t[seen] / T_PER_TG,
    })
    by_transition.attrs = {"units": "ha (area_ha); t C (change_t); Tg C (change_Tg)"}
    converted = ok & (from_index != to_index)
    total_t = float(np.sum(delta[ok]))
    conversion_t = float(np.sum(delta[converted]))
    unchanged_t = float(np.sum(delta[ok & ~converted]))
    return {
        "by_transition": by_transition,
        "total_t": total_t,
        "conversion_t": conversion_t,
        "unchanged_t": unchanged_t,
        "total_Tg": total_t / T_PER_TG,
        "conversion_Tg": conversion_t / T_PER_TG,
        "unchanged_Tg": unchanged_t / T_PER_TG,
        "conversion_area_ha": float(np.sum(area[converted])),
        "conversion_percent": conversion_t / total_t * 100.0 if total_t != 0 else float("nan"),
        "history": io.history_line("carbon.conversion_decomposition", pool=pool),
    }


# --------------------------------------------------------------------------- lookup carbon
def _normalise_table(
    table: pd.DataFrame | Mapping[int, Mapping[str, float]], pools: Sequence[str]
) -> pd.DataFrame:
    if isinstance(table, Mapping):
        table = pd.DataFrame.from_dict({int(k): dict(v) for k, v in table.items()}, orient="index")
    elif isinstance(table, pd.DataFrame):
        table = table.copy()
        if "lucode" in table.columns:  # InVEST biophysical tables key classes by "lucode"
            table = table.set_index("lucode")
    else:
        raise ParameterError(
            f"table: expected a DataFrame or a dict {{code: {{pool: t C ha-1}}}}, got "
            f"{type(table).__name__}."
        )
    table = table.rename(columns=lambda c: str(c)[2:] if str(c).startswith("c_") else str(c))
    missing = [p for p in pools if p not in table.columns]
    if missing:
        raise InputDataError(
            f"table: missing pool column(s) {missing}; it has {list(table.columns)}. Give a "
            f"value in t C ha-1 for every pool in pools={list(pools)}."
        )
    values = table[list(pools)].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any() or (values < 0).any().any():
        bad = values.index[(values.isna() | (values < 0)).any(axis=1)].tolist()
        raise InputDataError(f"table: classes {bad} have missing or negative densities (t C ha-1).")
    try:
        values.index = values.index.astype("int64")
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"table: class codes must be integers, got {list(table.index)}."
        ) from exc
    return values


def lookup_carbon(
    landuse: xr.DataArray,
    table: pd.DataFrame | Mapping[int, Mapping[str, float]],
    *,
    pools: Sequence[str] = ("above", "below", "soil", "dead"),
) -> xr.Dataset:
    """InVEST-style carbon density maps from a land-use map and a class density table.

    Parameters
    ----------
    landuse : xarray.DataArray
        Land-use codes (``1``; 0 = nodata) on ``(year, y, x)`` or ``(y, x)``.
    table : pandas.DataFrame or dict
        Density per class in t C ha-1: a DataFrame indexed by class code (or with an InVEST
        ``lucode`` column; ``c_above`` etc. are accepted for ``above``), or
        ``{code: {"above": .., "below": .., "soil": .., "dead": ..}}``.
    pools : sequence of str
        Table columns to map. ``above``, ``below`` and ``dead`` are summed into
        ``veg_carbon_density``; ``soil`` becomes ``soil_carbon_density``; a ``veg`` column
        (e.g. from :func:`class_mean_table`) is used as is.

    Returns
    -------
    xarray.Dataset
        ``<pool>_carbon_density`` for every pool plus ``veg_carbon_density`` (t C ha-1,
        float32, NaN where the class is 0).

    Raises
    ------
    InputDataError
        Codes in ``landuse`` that the table lacks (listed), missing pool columns, negative
        densities.
    ParameterError
        ``pools`` giving ``veg`` together with its components, or a bad ``table`` type.

    Notes
    -----
    Dead organic matter is counted with vegetation so that ``total = above + below + soil +
    dead`` as in the InVEST carbon model (Sharp et al., InVEST User's Guide, "Carbon Storage
    and Sequestration").

    Examples
    --------
    >>> lookup_carbon(lu, {1: {"above": 15, "below": 10, "soil": 60, "dead": 1}})  # doctest: +SKIP
    """
    pools = list(pools)
    if "veg" in pools and set(VEG_COMPONENTS) & set(pools):
        raise ParameterError(
            f"pools={pools}: give either 'veg' or its components {list(VEG_COMPONENTS)}, not both."
        )
    values = _normalise_table(table, pools)
    codes = np.asarray(landuse.values)
    index = _codes_to_index(codes, values.index.tolist(), "landuse")
    history = io.history_line("carbon.lookup_carbon", pools=pools)
    out = xr.Dataset()
    for pool in pools:
        lut = np.append(values[pool].to_numpy(dtype="float32"), np.float32(np.nan))
        mapped = landuse.copy(data=lut[index])  # index -1 (nodata) hits the trailing NaN
        out[_var(pool, "density")] = _with_attrs(
            mapped, units=DENSITY_UNITS, long_name=f"{pool} carbon density (lookup table)",
            history=history,
        )
    components = [p for p in VEG_COMPONENTS if p in pools]
    if components:
        out[_var("veg", "density")] = _with_attrs(
            sum(out[_var(p, "density")] for p in components), units=DENSITY_UNITS,
            long_name=f"vegetation carbon density ({' + '.join(components)}, lookup table)",
            history=history,
        )
    return _keep_crs(out, _crs_of(landuse))


def class_mean_table(
    samples: pd.DataFrame,
    *,
    landuse_column: str = "landuse",
    value_columns: Mapping[str, str] | None = None,
    min_plots: int = 1,
    exclude_augmented: bool = True,
    all_classes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """A lookup table of mean plot carbon density per land-use class.

    Parameters
    ----------
    samples : pandas.DataFrame
        The plot table of ``docs/architecture.md``.
    landuse_column : str
        Column holding each plot's land-use code.
    value_columns : mapping of str to str, optional
        Pool name -> column (t C ha-1); default ``{"veg": "veg_carbon_t_ha", "soil":
        "soil_carbon_t_ha"}``.
    min_plots : int
        Classes with fewer plots (for any pool) are dropped, with a log message.
    exclude_augmented : bool
        Leave out rows with ``augmented == True`` (not field measurements).
    all_classes : sequence of int, optional
        Class codes the table must cover (e.g. every code of the land-use raster). Classes
        without (enough) plots get the mean over all plots and ``n_plots_<pool> = 0`` — the
        same fallback as the land-use lookup baseline model — and are logged.

    Returns
    -------
    pandas.DataFrame
        Indexed by class code: one column per pool (mean, t C ha-1) and ``n_plots_<pool>``;
        ready for ``lookup_carbon(landuse, table, pools=("veg", "soil"))``.

    Raises
    ------
    InputDataError
        Missing columns or no class left.
    ParameterError
        ``min_plots < 1``.
    """
    value_columns = dict(value_columns or {"veg": "veg_carbon_t_ha", "soil": "soil_carbon_t_ha"})
    if min_plots < 1:
        raise ParameterError(f"min_plots={min_plots}: expected an integer >= 1.")
    needed = [landuse_column, *value_columns.values()]
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise InputDataError(f"samples: missing columns {missing}; it has {list(samples.columns)}.")
    rows = samples
    if exclude_augmented and "augmented" in samples.columns:
        rows = samples[~samples["augmented"].astype(bool)]
    rows = rows[rows[landuse_column].notna() & (rows[landuse_column] != 0)]
    grouped = rows.groupby(rows[landuse_column].astype("int64"))
    table = pd.DataFrame({pool: grouped[col].mean() for pool, col in value_columns.items()})
    for pool, col in value_columns.items():
        table[f"n_plots_{pool}"] = grouped[col].count()
    counts = table[[f"n_plots_{p}" for p in value_columns]].min(axis=1)
    dropped = table.index[counts < min_plots].tolist()
    if dropped:
        log.info("class_mean_table: dropping classes %s with < %d plots", dropped, min_plots)
    table = table[counts >= min_plots]
    if table.empty:
        raise InputDataError(f"samples: no land-use class has >= {min_plots} plots with values.")
    if all_classes is not None:
        absent = sorted(set(int(c) for c in all_classes if int(c) != 0) - set(table.index))
        if absent:
            log.info("class_mean_table: classes %s have no plots; using the overall mean", absent)
            fill = {pool: float(rows[col].mean()) for pool, col in value_columns.items()}
            fill.update({f"n_plots_{pool}": 0 for pool in value_columns})
            extra = pd.DataFrame([fill] * len(absent), index=pd.Index(absent))
            table = pd.concat([table, extra]).sort_index()
    table.index.name = "landuse_code"
    table.attrs = {"units": DENSITY_UNITS,
                   "history": io.history_line("carbon.class_mean_table", min_plots=min_plots)}
    return table


def compare_with_lookup(
    ml_density: xr.Dataset,
    lookup_density: xr.Dataset,
    area_ha: xr.DataArray | float,
) -> tuple[xr.Dataset, pd.DataFrame]:
    """Compare model-mapped carbon density with lookup-table (InVEST-style) density.

    Parameters
    ----------
    ml_density, lookup_density : xarray.Dataset
        ``veg_carbon_density`` and ``soil_carbon_density`` (t C ha-1) on one grid; the lookup
        maps may be static ``(y, x)`` while the model maps are annual.
    area_ha : xarray.DataArray or float
        Pixel area (ha).

    Returns
    -------
    difference : xarray.Dataset
        ``<pool>_carbon_density_difference`` = model - lookup (t C ha-1) for veg, soil, total.
    table : pandas.DataFrame
        ``year``, ``pool``, ``ml_Tg``, ``lookup_Tg``, ``difference_Tg`` (Tg C) and
        ``difference_percent`` (relative to the lookup total, %).

    Raises
    ------
    InputDataError, GridMismatchError
        Missing pools, wrong units, different grids.
    """
    names = [_var("veg", "density"), _var("soil", "density")]
    ml = add_total(ml_density[names])
    _require_vars(lookup_density, names, "lookup_density")
    lookup = add_total(_same_grid(ml, lookup_density[names], "lookup_density"))
    if "year" in ml.dims and "year" not in lookup.dims:
        lookup = lookup.expand_dims(year=ml["year"].values)
    history = io.history_line("carbon.compare_with_lookup")
    difference = xr.Dataset()
    for pool in POOLS:
        name = _var(pool, "density")
        difference[f"{name}_difference"] = _with_attrs(
            ml[name] - lookup[name], units=DENSITY_UNITS,
            long_name=f"{POOL_LONG_NAMES[pool]} carbon density, model minus lookup table",
            history=history,
        )
    ml_totals = totals(storage(ml, area_ha))
    lookup_totals = totals(storage(lookup, area_ha))
    table = ml_totals[["year", "pool", "storage_Tg"]].rename(columns={"storage_Tg": "ml_Tg"})
    table["lookup_Tg"] = lookup_totals["storage_Tg"].to_numpy()
    table["difference_Tg"] = table["ml_Tg"] - table["lookup_Tg"]
    table["difference_percent"] = 100.0 * table["difference_Tg"] / table["lookup_Tg"]
    table.attrs = {"units": "Tg C; % (difference_percent)", "history": history}
    return _keep_crs(difference, _crs_of(ml_density)), table


# --------------------------------------------------------------------------- AOA, checks
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
    area = _area_values(area_ha, mask_aoa).reshape(mask_aoa.sizes["y"], mask_aoa.sizes["x"])
    region = np.ones_like(area, dtype=bool)
    if region_mask is not None:
        region = np.asarray(_same_grid(mask_aoa, region_mask, "region_mask")
                            .transpose("y", "x").values).astype(bool)
    rows = []
    years = _years(mask_aoa) or [pd.NA]
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
                "history": io.history_line("carbon.outside_aoa_share")}
    return df


def check_plausible_totals(
    totals_df: pd.DataFrame, *, max_density_t_ha: float = 2000.0
) -> None:
    """Raise if a totals table is negative, missing, inconsistent or absurdly large.

    Parameters
    ----------
    totals_df : pandas.DataFrame
        Output of :func:`totals`.
    max_density_t_ha : float
        Largest believable mean carbon density of a pool over the mapped area (t C ha-1);
        the densest forests on record hold about 1,900 t C ha-1 (Keith et al. 2009, PNAS 106).

    Raises
    ------
    ModelError
        Any total negative or NaN, a bound on the wrong side of the estimate, total not equal
        to veg + soil, or a mean density above ``max_density_t_ha``.
    InputDataError
        Missing columns.
    """
    missing = [c for c in ("year", "pool", "storage_Tg") if c not in totals_df.columns]
    if missing:
        raise InputDataError(f"totals_df: missing columns {missing}; pass the output of totals().")
    problems = []
    stored = totals_df["storage_Tg"]
    if stored.isna().any():
        problems.append(f"NaN totals in rows {totals_df.index[stored.isna()].tolist()}")
    if (stored < 0).any():
        negative = totals_df.loc[stored < 0, ["year", "pool", "storage_Tg"]]
        problems.append(f"negative totals: {negative.to_dict('records')}")
    if {"lower_Tg", "upper_Tg"} <= set(totals_df.columns):
        tol = 1e-9 * stored.abs().max()
        outside = (totals_df["lower_Tg"] > stored + tol) | (totals_df["upper_Tg"] < stored - tol)
        if outside.any():
            rows = totals_df.index[outside].tolist()
            problems.append(f"estimate outside [lower, upper] in rows {rows}")
    if "area_ha" in totals_df.columns:
        with np.errstate(invalid="ignore", divide="ignore"):
            density = stored * T_PER_TG / totals_df["area_ha"]
        absurd = density > max_density_t_ha
        if absurd.any():
            problems.append(
                f"mean density above {max_density_t_ha} t C ha-1: "
                f"{totals_df.loc[absurd, ['year', 'pool']].to_dict('records')} "
                f"({density[absurd].round(1).tolist()} t C ha-1); check units (t C ha-1 vs "
                "Mg C ha-1 x 100, g C m-2)"
            )
    wide = totals_df.pivot_table(index="year", columns="pool", values="storage_Tg",
                                 dropna=False) if totals_df["year"].notna().all() else None
    if wide is not None and set(POOLS) <= set(wide.columns):
        # float32 pixel sums: total = veg + soil holds to float32 rounding, not beyond
        mismatch = ~np.isclose(wide["total"], wide["veg"] + wide["soil"], rtol=1e-6, atol=0.0)
        if mismatch.any():
            problems.append(f"total != veg + soil in years {wide.index[mismatch].tolist()}")
    if problems:
        raise ModelError("implausible carbon totals: " + "; ".join(problems) + ".")


# --------------------------------------------------------------------------- export
def _product_years(ds: xr.Dataset, years: Sequence[int] | None) -> list[int]:
    available = _years(ds)
    if not available:
        raise InputDataError(f"density_storage_ds: needs a 'year' dimension, got {ds.dims}.")
    if years is None:
        return available
    missing = [y for y in years if y not in available]
    if missing:
        raise ParameterError(
            f"years={list(years)}: {missing} not in the data; available years: {available}."
        )
    return [int(y) for y in years]


def export_products(
    density_storage_ds: xr.Dataset,
    out_dir: str | os.PathLike,
    *,
    region: str = "gd",
    years: Sequence[int] | None = None,
) -> list[Path]:
    """Write density and storage maps as Cloud-Optimised GeoTIFFs, one per layer and year.

    Parameters
    ----------
    density_storage_ds : xarray.Dataset
        Any of ``veg/soil/total_carbon_density`` (t C ha-1) and ``veg/soil/total_carbon_storage``
        (t C) on ``(year, y, x)`` with a CRS (e.g. ``xr.merge([density, storage(...)])``).
    out_dir : path
        Folder to write to (created if needed).
    region : str
        Short region tag in the file names (letters/digits), e.g. ``"gd"`` for Guangdong.
    years : sequence of int, optional
        Years to write; default all.

    Returns
    -------
    list of pathlib.Path
        Files named ``<prefix>_<region>_<yy>.tif`` with prefix ``vcd``/``scd``/``tcd``
        (density) or ``vcs``/``scs``/``tcs`` (storage) and ``yy`` the last two digits of the
        year, as in the Guangdong carbon dataset (``tcd_gd_21.tif``). Units, long name and
        history are written as dataset and band-1 metadata. Bounds are not exported.

    Raises
    ------
    ParameterError
        Bad ``region``, years not in the data, or two years with the same last two digits.
    InputDataError
        No exportable layer, no CRS.
    """
    if not (isinstance(region, str) and region.isalnum()):
        raise ParameterError(f"region={region!r}: expected a short alphanumeric tag like 'gd'.")
    layers = [name for name in PRODUCT_PREFIXES if name in density_storage_ds.data_vars]
    if not layers:
        raise InputDataError(
            f"density_storage_ds: none of {list(PRODUCT_PREFIXES)} present; it has "
            f"{sorted(map(str, density_storage_ds.data_vars))}."
        )
    crs = _crs_of(density_storage_ds)
    if crs is None:
        raise InputDataError("density_storage_ds: no CRS; attach it with ds.rio.write_crs(...).")
    chosen = _product_years(density_storage_ds, years)
    suffixes = [f"{y % 100:02d}" for y in chosen]
    if len(set(suffixes)) != len(suffixes):
        raise ParameterError(
            f"years={chosen}: two years share the last two digits, so their file names clash; "
            "export them into different folders."
        )
    out_dir = Path(out_dir)
    written = []
    for name in layers:
        layer = density_storage_ds[name]
        expected = DENSITY_UNITS if name.endswith("density") else STORAGE_UNITS
        _check_units(layer, expected, "density_storage_ds")
        for year, yy in zip(chosen, suffixes, strict=True):
            band = layer.sel(year=year, drop=True).transpose("y", "x")
            band = band.rio.write_crs(crs, inplace=True)
            long_name = layer.attrs.get("long_name", name.replace("_", " "))
            band.attrs = {
                "units": expected, "long_name": f"{long_name}, {year}",
                "history": io.history_line("carbon.export_products", region=region, year=year),
                # rioxarray writes this list as per-band GDAL metadata
                "band_tags": [{"units": expected, "long_name": f"{long_name}, {year}"}],
            }
            path = out_dir / f"{PRODUCT_PREFIXES[name]}_{region}_{yy}.tif"
            written.append(io.write_geotiff(band.astype("float32"), path, cog=True))
    return written


__all__ = [
    "LANDUSE_CLASSES", "POOLS", "PRODUCT_PREFIXES", "add_total", "change", "change_table",
    "check_plausible_totals", "class_mean_table", "compare_with_lookup",
    "conversion_decomposition", "describe_change", "ecosystem_contribution", "export_products",
    "lookup_carbon", "outside_aoa_share", "pixel_area_ha", "storage", "to_pg", "totals",
    "totals_by_class", "totals_by_region", "transition_matrices", "transition_matrix",
]
