"""Wall-to-wall carbon density: apply a trained model to every year of the cube."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from terracarbon.errors import ModelError, ParameterError
from terracarbon.data.io import history_line
from terracarbon.conventions import DENSITY_UNITS
from terracarbon import progress

# a compute writing lazy maps reports "year-chunks mapped n/N" (one task per year and chunk)
progress.label_tasks("block_map", "year-chunks mapped")


def choose_model(choice: str, best_model_file: str | os.PathLike) -> str:
    """Resolve ``maps.model`` (``best`` or a model name) to a model name."""
    if choice != "best":
        return choice
    best = json.loads(Path(best_model_file).read_text()).get("best_model")
    if not best:
        raise ModelError(f"{best_model_file}: no best_model recorded; rerun 02_train_models")
    return best


def _is_lazy(cube: xr.Dataset) -> bool:
    return any(var.chunks is not None for var in cube.data_vars.values())


def context_px(model) -> int:
    """Pixels of context a model reads around each pixel it maps (0: pixel by pixel).

    A network reads a patch (``halo`` = half its receptive field); an averaged model needs
    the largest context of its components.

    >>> class Forest: pass
    >>> class Net: halo = 4
    >>> class Mean: components = [Forest(), Net()]
    >>> context_px(Forest()), context_px(Net()), context_px(Mean())
    (0, 4, 4)
    """
    components = getattr(model, "components", None)
    if components is not None:
        return max((context_px(c) for c in components), default=0)
    return int(getattr(model, "halo", 0) or 0)


def years_read(model, mapped: Sequence[int], available: Sequence[int]) -> list[int]:
    """The cube years a model reads to map the ``mapped`` years: each year itself and, for a
    network over a sequence (``sequence_years``, the CNN-TCN), the years before it by
    position in ``available`` (the cube's years, ascending).

    >>> class Forest: pass
    >>> class Tcn: sequence_years = 3
    >>> class Mean: components = [Forest(), Tcn()]
    >>> years_read(Forest(), [2003], [2000, 2001, 2002, 2003]), years_read(Mean(), [2001], [2000, 2001, 2002])
    ([2003], [2000, 2001])
    """
    parts = getattr(model, "components", None) or [model]
    lookback = max(int(getattr(p, "sequence_years", 1) or 1) for p in parts) - 1
    available = [int(y) for y in available]
    positions = {available.index(int(y)) for y in mapped}
    return [available[i] for i in sorted({i - k for i in positions for k in range(lookback + 1)
                                          if i - k >= 0})]


def variables_read(model, cube: xr.Dataset) -> list[str]:
    """The variables of ``cube`` a model reads to map it: its ``features`` (an average's are
    its components') and ``region_mask``, as the carbon-model protocol
    (:class:`terracarbon.models.base.CarbonModel`) lets ``predict_map`` read. A mapping
    task loads only these from its chunk; a model without ``features`` gets every variable.

    >>> cube = xr.Dataset({v: ("x", [1.0]) for v in ("ndvi", "dem", "region_mask", "npp")})
    >>> class Forest: features = ["npp", "ndvi"]
    >>> class Unknown: pass
    >>> variables_read(Forest(), cube), len(variables_read(Unknown(), cube))
    (['ndvi', 'region_mask', 'npp'], 4)
    """
    features = getattr(model, "features", None)
    if not features:
        return list(cube.data_vars)
    wanted = {*features, "region_mask"}
    return [name for name in cube.data_vars if name in wanted]


def _chunk_edges(chunks: Sequence[int] | None, size: int) -> list[tuple[int, int]]:
    bounds = np.cumsum((0, *(chunks or (size,))))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def blocks_with_context(block, shared: Any, *args: Any, ny: int, nx: int,
                        chunks: Mapping[str, Sequence[int]], halo: int,
                        dtypes: Mapping[str, Any]) -> dict[str, Any]:
    """(y, x) dask arrays of the ``dtypes`` names, one task per spatial chunk.

    Each task calls ``block(shared, window, keep, *args)``: ``window`` (``{"y": slice,
    "x": slice}``) is the chunk grown by ``halo`` pixels of context (cut at the grid's
    edge), ``keep`` the chunk's ``(y, x)`` slices inside the window; ``block`` returns
    ``{name: array}`` of the chunk's shape. ``shared`` (a model, a list of members) enters
    the graph once: a cluster ships it to a worker once, not per task. Memory holds a few
    chunks, never the grid. Used by the yearly maps and the ensemble's change bounds.
    """
    import dask
    import dask.array as dsa

    rows, cols = _chunk_edges(chunks.get("y"), ny), _chunk_edges(chunks.get("x"), nx)
    shared_node = dask.delayed(shared)
    grid: dict[str, list[list]] = {n: [] for n in dtypes}
    for y0, y1 in rows:
        row: dict[str, list] = {n: [] for n in dtypes}
        for x0, x1 in cols:
            a0, a1 = max(0, y0 - halo), min(ny, y1 + halo)
            b0, b1 = max(0, x0 - halo), min(nx, x1 + halo)
            window = {"y": slice(a0, a1), "x": slice(b0, b1)}
            keep = (slice(y0 - a0, y1 - a0), slice(x0 - b0, x1 - b0))
            values = dask.delayed(block)(shared_node, window, keep, *args)
            for n, dtype in dtypes.items():
                row[n].append(dsa.from_delayed(values[n], shape=(y1 - y0, x1 - x0),
                                               dtype=dtype))
        for n in dtypes:
            grid[n].append(row[n])
    return {n: dsa.block(blocks) for n, blocks in grid.items()}


def _one_chunking(cube: xr.Dataset) -> xr.Dataset:
    """The cube with one chunking for every variable: one year per chunk, and in space the
    chunks of its first chunked (y, x) variable. A cube straight from Zarr mixes them
    (composites hold every year in one chunk, the mask its own tiles); stage 03's
    :func:`terracarbon.pipeline.compute.chunked` cube is returned unchanged."""
    first = next((v for v in cube.data_vars.values()
                  if v.chunks is not None and {"y", "x"} <= set(v.dims)), None)
    if first is None:
        return cube
    space = dict(zip(first.dims, first.chunks))
    wanted = {"y": space["y"], "x": space["x"]}
    if "year" in cube.dims:
        wanted["year"] = (1,) * cube.sizes["year"]

    def chunked_as_wanted(v: xr.DataArray) -> bool:
        have = dict(zip(v.dims, v.chunks or ()))
        return all(have.get(d) == c for d, c in wanted.items() if d in v.dims)

    if all(chunked_as_wanted(v) for v in cube.data_vars.values()):
        return cube
    return cube.chunk(wanted)


def _lazy_predictions(model, cube: xr.Dataset, years: list[int],
                      interval: float | None) -> xr.Dataset:
    """One dask task per year and spatial chunk of the cube; each reads its chunk plus the
    model's context (:func:`context_px`) and keeps only its chunk, so memory holds a few
    chunks, never a year of the grid. The first year is predicted on a 1-row strip for the
    layout."""
    import dask.array as dsa

    cube = _one_chunking(cube[variables_read(model, cube)])
    strip = model.predict_map(cube.isel(y=slice(0, 1)).compute(), years[0], interval=interval)
    names = list(strip.data_vars)

    available = [int(y) for y in cube["year"].values]

    def block_map(model, window, keep, year: int) -> dict[str, np.ndarray]:
        # the task reads its chunk itself, in one synchronous pass: a nested compute on a
        # dask.distributed worker would go back through the scheduler for every layer
        chunk = (cube.isel(window).sel(year=years_read(model, [year], available))
                 .load(scheduler="synchronous"))
        block = model.predict_map(chunk, year, interval=interval)
        return {n: block[n].values[keep] for n in names}

    layout = dict(ny=cube.sizes["y"], nx=cube.sizes["x"], halo=context_px(model),
                  chunks=cube.chunks,  # {dim: chunk sizes}, consistent across variables
                  dtypes={n: strip[n].dtype for n in names})
    by_year = [blocks_with_context(block_map, model, year, **layout) for year in years]
    coords = {"year": years, "y": cube["y"], "x": cube["x"]}
    return xr.Dataset(
        {n: (("year", "y", "x"), dsa.stack([maps[n] for maps in by_year]), strip[n].attrs)
         for n in names},
        coords=coords,
        attrs=strip.attrs,
    )


def predict_years(
    model,
    cube: xr.Dataset,
    *,
    years: Sequence[int] | None = None,
    interval: float | None = None,
) -> xr.Dataset:
    """Predict vegetation and soil carbon density for every year of the cube.

    Parameters
    ----------
    model : CarbonModel
        A fitted model (``predict_map(cube, year, interval=...)``).
    cube : xarray.Dataset
        The data-prep cube holding the model's features.
    years : sequence of int, optional
        Years to map; default every year of the cube.
    interval : float, optional
        Central prediction interval (e.g. 0.9) for ``*_lower``/``*_upper`` bounds.

    Returns
    -------
    xarray.Dataset
        ``veg_carbon_density``, ``soil_carbon_density`` (and bounds) on ``(year, y, x)`` in
        t C ha-1, with the cube's CRS. When the cube is dask-backed the result is lazy and
        chunked like the cube in space (one year per chunk): each task maps one chunk of
        one year from that chunk's features (plus a network's context), so writing it to
        Zarr holds a few chunks in memory, never a year of the grid.

    Raises
    ------
    ModelError
        Features of the model missing from the cube.
    ParameterError
        A requested year has no covariates in the cube.
    """
    missing = [f for f in getattr(model, "features", []) if f not in cube.data_vars]
    if missing:
        raise ModelError(f"model {model.name!r} needs {missing}, which the cube does not hold "
                         f"(cube variables: {sorted(cube.data_vars)}); retrain with "
                         "models.features matching the data-prep layers")
    available = [int(y) for y in cube["year"].values]
    years = available if years is None else [int(y) for y in years]
    absent = [y for y in years if y not in available]
    if absent:
        raise ParameterError(f"years {absent} have no covariates in the cube (cube years: "
                             f"{available}); add the rasters for those years or drop them")
    if _is_lazy(cube):
        out = _lazy_predictions(model, cube, years, interval)
    else:
        maps = [model.predict_map(cube, year, interval=interval).expand_dims(year=[year])
                for year in progress.iterate(years, "mapping", unit="years")]
        out = xr.concat(maps, dim="year", coords="minimal", compat="override")
    for name in out.data_vars:
        out[name].attrs.setdefault("units", DENSITY_UNITS)
    out.attrs["history"] = history_line("mapping.predict_years", model=model.name,
                                        interval=interval, years=f"{years[0]}-{years[-1]}")
    import rioxarray  # noqa: F401  registers .rio

    if cube.rio.crs is not None:
        out = out.rio.write_crs(cube.rio.crs)
    if "region_mask" in cube:
        out["region_mask"] = cube["region_mask"]
        out["region_mask"].attrs.setdefault("units", "1")
    return out
