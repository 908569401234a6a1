"""Checks before anything runs: everything that parameters and file headers can tell.

:func:`check_study` runs after the parameter schema check (``params.validate``) and before the
first stage. It opens every input raster (header and a decimated read), reads the plot table,
and compares parameters with each other and with the machine. Problems are collected and
raised together as one :class:`~terracarbon.errors.ParameterError`, each naming the parameter
key or the file and saying what to do. Things that are possible but suspicious come back as
warnings (shown on the console once and on the run's index page).

Plausibility bounds for field plots (t C ha-1, after ``veg_factor``/``soil_factor``):
negative values are an error; above :data:`ABSURD_T_HA` an error (no ecosystem stores that
much: the densest forests hold about 1,000 t C ha-1 above ground, Sillett et al. 2020; peat
soils up to ~3,000 t C ha-1 over several metres); above :data:`IMPLAUSIBLE_T_HA` a warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from terracarbon.errors import TerracarbonError
from terracarbon.pipeline.params import Problems

ABSURD_T_HA = {"veg": 1500.0, "soil": 4000.0}
"""Plot densities above these (t C ha-1) are errors (a unit or factor mistake)."""
IMPLAUSIBLE_T_HA = {"veg": 500.0, "soil": 1000.0}
"""Plot densities above these (t C ha-1) are possible but rare: a warning."""
CATEGORICAL_LAYERS = ("landuse", "soil_type", "veg_type")
"""Layers every stage reads as class codes; they must be declared ``kind: categorical``."""
MAX_LAYER_YEAR_SHARE_OF_MEMORY = 0.25
"""A grid whose single layer-year (float64) exceeds this share of RAM is refused."""
_DECIMATED_PX = 64


def study_years(params: Mapping[str, Any]) -> list[int]:
    """The study's years: ``data.years`` for real data, the synthetic range otherwise."""
    synthetic = params.get("synthetic") or {}
    if synthetic.get("enabled"):
        return list(range(int(synthetic["first_year"]), int(synthetic["last_year"]) + 1))
    return [int(y) for y in (params.get("data") or {}).get("years") or []]


def layer_names(params: Mapping[str, Any]) -> list[str]:
    """Names of the cube's layers (composites ``<layer>_<w>yr`` included)."""
    synthetic = params.get("synthetic") or {}
    if synthetic.get("enabled"):
        from terracarbon.data.synthetic import LAYERS

        names = list(LAYERS)
        # (kind, units, long_name, annual)
        annual_continuous = [n for n, s in LAYERS.items() if s[0] == "continuous" and s[3]]
    else:
        layers = (params.get("data") or {}).get("layers") or {}
        names = list(layers)
        annual_continuous = [n for n, s in layers.items() if isinstance(s, Mapping)
                             and s.get("kind") == "continuous"
                             and ("{year}" in str(s.get("path", "")) or s.get("band_years"))]
    window = (params.get("prep") or {}).get("composite_window", 1)
    if isinstance(window, int) and window > 1:
        names += [f"{n}_{window}yr" for n in annual_continuous]
    return names + ["region_mask"]


def check_study(params: Mapping[str, Any], stage_ids: Sequence[str]) -> list[str]:
    """Check a resolved study before it runs; return warnings, raise on problems.

    Parameters
    ----------
    params : mapping
        Resolved parameters (:func:`terracarbon.pipeline.params.load_params`).
    stage_ids : sequence of str
        The stages about to run (checks of a stage that does not run are skipped).

    Raises
    ------
    ParameterError
        One message listing every problem found.
    """
    problems, warnings = Problems(), []
    years = study_years(params)
    _check_cross_parameters(params, stage_ids, years, problems)
    synthetic = (params.get("synthetic") or {}).get("enabled")
    grid = None
    if synthetic:
        s = params["synthetic"]
        _check_grid_size(int(s["nx_pixels"]), int(s["ny_pixels"]), "synthetic.pixel_size_m",
                         s["pixel_size_m"], problems)
    elif "01_data_prep" in stage_ids:
        data = params.get("data") or {}
        _check_layer_options(data, problems)
        _check_rasters(data, years, problems)
        grid = _target_grid(params, problems, warnings)
        if grid is not None:
            _check_grid_size(grid.width, grid.height, "grid.pixel_size_m",
                             params["grid"]["pixel_size_m"], problems)
        if isinstance(data.get("plots"), Mapping):
            _check_plots(data, grid, years, problems, warnings)
    problems.raise_if_any("checks before the run")
    return warnings


# --------------------------------------------------------------------------- parameters
def _check_cross_parameters(params: Mapping, stage_ids: Sequence[str], years: list[int],
                            problems: Problems) -> None:
    trends, maps, models = (params.get(k) or {} for k in ("trends", "maps", "models"))
    names = layer_names(params)
    if "04_trends" in stage_ids:
        need = trends.get("min_valid_years")
        if isinstance(need, int) and len(years) < need:
            source = "synthetic.first_year/last_year" if (params.get("synthetic") or {}).get(
                "enabled") else "data.years"
            problems.add("trends.min_valid_years",
                         f"= {need}, but the study has {len(years)} year(s) ({source}): every "
                         f"pixel would be left without a trend. Set trends.min_valid_years to at "
                         f"most {len(years)} (a trend test needs at least 5 years to mean "
                         "anything) or add years.")
        if len(years) < 5:
            problems.add("data.years", f"{len(years)} year(s): trends (04_trends) need at least "
                         "5 years; drop 04_trends and 05_zoning from study.stages or add years.")
        unknown = [d for d in trends.get("drivers") or [] if d not in names]
        if unknown:
            problems.add("trends.drivers", f"{unknown} are not layers of the cube (layers: "
                         f"{names}); name layers declared under data.layers.")
        if trends.get("source_stage") == "01_data_prep" and trends.get("variable") not in names:
            problems.add("trends.variable", f"{trends.get('variable')!r} is not a layer of the "
                         f"cube (layers: {names}).")
    if "03_carbon_maps" in stage_ids:
        choice = maps.get("model")
        candidates = models.get("candidates") or []
        if choice not in (None, "best") and choice not in candidates:
            problems.add("maps.model", f"{choice!r} was not trained: models.candidates is "
                         f"{candidates}; add it there or set maps.model: best.")
    unknown = [f for f in models.get("features") or [] if f not in names]
    if "02_train_models" in stage_ids and unknown:
        problems.add("models.features", f"{unknown} are not layers of the cube (layers: "
                     f"{names}).")


def _check_grid_size(nx: int, ny: int, key: str, pixel_size: Any, problems: Problems) -> None:
    import psutil

    layer_year_bytes = 8.0 * nx * ny
    limit = MAX_LAYER_YEAR_SHARE_OF_MEMORY * psutil.virtual_memory().total
    if layer_year_bytes > limit:
        problems.add(key, f"= {pixel_size} m gives a grid of {nx:,} x {ny:,} pixels: one layer "
                     f"of one year alone is {layer_year_bytes / 2**30:,.1f} GiB, more than this "
                     f"machine can work with ({limit / 2**30:,.1f} GiB). Use a coarser pixel "
                     "size or a smaller extent.")


# --------------------------------------------------------------------------- rasters
def _layer_files(spec: Mapping, years: list[int]) -> list[str]:
    pattern = str(spec.get("path", ""))
    return [pattern.format(year=y) for y in years] if "{year}" in pattern else [pattern]


def _check_layer_options(data: Mapping, problems: Problems) -> None:
    for name, spec in (data.get("layers") or {}).items():
        if not isinstance(spec, Mapping):
            continue
        key = f"data.layers.{name}"
        for option in ("scale_factor", "offset", "nodata"):
            value = spec.get(option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.add(f"{key}.{option}", f"expected a number, got {value!r}")
        band = spec.get("band")
        if band is not None and (isinstance(band, bool) or not isinstance(band, int) or band < 1):
            problems.add(f"{key}.band", f"expected a 1-based band number, got {band!r}")
        if name in CATEGORICAL_LAYERS and spec.get("kind") == "continuous":
            problems.add(f"{key}.kind", f"'{name}' holds class codes: declare it "
                         "kind: categorical (continuous would average the codes).")


def _check_rasters(data: Mapping, years: list[int], problems: Problems) -> None:
    import rasterio
    from rasterio.enums import Resampling

    for name, spec in (data.get("layers") or {}).items():
        if not isinstance(spec, Mapping) or not spec.get("path"):
            continue
        key = f"data.layers.{name}.path"
        band_years = spec.get("band_years") or {}
        bands = ([int(b) for b in band_years.values()] if band_years
                 else [int(spec.get("band") or 1)])
        for path in _layer_files(spec, years):
            if not Path(path).is_file():
                continue  # the schema check names missing files
            try:
                with rasterio.open(path) as src:
                    if max(bands) > src.count:
                        problems.add(key, f"{path} has {src.count} band(s) but band {max(bands)} "
                                     "is asked for (band / band_years)")
                        continue
                    if src.crs is None:
                        problems.add(key, f"{path} has no CRS; assign one (gdal_edit.py -a_srs) "
                                     "so it can be aligned to the grid")
                    scale = max(1, max(src.width, src.height) // _DECIMATED_PX)
                    sample = src.read(bands[0], masked=True,
                                      out_shape=(max(1, src.height // scale),
                                                 max(1, src.width // scale)),
                                      resampling=Resampling.nearest)
            except rasterio.errors.RasterioError as exc:
                problems.add(key, f"{path} is not a raster GDAL can read ({exc}); check the "
                             "file (a GeoTIFF, or any GDAL format)")
                continue
            nodata = spec.get("nodata")
            values = np.ma.masked_invalid(sample.astype("float64"))
            if nodata is not None:
                values = np.ma.masked_equal(values, float(nodata))
            if values.count() == 0:
                problems.add(key, f"{path}: every sampled pixel of band {bands[0]} is nodata "
                             "or NaN; check the file, its nodata value and data.layers."
                             f"{name}.band")
                continue
            if spec.get("kind") == "categorical":
                valid = values.compressed()
                if np.any(valid != np.round(valid)):
                    problems.add(f"data.layers.{name}.kind", f"categorical, but {path} holds "
                                 "fractional values (e.g. "
                                 f"{float(valid[valid != np.round(valid)][0]):g}); declare it "
                                 "kind: continuous or give the class-code raster")


# --------------------------------------------------------------------------- grid, plots
def _target_grid(params: Mapping, problems: Problems, warnings: list[str]) -> Any:
    from terracarbon.data.inputs import resolve_inputs

    data = params.get("data") or {}
    boundary = data.get("boundary")
    if boundary and Path(boundary).is_file():
        _check_boundary(boundary, params["grid"]["crs"], data.get("boundary_filter"),
                        problems, warnings)
    try:
        return resolve_inputs(synthetic={"enabled": False}, grid=params.get("grid") or {},
                              data=data, seed=0, workdir=".").grid
    except TerracarbonError as exc:
        problems.add("grid", str(exc))
    except Exception as exc:  # noqa: BLE001  any reader error becomes a named problem
        problems.add("data.boundary", f"{boundary}: cannot build the target grid from it "
                     f"({type(exc).__name__}: {exc})")
    return None


def _check_boundary(path: str, crs: Any, unit_filter: Any, problems: Problems,
                    warnings: list[str]) -> None:
    import geopandas as gpd

    try:
        shapes = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001  pyogrio/fiona raise many types
        problems.add("data.boundary", f"{path} is not a vector file GDAL can read ({exc})")
        return
    if len(shapes) == 0:
        problems.add("data.boundary", f"{path} holds no features")
        return
    invalid = ~shapes.geometry.is_valid
    if invalid.any():
        warnings.append(f"data.boundary: {int(invalid.sum())} of {len(shapes)} polygon(s) in "
                        f"{Path(path).name} are invalid (e.g. self-intersecting) and were "
                        "repaired with make_valid; check the study area on the data-prep map.")


def _check_plots(data: Mapping, grid: Any, years: list[int], problems: Problems,
                 warnings: list[str]) -> None:
    import pandas as pd

    from terracarbon.data.survey import read_plots

    spec = data["plots"]
    path = spec.get("path")
    if not path or not Path(path).is_file():
        return  # the schema check names it
    try:
        raw = pd.read_csv(path, nrows=5)
    except pd.errors.EmptyDataError:
        problems.add("data.plots.path", f"{path} is empty (no header, no rows); give the "
                     "field-plot CSV, or set data.plots: null for a study without plots")
        return
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        problems.add("data.plots.path", f"{path} is not a readable CSV ({exc})")
        return
    if len(raw) == 0:
        problems.add("data.plots.path", f"{path} has a header but no rows: no field plots to "
                     "train on; add plots, or set data.plots: null for a study without plots")
        return
    if grid is None:
        return
    try:
        plots = read_plots(spec, grid)
    except TerracarbonError as exc:
        problems.add("data.plots", str(exc))
        return
    _check_plot_values(plots, spec, problems, warnings)
    _check_plot_locations(plots, spec, grid, years, problems, warnings)


def _csv_lines(index: Sequence[int]) -> str:
    lines = [int(i) + 2 for i in index[:8]]  # +1 header, +1 one-based
    more = f" and {len(index) - 8} more" if len(index) > 8 else ""
    return ", ".join(map(str, lines)) + more


def _check_plot_values(plots: Any, spec: Mapping, problems: Problems,
                       warnings: list[str]) -> None:
    for pool, column in (("veg", "veg_carbon_t_ha"), ("soil", "soil_carbon_t_ha")):
        key = f"data.plots.{pool}_column"
        values = plots[column]
        negative = values.index[values < 0]
        if len(negative):
            problems.add(key, f"{len(negative)} negative carbon densities (min "
                         f"{values.min():.4g} t C ha-1) in CSV line(s) {_csv_lines(negative)}: "
                         "carbon stocks cannot be negative; fix or remove those rows")
        absurd = values.index[values > ABSURD_T_HA[pool]]
        if len(absurd):
            problems.add(key, f"{len(absurd)} value(s) above {ABSURD_T_HA[pool]:g} t C ha-1 "
                         f"(max {values.max():.4g}) in CSV line(s) {_csv_lines(absurd)}: no "
                         f"ecosystem stores that much; check the units and {pool}_factor "
                         f"(now {spec.get(f'{pool}_factor') or 1})")
        rare = values.index[(values > IMPLAUSIBLE_T_HA[pool]) & (values <= ABSURD_T_HA[pool])]
        if len(rare):
            warnings.append(f"{key}: {len(rare)} plot(s) above {IMPLAUSIBLE_T_HA[pool]:g} t C "
                            f"ha-1 (CSV line(s) {_csv_lines(rare)}): possible but rare; the "
                            "outlier filter may remove them")


def _check_plot_locations(plots: Any, spec: Mapping, grid: Any, years: list[int],
                          problems: Problems, warnings: list[str]) -> None:
    import pyproj

    n = len(plots)
    off_grid = int((plots["row"] < 0).sum())
    wrong_year = int((~plots["year"].isin(years)).sum()) if years else 0
    usable = int(((plots["row"] >= 0) & plots["year"].isin(years)).sum()) if years else n - off_grid
    swapped_hint = ""
    if off_grid > n // 2:
        # would the plots land on the grid with x and y exchanged (lat/lon order)?
        to_grid = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(spec["crs"]),
                                              grid.crs, always_xy=True)
        raw = _raw_coordinates(spec)
        if raw is not None:
            try:
                sx, sy = to_grid.transform(raw[1], raw[0])
                row, _ = grid.rowcol(np.asarray(sx), np.asarray(sy))
                if (row >= 0).sum() > n // 2:
                    swapped_hint = (f"; with x and y exchanged {int((row >= 0).sum())} would be "
                                    "on the grid: swap data.plots.x_column and y_column "
                                    "(longitude is x)")
            except (pyproj.exceptions.ProjError, ValueError):
                pass
    summary = (f"{n} plot(s): {off_grid} off the grid{swapped_hint}, {wrong_year} from years "
               f"outside the study ({years[0] if years else '?'}–{years[-1] if years else '?'})")
    if usable == 0:
        problems.add("data.plots", f"no plot is usable: {summary}. Check data.plots.crs, the "
                     "coordinate columns and data.years.")
    elif off_grid or wrong_year:
        warnings.append(f"data.plots: {summary}; those are dropped.")
    if not math.isfinite(float(plots["x"].sum())):
        problems.add("data.plots.crs", "coordinates could not be transformed to the grid CRS; "
                     "check data.plots.crs")


def _raw_coordinates(spec: Mapping) -> tuple[np.ndarray, np.ndarray] | None:
    import pandas as pd

    table = pd.read_csv(spec["path"], usecols=[spec["x_column"], spec["y_column"]])
    x = pd.to_numeric(table[spec["x_column"]], errors="coerce").to_numpy("float64")
    y = pd.to_numeric(table[spec["y_column"]], errors="coerce").to_numpy("float64")
    return (x, y) if np.isfinite(x).all() and np.isfinite(y).all() else None


__all__ = ["ABSURD_T_HA", "CATEGORICAL_LAYERS", "IMPLAUSIBLE_T_HA", "check_study",
           "layer_names", "study_years"]
