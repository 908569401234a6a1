"""Reading and writing artifacts: atomically, with CF attributes and provenance.

Every writer goes through :func:`atomic_path`: the file is written under a temporary name in
the same folder and renamed into place only when complete, so an interrupted run never
leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import __version__
from terracarbon.errors import InputDataError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` on success.

    Works for files and for directories (a Zarr store). On an exception the temporary
    file or folder is removed and ``final`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> df = pd.DataFrame({"zone": [1, 2, 3, 4], "carbon_t": [10.0, 20.0, 30.0, 40.0]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_path(Path(folder) / "table.csv") as tmp_file:
    ...         df.to_csv(tmp_file, index=False)
    ...     sorted(p.name for p in Path(folder).iterdir())  # renamed into place
    ['table.csv']
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def history_line(function: str, **params: Any) -> str:
    """A CF ``history`` entry naming the function, its key parameters and the version."""
    args = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"terracarbon {__version__}: {function}({args})"


def update_history(line: str, *inputs: xr.Dataset | xr.DataArray | None) -> str:
    """A CF ``history`` that keeps the lineage: the inputs' entries, then ``line``.

    As xclim's ``update_history``: an output derived from inputs inherits their ``history``
    (each distinct entry once, in order of first appearance) and appends its own entry,
    so nothing upstream is lost.

    >>> a = xr.DataArray([1.0], attrs={"history": "made by a"})
    >>> print(update_history("made by f(a)", a))
    made by a
    made by f(a)
    """
    entries: list[str] = []
    for obj in inputs:
        if obj is None:
            continue
        for entry in str(obj.attrs.get("history", "")).splitlines():
            if entry and entry not in entries:
                entries.append(entry)
    if line not in entries:
        entries.append(line)
    return "\n".join(entries)


def require_units(obj: xr.Dataset | xr.DataArray, *, where: str = "") -> None:
    """Raise :class:`InputDataError` if any data variable lacks a ``units`` attribute."""
    arrays = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
    missing = [str(a.name) for a in arrays if "units" not in a.attrs]
    if missing:
        raise InputDataError(
            f"{where or 'dataset'}: variables {missing} have no 'units' attribute; every "
            "output must say its units (set da.attrs['units'])."
        )


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically; NumPy scalars/arrays are converted."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot serialise {type(o).__name__} to JSON")

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=default, sort_keys=False))
    return path


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False) -> Path:
    """Write a table as CSV atomically. Column names should carry units (``storage_Tg``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index)
    return path


def write_cube(ds: xr.Dataset, path: str | os.PathLike, *,
               derive: Callable[[xr.Dataset], xr.Dataset] | None = None) -> Path:
    """Write a dataset as NetCDF (``.nc``) or Zarr (``.zarr``) atomically.

    Every data variable must carry ``units``. The CRS (``spatial_ref``) written by
    rioxarray is kept as a CF grid-mapping variable.

    ``derive``: a function of the written dataset (opened back from the store, all years of
    a pixel block in one chunk) returning it with more variables; those are computed in a
    second pass from the store and added to it before the store is renamed into place. For variables that read many chunks of another
    (a temporal window reads every year of a pixel block), reading the block from the store
    holds one block; deriving them in the first pass would hold every year of the grid that
    the block's source tasks produced (data prep's read-and-align tasks are a layer-year
    each). A NetCDF cube is written in one pass, ``derive`` applied first.
    """
    path = Path(path)
    require_units(ds, where=path.name)
    if derive is not None and path.suffix == ".nc":
        ds, derive = derive(ds), None  # a NetCDF file is written in one pass
    with atomic_path(path) as tmp:
        _write_store(ds, tmp, path=path, append=False)
        if derive is not None:
            written = open_cube(tmp, whole_years=True)
            more = derive(written)
            added = [v for v in more.data_vars if v not in written.data_vars]
            if added:
                require_units(more[added], where=path.name)
                _write_store(more[added], tmp, path=path, append=True)
    return path


STORE_CHUNK_BYTES = 2**20
"""Largest Zarr chunk :func:`write_cube` makes by merging a dataset's dask chunks (bytes)."""


def store_chunks(da: xr.DataArray, *, target_bytes: int = STORE_CHUNK_BYTES
                 ) -> dict[str, int]:
    """Chunk edges for writing ``da`` to Zarr: its dask chunks merged, first along time (the
    dimensions other than y and x), then x, then y, while one chunk stays within
    ``target_bytes``; each edge is the whole dimension or a multiple of the dask chunk edge.
    Time first: a pixel block's series in one chunk is what trends and temporal windows
    read (:func:`open_cube` ``whole_years``), and a year's map is read from it once per
    block.

    A stage computes in ``compute.chunk_px`` squares, one year each: sized for memory and
    for the scheduler. A Zarr chunk costs a file and a round trip through Zarr's I/O thread
    whatever its size, so a store of the quick study's 4 KB chunks spent most of its
    writing and reading in those (about 20 ms each while other threads hold the GIL). Merged
    chunks stay bounded (``target_bytes`` in memory per write task) however large the grid.
    Returns ``{}`` for an array without dask chunks (the store's own chunking applies).
    """
    if da.chunks is None:
        return {}
    edges = {dim: max(sizes) for dim, sizes in zip(da.dims, da.chunks, strict=True)}
    order = [d for d in edges if d not in ("x", "y")] + [d for d in ("x", "y") if d in edges]
    for dim in order:
        others = int(np.prod([edges[d] for d in edges if d != dim]))
        fit = target_bytes // (da.dtype.itemsize * others)
        if fit >= da.sizes[dim]:
            edges[dim] = da.sizes[dim]
        elif fit >= 2 * edges[dim]:
            edges[dim] = fit // edges[dim] * edges[dim]
        else:
            break
    return edges


def _write_store(ds: xr.Dataset, tmp: Path, *, path: Path, append: bool) -> None:
    # encodings inherited from the files a variable was read from (Zarr v3 codecs, chunk
    # shapes) do not fit the new store; keep only the CRS link
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k == "grid_mapping"}
    if path.suffix == ".zarr":
        # one write task per store chunk (two tasks must never share one)
        for name, da in ds.data_vars.items():
            chunks = store_chunks(da)
            if chunks:
                ds[name] = da.chunk(chunks)
        # Zarr v2 layout: consolidated metadata is part of its spec and GDAL reads it
        ds.to_zarr(tmp, mode="a" if append else "w", consolidated=True, zarr_format=2)
    elif path.suffix == ".nc":
        ds.to_netcdf(tmp, engine="h5netcdf")
    else:
        raise InputDataError(f"{path}: cube files must end in .nc or .zarr")


def open_cube(path: str | os.PathLike, *, whole_years: bool = False) -> xr.Dataset:
    """Open a cube written by :func:`write_cube`, with its CRS restored (rioxarray).

    ``whole_years``: a Zarr cube's chunks hold every year of a pixel block (each task
    reads the block's year chunks itself, instead of a rechunk gathering them; for
    windows over years).
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: cube not found; run the stage that writes it first.")
    if path.suffix == ".zarr":
        if whole_years:  # dimensions not named keep the store's chunks
            ds = xr.open_zarr(path, consolidated=True, chunks={"year": -1})
        else:
            ds = xr.open_zarr(path, consolidated=True)
    else:
        ds = xr.open_dataset(path, engine="h5netcdf")
    import rioxarray  # noqa: F401  registers the .rio accessor

    if "spatial_ref" in ds.data_vars:  # the CF grid mapping is a coordinate, not data
        ds = ds.set_coords("spatial_ref")
    if "spatial_ref" in ds.coords and ds.rio.crs is not None:
        ds = ds.rio.write_crs(ds.rio.crs)
    return ds


def write_geotiff(
    da: xr.DataArray, path: str | os.PathLike, *, cog: bool = True, nodata: float | None = None
) -> Path:
    """Write a 2-D DataArray (with a CRS) as a (Cloud-Optimised) GeoTIFF atomically.

    ``units`` and ``long_name`` are written as GDAL band metadata.
    """
    import rioxarray  # noqa: F401

    path = Path(path)
    require_units(da, where=path.name)
    if da.ndim != 2:
        raise InputDataError(f"{path.name}: write_geotiff takes a 2-D (y, x) array, got {da.dims}")
    out = da
    if nodata is None:
        nodata = np.nan if np.issubdtype(da.dtype, np.floating) else 0
    out = out.rio.write_nodata(nodata, encoded=False)
    tags = {k: str(v) for k, v in da.attrs.items() if k in ("units", "long_name", "history")}
    with atomic_path(path) as tmp:
        kwargs: dict[str, Any] = {"compress": "DEFLATE", "tags": tags}
        if cog:
            kwargs["driver"] = "COG"
        else:
            kwargs.update(tiled=True)
        out.rio.to_raster(tmp, **kwargs)
    return path


def write_vector(gdf: Any, path: str | os.PathLike) -> Path:
    """Write a GeoDataFrame as GeoJSON atomically (CRS kept as written by GDAL)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # the layer name is written into the file: name it after the final path, not the
        # temporary one, so identical runs write identical bytes
        gdf.to_file(tmp, driver="GeoJSON", layer=path.stem)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV artifact written by :func:`write_table`."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: table not found; run the stage that writes it first.")
    return pd.read_csv(path)


def select_variable(ds: xr.Dataset, name: str, *, parameter: str, source: str) -> xr.DataArray:
    """``ds[name]`` or a :class:`ParameterError` naming the parameter and the choices."""
    from terracarbon.errors import ParameterError

    if name not in ds.data_vars:
        choices = sorted(v for v in ds.data_vars if v != "region_mask")
        raise ParameterError(f"{parameter}: {name!r} is not a variable of {source} "
                             f"(choices: {choices}); set {parameter} to one of them")
    return ds[name]
