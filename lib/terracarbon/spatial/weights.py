"""Raster inputs of the spatial statistics and their implicit grid weights.

No ``W`` object is built: a cell's neighbours are the valid cells at fixed row/column
offsets (rook, queen, or a distance band in map units), with binary weights that the
statistics row-standardise (esda's ``transformation="r"``). Nodata (NaN) cells are neither
observations nor neighbours.
"""

from __future__ import annotations

from typing import Any, Literal

import dask.array as dsa
import numpy as np
import xarray as xr

from terracarbon.checks import check_choice
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

__all__ = ["Contiguity", "as_grid", "check_same_grid", "materialise", "neighbour_offsets"]

Contiguity = Literal["queen", "rook"]
_ROOK = [(-1, 0), (0, -1), (0, 1), (1, 0)]
_QUEEN = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def as_grid(da: Any, name: str) -> xr.DataArray:
    """The (y, x) float64 view of a raster argument, validated."""
    if not isinstance(da, xr.DataArray):
        raise InputDataError(
            f"{name}: expected an xarray.DataArray with dims ('y', 'x'), got "
            f"{type(da).__name__}; for 1-D values with a libpysal W use moran_w/lisa_w."
        )
    if set(da.dims) != {"y", "x"}:
        raise InputDataError(
            f"{name}: expected dims ('y', 'x'), got {da.dims}; select or loop over the "
            "other dims (moran_by_year does this for 'year')."
        )
    if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.complexfloating):
        raise InputDataError(f"{name}: expected a real numeric raster, got dtype {da.dtype}.")
    return da.transpose("y", "x").astype(np.float64)


def _spacing(da: xr.DataArray, dim: str) -> float:
    """Pixel spacing along ``dim`` in map units, for a distance band."""
    if dim not in da.coords or da.sizes[dim] < 2:
        raise ParameterError(
            f"distance_band needs a regular '{dim}' coordinate with at least 2 values to "
            f"know the pixel spacing; the raster has {da.sizes.get(dim, 0)} along '{dim}'. "
            "Use contiguity instead or add coordinates."
        )
    step = np.diff(np.asarray(da[dim].values, dtype=np.float64))
    if not np.allclose(step, step[0], rtol=1e-6, atol=0):
        raise ParameterError(f"distance_band needs a regular grid; '{dim}' spacing varies.")
    return abs(float(step[0]))


def neighbour_offsets(
    da: xr.DataArray, contiguity: str, distance_band: float | None
) -> tuple[np.ndarray, int]:
    """(drow, dcol) offsets of a cell's potential neighbours, and the halo they need."""
    check_choice(contiguity, ("queen", "rook"), name="contiguity")
    if distance_band is None:
        offs = _QUEEN if contiguity == "queen" else _ROOK
        return np.array(offs, dtype=np.int64), 1
    if not isinstance(distance_band, (int, float)) or not distance_band > 0:
        raise ParameterError(
            f"distance_band={distance_band!r}: expected a positive radius in map units (m)."
        )
    dy, dx = _spacing(da, "y"), _spacing(da, "x")
    rmax, cmax = int(distance_band // dy), int(distance_band // dx)
    rows, cols = np.meshgrid(
        np.arange(-rmax, rmax + 1), np.arange(-cmax, cmax + 1), indexing="ij"
    )
    # relative tolerance so a band of exactly k pixels includes the cells k pixels away
    inside = (rows * dy) ** 2 + (cols * dx) ** 2 <= (distance_band * (1 + 1e-9)) ** 2
    inside &= (rows != 0) | (cols != 0)
    if not inside.any():
        raise ParameterError(
            f"distance_band={distance_band} is smaller than the pixel spacing "
            f"({dy} x {dx} m): every cell would be an island; use a larger band."
        )
    offs = np.column_stack([rows[inside], cols[inside]]).astype(np.int64)
    return offs, int(max(rmax, cmax))


def check_same_grid(a: xr.DataArray, b: xr.DataArray, names: tuple[str, str]) -> None:
    """GridMismatchError unless ``a`` and ``b`` have one shape and the same y/x coordinates."""
    if a.shape != b.shape:
        raise GridMismatchError(
            f"{names[0]} has shape {a.shape} but {names[1]} has {b.shape}; put both on the "
            "target grid first (prep alignment)."
        )
    for dim in ("y", "x"):
        if dim in a.coords and dim in b.coords and not np.allclose(a[dim], b[dim]):
            raise GridMismatchError(
                f"{names[0]} and {names[1]} have different '{dim}' coordinates; align them."
            )


def materialise(arr: Any) -> np.ndarray:
    """A NumPy array of a NumPy or dask array (computing the latter)."""
    return np.asarray(arr.compute() if isinstance(arr, dsa.Array) else arr)
