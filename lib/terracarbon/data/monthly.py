"""Monthly rasters onto the study grid: a lazy ``(time, y, x)`` cube.

Two layouts of monthly data (NDVI, temperature, precipitation, NPP ...):

* one file per month, named by a pattern with ``{year}`` and ``{month}`` fields
  (:func:`read_monthly_pattern`, e.g. ``"ndvi_{year}_{month:02d}.tif"``);
* one multi-band file, one band per month (:func:`read_monthly_bands`).

Each month is read and aligned exactly as the data-prep stage reads and aligns an annual
layer — :func:`terracarbon.data.prep.read_layer` (nodata, scale/offset, band) then
:func:`terracarbon.data.grid.align_to_grid` (GDAL warp; ``average`` from finer sources,
``bilinear`` otherwise, unless ``resampling`` is given) — one dask task per month, so
nothing is read until the cube is computed or written.
"""

from __future__ import annotations

import glob
import os
import re
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import check_choice
from terracarbon.data.grid import KINDS, RESAMPLING_NAMES, GridSpec, align_to_grid
from terracarbon.data.io import history_line
from terracarbon.data.prep import read_layer
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

__all__ = ["read_monthly_pattern", "read_monthly_bands", "grid_of"]

_FIELDS = {"year", "month"}


# -- the target grid ---------------------------------------------------------------------

def grid_of(like: xr.DataArray | xr.Dataset) -> GridSpec:
    """The :class:`~terracarbon.data.grid.GridSpec` of a layer already on a study grid.

    Parameters
    ----------
    like : xarray.DataArray or Dataset
        ``y``/``x`` pixel centres (north-up, square pixels, projected CRS in metres) with
        the CRS attached (rioxarray), e.g. a variable of the data-prep cube.

    Raises
    ------
    GridMismatchError
        No CRS, no ``y``/``x``, non-square or irregular pixels.
    ParameterError
        A geographic (degree) CRS: study grids are projected.
    """
    import rioxarray  # noqa: F401  registers .rio

    if not {"y", "x"} <= set(like.dims):
        raise GridMismatchError(f"like: dims {tuple(like.dims)} lack 'y'/'x'; pass a layer on "
                                "the study grid (e.g. a variable of the data-prep cube).")
    if like.rio.crs is None:
        raise GridMismatchError("like: no CRS; attach it with like.rio.write_crs(...) or pass a "
                                "variable of the data-prep cube.")
    rx, ry = like.rio.resolution()
    if not np.isclose(abs(rx), abs(ry), rtol=1e-9) or ry > 0:
        raise GridMismatchError(f"like: pixels are {abs(rx)} x {abs(ry)} (y step {ry}); the "
                                "study grid is north-up with square pixels.")
    grid = GridSpec(crs=like.rio.crs.to_wkt(), resolution=abs(rx), bounds=like.rio.bounds())
    x, y = grid.coords()
    if (x.size != like.sizes["x"] or y.size != like.sizes["y"]
            or not np.allclose(x, like["x"].values, rtol=0, atol=1e-6 * grid.resolution)
            or not np.allclose(y, like["y"].values, rtol=0, atol=1e-6 * grid.resolution)):
        raise GridMismatchError("like: x/y are not the pixel centres of a regular grid; pass a "
                                "layer of the study grid.")
    return grid


# -- shared reading ----------------------------------------------------------------------

def _file_tags(path: Path, band: int) -> tuple[str | None, str | None]:
    """``units`` and ``long_name`` from a raster's tags (dataset, then band, then GDAL)."""
    import rasterio

    with rasterio.open(path) as src:
        if not 1 <= band <= src.count:
            raise InputDataError(f"{path.name!r} has {src.count} band(s); band {band} was "
                                 "asked for (bands are 1-based).")
        tags, band_tags = src.tags(), src.tags(band)
        units = tags.get("units") or band_tags.get("units") or src.units[band - 1] or None
        long_name = (tags.get("long_name") or band_tags.get("long_name")
                     or src.descriptions[band - 1] or None)
    return units, long_name


def _check_month(year: Any, month: Any, *, where: str) -> tuple[int, int]:
    try:
        y, m = int(year), int(month)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{where}: got year {year!r}, month {month!r}; expected whole "
                             "numbers.") from exc
    if not 1 <= m <= 12:
        raise ParameterError(f"{where}: month {m} is not 1-12.")
    return y, m


def _aligned(path: str, band: int, spec: dict[str, Any], grid: GridSpec,
             name: str) -> xr.DataArray:
    """One band of one file read as data prep reads a layer, aligned as it aligns one."""
    raw = read_layer({**spec, "path": path, "band": band}, name=name)
    return align_to_grid(raw, grid, kind=spec["kind"], resampling=spec["resampling"])


def _aligned_block(path: str, band: int, spec: dict[str, Any], grid: GridSpec,
                   name: str) -> np.ndarray:
    """:func:`_aligned` as a NumPy block (a dask task)."""
    return np.asarray(_aligned(path, band, spec, grid, name).values)


def _stack(
    steps: Sequence[tuple[int, int, Path, int]],
    *,
    like: xr.DataArray | xr.Dataset,
    name: str,
    kind: str,
    resampling: str | None,
    units: str | None,
    long_name: str | None,
    nodata: float | None,
    source: str,
    function: str,
) -> xr.DataArray:
    """``steps`` = (year, month, file, band), one per month, as a lazy (time, y, x) array."""
    import dask
    import dask.array as dsa

    check_choice(kind, KINDS, name="kind")
    if resampling is not None:
        check_choice(resampling, RESAMPLING_NAMES, name="resampling")
    grid = grid_of(like)
    first_year, first_month, first_path, first_band = steps[0]
    tag_units, tag_long_name = _file_tags(first_path, first_band)
    units = units or tag_units
    if units is None:
        raise InputDataError(
            f"{first_path.name!r} has no 'units' tag; pass units= (UDUNITS spelling, e.g. "
            "'1' for NDVI, 'degC', 'mm month-1') or write the tag into the files."
        )
    long_name = long_name or tag_long_name or name
    spec = {"kind": kind, "units": units, "long_name": long_name, "nodata": nodata,
            "resampling": resampling}
    # the first month now: checks overlap and CRS early, gives the resampling used
    template = _aligned(str(first_path), first_band, spec, grid, name)
    blocks = [dsa.from_delayed(dask.delayed(_aligned_block, pure=True)(str(path), band, spec,
                                                                       grid, name),
                               shape=grid.shape, dtype=template.dtype)
              for _, _, path, band in steps]
    time = pd.DatetimeIndex([pd.Timestamp(year=y, month=m, day=1) for y, m, _, _ in steps])
    out = xr.DataArray(
        dsa.stack(blocks), dims=("time", "y", "x"),
        coords={"time": ("time", time.values.astype("datetime64[ns]"),
                         {"long_name": "start of the calendar month"}),
                "y": like["y"], "x": like["x"]},
        name=name,
    )
    out = out.rio.write_crs(like.rio.crs)
    out.attrs = {
        "units": units, "long_name": long_name, "kind": kind, "source": source,
        "resampling": template.attrs.get("resampling", resampling or ""),
        "history": history_line(function, source=source, n_months=len(steps), kind=kind,
                                resampling=resampling, resolution_m=grid.resolution),
    }
    return out


# -- one file per month ------------------------------------------------------------------

def _pattern_fields(pattern: str) -> list[str]:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise ParameterError(f"pattern {pattern!r}: not a format string ({exc}).") from exc
    if set(fields) != _FIELDS or "" in fields:
        raise ParameterError(
            f"pattern {pattern!r}: fields {fields}; expected {{year}} and {{month}} (format "
            "specs allowed), e.g. 'ndvi_{year}_{month:02d}.tif'."
        )
    return fields


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    seen: set[str] = set()
    for literal, field, _, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(rf"(?P={field})" if field in seen else rf"(?P<{field}>\d+)")
            seen.add(field)
    return re.compile("".join(parts) + "$")


def _existing_months(pattern: str) -> list[str]:
    """``YYYY-MM`` of the files on disk matching ``pattern`` (for error messages)."""
    wildcard = "".join(glob.escape(literal) + ("*" if field is not None else "")
                       for literal, field, _, _ in string.Formatter().parse(pattern))
    regex = _pattern_regex(pattern)
    found = set()
    for candidate in glob.glob(wildcard):
        match = regex.match(candidate)
        if match:
            found.add(f"{int(match['year']):04d}-{int(match['month']):02d}")
    return sorted(found)


def read_monthly_pattern(
    pattern: str | os.PathLike,
    *,
    years: Iterable[int],
    months: Iterable[int] = range(1, 13),
    like: xr.DataArray | xr.Dataset,
    kind: str = "continuous",
    resampling: str | None = None,
    units: str | None = None,
    long_name: str | None = None,
    name: str | None = None,
    nodata: float | None = None,
) -> xr.DataArray:
    """Read one raster per month (file names from a pattern) onto the study grid, lazily.

    Parameters
    ----------
    pattern : str or Path
        File path with ``{year}`` and ``{month}`` fields (``str.format`` syntax, format
        specs allowed): ``"ndvi_{year}_{month:02d}.tif"``, ``"{year}/tmp_{month}.tif"``.
        Single-band files.
    years : iterable of int
        Calendar years to read.
    months : iterable of int
        Months (1–12) of every year; default all twelve.
    like : xarray.DataArray or Dataset
        A layer on the target grid (``y``, ``x``, CRS via rioxarray), e.g. the data-prep
        cube; see :func:`grid_of`.
    kind : {"continuous", "categorical"}
        As a data-prep layer: float32 with NaN nodata, or int16 with 0 nodata.
    resampling : str, optional
        GDAL resampling name; default as data prep (:func:`~terracarbon.data.grid.
        default_resampling`: ``average`` from finer sources, ``bilinear`` otherwise).
    units, long_name : str, optional
        Default: the ``units``/``long_name`` tags of the first file (band description for
        the long name); ``units`` is required when the files have no such tag.
    name : str, optional
        Variable name; default the text of the file name before its first field
        (``"ndvi"`` for ``ndvi_{year}_{month:02d}.tif``).
    nodata : float, optional
        Raw nodata value, overriding the files' own.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)``, ``time`` = month starts in year-then-month order, on ``like``'s
        grid (its ``y``/``x``, CRS attached); dask-backed, one chunk per month. ``units``,
        ``long_name``, ``kind``, ``source`` (the pattern), ``resampling``, ``history``.

    Raises
    ------
    InputDataError
        Files missing: names the pattern and every missing year and month, and lists the
        months found on disk; a file without units and no ``units=``.
    ParameterError
        A pattern without both fields, a month outside 1–12, a bad ``kind``/``resampling``.
    GridMismatchError
        ``like`` is not a study grid; the first month's file has no CRS or misses the grid
        (later months are checked when computed).

    """
    pattern = os.fspath(pattern)
    _pattern_fields(pattern)
    years = [int(y) for y in years]
    months = [int(m) for m in months]
    if not years or not months:
        raise ParameterError(f"years={years}, months={months}: give at least one of each.")
    steps: list[tuple[int, int, Path, int]] = []
    missing: list[str] = []
    for year in years:
        for month in months:
            y, m = _check_month(year, month, where=f"pattern {pattern!r}")
            path = Path(pattern.format(year=y, month=m))
            if not path.is_file():
                missing.append(f"year {y} month {m} ({str(path)!r})")
            steps.append((y, m, path, 1))
    if missing:
        found = _existing_months(pattern)
        shown = ", ".join(found[:24]) + (f" ... ({len(found)} in all)" if len(found) > 24 else "")
        raise InputDataError(
            f"pattern {pattern!r}: no file for {len(missing)} month(s): "
            f"{'; '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}. Months on disk "
            f"matching the pattern: {shown or 'none'}. Fix the pattern, years or months."
        )
    if name is None:
        lead = next(iter(string.Formatter().parse(Path(pattern).name)))[0]
        name = lead.strip("_-. ") or "monthly"
    return _stack(steps, like=like, name=name, kind=kind, resampling=resampling, units=units,
                  long_name=long_name, nodata=nodata, source=pattern,
                  function="read_monthly_pattern")


# -- one band per month ------------------------------------------------------------------

_START = re.compile(r"^\s*(?:start\s*:\s*)?(?P<year>\d{4})-(?P<month>\d{1,2})\s*$")


def _band_months(band_map: Any, count: int, *, where: str) -> list[tuple[int, int]]:
    if isinstance(band_map, str):
        match = _START.match(band_map)
        if match is None:
            raise ParameterError(f"band_map={band_map!r}: expected 'start: YYYY-MM' (band 1 is "
                                 "that month, the next bands the months after it) or a list "
                                 "of (year, month) per band.")
        y, m = _check_month(match["year"], match["month"], where=f"band_map {band_map!r}")
        first = pd.Period(year=y, month=m, freq="M")
        return [((first + i).year, (first + i).month) for i in range(count)]
    if callable(band_map):
        pairs = [band_map(band) for band in range(1, count + 1)]
    else:
        pairs = list(band_map)
        if len(pairs) != count:
            raise ParameterError(f"band_map: {len(pairs)} (year, month) entries but {where} has "
                                 f"{count} bands; give one entry per band, in band order.")
    months = []
    for i, pair in enumerate(pairs, start=1):
        try:
            year, month = pair
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"band_map: entry for band {i} is {pair!r}; expected "
                                 "(year, month).") from exc
        months.append(_check_month(year, month, where=f"band_map band {i}"))
    twice = sorted({f"{y}-{m:02d}" for y, m in months if months.count((y, m)) > 1})
    if twice:
        raise ParameterError(f"band_map: months {twice} are given to more than one band.")
    return months


def read_monthly_bands(
    path: str | os.PathLike,
    *,
    band_map: Sequence[tuple[int, int]] | str | Callable[[int], tuple[int, int]],
    like: xr.DataArray | xr.Dataset,
    kind: str = "continuous",
    resampling: str | None = None,
    units: str | None = None,
    long_name: str | None = None,
    name: str | None = None,
    nodata: float | None = None,
) -> xr.DataArray:
    """Read a multi-band raster, one band per month, onto the study grid, lazily.

    Parameters
    ----------
    path : str or Path
        The raster.
    band_map : sequence, str or callable
        Which month each band holds: a list of ``(year, month)``, one per band in band
        order; or ``"start: YYYY-MM"`` (or just ``"YYYY-MM"``): band 1 is that month and
        each next band the next month, for all bands; or a function ``band -> (year,
        month)`` (1-based band) called for every band.
    like, kind, resampling, units, long_name, nodata
        As :func:`read_monthly_pattern`.
    name : str, optional
        Variable name; default the file's stem.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` ordered as the bands (sort with ``.sortby("time")`` if needed),
        as :func:`read_monthly_pattern`.

    Raises
    ------
    InputDataError
        File missing; no units.
    ParameterError
        A ``band_map`` of the wrong length, a bad entry or a month given twice.
    GridMismatchError
        As :func:`read_monthly_pattern`.
    """
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{str(path)!r}: raster not found; check the path.")
    with rasterio.open(path) as src:
        count = src.count
    months = _band_months(band_map, count, where=repr(path.name))
    steps = [(y, m, path, band) for band, (y, m) in enumerate(months, start=1)]
    return _stack(steps, like=like, name=name or path.stem, kind=kind, resampling=resampling,
                  units=units, long_name=long_name, nodata=nodata, source=str(path),
                  function="read_monthly_bands")
