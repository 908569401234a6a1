"""Writing a synthetic study: :func:`make_study` checks its arguments, draws the fields in a
fixed order of random streams and writes rasters, boundary, plots, truth and ``study.json``.

The drawing lives in :mod:`.fields` and :mod:`.plots`, the file layout in :mod:`.layout`, the
truth file in :mod:`.truth`; this module orchestrates them and writes the GeoTIFFs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from terracarbon import __version__
from terracarbon.data import io
from terracarbon.data.synthetic.fields import annual_fields, static_fields
from terracarbon.data.synthetic.layout import (
    LAYERS,
    StudyFiles,
    all_paths,
    is_complete,
    remove_stale_rasters,
    study_files,
)
from terracarbon.data.synthetic.noise import Grid, calendar_years, check_pixel_size, projected_crs
from terracarbon.data.synthetic.plots import make_plots
from terracarbon.data.synthetic.truth import write_truth
from terracarbon.errors import ParameterError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3
"""Bump when the generative model changes, so cached studies are regenerated."""


def make_study(
    out_dir: str | Path,
    *,
    nx: int = 800,
    ny: int = 600,
    pixel_size_m: float = 500.0,
    years: Iterable[int] = range(2000, 2022),
    crs: str = "EPSG:32649",
    origin_xy: tuple[float, float] = (300000.0, 2800000.0),
    n_veg_plots: int = 1264,
    n_soil_plots: int = 2316,
    plot_years: Iterable[int] = (2018, 2021),
    revisit_share: float = 0.0,
    n_outliers: int | None = None,
    n_outside_plots: int = 5,
    seed: int = 42,
    region_share: float = 0.78,
    generation: Literal["auto", "in_memory", "streaming"] = "auto",
    block_px: int = 256,
    chunk_px: int = 1024,
) -> StudyFiles:
    """Write the synthetic study area (rasters, boundary, plots, truth) to ``out_dir``.

    The generative model is documented in the package docstring
    (:mod:`terracarbon.data.synthetic`). Output is a pure function
    of the arguments: the same arguments give byte-identical arrays. If ``out_dir`` already
    holds a complete study made with the same arguments (``study.json``), nothing is
    written.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if missing).
    nx, ny : int, keyword-only
        Grid size in pixels (columns, rows), each >= 10.
    pixel_size_m : float
        Pixel side in metres (> 0).
    years : iterable of int
        Calendar years of the annual layers (>= 3, strictly increasing).
    crs : str
        Projected CRS of the grid (metres), anything ``pyproj.CRS`` understands.
    origin_xy : (float, float)
        Upper-left corner of the grid in CRS units (m).
    n_veg_plots, n_soil_plots : int
        Number of vegetation-carbon and soil-carbon measurements (rows with a value in
        ``veg_carbon_t_ha`` / ``soil_carbon_t_ha``), including the outside plots;
        ``min(n_veg_plots, n_soil_plots) // 4`` sites carry both.
    plot_years : iterable of int
        The campaign years in which sites are measured; a subset of ``years``.
    revisit_share : float
        Share of the sites (0-1) that are permanent plots, placed by the first campaign's
        land use and remeasured at every campaign, as national forest inventories remeasure
        theirs; every other site is measured once, in a random campaign. The measurement
        counts above stay the numbers of rows (fewer sites when some are remeasured).
    n_outliers : int, optional
        Number of gross-error values (x10) among the measurements; default 0.5 % of them
        (at least 1). At most 5 %.
    n_outside_plots : int
        Sites placed 1-6 pixels outside the grid, for the prep stage to drop.
    seed : int
        Seed of every random component (>= 0).
    region_share : float
        Share of the grid rectangle inside the study polygon (0.25-0.95; default 0.78; China
        in its Albers rectangle: 0.48).
    generation : {"auto", "in_memory", "streaming"}
        ``in_memory`` draws whole-grid arrays (:mod:`.fields`; every existing study's
        numbers); ``streaming`` writes tile by tile in bounded memory with the model of
        :mod:`.streaming` (other numbers, same files and planted structure); ``auto``
        streams grids above :data:`.streaming.STREAMING_THRESHOLD_PX` pixels (6 M).
    block_px : int
        Streaming only: edge of the white-noise and plot-sampling block lattice (part of the
        study, recorded in ``study.json``; 16-4096).
    chunk_px : int
        Streaming only: tile edge of the pass, a multiple of ``block_px``; sets the memory
        used, not the numbers.

    Returns
    -------
    StudyFiles
        Paths of the written files and the grid description.

    Raises
    ------
    ParameterError
        For a grid smaller than 10 x 10, a non-positive pixel size, an unknown or
        geographic CRS, bad years or plot counts.

    Examples
    --------
    A 20 x 10 study over four years in a temporary folder, with its planted truth:

    >>> import tempfile
    >>> from terracarbon.data.synthetic import open_truth
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     files = make_study(Path(folder) / "study", nx=20, ny=10, years=range(2018, 2022),
    ...                        n_veg_plots=40, n_soil_plots=40)
    ...     with open_truth(files) as truth:
    ...         sizes = dict(truth.sizes)
    >>> sizes
    {'year': 4, 'y': 10, 'x': 20}
    """
    args = _validated_arguments(
        out_dir, nx, ny, pixel_size_m, years, crs, origin_xy, n_veg_plots, n_soil_plots,
        plot_years, revisit_share, n_outliers, n_outside_plots, seed,
    )
    args.update(_generation_arguments(nx * ny, region_share, generation, block_px, chunk_px))
    out_dir = Path(out_dir).resolve()  # absolute paths survive a notebook's change of cwd
    files = study_files(out_dir, args)
    if is_complete(files, args):
        log.info("make_study: %s already holds this study; skipped", out_dir)
        return files
    started = time.perf_counter()
    files.manifest.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    remove_stale_rasters(files)
    history = io.history_line(
        "terracarbon.synthetic.make_study", nx=args["nx"], ny=args["ny"],
        pixel_size_m=args["pixel_size_m"], crs=args["crs"], seed=args["seed"],
    )
    grid = Grid(args)
    if "streaming" in args:
        from terracarbon.data.synthetic.streaming import write_streaming_study

        write_streaming_study(files, grid, args, history, chunk_px=chunk_px)
        _write_manifest(files, args, out_dir)
        log.info("make_study: wrote %s (streaming) in %.1f s", out_dir,
                 time.perf_counter() - started)
        return files
    static = static_fields(grid, args["seed"], region_share=args.get("region_share", 0.78))
    _write_static_rasters(files, grid, static, history)

    def write_layers(year: int, layers: dict[str, np.ndarray]) -> None:
        for name, values in layers.items():
            _write_raster(files.raster_path(name, year), values, name, grid, history)

    with _BackgroundWriter(write_layers) as write_year:
        truth = annual_fields(grid, static, args["seed"], write_year)
    plots, plots_truth = make_plots(grid, static, truth, args)
    _write_boundary(files.boundary, static["polygon_lonlat"])
    io.write_table(plots, files.plots)
    io.write_table(plots_truth, files.plots_truth)
    write_truth(files.truth, grid, static, truth, history)
    _write_manifest(files, args, out_dir)
    log.info("make_study: wrote %s in %.1f s", out_dir, time.perf_counter() - started)
    return files


def _write_manifest(files: StudyFiles, args: dict[str, Any], out_dir: Path) -> None:
    """``study.json``, written last: the arguments and the files (a rerun is then skipped)."""
    io.write_json(
        {"arguments": args, "terracarbon_version": __version__,
         "files": [str(p.relative_to(out_dir)) for p in all_paths(files)]},
        files.manifest,
    )


def _generation_arguments(n_pixels: int, region_share: Any, generation: Any, block_px: Any,
                          chunk_px: Any) -> dict[str, Any]:
    """The recorded arguments of the region share and the generation path.

    Only what differs from the in-memory defaults is recorded, so a study made before these
    arguments existed keeps its ``study.json`` (and is not regenerated).
    """
    from terracarbon.data.synthetic.streaming import STREAMING_THRESHOLD_PX, STREAMING_VERSION

    if (isinstance(region_share, bool) or not isinstance(region_share, int | float | np.number)
            or not 0.25 <= float(region_share) <= 0.95):
        raise ParameterError(f"make_study: region_share={region_share!r}; expected the share "
                             "of the grid inside the study polygon, 0.25-0.95 (e.g. 0.78).")
    if generation not in ("auto", "in_memory", "streaming"):
        raise ParameterError(f"make_study: generation={generation!r}; expected 'auto', "
                             "'in_memory' or 'streaming'.")
    for name, value, low in (("block_px", block_px, 16), ("chunk_px", chunk_px, 16)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not (
                low <= value <= 4096):
            raise ParameterError(f"make_study: {name}={value!r}; expected an integer "
                                 f"{low}-4096 (e.g. 256).")
    if chunk_px % block_px:
        raise ParameterError(f"make_study: chunk_px={chunk_px} is not a multiple of "
                             f"block_px={block_px}; expected e.g. chunk_px={4 * block_px}.")
    out: dict[str, Any] = {}
    if float(region_share) != 0.78:
        out["region_share"] = float(region_share)
    if generation == "streaming" or (generation == "auto" and n_pixels > STREAMING_THRESHOLD_PX):
        out["streaming"] = {"version": STREAMING_VERSION, "block_px": int(block_px)}
    return out


def _validated_arguments(
    out_dir: Any,
    nx: Any,
    ny: Any,
    pixel_size_m: Any,
    years: Any,
    crs: Any,
    origin_xy: Any,
    n_veg_plots: Any,
    n_soil_plots: Any,
    plot_years: Any,
    revisit_share: Any,
    n_outliers: Any,
    n_outside_plots: Any,
    seed: Any,
) -> dict[str, Any]:
    """The arguments of :func:`make_study` checked and normalised, as recorded in study.json.

    Raises ParameterError naming the argument, the value and what is expected.
    """

    def whole(name: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ParameterError(
                f"make_study: {name}={value!r}; expected an integer >= {minimum}. "
                f"Pass e.g. {name}={max(minimum, 10)}."
            )
        return int(value)

    if out_dir is None:
        raise ParameterError("make_study: out_dir is None; expected a folder path.")
    nx = whole("nx", nx, 10)
    ny = whole("ny", ny, 10)
    check_pixel_size("make_study", pixel_size_m, example=500.0)
    crs_str = projected_crs("make_study", crs)
    years_t = calendar_years("make_study", years, consecutive=False)
    try:
        plot_years_t = tuple(int(y) for y in plot_years)
    except (TypeError, ValueError):
        raise ParameterError(f"make_study: plot_years={plot_years!r}; expected years.") from None
    if not plot_years_t or not set(plot_years_t) <= set(years_t):
        raise ParameterError(
            f"make_study: plot_years={plot_years_t}; expected a non-empty subset of years "
            f"{years_t[0]}..{years_t[-1]}."
        )
    if (isinstance(revisit_share, bool) or not isinstance(revisit_share, int | float | np.number)
            or not 0.0 <= float(revisit_share) <= 1.0):
        raise ParameterError(
            f"make_study: revisit_share={revisit_share!r}; expected a share between 0 (no "
            "permanent plots) and 1 (every site remeasured at every campaign), e.g. 0.3."
        )
    try:
        ox, oy = (float(v) for v in origin_xy)
    except (TypeError, ValueError):
        raise ParameterError(
            f"make_study: origin_xy={origin_xy!r}; expected (x, y) of the upper-left corner "
            "in metres."
        ) from None
    n_veg = whole("n_veg_plots", n_veg_plots, 0)
    n_soil = whole("n_soil_plots", n_soil_plots, 0)
    n_outside = whole("n_outside_plots", n_outside_plots, 0)
    n_sites = n_veg + n_soil - min(n_veg, n_soil) // 4
    if n_sites - n_outside < 1:
        raise ParameterError(
            f"make_study: n_veg_plots={n_veg}, n_soil_plots={n_soil}, "
            f"n_outside_plots={n_outside} leave no plot inside the region; expected more plots "
            "than n_outside_plots."
        )
    if n_outliers is None:
        n_outliers = max(1, round(0.005 * (n_veg + n_soil)))
    n_outliers = whole("n_outliers", n_outliers, 0)
    if n_outliers > 0.05 * (n_veg + n_soil):
        raise ParameterError(
            f"make_study: n_outliers={n_outliers}; expected at most 5 % of the "
            f"{n_veg + n_soil} measurements, or a 3-sigma filter cannot find them."
        )
    seed = whole("seed", seed, 0)
    return {
        "nx": nx, "ny": ny, "pixel_size_m": float(pixel_size_m), "years": list(years_t),
        "crs": crs_str, "origin_xy": [ox, oy], "n_veg_plots": n_veg, "n_soil_plots": n_soil,
        "plot_years": list(plot_years_t), "revisit_share": float(revisit_share),
        "n_outliers": n_outliers,
        "n_outside_plots": n_outside, "seed": seed, "generator_version": GENERATOR_VERSION,
    }


class _BackgroundWriter:
    """Calls ``write(year, layers)`` in one background thread, so a year's GeoTIFFs are
    compressed and written while the next year is drawn (GDAL runs without the GIL).

    At most one year waits for the writer (memory: two years of layers). Leaving the ``with``
    block waits for every write; the first error of a write is raised there, or at the next
    year handed over. The layers handed over must not be changed afterwards.
    """

    def __init__(self, write) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthetic-writer")
        self._pending = None

    def __enter__(self):
        return self

    def __call__(self, year: int, layers: dict[str, np.ndarray]) -> None:
        self._wait()
        self._pending = self._pool.submit(self._write, year, layers)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._wait()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _write_raster(path: Path, values: np.ndarray, name: str, grid: Grid, history: str) -> None:
    """Write one GeoTIFF band (float32/NaN or int16/0) with units and long_name tags."""
    import rasterio

    kind, units, long_name, _ = LAYERS[name]
    categorical = kind == "categorical"
    data = values.astype(np.int16 if categorical else np.float32)
    profile = {
        "driver": "GTiff", "width": grid.nx, "height": grid.ny, "count": 1,
        "dtype": data.dtype.name, "crs": grid.crs, "transform": grid.transform,
        "nodata": 0 if categorical else float("nan"), "compress": "DEFLATE",
        "zlevel": 1, "predictor": 2 if categorical else 3, "tiled": True,
        "blockxsize": 256, "blockysize": 256,
        "num_threads": "ALL_CPUS",  # tiles compressed in parallel; the file is the same bytes
    }
    with io.atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(units=units, long_name=long_name, history=history)
        dst.update_tags(1, units=units, long_name=long_name)
        dst.set_band_description(1, long_name)
        dst.set_band_unit(1, units)


def _write_static_rasters(files: StudyFiles, grid: Grid, static: dict[str, Any],
                          history: str) -> None:
    """Write the static layers of :data:`LAYERS` (``dem``, ``slope``, soil and vegetation type)."""
    for name in ("dem", "slope", "soil_type", "veg_type"):
        _write_raster(files.raster_path(name), static[name], name, grid, history)


def _write_boundary(path: Path, polygon_lonlat: Any) -> None:
    """Write the study polygon (lon/lat) as a one-feature GeoJSON FeatureCollection."""
    import shapely

    feature = {
        "type": "Feature",
        "properties": {"name": "terracarbon synthetic study area"},
        "geometry": json.loads(shapely.to_geojson(polygon_lonlat)),
    }
    io.write_json({"type": "FeatureCollection", "features": [feature]}, path)
