"""Survey plots (field plots) of the synthetic study: sites, revisits, noise, outliers.

Sites are drawn per plot year, weighted by that year's land use, and measured with
multiplicative noise; a share of the sites are permanent plots, remeasured at every campaign
(``revisit_share``), as national forest inventories remeasure theirs every 5-10 years; a few values are recorded x10 (a unit slip) and a few sites lie outside
the grid, for the data-prep stage to find. The sampling model is documented in the package
docstring (:mod:`terracarbon.data.synthetic`, "Plots").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from terracarbon.data.synthetic.fields import by_landuse
from terracarbon.data.synthetic.noise import STREAMS, Grid, random_stream

# Relative chance of a site per land-use class: vegetation sites favour forest, soil sites
# avoid water and built-up land.
_VEG_PLOT_WEIGHT = by_landuse({"forest": 3.0, "shrub": 2.0, "grassland": 1.5, "cropland": 1.0,
                               "wetland": 0.5, "water": 0.0, "built-up": 0.05, "bare": 0.3})
_SOIL_PLOT_WEIGHT = by_landuse({"forest": 2.0, "shrub": 1.5, "grassland": 1.2, "cropland": 1.5,
                                "wetland": 0.5, "water": 0.0, "built-up": 0.05, "bare": 0.5})


def make_plots(grid: Grid, static: dict[str, Any], truth: dict[str, np.ndarray],
               args: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The survey plots and their truth.

    Parameters
    ----------
    grid : Grid
        The study grid.
    static : dict
        From :func:`~terracarbon.data.synthetic.fields.static_fields` (``region``,
        ``polygon_xy``).
    truth : dict
        From :func:`~terracarbon.data.synthetic.fields.annual_fields` (``veg``, ``soil``,
        ``landuse`` by year index).
    args : dict
        Validated arguments of ``make_study`` (``seed``, plot counts, ``plot_years``).

    Returns
    -------
    plots : pandas.DataFrame
        ``plot_id, lon, lat, year, veg_carbon_t_ha, soil_carbon_t_ha`` as written to
        ``plots.csv`` (WGS84; t C ha-1 with noise and outliers, rounded to 0.001).
    plots_truth : pandas.DataFrame
        Per plot: grid position (``x, y`` in m, ``row, col``, -1 outside), ``outside_grid``,
        true and measured values (t C ha-1), the outlier flags and ``permanent`` (the
        site is remeasured at every campaign).
    """
    inside_idx = np.flatnonzero(static["region"].ravel())

    def pick(k: int, weights: np.ndarray, n: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        lu_k = truth["landuse"][k].ravel()[inside_idx]
        p = weights[lu_k]
        if p.sum() == 0:
            p = np.ones_like(p)
        chosen = rng.choice(inside_idx, n, p=p / p.sum())
        return np.divmod(chosen, grid.nx)

    def truth_at(year_index: np.ndarray, rows: np.ndarray,
                 cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (truth["veg"][year_index, rows, cols].astype(float),
                truth["soil"][year_index, rows, cols].astype(float))

    return survey(grid, static["polygon_xy"], args, pick, truth_at)


SitePicker = Callable[[int, np.ndarray, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""``pick(year_index, weights_by_landuse, n, rng) -> (rows, cols)``: ``n`` pixels inside the
region drawn with chance proportional to ``weights_by_landuse[landuse]`` in that year."""

TruthLookup = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``truth_at(year_index, rows, cols) -> (veg, soil)``: true densities (t C ha-1) at pixels;
edge pixels are read without the region mask (the outside plots' values)."""


def survey(grid: Grid, polygon_xy: Any, args: dict[str, Any], pick: SitePicker,
           truth_at: TruthLookup) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The survey of :func:`make_plots` with the site draw and truth lookup passed in, so the
    in-memory and the streaming generator share one sampling design (and random order)."""
    import shapely
    from pyproj import Transformer

    rng = random_stream(args["seed"], STREAMS["plots"])
    n_veg, n_soil = site_counts(args)
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
    permanent = _permanent_sites(args, outside)
    site_year[permanent] = plot_years.min()  # placed by the first campaign's land use
    year_index = np.searchsorted(grid.years, site_year)

    rows = np.zeros(n_sites, np.int64)
    cols = np.zeros(n_sites, np.int64)
    for k in np.unique(year_index):  # one draw per plot year and site kind
        for weights, kind in ((_VEG_PLOT_WEIGHT, has_veg), (_SOIL_PLOT_WEIGHT, ~has_veg)):
            sel = np.flatnonzero((year_index == k) & kind & ~outside)
            if sel.size == 0:
                continue
            rows[sel], cols[sel] = pick(int(k), weights, sel.size, rng)
    jitter = rng.uniform(-0.4, 0.4, size=(n_sites, 2))
    x = grid.x0 + (cols + 0.5 + jitter[:, 0]) * grid.pixel_size
    y = grid.y0 - (rows + 0.5 + jitter[:, 1]) * grid.pixel_size
    # A jittered point in an edge pixel can leave the polygon: fall back to the pixel centre.
    centre_x = grid.x0 + (cols + 0.5) * grid.pixel_size
    centre_y = grid.y0 - (rows + 0.5) * grid.pixel_size
    stray = ~outside & ~shapely.contains_xy(polygon_xy, x, y)
    x[stray], y[stray] = centre_x[stray], centre_y[stray]

    x_out, y_out, r_out, c_out = _outside_positions(grid, rng, int(outside.sum()))
    x[outside], y[outside], rows[outside], cols[outside] = x_out, y_out, r_out, c_out

    # one row per visit: a permanent site at every campaign, any other site once
    visits = np.where(permanent, plot_years.size, 1)
    site = np.repeat(np.arange(n_sites), visits)
    site_year = np.where(permanent[site], _visit_years(plot_years, visits), site_year[site])
    year_index = np.searchsorted(grid.years, site_year)
    has_veg, has_soil, outside = has_veg[site], has_soil[site], outside[site]
    x, y, rows, cols = x[site], y[site], rows[site], cols[site]
    n_rows = site.size
    veg_true, soil_true = truth_at(year_index, rows, cols)
    veg = np.where(has_veg, veg_true * np.exp(0.1 * rng.standard_normal(n_rows)), np.nan)
    soil = np.where(has_soil, soil_true * np.exp(0.1 * rng.standard_normal(n_rows)), np.nan)
    veg_out, soil_out = _plant_outliers(
        random_stream(args["seed"], STREAMS["outliers"]), veg, soil, ~outside, args["n_outliers"]
    )

    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    plot_id = np.array([f"P{i:05d}" for i in range(1, n_sites + 1)])[site]
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
        "permanent": permanent[site],
    })
    return plots, plots_truth


def site_counts(args: dict[str, Any]) -> tuple[int, int]:
    """Vegetation and soil sites that give ``n_veg_plots`` / ``n_soil_plots`` measurements.

    A permanent site is measured at each of the ``C`` campaigns (``plot_years``), any other
    site once, so with a share ``s`` of permanent sites ``n`` measurements need
    ``round(n / (1 + s (C - 1)))`` sites: the number of measurements, and so the cost of
    training, does not depend on the design.
    """
    scale = 1.0 + args.get("revisit_share", 0.0) * (len(args["plot_years"]) - 1)
    return (int(round(args["n_veg_plots"] / scale)), int(round(args["n_soil_plots"] / scale)))


def _permanent_sites(args: dict[str, Any], outside: np.ndarray) -> np.ndarray:
    """The sites remeasured at every campaign: a ``revisit_share`` of the sites inside the
    grid, drawn from their own random stream (so a study without revisits keeps its plots)."""
    permanent = np.zeros(outside.size, bool)
    share = args.get("revisit_share", 0.0)
    if share > 0 and len(args["plot_years"]) > 1:
        inside = np.flatnonzero(~outside)
        n = int(round(share * outside.size))
        chosen = random_stream(args["seed"], STREAMS["revisits"]).choice(
            inside, min(n, inside.size), replace=False)
        permanent[chosen] = True
    return permanent


def _visit_years(plot_years: np.ndarray, visits: np.ndarray) -> np.ndarray:
    """Per visit row: the campaign year of that visit (rows of a site are consecutive)."""
    first = np.repeat(np.cumsum(visits) - visits, visits)
    return np.sort(plot_years)[np.minimum(np.arange(visits.sum()) - first, plot_years.size - 1)]


def _outside_positions(grid: Grid, rng: np.random.Generator,
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
