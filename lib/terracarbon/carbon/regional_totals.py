"""Totals over the map: storage per year and pool (Tg C) with intervals, and their checks.

Uncertainty propagation follows ``interval_method`` (see :mod:`terracarbon.carbon`): per-pixel
bounds are summed (``"correlated"``) or their half-widths added in quadrature
(``"independent"``), and the total pool's bounds are rebuilt from veg and soil with the same
rule unless the data carried their own.
"""

from __future__ import annotations

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


def _interval_parts(ds: xr.Dataset, pool: str) -> list[str] | None:
    """The pools whose per-pixel bounds make ``pool``'s interval: the pool itself, or veg +
    soil (...) for a total whose bounds were derived or are absent; None without bounds."""
    own = [var(pool, "storage", b) for b in BOUNDS]
    derived = pool == "total" and all(n in ds for n in own) and (
        DERIVED_ATTR in ds[own[0]].attrs
    )
    if derived or (pool == "total" and not all(n in ds for n in own)):
        parts = pools_in(ds, "storage")
    else:
        parts = [pool]
    names = [var(p, "storage", b) for p in parts for b in (None, *BOUNDS)]
    return parts if all(n in ds for n in names) else None


# one kind of per-year sum per table cell: the finite values, the area where they are
# finite, or squared differences of two variables (half-widths added in quadrature)
_SUM, _AREA, _SQUARED = "sum", "area", "squared"


def _block_sums(*blocks: np.ndarray, specs: tuple, n_inputs: int) -> np.ndarray:
    """Per-year sums of one spatial block: ``(year, 1, 1, 2 * len(specs))`` float64, each
    spec's sum then its number of finite pixels. ``blocks`` are the inputs, ``(year, y, x)``,
    then the pixel area ``(y, x)`` in ha."""
    inputs, area = blocks[:n_inputs], np.asarray(blocks[n_inputs], dtype="float64")
    out = np.empty((inputs[0].shape[0], 1, 1, 2 * len(specs)))
    for i, (kind, first, second) in enumerate(specs):
        values = np.asarray(inputs[first], dtype="float64")
        if kind == _SQUARED:
            values = (values - inputs[second]) ** 2
        finite = np.isfinite(values)
        summed = np.broadcast_to(area, values.shape) if kind == _AREA else values
        out[:, 0, 0, 2 * i] = np.sum(summed, axis=(1, 2), where=finite)
        out[:, 0, 0, 2 * i + 1] = finite.sum(axis=(1, 2))
    return out


def _year_sums(storage_ds: xr.Dataset, truth_storage: xr.Dataset | None, pools: list[str],
               method: str) -> dict[str, np.ndarray]:
    """Every per-year sum the totals table needs (t C; ha), ``{key: (year,) float64}``.

    One pass: on a dask-backed (Zarr) map one task per spatial chunk reads that chunk of every
    pool, bound and truth variable and reduces it to a few numbers, so each chunk is read
    once for the whole table and memory holds a few chunks. Sums without a finite pixel are
    NaN; areas are 0 there."""
    bound_parts = list(dict.fromkeys(p for pool in pools
                                     for p in (_interval_parts(storage_ds, pool) or [])))
    inputs: list[xr.DataArray] = []

    def column(da: xr.DataArray) -> int:
        inputs.append(da)
        return len(inputs) - 1

    specs: dict[str, tuple] = {}
    storage_column: dict[str, int] = {}
    for pool in pools:
        values = storage_column[pool] = column(storage_ds[var(pool, "storage")])
        specs[f"storage/{pool}"] = (_SUM, values, None)
        specs[f"area/{pool}"] = (_AREA, values, None)
        if truth_storage is not None:
            specs[f"truth/{pool}"] = (_SUM, column(truth_storage[var(pool, "storage")]), None)
    for part in bound_parts:
        value = storage_column[part]
        lower, upper = (column(storage_ds[var(part, "storage", b)]) for b in BOUNDS)
        if method == "correlated":
            specs[f"lower/{part}"], specs[f"upper/{part}"] = (_SUM, lower, None), (_SUM, upper, None)
        else:
            specs[f"lower/{part}"] = (_SQUARED, value, lower)
            specs[f"upper/{part}"] = (_SQUARED, upper, value)
    space = [d for d in inputs[0].dims if d != "year"]
    arrays = [(da.transpose("year", *space) if "year" in da.dims else da.expand_dims(year=[0]))
              for da in inputs]
    area = storage_ds["pixel_area"].transpose(*space)
    options = dict(specs=tuple(specs.values()), n_inputs=len(arrays))
    lazy = [a for a in (*arrays, area) if a.chunks is not None]
    if lazy:
        import dask.array as dsa

        chunked_maps = [a for a in lazy if a.ndim == 3]
        if chunked_maps:
            year_chunks, y_chunks, x_chunks = chunked_maps[0].chunks
        else:  # only the pixel area is chunked: its blocks set the pass
            (y_chunks, x_chunks), year_chunks = area.chunks, (arrays[0].sizes["year"],)
        data = [dsa.asarray(a.data).rechunk((year_chunks, y_chunks, x_chunks)) for a in arrays]
        data.append(dsa.asarray(area.data).rechunk((y_chunks, x_chunks)))
        per_block = dsa.map_blocks(
            _block_sums, *data, **options, dtype="float64", new_axis=3,
            chunks=(year_chunks, (1,) * len(y_chunks), (1,) * len(x_chunks),
                    (2 * len(specs),)))
        table = per_block.sum(axis=(1, 2)).compute()
    else:
        table = _block_sums(*(a.values for a in arrays), area.values, **options)[:, 0, 0]
    sums = {}
    for i, (key, (kind, _, _)) in enumerate(specs.items()):
        total, count = table[:, 2 * i], table[:, 2 * i + 1]
        sums[key] = total if kind == _AREA else np.where(count > 0, total, np.nan)
    return sums


def _pool_interval(sums: dict[str, np.ndarray], parts: list[str] | None, method: str
                   ) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Summed lower/upper storage (t C) of a pool from its parts' sums; NaN without bounds."""
    if parts is None:
        return float("nan"), float("nan")
    lower, upper = (sum(sums[f"{b}/{p}"] for p in parts) for b in BOUNDS)
    if method == "correlated":
        return lower, upper
    value = sum(sums[f"storage/{p}"] for p in parts)
    return value - np.sqrt(lower), value + np.sqrt(upper)


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

    Streams: on dask-backed maps (stage 03's Zarr store) every sum of the table comes from one
    pass, one task per chunk, so each chunk of each variable is read once and memory holds a
    few chunks (plus one year of a truth stored one year per chunk). Sums are float64.
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
    pool_names = [*present, "total"]
    sums = _year_sums(storage_ds, truth_storage, pool_names, interval_method)
    intervals = {pool: _pool_interval(sums, _interval_parts(storage_ds, pool), interval_method)
                 for pool in pool_names}

    def at(value: np.ndarray | float, index: int) -> float:
        return float(value[index]) if isinstance(value, np.ndarray) else float(value)

    rows = []
    for sel, (year, _) in enumerate(year_selections(storage_ds)):
        for pool in pool_names:
            lower, upper = intervals[pool]
            row = {
                "year": year,
                "pool": pool,
                "storage_Tg": at(sums[f"storage/{pool}"], sel) / T_PER_TG,
                "lower_Tg": at(lower, sel) / T_PER_TG,
                "upper_Tg": at(upper, sel) / T_PER_TG,
                "area_ha": at(sums[f"area/{pool}"], sel),
            }
            if truth_storage is not None:
                row["truth_Tg"] = at(sums[f"truth/{pool}"], sel) / T_PER_TG
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
