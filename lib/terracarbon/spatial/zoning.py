"""Diagnostic zoning: LISA clusters crossed with future-trend classes by an ordered rule list,
and the tables that summarise clusters and zones (area, share, carbon).

Cluster codes are :data:`terracarbon.conventions.LISA_CLUSTER`'s; future-trend codes are
:data:`terracarbon.conventions.FUTURE_TREND`'s, as ``trends.future_trend`` writes them
(0 nodata, 1 continuous improvement, 2 future degradation, 3 continuous degradation,
4 future improvement, 5 no significant trend); a raster's own ``flag_values``/
``flag_meanings`` take precedence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.conventions import AREA_HA_UNITS, LISA_CLUSTER, T_PER_TG
from terracarbon.data import io
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.spatial.autocorrelation import int8_flags
from terracarbon.spatial.weights import check_same_grid, materialise
from terracarbon.carbon.area import uniform_pixel_area_ha
from terracarbon.spatial.rules import CLUSTER_CLASSES, FUTURE_TREND_CLASSES, parse_rules

__all__ = [
    "CLUSTER_CLASSES",
    "FUTURE_TREND_CLASSES",
    "cluster_shares",
    "diagnostic_zoning",
    "persistent_cluster",
    "zone_table",
]

def cluster_shares(
    cluster: xr.DataArray | xr.Dataset,
    *,
    pixel_area_ha: float | None = None,
    valid: xr.DataArray | None = None,
    dim: str = "year",
) -> pd.DataFrame:
    """Area and share of each LISA cluster type (per ``dim`` slice if present).

    Parameters
    ----------
    cluster : xarray.DataArray or xarray.Dataset
        LISA cluster codes (:data:`CLUSTER_CLASSES`), dims ([dim,] "y", "x"), or the
        Dataset returned by :func:`~terracarbon.spatial.autocorrelation.lisa` (its
        ``quadrant > 0`` marks the analysed cells).
    pixel_area_ha : float, optional
        Area of one pixel (ha); default from the grid
        (:func:`~terracarbon.carbon.area.uniform_pixel_area_ha`).
    valid : xarray.DataArray of bool, optional
        Analysed cells (the share denominator). Default: from the Dataset's quadrant,
        else every cell.
    dim : str
        Extra dimension (calendar year) to report per slice.

    Returns
    -------
    pandas.DataFrame
        Columns [``dim``,] ``cluster`` (name), ``code``, ``n_pixels``, ``area_ha`` (ha),
        ``share_pct`` (% of analysed cells).
    """
    if isinstance(cluster, xr.Dataset):
        if "cluster" not in cluster or "quadrant" not in cluster:
            raise InputDataError("cluster: a Dataset must be lisa() output with 'cluster'.")
        valid = cluster["quadrant"] > 0 if valid is None else valid
        cluster = cluster["cluster"]
    if not isinstance(cluster, xr.DataArray) or not {"y", "x"} <= set(cluster.dims):
        raise InputDataError("cluster: expected a DataArray with dims ('y', 'x').")
    area = uniform_pixel_area_ha(cluster, pixel_area_ha)
    valid = xr.ones_like(cluster, dtype=bool) if valid is None else valid.astype(bool)
    codes = xr.DataArray(list(CLUSTER_CLASSES), dims="code")
    counts = ((cluster == codes) & valid).sum(("y", "x"))
    totals = valid.sum(("y", "x"))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = 100.0 * counts / totals
    frame = xr.Dataset({"n_pixels": counts, "share_pct": share}).to_dataframe().reset_index()
    frame = frame[[c for c in (dim, "code", "n_pixels", "share_pct") if c in frame.columns]]
    frame.insert(frame.columns.get_loc("code"), "cluster", frame["code"].map(CLUSTER_CLASSES))
    frame.insert(frame.columns.get_loc("share_pct"), "area_ha", frame["n_pixels"] * area)
    return frame.reset_index(drop=True)


def persistent_cluster(
    cluster_by_year: xr.DataArray, *, dim: str = "year", min_share: float = 1.0
) -> xr.DataArray:
    """The LISA cluster type a pixel holds in at least ``min_share`` of the years.

    Parameters
    ----------
    cluster_by_year : xarray.DataArray, dims (dim, "y", "x")
        Cluster codes per year (:data:`CLUSTER_CLASSES`).
    dim : str
        The year dimension.
    min_share : float in (0, 1]
        Fraction of years required: 1.0 = all years; 0.51 = a strict majority.

    Returns
    -------
    xarray.DataArray (int8, dims ("y", "x"))
        The most frequent significant cluster code if its share of years is
        >= ``min_share``, else 0. Ties go to the lower code (impossible for
        ``min_share > 0.5``).
    """
    if not isinstance(cluster_by_year, xr.DataArray) or dim not in cluster_by_year.dims:
        raise InputDataError(f"cluster_by_year: expected a DataArray with a '{dim}' dim.")
    if not isinstance(min_share, (int, float)) or not 0 < min_share <= 1:
        raise ParameterError(f"min_share={min_share!r}: expected a fraction in (0, 1].")
    years = cluster_by_year.sizes[dim]
    significant = [c for c in LISA_CLUSTER.codes if c != 0]  # 1..4: HH LH LL HL
    codes = xr.DataArray(significant, dims="code", coords={"code": significant})
    counts = (cluster_by_year == codes).sum(dim)
    best = counts.argmax("code")
    best_count = counts.max("code")
    # 1e-9 guards min_share * years landing a hair above an integer count
    keep = best_count >= min_share * years - 1e-9
    out = xr.where(keep & (best_count > 0), best + 1, 0).astype(np.int8)
    out.attrs = {
        "units": "1",
        "long_name": f"persistent LISA cluster (>= {min_share:.0%} of {years} years)",
        **int8_flags(LISA_CLUSTER),
        "history": io.update_history(
            io.history_line("spatial.persistent_cluster", dim=dim, min_share=min_share),
            cluster_by_year),
    }
    return out.rename("persistent_cluster")


def _future_names(future_trend: xr.DataArray) -> dict[str, int]:
    """Class name -> code, from the raster's flag attributes when it has them."""
    values, meanings = future_trend.attrs.get("flag_values"), future_trend.attrs.get(
        "flag_meanings"
    )
    if values is not None and meanings is not None and len(meanings.split()) == len(values):
        names = {m: int(v) for v, m in zip(values, meanings.split(), strict=True)}
        names.pop("nodata", None)
        return names
    return {v: k for k, v in FUTURE_TREND_CLASSES.items()}


def diagnostic_zoning(
    cluster: xr.DataArray,
    future_trend: xr.DataArray,
    *,
    rules: list[dict[str, Any]],
    valid: xr.DataArray | None = None,
) -> xr.Dataset:
    """Management zones from LISA clusters crossed with future-trend classes.

    Parameters
    ----------
    cluster : xarray.DataArray, dims ("y", "x")
        LISA cluster codes (0 not significant, 1 HH, 2 LH, 3 LL, 4 HL).
    future_trend : xarray.DataArray, dims ("y", "x")
        Future-trend class codes on the same grid, as ``trends.future_trend`` writes
        them (:data:`FUTURE_TREND_CLASSES`: 1 continuous improvement, 2 future
        degradation, 3 continuous degradation, 4 future improvement, 5 no significant
        trend, 0 nodata); its ``flag_values``/``flag_meanings``, if present, define the
        names.
    rules : list of dict
        ``{"cluster": "HH", "future": "continuous_improvement", "zone": "consolidate"}``.
        ``cluster`` takes HH/LH/LL/HL/NS (or codes), ``future`` the class names (or
        codes); "*" matches anything. The first matching rule wins; unmatched cells are
        zone "other".
    valid : xarray.DataArray of bool, optional
        Cells to zone; others get zone -1 ("nodata"). Default: cells where both inputs
        are non-NaN and the future-trend code is not 0 (nodata). When given, cells with
        future-trend nodata are still zoned (only rules with future "*" can match).

    Returns
    -------
    xarray.Dataset
        ``zone`` (int16): 0 "other", 1.. the rules' zone names in order of first
        appearance, -1 nodata; ``flag_values``/``flag_meanings`` list them.

    Raises
    ------
    ParameterError
        Empty or malformed rules.
    GridMismatchError
        The two rasters are not on the same grid.
    """
    for name, arr in (("cluster", cluster), ("future_trend", future_trend)):
        if not isinstance(arr, xr.DataArray) or set(arr.dims) != {"y", "x"}:
            raise InputDataError(f"{name}: expected a DataArray with dims ('y', 'x').")
    check_same_grid(cluster, future_trend, ("cluster", "future_trend"))
    parsed, zone_names, problems = parse_rules(rules, _future_names(future_trend))
    if problems:
        raise ParameterError("; ".join(
            f"rules{'' if p.index is None else f'[{p.index}]'}"
            f"{'' if p.field is None else f'[{p.field!r}]'}={p.value!r}: {p.expected}"
            for p in problems) + ".")
    c = cluster.transpose("y", "x")
    f = future_trend.transpose("y", "x")
    if valid is None:
        valid = c.notnull() & f.notnull() & (f != 0)
    zone = xr.full_like(c, -2, dtype=np.int16)
    for c_code, f_code, z_code in parsed:
        hit = zone == -2
        if c_code is not None:
            hit &= c == c_code
        if f_code is not None:
            hit &= f == f_code
        zone = xr.where(hit, z_code, zone)
    zone = xr.where(valid, xr.where(zone == -2, 0, zone), -1).astype(np.int16)
    meanings = ["nodata", "other", *zone_names]
    zone.attrs = {
        "units": "1",
        "long_name": "diagnostic zone",
        "flag_values": np.arange(-1, len(zone_names) + 1, dtype=np.int16),
        "flag_meanings": " ".join(m.replace(" ", "_") for m in meanings),
        "history": io.update_history(
            io.history_line("spatial.diagnostic_zoning", rules=rules), cluster, future_trend),
    }
    return xr.Dataset({"zone": zone.rename("zone")}, attrs={"history": zone.attrs["history"]})


def zone_table(
    zone_ds: xr.Dataset | xr.DataArray,
    carbon_storage_t: xr.DataArray | None = None,
    *,
    pixel_area_ha: float | None = None,
) -> pd.DataFrame:
    """Area, area share and carbon storage of each diagnostic zone.

    Parameters
    ----------
    zone_ds : xarray.Dataset or DataArray
        :func:`diagnostic_zoning` output (or its ``zone`` variable).
    carbon_storage_t : xarray.DataArray, optional
        Carbon storage per pixel (t C) on the same grid; NaN ignored.
    pixel_area_ha : float, optional
        Area of one pixel (ha); default from the grid
        (:func:`~terracarbon.carbon.area.uniform_pixel_area_ha`).

    Returns
    -------
    pandas.DataFrame
        One row per zone (nodata excluded): ``zone``, ``code``, ``n_pixels``,
        ``area_ha`` (ha), ``area_share_pct`` (% of zoned cells), and
        ``carbon_storage_Tg`` (Tg C) when storage is given.
    """
    zone = zone_ds["zone"] if isinstance(zone_ds, xr.Dataset) else zone_ds
    if not isinstance(zone, xr.DataArray) or "flag_meanings" not in zone.attrs:
        raise InputDataError(
            "zone_ds: expected diagnostic_zoning output (a 'zone' raster with flag_meanings)."
        )
    area = uniform_pixel_area_ha(zone, pixel_area_ha)
    values = np.asarray(zone.attrs["flag_values"])
    names = zone.attrs["flag_meanings"].split()
    z = materialise(zone.data)
    zoned = int((z >= 0).sum())
    rows = []
    storage = None
    if carbon_storage_t is not None:
        check_same_grid(zone, carbon_storage_t, ("zone_ds", "carbon_storage_t"))
        storage = materialise(carbon_storage_t.transpose(*zone.dims).data).astype(np.float64)
    for code, name in zip(values, names, strict=True):
        if code < 0:
            continue
        inside = z == code
        n_pix = int(inside.sum())
        row = {"zone": name, "code": int(code), "n_pixels": n_pix, "area_ha": n_pix * area,
               "area_share_pct": 100.0 * n_pix / zoned if zoned else math.nan}
        if storage is not None:
            row["carbon_storage_Tg"] = float(np.nansum(storage[inside])) / T_PER_TG
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["units"] = {"area_ha": AREA_HA_UNITS, "carbon_storage_Tg": "Tg C"}
    return frame
