"""Validation of change at remeasured plots, and the choice of the mapping model.

Cross-validation at the campaign years scores levels. What a study reports, though, is the
change between years, and a model can be right about levels and wrong about change: a
covariate that greens everywhere over the period (NDVI on the synthetic study, and in most of
southern China) reads as carbon gain to a model that learned NDVI across space. Permanent
plots remeasured over the years are the data that can judge change (national forest
inventories remeasure theirs every 5-10 years), so:

* :func:`remeasured_pairs` pairs consecutive visits of every ``plot_id`` measured in two or
  more years, with the out-of-fold predictions of a CV (spatial-block by default: a site's
  visits share its block, so both predictions come from a model that never saw the site).
* :func:`change_metrics` scores observed against predicted change per target: R², RMSE,
  MAE and bias, in t C ha-1 over the interval and as a rate in t C ha-1 yr-1.
* :func:`choose_model` picks the mapping model by a criterion that uses temporal skill
  whenever the data can measure it (documented there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from terracarbon.errors import ModelError
from terracarbon.models.base import TARGETS

MIN_PAIRS = 20
"""Fewest remeasured pairs of a target for its change metrics to decide the model choice."""

LEVEL_TOLERANCE = 0.10
"""A model stays on the shortlist when its mean spatial-CV RMSE is within 10 % of the best."""

CHANGE_COLUMNS = ("model", "target", "basis", "n_pairs", "n_sites", "mean_years",
                  "observed_mean", "predicted_mean", "bias", "bias_se", "rmse", "mae", "r2",
                  "rate_bias", "rate_rmse", "units", "rate_units")


def remeasured_pairs(oof: pd.DataFrame, target: str) -> pd.DataFrame:
    """Consecutive visits of remeasured plots with observed and predicted change.

    Parameters
    ----------
    oof : pandas.DataFrame
        Out-of-fold table of a CV (:func:`terracarbon.models.validation.cv_result`): columns
        ``plot_id``, ``year``, ``<target>_obs``, ``<target>_pred`` (t C ha-1).
    target : {"veg", "soil"}
        The pool.

    Returns
    -------
    pandas.DataFrame
        One row per pair of consecutive measured visits of a site: ``plot_id, year_start,
        year_end, years, observed_change, predicted_change`` (t C ha-1 over the interval)
        and ``observed_rate, predicted_rate`` (t C ha-1 yr-1). Empty when no site was
        measured twice (a visit without a finite observation or prediction is skipped).

    Examples
    --------
    >>> oof = pd.DataFrame({"plot_id": ["a", "a", "b"], "year": [2010, 2015, 2010],
    ...                     "veg_obs": [40.0, 45.0, 20.0], "veg_pred": [38.0, 41.0, 22.0]})
    >>> remeasured_pairs(oof, "veg")[["plot_id", "years", "observed_change", "predicted_change"]]
      plot_id  years  observed_change  predicted_change
    0       a      5              5.0               3.0
    """
    obs, pred = f"{target}_obs", f"{target}_pred"
    columns = ["plot_id", "year_start", "year_end", "years", "observed_change",
               "predicted_change", "observed_rate", "predicted_rate"]
    if not {"plot_id", "year", obs, pred} <= set(oof.columns):
        return pd.DataFrame(columns=columns)
    visits = oof.loc[np.isfinite(oof[obs]) & np.isfinite(oof[pred]),
                     ["plot_id", "year", obs, pred]]
    visits = visits.sort_values(["plot_id", "year"], kind="stable")
    nxt = visits.groupby("plot_id", sort=False).shift(-1)
    keep = nxt["year"].notna() & (nxt["year"].to_numpy(dtype=float) > visits["year"].to_numpy())
    start, end = visits[keep], nxt[keep]
    years = end["year"].to_numpy(dtype=float) - start["year"].to_numpy(dtype=float)
    out = pd.DataFrame({
        "plot_id": start["plot_id"].to_numpy(),
        "year_start": start["year"].to_numpy(dtype=int),
        "year_end": end["year"].to_numpy(dtype=int),
        "years": years.astype(int),
        "observed_change": end[obs].to_numpy(float) - start[obs].to_numpy(float),
        "predicted_change": end[pred].to_numpy(float) - start[pred].to_numpy(float),
    })
    out["observed_rate"] = out["observed_change"] / years
    out["predicted_rate"] = out["predicted_change"] / years
    return out.reset_index(drop=True)


def change_metrics(oof: pd.DataFrame, *, model: str, targets: tuple[str, ...] | list[str],
                   basis: str = "spatial_block") -> pd.DataFrame:
    """Observed vs predicted change at remeasured plots, one row per target.

    ``bias`` is the mean of predicted − observed change (t C ha-1 over the interval; its
    standard error ``bias_se`` = s.d. / sqrt(n_pairs)), ``rmse``/``mae``/``r2`` compare the
    changes pair by pair, ``rate_bias``/``rate_rmse`` do the same per year (t C ha-1 yr-1).
    R² is 1 − SSE/SST about the observed mean change (it can be negative: plot-level change
    is small beside measurement noise, so read the bias and RMSE first). Targets without a
    pair get ``n_pairs`` 0 and NaN metrics. ``basis`` names the CV whose out-of-fold
    predictions were used.
    """
    rows = []
    for target in targets:
        pairs = remeasured_pairs(oof, target)
        n = len(pairs)
        row = {"model": model, "target": target, "basis": basis, "n_pairs": n,
               "n_sites": int(pairs["plot_id"].nunique()) if n else 0,
               "units": "t C ha-1", "rate_units": "t C ha-1 yr-1"}
        if n:
            err = pairs["predicted_change"] - pairs["observed_change"]
            rate_err = pairs["predicted_rate"] - pairs["observed_rate"]
            sst = float(((pairs["observed_change"] - pairs["observed_change"].mean()) ** 2).sum())
            row.update(
                mean_years=float(pairs["years"].mean()),
                observed_mean=float(pairs["observed_change"].mean()),
                predicted_mean=float(pairs["predicted_change"].mean()),
                bias=float(err.mean()),
                bias_se=float(err.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
                rmse=float(np.sqrt((err ** 2).mean())), mae=float(err.abs().mean()),
                r2=float(1.0 - (err ** 2).sum() / sst) if n > 1 and sst > 0 else np.nan,
                rate_bias=float(rate_err.mean()), rate_rmse=float(np.sqrt((rate_err ** 2).mean())),
            )
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(CHANGE_COLUMNS))


@dataclass(frozen=True)
class ModelChoice:
    """The mapping model and why it was chosen.

    ``criterion`` is ``remeasured_change``, ``leave_one_campaign_out`` or ``spatial_block``;
    ``change_validated`` is True only when change was scored at remeasured plots;
    ``shortlist`` are the models whose spatial-CV RMSE was within :data:`LEVEL_TOLERANCE` of
    the best; ``reason`` says it in words for the reports. ``plausible`` are the models the
    data could not rule out on change (:func:`plausible_models`), whose disagreement the
    maps stage adds to the change interval as structural uncertainty.
    """

    name: str
    criterion: str
    change_validated: bool
    shortlist: tuple[str, ...]
    reason: str
    no_skill: bool = False
    tied: tuple[str, ...] = ()

    @property
    def plausible(self) -> tuple[str, ...]:
        return plausible_models(self.as_dict(with_plausible=False))

    def as_dict(self, *, with_plausible: bool = True) -> dict:
        out = {"best_model": self.name, "criterion": self.criterion,
               "change_validated": self.change_validated, "shortlist": list(self.shortlist),
               "tied": list(self.tied or (self.name,)),
               "reason": self.reason, "no_skill": self.no_skill,
               # kept for readers of older best_model.json files
               "scheme": self.criterion, "by": "rmse"}
        if with_plausible:
            out["plausible"] = list(plausible_models(out))
        return out


def plausible_models(choice: Mapping) -> tuple[str, ...]:
    """The models whose change the data could not rule out, the chosen one first.

    With change validated at remeasured plots: the models tied with the best on change (the
    paired test). Otherwise nothing tested change, so every model on the level shortlist
    is as plausible as the chosen one (its leave-one-campaign-out or spatial score says
    nothing about a 20-year trend).

    >>> plausible_models({"best_model": "mlr", "change_validated": False,
    ...                   "shortlist": ["average", "mlr", "rf"]})
    ('mlr', 'average', 'rf')
    >>> plausible_models({"best_model": "average", "change_validated": True,
    ...                   "tied": ["average", "mlr"], "shortlist": ["average", "mlr", "rf"]})
    ('average', 'mlr')
    """
    best = choice["best_model"]
    pool = (choice.get("tied") or [best]) if choice.get("change_validated") else \
        choice.get("shortlist") or [best]
    return (best, *[m for m in pool if m != best])


NO_SKILL_R2 = 0.05
"""Spatial-CV R² at or below which a model explains no more than the plot mean."""


def level_shortlist(metrics: pd.DataFrame, *, tolerance: float = LEVEL_TOLERANCE
                    ) -> tuple[str, ...]:
    """Models scored on every target by spatial-block CV whose mean spatial-CV RMSE is within
    ``tolerance`` of the best (sorted by name; empty without spatial-CV rows)."""
    level = _mean_by_model(metrics, "spatial_block", "rmse")
    if level.empty:
        return ()
    return tuple(sorted(level.index[level <= float(level.min()) * (1.0 + tolerance)]))


def choose_model(metrics: pd.DataFrame, change: pd.DataFrame | None = None, *,
                 eligible: list[str] | tuple[str, ...] | None = None,
                 pair_errors: pd.DataFrame | None = None,
                 tolerance: float = LEVEL_TOLERANCE, min_pairs: int = MIN_PAIRS) -> ModelChoice:
    """The mapping model, chosen with temporal skill whenever the data can measure it.

    1. **Shortlist by levels**: models scored on every target by spatial-block CV whose mean
       spatial-CV RMSE (over targets, t C ha-1) is within ``tolerance`` (10 %) of the best.
    2. **Remeasured change** (``remeasured_change``), when every shortlisted model has at
       least ``min_pairs`` remeasured pairs for some target. Plot-level change is small
       beside measurement noise, so two models' change errors often differ by less than
       the pairs can resolve. With ``pair_errors`` the models whose squared change-rate
       errors are not significantly larger than the best model's (a paired, one-sided
       Diebold-Mariano test at 5 % on the same pairs, every target) tie with it, and the
       tie goes to the lowest spatial-CV RMSE; without ``pair_errors`` the lowest mean
       change-rate RMSE (t C ha-1 yr-1) wins. This is the only criterion that validates
       change itself (``change_validated``).
    3. Else **leave-one-campaign-out** (``leave_one_campaign_out``), when the plots come
       from two or more years: the lowest mean leave-one-campaign-out RMSE among the
       shortlisted models that have it (the networks skip that scheme for time).
    4. Else **spatial-block CV**: the lowest mean spatial-CV RMSE.

    ``no_skill`` flags a chosen model whose spatial-CV R² is at most :data:`NO_SKILL_R2`
    for every target: the covariates then explain no more than the plot mean, and the
    reports say so.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The training metrics table (``model, target, cv_scheme, split, r2, rmse``).
    change : pandas.DataFrame, optional
        :func:`change_metrics` rows of every model.
    eligible : sequence of str, optional
        The models that may be chosen (default: every model in ``metrics``); see
        :func:`terracarbon.models.training.eligible_models`.
    pair_errors : pandas.DataFrame, optional
        :func:`pair_rate_errors` of the models, for the paired test.

    Raises
    ------
    ModelError
        No model has spatial-block CV scores for every target.
    """
    if eligible is not None:
        metrics = metrics[metrics["model"].isin(eligible)]
    level = _mean_by_model(metrics, "spatial_block", "rmse")
    if level.empty:
        raise ModelError("no model has spatial-block CV RMSE for every target; cannot choose "
                         "the mapping model (check metrics.csv)")
    shortlist = level_shortlist(metrics, tolerance=tolerance)
    choice = None
    if change is not None and len(change):
        enough = change[(change["n_pairs"] >= min_pairs) & change["rate_rmse"].notna()]
        rate = enough.pivot_table(index="model", columns="target", values="rate_rmse")
        rate = rate.reindex(shortlist).dropna(how="all", axis=1).dropna()
        if len(rate) == len(shortlist) and rate.shape[1]:
            score = rate.mean(axis=1).sort_index()
            best_change = str(score.idxmin())
            n_pairs = int(enough[enough.model == best_change]["n_pairs"].sum())
            tied = (tied_on_change(pair_errors, best_change, list(shortlist),
                                   list(rate.columns)) if pair_errors is not None
                    else [best_change])
            name = str(level.reindex(tied).sort_index().idxmin())
            why = (f"{name}: among the models within {tolerance:.0%} of the best spatial-CV "
                   f"RMSE ({', '.join(shortlist)}), ")
            if len(tied) > 1:
                why += (f"{', '.join(tied)} have change-rate errors at {n_pairs} remeasured "
                        f"plot pairs that do not differ significantly (best "
                        f"{score[best_change]:.3f} t C ha-1 yr-1 RMSE, {best_change}); of "
                        f"these {name} has the lowest spatial-CV RMSE ({level[name]:.2f} t C "
                        "ha-1)")
            else:
                why += (f"the lowest error of the change rate at {n_pairs} remeasured plot "
                        f"pairs ({score[name]:.3f} t C ha-1 yr-1 RMSE)")
            choice = ModelChoice(name, "remeasured_change", True, shortlist, why,
                                 tied=tuple(tied))
    if choice is None:
        campaign = _mean_by_model(metrics, "campaign", "rmse").reindex(shortlist).dropna()
        if len(campaign):
            name = str(campaign.sort_index().idxmin())
            choice = ModelChoice(
                name, "leave_one_campaign_out", False, shortlist,
                f"{name}: the lowest leave-one-campaign-out RMSE ({campaign[name]:.2f} t C "
                f"ha-1) among the models within {tolerance:.0%} of the best spatial-CV RMSE "
                f"({', '.join(shortlist)}); no plot was remeasured, so change itself is "
                "unvalidated")
    if choice is None:
        name = str(level.sort_index().idxmin())
        choice = ModelChoice(
            name, "spatial_block", False, shortlist,
            f"{name}: the lowest spatial-CV RMSE ({level[name]:.2f} t C ha-1); the plots "
            "come from one campaign, so nothing could test transfer in time and change is "
            "unvalidated")
    r2 = metrics[(metrics["model"] == choice.name) & (metrics["cv_scheme"] == "spatial_block")
                 & (metrics["split"] == "cv_mean")]["r2"]
    if len(r2) and bool((r2 <= NO_SKILL_R2).all()):
        choice = ModelChoice(choice.name, choice.criterion, choice.change_validated,
                             choice.shortlist, choice.reason + no_skill_text(float(r2.max())),
                             no_skill=True, tied=choice.tied)
    return choice


def no_skill_text(r2: float) -> str:
    """The words every report adds when the chosen model has no skill."""
    return (f". Its spatial-CV R² is {r2:.2f}: the covariates explain no more than the plot "
            "mean, so the maps show little more than the mean density per pixel")


def change_caveat(choice: Mapping | ModelChoice) -> str:
    """The sentence that goes next to every change number (empty when change was validated
    at remeasured plots)."""
    validated = (choice.change_validated if isinstance(choice, ModelChoice)
                 else bool(choice.get("change_validated", False)))
    if validated:
        return ""
    return ("change unvalidated: no plot was remeasured, so no data tested the mapped change; "
            "the interval reflects the model's uncertainty only")


def pair_rate_errors(oofs: Mapping[str, pd.DataFrame], targets: tuple[str, ...] | list[str]
                     ) -> pd.DataFrame:
    """Long table ``model, target, plot_id, year_start, rate_error`` (predicted − observed
    change rate, t C ha-1 yr-1) of every remeasured pair, from each model's out-of-fold
    table, for :func:`tied_on_change`."""
    frames = []
    for model, oof in oofs.items():
        for target in targets:
            pairs = remeasured_pairs(oof, target)
            if len(pairs):
                frames.append(pd.DataFrame({
                    "model": model, "target": target, "plot_id": pairs["plot_id"],
                    "year_start": pairs["year_start"],
                    "rate_error": pairs["predicted_rate"] - pairs["observed_rate"]}))
    columns = ["model", "target", "plot_id", "year_start", "rate_error"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


DM_CRITICAL_Z = 1.645
"""One-sided 5 % critical value of the paired (Diebold-Mariano) test."""


def tied_on_change(pair_errors: pd.DataFrame, best: str, models: list[str],
                   targets: list[str]) -> list[str]:
    """The ``models`` whose change-rate errors are not significantly worse than ``best``'s.

    For each target, on the pairs every model predicted, ``d = e_model² − e_best²``; a model
    is significantly worse when ``mean(d) / (sd(d) / sqrt(n)) > 1.645`` for some target
    (Diebold & Mariano 1995, one-sided 5 %). ``best`` is always in the result.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(0, 2, 400)  # the plots' own change noise, shared by all models
    >>> errors = pd.concat([pd.DataFrame({"model": m, "target": "veg", "plot_id": range(400),
    ...                                   "year_start": 2010, "rate_error": noise + shift})
    ...                     for m, shift in (("a", 0.0), ("b", 0.01), ("c", 1.0))])
    >>> tied_on_change(errors, "a", ["a", "b", "c"], ["veg"])
    ['a', 'b']
    """
    tied = []
    for model in models:
        worse = False
        for target in targets:
            sub = pair_errors[pair_errors["target"] == target]
            wide = sub.pivot_table(index=["plot_id", "year_start"], columns="model",
                                   values="rate_error").dropna()
            if model == best or model not in wide or best not in wide or len(wide) < 3:
                continue
            d = wide[model] ** 2 - wide[best] ** 2
            se = float(d.std(ddof=1)) / np.sqrt(len(d))
            if se == 0.0:
                worse = worse or float(d.mean()) > 0
            elif float(d.mean()) / se > DM_CRITICAL_Z:
                worse = True
        if not worse:
            tied.append(model)
    return tied


def _mean_by_model(metrics: pd.DataFrame, scheme: str, column: str) -> pd.Series:
    sub = metrics[(metrics["cv_scheme"] == scheme) & (metrics["split"] == "cv_mean")]
    if sub.empty:
        return pd.Series(dtype=float)
    wide = sub.pivot_table(index="model", columns="target", values=column, aggfunc="first")
    wanted = [t for t in TARGETS if t in set(metrics["target"])]
    return wide.reindex(columns=wanted).dropna().mean(axis=1)
