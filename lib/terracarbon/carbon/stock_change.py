"""Change of carbon between years: per pixel, in tables, in one sentence, and by ecosystem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import (
    POOL_LONG_NAMES,
    POOLS,
    Pool,
    check_period,
    check_year,
    codes_to_index,
    crs_of,
    history,
    keep_crs,
    same_grid,
    var,
    with_attrs,
)
from terracarbon.checks import check_choice, require_columns, require_vars
from terracarbon.conventions import (
    DENSITY_UNITS,
    LANDUSE_CLASSES,
    STORAGE_UNITS,
    T_PER_PG,
    T_PER_TG,
)
from terracarbon.errors import InputDataError, ParameterError


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
    start, end = check_period(ds, start, end)
    names = [n for n in ds.data_vars
             if str(n).endswith(("_carbon_density", "_carbon_storage")) and "year" in ds[n].dims]
    if not names:
        raise InputDataError(
            f"ds: no annual '*_carbon_density' or '*_carbon_storage' variable; it has "
            f"{sorted(map(str, ds.data_vars))}."
        )
    out = xr.Dataset()
    for name in names:
        diff = ds[name].sel(year=end, drop=True) - ds[name].sel(year=start, drop=True)
        default_units = DENSITY_UNITS if "density" in str(name) else STORAGE_UNITS
        units = ds[name].attrs.get("units", default_units)
        long_name = ds[name].attrs.get("long_name", str(name).replace("_", " "))
        out[f"{name}_change"] = with_attrs(
            diff, units=units, long_name=f"change in {long_name}, {start} to {end}",
            history=history("change", ds[name], start=start, end=end),
            start_year=start, end_year=end,
        )
    return keep_crs(out, crs_of(ds))


def change_table(totals_df: pd.DataFrame) -> pd.DataFrame:
    """Change of total storage between consecutive years and over the whole period, per pool.

    Parameters
    ----------
    totals_df : pandas.DataFrame
        Output of :func:`~terracarbon.carbon.regional_totals.totals` (``year``, ``pool``, ``storage_Tg``
        in Tg C; ``truth_Tg`` optional).

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
    require_columns(totals_df, ["year", "pool", "storage_Tg"], name="totals_df",
                    fix="Pass the output of totals().")
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
                "history": history("change_table", totals_df)}
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
        +0.19 Pg C, soil −0.08 Pg C."`` (negative numbers with a true minus sign); with
        ``lower_Tg``/``upper_Tg`` columns each figure carries its interval in brackets
        (``+0.11 Pg C [+0.08, +0.14]``), described by ``change_df.attrs["interval_label"]``.

    Raises
    ------
    ParameterError
        Unknown ``units`` or a period not in the table (the message lists those available).
    """
    check_choice(units, ("Tg", "Pg"), name="units")
    if "change_Tg" not in change_df.columns:
        raise InputDataError("change_df: no 'change_Tg' column; pass the output of change_table().")
    if start is None and end is None:
        rows = change_df[change_df["period"] == "whole"]
    else:
        start = int(change_df["start_year"].min()) if start is None else start
        end = int(change_df["end_year"].max()) if end is None else end
        rows = change_df[(change_df["start_year"] == start) & (change_df["end_year"] == end)]
    rows = rows.drop_duplicates("pool").set_index("pool")
    parts = [p for p in POOLS[:-1] if p in rows.index]
    if "total" not in rows.index or not parts:
        periods = sorted(set(zip(change_df["start_year"], change_df["end_year"], strict=True)))
        raise ParameterError(
            f"describe_change: period {start}-{end} not in change_df for all pools; "
            f"available periods: {periods}."
        )
    scale = 1.0 if units == "Tg" else T_PER_TG / T_PER_PG
    fig = {p: format_change(rows.loc[p], scale=scale, decimals=decimals, units=units)
           for p in (*parts, "total")}
    s, e = int(rows.loc["total", "start_year"]), int(rows.loc["total", "end_year"])
    split = ", ".join(f"{POOL_LONG_NAMES[p].split(' ')[0]} {fig[p]}" for p in parts)
    text = f"From {s} to {e} total carbon storage changed by {fig['total']}: {split}."
    if {"lower_Tg", "upper_Tg"} <= set(rows.columns) and rows["lower_Tg"].notna().any():
        text += f" Brackets: {change_df.attrs.get('interval_label', 'the interval')}."
    return text


def format_change(row: pd.Series, *, scale: float = 1.0, decimals: int = 2,
                  units: str = "Tg") -> str:
    """``+43.10 Tg C [+31.00, +55.20]``: a change (``change_Tg`` scaled) and, where the row
    has ``lower_Tg``/``upper_Tg``, its interval."""
    text = f"{_signed(float(row['change_Tg']) * scale, decimals)} {units} C"
    lower, upper = row.get("lower_Tg", np.nan), row.get("upper_Tg", np.nan)
    if pd.notna(lower) and pd.notna(upper):
        text += (f" [{_signed(float(lower) * scale, decimals)}, "
                 f"{_signed(float(upper) * scale, decimals)}]")
    return text


def _storage_change_values(
    storage_ds: xr.Dataset, pool: str, start: int, end: int
) -> np.ndarray:
    name = var(pool, "storage")
    require_vars(storage_ds, [name], name="storage_ds")
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
        Output of :func:`~terracarbon.carbon.stocks.storage` on ``(year, y, x)`` (t C per
        pixel).
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
    check_choice(pool, POOLS, name="pool")
    check_choice(attribute_to, ("end", "start"), name="attribute_to")
    start, end = check_period(storage_ds, start, end)
    require_vars(storage_ds, ["pixel_area"], name="storage_ds")
    delta = _storage_change_values(storage_ds, pool, start, end).ravel()
    year = end if attribute_to == "end" else start
    lu = same_grid(storage_ds, landuse, "landuse")
    if "year" in lu.dims:
        lu = lu.sel(year=check_year(lu, year, f"landuse year ({attribute_to})"))
    codes = list(classes)
    index = codes_to_index(np.asarray(lu.transpose("y", "x").values), codes, "landuse").ravel()
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
        "history": history("ecosystem_contribution", storage_ds[var(pool, "storage")], landuse,
                           start=start, end=end, pool=pool, attribute_to=attribute_to),
    }
    return df
