"""Land-use transitions: area from class to class, and the carbon change they explain."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import (
    POOLS,
    Pool,
    area_values,
    check_2d,
    codes_to_index,
    history,
    in_units,
    same_grid,
    var,
    years_of,
)
from terracarbon.carbon.stocks import add_total
from terracarbon.checks import check_choice, require_vars
from terracarbon.conventions import AREA_HA_UNITS, DENSITY_UNITS, LANDUSE_CLASSES, T_PER_TG
from terracarbon.errors import InputDataError


def _class_pair_index(
    lu_start: xr.DataArray, lu_end: xr.DataArray, codes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from_index = codes_to_index(np.asarray(lu_start.transpose("y", "x").values), codes,
                                "lu_start").ravel()
    to_index = codes_to_index(np.asarray(lu_end.transpose("y", "x").values), codes,
                              "lu_end").ravel()
    valid = (from_index >= 0) & (to_index >= 0)
    return from_index, to_index, valid


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
        Class code -> name; default :data:`~terracarbon.conventions.LANDUSE_CLASSES`.

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

    Examples
    --------
    Two 0.5 ha pixels; one forest pixel became cropland:

    >>> import xarray as xr
    >>> lu = lambda codes: xr.DataArray([codes], dims=("y", "x"), coords={"y": [0], "x": [0, 1]})
    >>> m = transition_matrix(lu([1, 1]), lu([1, 4]), 0.5, classes={1: "forest", 4: "cropland"})
    >>> m.loc["forest"].tolist()
    [0.5, 0.5]
    """
    classes = dict(LANDUSE_CLASSES if classes is None else classes)
    check_2d(lu_start, "lu_start")
    check_2d(lu_end, "lu_end")
    lu_end = same_grid(lu_start, lu_end, "lu_end")
    codes = list(classes)
    n = len(codes)
    from_index, to_index, valid = _class_pair_index(lu_start, lu_end, codes)
    area = area_values(area_ha, lu_start)
    pair = from_index[valid] * n + to_index[valid]
    matrix = np.bincount(pair, weights=area[valid], minlength=n * n).reshape(n, n)
    names = [classes[c] for c in codes]
    df = pd.DataFrame(matrix, index=pd.Index(names, name="from"),
                      columns=pd.Index(names, name="to"))
    df.attrs = {"units": AREA_HA_UNITS, "long_name": "land-use transition area",
                "history": history("transition_matrix", lu_start, lu_end, area_ha)}
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
        Class code -> name; default :data:`~terracarbon.conventions.LANDUSE_CLASSES`.
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
    years = years_of(landuse)
    if len(years) < 2:
        raise InputDataError(
            f"landuse: need a 'year' dimension with >= 2 years, got years {years} (dims "
            f"{landuse.dims})."
        )
    years = sorted(years)
    pairs = list(itertools.pairwise(years))
    if include_whole_period and (years[0], years[-1]) not in pairs:
        pairs.append((years[0], years[-1]))
    return {
        (a, b): transition_matrix(landuse.sel(year=a, drop=True), landuse.sel(year=b, drop=True),
                                  area_ha, classes=classes)
        for a, b in pairs
    }


def _pool_density(density: xr.DataArray | xr.Dataset, pool: str, arg: str) -> xr.DataArray:
    if isinstance(density, xr.DataArray):
        return in_units(density, DENSITY_UNITS, arg)
    name = var(pool, "density")
    if name not in density and pool == "total":
        density = add_total(density)
    require_vars(density, [name], name=arg)
    return in_units(density[name], DENSITY_UNITS, arg)


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
        Carbon density (t C ha-1, or other units of carbon mass per area, converted) on
        ``(y, x)`` at the start and end; a Dataset is reduced to ``<pool>_carbon_density``.
    lu_start, lu_end : xarray.DataArray
        Land-use codes on ``(y, x)`` at the start and end; 0 = nodata.
    area_ha : xarray.DataArray or float
        Pixel area (ha).
    pool : {"veg", "soil", "total"}
        Pool used when the densities are Datasets.
    classes : mapping of int to str, optional
        Class code -> name; default :data:`~terracarbon.conventions.LANDUSE_CLASSES`.

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
        Unknown codes, missing pools, units of the wrong dimension, non-2-D inputs.
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
    check_choice(pool, POOLS, name="pool")
    classes = dict(LANDUSE_CLASSES if classes is None else classes)
    d0 = _pool_density(density_start, pool, "density_start")
    d1 = _pool_density(density_end, pool, "density_end")
    for da, arg in ((d0, "density_start"), (d1, "density_end"), (lu_start, "lu_start"),
                    (lu_end, "lu_end")):
        check_2d(da, arg)
    d1 = same_grid(d0, d1, "density_end")
    lu_start = same_grid(d0, lu_start, "lu_start")
    lu_end = same_grid(d0, lu_end, "lu_end")
    codes = list(classes)
    n = len(codes)
    from_index, to_index, valid = _class_pair_index(lu_start, lu_end, codes)
    area = area_values(area_ha, d0)
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
        "history": history("conversion_decomposition", d0, d1, lu_start, lu_end, area_ha,
                           pool=pool),
    }
