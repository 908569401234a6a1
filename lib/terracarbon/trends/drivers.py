"""Climatic drivers of a series: pixel-wise partial correlation, multiple R, F test and the
driving-type classes of the Ningxia zoning rule."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from terracarbon.checks import check_alpha
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import GridMismatchError, ParameterError
from terracarbon.trends import kernels as _k
from terracarbon.trends.core import (
    check_min_valid,
    check_series,
    flagged,
    float_data,
    single_time_chunk,
    time_in_years,
)

__all__ = ["benjamini_hochberg", "partial_correlation"]

_PIXEL_BATCH = 65_536
"""Pixels per batch in the NumPy partial-correlation kernel (bounds the scratch memory)."""


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
    y = check_series(y, name="y", dim=dim)
    alpha = check_alpha(alpha)
    min_valid = check_min_valid(min_valid)
    items = _driver_dict(drivers)
    for k, v in items.items():
        check_series(v, name=f"drivers[{k!r}]", dim=dim)
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
    arrays = [single_time_chunk(float_data(a), dim) for a in aligned]
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
    hist = update_history(history_line("trends.partial_correlation", drivers=names, dim=dim,
                                       alpha=alpha, fdr=fdr, min_valid=min_valid),
                          y, *items.values())
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
    out["driving_type"] = flagged(codes, meanings, long_name="driving type", hist=hist)
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
