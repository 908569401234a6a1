"""How robust a pixel's trend is to the model: Sen slopes and trend classes across the ensemble.

The maps stage evaluates the mapping model and its bootstrap members at a systematic sample of
pixels (``ensemble_sample.nc``, :func:`terracarbon.carbon.uncertainty.member_sample_density`).
Here every member's series gets the same Theil-Sen / Mann-Kendall analysis as the map
(:func:`~terracarbon.trends.mann_kendall.sen_mk`): the spread of the members' slopes is the
slope's model uncertainty, and the share of members whose 3-class trend equals the mapping
model's says whether a mapped "significant increase" would survive a refit on other plots.
The result lies on the sample grid (every ``step``-th pixel), not on the full grid: each
member would otherwise have to map every year in full.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from terracarbon.errors import InputDataError
from terracarbon.trends.mann_kendall import classify_trend, sen_mk

CENTRAL = "central"


def ensemble_trend_robustness(sample: xr.Dataset, variable: str, *, grid: xr.DataArray,
                              alpha: float = 0.05, min_valid: int = 8,
                              method: str = "original", interval: float = 0.9) -> xr.Dataset:
    """Members' Sen slopes and trend-class agreement on the sample grid.

    Parameters
    ----------
    sample : xarray.Dataset
        ``ensemble_sample.nc``: ``<variable>`` on ``(member, year, pixel)`` with ``row``/``col``
        coordinates; member ``"central"`` is the mapping model.
    variable : str
        The density variable (e.g. ``total_carbon_density``, t C ha-1).
    grid : xarray.DataArray
        Any ``(y, x)`` layer of the full grid (gives the coordinates of the sampled pixels).
    alpha, min_valid, method
        As :func:`~terracarbon.trends.mann_kendall.sen_mk`.
    interval : float
        Central probability of the slope bounds across members.

    Returns
    -------
    xarray.Dataset
        On the sample grid ``(y, x)``: ``slope`` (the mapping model's), ``slope_lower``,
        ``slope_median``, ``slope_upper`` (units of ``variable`` per year) across members,
        ``trend3`` (the mapping model's class) and ``agreement`` (share 0-1 of members with
        the same class).

    Raises
    ------
    InputDataError
        ``variable`` is not in the sample, or there is no ``central`` member.
    """
    if variable not in sample:
        raise InputDataError(f"ensemble sample: no {variable!r}; it has {sorted(sample.data_vars)}")
    da = sample[variable]
    members = [str(m) for m in da["member"].values]
    if CENTRAL not in members:
        raise InputDataError("ensemble sample: no 'central' member (the mapping model)")
    mk = sen_mk(da.transpose("member", "pixel", "year"), alpha=alpha, min_valid=min_valid,
                method=method)
    classes = classify_trend(mk, scheme="3class")
    central = classes.sel(member=CENTRAL)
    # bootstrap members only: other plausible models (alt:*) are not refits of this one
    refits = [m for m in members if m != CENTRAL and not m.startswith("alt:")]
    others = classes.sel(member=refits)
    slopes = mk["slope"].sel(member=refits)
    lo, mid, hi = ((1 - interval) / 2, 0.5, (1 + interval) / 2)
    q = slopes.quantile([lo, mid, hi], dim="member")
    units = mk["slope"].attrs.get("units", "")
    per_pixel = {
        "slope": (mk["slope"].sel(member=CENTRAL).values, units, "Theil-Sen slope, mapping model"),
        "slope_lower": (q.sel(quantile=lo).values, units, f"{lo:.0%} quantile across members"),
        "slope_median": (q.sel(quantile=mid).values, units, "median across members"),
        "slope_upper": (q.sel(quantile=hi).values, units, f"{hi:.0%} quantile across members"),
        "trend3": (central.values.astype(np.float32), "1", "3-class trend, mapping model"),
        "agreement": ((others == central).mean("member").values, "1",
                      "share of members with the mapping model's 3-class trend"),
    }
    rows, cols = sample["row"].values, sample["col"].values
    ur, ri = np.unique(rows, return_inverse=True)
    uc, ci = np.unique(cols, return_inverse=True)
    out = xr.Dataset(coords={"y": grid["y"].values[ur], "x": grid["x"].values[uc]})
    for name, (values, unit, long_name) in per_pixel.items():
        arr = np.full((ur.size, uc.size), np.nan, np.float32)
        arr[ri, ci] = values
        out[name] = (("y", "x"), arr, {"units": unit, "long_name": long_name})
    out["trend3"].attrs["flag_meanings"] = classes.attrs.get("flag_meanings", "")
    out["trend3"].attrs["flag_values"] = list(np.asarray(classes.attrs.get("flag_values", [])))
    out.attrs = {"members": len(refits), "interval": interval,
                 "description": "trend robustness across the bootstrap ensemble, on the "
                                "systematic pixel sample of the maps stage"}
    return out


def agreement_table(robust: xr.Dataset, *, threshold: float = 0.9) -> "pd.DataFrame":
    """Per mapped 3-class trend: sampled pixels, and the share (%) where at least
    ``threshold`` of the members agree with the mapping model."""
    import pandas as pd

    meanings = robust["trend3"].attrs["flag_meanings"].split()
    codes = robust["trend3"].attrs["flag_values"]
    trend = robust["trend3"].values.ravel()
    agree = robust["agreement"].values.ravel()
    rows = []
    for code, meaning in zip(codes, meanings, strict=True):
        if meaning == "nodata":
            continue
        sel = trend == code
        rows.append({"trend": meaning, "pixels": int(sel.sum()),
                     "robust_percent": float(100 * (agree[sel] >= threshold).mean())
                     if sel.any() else np.nan})
    return pd.DataFrame(rows)
