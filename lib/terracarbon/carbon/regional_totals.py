"""Totals over the map: storage per year and pool (Tg C) with intervals, and their checks.

Uncertainty propagation follows ``interval_method`` (see :mod:`terracarbon.carbon`): per-pixel
bounds are summed (``"correlated"``) or their half-widths added in quadrature
(``"independent"``), and the total pool's bounds are rebuilt from veg and soil with the same
rule unless the data carried their own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import (
    BOUNDS,
    DERIVED_ATTR,
    INTERVAL_METHODS,
    POOLS,
    IntervalMethod,
    dataset_in_units,
    history,
    pools_in,
    same_grid,
    var,
    year_selections,
    years_of,
)
from terracarbon.carbon.stocks import storage
from terracarbon.checks import check_choice, require_columns, require_vars
from terracarbon.conventions import AREA_HA_UNITS, STORAGE_UNITS, T_PER_PG, T_PER_TG
from terracarbon.errors import InputDataError, ModelError


def _sum(values: np.ndarray) -> float:
    finite = np.isfinite(values)
    return float(np.sum(values, where=finite)) if finite.any() else float("nan")


def _pool_interval(
    ds: xr.Dataset, pool: str, sel: dict, method: str
) -> tuple[float, float]:
    """Summed lower/upper storage (t C) of ``pool`` under ``method``; NaN when no bounds."""
    def arr(name: str) -> np.ndarray:
        return np.asarray(ds[name].isel(sel).values, dtype="float64")

    own = [var(pool, "storage", b) for b in BOUNDS]
    derived = pool == "total" and all(n in ds for n in own) and (
        DERIVED_ATTR in ds[own[0]].attrs
    )
    if derived or (pool == "total" and not all(n in ds for n in own)):
        parts = pools_in(ds, "storage")
    else:
        parts = [pool]
    names = [[var(p, "storage", b) for b in (None, *BOUNDS)] for p in parts]
    if not all(n in ds for group in names for n in group):
        return float("nan"), float("nan")
    if method == "correlated":
        return (sum(_sum(arr(g[1])) for g in names), sum(_sum(arr(g[2])) for g in names))
    value = sum(_sum(arr(g[0])) for g in names)
    lower_var = sum(_sum((arr(g[0]) - arr(g[1])) ** 2) for g in names)
    upper_var = sum(_sum((arr(g[2]) - arr(g[0])) ** 2) for g in names)
    return value - math.sqrt(lower_var), value + math.sqrt(upper_var)


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
        Output of :func:`~terracarbon.carbon.stocks.storage` (t C per pixel, with
        ``pixel_area`` in ha); storage in other carbon-mass units is converted.
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
        If storage variables or ``pixel_area`` are missing, have units of the wrong dimension
        or ``truth`` lacks years/pools.
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
    check_choice(interval_method, INTERVAL_METHODS, name="interval_method")
    present = pools_in(storage_ds, "storage")
    if not present:
        raise InputDataError(f"storage_ds: no pool storage (<pool>_carbon_storage for a pool "
                             f"of {list(POOLS[:-1])}); it has {list(storage_ds.data_vars)}.")
    pools = [var(p, "storage") for p in (*present, "total")]
    require_vars(storage_ds, [*pools, "pixel_area"], name="storage_ds")
    storage_ds = dataset_in_units(
        storage_ds, [var(p, "storage", b) for p in POOLS for b in (None, *BOUNDS)],
        STORAGE_UNITS, "storage_ds", required=pools)
    storage_ds = dataset_in_units(storage_ds, ["pixel_area"], AREA_HA_UNITS, "storage_ds")
    truth_storage = _truth_storage(storage_ds, truth) if truth is not None else None
    area = np.asarray(storage_ds["pixel_area"].values, dtype="float64")
    rows = []
    for year, sel in year_selections(storage_ds):
        for pool in (*present, "total"):
            values = np.asarray(storage_ds[var(pool, "storage")].isel(sel).values, "float64")
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
                truth_values = truth_storage[var(pool, "storage")].isel(tsel).values
                row["truth_Tg"] = _sum(np.asarray(truth_values, "float64")) / T_PER_TG
            rows.append(row)
    df = pd.DataFrame(rows)
    df["year"] = df["year"].astype("Int64")
    df.attrs = {
        "units": "Tg C (storage_Tg, lower_Tg, upper_Tg, truth_Tg); ha (area_ha)",
        "interval_method": interval_method,
        "history": history("totals", *(storage_ds[n] for n in pools),
                           interval_method=interval_method),
    }
    return df


def _truth_storage(storage_ds: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    pools = pools_in(storage_ds, "storage")
    require_vars(truth, [var(p, "density") for p in pools], name="truth")
    truth = same_grid(storage_ds, truth, "truth")
    if "year" in storage_ds.dims:
        missing = sorted(set(years_of(storage_ds)) - set(years_of(truth)))
        if "year" not in truth.dims or missing:
            raise InputDataError(
                f"truth: lacks years {missing or years_of(storage_ds)} of the storage data "
                f"(truth years: {years_of(truth)}); give truth for every mapped year."
            )
        truth = truth.sel(year=storage_ds["year"].values)
    plain = truth[[var(p, "density") for p in pools]]
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

    Examples
    --------
    >>> import pandas as pd
    >>> to_pg(pd.DataFrame({"pool": ["total"], "storage_Tg": [110.0]}))["storage_Pg"].tolist()
    [0.11]
    """
    tg_cols = [c for c in totals_df.columns if str(c).endswith("_Tg")]
    if not tg_cols:
        raise InputDataError(f"totals_df: no '_Tg' columns to convert; columns {list(totals_df)}.")
    out = totals_df.copy()
    for col in tg_cols:
        out[col] = out[col] * T_PER_TG / T_PER_PG
    out.attrs = {**totals_df.attrs, "units": "Pg C", "history": history("to_pg", totals_df)}
    return out.rename(columns={c: c[: -len("_Tg")] + "_Pg" for c in tg_cols})


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
    require_columns(totals_df, ["year", "pool", "storage_Tg"], name="totals_df",
                    fix="Pass the output of totals().")
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
                f"({density[absurd].round(1).tolist()} t C ha-1); check the density units "
                "(numbers in g C m-2 are 100 x those in t C ha-1) and that the 'units' "
                "attributes say what the numbers are"
            )
    wide = totals_df.pivot_table(index="year", columns="pool", values="storage_Tg",
                                 dropna=False) if totals_df["year"].notna().all() else None
    parts = [p for p in POOLS[:-1] if wide is not None and p in wide.columns]
    if parts and "total" in wide.columns:
        # float32 pixel sums: total = sum of the pools holds to float32 rounding, not beyond
        mismatch = ~np.isclose(wide["total"], wide[parts].sum(axis=1), rtol=1e-6, atol=0.0)
        if mismatch.any():
            problems.append(f"total != {' + '.join(parts)} in years "
                            f"{wide.index[mismatch].tolist()}")
    if problems:
        raise ModelError("implausible carbon totals: " + "; ".join(problems) + ".")
