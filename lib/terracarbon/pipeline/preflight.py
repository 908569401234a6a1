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

from terracarbon.conventions import CARBON_POOLS
from terracarbon.data.survey import POOL_COLUMNS
from terracarbon.errors import TerracarbonError
from terracarbon.pipeline.params import Problems
from terracarbon.pipeline.stage_specs import SERIES_SECTIONS

ABSURD_T_HA = {name: pool.absurd_t_ha for name, pool in CARBON_POOLS.items()}
"""Plot densities above these (t C ha-1) are errors (a unit or factor mistake)."""
IMPLAUSIBLE_T_HA = {name: pool.implausible_t_ha for name, pool in CARBON_POOLS.items()}
"""Plot densities above these (t C ha-1) are possible but rare: a warning."""
CATEGORICAL_LAYERS = ("landuse", "soil_type", "veg_type")
"""Layers every stage reads as class codes; they must be declared ``kind: categorical``."""
MAX_LAYER_YEAR_SHARE_OF_MEMORY = 0.25
"""A grid whose single layer-year (float64) exceeds this share of RAM is refused."""
MIN_GRID_PX = 3
"""A grid narrower than this (pixels, either axis) is refused: no neighbourhood to speak of."""
_DECIMATED_PX = 64


def study_years(params: Mapping[str, Any]) -> list[int]:
    """The study's years (sorted, once each, as data prep builds them): ``data.years`` for
    real data, the synthetic range otherwise."""
    synthetic = params.get("synthetic") or {}
    if synthetic.get("enabled"):
        return list(range(int(synthetic["first_year"]), int(synthetic["last_year"]) + 1))
    return sorted({int(y) for y in (params.get("data") or {}).get("years") or []})


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
        annual_continuous = _annual_continuous(layers)
    prep = params.get("prep") or {}
    window = prep.get("composite_window", 1)
    if isinstance(window, int) and window > 1:
        chosen = prep.get("composite_variables")
        names += [f"{n}_{window}yr" for n in annual_continuous
                  if chosen is None or n in chosen]
    return names + ["region_mask"]


def check_study(params: Mapping[str, Any], stage_ids: Sequence[str], *,
                run_dir: str | Path | None = None) -> list[str]:
    """Check a resolved study before it runs; return warnings, raise on problems.

    Parameters
    ----------
    params : mapping
        Resolved parameters (:func:`terracarbon.pipeline.params.load_params`).
    stage_ids : sequence of str
        The stages about to run (checks of a stage that does not run are skipped).
    run_dir : path, optional
        The run folder: upstream stages that are not about to run must be complete there.

    Raises
    ------
    ParameterError
        One message listing every problem found.
    """
    problems, warnings = Problems(), []
    years = study_years(params)
    _check_upstream(params, stage_ids, run_dir, problems)
    _check_cross_parameters(params, stage_ids, years, problems)
    synthetic = (params.get("synthetic") or {}).get("enabled")
    if synthetic:
        s = params["synthetic"]
        _check_grid_size(int(s["nx_pixels"]), int(s["ny_pixels"]), "synthetic.pixel_size_m",
                         s["pixel_size_m"], problems)
        if "02_train_models" in stage_ids:
            outside = [y for y in s["plot_years"] if y not in years]
            if not s["plot_years"] or outside:
                problems.add("synthetic.plot_years", f"{s['plot_years']}: the plots must be "
                             f"measured in study years ({years[0]}–{years[-1]}); list one or "
                             "more of them")
            if s["n_veg_plots"] + s["n_soil_plots"] == 0:
                problems.add("synthetic.n_veg_plots", "and synthetic.n_soil_plots are both 0: "
                             "nothing to train the models on; give some plots")
    elif "01_data_prep" in stage_ids and not (params.get("data") or {}).get("layers"):
        pass  # a towers-only study: no rasters, no grid (the schema checked the towers)
    elif "01_data_prep" in stage_ids:
        data = params.get("data") or {}
        bad_layers = _check_layer_options(data, years, problems)
        grid, boundary = _target_grid(params, problems, warnings)
        if grid is not None:
            _check_grid_size(grid.width, grid.height, "grid.pixel_size_m",
                             params["grid"]["pixel_size_m"], problems)
            if min(grid.width, grid.height) < MIN_GRID_PX:
                problems.add("grid.pixel_size_m", f"= {params['grid']['pixel_size_m']} m gives "
                             f"a grid of only {grid.width} x {grid.height} pixel(s) over the "
                             f"study extent; maps, neighbourhoods and zoning need at least "
                             f"{MIN_GRID_PX} x {MIN_GRID_PX}: use a finer pixel size")
        landuse_codes = _check_rasters(data, years, grid, _grid_source(params), bad_layers,
                                       problems)
        _check_landcover_codes(params, landuse_codes, warnings)
        if isinstance(data.get("plots"), Mapping):
            _check_plots(data, grid, boundary, years, problems, warnings)
    problems.raise_if_any("checks before the run")
    return warnings


def _grid_source(params: Mapping) -> str:
    """The parameter that sets the grid's extent."""
    return "grid.bounds_m" if (params.get("grid") or {}).get("bounds_m") else "data.boundary"


# --------------------------------------------------------------------------- stages
def _check_upstream(params: Mapping, stage_ids: Sequence[str], run_dir: str | Path | None,
                    problems: Problems) -> None:
    """Every stage's upstream stages run before it in this run, or completed earlier."""
    from terracarbon.errors import StageError
    from terracarbon.pipeline.stages import STAGES, expected_stage_hash, read_manifest

    def runs_before(up: str, stage_id: str) -> bool:
        return up in stage_ids and list(stage_ids).index(up) < list(stage_ids).index(stage_id)

    def available(up: str, before: str) -> bool:
        if runs_before(up, before):
            return True
        manifest = read_manifest(Path(run_dir) / up) if run_dir is not None else None
        return bool(manifest) and manifest.get("status") == "complete"

    def stale(up: str) -> bool:
        """A complete upstream stage that its current parameters or inputs would change."""
        manifest = read_manifest(Path(run_dir) / up) or {}
        sections = {name: params.get(name) for name in STAGES[up].sections}
        try:
            expected, _ = expected_stage_hash(run_dir, up, sections)
        except StageError:
            return True
        return manifest.get("stage_hash") != expected

    where = f" in {run_dir}" if run_dir is not None else ""
    reported: set[str] = set()
    # a trends-like stage reads the annual series of its section's source_stage: an optional
    # upstream that this choice makes required
    series_choice = {stage: (section, (params.get(section) or {}).get("source_stage"))
                     for stage, section in SERIES_SECTIONS.items()}
    for stage_id in stage_ids:
        if stage_id not in STAGES:
            continue
        needs = list(STAGES[stage_id].upstream)
        section, source = series_choice.get(stage_id, (None, None))
        if source in STAGES[stage_id].optional_upstream:
            if available(source, stage_id):
                needs.append(source)
            else:
                problems.add(f"{section}.source_stage", f"= {source}, but {source} is not part "
                             f"of this run and has not completed{where}; add {source} to "
                             f"study.stages (before {stage_id}), or set {section}.source_stage: "
                             "01_data_prep to analyse the input layers.")
        for up in needs:
            if not available(up, stage_id):
                problems.add("study.stages", f"{stage_id} needs {up}, which is not part of "
                             f"this run and has not completed{where}; run it first (list it "
                             "in study.stages, or drop --only / --from).")
            elif (not runs_before(up, stage_id) and run_dir is not None and up not in reported
                  and stale(up)):
                reported.add(up)
                problems.add("study.stages", f"{stage_id} would read {up}{where}, which is out "
                             f"of date (its parameters, input files or upstream stages changed "
                             f"since it ran); rerun from it (--from {up}) instead of using its "
                             "old results.")


# --------------------------------------------------------------------------- parameters
def _annual_continuous(layers: Mapping[str, Any]) -> list[str]:
    """Names of the ``data.layers`` entries that are continuous with one raster per year: a
    path with ``{year}``, ``band_years``, or a STAC source whose items span several years."""
    return [name for name, spec in layers.items() if isinstance(spec, Mapping)
            and spec.get("kind") == "continuous" and _stac_years_or_pattern(name, spec)]


def _stac_years_or_pattern(name: str, spec: Mapping) -> bool:
    if spec.get("stac") not in (None, ""):
        if spec.get("static"):
            return False
        return any(year is not None for year in _stac_hrefs(name, spec))
    return "{year}" in str(spec.get("path", "")) or bool(spec.get("band_years"))


def _stac_hrefs(name: str, spec: Mapping) -> dict[int | None, str]:
    """``{year: href}`` of a STAC layer, read afresh (an item edited since the last read is
    seen); empty when the source cannot be read (the params check names that problem)."""
    from terracarbon.data import stac

    try:
        return stac.asset_hrefs(spec["stac"], spec.get("asset"), name=name,
                                static=bool(spec.get("static")),
                                collection=spec.get("collection"), fresh=True)
    except (TerracarbonError, OSError):
        return {}


def _is_static(name: str, spec: Mapping) -> bool:
    """A ``data.layers`` entry with one value per pixel (no year); False when unreadable
    (the layer checks name that problem)."""
    from terracarbon.data.prep import normalise_layer_spec

    try:
        return bool(normalise_layer_spec(name, spec)["static"])
    except TerracarbonError:
        return False


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
                         f"{names}); name layers declared under data.layers"
                         f"{_composite_hint(unknown)}.")
        layers = (params.get("data") or {}).get("layers") or {}
        synthetic = (params.get("synthetic") or {}).get("enabled")
        static = [d for d in trends.get("drivers") or [] if not synthetic
                  and isinstance(layers.get(d), Mapping) and _is_static(d, layers[d])]
        if static:
            problems.add("trends.drivers", f"{static} are static layers (one value per pixel, "
                         "no year): a partial correlation with the yearly series needs annual "
                         "drivers; name annual layers (a path with {year}) or set drivers: [].")
    zoning = params.get("zoning") or {}
    series = {section: ((params.get(section) or {}).get("source_stage"),
                        (params.get(section) or {}).get("variable"))
              for section in SERIES_SECTIONS.values()}
    if ("05_zoning" in stage_ids and zoning and series["trends"] != series["zoning"]):
        problems.add("zoning.variable", f"zoning analyses {series['zoning'][1]!r} of "
                     f"{series['zoning'][0]} but trends analysed {series['trends'][1]!r} of "
                     f"{series['trends'][0]}: the zones cross LISA clusters with the trend "
                     "classes, so both must describe the same series; set zoning.source_stage "
                     "and zoning.variable equal to trends.source_stage and trends.variable.")
    for stage_id, section in SERIES_SECTIONS.items():
        settings = params.get(section) or {}
        if (stage_id in stage_ids and settings.get("source_stage") == "01_data_prep"
                and settings.get("variable") not in names):
            problems.add(f"{section}.variable", f"{settings.get('variable')!r} is not a layer "
                         f"of the cube (layers: {names}).")
    if "03_carbon_maps" in stage_ids and maps.get("lookup_table"):
        from terracarbon.carbon.lookup import read_lookup_table

        if not Path(maps["lookup_table"]).is_file():
            problems.add("maps.lookup_table", f"file not found: {maps['lookup_table']}")
        else:
            try:
                read_lookup_table(maps["lookup_table"])
            except TerracarbonError as exc:
                problems.add("maps.lookup_table", str(exc))
    if "03_carbon_maps" in stage_ids:
        choice = maps.get("model")
        candidates = models.get("candidates") or []
        if choice not in (None, "best") and choice not in candidates:
            problems.add("maps.model", f"{choice!r} was not trained: models.candidates is "
                         f"{candidates}; add it there or set maps.model: best.")
    features = models.get("features") or []
    unknown = [f for f in features if f not in names]
    if "02_train_models" in stage_ids:
        if unknown:
            problems.add("models.features", f"{unknown} are not layers of the cube (layers: "
                         f"{names}); name layers declared under data.layers"
                         f"{_composite_hint(unknown)}.")
        if not features:
            problems.add("models.features", f"is empty: the models need covariates; list "
                         f"layers of the cube, e.g. {[n for n in names if n != 'region_mask'][:4]}")
        if not (models.get("candidates") or []):
            problems.add("models.candidates", "is empty: nothing would be trained; list model "
                         "families, e.g. [rf, mlr]")
    prep = params.get("prep") or {}
    if "01_data_prep" in stage_ids and prep.get("augment"):
        wanted = ["npp", "temperature", "precipitation", "landuse"]
        absent = [n for n in wanted if n not in names]
        if absent:
            problems.add("prep.augment", f"NPP-ratio augmentation needs the layers {wanted}; "
                         f"{absent} are not layers of the cube: declare them under "
                         "data.layers, or set prep.augment: false")
        if prep.get("augment_per_site", 1) < 1:
            problems.add("prep.augment_per_site", f"= {prep.get('augment_per_site')} with "
                         "prep.augment: true; give at least 1, or set prep.augment: false")
    chosen = prep.get("composite_variables")
    synthetic = (params.get("synthetic") or {}).get("enabled")
    if "01_data_prep" in stage_ids and chosen and not synthetic:
        annual = _annual_continuous((params.get("data") or {}).get("layers") or {})
        wrong = [v for v in chosen if v not in annual]
        if wrong:
            problems.add("prep.composite_variables", f"{wrong} are not annual continuous layers "
                         f"(those are {annual}); list some of them, or null for all.")


def _composite_hint(unknown: Sequence[str]) -> str:
    """A hint when an unknown name looks like a composite (``ndvi_3yr``)."""
    import re

    for name in unknown:
        match = re.fullmatch(r"(.+)_(\d+)yr", str(name))
        if match:
            return (f" ({name} is a {match.group(2)}-year composite of {match.group(1)}: it "
                    f"exists only with prep.composite_window: {match.group(2)})")
    return ""


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
def _layer_files(name: str, spec: Mapping, years: list[int]) -> list[str]:
    """The local files a layer reads for ``years`` (a STAC layer: its assets' files)."""
    if spec.get("stac") not in (None, ""):
        from terracarbon.data.stac import is_url

        return [href for year, href in _stac_hrefs(name, spec).items()
                if (year is None or year in years) and not is_url(href)]
    pattern = str(spec.get("path", ""))
    return [pattern.format(year=y) for y in years] if "{year}" in pattern else [pattern]


def _check_layer_options(data: Mapping, years: list[int], problems: Problems) -> set[str]:
    """Check each layer's options; return the names of layers whose files cannot be checked."""
    from terracarbon.data.prep import normalise_layer_spec
    from terracarbon.errors import ParameterError

    bad: set[str] = set()
    for name, spec in (data.get("layers") or {}).items():
        if not isinstance(spec, Mapping):
            bad.add(name)
            continue
        key = f"data.layers.{name}"
        n_before = len(problems.items)
        for option in ("scale_factor", "offset", "nodata"):
            value = spec.get(option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.add(f"{key}.{option}", f"expected a number, got {value!r}; write a "
                             "plain number (e.g. 0.1), or remove the option")
        band = spec.get("band")
        if band is not None and (isinstance(band, bool) or not isinstance(band, int) or band < 1):
            problems.add(f"{key}.band", f"expected a 1-based band number, got {band!r}")
        if name in CATEGORICAL_LAYERS and spec.get("kind") == "continuous":
            problems.add(f"{key}.kind", f"'{name}' holds class codes: declare it "
                         "kind: categorical (continuous would average the codes).")
        if len(problems.items) == n_before:
            try:
                normalised = normalise_layer_spec(name, spec)
            except ParameterError as exc:
                message = str(exc)
                problems.add(key, message.removeprefix(f"{key}: "))
            else:
                resampling = normalised["resampling"]
                if normalised["kind"] == "categorical" and resampling not in (
                        None, "nearest", "mode", "min", "max", "med"):
                    problems.add(f"{key}.resampling", f"{resampling!r} would invent class codes "
                                 "for a categorical layer; use mode or nearest.")
                band_years = normalised["band_years"]
                if band_years is not None and not normalised["static"]:
                    absent = [y for y in years if y not in band_years]
                    if absent:
                        problems.add(f"{key}.band_years", f"has no band for year(s) {absent}; "
                                     "add them or drop them from data.years.")
        if len(problems.items) > n_before:
            bad.add(name)
    return bad


def _check_rasters(data: Mapping, years: list[int], grid: Any, grid_source: str,
                   skip: set[str], problems: Problems) -> dict[int, int]:
    """Open every input raster and read it decimated; return the land-use codes seen
    (``{code: sampled pixels}``, for :func:`_check_landcover_codes`)."""
    import rasterio
    from rasterio.enums import Resampling

    landuse_codes: dict[int, int] = {}
    off_grid: dict[str, list[str]] = {}
    n_checked = 0
    example = ""
    for name, spec in (data.get("layers") or {}).items():
        if name in skip or not isinstance(spec, Mapping) or not (spec.get("path")
                                                                  or spec.get("stac")):
            continue
        key = f"data.layers.{name}.{'stac' if spec.get('stac') else 'path'}"
        band_years = spec.get("band_years") or {}
        bands = ([int(b) for b in band_years.values()] if band_years
                 else [int(spec.get("band") or 1)])
        for path in _layer_files(name, spec, years):
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
                    elif grid is not None:
                        n_checked += 1
                        overlap = _raster_overlaps(src, grid)
                        if overlap is False:
                            off_grid.setdefault(name, []).append(path)
                            example = example or _bounds_text(src)
                    scale = max(1, max(src.width, src.height) // _DECIMATED_PX)
                    sample = src.read(bands[0], masked=True,
                                      out_shape=(max(1, src.height // scale),
                                                 max(1, src.width // scale)),
                                      resampling=Resampling.nearest)
            except (rasterio.errors.RasterioError, OSError) as exc:
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
                elif name == "landuse":
                    found, counts = np.unique(valid.astype(np.int64), return_counts=True)
                    for code, n in zip(found.tolist(), counts.tolist()):
                        landuse_codes[code] = landuse_codes.get(code, 0) + n
    if grid is None or not off_grid:
        return landuse_codes
    n_off = sum(len(v) for v in off_grid.values())
    if n_off == n_checked:
        problems.add(grid_source, f"the target grid {grid.describe()} overlaps none of the "
                     f"input rasters (e.g. {example}); it does not overlap the target grid. "
                     f"Check {grid_source} and grid.crs against the rasters' extent and CRS.")
        return landuse_codes
    for name, paths in off_grid.items():
        shown = ", ".join(Path(p).name for p in paths[:3]) + (" …" if len(paths) > 3 else "")
        problems.add(f"data.layers.{name}.path", f"{shown} ({paths[0]}) does not overlap the "
                     f"target grid {grid.describe()}; check that the file covers the study "
                     "area and that its CRS is declared correctly (a wrong CRS tag is the "
                     "usual cause).")
    return landuse_codes


def _check_landcover_codes(params: Mapping, codes: Mapping[int, int],
                           warnings: list[str]) -> None:
    """Warn of land-use codes (in the decimated reads of the whole files) that the study's
    ``landcover`` table does not name. A warning, as they may lie outside the study region:
    data prep checks every pixel of the aligned cube and stops, counting them exactly."""
    from terracarbon.landcover.params import parse_section

    _, faulty, accepted = parse_section(params.get("landcover"))
    unknown = {c: n for c, n in sorted(codes.items()) if c not in accepted}
    if faulty or not unknown:   # a faulty section is reported by the parameter check
        return
    total = sum(codes.values())
    listed = ", ".join(f"{c} ({n} of {total} sampled pixels)" for c, n in unknown.items())
    warnings.append(f"data.layers.landuse: codes {listed} are not classes of the landcover "
                    "table; data prep stops if they lie in the study region. Name them under "
                    "landcover.classes, map them with landcover.reclassify (e.g. "
                    f"{{{next(iter(unknown))}: 0}} for no data), or name the raster's scheme "
                    "in landcover.scheme")


def _bounds_text(src: Any) -> str:
    b = ", ".join(f"{v:.6g}" for v in src.bounds)
    return f"{Path(src.name).name} has bounds ({b}) in {src.crs.to_string()[:40]}"


def _raster_overlaps(src: Any, grid: Any) -> bool | None:
    """True/False if the raster's footprint meets the grid; None when PROJ cannot tell."""
    from rasterio.warp import transform_bounds

    def meets(a: Sequence[float], b: Sequence[float]) -> bool:
        return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]

    for src_crs, dst_crs, box, other in ((grid.crs, src.crs, grid.bounds, src.bounds),
                                         (src.crs, grid.crs, src.bounds, grid.bounds)):
        try:
            moved = transform_bounds(src_crs, dst_crs, *box, densify_pts=21)
        except Exception:  # noqa: BLE001  PROJ raises several types at domain edges
            continue
        if all(math.isfinite(v) for v in moved):
            return meets(moved, other)
    return None


# --------------------------------------------------------------------------- grid, plots
def _target_grid(params: Mapping, problems: Problems, warnings: list[str]) -> tuple[Any, Any]:
    """The target grid and the (selected, reprojected) boundary; (None, None) on problems."""
    from terracarbon.data.grid import GridSpec
    from terracarbon.data.prep import read_boundary

    data, grid = params.get("data") or {}, params.get("grid") or {}
    path = data.get("boundary")
    boundary = None
    if path:
        if not Path(path).is_file():
            return None, None  # the schema check names it
        if not _check_boundary(path, warnings, problems):
            return None, None
        try:
            boundary = read_boundary(path, crs=grid["crs"], filter=data.get("boundary_filter"))
        except TerracarbonError as exc:
            key = "data.boundary_filter" if "boundary_filter" in str(exc) else "data.boundary"
            problems.add(key, str(exc))
            return None, None
        except Exception as exc:  # noqa: BLE001  a reader or PROJ error becomes a named problem
            problems.add("data.boundary", f"{path}: cannot be read or reprojected to grid.crs "
                         f"({type(exc).__name__}: {exc}); check the file and its CRS")
            return None, None
    try:
        if grid.get("bounds_m"):
            target = GridSpec.from_bounds(tuple(grid["bounds_m"]), crs=grid["crs"],
                                          resolution=grid["pixel_size_m"])
        elif boundary is not None:
            target = GridSpec.from_boundary(boundary, crs=grid["crs"],
                                            resolution=grid["pixel_size_m"])
        else:
            problems.add("grid.bounds_m", "is null and data.boundary is not set: give the "
                         "study extent as grid.bounds_m: [xmin, ymin, xmax, ymax] (metres, "
                         "grid CRS) or a boundary file")
            return None, boundary
    except TerracarbonError as exc:
        problems.add(_grid_source(params), str(exc))
        return None, boundary
    return target, boundary


def _check_boundary(path: str, warnings: list[str], problems: Problems) -> bool:
    """The boundary file is a readable, non-empty vector file (warn about invalid polygons)."""
    import geopandas as gpd

    try:
        shapes = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001  pyogrio/fiona raise many types
        problems.add("data.boundary", f"{path} is not a vector file GDAL can read ({exc}); give "
                     "a GeoJSON, GeoPackage, shapefile or zipped shapefile")
        return False
    if len(shapes) == 0:
        problems.add("data.boundary", f"{path} holds no features; give the study-area polygon(s)")
        return False
    invalid = ~shapes.geometry.is_valid
    if invalid.any():
        warnings.append(f"data.boundary: {int(invalid.sum())} of {len(shapes)} polygon(s) in "
                        f"{Path(path).name} are invalid (e.g. self-intersecting) and were "
                        "repaired with make_valid; check the study area on the data-prep map.")
    return True


def _check_plots(data: Mapping, grid: Any, boundary: Any, years: list[int], problems: Problems,
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
    if not _check_plot_columns(spec, problems) or grid is None:
        return
    try:
        plots = read_plots(spec, grid)
    except TerracarbonError as exc:
        message = str(exc)
        key = message.split(":", 1)[0] if message.startswith("data.plots.") else "data.plots"
        problems.add(key, message.removeprefix(f"{key}: "))
        return
    _check_plot_values(plots, spec, problems, warnings)
    _check_plot_locations(plots, spec, grid, boundary, years, problems, warnings)


def _check_plot_columns(spec: Mapping, problems: Problems) -> bool:
    """Numbers where numbers belong, coordinates and years in every row (CSV line numbers)."""
    import pandas as pd

    table = pd.read_csv(spec["path"])
    ok = True
    for key, required in (("x_column", True), ("y_column", True), ("year_column", True),
                          *((f"{pool}_column", False) for pool in CARBON_POOLS)):
        column = spec.get(key)
        if not column or column not in table.columns:
            continue  # the schema check names it
        values = pd.to_numeric(table[column], errors="coerce")
        text = values.isna() & table[column].notna()
        if text.any():
            examples = table[column][text].astype(str).unique()[:5].tolist()
            problems.add(f"data.plots.{key}", f"column {column!r} of {Path(spec['path']).name} "
                         f"has non-numeric values {examples} in CSV line(s) "
                         f"{_csv_lines(text[text].index)}; write plain numbers with '.' as "
                         "the decimal mark, or leave the cell empty")
            ok = False
        empty = table[column].isna()
        if required and empty.any():
            problems.add(f"data.plots.{key}", f"column {column!r} of {Path(spec['path']).name} "
                         f"is empty in CSV line(s) {_csv_lines(empty[empty].index)}; every plot "
                         "needs coordinates and a year: fill or remove those rows")
            ok = False
    return ok


def _csv_lines(index: Sequence[int]) -> str:
    lines = [int(i) + 2 for i in index[:8]]  # +1 header, +1 one-based
    more = f" and {len(index) - 8} more" if len(index) > 8 else ""
    return ", ".join(map(str, lines)) + more


def _check_plot_values(plots: Any, spec: Mapping, problems: Problems,
                       warnings: list[str]) -> None:
    for pool, column in POOL_COLUMNS.items():
        if column not in plots:
            continue
        key = f"data.plots.{pool}_column"
        values = plots[column]
        if spec.get(f"{pool}_column") and values.isna().all():
            problems.add(key, f"column {spec[f'{pool}_column']!r} of "
                         f"{Path(spec['path']).name} has no values; fill it, or set "
                         f"data.plots.{pool}_column: null if that pool was not measured")
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


def _check_plot_locations(plots: Any, spec: Mapping, grid: Any, boundary: Any,
                          years: list[int], problems: Problems, warnings: list[str]) -> None:
    import pyproj

    n = len(plots)
    on_grid = (plots["row"] >= 0).to_numpy()
    off_grid = int((~on_grid).sum())
    inside = on_grid.copy()
    if boundary is not None and len(boundary):
        import shapely

        region = shapely.union_all(boundary.geometry.to_numpy())
        inside &= shapely.contains_xy(region, plots["x"].to_numpy(), plots["y"].to_numpy())
    outside = int((on_grid & ~inside).sum())
    in_years = plots["year"].isin(years).to_numpy() if years else np.ones(n, bool)
    wrong_year = int((~in_years).sum())
    usable = int((inside & in_years).sum())
    src_crs = pyproj.CRS.from_user_input(spec["crs"])
    hint = ""
    if off_grid > n // 2:
        raw = _raw_coordinates(spec)
        if raw is not None:
            # would the plots land on the grid with x and y exchanged (lat/lon order)?
            to_grid = pyproj.Transformer.from_crs(src_crs, grid.crs, always_xy=True)
            try:
                sx, sy = to_grid.transform(raw[1], raw[0])
                row, _ = grid.rowcol(np.asarray(sx), np.asarray(sy))
            except (pyproj.exceptions.ProjError, ValueError):
                row = np.full(n, -1)
            if (row >= 0).sum() > n // 2:
                hint = (f" With x and y exchanged {int((row >= 0).sum())} would be on the grid: "
                        "swap data.plots.x_column and y_column (longitude is x).")
            elif (src_crs.is_projected and np.all(np.abs(raw[0]) <= 180)
                  and np.all(np.abs(raw[1]) <= 90)):
                hint = (f" The coordinates look like degrees of longitude/latitude, but "
                        f"data.plots.crs ({spec['crs']}) is projected: set data.plots.crs: "
                        "EPSG:4326 if they are lon/lat.")
    summary = (f"{n} plot(s): {off_grid} off the grid, {outside} on the grid but outside the "
               f"boundary, {wrong_year} from years outside the study "
               f"({years[0] if years else '?'}–{years[-1] if years else '?'})")
    if usable == 0:
        problems.add("data.plots", f"no plot is usable: {summary}."
                     + (hint or " Check data.plots.crs, the coordinate columns, data.boundary "
                        "and data.years."))
    elif off_grid or wrong_year or outside:
        warnings.append(f"data.plots: {summary}; those are dropped.{hint}")
    if not hint and not math.isfinite(float(plots["x"].sum())):
        problems.add("data.plots.crs", "coordinates could not be transformed to the grid CRS; "
                     "check data.plots.crs and the coordinate columns")


def _raw_coordinates(spec: Mapping) -> tuple[np.ndarray, np.ndarray] | None:
    import pandas as pd

    table = pd.read_csv(spec["path"], usecols=[spec["x_column"], spec["y_column"]])
    x = pd.to_numeric(table[spec["x_column"]], errors="coerce").to_numpy("float64")
    y = pd.to_numeric(table[spec["y_column"]], errors="coerce").to_numpy("float64")
    return (x, y) if np.isfinite(x).all() and np.isfinite(y).all() else None


__all__ = ["ABSURD_T_HA", "CATEGORICAL_LAYERS", "IMPLAUSIBLE_T_HA", "check_study",
           "layer_names", "study_years"]
