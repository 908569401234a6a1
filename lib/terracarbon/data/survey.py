"""Survey plots (field plots): the sample table and the collinearity of its covariates.

Survey plots, or field plots, are the sites where carbon density was measured on the ground.
This module reads them into the sample table, drops those off the grid or outside the region,
blanks outlying values, extracts the covariates at each plot, adds NPP-ratio pseudo-plots,
and screens the covariates for collinearity (correlation, VIF). (Maps and charts of plots are
drawn by :mod:`terracarbon.viz`, not here.)

The sample table follows ``docs/architecture.md``: one row per plot and year with
``plot_id, year, x, y, veg_carbon_t_ha, soil_carbon_t_ha, row, col, augmented`` and one column
per extracted covariate (units of the cube variable). Every table derived from it carries the
sample table's ``history`` (``df.attrs``) with its own step appended. The public entry point
is :mod:`terracarbon.data.prep`, which re-exports these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from terracarbon.checks import require_columns
from terracarbon.conventions import CARBON_POOLS, DENSITY_UNITS
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

if TYPE_CHECKING:
    from terracarbon.data.grid import GridSpec

log = logging.getLogger(__name__)

POOL_COLUMNS: dict[str, str] = {pool: f"{pool}_carbon_t_ha" for pool in CARBON_POOLS}
"""Carbon pool -> its carbon-density column in the sample table (t C ha-1)."""
TARGET_COLUMNS: tuple[str, ...] = tuple(POOL_COLUMNS.values())
"""Every carbon-density column a sample table can carry (t C ha-1)."""
ALWAYS_COLUMNS: tuple[str, str] = (POOL_COLUMNS["veg"], POOL_COLUMNS["soil"])
"""Pool columns every sample table has (NaN where not measured), as the synthetic survey."""
SAMPLE_COLUMNS: tuple[str, ...] = ("plot_id", "year", "x", "y", *ALWAYS_COLUMNS,
                                   "row", "col", "augmented")
PLOT_KEYS_REQUIRED = ("path", "x_column", "y_column", "crs", "year_column")
PLOT_KEYS = {*PLOT_KEYS_REQUIRED, "id_column",
             *(f"{pool}_{key}" for pool in CARBON_POOLS for key in ("column", "factor"))}
"""Keys of ``data.plots``: ``<pool>_column`` names a measured pool's column (t C ha-1, or
biomass with ``<pool>_factor`` 0.47), for any pool of ``conventions.CARBON_POOLS``."""


def _sample_attrs(grid_crs: Any, **history: Any) -> dict[str, Any]:
    units = {"x": "m", "y": "m", **dict.fromkeys(TARGET_COLUMNS, DENSITY_UNITS),
             "year": "1", "row": "1", "col": "1"}
    return {"units": units, "crs": pyproj.CRS.from_user_input(grid_crs).to_wkt(),
            "history": history_line(**history)}


# -- reading -----------------------------------------------------------------------------

def read_plots(plot_spec: Mapping[str, Any], grid: "GridSpec") -> pd.DataFrame:
    """Read the survey plots (field plots) from CSV into the sample table on the grid's CRS.

    Parameters
    ----------
    plot_spec : mapping
        The params ``data.plots`` block: ``path`` (CSV), ``x_column``/``y_column`` (coordinates
        in ``crs``, e.g. lon/lat degrees for EPSG:4326), ``crs``, ``year_column`` (calendar
        year), optional ``id_column`` (default: ``plot<row number>``), ``veg_column`` and
        ``soil_column`` (t C ha-1; either may be null, not both), optional ``veg_factor`` /
        ``soil_factor`` multiplying the column (e.g. 0.47 to turn biomass into carbon).
    grid : GridSpec
        Target grid; ``x, y`` are reprojected to its CRS (m) and ``row, col`` computed.

    Returns
    -------
    pandas.DataFrame
        Columns ``plot_id`` (str), ``year`` (int), ``x, y`` (m), ``veg_carbon_t_ha``,
        ``soil_carbon_t_ha`` (t C ha-1, NaN where not measured), ``row, col`` (int, -1 outside
        the grid), ``augmented`` (False). ``df.attrs['units']`` maps columns to units.

    Raises
    ------
    InputDataError
        CSV missing; a named column missing (lists the columns present); non-numeric
        coordinates, years or targets; missing coordinates or years.
    ParameterError
        Unknown keys, missing keys, or neither target column given.
    """
    unknown = sorted(set(plot_spec) - PLOT_KEYS)
    missing_keys = [k for k in PLOT_KEYS_REQUIRED if not plot_spec.get(k)]
    if unknown or missing_keys:
        raise ParameterError(
            f"data.plots: unknown keys {unknown}, missing keys {missing_keys}; allowed keys are "
            f"{sorted(PLOT_KEYS)}."
        )
    measured = [pool for pool in CARBON_POOLS if plot_spec.get(f"{pool}_column")]
    if not measured:
        raise ParameterError(
            "data.plots: no pool column; name at least one measured carbon-density column "
            f"({', '.join(f'{p}_column' for p in CARBON_POOLS)})."
        )
    path = Path(plot_spec["path"])
    if not path.exists():
        raise InputDataError(f"plots CSV {str(path)!r} not found; check data.plots.path.")
    table = pd.read_csv(path)
    wanted = [plot_spec[k] for k in ("x_column", "y_column", "year_column", "id_column",
                                     *(f"{p}_column" for p in measured)) if plot_spec.get(k)]
    require_columns(table, wanted, name=f"plots CSV {path.name!r}",
                    fix="Fix the *_column keys of data.plots.")
    x_in = _numeric(table[plot_spec["x_column"]], path, plot_spec["x_column"], allow_nan=False)
    y_in = _numeric(table[plot_spec["y_column"]], path, plot_spec["y_column"], allow_nan=False)
    years = _numeric(table[plot_spec["year_column"]], path, plot_spec["year_column"],
                     allow_nan=False)
    try:
        src_crs = pyproj.CRS.from_user_input(plot_spec["crs"])
    except pyproj.exceptions.CRSError as exc:
        raise ParameterError(
            f"data.plots.crs: cannot interpret {plot_spec['crs']!r} ({exc}); expected e.g. "
            "'EPSG:4326' for lon/lat columns."
        ) from exc
    to_grid = pyproj.Transformer.from_crs(src_crs, grid.crs, always_xy=True)
    x, y = to_grid.transform(x_in, y_in)
    row, col = grid.rowcol(x, y)
    ids = (table[plot_spec["id_column"]].astype(str) if plot_spec.get("id_column")
           else pd.Series([f"plot{i}" for i in range(len(table))]))
    out = pd.DataFrame({
        "plot_id": ids.to_numpy(),
        "year": np.rint(years).astype("int64"),
        "x": np.asarray(x, dtype="float64"), "y": np.asarray(y, dtype="float64"),
    })
    for pool, target in POOL_COLUMNS.items():
        if pool not in measured and target not in ALWAYS_COLUMNS:
            continue
        column = plot_spec.get(f"{pool}_column")
        # e.g. above_factor: 0.47 turns above-ground biomass (t ha-1) into carbon (t C ha-1)
        factor = float(plot_spec.get(f"{pool}_factor") or 1.0)
        out[target] = (factor * _numeric(table[column], path, column, allow_nan=True) if column
                       else np.full(len(table), np.nan))
    out["row"], out["col"], out["augmented"] = row, col, False
    out.attrs = _sample_attrs(grid.crs, function="read_plots", path=path.name, n=len(out))
    return out


def _numeric(series: pd.Series, path: Path, column: str, *, allow_nan: bool) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        raise InputDataError(
            f"plots CSV {path.name!r}: column {column!r} has non-numeric values "
            f"{series[bad].astype(str).unique()[:5].tolist()} "
            f"(rows {bad[bad].index[:5].tolist()}); "
            "clean the CSV."
        )
    if not allow_nan and values.isna().any():
        rows = values.index[values.isna()][:5].tolist()
        raise InputDataError(
            f"plots CSV {path.name!r}: column {column!r} is empty in rows {rows}; every plot "
            "needs coordinates and a year."
        )
    return values.to_numpy(dtype="float64")


def drop_outside(
    samples: pd.DataFrame, grid: "GridSpec", mask: xr.DataArray | np.ndarray | None = None
) -> tuple[pd.DataFrame, int]:
    """Drop plots outside the grid or outside the region mask.

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table with ``x, y`` in the grid CRS (m).
    grid : GridSpec
        Target grid; ``row, col`` are recomputed from ``x, y``.
    mask : bool DataArray or array ``(y, x)``, optional
        ``region_mask``; None keeps every plot on the grid.

    Returns
    -------
    kept : pandas.DataFrame
        The plots inside (index reset), with fresh ``row, col``.
    n_dropped : int
        Number of rows removed.
    """
    require_columns(samples, ["x", "y"], name="samples", fix="Build it with read_plots.")
    row, col = grid.rowcol(samples["x"].to_numpy(), samples["y"].to_numpy())
    inside = row >= 0
    if mask is not None:
        m = np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask, dtype=bool)
        if m.shape != grid.shape:
            raise GridMismatchError(
                f"mask: shape {m.shape} does not match the grid {grid.shape}; pass the cube's "
                "region_mask built on this grid."
            )
        inside &= m[np.where(inside, row, 0), np.where(inside, col, 0)]
    kept = samples.loc[inside].copy()
    kept["row"], kept["col"] = row[inside], col[inside]
    kept = kept.reset_index(drop=True)
    kept.attrs = dict(samples.attrs)
    return kept, int((~inside).sum())


# -- cleaning ----------------------------------------------------------------------------

def remove_outliers(
    samples: pd.DataFrame,
    *,
    sigma: float = 3.0,
    by: Literal["landuse"] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Blank carbon-density values beyond mean ± sigma·sd, per variable (and land-use class).

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table (``veg_carbon_t_ha``/``soil_carbon_t_ha`` in t C ha-1); with
        ``by="landuse"`` it needs the ``landuse`` covariate column (see
        :func:`extract_covariates`).
    sigma : float
        Half-width of the kept band in standard deviations (dimensionless), > 0.
    by : {"landuse"} or None
        Compute mean and sd within each land-use class instead of over all plots.

    Returns
    -------
    kept : pandas.DataFrame
        Copy with outlying values set to NaN; rows left with no target value are dropped.
    report : pandas.DataFrame
        One row per variable and group: ``variable, group, n, mean, sd, lower, upper``
        (t C ha-1) and ``n_removed``.

    Notes
    -----
    One pass, sample standard deviation (ddof = 1). A group with a single value has no sd and
    keeps it. With n values the largest possible z-score is (n-1)/sqrt(n), so a 3σ rule can
    only remove anything in groups of 11 or more values.
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise ParameterError(f"sigma: got {sigma!r}, expected a positive number of sd.")
    if by not in (None, "landuse"):
        raise ParameterError(f"by: got {by!r}, expected None or 'landuse'.")
    targets = [t for t in TARGET_COLUMNS if t in samples.columns]
    if not targets:
        raise InputDataError(
            f"samples: no target column {list(TARGET_COLUMNS)}; build it with read_plots."
        )
    if by is not None:
        require_columns(samples, [by], name="samples", fix="Run extract_covariates first.")
        groups = samples[by]
    else:
        groups = pd.Series("all", index=samples.index)
    kept = samples.copy()
    reports = []
    for var in targets:
        values = kept[var].astype("float64")
        grouped = values.groupby(groups)
        mean, sd = grouped.transform("mean"), grouped.transform("std")
        lower, upper = mean - sigma * sd, mean + sigma * sd
        outlier = values.notna() & ((values < lower) | (values > upper))
        kept.loc[outlier, var] = np.nan
        summary = pd.DataFrame({"n": grouped.count(), "mean": grouped.mean(), "sd": grouped.std()})
        summary["lower"] = summary["mean"] - sigma * summary["sd"]
        summary["upper"] = summary["mean"] + sigma * summary["sd"]
        summary["n_removed"] = outlier.groupby(groups).sum().reindex(summary.index).astype(int)
        summary = summary[summary["n"] > 0].rename_axis("group").reset_index()
        summary.insert(0, "variable", var)
        reports.append(summary)
    has_target = kept[targets].notna().any(axis=1)
    kept = kept.loc[has_target].reset_index(drop=True)
    kept.attrs = dict(samples.attrs)
    report = pd.concat(reports, ignore_index=True)
    report.attrs = {"units": {c: DENSITY_UNITS for c in ("mean", "sd", "lower", "upper")},
                    "history": update_history(history_line("remove_outliers", sigma=sigma,
                                                           by=by), samples),
                    "n_rows_dropped": int((~has_target).sum())}
    return kept, report


# -- covariates --------------------------------------------------------------------------

def _cube_covariates(cube: xr.Dataset, variables: Sequence[str] | None) -> list[str]:
    if variables is None:
        return [str(n) for n, v in cube.data_vars.items()
                if n != "region_mask" and {"y", "x"} <= set(v.dims)
                and set(v.dims) <= {"year", "y", "x"}]
    missing = [v for v in variables if v not in cube.data_vars]
    if missing:
        raise InputDataError(
            f"cube: variables {missing} not found; cube variables are {list(cube.data_vars)}."
        )
    return list(variables)


def _year_index(samples: pd.DataFrame, cube: xr.Dataset) -> np.ndarray:
    cube_years = pd.Index(np.asarray(cube["year"].values, dtype="int64"))
    index = cube_years.get_indexer(samples["year"].to_numpy(dtype="int64"))
    if (index < 0).any():
        plot_years = sorted(set(samples["year"].astype(int)))
        absent = sorted(set(samples["year"].astype(int)) - set(cube_years))
        raise InputDataError(
            f"samples: plot years {absent} are not in the cube (plot years {plot_years}, cube "
            f"years {list(cube_years)}); add those years to data.years or drop those plots."
        )
    return index


def extract_covariates(
    samples: pd.DataFrame, cube: xr.Dataset, *, variables: Sequence[str] | None = None
) -> pd.DataFrame:
    """Add the same-year cube value at each plot's pixel as one column per variable.

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table with ``year, row, col`` on the cube's grid (run :func:`drop_outside`
        first so every row/col is valid).
    cube : xarray.Dataset
        Data-prep cube: annual ``(year, y, x)`` and static ``(y, x)`` variables.
    variables : sequence of str, optional
        Cube variables to extract; default every ``(year,) y, x`` variable but
        ``region_mask``.

    Returns
    -------
    pandas.DataFrame
        Copy of ``samples`` plus one column per variable, in that variable's units
        (``df.attrs['units']``); annual variables taken at the plot's year.

    Raises
    ------
    InputDataError
        Columns missing; a plot year absent from the cube (lists plot and cube years).
    GridMismatchError
        ``row``/``col`` outside the cube.
    """
    require_columns(samples, ["year", "row", "col"], name="samples",
                    fix="Build it with read_plots and drop_outside.")
    names = _cube_covariates(cube, variables)
    rows = samples["row"].to_numpy(dtype="int64")
    cols = samples["col"].to_numpy(dtype="int64")
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    off = (rows < 0) | (rows >= ny) | (cols < 0) | (cols >= nx)
    if off.any():
        raise GridMismatchError(
            f"samples: {int(off.sum())} rows have row/col outside the cube ({ny}x{nx}), e.g. "
            f"index {samples.index[off][:5].tolist()}; call drop_outside(samples, grid, mask) "
            "first."
        )
    annual = [n for n in names if "year" in cube[n].dims]
    point = {"y": xr.DataArray(rows, dims="sample"), "x": xr.DataArray(cols, dims="sample")}
    if annual:
        point_year = dict(point, year=xr.DataArray(_year_index(samples, cube), dims="sample"))
    out = samples.copy()
    units = dict(samples.attrs.get("units", {}))
    for name in names:
        da = cube[name]
        out[name] = np.asarray(da.isel(point_year if name in annual else point).values)
        units[name] = da.attrs.get("units", "")
    out.attrs = dict(samples.attrs, units=units)
    return out


# -- NPP-ratio augmentation --------------------------------------------------------------

def _layer_at(cube: xr.Dataset, name: str, year: int) -> np.ndarray:
    da = cube[name]
    return np.asarray((da.sel(year=year) if "year" in da.dims else da).values)


def _zone_edges(
    cube: xr.Dataset, bins: int | tuple[Sequence[float], Sequence[float]], *,
    temperature: str, precipitation: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Inner bin edges for temperature and precipitation (their cube units)."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ParameterError(f"climate_zone_bins: got {bins}, expected >= 1.")
        q = np.linspace(0, 1, int(bins) + 1)[1:-1]
        mask = cube["region_mask"].values if "region_mask" in cube else True
        edges = []
        for name in (temperature, precipitation):
            values = cube[name].where(mask).values
            edges.append(np.nanquantile(values, q) if q.size else np.array([]))
        return edges[0], edges[1]
    try:
        t_edges, p_edges = (np.sort(np.asarray(e, dtype="float64"))
                            for e in bins)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"climate_zone_bins: got {bins!r}; expected an int (equal-frequency bins per "
            "variable) or a pair (temperature_edges, precipitation_edges)."
        ) from exc
    return t_edges, p_edges


def _zone_keys(cube: xr.Dataset, year: int, t_edges: np.ndarray, p_edges: np.ndarray, *,
               npp: str, temperature: str, precipitation: str, landuse: str) -> np.ndarray:
    """Flat int64 key (climate zone x land-use class) per pixel; -1 where not usable."""
    t = _layer_at(cube, temperature, year)
    p = _layer_at(cube, precipitation, year)
    lu = _layer_at(cube, landuse, year).astype("int64")
    n = _layer_at(cube, npp, year)
    usable = np.isfinite(t) & np.isfinite(p) & (lu > 0) & np.isfinite(n) & (n > 0)
    if "region_mask" in cube:
        usable &= cube["region_mask"].values.astype(bool)
    zone = (np.digitize(t, t_edges) * (p_edges.size + 1) + np.digitize(p, p_edges))
    key = zone * (int(lu.max(initial=0)) + 1) + lu
    return np.where(usable, key, -1).ravel()


def augment_npp_ratio(
    samples: pd.DataFrame,
    cube: xr.Dataset,
    *,
    n_per_site: int,
    climate_zone_bins: int | tuple[Sequence[float], Sequence[float]],
    seed: int,
    max_distance_m: float | None = None,
    targets: Sequence[str] | None = None,
    npp: str = "npp",
    temperature: str = "temperature",
    precipitation: str = "precipitation",
    landuse: str = "landuse",
) -> pd.DataFrame:
    """Add pseudo-plots by the NPP-ratio method (Ningxia study).

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table on the cube's grid (``plot_id, year, x, y, row, col`` and targets in
        t C ha-1). Rows already marked ``augmented`` are not used as sites.
    cube : xarray.Dataset
        Data-prep cube with ``npp`` (g C m-2 yr-1), ``temperature``, ``precipitation`` and
        ``landuse`` (annual or static) and ``region_mask``.
    n_per_site : int
        Pseudo-plots drawn per site (fewer when the zone has fewer candidate pixels).
    climate_zone_bins : int or (temperature_edges, precipitation_edges)
        An int n gives n equal-frequency bins of each climate variable over the region (all
        years pooled), so n*n climate zones; a pair gives explicit inner edges in the cube
        units (degC, mm yr-1).
    seed : int
        Seed of the random draw (``numpy.random.default_rng``).
    max_distance_m : float, optional
        Only pixels whose centre is within this distance of the site (m).
    targets : sequence of str, optional
        Density columns to transfer; default every pool column of ``samples``.
    npp, temperature, precipitation, landuse : str
        Cube variable names.

    Returns
    -------
    pandas.DataFrame
        ``samples`` (``augmented`` False) followed by the pseudo-plots (``augmented`` True)
        at pixel centres, same ``plot_id`` and ``year`` as their site, covariate columns
        already in ``samples`` extracted for them.

    Notes
    -----
    For a site s with density D_s in pixel with NPP_s, a random pixel p of the same year in
    the same climate zone (temperature bin x precipitation bin) and the same land-use class
    gets D_p = D_s * NPP_p / NPP_s. Assumption: within one climate zone and ecosystem type
    carbon density is proportional to NPP (the same allocation/turnover per unit of
    productivity) — more defensible for vegetation than for soil carbon. Pseudo-plots keep
    the site's ``plot_id`` so leave-one-site-out validation holds them out with their site
    (otherwise they leak its value into the test fold). Candidates exclude the site's own
    pixel and pixels with NPP <= 0, NaN climate or land-use 0.
    """
    if not isinstance(n_per_site, (int, np.integer)) or n_per_site < 1:
        raise ParameterError(f"n_per_site: got {n_per_site!r}, expected an int >= 1.")
    if not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed: got {seed!r}, expected an int (randomness needs a seed).")
    if max_distance_m is not None and not max_distance_m > 0:
        raise ParameterError(f"max_distance_m: got {max_distance_m!r}, expected > 0 m or None.")
    _cube_covariates(cube, [npp, temperature, precipitation, landuse])
    if targets is None:
        targets = [t for t in TARGET_COLUMNS if t in samples.columns]
    require_columns(samples, ["plot_id", "year", "x", "y", "row", "col", *targets],
                    name="samples", fix="Build it with read_plots and drop_outside.")
    t_edges, p_edges = _zone_edges(cube, climate_zone_bins, temperature=temperature,
                                   precipitation=precipitation)
    base = samples.copy()
    base["augmented"] = base.get("augmented", False)
    sites = base[~base["augmented"].astype(bool) & base[list(targets)].notna().any(axis=1)]
    if "year" in cube[npp].dims or "year" in cube[landuse].dims:
        _year_index(sites, cube)
    x_all, y_all = cube["x"].values, cube["y"].values
    nx = x_all.size
    rng = np.random.default_rng(seed)
    pieces, skipped = [], 0
    for year, at_year in sites.groupby("year", sort=True):
        keys = _zone_keys(cube, int(year), t_edges, p_edges, npp=npp, temperature=temperature,
                          precipitation=precipitation, landuse=landuse)
        npp_flat = _layer_at(cube, npp, int(year)).ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        site_flat = (at_year["row"].to_numpy() * nx + at_year["col"].to_numpy()).astype("int64")
        for (_, site), flat in zip(at_year.iterrows(), site_flat):
            key = keys[flat]
            if key < 0:
                skipped += 1
                continue
            lo, hi = np.searchsorted(sorted_keys, [key, key + 1])
            cand = order[lo:hi]
            cand = cand[cand != flat]
            if max_distance_m is not None:
                d = np.hypot(x_all[cand % nx] - site["x"], y_all[cand // nx] - site["y"])
                cand = cand[d <= max_distance_m]
            if cand.size == 0:
                skipped += 1
                continue
            pick = rng.choice(cand, size=min(n_per_site, cand.size), replace=False)
            ratio = npp_flat[pick] / npp_flat[flat]
            piece = pd.DataFrame({
                "plot_id": site["plot_id"], "year": int(year),
                "x": x_all[pick % nx], "y": y_all[pick // nx],
                "row": pick // nx, "col": pick % nx, "augmented": True,
            })
            for t in targets:
                piece[t] = site[t] * ratio
            pieces.append(piece)
    if skipped:
        log.info("augment_npp_ratio: %d sites had no usable pixel or no candidate", skipped)
    if not pieces:
        return base
    new = pd.concat(pieces, ignore_index=True)
    covariates = [c for c in base.columns if c in cube.data_vars and c != "region_mask"]
    if covariates:
        new = extract_covariates(new, cube, variables=covariates)
    out = pd.concat([base, new[[c for c in base.columns if c in new.columns]]],
                    ignore_index=True)
    out["augmented"] = out["augmented"].astype(bool)
    out.attrs = dict(samples.attrs)
    out.attrs["history"] = update_history(
        history_line("augment_npp_ratio", n_per_site=n_per_site,
                     climate_zone_bins=climate_zone_bins, seed=seed,
                     max_distance_m=max_distance_m, n_added=len(new)), samples)
    return out


# -- multicollinearity -------------------------------------------------------------------

def _feature_matrix(samples: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    features = list(features)
    if len(features) < 2:
        raise ParameterError(f"features: got {features}, expected at least two column names.")
    require_columns(samples, features, name="samples", fix="Run extract_covariates first.")
    X = samples[features].apply(pd.to_numeric, errors="coerce").dropna()
    if len(X) <= len(features):
        raise InputDataError(
            f"samples: only {len(X)} complete rows for {len(features)} features; need more "
            "rows than features."
        )
    constant = [f for f in features if X[f].std() == 0]
    if constant:
        raise InputDataError(
            f"samples: features {constant} are constant over the plots; drop them (no "
            "correlation or VIF is defined)."
        )
    return X


def correlation_matrix(samples: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Pearson correlation (dimensionless) between features over rows complete in all of them."""
    X = _feature_matrix(samples, features)
    corr = pd.DataFrame(np.corrcoef(X.to_numpy(dtype="float64"), rowvar=False),
                        index=list(features), columns=list(features))
    corr.attrs = {"units": "1", "n_rows": len(X),
                  "history": update_history(
                      history_line("correlation_matrix", features=list(features)), samples)}
    return corr


def vif_table(samples: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Variance inflation factor of each feature (dimensionless).

    Returns
    -------
    pandas.DataFrame
        ``feature, vif, r2`` with VIF_j = 1 / (1 - R²_j), R²_j from the least-squares
        regression of feature j on all the others plus an intercept (statsmodels'
        ``variance_inflation_factor`` with a constant column); ``inf`` for exact collinearity.
    """
    X = _feature_matrix(samples, features).to_numpy(dtype="float64")
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    n, k = X.shape
    r2 = np.empty(k)
    for j in range(k):  # k features (a handful), not pixels
        others = np.column_stack([np.ones(n), np.delete(X, j, axis=1)])
        coef, *_ = np.linalg.lstsq(others, X[:, j], rcond=None)
        resid = X[:, j] - others @ coef
        r2[j] = 1.0 - resid @ resid / (X[:, j] @ X[:, j])
    with np.errstate(divide="ignore"):
        vif = np.where(r2 >= 1 - 1e-12, np.inf, 1.0 / (1.0 - r2))
    out = pd.DataFrame({"feature": list(features), "vif": vif, "r2": r2})
    out.attrs = {"units": "1", "n_rows": n,
                 "history": update_history(
                     history_line("vif_table", features=list(features)), samples)}
    return out


def flag_collinear(corr: pd.DataFrame, *, threshold: float = 0.8) -> pd.DataFrame:
    """Feature pairs with ``|r| >= threshold``, strongest first (``feature_a, feature_b, r``)."""
    if not 0 < threshold <= 1:
        raise ParameterError(f"threshold: got {threshold!r}, expected 0 < threshold <= 1.")
    if list(corr.index) != list(corr.columns):
        raise ParameterError(
            "corr: expected a square correlation matrix (from correlation_matrix)."
        )
    values = corr.to_numpy(dtype="float64")
    i, j = np.triu_indices_from(values, k=1)
    r = values[i, j]
    hit = np.abs(r) >= threshold
    out = pd.DataFrame({"feature_a": corr.index[i[hit]], "feature_b": corr.columns[j[hit]],
                        "r": r[hit]})
    out = out.reindex(out["r"].abs().sort_values(ascending=False).index).reset_index(drop=True)
    out.attrs = {"units": "1", "history": update_history(
        history_line("flag_collinear", threshold=threshold), corr)}
    return out


@dataclass(frozen=True)
class PreparedSamples:
    """The cleaned sample table and what cleaning did (for the report)."""

    samples: pd.DataFrame
    n_read: int
    n_outside: int
    outliers: pd.DataFrame


def prepare_samples(
    plot_spec: Mapping[str, Any] | None,
    grid: "GridSpec",
    cube: xr.Dataset,
    *,
    sigma: float = 3.0,
    by: Literal["landuse"] | None = None,
    augment: bool = False,
    n_per_site: int = 2,
    seed: int = 0,
) -> PreparedSamples:
    """Read, locate, clean, extract and optionally augment the survey plots in one call.

    Steps: :func:`read_plots` → :func:`drop_outside` (grid and region mask) →
    :func:`extract_covariates` (first, so outliers can be judged per land-use class) →
    :func:`remove_outliers` (± ``sigma`` sd) → :func:`augment_npp_ratio` when ``augment``.
    A study without plots (``plot_spec`` None, e.g. a trend-only study) gets an empty table
    with the sample-table columns.

    Returns
    -------
    PreparedSamples
        ``samples`` (t C ha-1 targets + covariates), counts read and dropped outside, and the
        outlier report.
    """
    if not plot_spec:
        empty = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
        return PreparedSamples(empty, 0, 0, pd.DataFrame())
    raw = read_plots(plot_spec, grid)
    mask = cube["region_mask"] if "region_mask" in cube else None
    inside, n_outside = drop_outside(raw, grid, mask)
    samples, report = remove_outliers(extract_covariates(inside, cube), sigma=sigma, by=by)
    if augment:
        samples = augment_npp_ratio(samples, cube, n_per_site=n_per_site, seed=seed)
    return PreparedSamples(samples, len(raw), int(n_outside), report)
