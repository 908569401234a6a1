"""Plumbing shared by the pixel-wise trend wrappers (no statistics here).

Input checks, the time coordinate in years, applying a per-pixel kernel along the time
dimension with ``xr.apply_ufunc(..., dask="parallelized")``, and the CF flag attributes of
integer class rasters. The statistics live in :mod:`~terracarbon.trends.mann_kendall`,
:mod:`~terracarbon.trends.persistence` and :mod:`~terracarbon.trends.drivers`; their numba
kernels in :mod:`~terracarbon.trends.kernels`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from terracarbon.checks import check_int
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

log = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.2425
"""Mean Gregorian year, used to turn a datetime64 time coordinate into decimal years."""


# --------------------------------------------------------------------------- validation
def check_series(da: object, *, name: str, dim: str) -> xr.DataArray:
    """``da`` if it is a numeric DataArray with dimension ``dim``; ParameterError otherwise."""
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


def check_min_valid(min_valid: object) -> int:
    """The fewest valid years per pixel, an integer >= 3 (fewer cannot give a test)."""
    return check_int(min_valid, name="min_valid", minimum=3, hint="(valid years per pixel)")


def check_landuse(landuse: xr.DataArray | None, like: xr.DataArray) -> xr.DataArray | None:
    """Land-use codes on the grid of ``like``, transposed to its dims (None passes through)."""
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


# --------------------------------------------------------------------------- applying kernels
def single_time_chunk(da: xr.DataArray, dim: str) -> xr.DataArray:
    """``da`` with ``dim`` in one dask chunk (the kernels need whole series)."""
    if da.chunks is not None and len(da.chunksizes.get(dim, ())) > 1:
        log.debug("rechunking %s to a single chunk along %r", da.name, dim)
        return da.chunk({dim: -1})
    return da


def float_data(da: xr.DataArray) -> xr.DataArray:
    """``da`` as a float array (integer input as float64; float32 stays float32)."""
    return da if np.issubdtype(da.dtype, np.floating) else da.astype(np.float64)


def pixels_by_time(block: np.ndarray) -> np.ndarray:
    """A ``(..., time)`` block as ``(pixels, time)``."""
    # apply_ufunc puts the core (time) dim last; merging the leading dims is a view
    return block.reshape(-1, block.shape[-1])


def general_subset(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The pixels ``rows`` of ``x`` as a C-contiguous float64 copy, for the general kernels."""
    # one float64 C-contiguous specialisation of the per-pixel kernels keeps the numba
    # compile (first use on a machine) short; these pixels are the minority with gaps
    return np.ascontiguousarray(x[rows], dtype=np.float64)


def stack_outputs(
    da: xr.DataArray, func: Callable[[np.ndarray], np.ndarray], names: Sequence[str], dim: str
) -> dict[str, xr.DataArray]:
    """Apply ``func`` (``(..., time)`` -> ``(..., len(names))``) along ``dim``; one array a name."""
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


# --------------------------------------------------------------------------- class rasters
def flagged(codes: xr.DataArray, meanings: Sequence[str], *, long_name: str,
            hist: str) -> xr.DataArray:
    """int16 class codes 1..len(meanings), 0 = nodata, with CF flag attributes."""
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


def class_meanings(classes: xr.DataArray) -> dict[int, str]:
    """``{code: name}`` from a class raster's ``flag_values``/``flag_meanings``."""
    values = classes.attrs.get("flag_values")
    meanings = classes.attrs.get("flag_meanings")
    if values is None or meanings is None:
        raise ParameterError(
            f"classes ({classes.name!r}): expected 'flag_values' and 'flag_meanings' "
            f"attributes; pass the output of classify_trend/stability_classes/future_trend."
        )
    return {int(v): m for v, m in zip(np.atleast_1d(values), str(meanings).split())}
