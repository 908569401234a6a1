"""The flux stage's steps: train and validate every family, choose, map, and bracket the totals.

:func:`train_flux_models` cross-validates every candidate family (:mod:`models.estimators`)
for every target flux under the three schemes of :func:`terracarbon.flux.training.flux_folds`
(random k-fold, leave-one-site-out, leave-one-year-out), scores them overall, per land-cover
type and by the FLUXCOM split (:func:`terracarbon.flux.skill.flux_skill`), chooses the
mapping family per target by the R² of ``choose_by`` (leave-one-site-out by default: a map
predicts places no tower saw), and fits it on every tower-month.

:func:`map_monthly_fluxes` predicts the chosen models for every pixel-month of the monthly
cube, year by year (land use of that year), with conformal bounds from the
leave-one-site-out residuals; :func:`annual_bounds` gives the annual sums' bounds from the
residuals summed over each site-year (so that errors correlated across a year's months are
not averaged away). :func:`ensemble_totals` refits each target's model on towers resampled
by site (a site bootstrap) and maps the members on a systematic pixel sample: the spread of
their regional totals (Tg C yr-1) is the totals' interval.

Units: fluxes g C m-2 month-1 (monthly) and g C m-2 yr-1 (annual), totals Tg C yr-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import conventions, progress
from terracarbon.data.io import history_line
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.models.estimators import make_estimator, one_native_thread, run_side_by_side

SCHEME_LABELS = {"random": "random k-fold", "site": "leave-one-site-out",
                 "year": "leave-one-year-out"}
"""Display names of the CV schemes."""

MIN_SITES = 3
"""Fewest towers with a target for that target to be modelled."""


def _interval_quantiles(interval: float) -> tuple[float, float]:
    if not 0.5 <= interval < 1:
        raise ParameterError(f"flux.interval: got {interval}; expected 0.5 <= interval < 1")
    return (1 - interval) / 2, 1 - (1 - interval) / 2


def training_table(towers: pd.DataFrame, *, covariates: str = "cube",
                   features: Sequence[str] = ()) -> pd.DataFrame:
    """The tower table with the covariates a model trains on.

    ``covariates="cube"`` uses the gridded layers at the tower (what the maps will see);
    ``"tower"`` uses the tower's own meteorology (``<name>_tower``) where it has it and the
    gridded value elsewhere (FLUXCOM's RS+METEO setup: towers measure their own weather,
    maps use gridded weather of the same names).
    """
    if covariates not in ("cube", "tower"):
        raise ParameterError(f"flux.covariates: got {covariates!r}; expected cube or tower")
    table = towers.copy()
    table["time"] = pd.to_datetime(table["time"])  # month starts (a CSV round trip makes text)
    if covariates == "tower":
        for name in features:
            own = f"{name}_tower"
            if own in table:
                table[name] = table[own].where(table[own].notna(), table.get(name))
    missing = [f for f in features if f not in table]
    if missing:
        raise InputDataError(f"flux.features: {missing} are neither monthly layers at the "
                             f"towers nor tower columns (columns: {sorted(table.columns)})")
    return table


@dataclass
class FluxTraining:
    """:func:`train_flux_models` output."""

    oof: pd.DataFrame
    metrics: pd.DataFrame
    by_cover: pd.DataFrame
    skill: pd.DataFrame
    choice: dict[str, dict[str, Any]]
    models: dict[str, Any] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def comparison(self) -> pd.DataFrame:
        """R² per family (rows) and scheme (columns) for each target, side by side."""
        m = self.metrics
        table = m.pivot_table(index=["target", "family"], columns="scheme", values="r2")
        return table[[s for s in ("random", "site", "year") if s in table]].round(3)


def _feature_spec(features: Sequence[str], categorical: Sequence[str], seasonal: Any
                  ) -> dict[str, Any]:
    return {"meteo": list(features), "categorical": list(categorical), "seasonal": seasonal}


def _run_label(run: tuple[str, str, str]) -> str:
    target, family, scheme = run
    return f"{target}: {family}, {SCHEME_LABELS[scheme]}"


def train_flux_models(towers: pd.DataFrame, *, targets: Sequence[str],
                      candidates: Sequence[str], features: Sequence[str],
                      categorical: Sequence[str] = (), seasonal: Any = True,
                      cv_folds: int = 10, choose_by: str = "site", seed: int = 0,
                      settings: Mapping[str, Any] | None = None,
                      schemes: Sequence[str] = ("random", "site", "year")) -> FluxTraining:
    """Cross-validate every family for every target, choose per target, fit the chosen ones.

    Parameters
    ----------
    towers : pandas.DataFrame
        :func:`training_table` output (one row per tower-month; fluxes g C m-2 month-1).
    targets : sequence of {"nee", "gpp", "reco"}
    candidates : sequence of family names (:data:`terracarbon.models.estimators.FAMILIES`)
    features : sequence of str
        Monthly covariates (columns of ``towers``, layers of the monthly cube).
    categorical : sequence of str
        Class attributes one-hot encoded (``landuse``, ``igbp``).
    seasonal : bool or str
        Seasonal encoding (:func:`terracarbon.flux.training.feature_names`).
    cv_folds : int
        Folds of the random scheme.
    choose_by : {"site", "year", "random"}
        The scheme whose R² picks each target's mapping family.
    seed : int
        Folds and estimators.
    schemes : sequence of {"random", "site", "year"}
        The CV schemes run for every family (``flux.schemes``); ``choose_by`` among them.

    Returns
    -------
    FluxTraining
        ``oof`` (``family, target, scheme, site, time, cover, observed, predicted``),
        ``metrics`` (``family, target, scheme, r2, rmse, mae, bias, n``), ``by_cover`` (the
        same per land-cover class), ``skill`` (FLUXCOM split of the ``site`` scheme),
        ``choice`` (per target: family, scheme, r2), ``models`` (fitted on every row).
    """
    from terracarbon.flux.skill import flux_skill
    from terracarbon.flux.training import cross_validate_flux, flux_metrics, tower_features

    unknown = [s for s in schemes if s not in SCHEME_LABELS]
    if unknown or not schemes:
        raise ParameterError(f"flux.schemes: got {list(schemes)}; expected some of "
                             f"{list(SCHEME_LABELS)}")
    if choose_by not in schemes:
        raise ParameterError(f"flux.choose_by: {choose_by!r} is not among the schemes {schemes}")
    spec = _feature_spec(features, categorical, seasonal)
    cover = next((c for c in ("landuse", "igbp") if c in towers), None)
    oofs, metrics, by_cover, skills = [], [], [], []
    usable = [t for t in targets if t in towers
              and towers.loc[towers[t].notna(), "site"].nunique() >= MIN_SITES]
    runs = [(t, f, s) for t in usable for f in candidates for s in schemes]
    for target, family, scheme in progress.iterate(runs, "flux CV", unit="CV runs",
                                                   label=_run_label):
        oof = cross_validate_flux(towers, target=target, family=family,
                                  settings=settings, scheme=scheme, seed=seed,
                                  features=spec, n_folds=cv_folds)
        keyed = towers.loc[:, ["site", "time"] + ([cover] if cover else [])]
        oof = oof.assign(time=pd.to_datetime(oof["time"]))
        if cover and cover != "igbp":
            oof = oof.merge(keyed.assign(time=pd.to_datetime(keyed["time"])),
                            on=["site", "time"], how="left")
        oof = oof.assign(family=family, target=target, scheme=scheme,
                         cover=oof[cover] if cover else np.nan)
        oofs.append(oof)
        score = flux_metrics(oof).assign(family=family, target=target, scheme=scheme,
                                         fit_predict_s=oof.attrs.get("fit_predict_s"))
        metrics.append(score)
        if cover:
            by_cover.append(flux_metrics(oof, by="cover").assign(
                family=family, target=target, scheme=scheme))
        if scheme == "site":
            skills.append(flux_skill(oof).assign(family=family, target=target))
    if not usable:
        raise InputDataError(f"flux: none of {list(targets)} is measured at {MIN_SITES} or "
                             "more towers; nothing to train")
    metrics_t = pd.concat(metrics, ignore_index=True)
    order = ["family", "target", "scheme", "r2", "rmse", "mae", "bias", "n", "fit_predict_s"]
    metrics_t = metrics_t[order]
    choice = {}
    for target in usable:
        rows = metrics_t[(metrics_t.target == target) & (metrics_t.scheme == choose_by)]
        best = rows.sort_values(["r2", "family"], ascending=[False, True]).iloc[0]
        choice[target] = {"family": str(best.family), "scheme": choose_by,
                          "scheme_label": SCHEME_LABELS[choose_by], "r2": float(best.r2),
                          "rmse": float(best.rmse), "units": conventions.FLUX_MONTHLY_UNITS}
    X, names = tower_features(towers, **spec)
    models = {}
    for target, chosen in choice.items():
        y = towers[target].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(X.to_numpy()).all(axis=1)
        est = make_estimator(chosen["family"], settings, seed=seed)
        with one_native_thread():
            models[target] = est.fit(X.to_numpy()[ok], y[ok])
        chosen["n_train"] = int(ok.sum())
        chosen["n_sites"] = int(towers.loc[ok, "site"].nunique())
    oof_t = pd.concat(oofs, ignore_index=True)
    keep = ["family", "target", "scheme", "site", "time", "cover", "observed", "predicted",
            "fold"]
    return FluxTraining(
        oof=oof_t[[c for c in keep if c in oof_t]],
        metrics=metrics_t,
        by_cover=(pd.concat(by_cover, ignore_index=True) if by_cover else pd.DataFrame()),
        skill=pd.concat(skills, ignore_index=True) if skills else pd.DataFrame(),
        choice=choice, models=models, features=list(names),
        settings={"feature_spec": spec, "seed": seed, "candidates": list(candidates)})


# ----------------------------------------------------------------------------- residuals


def residual_quantiles(training: FluxTraining, *, interval: float) -> dict[str, dict[str, float]]:
    """Monthly and annual residual quantiles of each target's chosen model (g C m-2).

    From the chosen family's out-of-fold predictions under the choosing scheme:
    ``monthly`` — quantiles of ``observed - predicted`` over tower-months, with the
    split-conformal finite-sample level; ``annual`` — the same over the residuals summed
    over each complete site-year (12 months), which keeps the correlation of a model's
    errors across the months of a year (summing monthly bounds would be far too wide,
    treating them as independent far too narrow). Fewer than 5 complete site-years: the
    monthly quantiles x 12 (conservative).
    """
    q_low, q_high = _interval_quantiles(interval)
    out = {}
    for target, chosen in training.choice.items():
        oof = training.oof[(training.oof.target == target)
                           & (training.oof.family == chosen["family"])
                           & (training.oof.scheme == chosen["scheme"])]
        r = (oof["observed"] - oof["predicted"]).to_numpy(float)
        r = r[np.isfinite(r)]
        monthly = _conformal(r, q_low, q_high)
        years = oof.assign(year=pd.to_datetime(oof["time"]).dt.year,
                           r=oof["observed"] - oof["predicted"])
        sums = years.groupby(["site", "year"])["r"].agg(["sum", "count"])
        full = sums.loc[sums["count"] == 12, "sum"].to_numpy(float)
        annual = (_conformal(full, q_low, q_high) if full.size >= 5
                  else (12 * monthly[0], 12 * monthly[1]))
        out[target] = {"monthly_low": monthly[0], "monthly_high": monthly[1],
                       "annual_low": annual[0], "annual_high": annual[1],
                       "n_site_years": int(full.size)}
    return out


def _conformal(r: np.ndarray, q_low: float, q_high: float) -> tuple[float, float]:
    n = r.size
    if n == 0:
        return float("nan"), float("nan")
    levels = [np.floor(q_low * (n + 1)) / n, min(1.0, np.ceil(q_high * (n + 1)) / n)]
    lo, hi = np.quantile(r, np.clip(levels, 0, 1), method="inverted_cdf")
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- maps


def record_cube(monthly: xr.Dataset, cube: xr.Dataset, features: Sequence[str],
                categorical: Sequence[str], lat: xr.DataArray | None = None) -> xr.Dataset:
    """The covariates of every pixel-month of the record, ``(time, y, x)``, lazily.

    Monthly layers as they are; an annual layer of the cube (``(year, y, x)``, e.g. land
    use) repeated for each month of its year; a static layer (``(y, x)``, e.g. DEM) for
    every month. Climate and lag features then see the whole record, as at the towers.
    """
    years = xr.DataArray(monthly["time"].dt.year.values, dims="time",
                         coords={"time": monthly["time"]})
    ds = monthly[[f for f in features if f in monthly]]
    for name in [f for f in features if f not in monthly] + list(categorical):
        if name not in cube:
            raise InputDataError(f"flux: {name!r} is neither a monthly layer nor a layer of "
                                 f"the cube (monthly: {sorted(monthly.data_vars)}, cube: "
                                 f"{sorted(cube.data_vars)})")
        layer = cube[name]
        if "year" in layer.dims:
            missing = sorted(set(years.values.tolist()) - set(layer["year"].values.tolist()))
            if missing:
                raise InputDataError(f"flux: the cube's {name!r} has no year(s) {missing} of "
                                     "the monthly cube")
            layer = layer.sel(year=years).drop_vars("year")
        else:
            layer = layer.expand_dims(time=monthly["time"])
        ds[name] = layer.transpose("time", "y", "x")
    if lat is not None:
        ds["lat"] = lat
    return ds


def pixel_latitude(like: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Latitude (degrees north) of every pixel centre of a projected grid, ``(y, x)``."""
    from pyproj import Transformer

    xx, yy = np.meshgrid(like["x"].values, like["y"].values)
    _, lat = Transformer.from_crs(like.rio.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    return xr.DataArray(lat, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                        attrs={"units": "degrees_north"})


def map_monthly_fluxes(training: FluxTraining, monthly: xr.Dataset, cube: xr.Dataset, *,
                       quantiles: Mapping[str, Mapping[str, float]] | None = None,
                       models: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Monthly flux of every pixel-month for each target (g C m-2 month-1), with bounds.

    Predicted over the whole record at once (:func:`record_cube`: each month with its year's
    land use) by :func:`terracarbon.flux.mapping.predict_monthly` (dask blocks); ``<target>_lower`` /
    ``_upper`` add the monthly residual quantiles of :func:`residual_quantiles`. Pixels
    outside the region (``cube.region_mask``) are NaN. Lazy.
    """
    from terracarbon.flux.mapping import predict_monthly

    spec = training.settings["feature_spec"]
    categorical = spec["categorical"]
    lat = pixel_latitude(cube) if any(
        n.startswith(("season_", "day_length")) for n in training.features) else None
    record = record_cube(monthly, cube, spec["meteo"], categorical, lat)
    out = {}
    for target, model in (models or training.models).items():
        da = predict_monthly(model, record, features=training.features, name=target)
        if "region_mask" in cube:
            da = da.where(cube["region_mask"].astype(bool))
        da = da.assign_attrs(units=conventions.FLUX_MONTHLY_UNITS,
                             long_name=f"monthly {target.upper()}",
                             history=history_line("map_monthly_fluxes", target=target,
                                                  family=training.choice[target]["family"]))
        out[target] = da
        if quantiles and target in quantiles:
            q = quantiles[target]
            for bound, key in (("lower", "monthly_low"), ("upper", "monthly_high")):
                out[f"{target}_{bound}"] = (da + q[key]).assign_attrs(
                    units=conventions.FLUX_MONTHLY_UNITS,
                    long_name=f"monthly {target.upper()}, {bound} bound")
    ds = xr.Dataset(out)
    return ds.rio.write_crs(cube.rio.crs) if cube.rio.crs else ds


def annual_bounds(annual: xr.Dataset, quantiles: Mapping[str, Mapping[str, float]]
                  ) -> xr.Dataset:
    """Replace the annual bounds (sums of monthly bounds) by the site-year residual ones."""
    out = annual.copy()
    for target, q in quantiles.items():
        if target not in out:
            continue
        for bound, key in (("lower", "annual_low"), ("upper", "annual_high")):
            out[f"{target}_{bound}"] = (out[target] + q[key]).assign_attrs(
                units=conventions.FLUX_ANNUAL_UNITS,
                long_name=f"annual {target.upper()}, {bound} bound",
                cell_methods="time: sum")
    if "nee" in quantiles and "sink" in out:
        out["sink_lower"] = (-out["nee_upper"]).assign_attrs(out["sink"].attrs)
        out["sink_upper"] = (-out["nee_lower"]).assign_attrs(out["sink"].attrs)
    return out


# ----------------------------------------------------------------------------- totals


def _fit_member(family: str, settings: Mapping[str, Any] | None, seed: int, X: np.ndarray,
                y: np.ndarray) -> Any:
    """One member's estimator of one flux, fitted with one native thread (module-level so
    worker processes can run it)."""
    est = make_estimator(family, settings, seed=seed)
    with one_native_thread():
        return est.fit(X, y)


def site_bootstrap_models(training: FluxTraining, towers: pd.DataFrame, *, members: int,
                          seed: int = 0, n_jobs: int | None = None) -> list[dict[str, Any]]:
    """Refits of each target's chosen family on towers resampled by site, with replacement.

    A member draws as many sites as there are, with replacement, and fits on all months of
    the drawn sites (a site drawn twice counts twice): the model's sensitivity to which
    towers happen to exist, the dominant uncertainty of an upscaled flux (Jung et al. 2020).
    The fits (members x targets) run side by side in ``n_jobs`` worker processes
    (:func:`terracarbon.models.estimators.run_side_by_side`; default one per core, 1: in
    this process); the members do not depend on it.
    """
    from terracarbon.flux.training import tower_features

    if members <= 0:
        return []
    X, _ = tower_features(towers, names=training.features)
    X = X.to_numpy()
    sites = towers["site"].astype(str).to_numpy()
    unique = np.unique(sites)
    rng = np.random.default_rng([seed, 20260])
    rows_of = {s: np.flatnonzero(sites == s) for s in unique}
    jobs, keys = [], []
    for m in range(members):
        drawn = rng.choice(unique, unique.size, replace=True)
        rows = np.concatenate([rows_of[s] for s in drawn])
        for target, chosen in training.choice.items():
            y = towers[target].to_numpy(float)[rows]
            ok = np.isfinite(y) & np.isfinite(X[rows]).all(axis=1)
            jobs.append((chosen["family"], training.settings.get("estimators"), seed + m + 1,
                         X[rows][ok], y[ok]))
            keys.append((m, target))
    with progress.task("site bootstrap", total=len(jobs), unit="fits",
                       label=f"{members} members x {len(training.choice)} fluxes"):
        fitted = run_side_by_side(_fit_member, jobs, n_jobs=n_jobs)
    out: list[dict[str, Any]] = [{} for _ in range(members)]
    for (m, target), est in zip(keys, fitted, strict=True):
        out[m][target] = est
    return out


def ensemble_totals(training: FluxTraining, members: Sequence[Mapping[str, Any]],
                    monthly: xr.Dataset, cube: xr.Dataset, totals: pd.DataFrame, *,
                    area_ha: xr.DataArray, interval: float, step: int = 4) -> pd.DataFrame:
    """``totals`` (from :func:`terracarbon.flux.totals.regional_totals`) with ensemble bounds.

    Every member maps the systematic pixel sample ``[::step, ::step]``; its annual regional
    total is the sample's sum expanded by ``area / sample area``; the bounds are the central
    total plus the ``interval`` quantiles of the members' deviations from their median
    (Tg C yr-1). Adds ``lower_Tg``/``upper_Tg`` (replacing summed pixel bounds) and
    ``members``; ``sink`` gets the negated NEE bounds.
    """
    from terracarbon.flux.totals import G_PER_TG, M2_PER_HA

    if not members:
        return totals
    q_low, q_high = _interval_quantiles(interval)
    sample = dict(y=slice(None, None, step), x=slice(None, None, step))
    # the sample is small: read it once into memory, so each member's map is a few tasks
    # instead of one per month and layer
    m_sub = monthly.isel(**sample).load()
    c_sub = cube[[v for v in cube.data_vars
                  if v in set(training.settings["feature_spec"]["meteo"])
                  | set(training.settings["feature_spec"]["categorical"]) | {"region_mask"}]
                 ].isel(**sample).load()
    area = np.asarray(area_ha.isel(**sample).values, np.float64)
    if "region_mask" in c_sub:
        area = np.where(np.asarray(c_sub["region_mask"].values, bool), area, 0.0)
    full_area = float(np.nansum(np.where(np.asarray(cube["region_mask"].values, bool),
                                         area_ha.values, 0.0))) if "region_mask" in cube \
        else float(np.nansum(area_ha.values))
    expand = full_area / float(area.sum())
    draws: dict[tuple[str, int], list[float]] = {}
    for fitted in members:
        ds = map_monthly_fluxes(training, m_sub, c_sub, models=fitted).compute()
        annual = ds.groupby("time.year").sum("time", min_count=12)
        for target in fitted:
            values = np.asarray(annual[target].values, np.float64)
            sums = np.nansum(values * area * M2_PER_HA, axis=(1, 2)) * expand / G_PER_TG
            sums = np.where(np.isfinite(values).any(axis=(1, 2)), sums, np.nan)
            for year, value in zip(annual["year"].values, sums, strict=True):
                draws.setdefault((target, int(year)), []).append(float(value))
    out = totals.copy()
    for col in ("lower_Tg", "upper_Tg", "members"):
        out[col] = np.nan if col != "members" else 0
    for i, row in out.iterrows():
        name = row["variable"]
        source, sign = (("nee", -1.0) if name == "sink" else (name, 1.0))
        values = draws.get((source, int(row["year"])))
        if not values or not np.all(np.isfinite(values)) or not np.isfinite(row["total_Tg"]):
            continue
        v = sign * np.asarray(values)
        dev = v - np.median(v)
        lo, hi = np.quantile(dev, [q_low, q_high])
        out.loc[i, ["lower_Tg", "upper_Tg", "members"]] = (row["total_Tg"] + lo,
                                                          row["total_Tg"] + hi, len(v))
    return out


def annual_flux_maps(fluxes: xr.Dataset, monthly: xr.Dataset, cube: xr.Dataset, *,
                     quantiles: Mapping[str, Mapping[str, float]] | None = None,
                     npp_layer: str | None = "npp", temperature_layer: str | None = "ta",
                     precipitation_layer: str | None = "p") -> xr.Dataset:
    """Annual NEE, GPP, Reco, sink, and — where the layers exist — Rh and NEP (g C m-2 yr-1).

    The monthly maps are summed per year (:func:`terracarbon.flux.totals.annual_fluxes`;
    bounds from the site-year residuals, :func:`annual_bounds`). Heterotrophic respiration
    comes from the monthly temperature and precipitation layers by Pei et al. (2009)
    (:func:`terracarbon.flux.respiration.heterotrophic_respiration`), summed per year, and
    ``nep = npp - rh`` with the annual NPP layer of the cube
    (:func:`terracarbon.flux.respiration.net_ecosystem_production`). NEP is a second,
    independent estimate of the sink: from a productivity product and a climate equation,
    not from the towers.
    """
    from terracarbon.flux.aggregate import monthly_to_annual
    from terracarbon.flux.respiration import heterotrophic_respiration, net_ecosystem_production
    from terracarbon.flux.totals import annual_fluxes

    annual = annual_fluxes(fluxes)
    if quantiles:
        annual = annual_bounds(annual, quantiles)
    have_climate = (temperature_layer in monthly.data_vars
                    and precipitation_layer in monthly.data_vars)
    if have_climate:
        rh_month = heterotrophic_respiration(monthly[temperature_layer],
                                             monthly[precipitation_layer])
        annual["rh"] = monthly_to_annual(rh_month, rules={rh_month.name or "rh": "sum"}
                                         ).rename("rh")
        if "region_mask" in cube:
            annual["rh"] = annual["rh"].where(cube["region_mask"].astype(bool))
        if npp_layer and npp_layer in cube:
            npp = cube[npp_layer].sel(year=annual["year"].values)
            annual["npp"] = npp
            annual["nep"] = net_ecosystem_production(npp, annual["rh"])
    return annual.rio.write_crs(cube.rio.crs) if cube.rio.crs else annual


def flux_calibration(annual: xr.Dataset, fluxes: xr.Dataset, totals: pd.DataFrame,
                     truth: xr.Dataset, area_ha: xr.DataArray) -> pd.DataFrame:
    """Coverage of the flux intervals against the planted truth (synthetic study).

    Rows: monthly pixel NEE (every pixel-month), annual pixel NEE, regional annual NEE
    total; each with ``n``, ``coverage`` (share of truths inside the bounds), the nominal
    level is the caller's; ``bias`` (mean estimate − truth) and ``mean_width``.
    """
    from terracarbon.flux.totals import G_PER_TG, M2_PER_HA

    rows = []
    pairs = (("monthly pixel NEE", fluxes, truth.get("nee"), "time",
              conventions.FLUX_MONTHLY_UNITS),
             ("annual pixel NEE", annual, truth.get("nee_annual"), "year",
              conventions.FLUX_ANNUAL_UNITS))
    for label, est, tru, dim, units in pairs:
        if tru is None or "nee_lower" not in est:
            continue
        common = np.intersect1d(est[dim].values, tru[dim].values)
        e = est.sel({dim: common})
        t = np.asarray(tru.sel({dim: common}).values, np.float64)
        lo, hi = (np.asarray(e[f"nee_{b}"].values, np.float64) for b in ("lower", "upper"))
        mid = np.asarray(e["nee"].values, np.float64)
        ok = np.isfinite(t) & np.isfinite(lo) & np.isfinite(hi)
        rows.append({"quantity": label, "n": int(ok.sum()),
                     "coverage": float(np.mean((t[ok] >= lo[ok]) & (t[ok] <= hi[ok]))),
                     "bias": float(np.mean(mid[ok] - t[ok])),
                     "mean_width": float(np.mean(hi[ok] - lo[ok])), "units": units})
    if "nee_annual" in truth:
        t_ann = truth["nee_annual"]
        area = np.asarray(area_ha.values, np.float64) * M2_PER_HA
        true_tot = {}
        for year in np.intersect1d(t_ann["year"].values, annual["year"].values):
            # the truth over the pixels the map covers that year
            mapped = np.isfinite(np.asarray(annual["nee"].sel(year=year).values))
            if mapped.any():
                true_tot[int(year)] = float(np.nansum(np.asarray(
                    t_ann.sel(year=year).values) * area * mapped) / G_PER_TG)
        nee = totals[totals.variable == "nee"].copy()
        nee["truth_Tg"] = nee["year"].map(true_tot)
        ok = nee[["lower_Tg", "upper_Tg", "truth_Tg"]].notna().all(axis=1)
        if ok.any():
            n = nee[ok]
            rows.append({"quantity": "regional annual NEE total", "n": int(ok.sum()),
                         "coverage": float(np.mean((n.truth_Tg >= n.lower_Tg)
                                                   & (n.truth_Tg <= n.upper_Tg))),
                         "bias": float(np.mean(n.total_Tg - n.truth_Tg)),
                         "mean_width": float(np.mean(n.upper_Tg - n.lower_Tg)),
                         "units": "Tg C yr-1"})
    return pd.DataFrame(rows)


def save_models(training: FluxTraining, folder: Any) -> Any:
    """Write each target's fitted model (``<target>.joblib``) and its card (``<target>.json``:
    family, features in order, the CV scheme and R² that chose it, units, seed)."""
    import json
    from pathlib import Path

    import joblib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for target, model in training.models.items():
        tmp = folder / f".{target}.joblib.tmp"
        joblib.dump(model, tmp)
        tmp.replace(folder / f"{target}.joblib")
        card = {"target": target, "units": conventions.FLUX_MONTHLY_UNITS,
                **training.choice[target], "features": training.features,
                "feature_spec": training.settings["feature_spec"],
                "seed": training.settings["seed"],
                "sign_convention": "NEE < 0 is uptake; sink = -NEE"}
        (folder / f"{target}.json").write_text(json.dumps(card, indent=1, default=str))
    return folder
