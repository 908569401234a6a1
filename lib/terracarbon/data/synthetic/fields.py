"""The fields of the synthetic study: boundary, zones, terrain, water, land use, climate,
vegetation indices and the true carbon densities.

:func:`static_fields` draws everything that does not change with the year (the region, the
planted zones, DEM and slope, water, the first year's land use and its planned changes, soil
and vegetation types, the per-pixel residual patterns); :func:`annual_fields` walks the years
and returns the truth cubes, handing each year's layers to a writer as they come so the whole
stack of covariates is never held in memory. The formulas are documented in the package
docstring (:mod:`terracarbon.data.synthetic`); the constants below are their coefficients.

Land-use codes are those of :data:`terracarbon.conventions.LANDUSE`; per-class coefficients
are given by class name and turned into arrays indexed by code (:func:`by_landuse`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from terracarbon.conventions import LANDUSE
from terracarbon.data.synthetic.noise import (
    STREAMS,
    YEAR_STREAM_BASE,
    Grid,
    noise,
    random_stream,
)

FOREST, SHRUB, GRASS, CROP, WETLAND, WATER, BUILT, BARE = (
    LANDUSE.code_of(name)
    for name in ("forest", "shrub", "grassland", "cropland", "wetland", "water", "built-up",
                 "bare")
)
"""Land-use codes the generator draws (:data:`terracarbon.conventions.LANDUSE`)."""

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


def by_landuse(values: Mapping[str, Any], dtype: Any = float) -> np.ndarray:
    """Array indexed by land-use code from ``{class name: value}``; index 0 (nodata) is 0.

    Every class of :data:`~terracarbon.conventions.LANDUSE` must be given, so a class added
    there cannot silently get a coefficient of 0.

    >>> by_landuse({"forest": 1, "shrub": 1, "grassland": 0, "cropland": 0, "wetland": 0,
    ...             "water": 0, "built-up": 0, "bare": 0}, bool).nonzero()[0].tolist()
    [1, 2]
    """
    missing = [name for name in LANDUSE.names if name not in values]
    if missing:
        raise ValueError(f"by_landuse: no value for land-use classes {missing}")
    table = np.zeros(max(LANDUSE.codes) + 1, dtype=dtype)
    for name, value in values.items():
        table[LANDUSE.code_of(name)] = value
    return table


# Per-class coefficients of the generative model (see the package docstring).
_NDVI_BY_CLASS = by_landuse({"forest": 0.80, "shrub": 0.68, "grassland": 0.55, "cropland": 0.58,
                             "wetland": 0.50, "water": 0.02, "built-up": 0.18, "bare": 0.10})
_VEG_BASE_T_HA = by_landuse({"forest": 75.0, "shrub": 22.0, "grassland": 6.0, "cropland": 6.0,
                             "wetland": 12.0, "water": 0.0, "built-up": 1.0, "bare": 0.5})
_SOIL_LANDUSE_FACTOR = by_landuse({"forest": 1.15, "shrub": 1.05, "grassland": 1.0,
                                   "cropland": 0.85, "wetland": 1.4, "water": 0.0,
                                   "built-up": 0.5, "bare": 0.45})
_DRYNESS = by_landuse({"forest": 0, "shrub": 0, "grassland": 0, "cropland": 0.5, "wetland": 0,
                       "water": 0, "built-up": 1.0, "bare": 1.0})
_VEGETATED = by_landuse({"forest": 1, "shrub": 1, "grassland": 1, "cropland": 1, "wetland": 1,
                         "water": 0, "built-up": 0, "bare": 0}, bool)
_WOODY = by_landuse({"forest": 1, "shrub": 1, "grassland": 0, "cropland": 0, "wetland": 0,
                     "water": 0, "built-up": 0, "bare": 0}, bool)
# Vegetation type of the non-forest classes (forest is split by elevation in _veg_type).
_VEG_TYPE_BY_CLASS = by_landuse({"forest": 0, "shrub": 4, "grassland": 5, "cropland": 6,
                                 "wetland": 7, "water": 8, "built-up": 8, "bare": 8}, np.int16)
# Soil carbon base (t C ha-1) by soil-type code (index 0 unused).
_SOIL_BASE_T_HA = np.array([0, 50.0, 62.0, 72.0, 80.0, 58.0, 48.0, 45.0, 0.0])

_VEG_NDVI_ELASTICITY = 2.5
"""d ln(vegetation carbon) / d ln(NDVI) along stand maturity (``m^1.5`` vs ``m^0.6``)."""

NDVI_GROWTH_PER_YEAR = 0.0032
"""Greening of vegetated pixels per year. Woody carbon grows 0.008 / yr and, across pixels,
carbon scales as NDVI^2.5 (``m^1.5`` vs ``m^0.6``); 0.008 / 2.5 keeps the temporal signal in
NDVI consistent with the cross-sectional one, so a model calibrated at the plot years can
map other years (a real-world assumption of every multi-year carbon map)."""

# Layout of the planted features, in normalised (u, v) positions and shorter-side units.
_REGION_COVER = 0.78
_RESTORATION_CENTRE, _RESTORATION_RADIUS, _AFFORESTED_SHARE = (0.70, 0.42), 0.14, 0.8
_CITY_CENTRE, _CITY_R0, _CITY_R1 = (0.40, 0.70), 0.05, 0.14
_MOUNTAIN_CENTRE, _MOUNTAIN_SIGMA = (0.30, 0.31), 0.07
_RIDGE = ((0.08, 0.45), (0.62, 0.12))

YearWriter = Callable[[int, dict[str, np.ndarray]], None]
"""``write(year, {layer: values})``: receives each year's annual layers as they are made."""


# --------------------------------------------------------------------------- static fields


def static_fields(grid: Grid, seed: int, *, region_share: float = 0.78) -> dict[str, Any]:
    """Everything that does not change with the year, as ``(y, x)`` arrays on ``grid``.

    ``region_share`` is the share of the grid rectangle the study polygon covers.

    Keys: ``polygon_lonlat`` / ``polygon_xy`` (the boundary, shapely), ``region`` (bool),
    ``bump`` (mountain bump 0..1), ``zones`` (int8, :data:`ZONES`), ``city_distance`` and
    ``urbanising`` (the spreading city), ``water`` (bool), ``dem`` (m), ``slope`` (degree),
    ``landuse0`` (first-year land use), ``afforest_index`` (year index of afforestation, -1
    never) and ``afforest_class``, ``soil_type``, ``veg_type``, and the residual patterns
    ``rho_v``, ``rho_s``, ``ndvi_residual`` (N(0.03), N(0.03), N(0.04)).
    """
    polygon_lonlat, polygon_xy, region = _region(grid, random_stream(seed, STREAMS["boundary"]),
                                                 region_share)
    rng_zone = random_stream(seed, STREAMS["zones"])
    bump = np.exp(-grid.distance(_MOUNTAIN_CENTRE) ** 2 / (2 * _MOUNTAIN_SIGMA**2))
    mountain = bump + 0.1 * noise(grid, rng_zone, 0.02) > 0.5
    restoration = (
        grid.distance(_RESTORATION_CENTRE) / _RESTORATION_RADIUS
        + 0.2 * noise(grid, rng_zone, 0.04)
        < 1.0
    )
    city_distance = grid.distance(_CITY_CENTRE) * (1.0 + 0.15 * noise(grid, rng_zone, 0.05))

    water, river_distance = _water(grid, random_stream(seed, STREAMS["river"]))
    dem = _dem(grid, random_stream(seed, STREAMS["dem"]), bump, river_distance)
    lakes = (noise(grid, random_stream(seed, STREAMS["river"] + 100), 0.02) > 2.4) & (dem < 120)
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
        grid, random_stream(seed, STREAMS["landuse"]), dem, river_distance, water, mountain,
        restoration, city_distance, random_stream(seed, STREAMS["towns"]),
    )
    zones[(zones == 2) & (landuse0 == BUILT)] = 0  # towns inside the ring do not change
    soil_type = _soil_type(grid, random_stream(seed, STREAMS["soil"]), dem, landuse0,
                           river_distance, water)
    rng_res = random_stream(seed, STREAMS["residual"])
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
        "rho_v": noise(grid, rng_res, 0.03),
        "rho_s": noise(grid, rng_res, 0.03),
        "ndvi_residual": noise(grid, rng_res, 0.04),
    }


def _region(grid: Grid, rng: np.random.Generator,
            cover: float = _REGION_COVER) -> tuple[Any, Any, np.ndarray]:
    """The study polygon (lon/lat and grid CRS) and its pixel-centre mask (``cover``: the share
    of the rectangle inside the polygon)."""
    poly_lonlat, poly_back = region_polygon(grid, rng, cover)
    from rasterio import features

    region = features.rasterize(
        [(poly_back, 1)], out_shape=grid.shape, transform=grid.transform, fill=0,
        all_touched=False, dtype="uint8",
    ).astype(bool)
    return poly_lonlat, poly_back, region


def region_polygon(grid: Grid, rng: np.random.Generator,
                   cover: float = _REGION_COVER) -> tuple[Any, Any]:
    """The study polygon in lon/lat and projected back to the grid CRS (the mask's source).

    A star-shaped polygon around the grid centre (package docstring, "Boundary") whose radius
    scale is bisected until it covers ``cover`` of the rectangle.
    """
    import shapely
    from pyproj import Transformer

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
        lo, hi = (mid, hi) if polygon(mid).area < cover * width * height else (lo, mid)
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
    return poly_lonlat, poly_back


def _river_half_width_px(grid: Grid) -> float:
    """Half-width of the main river in pixels; wetland and alluvial soil extend in multiples."""
    return max(0.7, 0.004 * grid.ny)


def _water(grid: Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Main river and a northern tributary; returns the water mask and distance to the river."""
    u = grid.u[0]
    wiggle = ndimage.gaussian_filter1d(rng.standard_normal(grid.nx), max(0.05 * grid.nx, 1))
    wiggle /= wiggle.std() or 1.0
    phase = rng.uniform(0, 1)
    v_river = 0.74 + 0.04 * np.sin(2 * np.pi * (1.3 * u + phase)) + 0.02 * wiggle
    half_width_px = _river_half_width_px(grid)
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


def _dem(grid: Grid, rng: np.random.Generator, bump: np.ndarray,
         river_distance: np.ndarray) -> np.ndarray:
    hills = sum(2.0**-i * noise(grid, rng, 0.12 / 2**i) for i in range(4))
    hills = np.clip(0.5 + 0.18 * hills / hills.std(), 0.0, 1.0)
    (u1, v1), (u2, v2) = _RIDGE
    # Distance to the ridge segment, in units of the shorter side.
    px, py = (grid.u - u1) * grid.nx, (grid.v - v1) * grid.ny
    dx, dy = (u2 - u1) * grid.nx, (v2 - v1) * grid.ny
    along = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    ridge_distance = np.hypot(px - along * dx, py - along * dy) / grid.side
    ridge_height = 0.75 + 0.25 * noise(grid, rng, 0.1)
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
    grid: Grid, rng: np.random.Generator, dem: np.ndarray, river_distance: np.ndarray,
    water: np.ndarray, mountain: np.ndarray, restoration: np.ndarray,
    city_distance: np.ndarray, rng_towns: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-year land use, plus the afforestation year index and class in zone 1."""
    z = dem / 1800.0 + 0.12 * noise(grid, rng, 0.05)
    woodland, grass_patch, bare_patch, upland = (
        noise(grid, rng, scale) for scale in (0.04, 0.03, 0.02, 0.03)
    )
    lu = np.full(grid.shape, CROP, np.int16)
    lu[grass_patch > 1.1] = GRASS
    lu[bare_patch > 2.1] = BARE
    lu[woodland > 0.6] = FOREST
    lu[(z > 0.13) & (upland > 0.5)] = GRASS
    lu[(z > 0.13) & (upland <= 0.5)] = SHRUB
    lu[z > 0.19] = FOREST
    lu[(river_distance * grid.side < 4 * _river_half_width_px(grid)) & (dem < 30)
       & (grass_patch > 0)] = WETLAND
    lu[mountain] = FOREST

    degraded = noise(grid, rng, 0.03)
    lu[restoration] = np.where(degraded[restoration] > 0.3, GRASS,
                               np.where(degraded[restoration] < -0.7, BARE, CROP))
    rank_field = 0.7 * noise(grid, rng, 0.03) + 0.3 * rng.standard_normal(grid.shape)
    q = np.zeros(grid.shape)
    idx = np.flatnonzero(restoration)
    q.flat[idx] = (np.argsort(np.argsort(rank_field.flat[idx])) + 0.5) / max(idx.size, 1)
    n_years = grid.years.size
    afforest_index = np.full(grid.shape, -1, np.int32)  # year index of conversion, -1 never
    converts = restoration & (q < _AFFORESTED_SHARE)
    afforest_index[converts] = 1 + np.floor(
        q[converts] / _AFFORESTED_SHARE * (n_years - 2)
    ).astype(np.int32)
    afforest_class = np.where(noise(grid, rng, 0.03) > -0.5, FOREST, SHRUB).astype(np.int16)

    lu[city_distance < _CITY_R0] = BUILT
    centres = rng_towns.uniform(0.2, 0.8, size=(4, 2))
    radii = rng_towns.uniform(0.012, 0.02, size=4)
    for (cu, cv), radius in zip(centres, radii, strict=True):  # four towns, not pixels
        town = grid.distance((cu, cv)) < radius
        lu[town & ~mountain & ~restoration & (dem < 250)] = BUILT
    lu[water] = WATER
    return lu, afforest_index, afforest_class


def _soil_type(grid: Grid, rng: np.random.Generator, dem: np.ndarray, landuse0: np.ndarray,
               river_distance: np.ndarray, water: np.ndarray) -> np.ndarray:
    e = dem + 150.0 * noise(grid, rng, 0.05)
    south = grid.v + 0.1 * noise(grid, rng, 0.05) > 0.62
    split = noise(grid, rng, 0.04) > 0
    soil = np.where(e < 300, np.where(south, 1, 2),
                    np.where(e < 800, np.where(split, 2, 3), np.where(e < 1300, 3, 4)))
    soil = soil.astype(np.int16)
    soil[(landuse0 == CROP) & (dem < 200)] = 5
    soil[river_distance * grid.side < 6 * _river_half_width_px(grid)] = 6
    soil[noise(grid, rng, 0.03) > 1.4] = 7
    soil[water] = 8
    return soil


def _veg_type(landuse0: np.ndarray, dem: np.ndarray) -> np.ndarray:
    veg = _VEG_TYPE_BY_CLASS[landuse0]
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


def annual_fields(grid: Grid, static: dict[str, Any], seed: int,
                  write: YearWriter) -> dict[str, np.ndarray]:
    """Climate, indices, land use and truth per year; ``write`` gets each year's layers.

    Returns the truth cubes ``veg``, ``soil`` (float32, t C ha-1) and ``landuse`` (int16),
    each ``(year, y, x)``.
    """
    years = grid.years
    n = years.size
    rng = random_stream(seed, STREAMS["climate"])
    t_pattern = noise(grid, rng, 0.25)
    p_pattern = noise(grid, rng, 0.25)
    p_noise = noise(grid, rng, 0.15)
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
        rng_y = random_stream(seed, YEAR_STREAM_BASE + k)
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
        write(int(year), layers)
    return {"veg": veg_truth, "soil": soil_truth, "landuse": landuse_all}


def _landuse_in_year(grid: Grid, static: dict[str, Any], k: int,
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
