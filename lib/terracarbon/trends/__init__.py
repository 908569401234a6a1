"""Pixel-wise trend, stability, persistence and driver analysis of annual series.

Every public function takes xarray objects (numpy- or dask-backed) with a time dimension
(``dim``, default ``"year"``) and returns xarray objects on the input grid, with ``units``,
``long_name`` and ``history`` on every variable. The per-pixel arithmetic lives in
:mod:`terracarbon._trend_kernels` (numba) and is applied block by block with
``xr.apply_ufunc(..., dask="parallelized")``; the time dimension is made a single chunk.

Functions
---------
sen_mk                 Theil-Sen slope + Mann-Kendall test (original, Hamed-Rao, Yue-Wang, TFPW)
classify_trend         3-class (significance at alpha) or 5-class (|Z| 1.96 / 2.58) trend classes
area_shares            area (ha) and share (%) per class, optionally per land-use class
coefficient_of_variation, stability_classes   Cv = sd / mean and fluctuation classes
hurst_rs               classic rescaled-range Hurst exponent (optional Anis-Lloyd correction)
future_trend           Sen/MK trend x Hurst persistence classes
partial_correlation    partial correlation with drivers, multiple R, F test, driving types
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from terracarbon.trends import kernels as _k
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError
from terracarbon.data.io import history_line
from terracarbon.conventions import AREA_HA_UNITS, M2_PER_HA, per_year

log = logging.getLogger(__name__)

__all__ = [
    "sen_mk",
    "classify_trend",
    "area_shares",
    "coefficient_of_variation",
    "stability_classes",
    "hurst_rs",
    "future_trend",
    "partial_correlation",
]

DAYS_PER_YEAR = 365.2425
"""Mean Gregorian year, used to turn a datetime64 time coordinate into decimal years."""
_PIXEL_BATCH = 65_536
"""Pixels per batch in the NumPy partial-correlation kernel (bounds the scratch memory)."""

TREND_FLAGS = {-1: "significant_decrease", 0: "no_significant_trend", 1: "significant_increase"}
CLASSES_3 = ("significant_decrease", "no_significant_trend", "significant_increase")
CLASSES_5 = (
    "extremely_significant_decrease",
    "significant_decrease",
    "not_significant",
    "significant_increase",
    "extremely_significant_increase",
)
STABILITY_NAMES = (
    "low_fluctuation",
    "relatively_low_fluctuation",
    "medium_fluctuation",
    "relatively_high_fluctuation",
    "high_fluctuation",
)
FUTURE_CLASSES = (
    "continuous_improvement",
    "future_degradation",
    "continuous_degradation",
    "future_improvement",
    "no_significant_trend",
)


# --------------------------------------------------------------------------- validation
def _check_dataarray(da: object, *, name: str, dim: str) -> xr.DataArray:
    if not isinstance(da, xr.DataArray):
        raise ParameterError(
            f"{name}: expected an xarray.DataArray, got {type(da).__name__}; pass a single "
            f"variable such as cube['npp']."
        )
    if dim not in da.dims:
        raise ParameterError(
            f"{name}: dimension {dim!r} not found (dims are {da.dims}); pass dim=<the time "
            f"dimension>."
        )
    if not (np.issubdtype(da.dtype, np.floating) or np.issubdtype(da.dtype, np.integer)):
        raise InputDataError(
            f"{name}: expected a numeric array, got dtype {da.dtype}; convert it to float."
        )
    return da


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ParameterError(f"alpha: expected a significance level in (0, 1), got {alpha!r}.")
    return float(alpha)


def _check_min_valid(min_valid: int, *, lowest: int = 3) -> int:
    if isinstance(min_valid, bool) or not isinstance(min_valid, (int, np.integer)):
        raise ParameterError(f"min_valid: expected an integer, got {min_valid!r}.")
    if min_valid < lowest:
        raise ParameterError(
            f"min_valid: expected an integer >= {lowest} (valid years per pixel), got "
            f"{min_valid}."
        )
    return int(min_valid)


def _check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ParameterError(f"{name}: expected one of {list(choices)}, got {value!r}.")


def time_in_years(da: xr.DataArray, dim: str) -> np.ndarray:
    """The time coordinate of ``da`` along ``dim`` as float64 years, checked increasing.

    Numeric coordinates are taken as (calendar) years; datetime64 coordinates become
    decimal years (days since 1970-01-01 / 365.2425 + 1970). A missing coordinate means
    0, 1, 2, ... (one step per year).

    Raises
    ------
    ParameterError
        If the coordinate is not strictly increasing or not numeric/datetime.
    """
    if dim not in da.coords:
        return np.arange(da.sizes[dim], dtype=np.float64)
    values = np.asarray(da[dim].values)
    if np.issubdtype(values.dtype, np.datetime64):
        days = (values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
        t = 1970.0 + days.astype(np.float64) / DAYS_PER_YEAR
    elif np.issubdtype(values.dtype, np.number):
        t = values.astype(np.float64)
    else:
        raise ParameterError(
            f"{dim}: expected a numeric (calendar year) or datetime64 coordinate, got dtype "
            f"{values.dtype}; assign integer years with da.assign_coords({dim}=...)."
        )
    if not np.all(np.isfinite(t)):
        raise ParameterError(f"{dim}: the time coordinate contains NaN/inf; fix the coordinate.")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ParameterError(
            f"{dim}: expected a strictly increasing time coordinate, got {values.tolist()[:8]}"
            f"{' ...' if t.size > 8 else ''}; sort with da.sortby({dim!r}) and drop duplicate "
            f"years."
        )
    return t


def _single_time_chunk(da: xr.DataArray, dim: str) -> xr.DataArray:
    if da.chunks is not None and len(da.chunksizes.get(dim, ())) > 1:
        log.debug("rechunking %s to a single chunk along %r", da.name, dim)
        return da.chunk({dim: -1})
    return da


def _float_data(da: xr.DataArray) -> xr.DataArray:
    return da if np.issubdtype(da.dtype, np.floating) else da.astype(np.float64)


def _pixels_by_time(block: np.ndarray) -> np.ndarray:
    # apply_ufunc puts the core (time) dim last; merging the leading dims is a view
    return block.reshape(-1, block.shape[-1])


def _general_subset(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    # one float64 C-contiguous specialisation of the per-pixel kernels keeps the numba
    # compile (first use on a machine) short; these pixels are the minority with gaps
    return np.ascontiguousarray(x[rows], dtype=np.float64)


def _stack_outputs(
    da: xr.DataArray, func, names: Sequence[str], dim: str
) -> dict[str, xr.DataArray]:
    stacked = xr.apply_ufunc(
        func,
        da,
        input_core_dims=[[dim]],
        output_core_dims=[["_stat"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"_stat": len(names)}},
        keep_attrs=False,
    )
    return {name: stacked.isel(_stat=i, drop=True) for i, name in enumerate(names)}


# --------------------------------------------------------------------------- Sen / MK
def _sen_mk_block(block: np.ndarray, *, t: np.ndarray, min_valid: int, method: str,
                  z_crit: float) -> np.ndarray:
    lead = block.shape[:-1]
    x = _pixels_by_time(block)
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
        sub = _general_subset(x, rest)
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
    >>> ds = sen_mk(cube["npp"], alpha=0.05)  # doctest: +SKIP
    >>> ds["slope"].attrs["units"]  # doctest: +SKIP
    'g C m-2 yr-1 yr-1'
    """
    da = _check_dataarray(da, name="da", dim=dim)
    alpha = _check_alpha(alpha)
    min_valid = _check_min_valid(min_valid)
    _check_choice(method, "method", tuple(_k.METHOD_CODES))
    units = da.attrs.get("units")
    if units is None:
        raise InputDataError(
            f"da ({da.name!r}): no 'units' attribute, so the slope units are unknown; set "
            f"da.attrs['units'] (e.g. 't C ha-1')."
        )
    t = time_in_years(da, dim)
    z_crit = float(stats.norm.ppf(1.0 - alpha / 2.0))
    data = _single_time_chunk(_float_data(da), dim)

    def block(arr: np.ndarray) -> np.ndarray:
        return _sen_mk_block(arr, t=t, min_valid=min_valid, method=method, z_crit=z_crit)

    out = _stack_outputs(data, block, _k.SEN_MK_OUTPUTS, dim)
    hist = history_line("trends.sen_mk", dim=dim, alpha=alpha, min_valid=min_valid,
                        method=method)
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
        flag_values=np.array(list(TREND_FLAGS), dtype=np.int8),
        flag_meanings=" ".join(TREND_FLAGS.values()),
    )
    ds = xr.Dataset(out)
    ds.attrs = {"history": hist, "method": method, "alpha": alpha, "min_valid": min_valid}
    return ds


# --------------------------------------------------------------------------- classes
def _flagged(codes: xr.DataArray, meanings: Sequence[str], *, long_name: str,
             hist: str) -> xr.DataArray:
    codes = codes.astype(np.int16)
    codes.attrs = {
        "units": "1",
        "long_name": long_name,
        "flag_values": np.arange(len(meanings) + 1, dtype=np.int16),
        "flag_meanings": " ".join(("nodata", *meanings)),
        "_FillValue_meaning": "0 = nodata",
        "history": hist,
    }
    return codes


def _check_landuse(landuse: xr.DataArray | None, like: xr.DataArray) -> xr.DataArray | None:
    if landuse is None:
        return None
    if not isinstance(landuse, xr.DataArray):
        raise ParameterError(
            f"landuse: expected an xarray.DataArray of land-use codes, got "
            f"{type(landuse).__name__}."
        )
    if set(landuse.dims) != set(like.dims):
        raise GridMismatchError(
            f"landuse: dims {landuse.dims} do not match the classes' dims {like.dims}; select "
            f"one year first, e.g. landuse.sel(year=2020)."
        )
    try:
        xr.align(landuse, like, join="exact")
    except ValueError as err:
        raise GridMismatchError(
            f"landuse: its coordinates differ from the classes' grid ({err}); put both on the "
            f"same target grid."
        ) from None
    return landuse.transpose(*like.dims)


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
        :func:`area_shares`).

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
    _check_choice(scheme, "scheme", ("3class", "5class"))
    if not isinstance(ds, xr.Dataset) or not {"trend", "z"} <= set(ds.data_vars):
        raise ParameterError(
            "ds: expected the Dataset returned by trends.sen_mk (with 'trend' and 'z'); "
            "run sen_mk first."
        )
    z = ds["z"]
    valid = np.isfinite(z)
    if scheme == "3class":
        codes = xr.where(valid, ds["trend"].astype(np.int16) + 2, 0)
        meanings = CLASSES_3
    else:
        absz = abs(z)
        level = xr.where(absz >= 2.58, 2, xr.where(absz >= 1.96, 1, 0))
        codes = xr.where(valid, 3 + np.sign(z.fillna(0.0)).astype(np.int16) * level, 0)
        meanings = CLASSES_5
    landuse = _check_landuse(landuse, z)
    if landuse is not None:
        codes = xr.where(landuse > 0, codes, 0).assign_coords(landuse=landuse)
    hist = history_line("trends.classify_trend", scheme=scheme)
    return _flagged(codes, meanings, long_name=f"trend class ({scheme})", hist=hist).rename(
        "trend_class"
    )


def _class_meanings(classes: xr.DataArray) -> dict[int, str]:
    values = classes.attrs.get("flag_values")
    meanings = classes.attrs.get("flag_meanings")
    if values is None or meanings is None:
        raise ParameterError(
            f"classes ({classes.name!r}): expected 'flag_values' and 'flag_meanings' "
            f"attributes; pass the output of classify_trend/stability_classes/future_trend."
        )
    return {int(v): m for v, m in zip(np.atleast_1d(values), str(meanings).split())}


def _pixel_area_ha(classes: xr.DataArray, pixel_area_ha: float | None) -> float:
    if pixel_area_ha is not None:
        if not (np.isscalar(pixel_area_ha) and float(pixel_area_ha) > 0):
            raise ParameterError(
                f"pixel_area_ha: expected a positive number (ha), got {pixel_area_ha!r}."
            )
        return float(pixel_area_ha)
    if not all(c in classes.coords and classes.sizes[c] > 1 for c in ("x", "y")):
        raise ParameterError(
            "pixel_area_ha: not given and the classes have no x/y coordinates (metres) to "
            "derive it from; pass pixel_area_ha=<hectares per pixel>."
        )
    dx = abs(float(classes["x"][1] - classes["x"][0]))
    dy = abs(float(classes["y"][1] - classes["y"][0]))
    return dx * dy / M2_PER_HA


def _landuse_names() -> dict[int, str]:
    from terracarbon.conventions import LANDUSE_CLASSES

    return dict(LANDUSE_CLASSES)


def area_shares(
    classes: xr.DataArray,
    *,
    landuse: xr.DataArray | None = None,
    pixel_area_ha: float | None = None,
) -> pd.DataFrame:
    """Area (ha) and share (%) of each class, overall or within each land-use class.

    Parameters
    ----------
    classes : xarray.DataArray
        Integer class codes with ``flag_values``/``flag_meanings`` (0 = nodata, excluded).
    landuse : xarray.DataArray, optional
        Land-use codes on the same grid (0 = nodata, excluded); defaults to the
        ``landuse`` coordinate attached by :func:`classify_trend`, if any.
    pixel_area_ha : float, optional
        Pixel area in ha; by default ``|dx * dy| / 10,000`` from the x/y coordinates (m).

    Returns
    -------
    pandas.DataFrame
        Columns ``class``, ``class_name``, ``n_pixels``, ``area_ha`` (ha), ``share_pct``
        (% of the classified area, or of the land-use class's classified area), plus
        ``landuse`` and ``landuse_name`` when land use is given. Every class is listed
        (zero area included).

    Raises
    ------
    ParameterError
        Missing flag attributes or pixel area.
    GridMismatchError
        ``landuse`` not on the grid of ``classes``.
    """
    if not isinstance(classes, xr.DataArray):
        raise ParameterError(
            f"classes: expected an xarray.DataArray, got {type(classes).__name__}."
        )
    meanings = _class_meanings(classes)
    names = {k: v for k, v in meanings.items() if k != 0}
    area = _pixel_area_ha(classes, pixel_area_ha)
    if landuse is None and "landuse" in classes.coords:
        landuse = classes.coords["landuse"]
    landuse = _check_landuse(landuse, classes)
    codes = np.asarray(classes.values).astype(np.int64).ravel()
    n_codes = max(max(names, default=0), int(codes.max(initial=0))) + 1
    if landuse is None:
        groups = np.zeros_like(codes)
    else:
        groups = np.asarray(landuse.values).astype(np.int64).ravel()
        codes = np.where(groups > 0, codes, 0)
    counts = np.bincount(groups * n_codes + codes, minlength=(groups.max() + 1) * n_codes)
    counts = counts.reshape(-1, n_codes)
    rows = []
    lu_names = _landuse_names() if landuse is not None else {}
    for group in (np.unique(groups[groups > 0]) if landuse is not None else [0]):
        total = counts[group, 1:].sum()
        for code, name in names.items():
            n = int(counts[group, code])
            row = {"class": code, "class_name": name, "n_pixels": n, "area_ha": n * area,
                   "share_pct": 100.0 * n / total if total else np.nan}
            if landuse is not None:
                row = {"landuse": int(group), "landuse_name": lu_names.get(int(group), str(group)),
                       **row}
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs = {"units": {"area_ha": AREA_HA_UNITS, "share_pct": "%"},
                "history": history_line("trends.area_shares", pixel_area_ha=area)}
    return df


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
    da = _check_dataarray(da, name="da", dim=dim)
    time_in_years(da, dim)
    data = _single_time_chunk(_float_data(da), dim)
    cv = xr.apply_ufunc(_cv_kernel, data, input_core_dims=[[dim]], dask="parallelized",
                        output_dtypes=[np.float64])
    cv.attrs = {"units": "1", "long_name": "coefficient of variation (sd/mean, ddof=1)",
                "history": history_line("trends.coefficient_of_variation", dim=dim)}
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
        if b.size != len(STABILITY_NAMES) - 1:
            raise ParameterError(
                f"names: {b.size} breaks make {b.size + 1} classes; pass names=[...] with "
                f"{b.size + 1} class names."
            )
        names = STABILITY_NAMES
    if len(names) != b.size + 1:
        raise ParameterError(f"names: expected {b.size + 1} names, got {len(names)}.")
    if not isinstance(cv, xr.DataArray):
        raise ParameterError(f"cv: expected an xarray.DataArray, got {type(cv).__name__}.")

    def digitize(a: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(a), 0, np.digitize(a, b, right=True) + 1).astype(np.int16)

    codes = xr.apply_ufunc(digitize, cv, dask="parallelized", output_dtypes=[np.int16])
    hist = history_line("trends.stability_classes", breaks=tuple(float(v) for v in b))
    return _flagged(codes, [n.replace(" ", "_") for n in names], long_name="stability class",
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
    x = _pixels_by_time(block)
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
        _k.hurst_general(_general_subset(x, rest), np.arange(rest.size), min_valid, log_tau,
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
    >>> h = hurst_rs(cube["npp"])  # doctest: +SKIP
    """
    da = _check_dataarray(da, name="da", dim=dim)
    min_valid = _check_min_valid(min_valid)
    _check_choice(correction, "correction", (None, "anis_lloyd"))
    time_in_years(da, dim)
    data = _single_time_chunk(_float_data(da), dim)

    def block(arr: np.ndarray) -> np.ndarray:
        return _hurst_block(arr, min_valid=min_valid, correction=correction)

    out = _stack_outputs(data, block, _k.HURST_OUTPUTS, dim)
    hist = history_line("trends.hurst_rs", dim=dim, correction=correction, min_valid=min_valid)
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
        Output of :func:`sen_mk` (uses ``trend``, i.e. significance at its alpha, and ``z``).
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
    codes = xr.where(
        trend > 0, xr.where(persistent, 1, 2), xr.where(trend < 0, xr.where(persistent, 3, 4), 5)
    )
    codes = xr.where(np.isfinite(z) & ((trend == 0) | np.isfinite(h)), codes, 0)
    hist = history_line("trends.future_trend")
    return _flagged(codes, FUTURE_CLASSES, long_name="future trend class (Sen/MK x Hurst)",
                    hist=hist).rename("future_trend")


# --------------------------------------------------------------------------- drivers
def _driver_dict(drivers: xr.Dataset | Mapping[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    if isinstance(drivers, xr.Dataset):
        items = {str(k): v for k, v in drivers.data_vars.items()}
    elif isinstance(drivers, Mapping):
        items = dict(drivers)
    else:
        raise ParameterError(
            f"drivers: expected an xarray.Dataset or a dict of DataArrays, got "
            f"{type(drivers).__name__}."
        )
    if not items:
        raise ParameterError("drivers: expected at least one driver (e.g. temperature).")
    for k, v in items.items():
        if not isinstance(v, xr.DataArray):
            raise ParameterError(f"drivers[{k!r}]: expected a DataArray, got {type(v).__name__}.")
        if not str(k).isidentifier():
            raise ParameterError(f"drivers: name {k!r} is not a valid variable name.")
    return items


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) over all finite entries of ``p``; NaN kept."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    m = ok.size
    if m == 0:
        return q
    order = np.argsort(flat[ok], kind="stable")
    ranked = flat[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q_flat = q.ravel()
    q_flat[ok[order]] = np.minimum(ranked, 1.0)
    return q_flat.reshape(p.shape)


def _partial_corr_block(y: np.ndarray, *drivers: np.ndarray, min_valid: int) -> np.ndarray:
    lead = y.shape[:-1]
    k = len(drivers)
    T = y.shape[-1]
    arrays = [a.reshape(-1, T) for a in (y, *drivers)]
    npix = arrays[0].shape[0]
    out = np.full((npix, 2 * k + 4), np.nan)
    for start in range(0, npix, _PIXEL_BATCH):  # batches of pixels bound the scratch memory
        sl = slice(start, min(npix, start + _PIXEL_BATCH))
        out[sl] = _k.partial_correlation_rows(
            np.stack([a[sl] for a in arrays], axis=1), min_valid=min_valid
        )
    return out.reshape(*lead, 2 * k + 4)


def partial_correlation(
    y: xr.DataArray,
    drivers: xr.Dataset | Mapping[str, xr.DataArray],
    *,
    dim: str = "year",
    alpha: float = 0.05,
    fdr: bool = False,
    min_valid: int = 8,
) -> xr.Dataset:
    """Pixel-wise partial correlation of ``y`` with each driver, controlling for the others.

    Parameters
    ----------
    y : xarray.DataArray
        Response series (any units), e.g. carbon density.
    drivers : xarray.Dataset or dict of DataArray
        Driver series on the same grid and years, e.g. ``temperature`` (degC) and
        ``precipitation`` (mm yr-1).
    dim : str
        Time dimension.
    alpha : float
        Significance level (``1``) for the driving-type classes.
    fdr : bool
        If True, Benjamini-Hochberg adjust each family of p-values across all pixels
        (``q_<driver>``, ``q_f``) and classify on the adjusted values. This loads the
        p-values into memory.
    min_valid : int
        Fewest years where y and all drivers are valid (also at least k + 3).

    Returns
    -------
    xarray.Dataset
        ``r_<driver>`` partial correlation (``1``), ``p_<driver>`` two-sided t-test p
        (``1``), ``multiple_r`` multiple correlation R of y on all drivers (``1``),
        ``f_stat`` F statistic (``1``), ``p_f`` (``1``), ``n_valid`` (``1``),
        ``driving_type`` (int16 classes with flag attributes) and with ``fdr``
        ``q_<driver>``, ``q_f``.

    Raises
    ------
    ParameterError
        Bad arguments or driver names.
    GridMismatchError
        Drivers not on the grid/years of ``y``.

    Notes
    -----
    Years where any series is NaN are dropped (listwise). With R the (k+1)x(k+1)
    correlation matrix of (y, d_1..d_k) and P = R^-1, the partial correlation is
    r_{y d_i . rest} = -P_{0i} / sqrt(P_00 P_ii); for two drivers this equals
    (r_yt - r_yp r_tp) / sqrt((1 - r_yp^2)(1 - r_tp^2)). t = r sqrt(df / (1 - r^2)) with
    df = n - 2 - (k - 1) (k - 1 controlled variables). Multiple correlation
    R^2 = 1 - 1/P_00, F = (R^2/k) / ((1 - R^2)/(n - k - 1)) on (k, n - k - 1) df.

    Driving types (the Ningxia zoning rule, significance at ``alpha``):
    1 ``jointly_driven`` -- F test significant and every partial significant;
    1 + i ``<driver_i>_driven`` -- only the partial of driver i significant (F not
    required); k + 2 ``non_climatic`` -- otherwise (no partial significant, several but not
    all, or all but the F test not significant); 0 nodata (too few years, constant
    series or collinear drivers). For drivers temperature and precipitation: 1 jointly
    (temperature and precipitation) driven, 2 temperature-driven, 3 precipitation-driven,
    4 non-climatic.
    """
    y = _check_dataarray(y, name="y", dim=dim)
    alpha = _check_alpha(alpha)
    min_valid = _check_min_valid(min_valid)
    items = _driver_dict(drivers)
    for k, v in items.items():
        _check_dataarray(v, name=f"drivers[{k!r}]", dim=dim)
    time_in_years(y, dim)
    try:
        aligned = xr.align(y, *items.values(), join="exact")
    except ValueError as err:
        raise GridMismatchError(
            f"drivers: not on the grid/years of y ({err}); align them to the target grid and "
            f"the same years."
        ) from None
    names = list(items)
    k = len(names)
    arrays = [_single_time_chunk(_float_data(a), dim) for a in aligned]
    for a in arrays[1:]:
        if set(a.dims) != set(arrays[0].dims):
            raise GridMismatchError(f"drivers: dims {a.dims} differ from y's dims {y.dims}.")
    out_names = ([f"r_{n}" for n in names] + [f"p_{n}" for n in names]
                 + ["multiple_r", "f_stat", "p_f", "n_valid"])
    stacked = xr.apply_ufunc(
        lambda *blocks: _partial_corr_block(*blocks, min_valid=min_valid),
        *arrays,
        input_core_dims=[[dim]] * (k + 1),
        output_core_dims=[["_stat"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"_stat": len(out_names)}},
    )
    out = {name: stacked.isel(_stat=i, drop=True) for i, name in enumerate(out_names)}
    hist = history_line("trends.partial_correlation", drivers=names, dim=dim, alpha=alpha,
                        fdr=fdr, min_valid=min_valid)
    p_used = {n: out[f"p_{n}"] for n in names}
    p_f = out["p_f"]
    if fdr:
        for n in names:
            out[f"q_{n}"] = xr.apply_ufunc(benjamini_hochberg, out[f"p_{n}"].compute())
            p_used[n] = out[f"q_{n}"]
        out["q_f"] = xr.apply_ufunc(benjamini_hochberg, p_f.compute())
        p_f = out["q_f"]
    sig = [p_used[n] < alpha for n in names]
    n_sig = sum(s.astype(np.int16) for s in sig)
    codes = xr.full_like(n_sig, k + 2)
    for i, s in enumerate(sig):
        codes = xr.where(s & (n_sig == 1), 2 + i, codes)
    codes = xr.where((n_sig == k) & (p_f < alpha), 1, codes)
    codes = xr.where(np.isfinite(out["multiple_r"]), codes, 0)
    meanings = ["jointly_driven", *[f"{n}_driven" for n in names], "non_climatic"]
    out["driving_type"] = _flagged(codes, meanings, long_name="driving type", hist=hist)
    out["n_valid"] = out["n_valid"].astype(np.int32)
    for name, da in out.items():
        if name == "driving_type":
            continue
        long_name = {
            "multiple_r": "multiple correlation coefficient R",
            "f_stat": "F statistic of the multiple regression",
            "p_f": "p-value of the F test",
            "q_f": "Benjamini-Hochberg adjusted p-value of the F test",
            "n_valid": f"number of {dim}s with all series valid",
        }.get(name)
        if long_name is None:
            kind, drv = name.split("_", 1)
            long_name = {
                "r": f"partial correlation with {drv}",
                "p": f"two-sided p-value of the partial correlation with {drv}",
                "q": f"Benjamini-Hochberg adjusted p-value for {drv}",
            }[kind]
        da.attrs = {"units": "1", "long_name": long_name, "history": hist}
    ds = xr.Dataset(out)
    ds.attrs = {"history": hist, "alpha": alpha, "fdr": int(fdr)}
    return ds


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
    _check_choice(direction, "direction", ("increase", "decrease"))
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


def zone_trend_table(classes: xr.DataArray, zones: xr.DataArray) -> pd.DataFrame:
    """Share (%) of each trend class inside each planted zone (a check against known truth).

    Parameters
    ----------
    classes : xarray.DataArray
        Trend classes with ``flag_values``/``flag_meanings`` (0 = nodata).
    zones : xarray.DataArray
        Integer zones with ``flag_values``/``flag_meanings`` (e.g. the synthetic truth's
        ``zones``: 1 restoration, 2 urbanising, 3 high-carbon mountain; 0 = none).
    """
    zone_names = dict(zip([int(v) for v in zones.attrs.get("flag_values", [])],
                          str(zones.attrs.get("flag_meanings", "")).split()))
    class_names = _class_meanings(classes)
    z = np.asarray(zones.values)
    c = np.asarray(classes.values)
    rows = []
    for zone in sorted(int(v) for v in np.unique(z) if v != 0):
        inside = (z == zone) & (c != 0)
        n = int(inside.sum())
        for code, name in class_names.items():
            share = 100.0 * float(((c == code) & inside).sum()) / n if n else np.nan
            rows.append({"zone": zone_names.get(zone, str(zone)), "class_name": name,
                         "share_pct": share})
    table = pd.DataFrame(rows)
    return table.pivot(index="zone", columns="class_name", values="share_pct")


def assemble(
    sen_mk_ds: xr.Dataset,
    *,
    trend3: xr.DataArray,
    trend5: xr.DataArray,
    cv: xr.DataArray,
    stability: xr.DataArray,
    hurst: xr.Dataset,
    future: xr.DataArray,
    partial: xr.Dataset | None = None,
) -> xr.Dataset:
    """Merge every trend-stage product into one Dataset for writing (units kept)."""
    out = sen_mk_ds.copy()
    extra = {"trend3": trend3, "trend5": trend5, "cv": cv, "stability": stability,
             "hurst": hurst["hurst"], "hurst_undefined": hurst["hurst_undefined"],
             "future": future}
    for name, da in extra.items():
        da = da.drop_vars("landuse", errors="ignore")
        out[name] = da
        out[name].attrs.setdefault("units", "1")
    if partial is not None:
        for name, da in partial.data_vars.items():
            key = name if name.startswith(("r_", "p_", "q_")) else f"pcor_{name}"
            out[key] = da
    for name in out.data_vars:
        out[name].attrs.setdefault("units", "1")
        if out[name].dtype == bool:
            out[name] = out[name].astype("int8")
    return out


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
