"""What every carbon module shares: pool and variable names, grid, year and units checks.

Private to :mod:`terracarbon.carbon`; the public names (``POOLS``, ``POOL_LONG_NAMES``,
``BOUNDS``, ``IntervalMethod``, ``Pool``) are re-exported by the package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import units as _units
from terracarbon.data import io
from terracarbon.conventions import CARBON_POOLS
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

log = logging.getLogger("terracarbon.carbon")

POOLS: tuple[str, ...] = (*CARBON_POOLS, "total")
"""Every carbon pool the accounting functions handle, in report order; a dataset holds the
subset its study maps (:func:`pools_in`) and their ``total``."""
POOL_LONG_NAMES = {**{n: p.long_name for n, p in CARBON_POOLS.items()}, "total": "total"}
BOUNDS: tuple[str, ...] = ("lower", "upper")

IntervalMethod = Literal["correlated", "independent"]
Pool = Literal["above", "below", "dead", "veg", "soil", "total"]
INTERVAL_METHODS = ("correlated", "independent")
DERIVED_ATTR = "derived_from"
"""Attribute marking total-pool bounds built from the veg and soil bounds."""


# --------------------------------------------------------------------------- names
def var(pool: str, kind: str, bound: str | None = None) -> str:
    """``<pool>_carbon_<kind>[_<bound>]``, e.g. ``var("veg", "density", "lower")``."""
    name = f"{pool}_carbon_{kind}"
    return f"{name}_{bound}" if bound else name


def pools_in(ds: xr.Dataset | pd.DataFrame | Iterable[str], kind: str = "density") -> list[str]:
    """The mapped pools (not ``total``) with a ``<pool>_carbon_<kind>`` variable, in report
    order; for a table, the pools in its ``pool`` column or with ``<pool>_obs`` columns.

    >>> pools_in(["soil_carbon_density", "above_carbon_density", "total_carbon_density"])
    ['above', 'soil']
    """
    if isinstance(ds, pd.DataFrame):
        names = set(ds["pool"].unique()) if "pool" in ds.columns else {
            c[:-4] for c in ds.columns if str(c).endswith("_obs")}
        return [p for p in CARBON_POOLS if p in names]
    names = set(ds.data_vars if isinstance(ds, xr.Dataset) else ds)
    return [p for p in CARBON_POOLS if var(p, kind) in names]


def check_pool_set(pools: Iterable[str], *, where: str) -> list[str]:
    """``pools`` as a list in report order; ParameterError for unknown or overlapping pools
    (``veg`` already contains ``above`` and ``below``: summing both counts carbon twice).

    >>> check_pool_set(["soil", "veg"], where="pools")
    ['veg', 'soil']
    """
    pools = list(pools)
    unknown = [p for p in pools if p not in CARBON_POOLS]
    if unknown:
        raise ParameterError(f"{where}: unknown pool(s) {unknown}; the pools are "
                             f"{list(CARBON_POOLS)} (see conventions.CARBON_POOLS).")
    clashes = sorted({tuple(sorted((p, o))) for p in pools for o in CARBON_POOLS[p].overlaps
                      if o in pools})
    if clashes:
        raise ParameterError(
            f"{where}: pools {[list(c) for c in clashes]} overlap (veg is above + below "
            "ground): map either veg or above/below, so the total counts no carbon twice.")
    return [p for p in CARBON_POOLS if p in pools]


def pool_sum(parts: dict[str, Any]) -> Any:
    """The sum of the mapped pools among ``parts`` (``{pool: array}``), the total; None when
    ``parts`` holds no mapped pool. Overlapping pools raise (:func:`check_pool_set`)."""
    pools = check_pool_set([p for p in parts if p in CARBON_POOLS], where="pools")
    if not pools:
        return None
    out = parts[pools[0]]
    for p in pools[1:]:
        out = out + parts[p]
    return out


# --------------------------------------------------------------------------- attributes
def history(function: str, *inputs: Any, **params: Any) -> str:
    """CF ``history`` of an output of ``carbon.<function>``: the inputs' lineage, then this call.

    ``inputs`` are the arrays or tables the output is derived from; anything without ``attrs``
    (a float pixel area, a dict table) has no lineage and is skipped.
    """
    line = io.history_line(f"carbon.{function}", **params)
    return io.update_history(line, *(obj for obj in inputs if hasattr(obj, "attrs")))


def with_attrs(da: xr.DataArray, *, units: str, long_name: str, history: str,
               **extra: Any) -> xr.DataArray:
    """A shallow copy of ``da`` whose attributes are exactly these."""
    out = da.copy(deep=False)
    out.attrs = {"units": units, "long_name": long_name, "history": history, **extra}
    return out


def crs_of(obj: xr.Dataset | xr.DataArray):
    import rioxarray  # noqa: F401  registers the .rio accessor

    return obj.rio.crs


def keep_crs(out: Any, crs: Any) -> Any:
    # Only ever called on objects built inside this package; in place avoids rioxarray's deep
    # copy of every array (seconds on a province-sized cube).
    return out.rio.write_crs(crs, inplace=True) if crs is not None else out


# --------------------------------------------------------------------------- units
def in_units(da: xr.DataArray, expected: str, arg: str, *,
             warn_missing: bool = True) -> xr.DataArray:
    """``da`` in ``expected`` units: itself when they match, converted when only the spelling
    or scale differs (``Mg C ha-1``, ``kg C m-2`` -> ``t C ha-1``).

    Data without a ``units`` attribute are taken to be in ``expected`` (logged when
    ``warn_missing``). Units of another dimension or substance raise :class:`InputDataError`
    naming ``arg`` (:func:`terracarbon.units.check_dimension`).
    """
    units = da.attrs.get("units")
    if units is None:
        if warn_missing:
            log.warning("%s: '%s' has no 'units' attribute; assuming %r", arg, da.name, expected)
        return da
    if units == expected:
        return da
    return _units.convert(da, expected, name=arg)


def dataset_in_units(ds: xr.Dataset, names: Iterable[str], expected: str, arg: str, *,
                     required: Sequence[str] = ()) -> xr.Dataset:
    """``ds`` with each variable of ``names`` it holds in ``expected`` units (:func:`in_units`).

    Only the variables in ``required`` are logged when they have no units. ``ds`` itself is
    returned when nothing needed converting.
    """
    converted = {}
    for name in names:
        if name not in ds.data_vars:
            continue
        before = ds[name]
        after = in_units(before, expected, arg, warn_missing=name in required)
        if after is not before:
            converted[name] = after
    return ds.assign(converted) if converted else ds


# --------------------------------------------------------------------------- years
def years_of(obj: xr.Dataset | xr.DataArray) -> list[int]:
    return [int(y) for y in obj["year"].values] if "year" in obj.dims else []


def year_selections(ds: xr.Dataset) -> list[tuple[Any, dict]]:
    """``(year, isel)`` for every year of ``ds``; ``[(NA, {})]`` for data without years."""
    if "year" in ds.dims:
        return [(int(y), {"year": i}) for i, y in enumerate(ds["year"].values)]
    return [(pd.NA, {})]


def check_year(obj: xr.Dataset | xr.DataArray, year: Any, arg: str) -> int:
    if "year" not in obj.dims:
        raise ParameterError(
            f"{arg}={year!r}: the data have no 'year' dimension (dims {obj.dims})."
        )
    available = years_of(obj)
    if year not in available:
        raise ParameterError(
            f"{arg}={year!r} is not in the data; available years: {available}. Pick one of them."
        )
    return int(year)


def check_period(obj: xr.Dataset | xr.DataArray, start: Any, end: Any) -> tuple[int, int]:
    start = check_year(obj, start, "start")
    end = check_year(obj, end, "end")
    if start >= end:
        raise ParameterError(f"start={start} must be earlier than end={end}.")
    return start, end


# --------------------------------------------------------------------------- grids
def same_grid(ref: xr.DataArray | xr.Dataset, other: Any, arg: str) -> Any:
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


def check_2d(da: Any, arg: str) -> None:
    if not isinstance(da, xr.DataArray) or set(da.dims) != {"y", "x"}:
        dims = getattr(da, "dims", type(da).__name__)
        raise InputDataError(
            f"{arg}: expected a 2-D (y, x) DataArray, got {dims}; select one year with "
            ".sel(year=...)."
        )


def area_values(area_ha: xr.DataArray | float, ref: xr.DataArray) -> np.ndarray:
    """Pixel areas (ha) of ``ref``'s grid as a flat float64 array, row-major ``(y, x)``."""
    if isinstance(area_ha, xr.DataArray):
        area = in_units(same_grid(ref, area_ha, "area_ha"), "ha", "area_ha", warn_missing=False)
        values = np.asarray(area.transpose("y", "x").values, "float64").ravel()
    else:
        values = np.full(ref.sizes["y"] * ref.sizes["x"], float(area_ha))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InputDataError("area_ha: pixel areas must be finite and >= 0 (ha).")
    return values


# --------------------------------------------------------------------------- class codes
def codes_to_index(codes: np.ndarray, class_codes: Sequence[int], arg: str) -> np.ndarray:
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
