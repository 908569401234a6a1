"""Annual sinks from monthly flux maps: per pixel, per region, per land-use class and transition.

Sign convention (:data:`terracarbon.conventions.NEE_UPTAKE_SIGN`): NEE < 0 is uptake by the
ecosystem; the **sink** is reported as a positive number, ``sink = -NEE``; NEP > 0 is a sink.

Units: monthly fluxes g C m-2 month-1; annual sums g C m-2 yr-1; regional totals Tg C yr-1
(``g m-2 yr-1 x m2 / 1e12``). A pixel's area comes from the grid
(:func:`terracarbon.carbon.area.pixel_area_ha`, ha; 1 ha = 1e4 m2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import conventions
from terracarbon.data.io import history_line
from terracarbon.errors import InputDataError

G_PER_TG = conventions.G_PER_T * conventions.T_PER_TG
"""Grams in a teragram (1e12)."""

M2_PER_HA = conventions.M2_PER_HA
"""Square metres in a hectare."""

SINK_ATTRS = {"units": conventions.FLUX_ANNUAL_UNITS,
              "long_name": "carbon sink (-NEE; positive = uptake)"}


def annual_fluxes(monthly: xr.Dataset, *, min_months: int = 12) -> xr.Dataset:
    """Annual sums of monthly fluxes and the sink, per pixel (g C m-2 yr-1).

    Every variable of ``monthly`` (``nee``, ``gpp``, ``reco`` and their ``_lower``/``_upper``
    bounds, g C m-2 month-1) is summed over the months of each year
    (:func:`terracarbon.flux.aggregate.monthly_to_annual`, ``cell_methods: time: sum``;
    a year with fewer than ``min_months`` valid months is NaN). ``sink = -nee`` is added
    when NEE is present, with bounds ``sink_lower = -nee_upper`` and ``sink_upper =
    -nee_lower``.
    """
    from terracarbon.flux.aggregate import monthly_to_annual

    rules = {name: "sum" for name in monthly.data_vars}
    annual = monthly_to_annual(monthly, rules=rules, min_months=min_months)
    if "nee" in annual:
        annual["sink"] = (-annual["nee"]).assign_attrs(
            {**SINK_ATTRS, "cell_methods": "time: sum",
             "history": history_line("annual_fluxes", sink="-nee")})
        for mine, other in (("lower", "upper"), ("upper", "lower")):
            if f"nee_{other}" in annual:
                annual[f"sink_{mine}"] = (-annual[f"nee_{other}"]).assign_attrs(
                    {**SINK_ATTRS, "long_name": f"carbon sink, {mine} bound"})
    return annual


def regional_totals(annual: xr.Dataset, area_ha: xr.DataArray, *,
                    variables: Sequence[str] | None = None) -> pd.DataFrame:
    """Regional annual totals (Tg C yr-1) of the annual flux maps.

    ``total = sum over pixels of value (g C m-2 yr-1) x area (ha) x 1e4 / 1e12``, NaN pixels
    skipped. Returns one row per year and variable: ``year, variable, total_Tg``, plus
    ``lower_Tg``/``upper_Tg`` where ``<variable>_lower``/``_upper`` exist (the sums of the
    pixel bounds: an outer bracket, as wide as if every pixel erred the same way).

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"nee": (("year", "y", "x"), np.full((1, 2, 2), -100.0))},
    ...                 coords={"year": [2020]})
    >>> area = xr.DataArray(np.full((2, 2), 100.0), dims=("y", "x"))  # 4 x 1 km2
    >>> regional_totals(ds, area)["total_Tg"].tolist()   # -100 g m-2 x 4e6 m2 = -4e8 g
    [-0.0004]
    """
    variables = [v for v in (variables or annual.data_vars)
                 if v in annual and not v.endswith(("_lower", "_upper"))
                 and "year" in annual[v].dims]
    area_m2 = np.asarray(area_ha.values, dtype=np.float64) * M2_PER_HA
    rows = []
    for name in variables:
        for key, suffix in (("total_Tg", ""), ("lower_Tg", "_lower"), ("upper_Tg", "_upper")):
            if f"{name}{suffix}" not in annual:
                continue
            values = np.asarray(annual[f"{name}{suffix}"].transpose(
                "year", "y", "x").values, dtype=np.float64)
            sums = np.nansum(values * area_m2, axis=(1, 2)) / G_PER_TG
            # a year with no mapped pixel has no total (not zero): e.g. the first year when
            # the model needs the months before it
            sums = np.where(np.isfinite(values).any(axis=(1, 2)), sums, np.nan)
            for year, total in zip(annual["year"].values, sums, strict=True):
                rows.append({"year": int(year), "variable": name, "key": key,
                             "value": float(total)})
    if not rows:
        raise InputDataError(f"regional_totals: none of {variables} is an annual variable")
    table = pd.DataFrame(rows).pivot_table(index=["variable", "year"], columns="key",
                                           values="value").reset_index()
    table.columns.name = None
    return table


def totals_by_class(annual: xr.DataArray, classes: xr.DataArray, area_ha: xr.DataArray, *,
                    names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Regional totals of one annual flux per class and year (Tg C yr-1) and class area (ha).

    ``classes`` may be ``(year, y, x)`` (the class of each pixel that year, e.g. land use)
    or ``(y, x)``. Class code 0 is nodata. Returns ``year, code, class, area_ha, total_Tg,
    mean`` (mean in the flux's units, area-weighted).
    """
    names = dict(names or conventions.LANDUSE_CLASSES)
    values = np.asarray(annual.transpose("year", "y", "x").values, np.float64)
    cls = np.asarray(classes.values)
    area = np.asarray(area_ha.values, np.float64)
    rows = []
    for i, year in enumerate(annual["year"].values):
        c = cls[list(classes["year"].values).index(year)] if "year" in classes.dims else cls
        v = values[i]
        ok = np.isfinite(v) & (c > 0)
        for code in np.unique(c[ok]):
            sel = ok & (c == code)
            a = area[sel]
            total = float(np.sum(v[sel] * a) * M2_PER_HA / G_PER_TG)
            rows.append({"year": int(year), "code": int(code),
                         "class": names.get(int(code), str(int(code))),
                         "area_ha": float(a.sum()), "total_Tg": total,
                         "mean": float(np.sum(v[sel] * a) / a.sum())})
    return pd.DataFrame(rows)


def totals_by_transition(annual: xr.DataArray, landuse: xr.DataArray, area_ha: xr.DataArray, *,
                         names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Mean annual flux per land-use transition from the first to the last year.

    Each pixel's flux is averaged over the years (NaN skipped) and grouped by its land use
    in the first and the last year of ``landuse``. Returns ``from_code, to_code, from, to,
    area_ha, mean`` (flux units), ``total_Tg`` (Tg C yr-1, the mean annual total of those
    pixels) and ``changed`` (from != to); rows sorted by area.
    """
    names = dict(names or conventions.LANDUSE_CLASSES)
    mean = np.asarray(annual.mean("year", skipna=True).transpose("y", "x").values,
                      np.float64)
    first = np.asarray(landuse.isel(year=0).values)
    last = np.asarray(landuse.isel(year=-1).values)
    area = np.asarray(area_ha.values, np.float64)
    ok = np.isfinite(mean) & (first > 0) & (last > 0)
    frame = pd.DataFrame({"from_code": first[ok].astype(int), "to_code": last[ok].astype(int),
                          "area_ha": area[ok], "weighted": mean[ok] * area[ok]})
    table = frame.groupby(["from_code", "to_code"], as_index=False)[["area_ha", "weighted"]].sum()
    table["mean"] = table["weighted"] / table["area_ha"]
    table["total_Tg"] = table["weighted"] * M2_PER_HA / G_PER_TG
    table["from"] = table["from_code"].map(lambda c: names.get(int(c), str(c)))
    table["to"] = table["to_code"].map(lambda c: names.get(int(c), str(c)))
    table["changed"] = table["from_code"] != table["to_code"]
    return (table.drop(columns="weighted")
            .sort_values("area_ha", ascending=False).reset_index(drop=True)
            [["from_code", "to_code", "from", "to", "changed", "area_ha", "mean", "total_Tg"]])


TG_PER_PG = conventions.T_PER_PG / conventions.T_PER_TG
"""Teragrams in a petagram (1000)."""


def with_petagrams(totals: pd.DataFrame) -> pd.DataFrame:
    """``totals`` with ``total_Pg`` (and ``lower_Pg``/``upper_Pg`` where bounds exist):
    the national-scale unit of the sink literature (Pg C yr-1 = 1000 Tg C yr-1).

    >>> with_petagrams(pd.DataFrame({"total_Tg": [380.0]}))["total_Pg"].tolist()
    [0.38]
    """
    out = totals.copy()
    for key in ("total", "lower", "upper"):
        if f"{key}_Tg" in out:
            out[f"{key}_Pg"] = out[f"{key}_Tg"] / TG_PER_PG
    return out
