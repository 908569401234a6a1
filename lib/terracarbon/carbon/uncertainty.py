"""Intervals of carbon levels and change, and their calibration against a known truth.

Three sources, each where it belongs:

* **Regional totals and change** (Tg C): the bootstrap ensemble of the mapping model
  (:mod:`terracarbon.models.ensemble`). Every member predicts every year; totals and change
  are computed inside each member, so the correlation between the years of one model is
  kept: a change interval is not a difference of independent level bounds, nor a sum of
  pixel bounds. A refit cannot see errors every member shares, such as one year's climate
  anomaly read as carbon; their size comes from the spread of the out-of-fold residuals
  between campaign years (:func:`year_level_error`) and is added to each draw, independent
  between years (:func:`ensemble_draws`). The interval is the central estimate plus the
  quantiles of the draws (:func:`ensemble_totals`, :func:`ensemble_change`).
  Members are evaluated on a systematic sample of pixels (every ``step``-th row and column
  of the region), and their deviation from the central model is expanded to the region by
  area (a difference estimator; the deviation is a smooth field, so a 1-in-36 sample holds
  its sum to well within the members' spread, which the tests check against full maps).
* **Pixel density** (t C ha-1): split-conformal bounds from the mapping model's
  out-of-fold (spatial-CV) residuals at the plots (:func:`conformal_quantiles`,
  :func:`conformal_bounds`). The residuals are relative to ``prediction + 1 t C ha-1``
  because carbon errors grow with the stock (forest pixels err in tens, bare land in
  tenths of t C ha-1). Out-of-fold residuals already contain the model's own refitting
  error, so no ensemble term is added.
* **Pixel change** (t C ha-1 over the period): the members' quantiles of their own change
  (:func:`pixel_change_interval`): the model's uncertainty about the change at a pixel.

The maps stage computes the ensemble parts in one pass over the members
(:func:`ensemble_intervals`: each member predicts the pixel sample for every year and maps
the two change years once; the same numbers as the separate functions).

:func:`calibration_table` reports, where the truth is known (the synthetic study), how often
the intervals hold it: a nominal 90 % interval should hold the truth about 90 % of the time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import progress
from terracarbon.carbon._common import POOLS, pool_sum, var
from terracarbon.conventions import DENSITY_UNITS, T_PER_TG
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.models.base import check_interval

SAMPLE_STEP = 6
"""Members' totals are estimated on every 6th row and column of the region (1 pixel in 36)."""

SAMPLE_ROWS_PER_CALL = 50_000
"""Rows per prediction call on the pixel sample (a CNN's patches: about 200 MB)."""

CONFORMAL_OFFSET_T_HA = 1.0
"""Residuals are scaled by ``prediction + 1 t C ha-1`` (see the module docstring)."""

TARGET_POOLS = POOLS[:-1]
"""The pools a model or table can carry (every pool but the total), in report order."""


def interval_quantiles(interval: float) -> tuple[float, float]:
    """The lower and upper quantile levels of a central ``interval`` (0.9 -> 0.05, 0.95)."""
    check_interval(interval, where="interval")
    return (1.0 - interval) / 2.0, (1.0 + interval) / 2.0


# ------------------------------------------------------------------------ plan


@dataclass
class IntervalPlan:
    """How the maps stage computes its intervals (from ``maps.interval_method``).

    ``conformal``: pixel density bounds from the spatial-CV residuals; ``members``: the
    bootstrap ensemble for totals and change (empty: none); ``pixel_method``: how pixel
    bounds add up where no ensemble is used (``add_total``, ``totals``); ``note`` describes
    the intervals and ``change_caveat`` is the sentence every change number carries (empty
    when change was validated at remeasured plots).
    """

    method: str
    pixel_method: str
    conformal: bool
    members: list = field(default_factory=list)
    note: str = ""
    change_caveat: str = ""
    choice: dict = field(default_factory=dict)
    alternatives: dict = field(default_factory=dict)
    """The other models the data could not rule out on change (name -> fitted model)."""


def no_model_plan() -> IntervalPlan:
    """The plan of a study whose pools no model maps (lookup tables, products): the inputs
    are taken as given, so there are no model intervals."""
    return IntervalPlan("none", "correlated", False, [],
                        "no model maps a pool (pools from lookup tables or products, taken "
                        "as given): no model interval", "change from land-use lookup or "
                        "products only; no model uncertainty", {"best_model": None})


def interval_plan(maps: Mapping, model_name: str, best_model_file: str | os.PathLike,
                  ensemble_dir: str | os.PathLike | None,
                  models_dir: str | os.PathLike | None = None) -> IntervalPlan:
    """Resolve ``maps.interval_method`` against what training produced.

    ``ensemble`` (default) uses conformal pixel bounds and the bootstrap members when the
    mapped model is the one training chose (its residuals and members are the ones saved);
    otherwise — another ``maps.model``, or no members — it falls back to the model's own
    pixel bounds summed as ``correlated``, and the note says so.
    """
    from terracarbon.models.change_validation import change_caveat
    from terracarbon.models.ensemble import load_members

    choice = json.loads(Path(best_model_file).read_text())
    chosen = model_name == choice.get("best_model")
    caveat = change_caveat(choice) if chosen else (
        f"change of {model_name}, set by maps.model rather than chosen by training's criterion")
    method = maps["interval_method"]
    if method != "ensemble":
        return IntervalPlan(method, method, False, [], f"{method} sum of per-pixel bounds; "
                            "no interval for change", caveat, choice)
    if not chosen:
        return IntervalPlan("correlated", "correlated", False, [],
                            f"maps.model {model_name} is not the model training chose "
                            f"({choice.get('best_model')}), whose residuals and ensemble "
                            "were saved: correlated sum of the model's own pixel bounds; no "
                            "interval for change", caveat, choice)
    members = load_members(ensemble_dir) if ensemble_dir else []
    if not members:
        return IntervalPlan("correlated", "correlated", True, [],
                            f"pixel bounds split-conformal; {choice.get('ensemble', 'no ensemble')}"
                            ": totals sum pixel bounds as correlated errors, no interval for "
                            "change", caveat, choice)
    from terracarbon.models.change_validation import plausible_models
    from terracarbon.models.persistence import load_model

    others = [m for m in plausible_models(choice)[1:]
              if models_dir is not None and (Path(models_dir) / m).is_dir()]
    alternatives = {m: load_model(Path(models_dir) / m) for m in others}
    structural = (f"; the change of {', '.join(others)}, which the data could not rule out, "
                  "is added as structural uncertainty" if others else "")
    return IntervalPlan("ensemble", "independent", True, members,
                        f"pixel bounds split-conformal on spatial-CV residuals; totals and "
                        f"change from {len(members)} bootstrap members{structural}", caveat,
                        choice, alternatives)


# ----------------------------------------------------------------- pixel sample


def pixel_sample(region_mask: xr.DataArray, *, step: int = SAMPLE_STEP
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a systematic sample: every ``step``-th pixel of the region.

    The grid of sampled pixels is offset by ``step // 2`` so it does not hug the edges.

    Examples
    --------
    >>> mask = xr.DataArray(np.ones((6, 6), bool), dims=("y", "x"))
    >>> pixel_sample(mask, step=3)
    (array([1, 1, 4, 4]), array([1, 4, 1, 4]))
    """
    mask = np.asarray(region_mask.values, dtype=bool)
    offset = step // 2
    r, c = np.nonzero(mask[offset::step, offset::step])
    if r.size == 0:
        raise InputDataError(f"region_mask: no region pixel on the sample grid (step {step}); "
                             "the region is smaller than the sample spacing")
    return r * step + offset, c * step + offset


def sample_table(cube: xr.Dataset, rows: np.ndarray, cols: np.ndarray, years: Sequence[int],
                 features: Sequence[str]) -> pd.DataFrame:
    """A sample table of the sampled pixels for every year (year-major), as models read it.

    Columns ``year, row, col, x, y`` and one per feature (the cube's values; a static layer
    repeats every year). Only the sampled pixels are read, chunk by chunk when the cube is
    dask-backed.
    """
    years = [int(y) for y in years]
    n = rows.size
    py, px = xr.DataArray(rows, dims="pixel"), xr.DataArray(cols, dims="pixel")
    table = {
        "year": np.repeat(years, n),
        "row": np.tile(rows, len(years)),
        "col": np.tile(cols, len(years)),
        "x": np.tile(np.asarray(cube["x"].values)[cols], len(years)),
        "y": np.tile(np.asarray(cube["y"].values)[rows], len(years)),
    }
    for name in features:
        layer = cube[name]
        if "year" in layer.dims:
            values = layer.sel(year=years).isel(y=py, x=px).transpose("year", "pixel").values
            table[name] = np.asarray(values).reshape(-1)
        else:
            table[name] = np.tile(np.asarray(layer.isel(y=py, x=px).values), len(years))
    return pd.DataFrame(table)


# --------------------------------------------------------------- regional totals


def _sample_predictions(model, table: pd.DataFrame, cube: xr.Dataset, n: int,
                        n_years: int) -> dict[str, np.ndarray]:
    """One model's density at the sampled pixels, ``{target: (year, pixel) float32}``."""
    out = {t: np.empty((n_years, n), np.float32) for t in model.targets}
    per_call = max(1, SAMPLE_ROWS_PER_CALL // max(n, 1))  # years per prediction call
    for k0 in range(0, n_years, per_call):  # a network's patches stay small
        k1 = min(n_years, k0 + per_call)
        part = table.iloc[k0 * n:k1 * n]
        pred = np.asarray(model.predict_samples(part, cube), dtype=np.float32)
        for j, t in enumerate(model.targets):
            out[t][k0:k1] = pred[:, j].reshape(k1 - k0, n)
    return out


def _sample_dataset(per_model: Mapping[str, Mapping[str, np.ndarray]], years: np.ndarray,
                    rows: np.ndarray, cols: np.ndarray) -> xr.Dataset:
    """Stack :func:`_sample_predictions` of each model into the ``(member, year, pixel)``
    dataset of :func:`member_sample_density`."""
    labels = list(per_model)
    first = per_model[labels[0]]
    data = {t: np.stack([per_model[label][t] for label in labels]) for t in first}
    total = pool_sum(data)
    if total is not None:
        data["total"] = total
    coords = {"member": labels, "year": years, "row": ("pixel", rows), "col": ("pixel", cols)}
    return xr.Dataset(
        {var(t, "density"): (("member", "year", "pixel"), v, {"units": DENSITY_UNITS})
         for t, v in data.items()}, coords=coords,
        attrs={"description": "density of the central model and the bootstrap members at a "
                              "systematic sample of pixels"})


def member_sample_density(models: Mapping[str, object], table: pd.DataFrame, cube: xr.Dataset,
                          rows: np.ndarray, cols: np.ndarray) -> xr.Dataset:
    """Every model's density at the sampled pixels and years.

    Parameters
    ----------
    models : mapping of label -> fitted CarbonModel
        The central model and the members (labels become the ``member`` coordinate).
    table : pandas.DataFrame
        :func:`sample_table` rows (year-major).
    cube : xarray.Dataset
        The cube (networks read their patches from it).
    rows, cols : numpy.ndarray
        The sampled pixels (:func:`pixel_sample`), in the order of one year's rows.

    Returns
    -------
    xarray.Dataset
        ``<pool>_carbon_density`` (t C ha-1) on ``(member, year, pixel)`` for the models'
        targets and ``total`` (veg + soil, inside each member), with ``row``/``col`` of each
        pixel as coordinates.
    """
    years = np.unique(table["year"].to_numpy())
    per_model = {label: _sample_predictions(model, table, cube, rows.size, years.size)
                 for label, model in models.items()}
    return _sample_dataset(per_model, years, rows, cols)


def sample_storage_totals(sample_density: xr.Dataset, area_ha: np.ndarray) -> pd.DataFrame:
    """Storage summed over the sampled pixels per member, year and pool (t C).

    ``area_ha`` is the area of each sampled pixel (ha). Returns ``member, year, pool,
    storage_t``.
    """
    frames = []
    for name, da in sample_density.data_vars.items():
        pool = name.split("_carbon_")[0]
        sums = np.nansum(da.values.astype(np.float64) * area_ha[None, None, :], axis=2)
        for i, label in enumerate(sample_density["member"].values):
            frames.append(pd.DataFrame({"member": str(label),
                                        "year": sample_density["year"].values.astype(int),
                                        "pool": pool, "storage_t": sums[i]}))
    return pd.concat(frames, ignore_index=True)


def _deviations(sample_totals: pd.DataFrame, central: str) -> pd.DataFrame:
    wide = sample_totals.pivot_table(index=["pool", "year"], columns="member",
                                     values="storage_t")
    members = [c for c in wide.columns if c != central]
    return wide[members].sub(wide[central], axis=0)


def _spread(deviations: np.ndarray, q_low: float, q_high: float) -> tuple[float, float]:
    """Quantiles of the draws' deviations from the estimate, widened to hold the estimate
    itself (0) should the draws lie all on one side."""
    lo, hi = np.quantile(deviations, [q_low, q_high])
    return min(float(lo), 0.0), max(float(hi), 0.0)


def year_level_error(oof: pd.DataFrame) -> dict[str, float]:
    """Relative error of a year's regional level that the ensemble cannot see, per target.

    A model fitted once answers every year's climate anomaly the same way in every member,
    so an error that a particular year's conditions cause is common to all members. The
    out-of-fold (spatial-CV) predictions show it: per campaign year ``y`` the ratio-of-sums
    residual ``m_y = sum(observed) / sum(predicted) − 1`` over that year's plots; the
    returned value is their root mean square (1, relative to the level). With a single
    campaign it is that campaign's ``|m_y|``.

    Examples
    --------
    >>> oof = pd.DataFrame({"year": [2010, 2010, 2015, 2015],
    ...                     "veg_obs": [102.0, 102.0, 98.0, 98.0], "veg_pred": [100.0] * 4})
    >>> round(year_level_error(oof)["veg"], 4)
    0.02
    """
    out = {}
    for target in TARGET_POOLS:
        obs, pred = f"{target}_obs", f"{target}_pred"
        if obs not in oof or pred not in oof or "year" not in oof:
            continue
        ok = oof[[obs, pred]].notna().all(axis=1)
        sums = oof[ok].groupby("year")[[obs, pred]].sum()
        sums = sums[sums[pred] > 0]
        if len(sums):
            m = sums[obs] / sums[pred] - 1.0
            out[target] = float(np.sqrt((m ** 2).mean()))
    return out


def ensemble_draws(sample_totals: pd.DataFrame, totals: pd.DataFrame, *, sample_area_ha: float,
                   year_error: Mapping[str, float] | None = None, replicates: int = 10,
                   seed: int = 0, central: str = "central",
                   pool_plan: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """Draws of each year's regional total about the central estimate (Tg C).

    Rows ``(pool, year)``, one column per draw: a member's deviation from the central model
    (from the pixel sample, expanded to the region by ``area_ha / sample_area_ha``, about
    the members' median, since the estimate is the full fit's); with
    alternative models in ``sample_totals`` (members named ``alt:<model>``, the other
    models the data could not rule out on change) every member also shifted by each
    alternative's deviation from the central model — structural uncertainty, as in a
    multi-model ensemble; and,
    with ``year_error`` (:func:`year_level_error`), ``replicates`` copies of every member
    each with an independent year-level error ``N(0, year_error[pool]) × storage`` per year
    (total = the sum of the pools of the same draw). Change intervals differencing two years
    of one draw keep the member's correlation between years and add the years' independent
    errors.

    With ``pool_plan`` (:func:`terracarbon.carbon.pools.pool_plan`), pools that no model
    predicts get draws too: a pool derived ``from`` another (``ratio``, ``rf``) moves with
    it by the same relative deviation each year; a ``product`` or ``lookup`` pool is a fixed
    input (zero deviation). The total's draws are then the sum of the pools' draws.
    """
    dev = _deviations(sample_totals, central)
    area = totals.set_index(["pool", "year"])["area_ha"].reindex(dev.index)
    level = totals.set_index(["pool", "year"])["storage_Tg"].reindex(dev.index)
    dev = dev.mul(area / sample_area_ha, axis=0) / T_PER_TG
    alternatives = [c for c in dev.columns if str(c).startswith(ALTERNATIVE_PREFIX)]
    draws = dev[[c for c in dev.columns if c not in alternatives]]
    # the members' spread about their median: resampled fits can be biased as a group
    # relative to the full fit, and the estimate is the full fit's
    draws = draws.sub(draws.median(axis=1), axis=0)
    if alternatives:  # every member shifted by each plausible model's offset (and by none)
        offsets = [pd.Series(0.0, index=dev.index)] + [dev[c] for c in alternatives]
        draws = pd.concat([draws.add(offset, axis=0).add_suffix(f"_s{k}")
                           for k, offset in enumerate(offsets)], axis=1)
    if not year_error:
        return _with_other_pools(draws, totals, pool_plan)
    rng = np.random.default_rng([seed, 104729])
    draws = pd.concat([draws.add_suffix(f"_r{r}") for r in range(replicates)], axis=1)
    noise = {}
    for pool in TARGET_POOLS:
        if pool in year_error and pool in draws.index.get_level_values("pool"):
            rows = draws.loc[pool]
            eps = rng.standard_normal(rows.shape)
            noise[pool] = pd.DataFrame(eps * year_error[pool], index=rows.index,
                                       columns=rows.columns).mul(level.loc[pool], axis=0)
            draws.loc[pool] = (rows + noise[pool]).to_numpy()
    pools = [p for p in TARGET_POOLS if p in draws.index.get_level_values("pool")]
    if noise and set(noise) == set(pools) and "total" in draws.index.get_level_values("pool"):
        draws.loc["total"] = (draws.loc["total"] + pool_sum(noise)).to_numpy()
    return _with_other_pools(draws, totals, pool_plan)


def _with_other_pools(draws: pd.DataFrame, totals: pd.DataFrame,
                      plan: Mapping[str, Mapping] | None) -> pd.DataFrame:
    """Draws of the plan's pools no model predicts (see :func:`ensemble_draws`), and the
    total's as the sum of every pool's."""
    if not plan or all(spec["source"] == "model" for spec in plan.values()):
        return draws
    levels = totals.set_index(["pool", "year"])["storage_Tg"]
    have = set(draws.index.get_level_values("pool"))
    parts = {}
    for pool, spec in plan.items():
        if pool in have:
            parts[pool] = draws.loc[pool]
            continue
        origin = spec.get("from")
        if origin in have:  # the same relative deviation as the pool it is derived from
            ratio = (levels.loc[pool] / levels.loc[origin]).reindex(draws.loc[origin].index)
            parts[pool] = draws.loc[origin].mul(ratio.to_numpy(), axis=0)
        else:  # a fixed input: no model deviation
            years = draws.loc["total"].index
            parts[pool] = pd.DataFrame(0.0, index=years, columns=draws.columns)
    out = pd.concat({**parts, "total": sum(parts.values())}, names=["pool", "year"])
    return out


ALTERNATIVE_PREFIX = "alt:"


def _members_label(draws: pd.DataFrame) -> str:
    n = len({c.split("_")[0] for c in draws.columns})
    n_alt = len({c.split("_s")[1].split("_")[0] for c in draws.columns if "_s" in c}) - 1
    return (f"{n}-member bootstrap ensemble"
            + (f" and {n_alt} other plausible model{'s' * (n_alt > 1)}" if n_alt > 0 else "")
            + (" with year-level errors" if any("_r" in c for c in draws.columns) else ""))


def ensemble_totals(totals: pd.DataFrame, draws: pd.DataFrame, *, interval: float
                    ) -> pd.DataFrame:
    """Level intervals of the regional totals (Tg C) from :func:`ensemble_draws`.

    ``lower_Tg``/``upper_Tg`` = ``storage_Tg`` + the ``interval`` quantiles of the draws
    (:func:`_spread`). Adds ``members`` (the ensemble size).
    """
    q_low, q_high = interval_quantiles(interval)
    out = totals.copy()
    lower, upper = [], []
    for _, row in out.iterrows():
        key = (row["pool"], int(row["year"]))
        if key not in draws.index:
            lower.append(np.nan)
            upper.append(np.nan)
            continue
        lo, hi = _spread(draws.loc[key].to_numpy(dtype=float), q_low, q_high)
        lower.append(row["storage_Tg"] + lo)
        upper.append(row["storage_Tg"] + hi)
    out["lower_Tg"], out["upper_Tg"] = lower, upper
    out["members"] = len({c.split("_")[0] for c in draws.columns})
    out.attrs = {**totals.attrs, "interval_method": "ensemble",
                 "interval": f"{interval:g} central, {_members_label(draws)}"}
    return out


def ensemble_change(change: pd.DataFrame, draws: pd.DataFrame, *, interval: float
                    ) -> pd.DataFrame:
    """Change intervals (Tg C) computed inside each draw of :func:`ensemble_draws`.

    For every row of :func:`~terracarbon.carbon.stock_change.change_table`, each draw's
    end-year deviation minus its start-year deviation gives the spread; ``lower_Tg`` /
    ``upper_Tg`` = ``change_Tg`` + its ``interval`` quantiles (:func:`_spread`).
    """
    q_low, q_high = interval_quantiles(interval)
    out = change.copy()
    lower, upper = [], []
    for _, row in out.iterrows():
        start, end = (row["pool"], int(row["start_year"])), (row["pool"], int(row["end_year"]))
        if start not in draws.index or end not in draws.index:
            lower.append(np.nan)
            upper.append(np.nan)
            continue
        d = draws.loc[end].to_numpy(float) - draws.loc[start].to_numpy(float)
        lo, hi = _spread(d, q_low, q_high)
        lower.append(row["change_Tg"] + lo)
        upper.append(row["change_Tg"] + hi)
    out["lower_Tg"], out["upper_Tg"] = lower, upper
    out.attrs = {**change.attrs, "interval_method": "ensemble",
                 "interval_label": f"{interval:.0%} interval of a {_members_label(draws)}"}
    return out


def _sample_inputs(cube, totals, area, central_model, members, alternatives, step):
    """The pixel sample both member passes read: rows, cols, years, the covariate table,
    pixel areas (ha) and the labelled models (central, members, alternatives)."""
    rows, cols = pixel_sample(cube["region_mask"], step=step)
    years = sorted(int(y) for y in totals["year"].unique())
    alternatives = dict(alternatives or {})
    features = sorted(set(getattr(central_model, "features", None) or []).union(
        *(getattr(m, "features", None) or [] for m in alternatives.values())))
    table = sample_table(cube, rows, cols, years, features)
    area_ha = np.asarray(area.values, dtype=np.float64)[rows, cols]
    models = {"central": central_model, **{f"m{i:02d}": m for i, m in enumerate(members)},
              **{f"{ALTERNATIVE_PREFIX}{name}": m for name, m in alternatives.items()}}
    return rows, cols, years, alternatives, table, area_ha, models


def regional_intervals(totals: pd.DataFrame, change: pd.DataFrame, central_model, members,
                       cube: xr.Dataset, area: xr.DataArray, *, interval: float,
                       year_error: Mapping[str, float] | None = None, seed: int = 0,
                       alternatives: Mapping[str, object] | None = None,
                       step: int = SAMPLE_STEP,
                       pool_plan: Mapping[str, Mapping] | None = None,
                       ) -> tuple[pd.DataFrame, pd.DataFrame, xr.Dataset]:
    """:func:`ensemble_totals` and :func:`ensemble_change` from the models and the cube, and
    the members' sampled density (:func:`member_sample_density`, the trends stage's input
    for its robustness layer).

    Parameters
    ----------
    totals, change : pandas.DataFrame
        The central model's totals and change tables (Tg C).
    central_model, members : CarbonModel, list of CarbonModel
        The mapping model and its bootstrap members.
    cube : xarray.Dataset
        The data-prep cube (``region_mask`` and the models' features).
    area : xarray.DataArray
        Pixel area (ha).
    year_error : mapping, optional
        :func:`year_level_error` of the mapping model (relative, per target).
    seed : int
        Seed of the year-level error draws.
    alternatives : mapping, optional
        Other fitted models the data could not rule out on change (name -> model); their
        offsets from the mapping model enter the draws (:func:`ensemble_draws`).
    pool_plan : mapping, optional
        The study's pools (:func:`terracarbon.carbon.pools.pool_plan`): pools no model
        predicts get draws as :func:`ensemble_draws` says.
    """
    rows, cols, years, alternatives, table, area_ha, models = _sample_inputs(
        cube, totals, area, central_model, members, alternatives, step)
    density = member_sample_density(models, table, cube, rows, cols)
    draws = ensemble_draws(sample_storage_totals(density, area_ha), totals,
                           sample_area_ha=float(area_ha.sum()), year_error=year_error,
                           seed=seed, pool_plan=pool_plan)
    return (ensemble_totals(totals, draws, interval=interval),
            ensemble_change(change, draws, interval=interval), density)


@dataclass
class EnsembleIntervals:
    """What :func:`ensemble_intervals` returns: the totals and change tables with their
    ensemble intervals, the members' sampled density and the per-pixel change bounds."""

    totals: pd.DataFrame
    change: pd.DataFrame
    sample: xr.Dataset
    pixel_change: xr.Dataset | None


def ensemble_intervals(totals: pd.DataFrame, change: pd.DataFrame, central_model, members,
                       cube: xr.Dataset, area: xr.DataArray, *, interval: float,
                       start: int | None = None, end: int | None = None,
                       year_error: Mapping[str, float] | None = None, seed: int = 0,
                       alternatives: Mapping[str, object] | None = None,
                       step: int = SAMPLE_STEP,
                       pool_plan: Mapping[str, Mapping] | None = None) -> EnsembleIntervals:
    """Regional and per-pixel ensemble intervals in one pass over the members.

    The same numbers as :func:`regional_intervals` followed by
    :func:`pixel_change_interval` (``start``/``end``; both ``None``: no pixel bounds),
    organised so each member predicts the pixel sample of every year in one call, and maps
    ``start`` and ``end`` once per block of the grid (:func:`pixel_change_interval`: lazy,
    one task per spatial chunk, on a dask-backed cube). The sampled start and end
    years are not read off the full maps: a model's map and its sample predictions may
    differ in the last float32 bit (an averaged model means float32 maps), and the draws
    stay those of :func:`regional_intervals`.

    Parameters are those of :func:`regional_intervals`, plus ``start`` and ``end`` (years
    of the per-pixel change, t C ha-1 over the period). The members' random forests may
    have fewer trees than the central model's (``models.ensemble_member_trees``, fitted
    so in stage 02), which makes this pass proportionally cheaper.

    Returns
    -------
    EnsembleIntervals
        ``totals``, ``change`` (with ``lower_Tg``/``upper_Tg``), ``sample`` (the members'
        sampled density, :func:`member_sample_density`) and ``pixel_change``
        (``<pool>_carbon_density_change_lower/upper`` on the grid, lazy on a dask-backed
        cube, or None).
    """
    interval_quantiles(interval)
    if (start is None) != (end is None):
        raise ParameterError(f"start={start!r}, end={end!r}: give both years of the pixel "
                             "change, or neither")
    members = list(members)
    if not members:
        raise InputDataError("ensemble_intervals: no members; use the central model's own "
                             "pixel bounds (maps.interval_method: correlated)")
    rows, cols, years, alternatives, table, area_ha, labels = _sample_inputs(
        cube, totals, area, central_model, members, alternatives, step)
    sampled_years = np.unique(table["year"].to_numpy())
    per_model: dict[str, dict[str, np.ndarray]] = {}
    # one visit per model; minutes at China scale (21 models x 22 years on the pixel sample)
    for label in progress.iterate(labels, "ensemble sample", unit="models"):
        per_model[label] = _sample_predictions(labels[label], table, cube, rows.size,
                                               sampled_years.size)
    density = _sample_dataset(per_model, sampled_years, rows, cols)
    draws = ensemble_draws(sample_storage_totals(density, area_ha), totals,
                           sample_area_ha=float(area_ha.sum()), year_error=year_error,
                           seed=seed, pool_plan=pool_plan)
    pixel_change = (pixel_change_interval(members, cube, start=int(start), end=int(end),
                                          interval=interval, pool_plan=pool_plan)
                    if start is not None else None)
    return EnsembleIntervals(ensemble_totals(totals, draws, interval=interval),
                             ensemble_change(change, draws, interval=interval), density,
                             pixel_change)


# --------------------------------------------------------------------- pixels


MIN_PER_CLASS = 30
"""Fewest plots of a land-use class for that class to get its own conformal quantiles."""

POOLED = -1
"""Key of the quantiles over all plots (classes with fewer plots use them)."""


def _conformal_pair(r: np.ndarray, q_low: float, q_high: float) -> tuple[float, float]:
    n = r.size
    levels = [np.floor(q_low * (n + 1)) / n, min(1.0, np.ceil(q_high * (n + 1)) / n)]
    lo, hi = np.quantile(r, levels, method="inverted_cdf")
    return float(lo), float(hi)


MIN_MODEL_ERROR_SHARE = 0.25
"""Smallest factor by which removing plot measurement error may shrink the residual spread:
an interval never becomes narrower than a quarter of what the residuals show, however large
the stated measurement error."""


def without_measurement_error(r: np.ndarray, measurement_sd: float) -> np.ndarray:
    """Scaled residuals with the spread of plot measurement error taken out.

    A plot's residual against the map is ``r = e_model + e_plot``: the map's error at that
    pixel plus the plot's own measurement error (sampling within the pixel, allometry,
    laboratory), independent of each other. An interval for the pixel's *true* density
    must cover ``e_model`` only; with ``e_plot`` of relative standard deviation
    ``measurement_sd`` (1, a fraction of the density), ``var(e_model) = var(r) −
    measurement_sd²``. The residuals are shrunk about their median by
    ``s = sqrt(max(var(r) − measurement_sd², 0) / var(r))``, floored at
    :data:`MIN_MODEL_ERROR_SHARE` (deconvolution under a location-scale assumption).

    >>> r = np.array([-0.5, 0.0, 0.5])          # var = 1/6
    >>> without_measurement_error(r, 0.0).tolist()
    [-0.5, 0.0, 0.5]
    >>> np.round(without_measurement_error(r, np.sqrt(1 / 8)), 6).tolist()  # var 1/6 - 1/8: s = 1/2
    [-0.25, 0.0, 0.25]
    """
    if measurement_sd < 0 or not np.isfinite(measurement_sd):
        raise ParameterError(f"measurement_sd: got {measurement_sd}; expected a relative "
                             "standard deviation >= 0 (0.1 = 10 % of the density)")
    variance = float(np.var(r))
    if measurement_sd == 0 or variance == 0:
        return r
    share = max(MIN_MODEL_ERROR_SHARE, np.sqrt(max(variance - measurement_sd ** 2, 0.0)
                                                / variance))
    centre = float(np.median(r))
    return centre + share * (r - centre)


def conformal_quantiles(oof: pd.DataFrame, *, interval: float, by: str | None = "landuse",
                        min_per_class: int = MIN_PER_CLASS,
                        offset: float = CONFORMAL_OFFSET_T_HA,
                        measurement_sd: Mapping[str, float] | None = None,
                        ) -> dict[str, dict[int, tuple[float, float]]]:
    """Quantiles of the scaled out-of-fold residuals per target (and per land-use class).

    ``r = (observed - predicted) / (predicted + offset)`` over the plots with both values;
    the ``interval`` quantiles with the finite-sample correction of split-conformal
    prediction (level ``ceil((n + 1) q) / n``). With ``by`` (a column of ``oof``, default
    ``landuse``) every class with at least ``min_per_class`` plots gets its own quantiles
    (Mondrian conformal prediction, Vovk et al. 2005): a model errs differently on forest
    and on cropland, and the plots favour forest, so pooled quantiles would cover the
    plots' mix of classes rather than the map's. Key :data:`POOLED` holds the pooled ones.

    ``measurement_sd`` (per target, relative standard deviation of a plot measurement
    about the pixel's true density; ``maps.plot_measurement_error``) removes the plots' own
    error from each group's residuals first (:func:`without_measurement_error`): without
    it the bounds cover a new plot measurement, which is wider than the true density needs.

    Examples
    --------
    >>> oof = pd.DataFrame({"veg_obs": np.arange(1.0, 101.0), "veg_pred": np.full(100, 49.0)})
    >>> lo, hi = conformal_quantiles(oof, interval=0.8)["veg"][POOLED]
    >>> round(lo, 3), round(hi, 3)
    (-0.78, 0.84)
    """
    q_low, q_high = interval_quantiles(interval)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for target in TARGET_POOLS:
        obs, pred = f"{target}_obs", f"{target}_pred"
        if obs not in oof or pred not in oof:
            continue
        ok = np.isfinite(oof[obs]) & np.isfinite(oof[pred])
        if ok.sum() < 10:
            continue
        r = ((oof.loc[ok, obs] - oof.loc[ok, pred]) / (oof.loc[ok, pred] + offset)).to_numpy()
        sd = float((measurement_sd or {}).get(target, 0.0))
        out[target] = {POOLED: _conformal_pair(without_measurement_error(r, sd), q_low, q_high)}
        if by and by in oof:
            classes = oof.loc[ok, by].to_numpy()
            for code in np.unique(classes[np.isfinite(classes.astype(float))]):
                mine = r[classes == code]
                if mine.size >= min_per_class:
                    out[target][int(code)] = _conformal_pair(
                        without_measurement_error(mine, sd), q_low, q_high)
    return out


def conformal_bounds(density: xr.Dataset, quantiles: Mapping[str, Mapping[int, tuple]], *,
                     interval: float, landuse: xr.DataArray | None = None,
                     offset: float = CONFORMAL_OFFSET_T_HA) -> xr.Dataset:
    """Add ``<pool>_carbon_density_lower/upper`` (t C ha-1) from :func:`conformal_quantiles`.

    ``bound = max(0, p + (p + offset) q)`` elementwise, ``q`` of the pixel's land-use class
    that year where ``landuse`` (codes on the density's grid and years) is given and the
    class has its own quantiles, else the pooled ones (lazy on dask-backed input). Pools
    without quantiles get no bounds; existing bounds of those pools are replaced.
    """
    out = density.copy()
    for pool, by_class in quantiles.items():
        name = var(pool, "density")
        if name not in out:
            continue
        p = out[name]
        classes = {k: v for k, v in by_class.items() if k != POOLED}
        for i, bound in enumerate(("lower", "upper")):
            pooled = by_class[POOLED][i]
            if landuse is not None and classes:
                table = np.full(max(classes) + 1, pooled, dtype=np.float32)
                for code, pair in classes.items():
                    table[code] = pair[i]
                codes = landuse.sel(year=p["year"]) if "year" in landuse.dims else landuse
                q = xr.apply_ufunc(
                    lambda c, t=table: t[np.clip(np.nan_to_num(c, nan=0).astype(np.int64),
                                                 0, t.size - 1)],
                    codes, dask="parallelized", output_dtypes=[np.float32])
                q = q.where(codes.isin(list(classes)), pooled)
            else:
                q = pooled
            b = (p + (p + offset) * q).clip(min=0.0).astype(p.dtype)
            b.attrs = {"units": DENSITY_UNITS,
                       "long_name": f"{p.attrs.get('long_name', name)}, {bound} bound",
                       "interval": f"{interval:g} central, split-conformal on spatial-CV "
                                   "residuals" + (", per land-use class" if classes and
                                                  landuse is not None else "")}
            out[f"{name}_{bound}"] = b
    return out


def member_quantiles(stack: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Quantiles across axis 0 (members) of a ``(member, ...)`` stack, NaN members skipped.

    Equal to ``np.nanquantile(stack, quantiles, axis=0)`` but 50x faster on a map: members
    share their NaN pattern (outside the region, a missing covariate), so the plain
    quantile is taken everywhere and the NaN-aware one only where some but not all members
    are NaN (``np.nanquantile`` loops over pixels in Python: 17 s for 20 x 600 x 800).

    >>> a = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, np.nan], [2.0, np.nan, 7.0]])
    >>> member_quantiles(a, [0.5]).tolist()
    [[2.0, nan, 6.0]]
    """
    missing = np.isnan(stack)
    out = np.quantile(stack, quantiles, axis=0)
    partial = missing.any(axis=0) & ~missing.all(axis=0)
    if partial.any():
        out[:, partial] = np.nanquantile(stack[:, partial], quantiles, axis=0)
    return out


def _change_inputs(members: Sequence, cube: xr.Dataset, start: int, end: int) -> xr.Dataset:
    """The layers the members read for years ``start`` and ``end`` (and a CNN-TCN's years
    before them), as views of ``cube`` (nothing is read here)."""
    from terracarbon.carbon.mapping import variables_read, years_read

    years = years_read(members[0], [start, end], cube["year"].values)
    return cube[variables_read(members[0], cube)].sel(year=years)


def _member_change(member, change_cube: xr.Dataset, full_cube: xr.Dataset, start: int,
                   end: int, pool_plan: Mapping[str, Mapping] | None) -> dict[str, np.ndarray]:
    """One member's change map ``end - start`` per pool (and the total), float32 (y, x)."""
    a = member.predict_map(change_cube, start)
    b = member.predict_map(change_cube, end)
    if bool(pool_plan) and any(s["source"] != "model" for s in pool_plan.values()):
        from terracarbon.carbon.pools import assemble_pools

        a, b = (assemble_pools(d.expand_dims(year=[y]), pool_plan, full_cube).isel(year=0)
                for d, y in ((a, start), (b, end)))
    per_pool = {}
    for pool in TARGET_POOLS:
        name = var(pool, "density")
        if name in a:
            per_pool[pool] = (np.asarray(b[name].values, np.float32)
                              - np.asarray(a[name].values, np.float32))
    if per_pool:
        per_pool["total"] = pool_sum(per_pool)
    return per_pool


def _block_change_bounds(members: Sequence, inputs: xr.Dataset, full_cube: xr.Dataset, *,
                         start: int, end: int, interval: float,
                         pool_plan: Mapping[str, Mapping] | None,
                         keep: tuple[slice, slice] = (slice(None), slice(None))
                         ) -> dict[str, np.ndarray]:
    """The change bounds of one block of the grid, float32 (y, x) per bound and pool: every
    member maps the block's two years, then the quantiles across members; ``keep`` crops a
    block read with a network's context back to the block."""
    # the block's layers, read once for every member, in this task (a nested compute on a
    # dask.distributed worker would go back through the scheduler)
    inputs = inputs.load(scheduler="synchronous")
    changes: dict[str, list[np.ndarray]] = {}
    for member in members:
        for pool, values in _member_change(member, inputs, full_cube, start, end,
                                           pool_plan).items():
            changes.setdefault(pool, []).append(values[keep])
    q_low, q_high = interval_quantiles(interval)
    out = {}
    for pool, stack in changes.items():
        lo, hi = member_quantiles(np.stack(stack), [q_low, q_high])
        out[f"{var(pool, 'density')}_change_lower"] = lo.astype(np.float32)
        out[f"{var(pool, 'density')}_change_upper"] = hi.astype(np.float32)
    return out


def _bounds_attrs(name: str, *, start: int, end: int, interval: float, n_members: int
                  ) -> dict[str, str]:
    pool, bound = name.split("_carbon_density_change_")
    return {"units": DENSITY_UNITS, "long_name": f"{pool} carbon density change "
            f"{start}-{end}, {bound} bound", "interval": f"{interval:g} central, "
            f"{n_members}-member bootstrap ensemble"}


def _lazy_change_bounds(members: Sequence, inputs: xr.Dataset, full_cube: xr.Dataset, *,
                        start: int, end: int, interval: float,
                        pool_plan: Mapping[str, Mapping] | None) -> dict[str, Any]:
    """One dask task per spatial chunk of the cube (:func:`~terracarbon.carbon.mapping.
    blocks_with_context`): it reads the chunk (plus the members' context) of the two years,
    maps it with every member and keeps the quantiles."""
    from terracarbon.carbon.mapping import blocks_with_context, context_px

    kwargs = dict(start=start, end=end, interval=interval, pool_plan=pool_plan)
    strip = _block_change_bounds(members, inputs.isel(y=slice(0, 1)),
                                 full_cube.isel(y=slice(0, 1)), **kwargs)  # names, dtypes

    def block(members, window, keep) -> dict[str, np.ndarray]:
        return _block_change_bounds(members, inputs.isel(window), full_cube.isel(window),
                                    keep=keep, **kwargs)

    return blocks_with_context(block, list(members), ny=inputs.sizes["y"],
                               nx=inputs.sizes["x"], chunks=inputs.chunks,
                               halo=max(context_px(m) for m in members),
                               dtypes={n: np.float32 for n in strip})


def pixel_change_interval(members: Sequence, cube: xr.Dataset, *, start: int, end: int,
                          interval: float, pool_plan: Mapping[str, Mapping] | None = None
                          ) -> xr.Dataset:
    """Per-pixel change interval from the members' own changes (t C ha-1 over the period).

    Each member maps the two years; its change is end − start; the ``interval`` quantiles
    across members give ``<pool>_carbon_density_change_lower/upper`` for the mapped pools
    and the total (the sum of the pools inside each member). With ``pool_plan``
    (:func:`terracarbon.carbon.pools.pool_plan`) each member's maps first get the study's
    other pools (derived, product, lookup; :func:`~terracarbon.carbon.pools.assemble_pools`).

    On a dask-backed cube the result is lazy, one task per spatial chunk of the cube: a
    task reads its chunk of the two years (plus a network's context), maps it with every
    member and keeps only the quantiles, so memory holds a few chunks' members x pools,
    never a map of the grid. On an in-memory cube the whole grid is one block. Both give
    the same numbers.
    """
    interval_quantiles(interval)
    if not members:
        raise InputDataError("pixel_change_interval: no members")
    members = list(members)
    inputs = _change_inputs(members, cube, start, end)
    kwargs = dict(start=start, end=end, interval=interval, pool_plan=pool_plan)
    lazy = any(v.chunks is not None for v in inputs.data_vars.values())
    arrays = (_lazy_change_bounds(members, inputs, cube, **kwargs) if lazy
              else _block_change_bounds(members, inputs, cube, **kwargs))
    return xr.Dataset(
        {n: (("y", "x"), a, _bounds_attrs(n, start=start, end=end, interval=interval,
                                          n_members=len(members)))
         for n, a in arrays.items()},
        coords={"y": cube["y"], "x": cube["x"]})


# ---------------------------------------------------------------- calibration


def calibration_table(density: xr.Dataset, truth: xr.Dataset, totals: pd.DataFrame,
                      change: pd.DataFrame, *, interval: float) -> pd.DataFrame:
    """How often the intervals hold the planted truth.

    Rows per pool for ``pixel density`` (every region pixel and year), ``regional total``
    (every year), ``regional change, year to year`` and ``regional change, whole period``:
    ``n`` cases, ``coverage`` (share held, 0-1), ``nominal`` (``interval``) and
    ``mean_width`` with its ``units``. A calibrated interval has coverage near nominal:
    well above means too wide, well below overconfident.
    """
    rows = []
    for pool in POOLS:
        name = var(pool, "density")
        lo, hi = f"{name}_lower", f"{name}_upper"
        if lo in density and name in truth:
            import dask

            t = truth[name].sel(year=density["year"].values)
            inside = (density[lo] <= t) & (t <= density[hi])
            valid = np.isfinite(t) & np.isfinite(density[lo]) & np.isfinite(density[hi])
            # one computation: the bounds and the truth are read once, not once per number
            n, covered, width = dask.compute(valid.sum(), (inside & valid).sum(),
                                             (density[hi] - density[lo]).where(valid).mean())
            n, covered, width = int(n), int(covered), float(width)
            rows.append({"quantity": "pixel density", "pool": pool, "n": n,
                         "coverage": covered / n if n else np.nan, "mean_width": width,
                         "units": DENSITY_UNITS})
    if {"truth_Tg", "lower_Tg", "upper_Tg"} <= set(totals.columns):
        for pool, g in totals.groupby("pool", sort=False):
            ok = g[["truth_Tg", "lower_Tg", "upper_Tg"]].notna().all(axis=1)
            g = g[ok]
            held = (g["lower_Tg"] <= g["truth_Tg"]) & (g["truth_Tg"] <= g["upper_Tg"])
            rows.append({"quantity": "regional total", "pool": pool, "n": len(g),
                         "coverage": float(held.mean()) if len(g) else np.nan,
                         "mean_width": float((g["upper_Tg"] - g["lower_Tg"]).mean()),
                         "units": "Tg C"})
    if {"truth_change_Tg", "lower_Tg", "upper_Tg"} <= set(change.columns):
        for (pool, period), g in change.groupby(["pool", "period"], sort=False):
            ok = g[["truth_change_Tg", "lower_Tg", "upper_Tg"]].notna().all(axis=1)
            g = g[ok]
            held = (g["lower_Tg"] <= g["truth_change_Tg"]) & (g["truth_change_Tg"] <= g["upper_Tg"])
            label = "regional change, whole period" if period == "whole" else \
                "regional change, year to year"
            rows.append({"quantity": label, "pool": pool, "n": len(g),
                         "coverage": float(held.mean()) if len(g) else np.nan,
                         "mean_width": float((g["upper_Tg"] - g["lower_Tg"]).mean()),
                         "units": "Tg C"})
    table = pd.DataFrame(rows, columns=["quantity", "pool", "n", "coverage", "mean_width",
                                        "units"])
    table.insert(4, "nominal", float(interval))
    return table
