"""The built-in synthetic study area: ordinary input files with a planted, documented truth.

:func:`make_study` writes, deterministically from ``seed``, a study area shaped like a real
subtropical one (default: 800 x 600 pixels of 500 m in UTM zone 49N, roughly Guangdong,
2000-2021) as the same kinds of files a real study starts from:

* ``rasters/<layer>_<year>.tif`` (annual) and ``rasters/<layer>.tif`` (static) GeoTIFFs,
  DEFLATE-compressed; continuous layers float32 with NaN nodata, categorical int16 with 0
  nodata; ``units`` / ``long_name`` in the tags. Every pixel of the rectangle is written;
  the data-prep stage clips to the boundary.
* ``boundary.geojson``: the study region, one polygon in EPSG:4326 (lon/lat).
* ``plots.csv``: field plots (``plot_id, lon, lat, year, veg_carbon_t_ha,
  soil_carbon_t_ha``), WGS84, with measurement noise, a few gross outliers and a handful of
  plots outside the grid.
* ``truth/truth.nc``: the noise-free carbon densities, zones, land use and region mask
  (:func:`open_truth`); ``truth/plots_truth.csv``: for every plot its pixel, its true
  values and whether it is a planted outlier or outside the grid.
* ``study.json``: the arguments, written last; a rerun with the same arguments is skipped.

:func:`data_params` returns the ``data:`` block of a params file that reads these files, so
synthetic and real studies go through the same data-prep code.

Generative model
----------------
Notation: ``u = (col + 0.5) / nx`` (0 west .. 1 east), ``v = (row + 0.5) / ny`` (0 north ..
1 south); distances ``d`` between normalised positions are measured in units of the
shorter grid side (``hypot(du * nx, dv * ny) / min(nx, ny)``), so the layout scales with
the grid. ``N(s)`` is a smooth Gaussian random field: white noise filtered with a Gaussian
of standard deviation ``s * min(nx, ny)`` pixels, rescaled to mean 0, standard deviation 1
(computed on a coarse grid and bicubically interpolated when ``s`` is large). Each random
component has its own stream ``default_rng([seed, k])``. ``t`` is the calendar year,
``dt = t - years[0]``.

Boundary
    A star-shaped polygon around the grid centre, radius
    ``r(theta) = s * (1 + sum_k a_k cos(k theta + phi_k))`` for ``k = 2..6``, clipped to the
    rectangle; ``s`` is bisected so that the polygon covers 78 % of it. ``region_mask`` is
    True for pixels whose centre lies in the polygon (after the lon/lat round trip).

Zones (``zones``; water pixels and pixels outside the region are 0)
    1 restoration: ``d(u, v; 0.70, 0.42) / 0.14 + 0.2 N(0.04) < 1``.
    2 urbanising: ``r0 <= D < r1`` (minus town pixels) with the noisy city distance
    ``D = d(u, v; 0.40, 0.70) * (1 + 0.15 N(0.05))``, ``r0 = 0.05``, ``r1 = 0.14``.
    3 high-carbon mountain: ``bump + 0.1 N(0.02) > 0.5`` with the mountain bump
    ``bump = exp(-d(u, v; 0.30, 0.31)^2 / (2 * 0.07^2))``.

DEM (m), static
    ``dem = clip(5 + (60 + 480 h) (0.3 + 0.7 (1 - v)) + 1250 exp(-(d_ridge / 0.09)^2)
    (0.75 + 0.25 N(0.1)) + 350 bump - 150 exp(-(d_river / 0.04)^2), 0, 1800)`` where ``h`` is
    fractal noise (octaves of ``N(0.12 / 2^i)`` weighted ``2^-i``, ``0.5 + 0.18 h``, clipped
    to 0..1), ``d_ridge`` the distance to the ridge line from (0.08, 0.45) to (0.62, 0.12)
    and ``d_river`` the distance to the main river; water pixels are set to 2 m.
    ``slope`` (degree) ``= degrees(arctan(|grad dem|))`` with ``np.gradient`` and the pixel
    size.

Water, static
    A main river ``v_r(u) = 0.74 + 0.04 sin(2 pi (1.3 u + phi)) + 0.02 N_1d(u)`` (half-width
    ``max(0.7, 0.004 ny)`` px), a tributary from the north joining it, and lakes
    (``N(0.02) > 2.4`` where ``dem < 120`` m).

Land use (``LANDUSE_CLASSES``), annual
    First year: with ``z = dem / 1800 + 0.12 N(0.05)``, forest where ``z > 0.19`` or in a
    lowland woodland patch (``N_a(0.04) > 0.6``); for ``0.13 < z <= 0.19`` shrub, or
    grassland where ``N_u(0.03) > 0.5``; otherwise cropland, with grassland
    (``N_b > 1.1``) and bare (``N_c > 2.1``) patches. Wetland within 4 river half-widths
    below 30 m where ``N_b > 0``; water as above; built-up in the city core (``D < r0``)
    and in four towns (discs of radius 0.012-0.02 at uniform random positions in 0.2..0.8,
    below 250 m). Zone 3 is forest. Zone 1 starts degraded: cropland, grassland or bare by
    thresholds on ``N(0.03)``.
    Change: 80 % of zone 1 (ranked on ``0.7 N(0.03) + 0.3 white``) is afforested, the pixel
    of rank ``q`` in year index ``1 + floor(q / 0.8 * (n_years - 2))``, to forest where
    ``N(0.03) > -0.5`` (about 70 %), else shrub. In zone 2 a pixel becomes built-up when
    ``D < r0 + (r1 - r0) dt / (t_end - t0)``.

Climate, annual (``T_bar``, ``P_bar`` are the climate normals without yearly anomalies)
    ``temperature = 24 - 0.0065 dem - 0.012 y_km + 0.025 dt + a_t + b_t N(0.25)`` (degC),
    ``y_km`` the distance north of the southern grid edge in km, ``a_t ~ N(0, 0.3)``,
    ``b_t ~ N(0, 0.2)``.
    ``precipitation = clip((1450 + 0.5 dem + 300 v^2 + 100 N(0.15)) (1 + 0.08 alpha_t +
    0.05 beta_t N(0.25)), 1200, 2400)`` (mm yr-1), ``alpha_t, beta_t ~ N(0, 1)`` clipped to
    +-2.5.
    PET (mm yr-1), Thornthwaite with every month at the annual mean temperature ``T`` and
    12-h days: ``I = 12 (T / 5)^1.514``, ``a = 6.75e-7 I^3 - 7.71e-5 I^2 + 1.792e-2 I +
    0.49239``, ``PET = 12 * 16 (10 T / I)^a`` (``T`` floored at 0.5 degC).
    ``aridity = precipitation / PET``.

Vegetation indices, annual (``m`` is the stand maturity: 1, except for afforested pixels
``m = 1 - 0.8 exp(-age / 7)``, ``age = t - t_conversion`` in years)
    ``ndvi = clip(c_ndvi[lu] m^0.6 (1 + 0.12 bump) (1 + 0.05 tanh((P - 1700) / 400))
    (1 + 0.0032 dt veg) + 0.03 r_ndvi + 0.015 alpha_t + 0.02 eps, 0, 0.95)`` with
    ``c_ndvi`` = {forest .80, shrub .68, grassland .55, cropland .58, wetland .50, water .02,
    built-up .18, bare .10}, ``veg`` = 1 for classes 1-5 and white noise ``eps`` (each
    ``eps`` below is a fresh standard-normal draw per pixel and year).
    ``evi = clip(0.62 ndvi - 0.02 + 0.015 eps', 0, 1)``.
    ``npp = clip(100 + 1700 ndvi f_T f_W + 20 eps'', 0, 1600)`` (g C m-2 yr-1),
    ``f_T = exp(-0.5 ((T - 23) / 9)^2)``, ``f_W = min(1, 0.6 + 0.4 aridity / 1.5)``.
    ``rsei = clip(0.55 ndvi / 0.95 + 0.25 min(aridity / 2.5, 1) + 0.2 (1 - dry[lu]) +
    0.02 eps''', 0, 1)``, ``dry`` = 1 for built-up and bare, 0.5 cropland, 0 otherwise.

Static classes
    ``soil_type``: 1 latosolic red earth, 2 red earth, 3 yellow earth, 4 mountain
    yellow-brown earth, 5 paddy soil, 6 alluvial soil, 7 purple soil, 8 water body; bands of
    ``e = dem + 150 N(0.05)`` (< 300 m: 1 if ``v + 0.1 N > 0.62`` else 2; < 800 m: 2 or 3 by
    noise; < 1300 m: 3; else 4), overridden by paddy (first-year cropland below 200 m),
    alluvial (river corridor), purple (``N(0.03) > 1.4``) and water.
    ``veg_type``: 1 evergreen broadleaf forest (forest, dem < 500), 2 coniferous forest
    (forest, 500-1000 m), 3 montane mixed forest (forest, >= 1000 m), 4 shrubland,
    5 grassland, 6 cultivated vegetation, 7 wetland vegetation, 8 non-vegetated; from the
    first year's land use.

Truth carbon density (t C ha-1), annual
    ``veg = B[lu] m^1.5 (1 + 0.6 bump) (P_bar / 1800)^0.3 exp(-0.5 ((T_bar - 20) / 10)^2)
    (1 + 0.008 dt woody) exp(0.12 rho_v + 0.107 r_ndvi + 0.03 eta_v,t)`` with ``B`` =
    {forest 75, shrub 22, grassland 6, cropland 6, wetland 12, water 0, built-up 1, bare 0.5},
    ``woody`` = 1 for forest and shrub, ``rho_v = N(0.03)`` fixed per pixel (carbon variation
    no covariate sees) and white ``eta_v,t``. ``r_ndvi`` is the NDVI residual pattern
    ``N(0.04)`` above: canopy-density variation that carbon follows with the same elasticity
    as along stand maturity (``0.107 = 2.5 x 0.03 / 0.7``). Before generator version 3 the
    truth ignored it, so it acted as pure covariate noise, attenuated the fitted NDVI
    response and made every map underestimate carbon growth (maps of 2000 were ~8 % high).
    ``soil = S[soil_type] L_t (1 + 0.15 dem / 1000) exp(-0.02 (T_bar + 0.025 dt - 20))
    (P_bar / 1800)^0.25 (1 + 0.1 bump) exp(0.10 rho_s + 0.02 eta_s,t)`` with ``S`` =
    {50, 62, 72, 80, 58, 48, 45, 0} by soil type and the slowly responding land-use factor
    ``L_t = F[lu_t] + (L_(t-1) - F[lu_t]) exp(-(t - t_prev) / tau)``, ``L_t0 = F[lu_t0]``,
    ``F`` = {forest 1.15, shrub 1.05, grassland 1.0, cropland 0.85, wetland 1.4, water 0,
    built-up 0.5, bare 0.45}, ``tau`` = 3 yr on built-up pixels (sealing), 15 yr otherwise.
    Both are NaN outside the region in ``truth.nc``.

Plots
    Sites are drawn per plot year, weighted by that year's land use (vegetation sites favour
    forest, soil sites avoid water and built-up), jittered within +-0.4 pixel and kept
    inside the polygon; ``min(n_veg, n_soil) // 4`` sites have both measurements. Each value
    is ``truth * exp(0.1 N(0, 1))``, rounded to 0.001 t C ha-1. ``n_outliers`` values, drawn
    among rows at or above the column median, are recorded x10 (a unit slip), far beyond 3
    standard deviations. ``n_outside_plots`` sites lie 1-6 pixels outside the grid with the
    edge-pixel truth.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from terracarbon import __version__
from terracarbon.data import io
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.conventions import DENSITY_UNITS, NPP_UNITS

from terracarbon.conventions import LANDUSE_CLASSES  # noqa: E402  re-exported

log = logging.getLogger(__name__)


SOIL_TYPES: dict[int, str] = {
    1: "latosolic red earth",
    2: "red earth",
    3: "yellow earth",
    4: "mountain yellow-brown earth",
    5: "paddy soil",
    6: "alluvial soil",
    7: "purple soil",
    8: "water body",
}
"""Soil-type code -> name of the synthetic soil map."""

VEG_TYPES: dict[int, str] = {
    1: "evergreen broadleaf forest",
    2: "coniferous forest",
    3: "montane mixed forest",
    4: "shrubland",
    5: "grassland",
    6: "cultivated vegetation",
    7: "wetland vegetation",
    8: "non-vegetated",
}
"""Vegetation-type code -> name of the synthetic vegetation map."""

ZONES: dict[int, str] = {0: "none", 1: "restoration", 2: "urbanising", 3: "high_carbon_mountain"}
"""Planted-zone code -> name (``zones`` in ``truth.nc``)."""

FOREST, SHRUB, GRASS, CROP, WETLAND, WATER, BUILT, BARE = range(1, 9)

# Per-class constants of the generative model, indexed by land-use code (index 0 unused).
_NDVI_BY_CLASS = np.array([0, 0.80, 0.68, 0.55, 0.58, 0.50, 0.02, 0.18, 0.10])
_VEG_BASE_T_HA = np.array([0, 75.0, 22.0, 6.0, 6.0, 12.0, 0.0, 1.0, 0.5])
_SOIL_LANDUSE_FACTOR = np.array([0, 1.15, 1.05, 1.0, 0.85, 1.4, 0.0, 0.5, 0.45])
_DRYNESS = np.array([0, 0, 0, 0, 0.5, 0, 0, 1.0, 1.0])
_VEGETATED = np.array([0, 1, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
_WOODY = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
_SOIL_BASE_T_HA = np.array([0, 50.0, 62.0, 72.0, 80.0, 58.0, 48.0, 45.0, 0.0])
_VEG_PLOT_WEIGHT = np.array([0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.05, 0.3])
_SOIL_PLOT_WEIGHT = np.array([0, 2.0, 1.5, 1.2, 1.5, 0.5, 0.0, 0.05, 0.5])

_GENERATOR_VERSION = 3
"""Bump when the generative model changes, so cached studies are regenerated."""

_VEG_NDVI_ELASTICITY = 2.5
"""d ln(vegetation carbon) / d ln(NDVI) along stand maturity (``m^1.5`` vs ``m^0.6``)."""

NDVI_GROWTH_PER_YEAR = 0.0032
"""Greening of vegetated pixels per year. Woody carbon grows 0.008 / yr and, across pixels,
carbon scales as NDVI^2.5 (``m^1.5`` vs ``m^0.6``); 0.008 / 2.5 keeps the temporal signal in
NDVI consistent with the cross-sectional one, so a model calibrated at the plot years can
map other years (a real-world assumption of every multi-year carbon map)."""

_REGION_COVER = 0.78
_RESTORATION_CENTRE, _RESTORATION_RADIUS, _AFFORESTED_SHARE = (0.70, 0.42), 0.14, 0.8
_CITY_CENTRE, _CITY_R0, _CITY_R1 = (0.40, 0.70), 0.05, 0.14
_MOUNTAIN_CENTRE, _MOUNTAIN_SIGMA = (0.30, 0.31), 0.07
_RIDGE = ((0.08, 0.45), (0.62, 0.12))

# Streams of the random generator: one per component, so components stay independent.
_STREAMS = {
    name: k
    for k, name in enumerate(
        [
            "boundary", "dem", "river", "landuse", "zones", "towns", "climate", "soil",
            "residual", "plots", "outliers",
        ]
    )
}
_YEAR_STREAM_BASE = 1000

# name -> (kind, units, long_name, annual)
LAYERS: dict[str, tuple[str, str, str, bool]] = {
    "ndvi": ("continuous", "1", "normalised difference vegetation index", True),
    "evi": ("continuous", "1", "enhanced vegetation index", True),
    "npp": ("continuous", NPP_UNITS, "net primary productivity", True),
    "rsei": ("continuous", "1", "remote-sensing ecological index", True),
    "temperature": ("continuous", "degC", "mean annual air temperature", True),
    "precipitation": ("continuous", "mm yr-1", "annual precipitation", True),
    "aridity": ("continuous", "1", "aridity index (precipitation / PET)", True),
    "landuse": ("categorical", "1", "land use", True),
    "dem": ("continuous", "m", "elevation above sea level", False),
    "slope": ("continuous", "degree", "terrain slope", False),
    "soil_type": ("categorical", "1", "soil type", False),
    "veg_type": ("categorical", "1", "vegetation type", False),
}
"""Layer name -> (kind, units, long_name, annual) of the rasters :func:`make_study` writes."""


@dataclass(frozen=True)
class StudyFiles:
    """Paths and grid of a study written by :func:`make_study`.

    Attributes
    ----------
    root : Path
        The output folder.
    raster_dir, boundary, plots, truth, plots_truth, manifest : Path
        ``rasters/`` (GeoTIFFs), ``boundary.geojson`` (EPSG:4326), ``plots.csv``,
        ``truth/truth.nc``, ``truth/plots_truth.csv`` and ``study.json``.
    nx, ny : int
        Grid size in pixels (columns, rows).
    pixel_size_m : float
        Pixel side in metres.
    crs : str
        Projected CRS of the grid (e.g. ``"EPSG:32649"``).
    origin_xy : tuple of float
        Upper-left corner of the grid in CRS units (m).
    years : tuple of int
        Calendar years of the annual layers.
    """

    root: Path
    raster_dir: Path
    boundary: Path
    plots: Path
    truth: Path
    plots_truth: Path
    manifest: Path
    nx: int
    ny: int
    pixel_size_m: float
    crs: str
    origin_xy: tuple[float, float]
    years: tuple[int, ...]

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine geotransform ``(a, b, c, d, e, f)`` as in ``rasterio.Affine``."""
        x0, y0 = self.origin_xy
        return (self.pixel_size_m, 0.0, x0, 0.0, -self.pixel_size_m, y0)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (m), west to east."""
        return self.origin_xy[0] + (np.arange(self.nx) + 0.5) * self.pixel_size_m

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (m), north to south (decreasing)."""
        return self.origin_xy[1] - (np.arange(self.ny) + 0.5) * self.pixel_size_m

    def raster_path(self, layer: str, year: int | None = None) -> Path:
        """Path of ``layer`` (and ``year`` for annual layers)."""
        name = f"{layer}_{year}.tif" if year is not None else f"{layer}.tif"
        return self.raster_dir / name


# --------------------------------------------------------------------------- validation


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
    n_outliers: Any,
    n_outside_plots: Any,
    seed: Any,
) -> dict[str, Any]:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

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
    if not isinstance(pixel_size_m, int | float | np.number) or not (
        math.isfinite(pixel_size_m) and pixel_size_m > 0
    ):
        raise ParameterError(
            f"make_study: pixel_size_m={pixel_size_m!r}; expected a positive number of metres "
            "(e.g. 500.0)."
        )
    try:
        crs_obj = CRS.from_user_input(crs)
    except (CRSError, TypeError) as err:
        raise ParameterError(
            f"make_study: crs={crs!r} is not a known CRS ({err}); expected a projected CRS in "
            "metres such as 'EPSG:32649'."
        ) from None
    if not crs_obj.is_projected:
        raise ParameterError(
            f"make_study: crs={crs!r} is not projected; expected a projected CRS in metres "
            "(the grid has square pixels in metres), e.g. 'EPSG:32649'."
        )
    crs_str = crs_obj.to_string() if crs_obj.to_epsg() is None else f"EPSG:{crs_obj.to_epsg()}"
    try:
        years_t = tuple(int(y) for y in years)
    except (TypeError, ValueError):
        raise ParameterError(
            f"make_study: years={years!r}; expected an iterable of calendar years."
        ) from None
    if len(years_t) < 3 or any(b <= a for a, b in zip(years_t, years_t[1:], strict=False)):
        raise ParameterError(
            f"make_study: years={years_t}; expected at least 3 strictly increasing years, "
            "e.g. range(2000, 2022)."
        )
    try:
        plot_years_t = tuple(int(y) for y in plot_years)
    except (TypeError, ValueError):
        raise ParameterError(f"make_study: plot_years={plot_years!r}; expected years.") from None
    if not plot_years_t or not set(plot_years_t) <= set(years_t):
        raise ParameterError(
            f"make_study: plot_years={plot_years_t}; expected a non-empty subset of years "
            f"{years_t[0]}..{years_t[-1]}."
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
        "plot_years": list(plot_years_t), "n_outliers": n_outliers,
        "n_outside_plots": n_outside, "seed": seed, "generator_version": _GENERATOR_VERSION,
    }


def _study_files(out_dir: Path, args: dict[str, Any]) -> StudyFiles:
    return StudyFiles(
        root=out_dir,
        raster_dir=out_dir / "rasters",
        boundary=out_dir / "boundary.geojson",
        plots=out_dir / "plots.csv",
        truth=out_dir / "truth" / "truth.nc",
        plots_truth=out_dir / "truth" / "plots_truth.csv",
        manifest=out_dir / "study.json",
        nx=args["nx"],
        ny=args["ny"],
        pixel_size_m=args["pixel_size_m"],
        crs=args["crs"],
        origin_xy=tuple(args["origin_xy"]),
        years=tuple(args["years"]),
    )


def _all_paths(files: StudyFiles) -> list[Path]:
    rasters = [
        files.raster_path(name, year)
        for name, (_, _, _, annual) in LAYERS.items()
        for year in (files.years if annual else [None])
    ]
    return [*rasters, files.boundary, files.plots, files.truth, files.plots_truth]


def _is_complete(files: StudyFiles, args: dict[str, Any]) -> bool:
    try:
        recorded = json.loads(files.manifest.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("arguments") == args and all(p.exists() for p in _all_paths(files))


# --------------------------------------------------------------------------- public API


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
    n_outliers: int | None = None,
    n_outside_plots: int = 5,
    seed: int = 42,
) -> StudyFiles:
    """Write the synthetic study area (rasters, boundary, plots, truth) to ``out_dir``.

    The generative model is documented in the module docstring. Output is a pure function
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
        Years in which sites are measured (each site in one of them); a subset of ``years``.
    n_outliers : int, optional
        Number of gross-error values (x10) among the measurements; default 0.5 % of them
        (at least 1). At most 5 %.
    n_outside_plots : int
        Sites placed 1-6 pixels outside the grid, for the prep stage to drop.
    seed : int
        Seed of every random component (>= 0).

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
    >>> files = make_study("study", nx=60, ny=40, years=range(2018, 2022))  # doctest: +SKIP
    >>> truth = open_truth(files.truth)  # doctest: +SKIP
    """
    args = _validated_arguments(
        out_dir, nx, ny, pixel_size_m, years, crs, origin_xy, n_veg_plots, n_soil_plots,
        plot_years, n_outliers, n_outside_plots, seed,
    )
    out_dir = Path(out_dir).resolve()  # absolute paths survive a notebook's change of cwd
    files = _study_files(out_dir, args)
    if _is_complete(files, args):
        log.info("make_study: %s already holds this study; skipped", out_dir)
        return files
    started = time.perf_counter()
    files.manifest.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    _remove_stale_rasters(files)
    history = io.history_line(
        "terracarbon.synthetic.make_study", nx=args["nx"], ny=args["ny"],
        pixel_size_m=args["pixel_size_m"], crs=args["crs"], seed=args["seed"],
    )
    grid = _Grid(args)
    static = _static_fields(grid, args["seed"])
    _write_static_rasters(files, grid, static, history)
    truth = _annual_fields(files, grid, static, args["seed"], history)
    plots, plots_truth = _make_plots(grid, static, truth, args)
    _write_boundary(files.boundary, static["polygon_lonlat"])
    io.write_table(plots, files.plots)
    io.write_table(plots_truth, files.plots_truth)
    _write_truth(files.truth, grid, static, truth, history)
    io.write_json(
        {"arguments": args, "terracarbon_version": __version__,
         "files": [str(p.relative_to(out_dir)) for p in _all_paths(files)]},
        files.manifest,
    )
    log.info("make_study: wrote %s in %.1f s", out_dir, time.perf_counter() - started)
    return files


def data_params(files: StudyFiles) -> dict[str, Any]:
    """The ``data:`` block of a params file that reads the study in ``files``.

    Parameters
    ----------
    files : StudyFiles
        As returned by :func:`make_study`.

    Returns
    -------
    dict
        ``boundary`` (path), ``years`` (list of int), ``layers`` (name -> ``path`` with a
        ``{year}`` placeholder for annual layers, ``kind`` continuous/categorical, ``units``,
        ``long_name``) and ``plots`` (path and column names; coordinates in EPSG:4326).
    """
    if not isinstance(files, StudyFiles):
        raise ParameterError(
            f"data_params: files is a {type(files).__name__}; expected the StudyFiles returned "
            "by make_study."
        )
    layers = {
        name: {
            "path": str(files.raster_dir / (f"{name}_{{year}}.tif" if annual else f"{name}.tif")),
            "kind": kind,
            "units": units,
            "long_name": long_name,
        }
        for name, (kind, units, long_name, annual) in LAYERS.items()
    }
    return {
        "boundary": str(files.boundary),
        "years": list(files.years),
        "layers": layers,
        "plots": {
            "path": str(files.plots),
            "x_column": "lon",
            "y_column": "lat",
            "crs": "EPSG:4326",
            "year_column": "year",
            "id_column": "plot_id",
            "veg_column": "veg_carbon_t_ha",
            "soil_column": "soil_carbon_t_ha",
        },
    }


def open_truth(path: str | Path | StudyFiles) -> xr.Dataset:
    """Open the planted truth of a synthetic study.

    Parameters
    ----------
    path : str, Path or StudyFiles
        ``truth.nc`` (or the StudyFiles whose ``truth`` it is).

    Returns
    -------
    xarray.Dataset
        On the raster grid (``x``, ``y`` pixel centres, CRS attached with rioxarray):
        ``veg_carbon_density``, ``soil_carbon_density`` (year, y, x; t C ha-1; NaN outside
        the region), ``landuse`` (year, y, x; codes of ``LANDUSE_CLASSES``, 0 outside),
        ``zones`` (y, x; 0 none, 1 restoration, 2 urbanising, 3 high-carbon mountain) and
        ``region_mask`` (y, x; bool).

    Raises
    ------
    InputDataError
        If the file does not exist or lacks a truth variable.
    """
    if isinstance(path, StudyFiles):
        path = path.truth
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"open_truth: {path} not found; expected the truth.nc written by "
            "synthetic.make_study (StudyFiles.truth)."
        )
    import rioxarray  # noqa: F401  registers the .rio accessor

    ds = xr.open_dataset(path, engine=_netcdf_engine(), decode_coords="all")
    if ds.rio.crs is not None:
        ds = ds.rio.write_crs(ds.rio.crs)
    required = ["veg_carbon_density", "soil_carbon_density", "zones", "landuse", "region_mask"]
    missing = [v for v in required if v not in ds]
    if missing:
        raise InputDataError(
            f"open_truth: {path} lacks {missing}; expected a truth.nc written by "
            "synthetic.make_study. Regenerate the study."
        )
    return ds


# --------------------------------------------------------------------------- grid & noise


class _Grid:
    """Pixel geometry and normalised coordinates of the study grid."""

    def __init__(self, args: dict[str, Any]):
        self.nx, self.ny = args["nx"], args["ny"]
        self.shape = (self.ny, self.nx)
        self.pixel_size = args["pixel_size_m"]
        self.crs = args["crs"]
        self.x0, self.y0 = args["origin_xy"]
        self.years = np.asarray(args["years"])
        self.side = min(self.nx, self.ny)
        self.x = self.x0 + (np.arange(self.nx) + 0.5) * self.pixel_size
        self.y = self.y0 - (np.arange(self.ny) + 0.5) * self.pixel_size
        self.u = ((np.arange(self.nx) + 0.5) / self.nx)[None, :]
        self.v = ((np.arange(self.ny) + 0.5) / self.ny)[:, None]

    @property
    def transform(self):  # noqa: ANN201  rasterio.Affine
        from rasterio.transform import Affine

        return Affine(self.pixel_size, 0.0, self.x0, 0.0, -self.pixel_size, self.y0)

    def distance(self, centre: tuple[float, float]) -> np.ndarray:
        """Distance of every pixel to ``centre`` (u, v), in units of the shorter side."""
        du = (self.u - centre[0]) * self.nx
        dv = (self.v - centre[1]) * self.ny
        return np.hypot(du, dv) / self.side


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian random field, mean 0, std 1, correlation length ``sigma_px`` pixels.

    Large correlation lengths are filtered on a coarse grid and interpolated bicubically:
    the same field statistics at a fraction of the cost of a wide direct filter.
    """
    factor = max(1.0, sigma_px / 3.0)
    coarse_shape = tuple(int(math.ceil(n / factor)) + 4 for n in shape)
    coarse = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape), sigma_px / factor, mode="wrap"
    )
    if factor > 1.0:
        rows = (np.arange(shape[0]) + 0.5) / factor + 1.5
        cols = (np.arange(shape[1]) + 0.5) / factor + 1.5
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        field = ndimage.map_coordinates(coarse, [rr, cc], order=3, mode="nearest")
    else:
        field = coarse[2 : 2 + shape[0], 2 : 2 + shape[1]]
    field = field - field.mean()
    return field / (field.std() or 1.0)


def _noise(grid: _Grid, rng: np.random.Generator, scale: float) -> np.ndarray:
    """``N(scale)``: a smooth field with correlation length ``scale`` x the shorter side."""
    return _smooth_noise(rng, grid.shape, max(scale * grid.side, 0.5))


# --------------------------------------------------------------------------- static fields


def _static_fields(grid: _Grid, seed: int) -> dict[str, Any]:
    polygon_lonlat, polygon_xy, region = _region(grid, _rng(seed, _STREAMS["boundary"]))
    rng_zone = _rng(seed, _STREAMS["zones"])
    bump = np.exp(-grid.distance(_MOUNTAIN_CENTRE) ** 2 / (2 * _MOUNTAIN_SIGMA**2))
    mountain = bump + 0.1 * _noise(grid, rng_zone, 0.02) > 0.5
    restoration = (
        grid.distance(_RESTORATION_CENTRE) / _RESTORATION_RADIUS
        + 0.2 * _noise(grid, rng_zone, 0.04)
        < 1.0
    )
    city_distance = grid.distance(_CITY_CENTRE) * (1.0 + 0.15 * _noise(grid, rng_zone, 0.05))

    water, river_distance = _water(grid, _rng(seed, _STREAMS["river"]))
    dem = _dem(grid, _rng(seed, _STREAMS["dem"]), bump, river_distance)
    lakes = (_noise(grid, _rng(seed, _STREAMS["river"] + 100), 0.02) > 2.4) & (dem < 120)
    water = water | lakes
    dem = np.where(water, 2.0, dem)
    gy, gx = np.gradient(dem, grid.pixel_size)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))

    restoration &= ~water & ~mountain
    urbanising = (city_distance >= _CITY_R0) & (city_distance < _CITY_R1) & ~water
    urbanising &= ~restoration & ~mountain
    zones = np.zeros(grid.shape, np.int8)
    zones[restoration] = 1
    zones[urbanising] = 2
    zones[mountain & ~water] = 3
    zones[~region] = 0

    landuse0, afforest_index, afforest_class = _initial_landuse(
        grid, _rng(seed, _STREAMS["landuse"]), dem, river_distance, water, mountain,
        restoration, city_distance, _rng(seed, _STREAMS["towns"]),
    )
    zones[(zones == 2) & (landuse0 == BUILT)] = 0  # towns inside the ring do not change
    soil_type = _soil_type(grid, _rng(seed, _STREAMS["soil"]), dem, landuse0, river_distance, water)
    rng_res = _rng(seed, _STREAMS["residual"])
    return {
        "polygon_lonlat": polygon_lonlat,
        "polygon_xy": polygon_xy,
        "region": region,
        "bump": bump,
        "zones": zones,
        "city_distance": city_distance,
        "urbanising": urbanising,
        "water": water,
        "dem": dem,
        "slope": slope,
        "landuse0": landuse0,
        "afforest_index": afforest_index,
        "afforest_class": afforest_class,
        "soil_type": soil_type,
        "veg_type": _veg_type(landuse0, dem),
        "rho_v": _noise(grid, rng_res, 0.03),
        "rho_s": _noise(grid, rng_res, 0.03),
        "ndvi_residual": _noise(grid, rng_res, 0.04),
    }


def _region(grid: _Grid, rng: np.random.Generator) -> tuple[Any, Any, np.ndarray]:
    """The study polygon (lon/lat and grid CRS) and its pixel-centre mask."""
    import shapely
    from pyproj import Transformer
    from rasterio import features

    theta = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    k = np.arange(2, 7)[:, None]
    amplitude = rng.uniform(0.03, 0.08, size=(5, 1)) / np.sqrt(k / 2)
    phase = rng.uniform(0.0, 2 * np.pi, size=(5, 1))
    wobble = 1.0 + (amplitude * np.cos(k * theta + phase)).sum(axis=0)
    width, height = grid.nx * grid.pixel_size, grid.ny * grid.pixel_size
    cx, cy = grid.x0 + width / 2, grid.y0 - height / 2
    inset = 0.25 * grid.pixel_size
    frame = shapely.box(grid.x0 + inset, grid.y0 - height + inset, grid.x0 + width - inset,
                        grid.y0 - inset)

    def polygon(scale: float) -> shapely.Polygon:
        r = scale * wobble
        ring = np.column_stack([cx + 0.5 * width * r * np.cos(theta),
                                cy + 0.5 * height * r * np.sin(theta)])
        return shapely.Polygon(ring).intersection(frame)

    lo, hi = 0.5, 1.6
    for _ in range(40):  # bisection on the radius scale to reach the target cover
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if polygon(mid).area < _REGION_COVER * width * height else (lo, mid)
    poly_xy = shapely.geometry.polygon.orient(polygon(0.5 * (lo + hi)), 1.0)
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    to_xy = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    xs, ys = np.asarray(poly_xy.exterior.coords).T
    lon, lat = to_lonlat.transform(xs, ys)
    ring_lonlat = np.round(np.column_stack([lon, lat]), 7)
    poly_lonlat = shapely.Polygon(ring_lonlat)
    if not poly_lonlat.is_valid:
        poly_lonlat = shapely.make_valid(poly_lonlat)
    # The mask comes from the lon/lat polygon projected back, as a reader would compute it.
    bx, by = to_xy.transform(ring_lonlat[:, 0], ring_lonlat[:, 1])
    poly_back = shapely.Polygon(np.column_stack([bx, by]))
    region = features.rasterize(
        [(poly_back, 1)], out_shape=grid.shape, transform=grid.transform, fill=0,
        all_touched=False, dtype="uint8",
    ).astype(bool)
    return poly_lonlat, poly_back, region


def _water(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Main river and a northern tributary; returns the water mask and distance to the river."""
    u = grid.u[0]
    wiggle = ndimage.gaussian_filter1d(rng.standard_normal(grid.nx), max(0.05 * grid.nx, 1))
    wiggle /= wiggle.std() or 1.0
    phase = rng.uniform(0, 1)
    v_river = 0.74 + 0.04 * np.sin(2 * np.pi * (1.3 * u + phase)) + 0.02 * wiggle
    half_width_px = max(0.7, 0.004 * grid.ny)
    river_distance = np.abs(grid.v - v_river[None, :]) * grid.ny / grid.side  # in side units
    water = np.abs(grid.v - v_river[None, :]) * grid.ny < half_width_px
    v = grid.v[:, 0]
    u_trib = 0.55 + 0.03 * np.sin(2 * np.pi * (2.0 * v + phase))
    col_of_river = np.clip((u_trib * grid.nx).astype(int), 0, grid.nx - 1)
    joins = v_river[col_of_river]
    tributary = (np.abs(grid.u - u_trib[:, None]) * grid.nx < 0.6 * half_width_px) & (
        (v > 0.35) & (v < joins)
    )[:, None]
    return water | tributary, river_distance


def _dem(grid: _Grid, rng: np.random.Generator, bump: np.ndarray,
         river_distance: np.ndarray) -> np.ndarray:
    hills = sum(2.0**-i * _noise(grid, rng, 0.12 / 2**i) for i in range(4))
    hills = np.clip(0.5 + 0.18 * hills / hills.std(), 0.0, 1.0)
    (u1, v1), (u2, v2) = _RIDGE
    # Distance to the ridge segment, in units of the shorter side.
    px, py = (grid.u - u1) * grid.nx, (grid.v - v1) * grid.ny
    dx, dy = (u2 - u1) * grid.nx, (v2 - v1) * grid.ny
    along = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    ridge_distance = np.hypot(px - along * dx, py - along * dy) / grid.side
    ridge_height = 0.75 + 0.25 * _noise(grid, rng, 0.1)
    ridge = 1250.0 * np.exp(-((ridge_distance / 0.09) ** 2)) * ridge_height
    dem = (
        5.0
        + (60.0 + 480.0 * hills) * (0.3 + 0.7 * (1.0 - grid.v))
        + ridge
        + 350.0 * bump
        - 150.0 * np.exp(-((river_distance / 0.04) ** 2))
    )
    return np.clip(dem, 0.0, 1800.0)


def _initial_landuse(
    grid: _Grid, rng: np.random.Generator, dem: np.ndarray, river_distance: np.ndarray,
    water: np.ndarray, mountain: np.ndarray, restoration: np.ndarray,
    city_distance: np.ndarray, rng_towns: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-year land use, plus the afforestation year index and class in zone 1."""
    z = dem / 1800.0 + 0.12 * _noise(grid, rng, 0.05)
    woodland, grass_patch, bare_patch, upland = (
        _noise(grid, rng, scale) for scale in (0.04, 0.03, 0.02, 0.03)
    )
    lu = np.full(grid.shape, CROP, np.int16)
    lu[grass_patch > 1.1] = GRASS
    lu[bare_patch > 2.1] = BARE
    lu[woodland > 0.6] = FOREST
    lu[(z > 0.13) & (upland > 0.5)] = GRASS
    lu[(z > 0.13) & (upland <= 0.5)] = SHRUB
    lu[z > 0.19] = FOREST
    lu[(river_distance * grid.side < 4 * max(0.7, 0.004 * grid.ny)) & (dem < 30)
       & (grass_patch > 0)] = WETLAND
    lu[mountain] = FOREST

    degraded = _noise(grid, rng, 0.03)
    lu[restoration] = np.where(degraded[restoration] > 0.3, GRASS,
                               np.where(degraded[restoration] < -0.7, BARE, CROP))
    rank_field = 0.7 * _noise(grid, rng, 0.03) + 0.3 * rng.standard_normal(grid.shape)
    q = np.zeros(grid.shape)
    idx = np.flatnonzero(restoration)
    q.flat[idx] = (np.argsort(np.argsort(rank_field.flat[idx])) + 0.5) / max(idx.size, 1)
    n_years = grid.years.size
    afforest_index = np.full(grid.shape, -1, np.int32)  # year index of conversion, -1 never
    converts = restoration & (q < _AFFORESTED_SHARE)
    afforest_index[converts] = 1 + np.floor(
        q[converts] / _AFFORESTED_SHARE * (n_years - 2)
    ).astype(np.int32)
    afforest_class = np.where(_noise(grid, rng, 0.03) > -0.5, FOREST, SHRUB).astype(np.int16)

    lu[city_distance < _CITY_R0] = BUILT
    centres = rng_towns.uniform(0.2, 0.8, size=(4, 2))
    radii = rng_towns.uniform(0.012, 0.02, size=4)
    for (cu, cv), radius in zip(centres, radii, strict=True):  # four towns, not pixels
        town = grid.distance((cu, cv)) < radius
        lu[town & ~mountain & ~restoration & (dem < 250)] = BUILT
    lu[water] = WATER
    return lu, afforest_index, afforest_class


def _soil_type(grid: _Grid, rng: np.random.Generator, dem: np.ndarray, landuse0: np.ndarray,
               river_distance: np.ndarray, water: np.ndarray) -> np.ndarray:
    e = dem + 150.0 * _noise(grid, rng, 0.05)
    south = grid.v + 0.1 * _noise(grid, rng, 0.05) > 0.62
    split = _noise(grid, rng, 0.04) > 0
    soil = np.where(e < 300, np.where(south, 1, 2),
                    np.where(e < 800, np.where(split, 2, 3), np.where(e < 1300, 3, 4)))
    soil = soil.astype(np.int16)
    soil[(landuse0 == CROP) & (dem < 200)] = 5
    soil[river_distance * grid.side < 6 * max(0.7, 0.004 * grid.ny)] = 6
    soil[_noise(grid, rng, 0.03) > 1.4] = 7
    soil[water] = 8
    return soil


def _veg_type(landuse0: np.ndarray, dem: np.ndarray) -> np.ndarray:
    by_class = np.array([0, 0, 4, 5, 6, 7, 8, 8, 8], np.int16)  # non-forest classes
    veg = by_class[landuse0]
    forest = landuse0 == FOREST
    veg[forest] = np.where(dem[forest] < 500, 1, np.where(dem[forest] < 1000, 2, 3))
    return veg


# --------------------------------------------------------------------------- annual fields


def _thornthwaite_pet(temperature: np.ndarray) -> np.ndarray:
    """Annual PET (mm yr-1): Thornthwaite with every month at the annual mean, 12-h days."""
    t = np.maximum(temperature, 0.5)
    heat = 12.0 * (t / 5.0) ** 1.514
    a = 6.75e-7 * heat**3 - 7.71e-5 * heat**2 + 1.792e-2 * heat + 0.49239
    return 12.0 * 16.0 * (10.0 * t / heat) ** a


def _annual_fields(files: StudyFiles, grid: _Grid, static: dict[str, Any], seed: int,
                   history: str) -> dict[str, np.ndarray]:
    """Climate, indices, land use and truth per year; rasters are written as they come."""
    years = grid.years
    n = years.size
    rng = _rng(seed, _STREAMS["climate"])
    t_pattern = _noise(grid, rng, 0.25)
    p_pattern = _noise(grid, rng, 0.25)
    p_noise = _noise(grid, rng, 0.15)
    a_t = rng.normal(0.0, 0.3, n)
    b_t = rng.normal(0.0, 0.2, n)
    alpha_t = np.clip(rng.normal(0.0, 1.0, n), -2.5, 2.5)
    beta_t = np.clip(rng.normal(0.0, 1.0, n), -2.5, 2.5)

    dem, bump = static["dem"], static["bump"]
    y_km = (1.0 - grid.v) * grid.ny * grid.pixel_size / 1000.0  # km north of the south edge
    t_bar = 24.0 - 0.0065 * dem - 0.012 * y_km
    p_bar = 1450.0 + 0.5 * dem + 300.0 * grid.v**2 + 100.0 * p_noise

    veg_static = (
        (1.0 + 0.6 * bump)
        * (p_bar / 1800.0) ** 0.3
        * np.exp(-0.5 * ((t_bar - 20.0) / 10.0) ** 2)
        * np.exp(0.12 * static["rho_v"])
        * np.exp(_VEG_NDVI_ELASTICITY * 0.03 / 0.7 * static["ndvi_residual"])
    )
    soil_static = (
        _SOIL_BASE_T_HA[static["soil_type"]]
        * (1.0 + 0.15 * dem / 1000.0)
        * (p_bar / 1800.0) ** 0.25
        * (1.0 + 0.1 * bump)
        * np.exp(0.10 * static["rho_s"])
    )

    shape = (n, *grid.shape)
    veg_truth = np.empty(shape, np.float32)
    soil_truth = np.empty(shape, np.float32)
    landuse_all = np.empty(shape, np.int16)
    soil_factor = None
    for k, year in enumerate(years):  # loop over years; every step is whole-grid NumPy
        rng_y = _rng(seed, _YEAR_STREAM_BASE + k)
        dt = float(year - years[0])
        lu, maturity = _landuse_in_year(grid, static, k, dt)
        temperature = t_bar + 0.025 * dt + a_t[k] + b_t[k] * t_pattern
        precipitation = np.clip(p_bar * (1.0 + 0.08 * alpha_t[k] + 0.05 * beta_t[k] * p_pattern),
                                1200.0, 2400.0)
        aridity = precipitation / _thornthwaite_pet(temperature)
        ndvi = np.clip(
            _NDVI_BY_CLASS[lu] * maturity**0.6 * (1.0 + 0.12 * bump)
            * (1.0 + 0.05 * np.tanh((precipitation - 1700.0) / 400.0))
            * (1.0 + NDVI_GROWTH_PER_YEAR * dt * _VEGETATED[lu])
            + 0.03 * static["ndvi_residual"] + 0.015 * alpha_t[k]
            + 0.02 * rng_y.standard_normal(grid.shape),
            0.0, 0.95,
        )
        evi = np.clip(0.62 * ndvi - 0.02 + 0.015 * rng_y.standard_normal(grid.shape), 0.0, 1.0)
        f_t = np.exp(-0.5 * ((temperature - 23.0) / 9.0) ** 2)
        f_w = np.minimum(1.0, 0.6 + 0.4 * aridity / 1.5)
        npp = np.clip(100.0 + 1700.0 * ndvi * f_t * f_w + 20.0 * rng_y.standard_normal(grid.shape),
                      0.0, 1600.0)
        rsei = np.clip(
            0.55 * ndvi / 0.95 + 0.25 * np.minimum(aridity / 2.5, 1.0) + 0.2 * (1.0 - _DRYNESS[lu])
            + 0.02 * rng_y.standard_normal(grid.shape),
            0.0, 1.0,
        )
        veg_truth[k] = (
            _VEG_BASE_T_HA[lu] * maturity**1.5 * veg_static
            * (1.0 + 0.008 * dt * _WOODY[lu])
            * np.exp(0.03 * rng_y.standard_normal(grid.shape))
        )
        target = _SOIL_LANDUSE_FACTOR[lu]
        if soil_factor is None:
            soil_factor = target
        else:
            tau = np.where(lu == BUILT, 3.0, 15.0)
            gap = float(year - years[k - 1])
            soil_factor = target + (soil_factor - target) * np.exp(-gap / tau)
        soil_truth[k] = (
            soil_static * soil_factor * np.exp(-0.02 * (t_bar + 0.025 * dt - 20.0))
            * np.exp(0.02 * rng_y.standard_normal(grid.shape))
        )
        landuse_all[k] = lu
        layers = {"ndvi": ndvi, "evi": evi, "npp": npp, "rsei": rsei,
                  "temperature": temperature, "precipitation": precipitation,
                  "aridity": aridity, "landuse": lu}
        for name, values in layers.items():
            _write_raster(files.raster_path(name, int(year)), values, name, grid, history)
    return {"veg": veg_truth, "soil": soil_truth, "landuse": landuse_all}


def _landuse_in_year(grid: _Grid, static: dict[str, Any], k: int,
                     dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Land use and stand maturity (0.2..1) in year index ``k``."""
    lu = static["landuse0"].copy()
    conv = static["afforest_index"]
    converted = (conv >= 0) & (conv <= k)
    lu[converted] = static["afforest_class"][converted]
    maturity = np.ones(grid.shape)
    age = (grid.years[k] - grid.years[np.maximum(conv, 0)]).astype(float)
    maturity[converted] = 1.0 - 0.8 * np.exp(-age[converted] / 7.0)
    span = float(grid.years[-1] - grid.years[0])
    radius = _CITY_R0 + (_CITY_R1 - _CITY_R0) * dt / span
    lu[static["urbanising"] & (static["city_distance"] < radius)] = BUILT
    return lu, maturity


# --------------------------------------------------------------------------- plots


def _make_plots(grid: _Grid, static: dict[str, Any], truth: dict[str, np.ndarray],
                args: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    import shapely
    from pyproj import Transformer

    rng = _rng(args["seed"], _STREAMS["plots"])
    n_veg, n_soil = args["n_veg_plots"], args["n_soil_plots"]
    n_both = min(n_veg, n_soil) // 4
    n_sites = n_veg + n_soil - n_both
    # Site kinds: the first n_both have both, then veg only, then soil only.
    has_veg = np.zeros(n_sites, bool)
    has_soil = np.zeros(n_sites, bool)
    has_veg[: n_veg] = True
    has_soil[: n_both] = True
    has_soil[n_veg:] = True
    outside = np.zeros(n_sites, bool)
    outside[rng.choice(n_sites, args["n_outside_plots"], replace=False)] = True
    plot_years = np.asarray(args["plot_years"])
    site_year = rng.choice(plot_years, n_sites)
    year_index = np.searchsorted(grid.years, site_year)

    rows = np.zeros(n_sites, np.int64)
    cols = np.zeros(n_sites, np.int64)
    inside_idx = np.flatnonzero(static["region"].ravel())
    for k in np.unique(year_index):  # one draw per plot year and site kind
        lu_k = truth["landuse"][k].ravel()[inside_idx]
        for weights, kind in ((_VEG_PLOT_WEIGHT, has_veg), (_SOIL_PLOT_WEIGHT, ~has_veg)):
            sel = np.flatnonzero((year_index == k) & kind & ~outside)
            if sel.size == 0:
                continue
            p = weights[lu_k]
            if p.sum() == 0:
                p = np.ones_like(p)
            pick = rng.choice(inside_idx, sel.size, p=p / p.sum())
            rows[sel], cols[sel] = np.divmod(pick, grid.nx)
    jitter = rng.uniform(-0.4, 0.4, size=(n_sites, 2))
    x = grid.x0 + (cols + 0.5 + jitter[:, 0]) * grid.pixel_size
    y = grid.y0 - (rows + 0.5 + jitter[:, 1]) * grid.pixel_size
    # A jittered point in an edge pixel can leave the polygon: fall back to the pixel centre.
    centre_x = grid.x0 + (cols + 0.5) * grid.pixel_size
    centre_y = grid.y0 - (rows + 0.5) * grid.pixel_size
    stray = ~outside & ~shapely.contains_xy(static["polygon_xy"], x, y)
    x[stray], y[stray] = centre_x[stray], centre_y[stray]

    x_out, y_out, r_out, c_out = _outside_positions(grid, rng, int(outside.sum()))
    x[outside], y[outside], rows[outside], cols[outside] = x_out, y_out, r_out, c_out

    veg_true = truth["veg"][year_index, rows, cols].astype(float)
    soil_true = truth["soil"][year_index, rows, cols].astype(float)
    veg = np.where(has_veg, veg_true * np.exp(0.1 * rng.standard_normal(n_sites)), np.nan)
    soil = np.where(has_soil, soil_true * np.exp(0.1 * rng.standard_normal(n_sites)), np.nan)
    veg_out, soil_out = _plant_outliers(
        _rng(args["seed"], _STREAMS["outliers"]), veg, soil, ~outside, args["n_outliers"]
    )

    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    plot_id = np.array([f"P{i:05d}" for i in range(1, n_sites + 1)])
    plots = pd.DataFrame({
        "plot_id": plot_id,
        "lon": np.round(lon, 7),
        "lat": np.round(lat, 7),
        "year": site_year.astype(int),
        "veg_carbon_t_ha": np.round(np.where(veg_out[1], veg_out[0], veg), 3),
        "soil_carbon_t_ha": np.round(np.where(soil_out[1], soil_out[0], soil), 3),
    })
    plots_truth = pd.DataFrame({
        "plot_id": plot_id,
        "year": site_year.astype(int),
        "x": x,
        "y": y,
        "row": np.where(outside, -1, rows),
        "col": np.where(outside, -1, cols),
        "outside_grid": outside,
        "veg_truth_t_ha": np.where(has_veg, veg_true, np.nan),
        "soil_truth_t_ha": np.where(has_soil, soil_true, np.nan),
        "veg_measured_t_ha": veg,
        "soil_measured_t_ha": soil,
        "veg_outlier": veg_out[1],
        "soil_outlier": soil_out[1],
    })
    return plots, plots_truth


def _outside_positions(grid: _Grid, rng: np.random.Generator,
                       n: int) -> tuple[np.ndarray, ...]:
    """Points 1-6 pixels beyond a random grid edge, and the edge pixel they are read from."""
    side = rng.integers(0, 4, n)
    along = rng.uniform(0.05, 0.95, n)
    beyond = rng.uniform(1.0, 6.0, n)
    col_f = np.select([side == 0, side == 1], [-beyond, grid.nx + beyond], along * grid.nx)
    row_f = np.select([side == 2, side == 3], [-beyond, grid.ny + beyond], along * grid.ny)
    x = grid.x0 + col_f * grid.pixel_size
    y = grid.y0 - row_f * grid.pixel_size
    rows = np.clip(np.floor(row_f), 0, grid.ny - 1).astype(np.int64)
    cols = np.clip(np.floor(col_f), 0, grid.nx - 1).astype(np.int64)
    return x, y, rows, cols


def _plant_outliers(
    rng: np.random.Generator, veg: np.ndarray, soil: np.ndarray, eligible: np.ndarray,
    n_outliers: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Gross errors: x10 on values at or above the column median (a unit slip).

    Returns ``(recorded, is_outlier)`` for vegetation and for soil; ``recorded`` is the
    x10 value, to be used only where ``is_outlier``.
    """
    n_veg_out = round(n_outliers * np.isfinite(veg).sum() / max(np.isfinite(veg).sum()
                                                                + np.isfinite(soil).sum(), 1))
    result = []
    for values, count in ((veg, n_veg_out), (soil, n_outliers - n_veg_out)):
        flag = np.zeros(values.size, bool)
        finite = np.isfinite(values)
        if count > 0 and finite.any():
            candidates = np.flatnonzero(eligible & finite & (values >= np.median(values[finite]))
                                        & (values > 0))
            chosen = rng.choice(candidates, min(count, candidates.size), replace=False)
            flag[chosen] = True
        result.append((values * 10.0, flag))
    return result[0], result[1]


# --------------------------------------------------------------------------- writers


def _remove_stale_rasters(files: StudyFiles) -> None:
    if not files.raster_dir.is_dir():
        return
    for path in files.raster_dir.glob("*.tif"):
        stem = path.stem
        if stem in LAYERS or stem.rsplit("_", 1)[0] in LAYERS:
            path.unlink()


def _write_raster(path: Path, values: np.ndarray, name: str, grid: _Grid, history: str) -> None:
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
    }
    with io.atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(units=units, long_name=long_name, history=history)
        dst.update_tags(1, units=units, long_name=long_name)
        dst.set_band_description(1, long_name)
        dst.set_band_unit(1, units)


def _write_static_rasters(files: StudyFiles, grid: _Grid, static: dict[str, Any],
                          history: str) -> None:
    for name in ("dem", "slope", "soil_type", "veg_type"):
        _write_raster(files.raster_path(name), static[name], name, grid, history)


def _write_boundary(path: Path, polygon_lonlat: Any) -> None:
    import shapely

    feature = {
        "type": "Feature",
        "properties": {"name": "terracarbon synthetic study area"},
        "geometry": json.loads(shapely.to_geojson(polygon_lonlat)),
    }
    io.write_json({"type": "FeatureCollection", "features": [feature]}, path)


def _write_truth(path: Path, grid: _Grid, static: dict[str, Any],
                 truth: dict[str, np.ndarray], history: str) -> None:
    import rioxarray  # noqa: F401  registers the .rio accessor

    region = static["region"]
    coords = {"year": grid.years.astype(np.int64), "y": grid.y, "x": grid.x}
    density_attrs = {"units": DENSITY_UNITS, "history": history}
    ds = xr.Dataset(
        {
            "veg_carbon_density": (("year", "y", "x"),
                                   np.where(region, truth["veg"], np.float32(np.nan)),
                                   {**density_attrs,
                                    "long_name": "true vegetation carbon density"}),
            "soil_carbon_density": (("year", "y", "x"),
                                    np.where(region, truth["soil"], np.float32(np.nan)),
                                    {**density_attrs,
                                     "long_name": "true soil organic carbon density 0-30 cm"}),
            "landuse": (("year", "y", "x"), np.where(region, truth["landuse"], 0).astype(np.int16),
                        {"units": "1", "long_name": "land use",
                         "flag_values": np.arange(1, 9, dtype=np.int16),
                         "flag_meanings": " ".join(v.replace("-", "_")
                                                   for v in LANDUSE_CLASSES.values()),
                         "history": history}),
            "zones": (("y", "x"), static["zones"],
                      {"units": "1", "long_name": "planted change zones",
                       "flag_values": np.arange(4, dtype=np.int8),
                       "flag_meanings": " ".join(ZONES.values()), "history": history}),
            "region_mask": (("y", "x"), region,
                            {"units": "1", "long_name": "inside the study boundary"}),
        },
        coords=coords,
        attrs={"title": "terracarbon synthetic study: planted truth", "history": history},
    )
    ds["year"].attrs.update(units="1", long_name="calendar year")
    ds["x"].attrs.update(units="m", long_name="x coordinate of pixel centre")
    ds["y"].attrs.update(units="m", long_name="y coordinate of pixel centre")
    ds = ds.rio.write_crs(grid.crs)
    encoding = {
        name: {"zlib": True, "complevel": 1, "chunksizes": (1, grid.ny, grid.nx)}
        for name in ("veg_carbon_density", "soil_carbon_density", "landuse")
    }
    io.require_units(ds, where=path.name)
    with io.atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=_netcdf_engine(), encoding=encoding)


def _netcdf_engine() -> str:
    """``h5netcdf`` (the project default) when h5py is installed, else ``netcdf4``.

    Both write and read the same NetCDF-4/HDF5 files.
    """
    import importlib.util

    return "h5netcdf" if importlib.util.find_spec("h5py") is not None else "netcdf4"
