"""The built-in synthetic study area: ordinary input files with a planted, documented truth.

:func:`make_study` writes, deterministically from ``seed``, a study area shaped like a real
subtropical one (default: 800 x 600 pixels of 500 m in UTM zone 49N, roughly Guangdong,
2000-2021) as the same kinds of files a real study starts from:

* ``rasters/<layer>_<year>.tif`` (annual) and ``rasters/<layer>.tif`` (static) GeoTIFFs,
  DEFLATE-compressed; continuous layers float32 with NaN nodata, categorical int16 with 0
  nodata; ``units`` / ``long_name`` in the tags. Every pixel of the rectangle is written;
  the data-prep stage clips to the boundary.
* ``boundary.geojson``: the study region, one polygon in EPSG:4326 (lon/lat).
* ``plots.csv``: survey plots (field plots; ``plot_id, lon, lat, year, veg_carbon_t_ha,
  soil_carbon_t_ha``), WGS84, with measurement noise, a few gross outliers and a handful of
  plots outside the grid.
* ``truth/truth.nc``: the noise-free carbon densities, zones, land use and region mask
  (:func:`open_truth`); ``truth/plots_truth.csv``: for every plot its pixel, its true
  values and whether it is a planted outlier or outside the grid.
* ``study.json``: the arguments, written last; a rerun with the same arguments is skipped.

:func:`data_params` returns the ``data:`` block of a params file that reads these files, so
synthetic and real studies go through the same data-prep code.

Modules: :mod:`.generator` (:func:`make_study`: arguments, orchestration, GeoTIFFs),
:mod:`.layout` (:class:`StudyFiles`, :data:`LAYERS`, :func:`data_params`), :mod:`.fields`
(static and annual fields, land-use dynamics, the class tables :data:`ZONES`,
:data:`SOIL_TYPES`, :data:`VEG_TYPES`), :mod:`.plots` (plot sampling, outliers),
:mod:`.truth` (``truth.nc`` and :func:`open_truth`) and :mod:`.noise` (pixel geometry, random
streams, smooth fields). Everything public is re-exported here: ``tc.synthetic.make_study``.
Grids above 6 M pixels (or ``generation="streaming"``, e.g. ``params/china_1km.yaml``) are
written tile by tile in bounded memory by :mod:`.streaming`, whose docstring lists how its
model differs from the one below; smaller studies are drawn whole, as described here.

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

Land use (codes of ``terracarbon.conventions.LANDUSE``), annual
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

from terracarbon.conventions import LANDUSE_CLASSES
from terracarbon.data.synthetic.fields import (
    BARE,
    BUILT,
    CROP,
    FOREST,
    GRASS,
    NDVI_GROWTH_PER_YEAR,
    SHRUB,
    SOIL_TYPES,
    VEG_TYPES,
    WATER,
    WETLAND,
    ZONES,
)
from terracarbon.data.synthetic.generator import GENERATOR_VERSION, make_study
from terracarbon.data.synthetic.layout import LAYERS, StudyFiles, data_params
from terracarbon.data.synthetic.truth import open_truth
from terracarbon.data.synthetic.flux import (QUICK_FLUX as QUICK_FLUX, FluxStudyFiles as FluxStudyFiles, flux_data_params as flux_data_params, make_flux_study as make_flux_study, open_flux_truth as open_flux_truth)  # noqa: E501, I001

__all__ = [
    "make_study", "open_truth", "data_params", "StudyFiles", "LAYERS", "ZONES", "SOIL_TYPES",
    "VEG_TYPES", "LANDUSE_CLASSES", "NDVI_GROWTH_PER_YEAR", "GENERATOR_VERSION",
    "FOREST", "SHRUB", "GRASS", "CROP", "WETLAND", "WATER", "BUILT", "BARE",
]
