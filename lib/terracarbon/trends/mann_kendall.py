"""Theil–Sen slope and Mann–Kendall trend test, per pixel and for one summary series.

Mann–Kendall with the tie-corrected variance (original) or an autocorrelation-corrected
variant (Hamed–Rao, Yue–Wang, trend-free pre-whitening); Theil–Sen slope per year over the
real time coordinate. :func:`classify_trend` turns a result into the 3- or 5-class maps of
:data:`terracarbon.conventions.TREND3` / :data:`~terracarbon.conventions.TREND5`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from terracarbon.checks import check_alpha, check_choice
from terracarbon.conventions import TREND3, TREND5, per_year
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.trends import kernels as _k
from terracarbon.trends.core import (
    check_landuse,
    check_min_valid,
    check_series,
    flagged,
    float_data,
    general_subset,
    pixels_by_time,
    single_time_chunk,
    stack_outputs,
    time_in_years,
)

__all__ = ["classify_trend", "sen_mk", "series_trend", "steepest_pixel"]


# --------------------------------------------------------------------------- Sen / MK
def _sen_mk_block(block: np.ndarray, *, t: np.ndarray, min_valid: int, method: str,
                  z_crit: float) -> np.ndarray:
    lead = block.shape[:-1]
    x = pixels_by_time(block)
    n = x.shape[1]
    out = np.empty((len(_k.SEN_MK_OUTPUTS), x.shape[0]), dtype=np.float64)
    n_valid = np.isfinite(x).sum(axis=1)
    lockstep = method == "original" and n >= min_valid
    fast = np.flatnonzero(n_valid == n) if lockstep else np.empty(0, dtype=np.int64)
    rest = np.flatnonzero(n_valid != n) if lockstep else np.arange(x.shape[0])
    if fast.size:
        ii, jj = np.triu_indices(n, 1)
        dt = (t[jj] - t[ii]).astype(x.dtype)
        lo, hi, k_lo, k_hi = _k.median_network(n * (n - 1) // 2)
        ylo, yhi, yk_lo, yk_hi = _k.median_network(n)
        _k.sen_mk_lockstep(x, fast, dt, lo, hi, k_lo, k_hi, ylo, yhi, yk_lo, yk_hi,
                           float(np.median(t)), z_crit, _k.LANES, out)
    if rest.size:
        sub = general_subset(x, rest)
        out_rest = np.empty((out.shape[0], rest.size))
        _k.sen_mk_general(sub, np.arange(rest.size), t, min_valid, _k.METHOD_CODES[method],
                          z_crit, out_rest)
        out[:, rest] = out_rest
    return np.moveaxis(out, 0, -1).reshape(*lead, out.shape[0])


def sen_mk(
    da: xr.DataArray,
    *,
    dim: str = "year",
    alpha: float = 0.05,
    min_valid: int = 8,
    method: Literal["original", "hamed_rao", "yue_wang", "tfpw"] = "original",
) -> xr.Dataset:
    """Theil-Sen slope and Mann-Kendall trend test for every pixel.

    Parameters
    ----------
    da : xarray.DataArray
        Annual series, e.g. carbon density in ``t C ha-1``, with a ``units`` attribute and
        the time dimension ``dim``. NaN/inf are missing years and are skipped.
    dim : str
        Time dimension; its coordinate is in years (integer calendar years, or datetime64,
        turned into decimal years) and must be strictly increasing.
    alpha : float
        Two-sided significance level (unitless) for ``trend``.
    min_valid : int
        Fewest valid years (>= 3) for a result; pixels with fewer get NaN and trend 0.
    method : {"original", "hamed_rao", "yue_wang", "tfpw"}
        ``"original"`` Mann-Kendall; ``"hamed_rao"`` / ``"yue_wang"`` correct Var(S) for
        autocorrelation (Hamed & Rao 1998, all lags of the ranks of the detrended series
        outside the alpha band; Yue & Wang 2004, all lags); ``"tfpw"`` trend-free
        pre-whitening (Yue et al. 2002).

    Returns
    -------
    xarray.Dataset
        On the input grid without ``dim``:

        * ``slope`` -- Theil-Sen slope, units of ``da`` per year (``per_year(units)``)
        * ``intercept`` -- Conover intercept at time coordinate 0, units of ``da``
        * ``tau`` (1) -- Mann-Kendall tau = S / (n(n-1)/2)
        * ``s`` (1) -- Mann-Kendall S;  ``var_s`` (1) -- tie-corrected Var(S)
        * ``z`` (1) -- continuity-corrected normal score;  ``p`` (1) -- two-sided p-value
        * ``n_valid`` (1) -- number of valid years
        * ``trend`` (1, int8) -- +1 significant increase, 0 none, -1 significant decrease

    Raises
    ------
    ParameterError
        Bad ``dim``/``alpha``/``min_valid``/``method`` or a time coordinate that is not
        strictly increasing.
    InputDataError
        ``da`` is not numeric or has no ``units`` attribute.

    Notes
    -----
    * S = sum_{i<j} sign(x_j - x_i); Var(S) = [n(n-1)(2n+5) - sum_g t_g(t_g-1)(2t_g+5)] / 18
      over tie groups g; Z = (S - sign(S)) / sqrt(Var(S)) (0 when S = 0);
      p = 2 (1 - Phi(|Z|)); trend = sign(Z) where |Z| > Phi^-1(1 - alpha/2). Identical
      to ``pymannkendall`` (``original_test`` and the three modified tests).
    * ``tau`` is pymannkendall's tau-a = S / (n(n-1)/2), *not* scipy's tau-b (which divides
      by the tie-corrected pair counts); they agree when there are no ties.
    * slope = median over pairs i<j of (x_j - x_i) / (t_j - t_i) with t the real time
      coordinate of the valid years, so gaps are handled correctly (pymannkendall uses
      the index difference, which is the same for consecutive years).
    * intercept = median(x) - slope * median(t) over the valid years (Conover 1980, the
      convention of ``scipy.stats.theilslopes`` and pymannkendall), relative to the real
      time coordinate: the fitted line is ``intercept + slope * year``. pymannkendall's
      intercept is relative to the first index, i.e. ``ours + slope * t[0]``.
    * For ``hamed_rao``/``yue_wang`` the detrending uses the real time coordinate. If the
      correction factor n/n* is not positive (strong negative autocorrelation, where
      pymannkendall returns a negative variance and NaN Z), the uncorrected Var(S) is kept.
      In ``tfpw`` a constant detrended series is given lag-1 autocorrelation 0.
    * A constant series gives slope 0, S 0, Z 0, p 1, trend 0.
    * Float32 input is differenced in float32 (pairwise slopes), all statistics are float64.

    Examples
    --------
    Two pixels over ten years, one gaining 5 g C m-2 yr-1 every year, one losing as much:

    >>> rising = 600.0 + 5.0 * np.arange(10)
    >>> npp = xr.DataArray(np.stack([rising, rising[::-1]], axis=-1)[:, None, :],
    ...                    dims=("year", "y", "x"), coords={"year": np.arange(2011, 2021)},
    ...                    attrs={"units": "g C m-2 yr-1"})
    >>> ds = sen_mk(npp, alpha=0.05)
    >>> ds["slope"].values.tolist(), ds["trend"].values.tolist()
    ([[5.0, -5.0]], [[1, -1]])
    >>> ds["slope"].attrs["units"]
    'g C m-2 yr-1 yr-1'
    """
    da = check_series(da, name="da", dim=dim)
    alpha = check_alpha(alpha)
    min_valid = check_min_valid(min_valid)
    check_choice(method, tuple(_k.METHOD_CODES), name="method")
    units = da.attrs.get("units")
    if units is None:
        raise InputDataError(
            f"da ({da.name!r}): no 'units' attribute, so the slope units are unknown; set "
            f"da.attrs['units'] (e.g. 't C ha-1')."
        )
    t = time_in_years(da, dim)
    z_crit = float(stats.norm.ppf(1.0 - alpha / 2.0))
    data = single_time_chunk(float_data(da), dim)

    def block(arr: np.ndarray) -> np.ndarray:
        return _sen_mk_block(arr, t=t, min_valid=min_valid, method=method, z_crit=z_crit)

    out = stack_outputs(data, block, _k.SEN_MK_OUTPUTS, dim)
    hist = update_history(history_line("trends.sen_mk", dim=dim, alpha=alpha,
                                       min_valid=min_valid, method=method), da)
    attrs = {
        "slope": (per_year(units), "Theil-Sen slope"),
        "intercept": (units, f"Theil-Sen (Conover) intercept at {dim} = 0"),
        "tau": ("1", "Mann-Kendall tau (S / (n(n-1)/2))"),
        "s": ("1", "Mann-Kendall S statistic"),
        "var_s": ("1", "variance of S (tie-corrected)"),
        "z": ("1", "Mann-Kendall Z (continuity-corrected)"),
        "p": ("1", "two-sided p-value of the Mann-Kendall test"),
        "n_valid": ("1", f"number of valid {dim}s"),
        "trend": ("1", f"significant monotonic trend at alpha={alpha}"),
    }
    out["n_valid"] = out["n_valid"].astype(np.int32)
    out["trend"] = out["trend"].astype(np.int8)
    for name, (u, long_name) in attrs.items():
        out[name].attrs = {"units": u, "long_name": long_name, "history": hist}
    out["trend"].attrs.update(
        flag_values=np.array(TREND3.codes, dtype=np.int8),
        flag_meanings=" ".join(TREND3.names),
    )
    ds = xr.Dataset(out)
    ds.attrs = {"history": hist, "method": method, "alpha": alpha, "min_valid": min_valid}
    return ds


# --------------------------------------------------------------------------- classes
def classify_trend(
    ds: xr.Dataset,
    *,
    scheme: Literal["3class", "5class"] = "3class",
    landuse: xr.DataArray | None = None,
) -> xr.DataArray:
    """Trend classes from a :func:`sen_mk` result.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of :func:`sen_mk` (uses ``trend`` for 3 classes, ``z`` for 5 classes).
    scheme : {"3class", "5class"}
        ``"3class"``: 1 significant decrease, 2 no significant trend, 3 significant
        increase, at the ``alpha`` used by :func:`sen_mk`. ``"5class"`` by Z:
        1 extremely significant decrease (Z <= -2.58), 2 significant decrease
        (-2.58 < Z <= -1.96), 3 not significant (|Z| < 1.96), 4 significant increase,
        5 extremely significant increase (Z >= 2.58).
    landuse : xarray.DataArray, optional
        Land-use codes (``1``, 0 = nodata) on the same ``(y, x)`` grid; pixels with code 0
        become class 0 and the codes are attached as coordinate ``landuse`` (used by
        :func:`~terracarbon.trends.tables.area_shares`).

    Returns
    -------
    xarray.DataArray
        int16 class codes (``1``), 0 = nodata (too few valid years), with ``flag_values``
        and ``flag_meanings``.

    Raises
    ------
    ParameterError
        Unknown scheme or ``ds`` lacking ``trend``/``z``.
    GridMismatchError
        ``landuse`` not on the grid of ``ds``.
    """
    check_choice(scheme, ("3class", "5class"), name="scheme")
    if not isinstance(ds, xr.Dataset) or not {"trend", "z"} <= set(ds.data_vars):
        raise ParameterError(
            "ds: expected the Dataset returned by trends.sen_mk (with 'trend' and 'z'); "
            "run sen_mk first."
        )
    z = ds["z"]
    valid = np.isfinite(z)
    if scheme == "3class":
        # sen_mk's trend -1/0/+1 (TREND3's codes) shifted to 1..3, keeping 0 for nodata
        codes = xr.where(valid, ds["trend"].astype(np.int16) + 2, 0)
        meanings = TREND3.names
    else:
        absz = abs(z)
        level = xr.where(absz >= 2.58, 2, xr.where(absz >= 1.96, 1, 0))
        codes = xr.where(valid, 3 + np.sign(z.fillna(0.0)).astype(np.int16) * level, 0)
        meanings = TREND5.names
    landuse = check_landuse(landuse, z)
    if landuse is not None:
        codes = xr.where(landuse > 0, codes, 0).assign_coords(landuse=landuse)
    hist = update_history(history_line("trends.classify_trend", scheme=scheme), ds, landuse)
    return flagged(codes, meanings, long_name=f"trend class ({scheme})", hist=hist).rename(
        "trend_class"
    )


# --------------------------------------------------------------------------- one pixel, one series
def steepest_pixel(sen_mk_ds: xr.Dataset, *, direction: Literal["increase", "decrease"] = "increase"
                   ) -> dict[str, float]:
    """Coordinates and statistics of the pixel with the steepest significant trend.

    Falls back to the steepest slope of any significance when no pixel is significant.

    Returns
    -------
    dict
        ``x``, ``y`` (grid coordinates) and ``slope`` (units per year), ``intercept``, ``z``,
        ``p`` of that pixel.
    """
    check_choice(direction, ("increase", "decrease"), name="direction")
    sign = 1 if direction == "increase" else -1
    slope = sen_mk_ds["slope"] * sign
    significant = slope.where(sen_mk_ds["trend"] == sign)
    candidate = significant if bool(significant.notnull().any()) else slope
    if not bool(candidate.notnull().any()):
        raise ParameterError("steepest_pixel: every pixel's slope is NaN (too few valid years)")
    flat = candidate.stack(pixel=("y", "x"))
    best = flat.isel(pixel=int(np.nanargmax(flat.values)))
    y, x = float(best["y"]), float(best["x"])
    at = sen_mk_ds.sel(y=y, x=x)
    return {"x": x, "y": y, **{k: float(at[k]) for k in ("slope", "intercept", "z", "p")}}


def series_trend(table: pd.DataFrame, *, value: str, time: str = "year", alpha: float = 0.05
                 ) -> dict[str, float]:
    """Theil–Sen slope and Mann–Kendall test of one column of a table over time.

    For summary series such as Moran's I per year or the High-High area share per year.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per time step.
    value : str
        Column analysed (its units per year give the slope's units).
    time : str
        Column of calendar years (strictly increasing after sorting).

    Returns
    -------
    dict
        ``slope`` (value units per year), ``intercept``, ``tau``, ``z``, ``p``, ``trend``
        (+1/0/−1) and ``n_valid``; NaN statistics when fewer than 3 valid values.
    """
    for column in (value, time):
        if column not in table.columns:
            raise ParameterError(f"series_trend: column {column!r} not in {list(table.columns)}")
    ordered = table.sort_values(time)
    da = xr.DataArray(ordered[value].to_numpy(dtype=np.float64), dims=("year",),
                      coords={"year": ordered[time].to_numpy()}, attrs={"units": "1"})
    result = sen_mk(da, alpha=alpha, min_valid=3)
    return {name: float(result[name]) for name in
            ("slope", "intercept", "tau", "z", "p", "trend", "n_valid")}
