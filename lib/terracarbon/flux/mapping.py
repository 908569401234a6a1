"""Monthly flux maps from a model fitted at towers.

:func:`predict_monthly` applies a fitted regressor to every pixel-month of a covariate cube,
block by block with dask. The features of each block are computed by the same kernel as at
the towers (:func:`terracarbon.flux.training.panel_features`), from the feature names
returned by :func:`terracarbon.flux.training.tower_features`, so a model sees identical
feature definitions in training and in mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.errors import InputDataError, ParameterError
from terracarbon.models.estimators import one_native_thread
from terracarbon.flux.training import (
    FLUX_UNITS,
    _parse,
    class_codes,
    panel_features,
)

DEFAULT_CHUNK_PIXELS = 16_384
"""Pixels per dask block (all months of a pixel are always in one block)."""


def _block_kernel(met: np.ndarray, stat: np.ndarray, *, estimator: Any, names: list[str],
                  meteo: tuple[str, ...], month: np.ndarray, lat_index: int | None,
                  cat_index: dict[str, int], time_cats: tuple[str, ...] = ()) -> np.ndarray:
    """Predict one (y, x) block: ``met`` (y, x, var, time), ``stat`` (y, x, svar) -> (y, x, time).

    ``met`` holds the meteorology, then the class codes of ``time_cats`` (categorical
    layers that change over time), one variable each."""
    by, bx, _, n_t = met.shape
    n = by * bx
    arrays = {m: met[:, :, i, :].reshape(n, n_t).T for i, m in enumerate(meteo)}
    lat = stat[:, :, lat_index].reshape(n) if lat_index is not None else None
    cats = {}
    for k, cat in enumerate(time_cats):
        c = met[:, :, len(meteo) + k, :].reshape(n, n_t).T
        cats[cat] = np.where(np.isfinite(c), c, -1).astype(np.int64)
    for cat, j in cat_index.items():
        c = stat[:, :, j].reshape(n)
        cats[cat] = np.where(np.isfinite(c), c, -1).astype(np.int64)
    feats = panel_features(names, meteo=arrays, month=month, lat=lat, categories=cats)
    flat = feats.reshape(n_t * n, len(names))
    ok = np.isfinite(flat).all(axis=1)
    out = np.full(n_t * n, np.nan, dtype=np.float32)
    if ok.any():
        with one_native_thread():  # blocks run in dask threads: no OpenMP team inside
            out[ok] = np.asarray(estimator.predict(flat[ok]), dtype=np.float32)
    return out.reshape(n_t, n).T.reshape(by, bx, n_t)


def predict_monthly(
    estimator: Any,
    cube: xr.Dataset,
    *,
    features: Sequence[str],
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    lat: str = "lat",
    name: str = "flux",
) -> xr.DataArray:
    """Monthly flux of every pixel-month of a covariate cube, computed in dask blocks.

    Parameters
    ----------
    estimator : fitted regressor
        Anything with ``predict(X)`` taking the features in the order of ``features``,
        e.g. fitted on ``tower_features(table)[0]``; predicts g C m-2 month-1.
    cube : xarray.Dataset
        Dims ``time`` (consecutive month starts), ``y``, ``x``. Monthly meteorology as
        ``(time, y, x)`` variables named as in the tower table (``ta`` degC, ``sw_in``,
        ``sw_in_pot`` W m-2, ``vpd`` hPa, ``p`` mm month-1); categorical layers ``(y, x)``
        or ``(time, y, x)`` when the class changes (``igbp`` as class names or MODIS integer
        codes 1–17, ``landuse`` as the study's codes); ``lat`` (degrees north,
        a ``(y, x)`` variable or coordinate) when the features need it. NumPy or dask.
    features : sequence of str
        Feature names, exactly as returned by
        :func:`terracarbon.flux.training.tower_features` for the fitted model.
    chunk_pixels : int, default 16384
        Pixels per block (each block holds all months); memory per block is about
        ``chunk_pixels x n_months x n_features x 8`` bytes.
    lat : str, default "lat"
        Name of the latitude variable/coordinate.
    name : str, default "flux"
        Name of the output.

    Returns
    -------
    xarray.DataArray (time, y, x) float32
        Predicted flux (g C m-2 month-1), lazy (dask); ``.compute()`` runs the blocks.
        NaN where any feature is NaN: a missing covariate, an unknown class, the first
        month(s) with ``lag1_``/``sum3_`` features.

    Raises
    ------
    ParameterError
        ``chunk_pixels`` not a positive integer, unknown feature names.
    InputDataError
        The cube lacks a dim or a variable the features need, or its months are not
        consecutive while lag features need them.

    Notes
    -----
    Each block is reshaped to a ``(time, pixel)`` panel, the shared kernel
    :func:`~terracarbon.flux.training.panel_features` computes the features, and the
    estimator predicts the rows with no NaN in one call — no Python loop over pixels.
    Climate features (``clim_``/``anom_``) use all months of the cube, as at towers they use
    all months of the tower's record.
    """
    names = list(features)
    parsed = _parse(names)
    if isinstance(chunk_pixels, bool) or not isinstance(chunk_pixels, (int, np.integer)) \
            or chunk_pixels < 1:
        raise ParameterError(f"chunk_pixels={chunk_pixels!r}: expected a positive integer.")
    if not isinstance(cube, xr.Dataset):
        raise ParameterError(f"cube: expected an xarray Dataset, got {type(cube).__name__}.")
    missing_dims = [d for d in ("time", "y", "x") if d not in cube.dims]
    if missing_dims:
        raise InputDataError(f"cube lacks dim(s) {missing_dims}; expected (time, y, x).")
    need = list(parsed.meteo) + list(parsed.categorical)
    missing = [v for v in need if v not in cube.variables]
    if parsed.needs_lat and lat not in cube.variables:
        missing.append(lat)
    if missing:
        raise InputDataError(f"cube lacks variable(s) {missing} that the features need "
                             f"({names}).")
    if not parsed.meteo:
        raise ParameterError("features: at least one meteorological feature is needed to "
                             "give the output its time axis.")
    times = pd.DatetimeIndex(cube["time"].values)
    month = np.asarray(times.month)
    if any(n.startswith(("lag1_", "sum3_")) for n in names) and times.size > 1:
        per = times.to_period("M")
        if not np.all(np.diff(per.year * 12 + per.month) == 1):
            raise InputDataError("cube time: lag1_/sum3_ features need consecutive months; "
                                 "the cube's time axis has gaps or repeats.")
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    cx = min(nx, int(chunk_pixels))
    cy = max(1, min(ny, int(chunk_pixels) // cx))

    # categorical layers that change over time (land use by year, repeated for its months)
    # travel with the meteorology as class codes
    time_cats = tuple(c for c in parsed.categorical if "time" in cube[c].dims)
    coded = [xr.apply_ufunc(lambda a, c=cat: class_codes(a, c).astype(np.float64),
                            cube[cat].transpose("time", "y", "x"), dask="parallelized",
                            output_dtypes=[np.float64]) for cat in time_cats]
    met = xr.concat([cube[m].transpose("time", "y", "x").astype(np.float64)
                     for m in parsed.meteo] + [c.drop_vars(
                         [k for k in c.coords if k not in ("time", "y", "x")]) for c in coded],
                    dim="var", coords="minimal", compat="override")
    met = met.chunk({"var": -1, "time": -1, "y": cy, "x": cx})
    layers, lat_index, cat_index = [], None, {}
    template = cube[parsed.meteo[0]].isel(time=0, drop=True)
    if parsed.needs_lat:
        lat_index = len(layers)
        layers.append(xr.broadcast(cube[lat].astype(np.float64), template)[0]
                      .transpose("y", "x"))
    for cat in parsed.categorical:
        layer = cube[cat]
        if cat in time_cats:
            continue
        if set(layer.dims) != {"y", "x"}:
            raise InputDataError(f"cube[{cat!r}] has dims {layer.dims}; expected a static "
                                 "(y, x) or a monthly (time, y, x) layer.")
        codes = xr.apply_ufunc(lambda a, c=cat: class_codes(a, c)
                               .astype(np.float64), layer.transpose("y", "x"),
                               dask="parallelized", output_dtypes=[np.float64])
        cat_index[cat] = len(layers)
        layers.append(codes)
    if not layers:
        layers.append(xr.zeros_like(template, dtype=np.float64).transpose("y", "x"))
    stat = xr.concat(layers, dim="svar", coords="minimal", compat="override")
    stat = stat.drop_vars([c for c in stat.coords if c not in ("y", "x")])
    stat = stat.chunk({"svar": -1, "y": cy, "x": cx})
    met = met.drop_vars([c for c in met.coords if c not in ("time", "y", "x")])

    out = xr.apply_ufunc(
        _block_kernel, met, stat,
        input_core_dims=[["var", "time"], ["svar"]], output_core_dims=[["time"]],
        dask="parallelized", output_dtypes=[np.float32],
        kwargs={"estimator": estimator, "names": names, "meteo": parsed.meteo,
                "month": month, "lat_index": lat_index, "cat_index": cat_index,
                "time_cats": time_cats},
    ).transpose("time", "y", "x")
    out.name = name
    out.attrs = {"units": FLUX_UNITS, "long_name": f"monthly {name} predicted from "
                 f"{type(estimator).__name__}",
                 "history": f"terracarbon.flux.mapping.predict_monthly(features={names}, "
                            f"chunk_pixels={int(chunk_pixels)})"}
    return out
