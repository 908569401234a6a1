"""A synthetic carbon-FLUX study: monthly climate and NDVI rasters, flux towers, planted truth.

:func:`make_flux_study` writes, deterministically from ``seed``, the input files a real
monthly-flux study (towers + gridded drivers -> monthly NEE maps -> annual sink and its trend)
starts from, on the landscape of the stock synthetic study: the same boundary, planted zones
(1 restoration, 2 urbanising, 3 high-carbon mountain), DEM, land use and land-use dynamics
(drawn by :func:`~terracarbon.data.synthetic.fields.static_fields` and
:func:`~terracarbon.data.synthetic.fields.annual_fields` with the same grid and seed). Default:
160 x 120 pixels of 2 km in UTM 49N (320 x 240 km), 2000-2021, 30 towers.

Files (all under ``out_dir``; see :class:`FluxStudyFiles`, :func:`flux_data_params`)
    * ``monthly/ta_{year}_{month:02d}.tif`` mean air temperature (degC),
      ``monthly/sw_in_{year}_{month:02d}.tif`` incoming shortwave radiation (W m-2, monthly
      mean of daily means), ``monthly/p_{year}_{month:02d}.tif`` precipitation
      (mm month-1), ``monthly/ndvi_{year}_{month:02d}.tif`` NDVI (1): one band each.
    * ``monthly/vpd_{year}.tif`` vapour-pressure deficit (hPa): ONE 12-band file per year,
      **band i = month i** (band 1 January .. band 12 December), each band tagged ``month``.
    * ``annual/npp_{year}.tif`` NPP product (g C m-2 yr-1) and ``annual/landuse_{year}.tif``
      land use (int16, codes of :data:`terracarbon.conventions.LANDUSE`, 0 nodata).
    * ``dem.tif`` elevation (m), ``boundary.geojson`` (EPSG:4326).
    * ``towers.csv``: FLUXNET2015-MM-like monthly tower records, one row per site-month:
      ``site, time (YYYYMM), lon, lat, igbp, NEE, GPP, RECO`` in **g C m-2 d-1 (mean daily
      rate of the month, as FLUXNET MM)**, ``NEE_QC`` (fraction 0-1 of good half-hours),
      ``TA_F`` (degC), ``SW_IN_F`` (W m-2), ``P_F`` (mm d-1), ``VPD_F`` (hPa). Negative NEE is
      uptake. ``sites.csv``: ``SITE_ID, LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP,
      FIRST_YEAR, LAST_YEAR`` (WGS84).
    * ``truth/flux_truth.nc`` (:func:`open_flux_truth`) and ``truth/towers_truth.csv``.
    * ``study.json``: the arguments, written last; a rerun with the same arguments is skipped.

GeoTIFFs are float32 with NaN nodata (categorical: int16, 0 nodata), DEFLATE, with ``units``
and ``long_name`` tags, written like the stock study's rasters; every pixel of the rectangle
is written. The truth is NaN outside the region.

Generative model
----------------
Notation as in :mod:`terracarbon.data.synthetic` (``u``, ``v``, ``N(s)``, ``dt = t -
years[0]``); ``m = 1..12`` is the month, ``d_m`` its number of days (leap years counted),
``T_t``, ``P_t`` the stock study's annual temperature (degC) and precipitation (mm yr-1) of
year ``t`` (with their interannual anomalies and the +0.025 degC yr-1 warming), ``lu_t`` its
land use, ``lu_0`` the first year's. Scalars indexed ``t, m`` are standard-normal draws per
month; fields ``N_*`` are fixed smooth fields; ``eps`` is white noise per pixel (fresh per
use).

Monthly climate
    Monsoon weights ``w_m = exp(1.2 cos(2 pi (m - 6.5) / 12))``, ``w~_m`` the same rescaled to
    0 (driest month) .. 1 (wettest); seasonal shape ``s_m = -cos(2 pi (m - 1) / 12)`` (-1 in
    January, +1 in July).
    ``ta = T_t + A s_m + 0.6 (a_t,m - mean_m a_t,.) + 0.3 (b_t,m - mean_m b_t,.) N_T(0.25)``,
    ``A = 6.5 + 0.01 y_km`` degC (``y_km`` km north of the southern grid edge): the twelve
    months average exactly to the stock annual temperature.
    ``p = P_t g_m / sum_m g_m`` with ``g_m = w_m exp(0.35 z_t,m + 0.1 z'_t,m N_P(0.2))``:
    the months sum exactly to the stock annual precipitation.
    ``sw_in = tau R_a(lat, doy_m)``: ``R_a`` the top-of-atmosphere daily-mean irradiance
    (``1367 / pi * d_r (omega_s sin(phi) sin(delta) + cos(phi) cos(delta) sin(omega_s))``,
    FAO-56 declination and distance, at the mid-month day ``doy_m`` and the pixel latitude
    ``phi``) and the clearness ``tau = clip(0.50 - 0.12 w~_m - 0.02 z_t,m + 0.02 c_t,m +
    0.02 N_S(0.25), 0.25, 0.75)`` (cloudy monsoon, darker in wet months).
    ``vpd = e_s(ta) (1 - RH)`` (hPa), ``e_s(T) = 6.1078 exp(17.27 T / (T + 237.3))``,
    ``RH = clip(0.66 + 0.22 w~_m + 0.03 h_t,m, 0.3, 0.95)``.

NDVI, monthly
    Annual level ``n_t = c_k (1 + 0.12 bump) (1 + 0.05 tanh((P_t - 1700) / 400)) + 0.03
    r_ndvi + 0.015 eps`` with ``r_ndvi`` the stock NDVI residual pattern and
    ``ndvi = clip(n_t (1 + a_k cos(2 pi (m - 8) / 12)) + ramp + 0.01 eps, 0, 0.95)``.
    Outside zones 1 and 2 the process class is ``k = lu_t``, ``c_k`` the stock NDVI class
    table (forest .80, shrub .68, grassland .55, cropland .58, wetland .50, water .02,
    built-up .18, bare .10) and ``a_k`` the seasonal amplitude {forest .06, shrub .12,
    grassland .25, cropland .30, wetland .20, water 0, built-up .05, bare .05} (peak in
    August); ``ramp = 0``.
    In zones 1 and 2 a 2 km pixel is a mosaic whose cover changes gradually: the land-use
    map flips class when the mosaic crosses the majority threshold, the flux follows the
    cover. There ``k = lu_0`` (first-year class), ``c_k = 0.25 + 0.4 c[lu_0]`` (zone 1,
    degraded) or ``clip(c[lu_0], 0.45, 0.62)`` (zone 2), ``a_k = min(a[lu_0], 0.15)``, and
    ``ramp = -beta_z dt / (CUE_k K)`` (``K`` below): the restoration greening (zone 1) or
    urban browning (zone 2) that carries the planted trend ``beta_z``. These levels keep
    NDVI and fAPAR off their clipping bounds, so the ramp acts linearly.

Process model (monthly, g C m-2 month-1)
    ``GPP = LUE_k exp(0.08 rho_g) fAPAR PAR f_T f_W`` with
    ``fAPAR = clip(1.24 ndvi - 0.168, 0, 0.95)``,
    ``PAR = 0.5 sw_in 86400 d_m / 1e6`` (MJ m-2 month-1),
    ``f_T = exp(-0.5 ((ta - 25 - 0.025 dt) / 10)^2)``,
    ``f_W = (0.45 + 0.55 (1 - exp(-p / 60))) clip(1.15 - 0.025 vpd, 0.5, 1)``,
    light-use efficiency ``LUE`` (g C MJ-1) = {forest 1.30, shrub 1.15, grassland 1.00,
    cropland 1.20, wetland 1.05, water 0, built-up 1.00, bare 1.00} and ``rho_g = N(0.03)``
    (productivity no covariate sees).
    ``Rh = Rref_k d_m S Q10^((ta - 15 - 0.025 dt) / 10) (0.5 + 0.5 (1 - exp(-p / 50)))
    exp(0.05 eps - 0.00125)``, ``Q10 = 2``, ``S = (1 + 0.3 bump) exp(0.1 rho_s)`` (biomass
    and soil-carbon scaling; ``rho_s`` the stock soil residual pattern), ``Rref``
    (g C m-2 d-1 at the reference temperature) = {forest 1.20, shrub 0.90, grassland 0.90,
    cropland 1.00, wetland 0.70, water 0, built-up 0.30, bare 0.25}. The ``0.025 dt`` terms
    are thermal acclimation: the GPP optimum and the Rh reference temperature follow the
    stock climate's warming trend, so warming alone plants no trend in NEE.
    ``Ra = (1 - CUE_k) GPP``, ``RECO = Ra + Rh``, ``NEE = RECO - GPP`` (= ``Rh - CUE GPP``),
    carbon-use efficiency ``CUE`` = {forest .47, shrub .48, grassland .50, cropland .45,
    wetland .46, water .50, built-up .45, bare .50}. In the truth ``gpp`` and ``reco`` are
    rounded to float32 and ``nee = reco - gpp`` is computed in float32, so it holds exactly.
    Annual: ``NPP = CUE sum_m GPP``, ``Rh_yr = sum_m Rh``, ``NEE_yr = sum_m NEE = Rh_yr -
    NPP``, so ``NEP = NPP - Rh_yr = -NEE_yr``.

Planted trend
    ``K = dGPP_yr / d(ramp) = LUE_k exp(0.08 rho_g) 1.24 sum_m PAR f_T f_W`` of that year's
    climate, so the ramp adds exactly ``beta_z dt`` to annual NEE. Defaults:
    ``restoration_trend`` ``beta_1 = -8`` g C m-2 yr-2 (the sink strengthens by
    8 g C m-2 yr-1 every year), ``urbanising_trend`` ``beta_2 = +6`` g C m-2 yr-2 (the sink
    weakens); nothing is planted elsewhere, where land use does not change. The planted map
    (``nee_trend`` in the truth) is ``beta_z`` in zone ``z``, 0 elsewhere. A slope fitted to
    the annual truth departs from it by climate noise (the zone-mean OLS slope over 22 years
    scatters by about 0.8 g C m-2 yr-2 between seeds; the warming's effect through VPD adds
    about +0.1). Two studies that differ only in the trend arguments differ in annual NEE by
    exactly ``(beta_z - beta_z') dt`` (up to float32 rounding).

NPP product
    ``annual/npp_{year}.tif = NPP exp(0.05 eps - 0.00125)``: a product with 5 % error;
    the exact NPP is in the truth.

Towers
    ``n_towers`` pixels inside the region, off water and off the grid edge: ``max(2, 15 %)``
    in zone 1, ``max(1, 10 %)`` in zone 2, the others one per first-year class in the order
    forest, cropland, grassland, shrub, wetland, built-up, then drawn with weights
    .35/.25/.12/.12/.08/.08. Each site has a record of ``L ~ U{lo..min(hi, n_years)}``
    consecutive years (``tower_years = (lo, hi)``) starting at a uniform year, and sits at
    a uniform point within +-0.4 pixel of the pixel centre. ``igbp`` per row is the IGBP
    class of that year's land use (forest -> EBF below 500 m, ENF 500-1000 m, MF above by the
    stock vegetation type; shrub CSH, grassland GRA, cropland CRO, wetland WET, water WAT,
    built-up URB, bare BSV); ``sites.csv`` gives the first record year's class.
    ``NEE_QC = U(0.05, 0.5)`` with probability 0.12, else ``0.5 + 0.5 Beta(4, 1.5)``,
    rounded to 0.001.
    ``NEE = NEE_true + sigma eps``, ``sigma = (0.2 + 0.1 |NEE_true|) (3 - 2 NEE_QC)``
    (g C m-2 d-1; sigma is ``NEE_SD`` in ``towers_truth.csv``);
    ``RECO = RECO_true exp(0.1 eps - 0.005)`` (partitioning error),
    ``GPP = RECO - NEE`` (night-time partitioning). Meteorology is the pixel's month with a
    tower-versus-pixel mismatch: ``TA_F = ta + 0.3 eps``, ``SW_IN_F = sw_in exp(0.05 eps)``,
    ``P_F = p / d_m exp(0.2 eps)``, ``VPD_F = vpd exp(0.1 eps)``. Values are rounded to 1e-4
    (fluxes) / 1e-3 (meteorology). ``towers_truth.csv`` holds the noise-free pixel values
    in the same units.

Every random component draws from its own stream ``default_rng([seed, k])``
(:data:`FLUX_STREAMS`; per-pixel noise of year index ``i`` from ``FLUX_YEAR_STREAM_BASE + i``),
numbered apart from the stock study's streams, which this module re-uses unchanged.

Examples
--------
A 20 x 15 study over three years with three towers (``QUICK_FLUX`` is the tests' size):

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     files = make_flux_study(Path(folder) / "flux", nx=20, ny=15, years=range(2019, 2022),
...                             n_towers=3)
...     block = flux_data_params(files)
...     with open_flux_truth(files) as truth:
...         sizes = dict(truth.sizes)
>>> sizes["time"], sizes["year"], sizes["y"], sizes["x"]
(36, 3, 15, 20)
>>> Path(block["layers"]["ta"]["path"]).name, block["layers"]["vpd"]["band_of_month"][7]
('ta_{year}_{month:02d}.tif', 7)
"""

from __future__ import annotations

import calendar
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

from terracarbon import __version__
from terracarbon.conventions import LANDUSE, NPP_UNITS
from terracarbon.data import io
from terracarbon.data.synthetic.fields import (
    _NDVI_BY_CLASS,
    BARE,
    BUILT,
    CROP,
    FOREST,
    GRASS,
    SHRUB,
    WATER,
    WETLAND,
    ZONES,
    annual_fields,
    by_landuse,
    static_fields,
)
from terracarbon.data.synthetic.generator import _write_boundary
from terracarbon.data.synthetic.noise import (
    Grid,
    calendar_years,
    check_pixel_size,
    noise,
    projected_crs,
    random_stream,
)
from terracarbon.data.synthetic.truth import netcdf_engine
from terracarbon.errors import InputDataError, ParameterError

log = logging.getLogger(__name__)

FLUX_GENERATOR_VERSION = 1
"""Bump when the flux generative model changes, so cached flux studies are regenerated."""

FLUX_STREAMS: dict[str, int] = {
    "climate": 2000, "process": 2001, "towers": 2002, "tower_noise": 2003, "npp_product": 2004,
}
"""Component -> random stream of the flux generator (apart from the stock study's streams)."""

FLUX_YEAR_STREAM_BASE = 3000
"""Year index ``i`` draws its per-pixel flux noise from stream ``FLUX_YEAR_STREAM_BASE + i``."""

QUICK_FLUX: dict[str, Any] = {"nx": 40, "ny": 30, "years": range(2010, 2016), "n_towers": 8}
"""Arguments of the small flux study used by tests and CI (a few seconds)."""

FLUX_UNITS = "g C m-2 d-1"
"""Units of NEE, GPP and RECO in ``towers.csv`` (mean daily rate of the month)."""
MONTHLY_FLUX_UNITS = "g C m-2 month-1"
"""Units of the monthly flux truth."""
TREND_UNITS = "g C m-2 yr-2"
"""Units of the planted trend of annual NEE."""

# name -> (frequency, kind, units, long_name); frequency "monthly" (one file per month),
# "monthly_bands" (one 12-band file per year, band i = month i), "annual" or "static".
FLUX_LAYERS: dict[str, tuple[str, str, str, str]] = {
    "ta": ("monthly", "continuous", "degC", "monthly mean air temperature"),
    "sw_in": ("monthly", "continuous", "W m-2", "monthly mean incoming shortwave radiation"),
    "p": ("monthly", "continuous", "mm month-1", "monthly precipitation"),
    "ndvi": ("monthly", "continuous", "1", "monthly normalised difference vegetation index"),
    "vpd": ("monthly_bands", "continuous", "hPa", "monthly mean vapour pressure deficit"),
    "npp": ("annual", "continuous", NPP_UNITS, "net primary productivity (product)"),
    "landuse": ("annual", "categorical", "1", "land use"),
    "dem": ("static", "continuous", "m", "elevation above sea level"),
}
"""Layer name -> (frequency, kind, units, long_name) of the rasters :func:`make_flux_study`
writes."""

TOWER_COLUMNS: dict[str, str] = {
    "site": "1", "time": "YYYYMM", "lon": "degree_east", "lat": "degree_north", "igbp": "1",
    "NEE": FLUX_UNITS, "GPP": FLUX_UNITS, "RECO": FLUX_UNITS, "NEE_QC": "1",
    "TA_F": "degC", "SW_IN_F": "W m-2", "P_F": "mm d-1", "VPD_F": "hPa",
}
"""Column -> units of ``towers.csv``."""

# Per-class coefficients of the process model (see the module docstring).
_LUE = by_landuse({"forest": 1.30, "shrub": 1.15, "grassland": 1.00, "cropland": 1.20,
                   "wetland": 1.05, "water": 0.0, "built-up": 1.00, "bare": 1.00})
_CUE = by_landuse({"forest": 0.47, "shrub": 0.48, "grassland": 0.50, "cropland": 0.45,
                   "wetland": 0.46, "water": 0.50, "built-up": 0.45, "bare": 0.50})
_RH_REF = by_landuse({"forest": 1.20, "shrub": 0.90, "grassland": 0.90, "cropland": 1.00,
                      "wetland": 0.70, "water": 0.0, "built-up": 0.30, "bare": 0.25})
_NDVI_AMPLITUDE = by_landuse({"forest": 0.06, "shrub": 0.12, "grassland": 0.25,
                              "cropland": 0.30, "wetland": 0.20, "water": 0.0,
                              "built-up": 0.05, "bare": 0.05})
_ZONE_AMPLITUDE_MAX = 0.15
_NDVI_PEAK_MONTH = 8
_T_OPT, _T_WIDTH, _T_REF, _Q10 = 25.0, 10.0, 15.0, 2.0
_WARMING_PER_YEAR = 0.025
"""The stock climate's warming (degC yr-1, :func:`~.fields.annual_fields`), to which the
temperature optimum of GPP and the reference temperature of Rh acclimate."""
_FAPAR_SLOPE, _FAPAR_OFFSET = 1.24, 0.168

_IGBP_BY_CLASS = {SHRUB: "CSH", GRASS: "GRA", CROP: "CRO", WETLAND: "WET", WATER: "WAT",
                  BUILT: "URB", BARE: "BSV"}
_FOREST_IGBP_BY_VEG_TYPE = {1: "EBF", 2: "ENF", 3: "MF"}
_TOWER_CLASSES = (FOREST, CROP, GRASS, SHRUB, WETLAND, BUILT)
_TOWER_WEIGHTS = (0.35, 0.25, 0.12, 0.12, 0.08, 0.08)
_LOW_QC_SHARE = 0.12


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FluxStudyFiles:
    """Paths and grid of a flux study written by :func:`make_flux_study`.

    Attributes
    ----------
    root : Path
        The output folder.
    monthly_dir, annual_dir : Path
        ``monthly/`` (``<layer>_{year}_{month:02d}.tif``, ``vpd_{year}.tif`` with 12 bands)
        and ``annual/`` (``npp_{year}.tif``, ``landuse_{year}.tif``).
    dem, boundary, towers, sites, truth, towers_truth, manifest : Path
        ``dem.tif``, ``boundary.geojson``, ``towers.csv``, ``sites.csv``,
        ``truth/flux_truth.nc``, ``truth/towers_truth.csv`` and ``study.json``.
    nx, ny : int
        Grid size in pixels (columns, rows).
    pixel_size_m : float
        Pixel side (m).
    crs : str
        Projected CRS of the grid.
    origin_xy : tuple of float
        Upper-left corner of the grid in CRS units (m).
    years : tuple of int
        Calendar years (consecutive).
    """

    root: Path
    monthly_dir: Path
    annual_dir: Path
    dem: Path
    boundary: Path
    towers: Path
    sites: Path
    truth: Path
    towers_truth: Path
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

    def path(self, layer: str, year: int | None = None, month: int | None = None) -> Path:
        """Path of ``layer`` (:data:`FLUX_LAYERS`) for ``year`` (and ``month`` if monthly)."""
        frequency = FLUX_LAYERS[layer][0]
        if frequency == "static":
            return self.dem
        if frequency == "monthly":
            return self.monthly_dir / f"{layer}_{year}_{month:02d}.tif"
        folder = self.monthly_dir if frequency == "monthly_bands" else self.annual_dir
        return folder / f"{layer}_{year}.tif"


def _flux_files(out_dir: Path, args: dict[str, Any]) -> FluxStudyFiles:
    return FluxStudyFiles(
        root=out_dir, monthly_dir=out_dir / "monthly", annual_dir=out_dir / "annual",
        dem=out_dir / "dem.tif", boundary=out_dir / "boundary.geojson",
        towers=out_dir / "towers.csv", sites=out_dir / "sites.csv",
        truth=out_dir / "truth" / "flux_truth.nc",
        towers_truth=out_dir / "truth" / "towers_truth.csv", manifest=out_dir / "study.json",
        nx=args["nx"], ny=args["ny"], pixel_size_m=args["pixel_size_m"], crs=args["crs"],
        origin_xy=tuple(args["origin_xy"]), years=tuple(args["years"]),
    )


def _all_paths(files: FluxStudyFiles) -> list[Path]:
    """Every file of the flux study but ``study.json``, rasters first."""
    paths = []
    for layer, (frequency, *_rest) in FLUX_LAYERS.items():
        if frequency == "monthly":
            paths += [files.path(layer, y, m) for y in files.years for m in range(1, 13)]
        elif frequency in ("monthly_bands", "annual"):
            paths += [files.path(layer, y) for y in files.years]
    return [*paths, files.dem, files.boundary, files.towers, files.sites, files.truth,
            files.towers_truth]


def _is_complete(files: FluxStudyFiles, args: dict[str, Any]) -> bool:
    try:
        recorded = json.loads(files.manifest.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("arguments") == args and all(p.exists() for p in _all_paths(files))


def _remove_stale_rasters(files: FluxStudyFiles) -> None:
    """Delete the layer rasters of an earlier flux study in the folder (years may differ)."""
    for folder in (files.monthly_dir, files.annual_dir):
        if not folder.is_dir():
            continue
        for path in folder.glob("*.tif"):
            if path.stem.split("_")[0] in FLUX_LAYERS or path.stem.startswith("sw_in_"):
                path.unlink()


def flux_data_params(files: FluxStudyFiles) -> dict[str, Any]:
    """The parameter block a flux study uses to read the files of ``files``.

    Parameters
    ----------
    files : FluxStudyFiles
        As returned by :func:`make_flux_study`.

    Returns
    -------
    dict
        ``boundary`` (path), ``years`` (list of int), ``months`` (1..12), ``layers`` (name ->
        ``path`` with ``{year}`` / ``{month:02d}`` placeholders, ``frequency`` monthly /
        annual / static, ``kind`` continuous / categorical, ``units``, ``long_name``, and for
        the 12-band file ``band_of_month`` {month: band} and ``band_map``
        ``"start: {year}-01"`` as :func:`terracarbon.data.monthly.read_monthly_bands` reads
        it once formatted with the year), ``towers`` (path and column names;
        lon/lat in EPSG:4326; ``time`` as YYYYMM; flux ``units`` g C m-2 d-1 as mean daily
        rates, ``units_by_column``; ``qc_column`` and a ``min_qc`` of 0.5) and ``sites``
        (path and column names).

    Raises
    ------
    ParameterError
        If ``files`` is not a :class:`FluxStudyFiles`.

    Examples
    --------
    See the module docstring: ``flux_data_params(make_flux_study(folder, **QUICK_FLUX))``.
    """
    if not isinstance(files, FluxStudyFiles):
        raise ParameterError(
            f"flux_data_params: files is a {type(files).__name__}; expected the FluxStudyFiles "
            "returned by make_flux_study."
        )
    layers: dict[str, dict[str, Any]] = {}
    for name, (frequency, kind, units, long_name) in FLUX_LAYERS.items():
        if frequency == "monthly":
            path = files.monthly_dir / f"{name}_{{year}}_{{month:02d}}.tif"
        elif frequency == "monthly_bands":
            path = files.monthly_dir / f"{name}_{{year}}.tif"
        elif frequency == "annual":
            path = files.annual_dir / f"{name}_{{year}}.tif"
        else:
            path = files.dem
        layer = {"path": str(path), "frequency": "monthly" if frequency.startswith("monthly")
                 else frequency, "kind": kind, "units": units, "long_name": long_name}
        if frequency == "monthly_bands":
            layer["band_of_month"] = {m: m for m in range(1, 13)}
            # for terracarbon.data.monthly.read_monthly_bands, after .format(year=...)
            layer["band_map"] = "start: {year}-01"
        layers[name] = layer
    return {
        "boundary": str(files.boundary),
        "years": list(files.years),
        "months": list(range(1, 13)),
        "layers": layers,
        "towers": {
            "path": str(files.towers),
            "site_column": "site",
            "time_column": "time",
            "time_format": "YYYYMM",
            "x_column": "lon",
            "y_column": "lat",
            "crs": "EPSG:4326",
            "igbp_column": "igbp",
            "flux_columns": {"nee": "NEE", "gpp": "GPP", "reco": "RECO"},
            "units": FLUX_UNITS,
            "rate": "mean daily rate of the month (multiply by the days of the month)",
            "qc_column": "NEE_QC",
            "min_qc": 0.5,
            "meteo_columns": {"ta": "TA_F", "sw_in": "SW_IN_F", "p": "P_F", "vpd": "VPD_F"},
            "units_by_column": dict(TOWER_COLUMNS),
        },
        "sites": {
            "path": str(files.sites),
            "id_column": "SITE_ID",
            "x_column": "LOCATION_LONG",
            "y_column": "LOCATION_LAT",
            "crs": "EPSG:4326",
            "igbp_column": "IGBP",
        },
    }


# --------------------------------------------------------------------------- entry point


def make_flux_study(
    out_dir: str | Path,
    *,
    nx: int = 160,
    ny: int = 120,
    pixel_size_m: float = 2000.0,
    years: Iterable[int] = range(2000, 2022),
    crs: str = "EPSG:32649",
    origin_xy: tuple[float, float] = (300000.0, 2800000.0),
    n_towers: int = 30,
    tower_years: tuple[int, int] = (2, 10),
    restoration_trend: float = -8.0,
    urbanising_trend: float = 6.0,
    seed: int = 0,
) -> FluxStudyFiles:
    """Write the synthetic flux study (monthly rasters, towers, planted truth) to ``out_dir``.

    The generative model and the file layout are documented in the module docstring
    (:mod:`terracarbon.data.synthetic.flux`). Output is a pure function of the arguments:
    the same arguments give identical files. If ``out_dir`` already holds a complete flux
    study made with the same arguments (``study.json``), nothing is written.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if missing).
    nx, ny : int, keyword-only
        Grid size in pixels (columns, rows), each >= 10.
    pixel_size_m : float
        Pixel side in metres (> 0).
    years : iterable of int
        Consecutive calendar years (at least 3).
    crs : str
        Projected CRS of the grid (metres).
    origin_xy : (float, float)
        Upper-left corner of the grid in CRS units (m).
    n_towers : int
        Number of flux towers (>= 1).
    tower_years : (int, int)
        Shortest and longest tower record in years (``1 <= lo <= hi``; ``hi`` is capped at
        the number of years, ``lo`` must not exceed it).
    restoration_trend, urbanising_trend : float
        Planted trend of annual NEE in zone 1 and zone 2 (g C m-2 yr-2; negative = the sink
        strengthens). Their NDVI ramps must stay within 0.5 NDVI over the period.
    seed : int
        Seed of every random component (>= 0); the landscape equals that of
        ``make_study(..., seed=seed)`` on the same grid and years.

    Returns
    -------
    FluxStudyFiles
        Paths of the written files and the grid description.

    Raises
    ------
    ParameterError
        For a grid smaller than 10 x 10, a non-positive pixel size, an unknown or geographic
        CRS, non-consecutive years, bad tower counts or record lengths, or trends so steep
        that the NDVI ramp would leave the valid range.

    Examples
    --------
    See the module docstring; ``make_flux_study(folder, **QUICK_FLUX)`` takes a few seconds.
    """
    args = _validated_arguments(out_dir, nx, ny, pixel_size_m, years, crs, origin_xy, n_towers,
                                tower_years, restoration_trend, urbanising_trend, seed)
    out_dir = Path(out_dir).resolve()
    files = _flux_files(out_dir, args)
    if _is_complete(files, args):
        log.info("make_flux_study: %s already holds this study; skipped", out_dir)
        return files
    started = time.perf_counter()
    files.manifest.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    _remove_stale_rasters(files)
    history = io.history_line(
        "terracarbon.synthetic.make_flux_study", nx=args["nx"], ny=args["ny"],
        pixel_size_m=args["pixel_size_m"], crs=args["crs"], seed=args["seed"],
        restoration_trend=args["restoration_trend"], urbanising_trend=args["urbanising_trend"],
    )
    grid = Grid(args)
    seed = args["seed"]
    static = static_fields(grid, seed)
    _tower_candidates(grid, static, args["n_towers"])  # fail before writing anything
    stock: dict[int, dict[str, np.ndarray]] = {}

    def keep(year: int, layers: dict[str, np.ndarray]) -> None:
        stock[year] = {k: layers[k] for k in ("temperature", "precipitation")}

    landuse = annual_fields(grid, static, seed, keep)["landuse"]
    writer = _RasterWriter(grid, history)
    writer.write(files.dem, static["dem"], "dem")
    fields = _FluxFields(grid, static, seed, args)
    cubes = _empty_cubes(grid)
    npp_rng = random_stream(seed, FLUX_STREAMS["npp_product"])
    for k, year in enumerate(grid.years):  # loop over years; every step is whole-grid NumPy
        month = fields.year(k, stock[int(year)], landuse[k])
        for name in ("ta", "sw_in", "p", "ndvi"):
            for m in range(12):
                writer.write(files.path(name, int(year), m + 1), month[name][m], name)
        writer.write(files.path("vpd", int(year)), month["vpd"], "vpd")
        npp_product = month["npp_annual"] * np.exp(
            0.05 * npp_rng.standard_normal(grid.shape) - 0.00125)
        writer.write(files.path("npp", int(year)), npp_product, "npp")
        writer.write(files.path("landuse", int(year)), landuse[k], "landuse")
        for name, cube in cubes.items():
            if name in ("nee", "gpp", "reco", "ta", "sw_in", "p", "vpd"):
                cube[12 * k: 12 * k + 12] = month[name]
            else:
                cube[k] = month[name]
    towers, sites, towers_truth = _towers(grid, static, landuse, cubes, args)
    _write_boundary(files.boundary, static["polygon_lonlat"])
    io.write_table(towers, files.towers)
    io.write_table(sites, files.sites)
    io.write_table(towers_truth, files.towers_truth)
    _write_truth(files.truth, grid, static, landuse, cubes, args, history)
    io.write_json(
        {"arguments": args, "terracarbon_version": __version__,
         "files": [str(p.relative_to(out_dir)) for p in _all_paths(files)]},
        files.manifest,
    )
    log.info("make_flux_study: wrote %s in %.1f s", out_dir, time.perf_counter() - started)
    return files


def _validated_arguments(
    out_dir: Any, nx: Any, ny: Any, pixel_size_m: Any, years: Any, crs: Any, origin_xy: Any,
    n_towers: Any, tower_years: Any, restoration_trend: Any, urbanising_trend: Any, seed: Any,
) -> dict[str, Any]:
    """The arguments of :func:`make_flux_study` checked and normalised (as in study.json)."""

    def whole(name: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ParameterError(
                f"make_flux_study: {name}={value!r}; expected an integer >= {minimum}. "
                f"Pass e.g. {name}={max(minimum, 10)}."
            )
        return int(value)

    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not (
                math.isfinite(value)):
            raise ParameterError(
                f"make_flux_study: {name}={value!r}; expected a finite number of "
                f"{TREND_UNITS}, e.g. {name}=-8.0."
            )
        return float(value)

    if out_dir is None:
        raise ParameterError("make_flux_study: out_dir is None; expected a folder path.")
    nx, ny = whole("nx", nx, 10), whole("ny", ny, 10)
    check_pixel_size("make_flux_study", pixel_size_m, example=2000.0)
    crs_str = projected_crs("make_flux_study", crs)
    years_t = calendar_years("make_flux_study", years, consecutive=True)
    try:
        ox, oy = (float(v) for v in origin_xy)
    except (TypeError, ValueError):
        raise ParameterError(
            f"make_flux_study: origin_xy={origin_xy!r}; expected (x, y) of the upper-left "
            "corner in metres."
        ) from None
    n_towers = whole("n_towers", n_towers, 1)
    try:
        lo, hi = (int(v) for v in tower_years)
    except (TypeError, ValueError):
        raise ParameterError(
            f"make_flux_study: tower_years={tower_years!r}; expected (shortest, longest) "
            "record in years, e.g. (2, 10)."
        ) from None
    if not 1 <= lo <= hi or lo > len(years_t):
        raise ParameterError(
            f"make_flux_study: tower_years={tower_years!r}; expected 1 <= shortest <= longest "
            f"and shortest <= {len(years_t)} (the number of years), e.g. (2, 10)."
        )
    trends = {"restoration_trend": number("restoration_trend", restoration_trend),
              "urbanising_trend": number("urbanising_trend", urbanising_trend)}
    for name, beta in trends.items():
        if abs(beta) * (len(years_t) - 1) > 300.0:
            raise ParameterError(
                f"make_flux_study: {name}={beta} {TREND_UNITS} over {len(years_t)} years "
                f"changes annual NEE by {abs(beta) * (len(years_t) - 1):.0f} g C m-2 yr-1; "
                "expected at most 300 (the NDVI ramp carrying it must stay in the valid "
                "range). Use a smaller trend or fewer years."
            )
    return {
        "nx": nx, "ny": ny, "pixel_size_m": float(pixel_size_m), "years": list(years_t),
        "crs": crs_str, "origin_xy": [ox, oy], "n_towers": n_towers,
        "tower_years": [lo, min(hi, len(years_t))], **trends,
        "seed": whole("seed", seed, 0), "flux_generator_version": FLUX_GENERATOR_VERSION,
    }


# --------------------------------------------------------------------------- rasters


class _RasterWriter:
    """Writes the flux layers as GeoTIFFs in the style of the stock study's rasters."""

    def __init__(self, grid: Grid, history: str):
        from rasterio.crs import CRS

        self.grid, self.history = grid, history
        self.crs, self.transform = CRS.from_user_input(grid.crs), grid.transform  # parsed once

    def write(self, path: Path, values: np.ndarray, layer: str) -> None:
        """One band (``(y, x)``) or one band per month (``(12, y, x)``, band i = month i)."""
        import rasterio

        _, kind, units, long_name = FLUX_LAYERS[layer]
        categorical = kind == "categorical"
        data = np.asarray(values).astype(np.int16 if categorical else np.float32)
        data = data[None] if data.ndim == 2 else data
        grid = self.grid
        profile = {
            "driver": "GTiff", "width": grid.nx, "height": grid.ny, "count": data.shape[0],
            "dtype": data.dtype.name, "crs": self.crs, "transform": self.transform,
            "nodata": 0 if categorical else float("nan"), "compress": "DEFLATE",
            "zlevel": 1, "predictor": 2 if categorical else 3,
        }
        if max(grid.nx, grid.ny) > 256:  # tiles only pay off beyond one 256 x 256 block
            profile.update(tiled=True, blockxsize=256, blockysize=256)
        if data.shape[0] > 1:
            profile["interleave"] = "band"
        with io.atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            tags = {"units": units, "long_name": long_name, "history": self.history}
            if data.shape[0] == 12:
                tags["band_of_month"] = "band i = month i (1 January .. 12 December)"
            dst.update_tags(**tags)
            for band in range(1, data.shape[0] + 1):
                if data.shape[0] == 12:
                    dst.update_tags(band, units=units, long_name=long_name, month=str(band))
                    dst.set_band_description(band, f"{long_name}, month {band:02d}")
                else:
                    dst.update_tags(band, units=units, long_name=long_name)
                    dst.set_band_description(band, long_name)
                dst.set_band_unit(band, units)


# --------------------------------------------------------------------------- fields


def _lonlat(grid: Grid, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return to_lonlat.transform(x, y)


def _toa_irradiance(lat_deg: np.ndarray, doy: float) -> np.ndarray:
    """Top-of-atmosphere daily-mean irradiance (W m-2), FAO-56 eqs. 21-25."""
    phi = np.radians(lat_deg)
    d_r = 1.0 + 0.033 * math.cos(2 * math.pi * doy / 365.0)
    delta = 0.409 * math.sin(2 * math.pi * doy / 365.0 - 1.39)
    omega = np.arccos(np.clip(-np.tan(phi) * math.tan(delta), -1.0, 1.0))
    return 1367.0 / math.pi * d_r * (omega * np.sin(phi) * math.sin(delta)
                                     + np.cos(phi) * math.cos(delta) * np.sin(omega))


class _FluxFields:
    """The static parts of the flux model and, per year, its monthly fields (see module doc)."""

    def __init__(self, grid: Grid, static: dict[str, Any], seed: int, args: dict[str, Any]):
        self.grid, self.static, self.seed = grid, static, seed
        n = grid.years.size
        rng = random_stream(seed, FLUX_STREAMS["climate"])
        self.n_t, self.n_p, self.n_s = (noise(grid, rng, s) for s in (0.25, 0.2, 0.25))
        self.a, self.b, self.z, self.z2, self.c, self.h = rng.standard_normal((6, n, 12))
        self.rho_g = noise(grid, random_stream(seed, FLUX_STREAMS["process"]), 0.03)
        months = np.arange(1, 13)
        w = np.exp(1.2 * np.cos(2 * np.pi * (months - 6.5) / 12))
        self.w = w
        self.w_scaled = (w - w.min()) / (w.max() - w.min())
        self.season = -np.cos(2 * np.pi * (months - 1) / 12)
        self.ndvi_cycle = np.cos(2 * np.pi * (months - _NDVI_PEAK_MONTH) / 12)
        y_km = (1.0 - grid.v) * grid.ny * grid.pixel_size / 1000.0
        self.amplitude = 6.5 + 0.01 * y_km
        xx, yy = np.meshgrid(grid.x, grid.y)
        self.lat = np.asarray(_lonlat(grid, xx, yy)[1])
        zones = static["zones"]
        self.beta = np.zeros(grid.shape)
        self.beta[zones == 1] = args["restoration_trend"]
        self.beta[zones == 2] = args["urbanising_trend"]
        self.in_zone = (zones == 1) | (zones == 2)
        c0 = _NDVI_BY_CLASS[static["landuse0"]]
        self.zone_ndvi = np.where(zones == 1, 0.25 + 0.4 * c0, np.clip(c0, 0.45, 0.62))
        self.zone_amplitude = np.minimum(_NDVI_AMPLITUDE[static["landuse0"]],
                                         _ZONE_AMPLITUDE_MAX)
        self.respiration_scale = (1.0 + 0.3 * static["bump"]) * np.exp(0.1 * static["rho_s"])

    def year(self, k: int, stock: dict[str, np.ndarray], lu: np.ndarray) -> dict[str, Any]:
        """Monthly drivers (``(12, y, x)``), NDVI and fluxes of year index ``k``."""
        grid, static = self.grid, self.static
        year = int(grid.years[k])
        dt = float(year - grid.years[0])
        rng = random_stream(self.seed, FLUX_YEAR_STREAM_BASE + k)
        shape12 = (12, *grid.shape)
        col = (slice(None), None, None)  # a (12,) vector against (12, y, x)
        days = np.array([calendar.monthrange(year, m)[1] for m in range(1, 13)], float)
        mid_doy = np.cumsum(days) - days / 2.0
        t_ann, p_ann = stock["temperature"], stock["precipitation"]

        a = self.a[k] - self.a[k].mean()
        b = self.b[k] - self.b[k].mean()
        ta = (t_ann + self.amplitude * self.season[col] + 0.6 * a[col]
              + 0.3 * b[col] * self.n_t)
        g = self.w[col] * np.exp(0.35 * self.z[k][col] + 0.1 * self.z2[k][col] * self.n_p)
        p = p_ann * g / g.sum(axis=0)
        toa = np.stack([_toa_irradiance(self.lat, doy) for doy in mid_doy])
        tau = np.clip(0.50 - 0.12 * self.w_scaled[col] - 0.02 * self.z[k][col]
                      + 0.02 * self.c[k][col] + 0.02 * self.n_s, 0.25, 0.75)
        sw_in = tau * toa
        rh = np.clip(0.66 + 0.22 * self.w_scaled + 0.03 * self.h[k], 0.3, 0.95)
        vpd = 6.1078 * np.exp(17.27 * ta / (ta + 237.3)) * (1.0 - rh[col])

        cls = np.where(self.in_zone, static["landuse0"], lu)
        amplitude = np.where(self.in_zone, self.zone_amplitude, _NDVI_AMPLITUDE[cls])
        cycle = 1.0 + amplitude * self.ndvi_cycle[col]
        par = 0.5 * sw_in * 86400.0 * days[col] / 1.0e6  # MJ m-2 month-1
        shift = _WARMING_PER_YEAR * dt  # thermal acclimation to the warming trend
        f_t = np.exp(-0.5 * ((ta - _T_OPT - shift) / _T_WIDTH) ** 2)
        f_w = ((0.45 + 0.55 * (1.0 - np.exp(-p / 60.0)))
               * np.clip(1.15 - 0.025 * vpd, 0.5, 1.0))
        lue = _LUE[cls] * np.exp(0.08 * self.rho_g)
        cue = _CUE[cls]
        sensitivity = lue * _FAPAR_SLOPE * (par * f_t * f_w).sum(axis=0)
        ramp = np.zeros(grid.shape)
        ramp[self.in_zone] = (-self.beta[self.in_zone] * dt
                              / (cue[self.in_zone] * sensitivity[self.in_zone]))
        level_class = np.where(self.in_zone, self.zone_ndvi, _NDVI_BY_CLASS[lu])
        level = (level_class * (1.0 + 0.12 * static["bump"])
                 * (1.0 + 0.05 * np.tanh((p_ann - 1700.0) / 400.0))
                 + 0.03 * static["ndvi_residual"] + 0.015 * rng.standard_normal(grid.shape))
        ndvi = np.clip(level * cycle + ramp + 0.01 * rng.standard_normal(shape12), 0.0, 0.95)
        fapar = np.clip(_FAPAR_SLOPE * ndvi - _FAPAR_OFFSET, 0.0, 0.95)
        gpp = lue * fapar * par * f_t * f_w
        rh_flux = (_RH_REF[cls] * days[col] * self.respiration_scale
                   * _Q10 ** ((ta - _T_REF - shift) / 10.0)
                   * (0.5 + 0.5 * (1.0 - np.exp(-p / 50.0)))
                   * np.exp(0.05 * rng.standard_normal(shape12) - 0.00125))
        gpp32 = gpp.astype(np.float32)
        reco32 = ((1.0 - cue) * gpp + rh_flux).astype(np.float32)
        nee32 = reco32 - gpp32  # float32 arithmetic: NEE = RECO - GPP exactly in the truth
        return {
            "ta": ta, "sw_in": sw_in, "p": p, "vpd": vpd, "ndvi": ndvi,
            "gpp": gpp32, "reco": reco32, "nee": nee32,
            "nee_annual": nee32.sum(axis=0, dtype=np.float64),
            "npp_annual": cue * gpp32.sum(axis=0, dtype=np.float64),
            "rh_annual": rh_flux.sum(axis=0),
        }


def _empty_cubes(grid: Grid) -> dict[str, np.ndarray]:
    n = grid.years.size
    monthly = (12 * n, *grid.shape)
    annual = (n, *grid.shape)
    return {
        **{name: np.empty(monthly, np.float32)
           for name in ("nee", "gpp", "reco", "ta", "sw_in", "p", "vpd")},
        **{name: np.empty(annual, np.float64) for name in ("nee_annual", "npp_annual",
                                                            "rh_annual")},
    }


# --------------------------------------------------------------------------- towers


def _igbp(landuse: np.ndarray, veg_type: np.ndarray) -> np.ndarray:
    """IGBP class names of land-use codes (forest split by the stock vegetation type)."""
    out = np.array([_IGBP_BY_CLASS.get(int(c), "EBF") for c in landuse], dtype=object)
    forest = landuse == FOREST
    out[forest] = [_FOREST_IGBP_BY_VEG_TYPE.get(int(v), "EBF") for v in veg_type[forest]]
    return out


def _tower_candidates(grid: Grid, static: dict[str, Any], n: int) -> np.ndarray:
    """Pixels that can hold a tower (land inside the region, off the grid edge).

    Raises ParameterError when fewer than ``n`` exist.
    """
    interior = np.zeros(grid.shape, bool)
    interior[1:-1, 1:-1] = True
    ok = static["region"] & ~static["water"] & interior
    n_available = int(np.count_nonzero(ok))
    if n > n_available:
        raise ParameterError(
            f"make_flux_study: n_towers={n}; only {n_available} land pixels inside the region "
            "can hold a tower. Use fewer towers or a larger grid."
        )
    return ok


def _place_towers(grid: Grid, static: dict[str, Any], n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices of ``n`` distinct tower pixels (see the module docstring)."""
    ok = _tower_candidates(grid, static, n)
    zones, lu0 = static["zones"], static["landuse0"]
    groups = [ok & (zones == 1), ok & (zones == 2)]
    groups += [ok & (zones != 1) & (zones != 2) & (lu0 == c) for c in _TOWER_CLASSES]
    quota = [max(2, round(0.15 * n)), max(1, round(0.10 * n))]
    order: list[int] = [0] * quota[0] + [1] * quota[1]
    order += [2 + i for i in range(len(_TOWER_CLASSES))]
    weights = np.array(_TOWER_WEIGHTS)
    order += list(2 + rng.choice(len(_TOWER_CLASSES), size=n, p=weights / weights.sum()))
    taken: list[int] = []
    used = np.zeros(grid.shape, bool)
    for group in order:  # a loop over towers, not pixels
        if len(taken) == n:
            break
        free = np.flatnonzero(groups[group] & ~used)
        if free.size == 0:
            continue
        pick = int(rng.choice(free))
        taken.append(pick)
        used.flat[pick] = True
    while len(taken) < n:  # the class groups ran out: any free land pixel
        pick = int(rng.choice(np.flatnonzero(ok & ~used)))
        taken.append(pick)
        used.flat[pick] = True
    return np.array(taken)


def _towers(grid: Grid, static: dict[str, Any], landuse: np.ndarray,
            cubes: dict[str, np.ndarray], args: dict[str, Any],
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``towers.csv``, ``sites.csv`` and ``towers_truth.csv`` tables."""
    rng = random_stream(args["seed"], FLUX_STREAMS["towers"])
    n, n_years = args["n_towers"], grid.years.size
    pixels = _place_towers(grid, static, n, rng)
    rows, cols = np.unravel_index(pixels, grid.shape)
    lo, hi = args["tower_years"]
    length = rng.integers(lo, hi + 1, size=n)
    first = rng.integers(0, n_years - length + 1)
    jitter = rng.uniform(-0.4, 0.4, size=(2, n)) * grid.pixel_size
    lon, lat = _lonlat(grid, grid.x[cols] + jitter[0], grid.y[rows] + jitter[1])
    lon, lat = np.round(lon, 6), np.round(lat, 6)
    site_ids = np.array([f"SY-T{i + 1:02d}" for i in range(n)])

    tower = np.repeat(np.arange(n), 12 * length)
    month_index = np.concatenate([np.arange(12 * f, 12 * (f + ln))
                                  for f, ln in zip(first, length, strict=True)])
    year_index = month_index // 12
    year = grid.years[year_index]
    month = month_index % 12 + 1
    days = np.array([calendar.monthrange(int(y), int(m))[1] for y, m in zip(year, month,
                                                                            strict=True)])
    r, c = rows[tower], cols[tower]
    lu = landuse[year_index, r, c]
    igbp = _igbp(lu, static["veg_type"][r, c])
    truth = {name: cubes[name][month_index, r, c].astype(np.float64)
             for name in ("nee", "gpp", "reco", "ta", "sw_in", "p", "vpd")}
    nee, gpp, reco = (truth[name] / days for name in ("nee", "gpp", "reco"))

    noise_rng = random_stream(args["seed"], FLUX_STREAMS["tower_noise"])
    size = month_index.size
    low = noise_rng.uniform(size=size) < _LOW_QC_SHARE
    qc = np.round(np.where(low, noise_rng.uniform(0.05, 0.5, size),
                           0.5 + 0.5 * noise_rng.beta(4.0, 1.5, size)), 3)
    sigma = (0.2 + 0.1 * np.abs(nee)) * (3.0 - 2.0 * qc)
    nee_obs = nee + sigma * noise_rng.standard_normal(size)
    reco_obs = reco * np.exp(0.1 * noise_rng.standard_normal(size) - 0.005)
    gpp_obs = reco_obs - nee_obs
    ta_obs = truth["ta"] + 0.3 * noise_rng.standard_normal(size)
    sw_obs = truth["sw_in"] * np.exp(0.05 * noise_rng.standard_normal(size))
    p_obs = truth["p"] / days * np.exp(0.2 * noise_rng.standard_normal(size))
    vpd_obs = truth["vpd"] * np.exp(0.1 * noise_rng.standard_normal(size))

    time_code = year * 100 + month
    towers = pd.DataFrame({
        "site": site_ids[tower], "time": time_code, "lon": lon[tower], "lat": lat[tower],
        "igbp": igbp, "NEE": np.round(nee_obs, 4), "GPP": np.round(gpp_obs, 4),
        "RECO": np.round(reco_obs, 4), "NEE_QC": qc, "TA_F": np.round(ta_obs, 3),
        "SW_IN_F": np.round(sw_obs, 3), "P_F": np.round(p_obs, 3),
        "VPD_F": np.round(vpd_obs, 3),
    })
    first_row = np.concatenate([[0], np.cumsum(12 * length)[:-1]])
    sites = pd.DataFrame({
        "SITE_ID": site_ids, "LOCATION_LAT": lat, "LOCATION_LONG": lon,
        "LOCATION_ELEV": np.round(static["dem"][rows, cols], 1), "IGBP": igbp[first_row],
        "FIRST_YEAR": grid.years[first], "LAST_YEAR": grid.years[first + length - 1],
    })
    towers_truth = pd.DataFrame({
        "site": site_ids[tower], "time": time_code, "row": r, "col": c,
        "zone": static["zones"][r, c], "landuse": lu, "igbp": igbp, "days": days,
        "NEE": nee, "GPP": gpp, "RECO": reco, "NEE_SD": sigma,
        "TA": truth["ta"], "SW_IN": truth["sw_in"], "P": truth["p"] / days,
        "VPD": truth["vpd"],
    })
    return towers, sites, towers_truth


# --------------------------------------------------------------------------- truth


def _write_truth(path: Path, grid: Grid, static: dict[str, Any], landuse: np.ndarray,
                 cubes: dict[str, np.ndarray], args: dict[str, Any], history: str) -> None:
    import rioxarray  # noqa: F401  registers the .rio accessor

    region = static["region"]
    years = grid.years.astype(np.int64)
    times = pd.to_datetime([f"{y}-{m:02d}-01" for y in years for m in range(1, 13)])
    nan32 = np.float32(np.nan)
    zones = static["zones"]
    trend = np.zeros(grid.shape, np.float32)
    trend[zones == 1] = args["restoration_trend"]
    trend[zones == 2] = args["urbanising_trend"]

    def monthly(name: str, long_name: str) -> tuple:
        return (("time", "y", "x"), np.where(region, cubes[name], nan32),
                {"units": MONTHLY_FLUX_UNITS, "long_name": long_name, "history": history})

    def annual(name: str, long_name: str) -> tuple:
        return (("year", "y", "x"), np.where(region, cubes[name], np.nan).astype(np.float32),
                {"units": NPP_UNITS, "long_name": long_name, "history": history})

    ds = xr.Dataset(
        {
            "nee": monthly("nee", "true monthly net ecosystem exchange (RECO - GPP)"),
            "gpp": monthly("gpp", "true monthly gross primary production"),
            "reco": monthly("reco", "true monthly ecosystem respiration"),
            "nee_annual": annual("nee_annual", "true annual net ecosystem exchange"),
            "npp_annual": annual("npp_annual", "true annual net primary production"),
            "rh_annual": annual("rh_annual", "true annual heterotrophic respiration"),
            "nee_trend": (("y", "x"), np.where(region, trend, nan32),
                          {"units": TREND_UNITS, "history": history,
                           "long_name": "planted linear trend of annual NEE"}),
            "landuse": (("year", "y", "x"), np.where(region, landuse, 0).astype(np.int16),
                        {"units": "1", "long_name": "land use", "history": history,
                         "flag_values": np.array(LANDUSE.codes, dtype=np.int16),
                         "flag_meanings": " ".join(v.replace("-", "_") for v in LANDUSE.names)}),
            "zones": (("y", "x"), zones,
                      {"units": "1", "long_name": "planted change zones",
                       "flag_values": np.arange(4, dtype=np.int8),
                       "flag_meanings": " ".join(ZONES.values()), "history": history}),
            "region_mask": (("y", "x"), region,
                            {"units": "1", "long_name": "inside the study boundary"}),
        },
        coords={"time": times, "year": years, "y": grid.y, "x": grid.x},
        attrs={"title": "terracarbon synthetic flux study: planted truth", "history": history,
               "sign_convention": "NEE < 0 is uptake (a sink)"},
    )
    ds["year"].attrs.update(units="1", long_name="calendar year")
    ds["x"].attrs.update(units="m", long_name="x coordinate of pixel centre")
    ds["y"].attrs.update(units="m", long_name="y coordinate of pixel centre")
    ds = ds.rio.write_crs(grid.crs)
    chunks = {"time": (12, grid.ny, grid.nx), "year": (1, grid.ny, grid.nx)}
    encoding = {name: {"zlib": True, "complevel": 1, "chunksizes": chunks[ds[name].dims[0]]}
                for name in ("nee", "gpp", "reco", "nee_annual", "npp_annual", "rh_annual",
                             "landuse")}
    encoding["time"] = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
    io.require_units(ds, where=path.name)
    with io.atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=netcdf_engine(), encoding=encoding)


def open_flux_truth(path: str | Path | FluxStudyFiles) -> xr.Dataset:
    """Open the planted truth of a synthetic flux study.

    Parameters
    ----------
    path : str, Path or FluxStudyFiles
        ``flux_truth.nc`` (or the FluxStudyFiles whose ``truth`` it is).

    Returns
    -------
    xarray.Dataset
        On the raster grid (``x``, ``y`` pixel centres, CRS attached), NaN outside the region:
        ``nee``, ``gpp``, ``reco`` (time, y, x; g C m-2 month-1; ``time`` = first day of the
        month; ``nee = reco - gpp`` exactly in float32), ``nee_annual``, ``npp_annual``,
        ``rh_annual`` (year, y, x; g C m-2 yr-1; ``nee_annual`` = sum of the months =
        ``rh_annual - npp_annual``), ``nee_trend`` (y, x; the planted trend, g C m-2 yr-2),
        ``landuse`` (year, y, x; 0 outside), ``zones`` (y, x; 0 none, 1 restoration,
        2 urbanising, 3 high-carbon mountain) and ``region_mask`` (y, x; bool).

    Raises
    ------
    InputDataError
        If the file does not exist or lacks a truth variable.
    """
    if isinstance(path, FluxStudyFiles):
        path = path.truth
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"open_flux_truth: {path} not found; expected the flux_truth.nc written by "
            "synthetic.make_flux_study (FluxStudyFiles.truth)."
        )
    import rioxarray  # noqa: F401  registers the .rio accessor

    ds = xr.open_dataset(path, engine=netcdf_engine(), decode_coords="all")
    if ds.rio.crs is not None:
        ds = ds.rio.write_crs(ds.rio.crs)
    required = ["nee", "gpp", "reco", "nee_annual", "npp_annual", "rh_annual", "nee_trend",
                "zones", "region_mask"]
    missing = [v for v in required if v not in ds]
    if missing:
        raise InputDataError(
            f"open_flux_truth: {path} lacks {missing}; expected a flux_truth.nc written by "
            "synthetic.make_flux_study. Regenerate the study."
        )
    return ds
