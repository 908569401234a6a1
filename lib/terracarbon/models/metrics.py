"""Accuracy metrics for carbon-density models and the standard metrics table.

``r2``, ``rmse`` and ``mae`` are written out here in NumPy (tests compare them with
:mod:`sklearn.metrics`) so their NaN handling is ours: pairs where either the observation or
the prediction is NaN are dropped before scoring. ``ssim_maps`` scores the spatial pattern of
a predicted map against a reference map with :func:`skimage.metrics.structural_similarity`.

Every model evaluation in terracarbon ends in :func:`metrics_table`, whose columns are fixed:
``model, target, cv_scheme, split, r2, rmse, mae, ssim``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.conventions import CARBON_POOLS
from terracarbon.errors import ParameterError

METRICS_COLUMNS: list[str] = ["model", "target", "cv_scheme", "split", "r2", "rmse", "mae", "ssim"]
"""The exact columns of every metrics table, in order."""

SPLITS: tuple[str, ...] = ("train", "validation", "test", "cv_mean", "cv_sd")
"""Allowed values of the ``split`` column."""

TARGET_NAMES: tuple[str, ...] = tuple(CARBON_POOLS)
"""Allowed values of the ``target`` column."""


def _paired(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ParameterError(
            f"y_true has {t.size} values but y_pred has {p.size}; pass observations and "
            "predictions for the same rows."
        )
    keep = np.isfinite(t) & np.isfinite(p)
    return t[keep], p[keep]


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot.

    Parameters
    ----------
    y_true, y_pred : array-like
        Observed and predicted carbon density (t C ha-1); pairs with a NaN are dropped.

    Returns
    -------
    float
        R² (dimensionless, ≤ 1; negative when worse than the mean of ``y_true``). NaN with
        fewer than 2 valid pairs or when ``y_true`` is constant.
    """
    t, p = _paired(y_true, y_pred)
    if t.size < 2:
        return float("nan")
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root-mean-square error in the units of the inputs (t C ha-1); NaN pairs dropped."""
    t, p = _paired(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error in the units of the inputs (t C ha-1); NaN pairs dropped."""
    t, p = _paired(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else float("nan")


def score(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``{"r2", "rmse", "mae"}`` of one set of predictions (t C ha-1 for rmse/mae)."""
    return {"r2": r2(y_true, y_pred), "rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred)}


def ssim_maps(
    pred: xr.DataArray | np.ndarray,
    ref: xr.DataArray | np.ndarray,
    *,
    mask: xr.DataArray | np.ndarray | None = None,
    win_size: int = 7,
    block_pixels: int = 1_000_000,
) -> float:
    """Structural similarity (SSIM) between a predicted and a reference carbon-density map.

    Parameters
    ----------
    pred, ref : 2-D DataArray or ndarray, (y, x)
        Predicted and reference maps (t C ha-1) on the same grid. A DataArray may be lazy
        (dask or a file): it is read one band of rows at a time.
    mask : 2-D bool array, optional
        Pixels to score (e.g. ``region_mask``). Pixels where either map is NaN are always
        excluded.
    win_size : int, default 7
        Side of the square SSIM window (pixels, odd).
    block_pixels : int, default 1,000,000
        About how many pixels each band of whole rows holds (memory, not the result).

    Returns
    -------
    float
        Mean SSIM over the scored pixels (dimensionless, ≤ 1; 1 = identical).

    Raises
    ------
    ParameterError
        Maps of different shapes, not 2-D, smaller than the window, or no pixel to score.

    Notes
    -----
    ``data_range`` is the range (max - min) of the reference inside the scored pixels, so a
    model is not rewarded for predicting a wider range. NaN handling: outside the scored
    pixels both maps are filled with the reference mean (so the filled area is featureless
    and identical in both), the full SSIM image is computed with
    :func:`skimage.metrics.structural_similarity` (uniform window, ``full=True``), and its
    mean is taken **over the scored pixels only**, leaving out the ``(win_size - 1) // 2``
    pixel border as skimage does (so without a mask and NaN the result equals skimage's
    mean SSIM). Windows that straddle the mask edge therefore see the filled constant, which
    slightly damps SSIM at the border; this is the usual compromise (skimage has no masked
    SSIM).

    Memory: streamed in bands of whole rows. A first pass finds the fill value and the
    range; a second computes the SSIM image of each band with a halo of
    ``(win_size - 1) // 2`` rows, so every scored pixel sees the same window as in the
    whole image. The result equals the whole-image SSIM up to float rounding (the uniform
    filter's running sums start at the band's edge; about 1e-12 relative), and is bit for
    bit the whole-image one when the map fits in one band. About 20 x 8 bytes per pixel of
    a band (160 MB at the default ``block_pixels``), whatever the size of the map (#17).
    """
    from skimage.metrics import structural_similarity

    shape = tuple(np.shape(pred))
    if len(shape) != 2 or shape != tuple(np.shape(ref)):
        raise ParameterError(
            f"ssim_maps: pred has shape {shape} and ref {tuple(np.shape(ref))}; expected two "
            "2-D (y, x) maps on the same grid (select one year first)."
        )
    if min(shape) < win_size:
        raise ParameterError(
            f"ssim_maps: maps of shape {shape} are smaller than win_size={win_size}; "
            "pass a smaller odd win_size."
        )
    if mask is not None and tuple(np.shape(mask)) != shape:
        raise ParameterError(f"ssim_maps: mask has shape {tuple(np.shape(mask))}, expected "
                             f"{shape}.")
    ny, nx = shape
    pad = (win_size - 1) // 2
    bands = _row_bands(ny, max(win_size, int(block_pixels) // nx))

    def read(a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.asarray(pred[a:b], dtype=np.float64)
        r = np.asarray(ref[a:b], dtype=np.float64)
        valid = np.isfinite(p) & np.isfinite(r)
        if mask is not None:
            valid &= np.asarray(mask[a:b]).astype(bool)
        return p, r, valid

    # pass 1: the reference's mean (the fill) and range inside the scored pixels
    n_valid, total, low, high = 0, 0.0, np.inf, -np.inf
    for a, b in bands:
        _, r, valid = read(a, b)
        if valid.any():
            inside = r[valid]
            n_valid += inside.size
            total += float(inside.sum())
            low, high = min(low, float(inside.min())), max(high, float(inside.max()))
    if not n_valid:
        raise ParameterError("ssim_maps: no pixel is finite in both maps inside the mask.")
    fill = total / n_valid
    data_range = high - low
    # pass 2: each band's SSIM image with a halo; skimage averages the SSIM image without a
    # border of `pad` pixels, where the window runs off the array: the same is left out here
    # so the unmasked case equals skimage's.
    n_scored, ssim_sum = 0, 0.0
    for a, b in bands:
        lo, hi = max(a - pad, 0), min(b + pad, ny)
        p, r, valid = read(lo, hi)
        scored = valid[a - lo : b - lo].copy()
        scored[: max(pad - a, 0)] = False  # the grid's top border
        scored[max(ny - pad - a, 0) :] = False  # and bottom border
        scored[:, :pad] = scored[:, nx - pad :] = False
        n_scored += int(scored.sum())
        if data_range == 0.0 or not scored.any():
            continue
        _, ssim_image = structural_similarity(
            np.where(valid, r, fill), np.where(valid, p, fill), data_range=data_range,
            win_size=win_size, full=True)
        ssim_sum += float(ssim_image[a - lo : b - lo][scored].sum())
    if not n_scored:
        raise ParameterError("ssim_maps: no scored pixel away from the map border.")
    return float("nan") if data_range == 0.0 else ssim_sum / n_scored


def _row_bands(n_rows: int, rows_per_band: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bands of at least ``rows_per_band`` rows covering ``n_rows`` (a short
    last band joins the one before, so every band is at least as tall as the window)."""
    starts = list(range(0, n_rows, rows_per_band))
    if len(starts) > 1 and n_rows - starts[-1] < rows_per_band:
        starts.pop()
    return [(a, b) for a, b in zip(starts, [*starts[1:], n_rows])]


def metrics_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Assemble evaluation results into the standard metrics table.

    Parameters
    ----------
    rows : iterable of mappings
        Each with keys ``model`` (str), ``target`` (``"veg"`` or ``"soil"``), ``cv_scheme``
        (str, e.g. ``"random"``, ``"spatial_block"``, ``"7:2:1"``), ``split`` (one of
        ``train, validation, test, cv_mean, cv_sd``), ``r2`` (1), ``rmse`` and ``mae``
        (t C ha-1); ``ssim`` (1) is optional and NaN where there is no reference map.

    Returns
    -------
    pandas.DataFrame
        Exactly the columns ``model, target, cv_scheme, split, r2, rmse, mae, ssim``, one row
        per input mapping, in input order.

    Raises
    ------
    ParameterError
        A row lacks a required key, or has an unknown ``target`` or ``split``.
    """
    records = []
    required = ("model", "target", "cv_scheme", "split", "r2", "rmse", "mae")
    for i, row in enumerate(rows):
        missing = [k for k in required if k not in row]
        if missing:
            raise ParameterError(f"metrics_table: row {i} lacks keys {missing}; got {sorted(row)}.")
        if row["target"] not in TARGET_NAMES:
            raise ParameterError(
                f"metrics_table: row {i} has target={row['target']!r}; expected one of "
                f"{list(TARGET_NAMES)}."
            )
        if row["split"] not in SPLITS:
            raise ParameterError(
                f"metrics_table: row {i} has split={row['split']!r}; expected one of "
                f"{list(SPLITS)}."
            )
        records.append({k: row.get(k, np.nan) for k in METRICS_COLUMNS})
    df = pd.DataFrame.from_records(records, columns=METRICS_COLUMNS)
    for col in ("r2", "rmse", "mae", "ssim"):
        df[col] = df[col].astype(np.float64)
    return df
