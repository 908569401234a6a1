"""Data preparation: rasters onto the study grid, the covariate cube, survey plots, VIF.

This is the public facade of the data-prep stage. Where things live:

* this module: reading inputs described by the params ``data:`` block —
  :func:`read_boundary`, :func:`read_layer`, :func:`available_years` — and assembling the
  cube, :func:`build_cube`;
* :mod:`terracarbon.data.grid`: :class:`GridSpec`, :func:`align_to_grid`, :func:`region_mask`
  (re-exported here);
* :mod:`terracarbon.data.survey`: survey plots (field plots) as the sample table —
  :func:`read_plots`, :func:`drop_outside`, :func:`remove_outliers`,
  :func:`extract_covariates`, :func:`augment_npp_ratio` — and the multicollinearity checks
  :func:`correlation_matrix`, :func:`vif_table`, :func:`flag_collinear` (re-exported here).

The ``data:`` block (``params/*.yaml``)::

    boundary: path to GeoJSON / .shp / zipped shapefile          (optional)
    boundary_filter: {column: ADM1_EN, value: Guangdong Province} (optional)
    years: [2000, ..., 2021]
    layers:
      ndvi: {path: "ndvi_{year}.tif", kind: continuous, units: "1", long_name: NDVI,
             band: 1, band_years: {2000: 1, ...}, scale_factor: 0.0001, offset: 0,
             nodata: -9999, resampling: average, static: false}
    plots: {path: plots.csv, x_column: lon, y_column: lat, crs: "EPSG:4326",
            year_column: year, id_column: plot_id, veg_column: ..., soil_column: ...}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from terracarbon.data.grid import (
    CATEGORICAL_NODATA,
    KINDS,
    LATTICE_SAFE_RESAMPLING,
    RESAMPLING_NAMES,
    GridSpec,
    align_to_grid,
    attach_grid,
    check_overlap,
    crs_label,
    default_resampling,
    lattice_offset,
    on_grid_lattice,
    region_mask,
    unit_raster,
)
from terracarbon.data.io import history_line, update_history
from terracarbon.data.survey import (
    PreparedSamples,
    augment_npp_ratio,
    correlation_matrix,
    drop_outside,
    extract_covariates,
    flag_collinear,
    prepare_samples,
    read_plots,
    remove_outliers,
    vif_table,
)
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

__all__ = [
    "cube_summary", "prepare_samples", "PreparedSamples", "random_pixels", "collinearity",
    "GridSpec", "align_to_grid", "default_resampling", "region_mask", "unit_raster",
    "read_boundary", "read_layer", "available_years", "normalise_layer_spec", "build_cube",
    "add_temporal_composites", "composite_name", "screening_covariates",
    "read_plots", "drop_outside", "remove_outliers", "extract_covariates", "augment_npp_ratio",
    "correlation_matrix", "vif_table", "flag_collinear",
]

if TYPE_CHECKING:
    import geopandas
    import pandas as pd

log = logging.getLogger(__name__)

LAYER_KEYS = {"path", "kind", "units", "long_name", "band", "band_years", "scale_factor",
              "offset", "nodata", "resampling", "static", "stac", "asset", "collection"}
"""Options of a ``data.layers`` entry. ``stac`` + ``asset`` (a STAC catalog or item
collection and the asset key, optionally ``collection``: one collection id) replace
``path``: :mod:`terracarbon.data.stac`."""
STAC_ONLY_KEYS = ("asset", "collection")
"""Layer options that only a STAC layer (``stac``) takes."""
REQUIRED_LAYER_KEYS = ("path", "kind", "units")


# -- boundary ----------------------------------------------------------------------------

def _vector_uri(path: Path) -> str:
    # GDAL reads a zipped shapefile through /vsizip/; pyogrio accepts the plain .zip path too,
    # but "zip://" is the spelling fiona and pyogrio both document.
    return f"zip://{path}" if path.suffix.lower() == ".zip" else str(path)


def read_boundary(
    path: str | Path,
    *,
    crs: Any,
    filter: Mapping[str, Any] | None = None,  # noqa: A002  name fixed by the params schema
) -> "geopandas.GeoDataFrame":
    """Read the study boundary (GeoJSON, shapefile or zipped shapefile), select units, reproject.

    Parameters
    ----------
    path : str or Path
        ``.geojson``/``.json``, ``.shp``, ``.gpkg`` or ``.zip`` (zipped shapefile or GeoJSON).
    crs : pyproj.CRS, str or None
        CRS to reproject to (normally the grid CRS); None keeps the file's CRS.
    filter : mapping, optional
        ``{"column": name, "value": v}``; ``v`` may be a list of values. Keeps the matching
        units of a multi-unit boundary (e.g. one province).

    Returns
    -------
    geopandas.GeoDataFrame
        The selected polygons (invalid geometries repaired with ``make_valid``).

    Raises
    ------
    InputDataError
        File missing, unreadable, without CRS or empty; filter column absent (lists the
        columns) or no unit matches (lists the available values).
    ParameterError
        ``filter`` is not ``{"column": ..., "value": ...}``.
    """
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"boundary file {str(path)!r} not found; set data.boundary to an existing GeoJSON, "
            ".shp or zipped shapefile, or remove it to use the whole grid."
        )
    try:
        gdf = gpd.read_file(_vector_uri(path), engine="pyogrio")
    except Exception as exc:  # noqa: BLE001  pyogrio/GDAL raise many types
        raise InputDataError(f"boundary file {path.name!r} could not be read: {exc}") from exc
    if gdf.empty:
        raise InputDataError(f"boundary file {path.name!r} has no features; use a non-empty file.")
    if gdf.crs is None:
        raise InputDataError(
            f"boundary file {path.name!r} has no CRS (missing .prj?); add one so it can be "
            "placed on the grid."
        )
    if filter is not None:
        gdf = _filter_units(gdf, filter, name=path.name)
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf = gdf.copy()
        gdf.loc[invalid, "geometry"] = gdf.geometry[invalid].make_valid()
    if crs is not None:
        gdf = gdf.to_crs(crs)
    return gdf.reset_index(drop=True)


def _filter_units(gdf: Any, filter: Mapping[str, Any], *, name: str) -> Any:  # noqa: A002
    if not isinstance(filter, Mapping) or set(filter) != {"column", "value"}:
        raise ParameterError(
            f"boundary_filter: got {filter!r}; expected {{'column': <attribute>, 'value': <value "
            "or list of values>}}."
        )
    column, value = filter["column"], filter["value"]
    if column not in gdf.columns:
        cols = [c for c in gdf.columns if c != "geometry"]
        raise InputDataError(
            f"boundary file {name!r} has no column {column!r}; columns present: {cols}. "
            "Fix data.boundary_filter.column."
        )
    wanted = list(value) if isinstance(value, (list, tuple, set)) else [value]
    selected = gdf[gdf[column].isin(wanted)]
    if selected.empty:
        available = sorted(map(str, gdf[column].dropna().unique()))
        shown = available[:60] + (["..."] if len(available) > 60 else [])
        raise InputDataError(
            f"boundary file {name!r}: no unit has {column} == {value!r}; available values: "
            f"{shown}. Fix data.boundary_filter.value."
        )
    return selected


# -- layers ------------------------------------------------------------------------------

def normalise_layer_spec(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one ``data.layers.<name>`` entry and fill defaults.

    Returns a new dict with keys ``name, path, kind, units, long_name, band, band_years
    (dict[int, int] or None), scale_factor, offset, nodata, resampling, static (bool)``.
    """
    if not isinstance(spec, Mapping):
        raise ParameterError(f"data.layers.{name}: got {type(spec).__name__}, expected a mapping.")
    # "name" is what this function adds, so a normalised spec can be normalised again.
    unknown = sorted(set(spec) - LAYER_KEYS - {"name", "stac_hrefs"})
    from_stac = spec.get("stac") not in (None, "")
    missing = [k for k in REQUIRED_LAYER_KEYS if spec.get(k) in (None, "")
               and not (k == "path" and from_stac)]
    problems = []
    if from_stac and spec.get("asset") in (None, ""):
        problems.append("'stac' needs 'asset' (the asset key of the raster in each item)")
    # (a normalised STAC spec carries its source as 'path' too, and is normalised again)
    if from_stac and spec.get("path") not in (None, "", str(spec["stac"])):
        problems.append("give either 'path' (files) or 'stac' + 'asset' (a STAC source), "
                        "not both")
    for option in STAC_ONLY_KEYS:
        if spec.get(option) not in (None, "") and not from_stac:
            problems.append(f"'{option}' is a STAC option; give 'stac' (catalog or item "
                            "collection)")
    if from_stac and (spec.get("band_years") is not None or "{year}" in str(spec.get("path"))):
        problems.append("a STAC layer takes its years from the items' datetime; drop "
                        "'band_years' and the {year} path")
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: {sorted(LAYER_KEYS)})")
    if missing:
        problems.append(f"missing keys {missing}")
    if spec.get("kind") not in (None, *KINDS):
        problems.append(f"kind {spec['kind']!r} is not one of {list(KINDS)}")
    if spec.get("resampling") not in (None, *RESAMPLING_NAMES):
        problems.append(f"resampling {spec['resampling']!r} is not one of {list(RESAMPLING_NAMES)}")
    if spec.get("band") is not None and spec.get("band_years") is not None:
        problems.append("give either 'band' (static band) or 'band_years' (annual stack), not both")
    if spec.get("kind") == "categorical" and (spec.get("scale_factor") not in (None, 1)
                                              or spec.get("offset") not in (None, 0)):
        problems.append("scale_factor/offset make no sense for a categorical layer")
    if problems:
        raise ParameterError(f"data.layers.{name}: " + "; ".join(problems) + ".")
    band_years = spec.get("band_years")
    if band_years is not None:
        try:
            band_years = {int(y): int(b) for y, b in dict(band_years).items()}
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"data.layers.{name}.band_years: got {band_years!r}; expected {{year: band}} "
                "with integer years and 1-based band numbers."
            ) from exc
    stac_hrefs = None
    if from_stac:
        from terracarbon.data.stac import asset_hrefs

        stac_hrefs = asset_hrefs(spec["stac"], spec["asset"], name=name,
                                 static=bool(spec.get("static", False)),
                                 collection=spec.get("collection"))
        path = str(spec["stac"])
        static = None in stac_hrefs
    else:
        path = str(spec["path"])
        static = bool(spec.get("static", False)) or ("{year}" not in path and band_years is None)
    return {
        "stac": spec.get("stac"), "stac_hrefs": stac_hrefs, "asset": spec.get("asset"),
        "collection": spec.get("collection"),
        "name": name, "path": path, "kind": spec["kind"], "units": str(spec["units"]),
        "long_name": str(spec.get("long_name") or name), "band": spec.get("band"),
        "band_years": band_years, "scale_factor": spec.get("scale_factor"),
        "offset": spec.get("offset"), "nodata": spec.get("nodata"),
        "resampling": spec.get("resampling"), "static": static,
    }


def available_years(spec: Mapping[str, Any], *, name: str = "layer") -> list[int]:
    """Years for which an annual layer has data: parsed from ``{year}`` file names on disk,
    or the keys of ``band_years``. Empty for a static layer."""
    s = normalise_layer_spec(name, spec)
    if s["stac_hrefs"] is not None:
        return sorted(y for y in s["stac_hrefs"] if y is not None)
    if s["band_years"] is not None:
        return sorted(s["band_years"])
    if "{year}" not in s["path"]:
        return []
    pattern = Path(s["path"])
    regex = re.compile(re.escape(pattern.name).replace(re.escape("{year}"), r"(\d{4})") + "$")
    folder = pattern.parent
    if not folder.is_dir():
        return []
    years = (regex.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in years if m)


def _resolve_band(s: dict[str, Any], src: Any, path: Path, year: int | None) -> int:
    """1-based band to read."""
    count = src.count
    if s["band_years"] is not None:
        if year not in s["band_years"]:
            raise InputDataError(
                f"layer {s['name']!r}: year {year} is not in band_years of {path.name!r} "
                f"(years {sorted(s['band_years'])}); add it or drop the year from data.years."
            )
        band = s["band_years"][year]
    elif isinstance(s["band"], str):
        names = list(src.descriptions)
        if s["band"] not in names:
            raise InputDataError(
                f"layer {s['name']!r}: {path.name!r} has no band named {s['band']!r}; band "
                f"descriptions are {names}. Use a 1-based band number or one of those names."
            )
        band = names.index(s["band"]) + 1
    else:
        band = 1 if s["band"] is None else int(s["band"])
        if s["band"] is None and count > 1:
            raise InputDataError(
                f"layer {s['name']!r}: {path.name!r} has {count} bands; say which with 'band' "
                "(static) or 'band_years' (annual stack)."
            )
    if not 1 <= band <= count:
        raise InputDataError(
            f"layer {s['name']!r}: band {band} requested but {path.name!r} has {count} band(s) "
            "(bands are 1-based)."
        )
    return band


def read_layer(
    spec: Mapping[str, Any],
    *,
    year: int | None = None,
    name: str | None = None,
    chunks: int | dict | None = None,
) -> xr.DataArray:
    """Read one layer (one year of an annual layer) at its native grid, decoded.

    Parameters
    ----------
    spec : mapping
        A ``data.layers`` entry (see module docstring). ``scale_factor``/``offset``, when
        given, replace the file's own GDAL scale/offset (they are not compounded).
    year : int, optional
        Calendar year; required for annual layers, ignored for static ones.
    name : str, optional
        Variable name (the ``data.layers`` key); used in messages and as ``da.name``.
    chunks : int or dict, optional
        Passed to ``rioxarray.open_rasterio`` for a lazy dask-backed read.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` in the file's CRS. Continuous: float32, value = raw * scale + offset in
        ``spec['units']``, NaN where the raw value is the nodata value or not finite.
        Categorical: int16 class codes, 0 = nodata. Attributes ``units``, ``long_name``,
        ``source``, ``band``, ``year``.

    Raises
    ------
    InputDataError
        File missing (names the file and year), band missing, year not in ``band_years``.
    GridMismatchError
        The file has no CRS.
    ParameterError
        Bad spec, or ``year`` missing for an annual layer.
    """
    s = normalise_layer_spec(name or "layer", spec)
    raw, path, band, file_meta = _open_band(s, year, chunks)
    out = _decode(raw, s, file_meta)
    fill = np.nan if s["kind"] == "continuous" else CATEGORICAL_NODATA
    out = out.rio.write_nodata(fill, encoded=False)
    out.name = s["name"]
    out.attrs = {"units": s["units"], "long_name": s["long_name"], "source": str(path),
                 "band": band}
    if not s["static"]:
        out.attrs["year"] = int(year)  # type: ignore[arg-type]
    return out


def _decode(raw: xr.DataArray, s: dict[str, Any], file_meta: tuple[Any, Any, Any]
            ) -> xr.DataArray:
    """Raw band values as the layer's values: continuous float32 = raw * scale + offset (NaN
    at nodata), categorical int16 codes (0 at nodata). ``file_meta``: the file's (scale,
    offset, nodata); the spec's own values replace them."""
    file_scale, file_offset, file_nodata = file_meta
    nodata = s["nodata"] if s["nodata"] is not None else file_nodata
    invalid = _nodata_mask(raw, nodata)
    if s["kind"] == "continuous":
        scale = float(s["scale_factor"] if s["scale_factor"] is not None else file_scale or 1.0)
        offset = float(s["offset"] if s["offset"] is not None else file_offset or 0.0)
        return (raw.astype("float64") * scale + offset).where(~invalid).astype("float32")
    out = raw.where(~invalid, CATEGORICAL_NODATA)
    if np.issubdtype(out.dtype, np.floating):
        out = out.fillna(CATEGORICAL_NODATA).round()
    return out.astype("int16")


def _file_meta(src: Any, band: int) -> tuple[Any, Any, Any]:
    """(scale, offset, nodata) of a band of an open rasterio dataset."""
    return src.scales[band - 1], src.offsets[band - 1], src.nodatavals[band - 1]


def _open_band(s: dict[str, Any], year: int | None, chunks: int | dict | None
               ) -> tuple[xr.DataArray, Any, int, tuple[Any, Any, Any]]:
    """Open the layer's band for ``year`` lazily (no pixels read): the raw band, its path,
    band number and the file's (scale, offset, nodata). Checks the file, band and CRS."""
    import rasterio
    import rioxarray

    path = _layer_path(s, year)
    with rasterio.open(path) as src:
        band = _resolve_band(s, src, path, year)
        file_meta = _file_meta(src, band)
        has_crs = src.crs is not None
    if not has_crs:
        raise GridMismatchError(
            f"layer {s['name']!r}: {path.name!r} has no CRS; it cannot be aligned to the grid. "
            "Assign the CRS in the file (gdal_edit.py -a_srs)."
        )
    raw = rioxarray.open_rasterio(path, masked=False, mask_and_scale=False, chunks=chunks)
    raw = raw.isel(band=band - 1, drop=True)
    return raw, path, band, file_meta


def _layer_path(s: dict[str, Any], year: int | None) -> Any:
    """The file (or STAC asset) holding ``year`` of the layer; checks that it exists."""
    if not s["static"] and year is None:
        raise ParameterError(
            f"layer {s['name']!r} is annual ({s['path']!r}); pass year=<calendar year>."
        )
    if s["stac_hrefs"] is not None:  # a STAC layer: the asset of the year's item
        from terracarbon.data.stac import RemoteHref, is_url

        key = None if s["static"] else year
        if key not in s["stac_hrefs"]:
            raise InputDataError(
                f"layer {s['name']!r}: the STAC source {s['path']!r} has no item for year "
                f"{year} (years {sorted(y for y in s['stac_hrefs'] if y is not None)}); "
                "drop the year from data.years or add the item.")
        href = s["stac_hrefs"][key]
        path = RemoteHref(href) if is_url(href) else Path(href)
    else:
        path = Path(s["path"].replace("{year}", str(year)) if "{year}" in s["path"]
                    else s["path"])
    if isinstance(path, Path) and not path.exists():
        when = "" if s["static"] or "{year}" not in s["path"] else f" for year {year}"
        raise InputDataError(
            f"layer {s['name']!r}: file {str(path)!r}{when} not found; check "
            f"data.layers.{s['name']}.path and data.years."
        )
    return path


def _nodata_mask(raw: xr.DataArray, nodata: float | None) -> xr.DataArray:
    invalid = xr.zeros_like(raw, dtype=bool)
    if np.issubdtype(raw.dtype, np.floating):
        invalid = ~np.isfinite(raw)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        # Cast to the raw dtype first: a float32 file's nodata (-3.4e38) is stored in the
        # header as the float64 of that float32, and must compare equal after the round trip.
        invalid = invalid | (raw == np.asarray(nodata).astype(raw.dtype))
    return invalid


# -- the cube ----------------------------------------------------------------------------

def _cube_years(data_spec: Mapping[str, Any], years: Sequence[int] | None,
                layers: dict[str, dict[str, Any]]) -> list[int]:
    annual = [n for n, s in layers.items() if not s["static"]]
    chosen = years if years is not None else data_spec.get("years")
    if not annual:
        return [] if chosen is None else sorted({int(y) for y in chosen})
    if not chosen:
        raise ParameterError(
            f"data.years: missing or empty but layers {annual} are annual; list the calendar "
            "years to build (e.g. years: [2000, 2005, 2010])."
        )
    try:
        return sorted({int(y) for y in chosen})
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"data.years: got {chosen!r}; expected integer years.") from exc


def _annual_stack(s: dict[str, Any], years: list[int], grid: GridSpec) -> xr.DataArray:
    aligned = []
    for year in years:
        da = read_layer(s, year=year, name=s["name"])
        aligned.append(align_to_grid(da, grid, kind=s["kind"], resampling=s["resampling"]))
    stack = xr.concat(aligned, dim=xr.DataArray(years, dims="year", name="year"),
                      combine_attrs="drop_conflicts")
    stack.attrs["source"] = s["path"]
    return stack


def _window_block(inside: np.ndarray, *, spec: dict[str, Any], year: int | None,
                  grid: GridSpec, block_info: Any = None) -> np.ndarray:
    """One dask chunk of one layer-year on the grid's lattice: read the file's window,
    decode it, clip it (no warp: each grid cell is one source pixel).

    ``inside`` is the chunk of the boundary mask; its place in the grid comes from dask's
    ``block_info``. Module-level so that distributed workers can unpickle it.
    """
    import rasterio
    from rasterio.windows import Window

    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    continuous = spec["kind"] == "continuous"
    fill = np.float32(np.nan) if continuous else np.int16(CATEGORICAL_NODATA)
    out = np.full(inside.shape, fill)
    path = _layer_path(spec, year)
    with rasterio.open(path) as src:
        band = _resolve_band(spec, src, path, year)
        # the chunk's first row and column in the file's pixels (same lattice: whole numbers)
        row0, col0 = (a + b for a, b in zip(lattice_offset(src.transform, grid), (r0, c0)))
        rows = slice(max(row0, 0), min(row0 + (r1 - r0), src.height))
        cols = slice(max(col0, 0), min(col0 + (c1 - c0), src.width))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            return out  # the file does not reach this chunk
        raw = src.read(band, window=Window(cols.start, rows.start, cols.stop - cols.start,
                                           rows.stop - rows.start))
        meta = _file_meta(src, band)
    values = _decode(xr.DataArray(raw, dims=("y", "x")), spec, meta).values
    out[rows.start - row0 : rows.stop - row0, cols.start - col0 : cols.stop - col0] = values
    return np.where(inside, out, fill)


def _whole_grid_block(inside: np.ndarray, *, spec: dict[str, Any], year: int | None,
                      grid: GridSpec, method: str) -> np.ndarray:
    """One layer-year warped onto the whole grid and clipped (one dask task)."""
    raw = read_layer(spec, year=year, name=spec["name"])
    aligned = align_to_grid(raw, grid, kind=spec["kind"], resampling=method).values
    fill = np.float32(np.nan) if spec["kind"] == "continuous" else np.int16(CATEGORICAL_NODATA)
    return np.where(inside, aligned, fill).astype(fill.dtype)


def _layer_plan(s: dict[str, Any], steps: list[int | None], grid: GridSpec) -> tuple[str, bool]:
    """Check the layer's first file against the whole grid (file, band, CRS, overlap),
    choose its resampling once for the grid (never per chunk) and tell whether it can be
    read by window: only if every year's file is on the grid's lattice. Reads no pixels."""
    raw, path, _, _ = _open_band(s, steps[0], None)
    raw.attrs["source"] = str(path)  # named in the messages
    check_overlap(raw, grid)
    method = s["resampling"] or default_resampling(raw, grid, kind=s["kind"])
    if method not in LATTICE_SAFE_RESAMPLING or not on_grid_lattice(raw, grid):
        return method, False
    # years may come from different files (or products): each must share the lattice
    files = {str(_layer_path(s, step)): step for step in steps[1:]}
    files.pop(str(path), None)
    return method, all(on_grid_lattice(_open_band(s, step, None)[0], grid)
                       for step in files.values())


def _lazy_layer(s: dict[str, Any], years: list[int], grid: GridSpec, inside: xr.DataArray,
                chunks: Mapping[str, int]) -> xr.DataArray:
    """One layer as dask, the files checked now and read when the cube is computed.

    A layer on the grid's lattice (same CRS, pixel size and pixel edges: the synthetic
    studies', or any layer exported on the study grid) is read by window, one task per
    year and chunk, so memory stays at a few chunks whatever the size of the grid. A layer
    that needs a warp is aligned one layer-year per task (the whole grid): GDAL's warp of a
    window can differ from its warp of the whole grid by a fraction of a percent
    (interpolating kernels), and the numbers must not depend on the chunk size.
    """
    import dask.array as dsa

    steps = [None] if s["static"] else list(years)
    method, windowed = _layer_plan(s, steps, grid)  # before any task runs
    space = {d: int(chunks.get(d, -1)) for d in ("y", "x")}
    mask_values = np.asarray(inside.values)
    dtype = np.float32 if s["kind"] == "continuous" else np.int16
    meta = np.empty((0, 0), dtype=dtype)
    if windowed:
        mask = dsa.from_array(mask_values, chunks=tuple(
            n if space[d] < 0 else space[d] for d, n in zip(("y", "x"), grid.shape)))
        layers = [dsa.map_blocks(_window_block, mask, spec=s, year=step, grid=grid,
                                 dtype=dtype, meta=meta) for step in steps]
    else:
        mask = dsa.from_array(mask_values, chunks=-1)
        layers = [dsa.map_blocks(_whole_grid_block, mask, spec=s, year=step, grid=grid,
                                 method=method, dtype=dtype, meta=meta)
                  .rechunk(tuple(space.values())) for step in steps]
    attrs = {"resampling": method}
    coords = {"y": inside["y"], "x": inside["x"]}
    if s["static"]:
        return xr.DataArray(layers[0], dims=("y", "x"), coords=coords, attrs=attrs)
    return xr.DataArray(dsa.stack(layers), dims=("year", "y", "x"),
                        coords={"year": ("year", list(years)), **coords}, attrs=attrs)


def build_cube(
    data_spec: Mapping[str, Any],
    grid: GridSpec,
    *,
    years: Sequence[int] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Read every layer of the ``data:`` block, align it to ``grid`` and clip to the boundary.

    Parameters
    ----------
    data_spec : mapping
        The params ``data:`` block (``boundary``, ``boundary_filter``, ``years``, ``layers``;
        ``plots`` is ignored here).
    grid : GridSpec
        Target grid (projected CRS, metres).
    years : sequence of int, optional
        Calendar years to build; default ``data_spec['years']``.
    chunks : mapping, optional
        ``{"y": px, "x": px}`` (pixels; e.g. ``compute.start(...).chunks``): build the cube
        lazily, chunked one year by ``px`` x ``px``. A layer on the grid's lattice is read
        by window (one task per year and chunk: a few chunks in memory at any size); a
        layer that needs a warp is read, aligned and clipped one layer-year per task
        (:func:`_lazy_layer` says why). Writing it (:func:`terracarbon.data.io.write_cube`)
        then streams instead of holding the cube in memory. Default: in memory (NumPy).
        Both give identical values.

    Returns
    -------
    xarray.Dataset
        One variable per layer: annual ``(year, y, x)``, static ``(y, x)``; continuous float32
        (NaN nodata), categorical int16 (0 nodata); ``units``/``long_name`` from the spec,
        ``encoding['grid_mapping'] = "spatial_ref"`` (written as the CF attribute).
        Plus ``region_mask`` (bool, ``(y, x)``). Pixels
        outside the boundary are NaN / 0 in every layer. ``year`` is an int coordinate.

    Raises
    ------
    ParameterError
        Bad ``layers`` entries, annual layers without ``years``.
    InputDataError
        Missing file (names file and year), boundary problems.
    GridMismatchError
        A layer does not overlap the grid; the boundary misses the grid.
    """
    if not isinstance(data_spec, Mapping) or not data_spec.get("layers"):
        raise ParameterError(
            "data.layers: missing or empty; list at least one layer "
            "({name: {path, kind, units}})."
        )
    layers = {n: normalise_layer_spec(n, s) for n, s in data_spec["layers"].items()}
    bad_names = [n for n in layers if n != n.lower() or n == "region_mask"]
    if bad_names:
        raise ParameterError(
            f"data.layers: names {bad_names} are not allowed; use lower-case names from "
            "docs/architecture.md (ndvi, npp, temperature, landuse, ...), not 'region_mask'."
        )
    cube_years = _cube_years(data_spec, years, layers)
    boundary_path = data_spec.get("boundary")
    if boundary_path:
        boundary = read_boundary(boundary_path, crs=grid.crs,
                                 filter=data_spec.get("boundary_filter"))
        mask = region_mask(boundary, grid)
    else:
        mask = grid.template(dtype=bool, fill=True, name="region_mask")
        mask.attrs = {"units": "1", "long_name": "inside the study boundary (whole grid)"}
    inside = mask.drop_vars("spatial_ref", errors="ignore")
    variables: dict[str, xr.DataArray] = {}
    for name, s in layers.items():
        fill = np.float32(np.nan) if s["kind"] == "continuous" else np.int16(CATEGORICAL_NODATA)
        if chunks is not None:
            da = _lazy_layer(s, cube_years, grid, inside, chunks)
        else:
            if s["static"]:
                da = align_to_grid(read_layer(s, name=name), grid, kind=s["kind"],
                                   resampling=s["resampling"])
            else:
                da = _annual_stack(s, cube_years, grid)
            da = da.drop_vars("spatial_ref", errors="ignore")
            da = da.where(inside, fill).astype(da.dtype)
        da.attrs = {
            "units": s["units"], "long_name": s["long_name"], "kind": s["kind"],
            "source": s["path"], "resampling": da.attrs.get("resampling", s["resampling"] or ""),
            "history": history_line("build_cube", layer=name, kind=s["kind"],
                                    resolution_m=grid.resolution),
        }
        variables[name] = da
    variables["region_mask"] = inside
    ds = xr.Dataset(variables)
    if cube_years:
        ds = ds.assign_coords(year=("year", np.asarray(cube_years, dtype="int64"),
                                    {"long_name": "calendar year", "units": "1"}))
    ds = attach_grid(ds, grid)
    for v in ds.data_vars.values():
        # CF grid_mapping lives in encoding: xarray writes it as the on-disk attribute and
        # refuses to encode a variable that has it in both places.
        v.attrs.pop("grid_mapping", None)
        v.encoding["grid_mapping"] = "spatial_ref"
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": "terracarbon data-prep cube",
        "crs": crs_label(grid.crs),
        "resolution_m": grid.resolution,
        "history": history_line("build_cube", layers=list(layers), years=cube_years,
                                boundary=str(boundary_path) if boundary_path else None,
                                resolution_m=grid.resolution),
    }
    return ds


COMPOSITE_SUFFIX = "_{window}yr"
"""Name of a composite variable: ``<variable>_<window>yr`` (e.g. ``ndvi_3yr``)."""


def composite_name(variable: str, window: int) -> str:
    """Cube name of the centred ``window``-year mean of ``variable`` (``ndvi`` -> ``ndvi_3yr``)."""
    return variable + COMPOSITE_SUFFIX.format(window=window)


def add_temporal_composites(
    cube: xr.Dataset,
    window: int,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """Add centred multi-year means of annual covariates as ``<name>_<window>yr`` variables.

    Carbon stocks follow the multi-year state of vegetation and climate, while single-year
    indices and weather carry interannual anomalies (a wet, green year) that a model
    calibrated on plots from one or two campaign years would map as carbon gains. A
    centred composite (the mean of years ``t - h .. t + h``, ``h = (window - 1) / 2``) damps
    those anomalies by about ``1 / sqrt(window)`` while keeping the slower trends. At the
    ends of the period the window is truncated (2000 is the mean of 2000..2000 + h).

    Parameters
    ----------
    cube : xarray.Dataset
        Data-prep cube (:func:`build_cube`), NumPy or dask backed.
    window : int
        Odd number of years, >= 1. ``1`` returns ``cube`` unchanged. A window longer than
        the cube's period is truncated like the ends (one year: the composite equals it).
    variables : sequence of str, optional
        Annual continuous variables to composite; default every float variable with a
        ``year`` dimension.

    Returns
    -------
    xarray.Dataset
        ``cube`` plus one float32 variable per composited input, with the input's
        ``units``, ``long_name`` "centred <window>-year mean of ...", CF ``cell_methods``
        ``"year: mean"``, ``composite_window_years`` and ``composite_of`` (the input's
        name) attributes. The original annual variables are kept (the trend stage
        correlates carbon with single-year climate). NaN years inside a window are
        skipped; a pixel NaN in every year of a window stays NaN.

    Raises
    ------
    ParameterError
        ``window`` not an odd positive integer; a listed variable missing, not annual or
        categorical.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 \
            or window % 2 == 0:
        raise ParameterError(f"prep.composite_window = {window!r}: expected an odd whole number "
                             "of years >= 1 (1 = no composites, 3 = centred 3-year mean).")
    window = int(window)
    if window == 1:
        return cube
    annual = [str(n) for n, v in cube.data_vars.items()
              if "year" in v.dims and np.issubdtype(v.dtype, np.floating)]
    if variables is None:
        chosen = annual
    else:
        chosen = [str(v) for v in variables]
        bad = [v for v in chosen if v not in annual]
        if bad:
            raise ParameterError(
                f"prep.composite_variables: {bad} are not annual continuous cube variables; "
                f"choose among {annual} or set null for all of them.")
    out = cube.copy()
    for name in chosen:
        da = cube[name]
        # on dask, one chunk along year first: a window over year-sized chunks costs
        # thousands of overlap tasks per variable, each a fraction of a millisecond of work
        # (the same arithmetic either way: the rolling sum and count of xarray's dask path)
        source = da.chunk({"year": -1}) if da.chunks is not None else da
        composite = source.rolling(year=window, center=True, min_periods=1).mean()
        attrs = {k: v for k, v in da.attrs.items() if k not in ("history", "cell_methods")}
        long_name = da.attrs.get("long_name", name)
        attrs.update({
            "long_name": f"centred {window}-year mean of {long_name}",
            "cell_methods": "year: mean",
            "composite_window_years": window,
            "composite_of": name,
            "comment": "mean over years t-h..t+h, h=(window-1)/2, truncated at the ends of "
                       "the period; NaN years skipped",
            # the input variable's lineage, then this step
            "history": update_history(
                history_line("add_temporal_composites", variable=name, window=window), da),
        })
        if da.chunks is not None:  # rolling re-chunks along year; Zarr wants the source's
            composite = composite.chunk(dict(zip(da.dims, da.chunks)))
        new = composite.astype("float32").assign_attrs(attrs)
        new.encoding = {k: v for k, v in da.encoding.items() if k == "grid_mapping"}
        out[composite_name(name, window)] = new
    return out


def write_prepared_cube(cube: xr.Dataset, path: str | Path, *, composite_window: int,
                        composite_variables: Sequence[str] | None = None) -> Path:
    """Write data prep's cube: the aligned layers, then their temporal composites
    (:func:`add_temporal_composites`) computed from the written store and added to it.

    Two passes keep memory to a few chunks at any grid size: a composite reads every year
    of a pixel block, and in one pass those years are data prep's read-and-align tasks,
    each a whole layer-year of the grid (0.98 against 0.36 GiB above the process for three
    variables of 2,000 x 2,500 px x 22 years; benchmarks/README.md, session 9). Atomic
    (:func:`terracarbon.data.io.write_cube` with ``derive``). Returns ``path``.
    """
    from terracarbon.data.io import write_cube

    def composites(written: xr.Dataset) -> xr.Dataset:
        return add_temporal_composites(written, composite_window, composite_variables)

    return write_cube(cube, path, derive=composites)


def screening_covariates(cube: xr.Dataset) -> list[str]:
    """Continuous cube variables to screen for collinearity, composites in place of raw.

    A single-year layer whose centred composite (:func:`add_temporal_composites`) is in the
    cube is left out: the pair is collinear by construction, and the composite is the one
    a model would use.
    """
    continuous = [str(n) for n, v in cube.data_vars.items()
                  if np.issubdtype(v.dtype, np.floating) and n != "region_mask"]
    composited = {cube[n].attrs["composite_of"] for n in continuous
                  if "composite_of" in cube[n].attrs}
    return [n for n in continuous if n not in composited]


def cube_summary(cube: xr.Dataset) -> "pd.DataFrame":
    """One row per cube variable: dims, units, kind, valid share and value range.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube from :func:`build_cube`.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, dims, units, kind, valid_pct`` (percent of in-region pixels with
        data, over all years), ``min, mean, max`` (in the variable's units). A dask-backed
        cube is read once for all of them (one ``dask.compute``).
    """
    import dask
    import pandas as pd

    mask = cube["region_mask"] if "region_mask" in cube else None
    stats: dict[str, tuple[Any, ...]] = {}
    for name, da in cube.data_vars.items():
        if name == "region_mask":
            continue
        valid = (da != 0) if np.issubdtype(da.dtype, np.integer) else da.notnull()
        values = da.where(valid)
        stats[name] = (valid.sum(), values.min(), values.mean(), values.max())
    # one compute for every statistic of every variable: each chunk is read once
    (stats, n_region) = dask.compute(stats, mask.sum() if mask is not None else None)
    rows = []
    for name, (n_valid, lo, mean, hi) in stats.items():
        da = cube[name]
        n_layers = int(da.sizes.get("year", 1))
        denominator = int(n_region) if n_region is not None else da.sizes["x"] * da.sizes["y"]
        rows.append({
            "variable": name,
            "dims": ", ".join(da.dims),
            "units": da.attrs.get("units", ""),
            "kind": "categorical" if np.issubdtype(da.dtype, np.integer) else "continuous",
            "valid_pct": round(100.0 * int(n_valid) / max(denominator * n_layers, 1), 2),
            "min": float(lo),
            "mean": float(mean),
            "max": float(hi),
        })
    return pd.DataFrame(rows)


def random_pixels(cube: xr.Dataset, *, n: int = 2000, seed: int = 0) -> "pd.DataFrame":
    """Covariate values at ``n`` random in-region pixel-years (for screening without plots).

    Parameters
    ----------
    cube : xarray.Dataset
        A cube from :func:`build_cube`.
    n : int
        Number of pixel-years drawn (with replacement over years, without over pixels).
    seed : int
        Seed of the draw.

    Returns
    -------
    pandas.DataFrame
        ``year, row, col`` and one column per variable, in the variables' units.
    """
    import pandas as pd

    if n < 1:
        raise ParameterError(f"random_pixels: n={n}; expected at least 1")
    rng = np.random.default_rng(seed)
    mask = cube["region_mask"].values if "region_mask" in cube else np.ones(
        (cube.sizes["y"], cube.sizes["x"]), bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise InputDataError("random_pixels: the region mask is empty")
    pick = rng.choice(rows.size, size=min(n, rows.size), replace=False)
    years = cube["year"].values if "year" in cube.dims else np.array([0])
    year_pick = rng.integers(0, years.size, size=pick.size)
    table = {"year": years[year_pick], "row": rows[pick], "col": cols[pick]}
    for name, da in cube.data_vars.items():
        if name == "region_mask":
            continue
        values = da.values
        if "year" in da.dims:
            table[name] = values[year_pick, rows[pick], cols[pick]]
        else:
            table[name] = values[rows[pick], cols[pick]]
    return pd.DataFrame(table)


def collinearity(
    table: "pd.DataFrame",
    features: Sequence[str],
    *,
    corr_threshold: float = 0.8,
    vif_threshold: float = 10.0,
) -> tuple["pd.DataFrame", "pd.DataFrame", "pd.DataFrame"]:
    """Correlation matrix, VIF table (with a ``flagged`` column) and flagged pairs.

    With fewer than two features there is nothing to screen: three empty tables.
    """
    import pandas as pd

    if len(features) < 2:
        return pd.DataFrame(), pd.DataFrame(columns=["feature", "vif", "r2", "flagged"]), \
            pd.DataFrame()
    corr = correlation_matrix(table, features)
    vif = vif_table(table, features)
    vif["flagged"] = vif["vif"] > vif_threshold
    return corr, vif, flag_collinear(corr, threshold=corr_threshold)
