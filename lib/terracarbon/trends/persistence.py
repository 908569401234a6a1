"""How steady and how persistent a series is: Cv and its stability classes, the Hurst
exponent (rescaled range) and the Sen/MK x Hurst future-trend classes.

Class codes and names come from :data:`terracarbon.conventions.STABILITY` and
:data:`terracarbon.conventions.FUTURE_TREND`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from terracarbon.checks import check_choice
from terracarbon.conventions import FUTURE_TREND, STABILITY
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import GridMismatchError, ParameterError
from terracarbon.trends import kernels as _k
from terracarbon.trends.core import (
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

__all__ = [
    "anis_lloyd_expected_rs",
    "coefficient_of_variation",
    "future_trend",
    "hurst_rs",
    "stability_classes",
]


# --------------------------------------------------------------------------- stability
def _cv_kernel(series: np.ndarray) -> np.ndarray:
    """sd (ddof=1) / mean along the last axis, NaN-skipping; NaN below 2 values or mean 0.

    Done by hand under ``np.errstate`` because NumPy's and dask's nan-reductions warn on the
    all-NaN pixels outside the study region, and those warnings would end up in the reports.
    """
    valid = np.isfinite(series)
    n = valid.sum(axis=-1)
    filled = np.where(valid, series, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=-1) / n
        squares = np.where(valid, (series - mean[..., None]) ** 2, 0.0).sum(axis=-1)
        cv = np.sqrt(squares / (n - 1)) / mean
    return np.where((n >= 2) & (mean != 0), cv, np.nan)


def coefficient_of_variation(da: xr.DataArray, *, dim: str = "year") -> xr.DataArray:
    """Coefficient of variation Cv = sd / mean over ``dim`` (sample sd, ddof=1).

    Parameters
    ----------
    da : xarray.DataArray
        Annual series (any units); NaN years are skipped.
    dim : str
        Time dimension.

    Returns
    -------
    xarray.DataArray
        ``cv`` in units ``1``; NaN where fewer than 2 valid years or the mean is 0.

    Raises
    ------
    ParameterError
        ``dim`` missing or time coordinate not strictly increasing.
    """
    da = check_series(da, name="da", dim=dim)
    time_in_years(da, dim)
    data = single_time_chunk(float_data(da), dim)
    cv = xr.apply_ufunc(_cv_kernel, data, input_core_dims=[[dim]], dask="parallelized",
                        output_dtypes=[np.float64])
    cv.attrs = {"units": "1", "long_name": "coefficient of variation (sd/mean, ddof=1)",
                "history": update_history(
                    history_line("trends.coefficient_of_variation", dim=dim), da)}
    return cv.rename("cv")


def stability_classes(
    cv: xr.DataArray,
    *,
    breaks: Sequence[float] = (0.05, 0.1, 0.15, 0.2),
    names: Sequence[str] | None = None,
) -> xr.DataArray:
    """Fluctuation classes of the coefficient of variation.

    Parameters
    ----------
    cv : xarray.DataArray
        Coefficient of variation (``1``), e.g. from :func:`coefficient_of_variation`.
    breaks : sequence of float
        Increasing upper class limits (``1``); class i holds breaks[i-2] < cv <= breaks[i-1].
    names : sequence of str, optional
        One name per class (``len(breaks) + 1``); the default names the five classes
        low, relatively low, medium, relatively high and high fluctuation.

    Returns
    -------
    xarray.DataArray
        int16 codes 1..len(breaks)+1 (``1``), 0 where cv is NaN; ``flag_values`` and
        ``flag_meanings``.

    Raises
    ------
    ParameterError
        Breaks not strictly increasing or the wrong number of names.
    """
    b = np.asarray(breaks, dtype=np.float64)
    if b.ndim != 1 or b.size == 0 or not np.all(np.isfinite(b)) or np.any(np.diff(b) <= 0):
        raise ParameterError(
            f"breaks: expected strictly increasing finite numbers, got {tuple(breaks)!r}."
        )
    if names is None:
        if b.size != len(STABILITY.names) - 1:
            raise ParameterError(
                f"names: {b.size} breaks make {b.size + 1} classes; pass names=[...] with "
                f"{b.size + 1} class names."
            )
        names = STABILITY.names
    if len(names) != b.size + 1:
        raise ParameterError(f"names: expected {b.size + 1} names, got {len(names)}.")
    if not isinstance(cv, xr.DataArray):
        raise ParameterError(f"cv: expected an xarray.DataArray, got {type(cv).__name__}.")

    def digitize(a: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(a), 0, np.digitize(a, b, right=True) + 1).astype(np.int16)

    codes = xr.apply_ufunc(digitize, cv, dask="parallelized", output_dtypes=[np.int16])
    hist = update_history(
        history_line("trends.stability_classes", breaks=tuple(float(v) for v in b)), cv)
    return flagged(codes, [n.replace(" ", "_") for n in names], long_name="stability class",
                   hist=hist).rename("stability_class")


# --------------------------------------------------------------------------- Hurst
def anis_lloyd_expected_rs(tau: np.ndarray) -> np.ndarray:
    """Anis & Lloyd (1976) expected R/S of ``tau`` i.i.d. normal values.

    E[R/S]_tau = Gamma((tau-1)/2) / (sqrt(pi) Gamma(tau/2)) * sum_{i=1}^{tau-1}
    sqrt((tau-i)/i); equal to 1 for tau = 2. The gamma ratio is evaluated with log-gamma,
    so no large-tau approximation is needed.
    """
    tau = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    out = np.empty_like(tau)
    for k, n in enumerate(tau):  # one value per window length, not per pixel
        i = np.arange(1, n)
        ratio = math.exp(math.lgamma((n - 1) / 2) - math.lgamma(n / 2)) / math.sqrt(math.pi)
        out[k] = ratio * np.sum(np.sqrt((n - i) / i))
    return out


def _hurst_block(block: np.ndarray, *, min_valid: int, correction: str | None) -> np.ndarray:
    lead = block.shape[:-1]
    x = pixels_by_time(block)
    n = x.shape[1]
    taus = np.arange(n + 1, dtype=np.float64)
    log_tau = np.zeros(n + 1)
    log_tau[1:] = np.log(taus[1:])
    log_expected = np.zeros(n + 1)
    if correction == "anis_lloyd" and n >= 2:
        log_expected[2:] = np.log(anis_lloyd_expected_rs(taus[2:]))
    add_half = correction == "anis_lloyd"
    out = np.empty((len(_k.HURST_OUTPUTS), x.shape[0]), dtype=np.float64)
    n_valid = np.isfinite(x).sum(axis=1)
    fast_ok = n >= max(min_valid, 3)
    fast = np.flatnonzero(n_valid == n) if fast_ok else np.empty(0, dtype=np.int64)
    rest = np.flatnonzero(n_valid != n) if fast_ok else np.arange(x.shape[0])
    if fast.size:
        _k.hurst_lockstep(x, fast, log_tau, log_expected, add_half, _k.LANES, out)
    if rest.size:
        out_rest = np.empty((out.shape[0], rest.size))
        _k.hurst_general(general_subset(x, rest), np.arange(rest.size), min_valid, log_tau,
                         log_expected, add_half, out_rest)
        out[:, rest] = out_rest
    return np.moveaxis(out, 0, -1).reshape(*lead, out.shape[0])


def hurst_rs(
    da: xr.DataArray,
    *,
    dim: str = "year",
    correction: Literal["anis_lloyd"] | None = None,
    min_valid: int = 8,
) -> xr.Dataset:
    """Hurst exponent by classic rescaled-range (R/S) analysis, per pixel.

    Parameters
    ----------
    da : xarray.DataArray
        Annual series (any units); NaN/inf years are dropped (the remaining values are
        treated as consecutive).
    dim : str
        Time dimension (coordinate strictly increasing).
    correction : {None, "anis_lloyd"}
        None: classic R/S. ``"anis_lloyd"``: H = 0.5 + slope of
        log(R/S) - log(E[R/S]) on log(tau), E[R/S] from Anis & Lloyd (1976).
    min_valid : int
        Fewest valid years (>= 3); fewer gives NaN (``hurst_undefined`` False).

    Returns
    -------
    xarray.Dataset
        ``hurst`` (``1``), ``hurst_undefined`` (bool: enough years but R/S undefined, e.g.
        a constant series), ``n_valid`` (``1``).

    Raises
    ------
    ParameterError
        Bad ``dim``, ``correction``, ``min_valid`` or non-increasing time coordinate.

    Notes
    -----
    Variant implemented (the "classic" R/S of the land-change literature, e.g. the
    Ningxia carbon studies): for each window length tau = 2..n over the *first* tau
    valid values x_1..x_tau (one window per tau, not the average over non-overlapping
    windows):

    * mean m_tau = (1/tau) sum_{u<=tau} x_u
    * cumulative deviations X(t, tau) = sum_{u<=t} (x_u - m_tau), t = 1..tau
    * R(tau) = max_t X(t, tau) - min_t X(t, tau) (note X(tau, tau) = 0)
    * S(tau) = sqrt((1/tau) sum_{u<=tau} (x_u - m_tau)^2) (ddof = 0)

    H is the ordinary least-squares slope of log(R/S) on log(tau) over the tau with
    S(tau) > 0 (windows whose values are all equal are skipped). At least two such tau are
    needed; otherwise H is NaN and ``hurst_undefined`` is True (a constant series).

    Small-sample bias: with n ~ 20 the classic estimate is biased upwards (white noise
    gives H ~ 0.6-0.7 rather than 0.5, because E[R/S] grows faster than tau^0.5 for short
    windows); values near 0.5 should not be read as persistence or anti-persistence.
    The Anis-Lloyd correction removes the expected R/S of white noise, so white noise
    gives H ~ 0.5.

    Examples
    --------
    A rising, noisy ten-year series is persistent (H > 0.5):

    >>> x = xr.DataArray([1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 5.0, 8.0, 7.0, 9.0], dims="year",
    ...                  coords={"year": np.arange(2011, 2021)}, attrs={"units": "t C ha-1"})
    >>> round(float(hurst_rs(x)["hurst"]), 2)
    0.93
    """
    da = check_series(da, name="da", dim=dim)
    min_valid = check_min_valid(min_valid)
    check_choice(correction, (None, "anis_lloyd"), name="correction")
    time_in_years(da, dim)
    data = single_time_chunk(float_data(da), dim)

    def block(arr: np.ndarray) -> np.ndarray:
        return _hurst_block(arr, min_valid=min_valid, correction=correction)

    out = stack_outputs(data, block, _k.HURST_OUTPUTS, dim)
    hist = update_history(history_line("trends.hurst_rs", dim=dim, correction=correction,
                                       min_valid=min_valid), da)
    out["hurst_undefined"] = out["hurst_undefined"] > 0
    out["n_valid"] = out["n_valid"].astype(np.int32)
    variant = "classic R/S" + (" with Anis-Lloyd correction" if correction else "")
    meta = {
        "hurst": ("1", f"Hurst exponent ({variant})"),
        "hurst_undefined": ("1", "True where R/S is undefined (no variability)"),
        "n_valid": ("1", f"number of valid {dim}s"),
    }
    for name, (u, long_name) in meta.items():
        out[name].attrs = {"units": u, "long_name": long_name, "history": hist}
    ds = xr.Dataset(out)
    ds.attrs = {"history": hist, "correction": str(correction)}
    return ds


# --------------------------------------------------------------------------- future trend
def future_trend(sen_mk_ds: xr.Dataset, hurst: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Combine the Sen/MK trend with Hurst persistence into future-trend classes.

    Parameters
    ----------
    sen_mk_ds : xarray.Dataset
        Output of :func:`~terracarbon.trends.mann_kendall.sen_mk` (uses ``trend``, i.e.
        significance at its alpha, and ``z``).
    hurst : xarray.DataArray or xarray.Dataset
        Hurst exponent (``1``), or the Dataset of :func:`hurst_rs`.

    Returns
    -------
    xarray.DataArray
        int16 codes (``1``): 1 continuous improvement (significant increase, H > 0.5),
        2 future degradation (significant increase, H <= 0.5), 3 continuous degradation
        (significant decrease, H > 0.5), 4 future improvement (significant decrease,
        H <= 0.5), 5 no significant trend; 0 nodata (too few years, or a significant trend
        with undefined H). "Improvement" means the variable increases (carbon gain).
        H exactly 0.5 (no memory) is counted with H < 0.5: the trend is not expected to
        persist.

    Raises
    ------
    ParameterError
        Wrong input types.
    GridMismatchError
        The two inputs are not on the same grid.
    """
    if not isinstance(sen_mk_ds, xr.Dataset) or not {"trend", "z"} <= set(sen_mk_ds.data_vars):
        raise ParameterError("sen_mk_ds: expected the Dataset returned by trends.sen_mk.")
    if isinstance(hurst, xr.Dataset):
        if "hurst" not in hurst.data_vars:
            raise ParameterError("hurst: expected a DataArray or the Dataset of trends.hurst_rs.")
        hurst = hurst["hurst"]
    if not isinstance(hurst, xr.DataArray):
        raise ParameterError(f"hurst: expected an xarray.DataArray, got {type(hurst).__name__}.")
    try:
        trend, z, h = xr.align(sen_mk_ds["trend"], sen_mk_ds["z"], hurst, join="exact")
    except ValueError as err:
        raise GridMismatchError(
            f"hurst: not on the grid of sen_mk_ds ({err}); compute both from the same cube."
        ) from None
    persistent = h > 0.5
    code = FUTURE_TREND.code_of
    codes = xr.where(
        trend > 0,
        xr.where(persistent, code("continuous_improvement"), code("future_degradation")),
        xr.where(trend < 0,
                 xr.where(persistent, code("continuous_degradation"), code("future_improvement")),
                 code("no_significant_trend")),
    )
    codes = xr.where(np.isfinite(z) & ((trend == 0) | np.isfinite(h)), codes, 0)
    hist = update_history(history_line("trends.future_trend"), sen_mk_ds, h)
    return flagged(codes, FUTURE_TREND.names, long_name="future trend class (Sen/MK x Hurst)",
                   hist=hist).rename("future_trend")

