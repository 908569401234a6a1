"""Paired above-/below-ground biomass records with a planted root-to-shoot relation.

A small, honest stand-in for a table of in-situ root/shoot records, so the below-ground
random forest (:mod:`terracarbon.carbon.belowground`) can be tested against a known truth:
:func:`make_root_shoot_records` (plots) and :func:`make_root_shoot_maps` (a covariate grid
with the noise-free truth), both from the same environment and relation.

Where real records come from
----------------------------
* Luo, Y., Zhang, X., Wang, X. & Lu, F. (2014) Biomass and its allocation of Chinese forest
  ecosystems. *Ecology* 95(7): 2026 (data paper, Ecological Archives): 1,607 entries from
  348 sites in China's forests (literature 1978-2008) with tree-layer stem, branch, leaf and
  root biomass, climate and stand description. Analysed for root:shoot ratios in Luo, Y.,
  Wang, X., Zhang, X., Booth, T. H. & Lu, F. (2012) Root:shoot ratios across China's
  forests: forest type and climatic effects. *Forest Ecology and Management* 269: 19-25.
* Wang, L. et al. (2014) Biomass allocation patterns across China's terrestrial biomes.
  *PLoS ONE* 9(4): e93566: 2,088 root/shoot pairs (forests, shrublands, grasslands; median
  ratios 0.23, 0.73 and 6.0).
* Mokany, K., Raison, R. J. & Prokushkin, A. S. (2006) Critical analysis of root:shoot ratios
  in terrestrial biomes. *Global Change Biology* 12(1): 84-96: 786 collated observations
  screened for root-sampling method (the basis of IPCC 2006 Table 4.4).
* Global compilations with forest root biomass: Huang, Y. et al. (2021) A global map of root
  biomass across the world's forests. *Earth System Science Data* 13: 4263
  (doi:10.5194/essd-13-4263-2021), and the root-mass-fraction database of Ma, H. et al.
  (2021) The global distribution and environmental drivers of aboveground versus belowground
  plant biomass. *Nature Ecology & Evolution* (trees, shrubs and grasses).

Put such records in a table with the columns below (biomass in t d.m. ha-1, the same
covariate names and units as the study's cube, plot coordinates in metres of the grid CRS
for spatial-block CV) and pass it to :func:`terracarbon.carbon.belowground.fit_belowground_rf`.

The planted relation
--------------------
Region: ``width_km x height_km`` (default 600 x 400 km) in UTM 49N, normalised coordinates
``u`` (0 west .. 1 east) and ``v`` (0 north .. 1 south).

* ``dem = 150 + 1500 exp(-((u - 0.3)^2 + (v - 0.35)^2) / (2 * 0.13^2)) + 500 u (1 - v)`` (m)
* ``temperature = 24 - 7 (1 - v) - 0.0065 dem`` (degC)
* ``precipitation = 800 + 1000 u + 0.25 dem`` (mm yr-1)
* ``forest_type``: 3 coniferous where ``temperature < 11`` or ``dem > 1300``, else 1
  evergreen broadleaf where ``temperature >= 17``, else 2 deciduous broadleaf where
  ``precipitation < 1300``, else 4 mixed; 8 % of plots get another type at random.
* ``log AGB = log 80 + 0.45 (P - 1400) / 600 + 0.25 (T - 15) / 6 + s + e`` with a site effect
  ``s ~ N(0, 0.35)`` and a plot effect ``e ~ N(0, 0.45)`` (AGB in t d.m. ha-1, clipped to
  5-600).
* **root-to-shoot ratio** (Mokany-type allometry modulated by climate)::

      RS = a[forest_type] * AGB ** (b - 1) * exp(c_T (T - 15)) * exp(c_P (P - 1400) / 1000)

  with ``a = {1: 0.46, 2: 0.56, 3: 0.52, 4: 0.50}``, ``b = 0.89``, ``c_T = -0.015`` per degC,
  ``c_P = -0.15`` per 1000 mm (:data:`TRUE_RELATION`).
* ``BGB = RS * AGB * exp(sigma * z - sigma^2 / 2)``, ``z ~ N(0, 1)``: mean-preserving lognormal
  noise (``sigma = noise_sd``, default 0.15) on every record.

Plots sit in sites (``plots_per_site``, within 2 km of the site centre), so spatial-block CV
holds out whole sites. Each random component has its own stream ``default_rng([seed, k])``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import check_int
from terracarbon.conventions import CARBON_FRACTION_OF_BIOMASS
from terracarbon.data import io
from terracarbon.errors import ParameterError

TRUE_RELATION: dict[str, Any] = {
    "a": {1: 0.46, 2: 0.56, 3: 0.52, 4: 0.50},
    "b": 0.89,
    "c_temperature_per_degC": -0.015,
    "c_precipitation_per_1000mm": -0.15,
    "temperature_ref_degC": 15.0,
    "precipitation_ref_mm": 1400.0,
    "formula": "RS = a[forest_type] * AGB**(b-1) * exp(c_T*(T-15)) * exp(c_P*(P-1400)/1000)",
}
"""Parameters of the planted root-to-shoot relation (AGB in t d.m. ha-1)."""

FOREST_TYPES: dict[int, str] = {1: "evergreen_broadleaf", 2: "deciduous_broadleaf",
                                3: "coniferous", 4: "mixed"}
CRS = "EPSG:32649"
ORIGIN_XY = (300_000.0, 2_900_000.0)
"""Upper-left corner of the region, m in :data:`CRS` (UTM 49N)."""

COLUMN_UNITS: dict[str, str] = {
    "x": "m", "y": "m", "agb_t_ha": "t ha-1", "bgb_t_ha": "t ha-1", "temperature": "degC",
    "precipitation": "mm yr-1", "dem": "m", "forest_type": "1", "true_ratio": "1",
    "true_bgb_t_ha": "t ha-1",
}
"""Units of the record table's columns (biomass is dry matter)."""

_STREAMS = {"sites": 1, "plots": 2, "agb": 3, "type": 4, "noise": 5, "grid": 6}


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAMS[name]])


def environment(u: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """``dem`` (m), ``temperature`` (degC), ``precipitation`` (mm yr-1) at normalised (u, v).

    >>> {k: round(float(x), 1) for k, x in environment(np.array(0.0), np.array(1.0)).items()}
    {'dem': 150.0, 'temperature': 23.0, 'precipitation': 837.5}
    """
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    dem = (150.0 + 1500.0 * np.exp(-((u - 0.3) ** 2 + (v - 0.35) ** 2) / (2 * 0.13 ** 2))
           + 500.0 * u * (1.0 - v))
    temperature = 24.0 - 7.0 * (1.0 - v) - 0.0065 * dem
    precipitation = 800.0 + 1000.0 * u + 0.25 * dem
    return {"dem": dem, "temperature": temperature, "precipitation": precipitation}


def forest_type_of(temperature: np.ndarray, precipitation: np.ndarray,
                   dem: np.ndarray) -> np.ndarray:
    """The forest type (1..4, :data:`FOREST_TYPES`) the environment implies."""
    t, p, d = (np.asarray(a, dtype=np.float64) for a in (temperature, precipitation, dem))
    return np.where((t < 11) | (d > 1300), 3,
                    np.where(t >= 17, 1, np.where(p < 1300, 2, 4))).astype(np.int16)


def _mean_log_agb(temperature: np.ndarray, precipitation: np.ndarray) -> np.ndarray:
    return (np.log(80.0) + 0.45 * (precipitation - 1400.0) / 600.0
            + 0.25 * (temperature - 15.0) / 6.0)


def true_ratio(agb_t_ha: Any, temperature: Any, precipitation: Any,
               forest_type: Any) -> np.ndarray:
    """The planted root-to-shoot ratio (:data:`TRUE_RELATION`); NaN for unknown types.

    >>> round(float(true_ratio(100.0, 15.0, 1400.0, 1)), 4)  # 0.46 * 100 ** -0.11
    0.2772
    """
    rel = TRUE_RELATION
    agb = np.asarray(agb_t_ha, dtype=np.float64)
    ft = np.asarray(forest_type)
    a = np.full(np.broadcast_shapes(agb.shape, ft.shape), np.nan)
    for code, value in rel["a"].items():
        a = np.where(ft == code, value, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * np.power(agb, rel["b"] - 1.0)
                * np.exp(rel["c_temperature_per_degC"]
                         * (np.asarray(temperature) - rel["temperature_ref_degC"]))
                * np.exp(rel["c_precipitation_per_1000mm"]
                         * (np.asarray(precipitation) - rel["precipitation_ref_mm"]) / 1000.0))


def _check_region(width_km: Any, height_km: Any) -> tuple[float, float]:
    for name, value in (("width_km", width_km), ("height_km", height_km)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ParameterError(f"{name}={value!r}: expected a positive size in km.")
    return float(width_km), float(height_km)


def make_root_shoot_records(
    n_plots: int = 400,
    *,
    seed: int = 0,
    plots_per_site: int = 4,
    noise_sd: float = 0.15,
    width_km: float = 600.0,
    height_km: float = 400.0,
) -> pd.DataFrame:
    """Paired AGB/BGB plot records with covariates and the planted truth.

    Parameters
    ----------
    n_plots : int, default 400
        Number of records (plots).
    seed : int, default 0
        Seed of every random component (same seed, same table).
    plots_per_site : int, default 4
        Plots per site (a site's plots lie within 2 km of its centre).
    noise_sd : float, default 0.15
        ``sigma`` of the mean-preserving lognormal noise on BGB (0 = the truth itself).
    width_km, height_km : float
        Size of the region.

    Returns
    -------
    pandas.DataFrame
        One row per plot: ``plot_id``, ``site_id``, ``x``, ``y`` (m, UTM 49N), ``agb_t_ha``,
        ``bgb_t_ha`` (t d.m. ha-1), ``temperature`` (degC), ``precipitation`` (mm yr-1),
        ``dem`` (m), ``forest_type`` (1..4), ``true_ratio`` (noise-free RS) and
        ``true_bgb_t_ha``. ``df.attrs`` holds ``units`` (per column), ``crs``,
        ``relation`` and ``history``.

    Raises
    ------
    ParameterError
        Non-positive counts or sizes, negative ``noise_sd``.

    >>> df = make_root_shoot_records(8, seed=1)
    >>> df.shape, bool((df.bgb_t_ha > 0).all())
    ((8, 12), True)
    """
    n = check_int(n_plots, name="n_plots", minimum=2)
    per_site = check_int(plots_per_site, name="plots_per_site", minimum=1)
    if isinstance(noise_sd, bool) or not isinstance(noise_sd, (int, float)) or noise_sd < 0:
        raise ParameterError(f"noise_sd={noise_sd!r}: expected a log-scale s.d. >= 0, e.g. 0.15.")
    width, height = _check_region(width_km, height_km)
    n_sites = -(-n // per_site)
    site_uv = _rng(seed, "sites").uniform(0.03, 0.97, size=(n_sites, 2))
    site = np.repeat(np.arange(n_sites), per_site)[:n]
    rng = _rng(seed, "plots")
    radius_km = 2.0 * np.sqrt(rng.uniform(size=n))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    u = np.clip(site_uv[site, 0] + radius_km * np.cos(angle) / width, 0, 1)
    v = np.clip(site_uv[site, 1] + radius_km * np.sin(angle) / height, 0, 1)
    env = environment(u, v)
    ft = forest_type_of(env["temperature"], env["precipitation"], env["dem"])
    rng_t = _rng(seed, "type")
    flip = rng_t.uniform(size=n) < 0.08
    ft = np.where(flip, rng_t.integers(1, 5, size=n), ft).astype(np.int16)
    rng_a = _rng(seed, "agb")
    site_effect = rng_a.normal(0.0, 0.35, size=n_sites)[site]
    log_agb = (_mean_log_agb(env["temperature"], env["precipitation"]) + site_effect
               + rng_a.normal(0.0, 0.45, size=n))
    agb = np.clip(np.exp(log_agb), 5.0, 600.0)
    ratio = true_ratio(agb, env["temperature"], env["precipitation"], ft)
    true_bgb = ratio * agb
    z = _rng(seed, "noise").normal(size=n)
    bgb = true_bgb * np.exp(noise_sd * z - noise_sd ** 2 / 2.0)
    x0, y0 = ORIGIN_XY
    df = pd.DataFrame({
        "plot_id": [f"RS{i:05d}" for i in range(n)],
        "site_id": [f"S{s:04d}" for s in site],
        "x": x0 + u * width * 1000.0, "y": y0 - v * height * 1000.0,
        "agb_t_ha": agb, "bgb_t_ha": bgb,
        "temperature": env["temperature"], "precipitation": env["precipitation"],
        "dem": env["dem"], "forest_type": ft.astype(np.int64),
        "true_ratio": ratio, "true_bgb_t_ha": true_bgb,
    })
    df.attrs = {
        "units": dict(COLUMN_UNITS), "crs": CRS, "relation": TRUE_RELATION["formula"],
        "history": io.history_line("synthetic.make_root_shoot_records", n_plots=n, seed=seed,
                                   plots_per_site=per_site, noise_sd=noise_sd),
    }
    return df


def make_root_shoot_maps(
    ny: int = 80,
    nx: int = 120,
    *,
    seed: int = 0,
    width_km: float = 600.0,
    height_km: float = 400.0,
    carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
) -> xr.Dataset:
    """A covariate grid over the same region, with the noise-free below-ground truth.

    Parameters
    ----------
    ny, nx : int
        Grid size (pixels of ``height_km / ny`` by ``width_km / nx``).
    seed : int
        Seed of the AGB field's smooth noise.
    width_km, height_km : float
        Size of the region (as :func:`make_root_shoot_records`).
    carbon_fraction : float
        Carbon per dry biomass, for the carbon variables.

    Returns
    -------
    xarray.Dataset
        Dims ``(y, x)`` (pixel centres, m, CRS attached): ``agb`` (t ha-1),
        ``above_carbon_density`` (t C ha-1), ``temperature``, ``precipitation``, ``dem``,
        ``forest_type``, ``landuse`` (all 1, forest), ``true_ratio`` (1) and
        ``true_below_carbon_density`` (t C ha-1, ``true_ratio x above_carbon_density``).

    >>> ds = make_root_shoot_maps(4, 6)
    >>> ds["agb"].shape, ds["true_below_carbon_density"].attrs["units"]
    ((4, 6), 't C ha-1')
    """
    import rioxarray  # noqa: F401  registers .rio
    from scipy.ndimage import gaussian_filter

    ny = check_int(ny, name="ny", minimum=2)
    nx = check_int(nx, name="nx", minimum=2)
    width, height = _check_region(width_km, height_km)
    u = (np.arange(nx) + 0.5) / nx
    v = (np.arange(ny) + 0.5) / ny
    uu, vv = np.meshgrid(u, v)
    env = environment(uu, vv)
    ft = forest_type_of(env["temperature"], env["precipitation"], env["dem"])
    field = gaussian_filter(_rng(seed, "grid").normal(size=(ny, nx)), sigma=max(ny, nx) / 25,
                            mode="reflect")
    field = (field - field.mean()) / (field.std() or 1.0)
    agb = np.clip(np.exp(_mean_log_agb(env["temperature"], env["precipitation"])
                         + 0.45 * field), 5.0, 600.0)
    ratio = true_ratio(agb, env["temperature"], env["precipitation"], ft)
    x0, y0 = ORIGIN_XY
    dx, dy = width * 1000.0 / nx, height * 1000.0 / ny
    coords = {"y": y0 - dy * (np.arange(ny) + 0.5), "x": x0 + dx * (np.arange(nx) + 0.5)}

    def layer(values: np.ndarray, units: str, long_name: str, dtype: Any = np.float32
              ) -> xr.DataArray:
        return xr.DataArray(values.astype(dtype), dims=("y", "x"), coords=coords,
                            attrs={"units": units, "long_name": long_name})

    agc = agb * carbon_fraction
    ds = xr.Dataset({
        "agb": layer(agb, "t ha-1", "above-ground dry biomass density"),
        "above_carbon_density": layer(agc, "t C ha-1", "above-ground biomass carbon density"),
        "temperature": layer(env["temperature"], "degC", "mean annual air temperature"),
        "precipitation": layer(env["precipitation"], "mm yr-1", "annual precipitation"),
        "dem": layer(env["dem"], "m", "elevation"),
        "forest_type": layer(ft, "1", "forest type", np.int16),
        "landuse": layer(np.ones((ny, nx)), "1", "land use", np.int16),
        "true_ratio": layer(ratio, "1", "planted root-to-shoot ratio"),
        "true_below_carbon_density": layer(ratio * agc, "t C ha-1",
                                           "planted below-ground biomass carbon density"),
    })
    ds.attrs = {"relation": TRUE_RELATION["formula"],
                "history": io.history_line("synthetic.make_root_shoot_maps", ny=ny, nx=nx,
                                           seed=seed, carbon_fraction=carbon_fraction)}
    return ds.rio.write_crs(CRS)
