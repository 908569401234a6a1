"""Covariate patches for the CNN models: reading them from the cube and cutting them out.

The CNN and CNN-TCN see a k x k window of every covariate around a pixel. This module reads
the data-prep cube into raw (unencoded) layers and cuts those windows, identically for
training (patches at the plots, :func:`sample_patches`) and for mapping (whole tiles), so
that a fully convolutional pass over a tile reproduces patch-wise prediction exactly. How
raw values become network channels is :mod:`terracarbon.models.cnn.encoding`.

Pixels beyond the grid edge are treated as missing in every layer (raw NaN, :func:`pad_raw`),
so they encode to all-zero channels: patches near the edge are padded the same way in
training and mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import require_columns
from terracarbon.errors import ModelError
from terracarbon.models.base import CATEGORICAL_FEATURES

NON_FEATURE_VARIABLES: frozenset[str] = frozenset({"region_mask", "spatial_ref"})
"""Cube variables never used as predictors by default."""


def default_features(cube: xr.Dataset) -> list[str]:
    """Every gridded cube variable (dims within ``(year, y, x)``) except the region mask."""
    return [
        str(name)
        for name, da in cube.data_vars.items()
        if name not in NON_FEATURE_VARIABLES
        and {"y", "x"} <= set(da.dims)
        and set(da.dims) <= {"year", "y", "x"}
    ]


SOURCE_DTYPE_ATTR = "source_dtype"
"""Attribute of a :func:`window_cube` layer: the dtype the layer had in the full cube."""


def default_categorical(cube: xr.Dataset, features: Sequence[str]) -> list[str]:
    """Features that are categorical: known class layers or integer-typed layers."""
    return [
        f
        for f in features
        if f in CATEGORICAL_FEATURES or np.issubdtype(
            np.dtype(cube[f].attrs.get(SOURCE_DTYPE_ATTR, cube[f].dtype)), np.integer)
    ]


def check_cube(cube: xr.Dataset, features: Sequence[str], *, where: str) -> None:
    """Raise :class:`ModelError` if features are missing or not on the ``(year,) y, x`` grid."""
    missing = [f for f in features if f not in cube.data_vars]
    if missing:
        raise ModelError(
            f"{where}: features {missing} are not in the cube (it has "
            f"{sorted(map(str, cube.data_vars))}); add them in data prep or drop them from "
            "the model's features."
        )
    bad = [f for f in features if not ({"y", "x"} <= set(cube[f].dims) <= {"year", "y", "x"})]
    if bad:
        raise ModelError(
            f"{where}: features {bad} do not have dims (y, x) or (year, y, x); "
            "regrid them in data prep."
        )
    if any("year" in cube[f].dims for f in features) and "year" not in cube.coords:
        raise ModelError(f"{where}: the cube has annual layers but no 'year' coordinate.")


def cube_years(cube: xr.Dataset) -> np.ndarray:
    """The cube's integer years (an empty array for a purely static cube)."""
    if "year" not in cube.coords:
        return np.array([], dtype=np.int64)
    return np.asarray(cube["year"].values).astype(np.int64)


def year_index(cube: xr.Dataset, years: np.ndarray, *, where: str) -> np.ndarray:
    """Position of each of ``years`` in the cube's year axis; ModelError naming absent years."""
    available = cube_years(cube)
    years = np.asarray(years).astype(np.int64)
    if available.size == 0:
        return np.zeros(years.shape, dtype=np.int64)
    lookup = pd.Index(available)
    idx = lookup.get_indexer(years)
    if (idx < 0).any():
        absent = sorted(set(years[idx < 0].tolist()))
        raise ModelError(
            f"{where}: years {absent} are not in the cube (it has years "
            f"{available.min()}–{available.max()}: {available.tolist()}); drop those plots or "
            "extend the cube."
        )
    return idx


def raw_layers(cube: xr.Dataset, features: Sequence[str], year_position: int) -> np.ndarray:
    """Stack the features for one cube year: array ``(n_features, ny, nx)`` float32.

    Static layers are broadcast over years; categorical codes are kept as float values.
    """
    layers = []
    for f in features:
        da = cube[f]
        if "year" in da.dims:
            da = da.isel(year=year_position)
        layers.append(np.asarray(da.transpose("y", "x").values, dtype=np.float32))
    return np.stack(layers)


def pad_raw(raw: np.ndarray, halo: int) -> np.ndarray:
    """Pad the last two axes by ``halo`` pixels of NaN: beyond the grid edge = missing."""
    pad = [(0, 0)] * (raw.ndim - 2) + [(halo, halo), (halo, halo)]
    return np.pad(raw, pad, mode="constant", constant_values=np.nan)


def cut_patches(
    padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch_size: int
) -> np.ndarray:
    """Cut ``patch_size`` x ``patch_size`` windows centred on ``(rows, cols)``.

    ``padded`` is ``(channels, ny + 2h, nx + 2h)`` with ``h = patch_size // 2``; returns
    ``(n, channels, patch_size, patch_size)`` (a copy).
    """
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (patch_size, patch_size), axis=(-2, -1)
    )
    # windows[c, r, q] is the patch whose top-left is padded pixel (r, q), i.e. centred on
    # grid pixel (r, q) thanks to the halo.
    return np.ascontiguousarray(np.moveaxis(windows[:, rows, cols], 1, 0))


def check_sample_rows(samples: pd.DataFrame, cube: xr.Dataset, *, where: str) -> None:
    """Raise :class:`ModelError` unless every sample row has a ``row, col, year`` on the grid."""
    if not isinstance(samples, pd.DataFrame):
        raise ModelError(f"{where}: samples must be a pandas DataFrame, got {type(samples)}.")
    require_columns(samples, ["row", "col", "year"], name=f"{where}: the sample table",
                    error=ModelError, fix="Extract the plots onto the target grid first "
                                          "(prep) so each row has row, col and year.")
    if samples[["row", "col", "year"]].isna().any().any():
        raise ModelError(f"{where}: row, col or year is missing (NaN) in some sample rows.")
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    rows, cols = samples["row"].to_numpy(), samples["col"].to_numpy()
    outside = (rows < 0) | (rows >= ny) | (cols < 0) | (cols >= nx)
    if outside.any():
        raise ModelError(
            f"{where}: {int(outside.sum())} sample rows have row/col outside the "
            f"{ny} x {nx} grid; re-extract the plots on this cube's grid."
        )


def sample_patches(
    cube: xr.Dataset,
    features: Sequence[str],
    year_positions: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    patch_size: int,
) -> np.ndarray:
    """Raw patch sequences centred on sample pixels: ``(n, T, n_features, k, k)`` float32.

    Parameters
    ----------
    cube : xarray.Dataset
        The data-prep cube holding ``features``.
    features : sequence of str
        Cube variables, in channel order.
    year_positions : ndarray (n, T) of int
        Positions on the cube's year axis of each row's T time steps.
    rows, cols : ndarray (n,)
        Grid row and column of each sample's centre pixel.
    patch_size : int
        Patch edge k in pixels (odd).
    """
    rows = np.asarray(rows).astype(np.int64)
    cols = np.asarray(cols).astype(np.int64)
    halo = patch_size // 2
    out = np.empty((len(rows), year_positions.shape[1], len(features), patch_size, patch_size),
                   dtype=np.float32)
    # each cube year is read and padded once, however many rows and time steps use it
    for pos in np.unique(year_positions):
        padded = pad_raw(raw_layers(cube, features, int(pos)), halo)
        for t in range(year_positions.shape[1]):
            hit = np.flatnonzero(year_positions[:, t] == pos)
            if hit.size:
                out[hit, t] = cut_patches(padded, rows[hit], cols[hit], patch_size)
    return out


def window_cube(
    cube: xr.Dataset,
    samples: pd.DataFrame,
    features: Sequence[str],
    *,
    patch_size: int,
    sequence_length: int = 1,
) -> tuple[xr.Dataset, pd.DataFrame]:
    """The part of ``cube`` a patch model reads at ``samples``, as a small mosaic cube.

    Every distinct sample pixel gets a ``patch_size`` x ``patch_size`` tile holding its window
    (NaN beyond the grid edge, as :func:`pad_raw`); tiles are laid side by side on a new
    ``(y, x)`` grid, and only the years a sequence of ``sequence_length`` steps ending at a
    sample year reaches are kept. A CNN or CNN-TCN fitted (or asked for sample predictions) on
    the mosaic and the returned samples sees exactly the patches it would see on the full
    cube, so its weights and predictions are identical — while the mosaic is a few MB that can
    be sent to worker processes, and building it reads only the sample years and, from a
    chunked (dask) cube, only the chunks that hold a window.

    Parameters
    ----------
    cube : xarray.Dataset
        The data-prep cube holding ``features``.
    samples : pandas.DataFrame
        The sample table (``row``, ``col``, ``year`` on the cube's grid).
    features : sequence of str
        The layers to keep.
    patch_size : int
        Patch edge k in pixels (odd).
    sequence_length : int, default 1
        Longest sequence of years a model reads (the CNN-TCN's ``sequence_length``).

    Returns
    -------
    mosaic : xarray.Dataset
        ``features`` on ``(year, y, x)`` (annual) or ``(y, x)`` (static), float32, with each
        layer's attributes and its original dtype in ``attrs["source_dtype"]``; integer
        ``y``/``x`` coordinates (tile pixels, not map coordinates).
    samples : pandas.DataFrame
        A copy of ``samples`` whose ``row``/``col`` point at the tile centres.

    Examples
    --------
    >>> ds = xr.Dataset({"a": (("year", "y", "x"), np.arange(2 * 4 * 5, dtype="float32")
    ...                         .reshape(2, 4, 5))}, coords={"year": [2020, 2021]})
    >>> plots = pd.DataFrame({"row": [0, 2], "col": [0, 3], "year": [2021, 2021]})
    >>> mosaic, local = window_cube(ds, plots, ["a"], patch_size=3)
    >>> mosaic["a"].sizes["year"], local[["row", "col"]].to_numpy().tolist()
    (1, [[1, 1], [1, 4]])
    >>> float(mosaic["a"].isel(year=0, y=1, x=4)) == float(ds["a"].sel(year=2021)[2, 3])
    True
    """
    halo = patch_size // 2
    rows = samples["row"].to_numpy().astype(np.int64)
    cols = samples["col"].to_numpy().astype(np.int64)
    pixel = rows * cube.sizes["x"] + cols
    unique, tile_of = np.unique(pixel, return_inverse=True)
    n_tiles = len(unique)
    tiles_x = int(np.ceil(np.sqrt(n_tiles)))
    tiles_y = int(np.ceil(n_tiles / tiles_x))
    ty, tx = np.divmod(np.arange(n_tiles), tiles_x)
    u_rows, u_cols = np.divmod(unique, cube.sizes["x"])

    years = cube_years(cube)
    keep_years = None
    if years.size:
        positions = year_index(cube, samples["year"].to_numpy(), where="window_cube")
        first = max(0, int(positions.min()) - sequence_length + 1)
        keep_years = years[first:int(positions.max()) + 1]

    # every window pixel inside the grid, read pointwise: a chunked (dask) cube reads only
    # the chunks that hold a window, never the whole grid (#17)
    offsets = np.arange(-halo, halo + 1)
    win_rows = u_rows[:, None, None] + offsets[None, :, None]     # (n, k, 1)
    win_cols = u_cols[:, None, None] + offsets[None, None, :]     # (n, 1, k)
    win_rows, win_cols = np.broadcast_arrays(win_rows, win_cols)  # (n, k, k)
    inside = ((win_rows >= 0) & (win_rows < cube.sizes["y"])
              & (win_cols >= 0) & (win_cols < cube.sizes["x"]))
    points = {"y": xr.DataArray(win_rows[inside], dims="point"),
              "x": xr.DataArray(win_cols[inside], dims="point")}

    def mosaic_of(values: np.ndarray) -> np.ndarray:
        """``values`` at the window pixels inside the grid -> the (Y, X) mosaic (NaN beyond
        the grid edge, as :func:`pad_raw`)."""
        windows = np.full(win_rows.shape, np.nan, dtype=np.float32)
        windows[inside] = values
        out = np.full((tiles_y, patch_size, tiles_x, patch_size), np.nan, dtype=np.float32)
        out[ty, :, tx, :] = windows
        return out.reshape(tiles_y * patch_size, tiles_x * patch_size)

    variables = {}
    for name in features:
        da = cube[name]
        attrs = {**da.attrs, SOURCE_DTYPE_ATTR: str(da.dtype)}
        if "year" in da.dims:
            da = da.sel(year=keep_years).transpose("year", "y", "x")
            gathered = np.asarray(da.isel(points).values).astype(np.float32)  # (year, point)
            data = np.stack([mosaic_of(gathered[i]) for i in range(da.sizes["year"])])
            variables[name] = (("year", "y", "x"), data, attrs)
        else:
            gathered = np.asarray(da.transpose("y", "x").isel(points).values).astype(np.float32)
            variables[name] = (("y", "x"), mosaic_of(gathered), attrs)
    coords = {"y": np.arange(tiles_y * patch_size), "x": np.arange(tiles_x * patch_size)}
    if keep_years is not None:
        coords["year"] = keep_years
    mosaic = xr.Dataset(variables, coords=coords, attrs={"window_cube_patch_size": patch_size})
    local = samples.copy()
    local["row"] = ty[tile_of] * patch_size + halo
    local["col"] = tx[tile_of] * patch_size + halo
    return mosaic, local
