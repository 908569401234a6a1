"""Validation that does not flatter: random, spatial-block, leave-one-site-out and
leave-one-campaign-out CV, hold-outs.

Random k-fold CV on spatially autocorrelated plots rewards a model for interpolating between
neighbours (and, with repeated measurements, for recognising a site it has already seen). A
spatial-block CV holds out whole squares of the study area, so the score is closer to what a
map pixel far from any plot gets. Every study reports both, side by side
(:func:`cv_comparison_table`), and picks the mapping model by the spatial score
(:func:`best_model`).

Everything works through the :class:`~terracarbon.models.base.CarbonModel` protocol
(``fit`` / ``predict_samples``), so the tabular models and the CNNs are validated alike.

Fold schemes
------------
``random``
    ``KFold(k, shuffle=True, random_state=seed)`` over sample rows.
``spatial_block``
    Square blocks of ``block_size_m`` metres anchored at coordinate 0 (block index
    ``floor(x / block_size_m), floor(y / block_size_m)``, so blocks do not move when plots are
    added); blocks are the groups of ``GroupKFold(k, shuffle=True, random_state=seed)``,
    which balances the number of rows per fold. A block is never split across folds.
``loso``
    Leave-one-site-out on ``plot_id`` (a site measured in several years is one group). With
    at most ``k`` sites this is exact ``LeaveOneGroupOut``; with more sites, running one fit
    per site is too slow, so sites are grouped into ``k`` folds with ``GroupKFold`` (every
    site's rows are still held out together, never split).
``campaign``
    Leave-one-campaign-out: one fold per plot year (``year``); train on every other campaign,
    test on this one. Spatial CV at the campaign years scores levels; this scheme scores how
    a model carries what it learned at some dates to another date, the transfer that mapping
    the years between and beyond the campaigns relies on. ``k`` is ignored (one fold per
    year); at least two campaign years are needed.

Summary statistics
------------------
``cv_mean`` / ``cv_sd`` in the metrics table are the mean and sample s.d. (ddof = 1) of the
per-fold metrics (each fold scored on its own held-out rows; R² is NaN for a fold with fewer
than 2 observations or constant observations and such folds are skipped). The pooled
out-of-fold predictions are returned too, for pooled scores and maps of residuals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple, get_args

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import check_choice, check_int, require_columns
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.base import (
    OUTPUT_VARIABLES,
    TARGETS,
    CarbonModel,
    check_sample_years,
    check_target_columns,
)
from terracarbon.carbon.mapping import predict_years
from terracarbon.models.metrics import metrics_table, score, ssim_maps
from terracarbon.models.tabular import TabularCarbonModel, check_training_table

log = logging.getLogger(__name__)

CvScheme = Literal["random", "spatial_block", "loso", "campaign"]
CV_SCHEMES: tuple[str, ...] = get_args(CvScheme)
"""The cross-validation schemes of :func:`cv_folds` (see the module docstring)."""
HoldoutScheme = Literal["7:2:1", "10pct"]
ModelFactory = Callable[[], CarbonModel]

HOLDOUT_FRACTIONS: dict[str, dict[str, float]] = {
    "7:2:1": {"train": 0.7, "validation": 0.2, "test": 0.1},
    "10pct": {"train": 0.9, "test": 0.1},
}
"""Split name -> fraction of rows, per hold-out scheme."""


# ---------------------------------------------------------------------------- folds


def spatial_blocks(samples: pd.DataFrame, *, block_size_m: float) -> np.ndarray:
    """Block id (0..n_blocks-1) of each sample row for square blocks of ``block_size_m``.

    Parameters
    ----------
    samples : pandas.DataFrame
        With ``x`` and ``y`` in metres of the projected grid CRS.
    block_size_m : float
        Side of the square blocks, metres (choose it near the range of residual spatial
        autocorrelation).

    Returns
    -------
    numpy.ndarray of int64
        Block id per row; ids are dense and ordered by (block column, block row).
    """
    if not isinstance(block_size_m, (int, float, np.number)) or not block_size_m > 0:
        raise ParameterError(
            f"block_size_m={block_size_m!r}; expected a positive block side in metres, e.g. "
            "block_size_m=5000."
        )
    require_columns(samples, ["x", "y"], name="sample table", error=ModelError,
                    fix="Spatial blocks need the plot coordinates x, y (metres).")
    x = np.asarray(samples["x"], dtype=np.float64)
    y = np.asarray(samples["y"], dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ModelError("sample table has NaN x/y coordinates; spatial blocks need them all.")
    bx = np.floor(x / block_size_m).astype(np.int64)
    by = np.floor(y / block_size_m).astype(np.int64)
    _, ids = np.unique(np.column_stack([bx, by]), axis=0, return_inverse=True)
    return ids.ravel().astype(np.int64)


def cv_folds(
    samples: pd.DataFrame,
    *,
    scheme: CvScheme = "random",
    k: int = 10,
    block_size_m: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Fold id (0..n_folds-1) of every sample row for a cross-validation scheme.

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table (``x``, ``y`` in metres for ``spatial_block``; ``plot_id`` for ``loso``).
    scheme : {"random", "spatial_block", "loso", "campaign"}
        See the module docstring.
    k : int, default 10
        Number of folds (for ``loso`` the most folds; fewer sites give one fold per site;
        ignored by ``campaign``: one fold per plot year).
    block_size_m : float, optional
        Block side in metres; required for ``spatial_block``.
    seed : int, default 0
        Seed of the shuffling.

    Returns
    -------
    numpy.ndarray of int64
        Fold per row.

    Raises
    ------
    ParameterError
        Unknown scheme, ``k`` < 2, or ``spatial_block`` without ``block_size_m``.
    ModelError
        Fewer rows/blocks/sites than the scheme needs (the message gives the numbers).
    """
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut

    check_choice(scheme, CV_SCHEMES, name="scheme")
    check_int(k, name="k", minimum=2, hint="(number of folds)")
    n = len(samples)
    folds = np.full(n, -1, dtype=np.int64)
    if scheme == "random":
        if k > n:
            raise ModelError(
                f"random CV with k={k} folds needs at least {k} plots, but the sample table "
                f"has {n}; lower k."
            )
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        split_iter = splitter.split(np.zeros(n))
    elif scheme == "spatial_block":
        if block_size_m is None:
            raise ParameterError(
                "scheme='spatial_block' needs block_size_m (block side in metres), e.g. "
                "block_size_m=5000."
            )
        groups = spatial_blocks(samples, block_size_m=block_size_m)
        n_blocks = int(groups.max()) + 1 if n else 0
        if k > n_blocks:
            raise ModelError(
                f"spatial-block CV with k={k} folds needs at least {k} blocks holding plots, "
                f"but block_size_m={block_size_m} gives {n_blocks} blocks for {n} plots; use "
                "a smaller block_size_m or a smaller k."
            )
        split_iter = GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
            np.zeros(n), groups=groups
        )
    elif scheme == "campaign":
        require_columns(samples, ["year"], name="sample table", error=ModelError,
                        fix="Leave-one-campaign-out CV groups the rows by year.")
        years = np.asarray(samples["year"], dtype=np.int64)
        n_years = np.unique(years).size
        if n_years < 2:
            raise ModelError(
                f"leave-one-campaign-out CV needs plots from at least 2 years, got {n_years} "
                f"({np.unique(years).tolist()}); drop the scheme for a single campaign."
            )
        split_iter = LeaveOneGroupOut().split(np.zeros(n), groups=years)
    else:
        require_columns(samples, ["plot_id"], name="sample table", error=ModelError,
                        fix="Leave-one-site-out CV groups the rows by plot_id.")
        _, groups = np.unique(samples["plot_id"].astype(str).to_numpy(), return_inverse=True)
        n_sites = int(groups.max()) + 1 if n else 0
        if n_sites < 2:
            raise ModelError(
                f"leave-one-site-out CV needs at least 2 sites (distinct plot_id), got {n_sites}."
            )
        if n_sites <= k:
            split_iter = LeaveOneGroupOut().split(np.zeros(n), groups=groups)
        else:
            log.info("loso: %d sites grouped into %d folds", n_sites, k)
            split_iter = GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
                np.zeros(n), groups=groups
            )
    for i, (_, test) in enumerate(split_iter):
        folds[test] = i
    return folds


# ------------------------------------------------------------------ cross-validation


def check_before_fits(model: CarbonModel, samples: pd.DataFrame, cube: xr.Dataset | None) -> None:
    if not isinstance(model, CarbonModel):
        raise ModelError(
            f"model_factory() returned {type(model).__name__}, which does not implement the "
            "CarbonModel protocol (fit, predict_samples, predict_map, card, name, features, "
            "targets)."
        )
    if not isinstance(samples, pd.DataFrame):
        raise ModelError(f"samples must be a pandas DataFrame, got {type(samples).__name__}.")
    if isinstance(model, TabularCarbonModel):
        check_training_table(samples, model.features, model.targets, cube)
        return
    check_target_columns(samples, model.targets)
    check_sample_years(samples, cube)


def cross_validate(
    model_factory: ModelFactory,
    samples: pd.DataFrame,
    cube: xr.Dataset | None,
    *,
    scheme: CvScheme = "random",
    k: int = 10,
    block_size_m: float | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validate a model: fit a fresh model per fold, predict the held-out rows.

    Parameters
    ----------
    model_factory : callable
        ``model_factory()`` returns a fresh, unfitted :class:`CarbonModel`.
    samples : pandas.DataFrame
        Sample table; target columns in t C ha-1 (NaN where not measured: ignored for that
        target in fitting and scoring).
    cube : xarray.Dataset or None
        Data-prep cube (needed by spatial models; tabular models accept None).
    scheme : {"random", "spatial_block", "loso"}, default "random"
    k : int, default 10
        Folds (for ``loso``: most folds, see module docstring).
    block_size_m : float, optional
        Block side, metres (``spatial_block`` only).
    seed : int, default 0
        Seed of the fold assignment.

    Returns
    -------
    metrics : pandas.DataFrame
        :func:`~terracarbon.models.metrics.metrics_table` rows ``split`` = ``cv_mean`` and
        ``cv_sd`` per target (r2 dimensionless; rmse, mae in t C ha-1; ssim NaN).
    oof : pandas.DataFrame
        One row per sample (same index): ``fold`` and, per target, ``<t>_obs`` and
        ``<t>_pred`` (t C ha-1), plus ``plot_id``, ``year``, ``x``, ``y`` when present.

    Raises
    ------
    ModelError
        Too few plots/blocks/sites for ``k``, bad sample table (see the model's ``fit``), or
        a fold whose training rows cannot fit the model (the message names the fold).
    ParameterError
        Bad ``scheme``, ``k`` or ``block_size_m``.
    """
    probe = model_factory()
    check_before_fits(probe, samples, cube)
    folds = cv_folds(samples, scheme=scheme, k=k, block_size_m=block_size_m, seed=seed)
    outputs = [fit_and_predict(model_factory, samples, cube, job)
               for job in fold_jobs(folds, scheme=scheme)]
    return cv_result(probe, samples, folds, [out.predictions for out in outputs], scheme=scheme)


class FitJob(NamedTuple):
    """One model fit: train on rows ``train``, predict rows ``predict`` (positions).

    ``label`` names it in errors ("spatial_block CV fold 3 of 5"); ``keep_model`` returns the
    fitted model (hold-out and final fits) rather than only its predictions.
    """

    label: str
    train: np.ndarray
    predict: np.ndarray
    keep_model: bool = False


class FitOutput(NamedTuple):
    predictions: np.ndarray | None
    model: CarbonModel | None


def fold_jobs(folds: np.ndarray, *, scheme: str) -> list[FitJob]:
    """One :class:`FitJob` per CV fold: train on the other folds, predict this one."""
    n_folds = int(folds.max()) + 1
    return [FitJob(f"{scheme} CV fold {f + 1} of {n_folds}", np.flatnonzero(folds != f),
                   np.flatnonzero(folds == f)) for f in range(n_folds)]


def fit_and_predict(model_factory: ModelFactory, samples: pd.DataFrame,
                    cube: xr.Dataset | None, job: FitJob) -> FitOutput:
    """Run one :class:`FitJob` with a fresh model (a ModelError names the job).

    A fit whose model is not kept (a CV fold) only predicts its fold's plots, so a model with
    a ``for_point_predictions()`` method (the random forest) is asked to skip what only its
    intervals need; its predictions are the same.
    """
    model = model_factory()
    if not job.keep_model and hasattr(model, "for_point_predictions"):
        model = model.for_point_predictions()
    try:
        model.fit(samples.iloc[job.train], cube)
    except ModelError as err:
        raise ModelError(f"{job.label}: {err}") from err
    predictions = (model.predict_samples(samples.iloc[job.predict], cube)
                   if len(job.predict) else None)
    return FitOutput(predictions, model if job.keep_model else None)


def cv_result(probe: CarbonModel, samples: pd.DataFrame, folds: np.ndarray,
              fold_predictions: Sequence[np.ndarray], *, scheme: str
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics and out-of-fold table of a CV from each fold's predictions (fold order)."""
    pred = np.full((len(samples), len(probe.targets)), np.nan)
    for f, fold_pred in enumerate(fold_predictions):
        pred[folds == f] = fold_pred
    oof = pd.DataFrame(index=samples.index)
    for col in ("plot_id", "year", "x", "y"):
        if col in samples.columns:
            oof[col] = samples[col].to_numpy()
    oof["fold"] = folds
    for j, t in enumerate(probe.targets):
        oof[f"{t}_obs"] = np.asarray(samples[TARGETS[t]], dtype=np.float64)
        oof[f"{t}_pred"] = pred[:, j]
    return cv_summary(oof, model=probe.name, targets=probe.targets, scheme=scheme), oof


def cv_summary(oof: pd.DataFrame, *, model: str, targets: Sequence[str], scheme: str
               ) -> pd.DataFrame:
    """``cv_mean``/``cv_sd`` metrics rows of an out-of-fold table (``fold``,
    ``<target>_obs``, ``<target>_pred``): per-fold scores, then their mean and s.d."""
    per_fold = metrics_by_fold(oof, targets=targets)
    rows = []
    for t in targets:
        pf = per_fold[per_fold["target"] == t]
        for split, stat in (("cv_mean", "mean"), ("cv_sd", "std")):
            vals = {m: float(getattr(pf[m].dropna(), stat)()) if pf[m].notna().any() else np.nan
                    for m in ("r2", "rmse", "mae")}
            rows.append({"model": model, "target": t, "cv_scheme": scheme,
                         "split": split, **vals})
    return metrics_table(rows)


def metrics_by_fold(oof: pd.DataFrame, *, targets: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-fold r2, rmse, mae from out-of-fold predictions.

    Parameters
    ----------
    oof : pandas.DataFrame
        As returned by :func:`cross_validate` (``fold``, ``<t>_obs``, ``<t>_pred``).
    targets : sequence of str, optional
        Targets to score; default every ``<t>_pred`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``fold``, ``target``, ``n`` (scored rows), ``r2`` (1), ``rmse``, ``mae``
        (t C ha-1).
    """
    if targets is None:
        targets = [c.removesuffix("_pred") for c in oof.columns if c.endswith("_pred")]
    rows = []
    for t in targets:
        for f, part in oof.groupby("fold", sort=True):
            obs, prd = part[f"{t}_obs"].to_numpy(), part[f"{t}_pred"].to_numpy()
            n_ok = int((np.isfinite(obs) & np.isfinite(prd)).sum())
            rows.append({"fold": int(f), "target": t, "n": n_ok, **score(obs, prd)})
    return pd.DataFrame(rows, columns=["fold", "target", "n", "r2", "rmse", "mae"])


def compare_cv(
    model_factories: Mapping[str, ModelFactory],
    samples: pd.DataFrame,
    cube: xr.Dataset | None,
    *,
    schemes: Sequence[CvScheme] = ("random", "spatial_block"),
    k: int = 10,
    block_size_m: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Cross-validate several models under several schemes; one long metrics table.

    Parameters
    ----------
    model_factories : mapping name -> factory
        The name labels the ``model`` column (overrides ``model.name``).
    samples, cube, k, block_size_m, seed
        As in :func:`cross_validate`.
    schemes : sequence of scheme names, default ("random", "spatial_block")

    Returns
    -------
    pandas.DataFrame
        Metrics-table rows for every model x scheme x target x {cv_mean, cv_sd}.
    """
    tables = []
    for name, factory in model_factories.items():
        for scheme in schemes:
            metrics, _ = cross_validate(
                factory, samples, cube, scheme=scheme, k=k, block_size_m=block_size_m, seed=seed
            )
            tables.append(metrics.assign(model=name))
    return pd.concat(tables, ignore_index=True)


def cv_comparison_table(
    metrics: pd.DataFrame, *, schemes: Sequence[str] = ("random", "spatial_block")
) -> pd.DataFrame:
    """Random and spatial CV side by side: one row per model and target.

    Parameters
    ----------
    metrics : pandas.DataFrame
        A metrics table holding ``cv_mean`` rows for the ``schemes``.
    schemes : sequence of str
        CV schemes to put side by side, in column order.

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``target``, ``<metric>_<scheme>`` for r2 (1), rmse and mae
        (t C ha-1), and, when both random and spatial_block are present, ``r2_optimism`` =
        r2_random - r2_spatial_block (how much random CV flatters the model).
    """
    sub = metrics[(metrics["split"] == "cv_mean") & metrics["cv_scheme"].isin(schemes)]
    if sub.empty:
        raise ModelError(
            f"metrics table has no cv_mean rows for schemes {list(schemes)}; it has "
            f"{sorted(metrics['cv_scheme'].unique())}."
        )
    wide = sub.pivot_table(
        index=["model", "target"], columns="cv_scheme", values=["r2", "rmse", "mae"],
        aggfunc="first", dropna=False,
    )
    out = pd.DataFrame(index=wide.index)
    for metric in ("r2", "rmse", "mae"):
        for s in schemes:
            if (metric, s) in wide.columns:
                out[f"{metric}_{s}"] = wide[(metric, s)]
    if {"r2_random", "r2_spatial_block"} <= set(out.columns):
        out["r2_optimism"] = out["r2_random"] - out["r2_spatial_block"]
    return out.reset_index()


def best_model(
    metrics_df: pd.DataFrame,
    *,
    scheme: str = "spatial_block",
    split: str = "cv_mean",
    by: Literal["rmse", "mae", "r2"] = "rmse",
    target: str | None = None,
) -> str:
    """Name of the best model under one CV scheme (the default model for mapping).

    Parameters
    ----------
    metrics_df : pandas.DataFrame
        A metrics table (several models).
    scheme, split : str
        Rows to rank (default: spatial-block CV means).
    by : {"rmse", "mae", "r2"}, default "rmse"
        Lower is better for rmse/mae, higher for r2.
    target : {"veg", "soil"}, optional
        Rank on one target only. By default the metric is averaged over targets, and only
        models scored on every target present are ranked (a veg-only model does not win by
        skipping soil).

    Returns
    -------
    str
        The ``model`` value of the best row (ties: alphabetical first).

    Raises
    ------
    ModelError
        No rows for ``scheme``/``split`` (or ``target``).
    ParameterError
        Unknown ``by``.
    """
    check_choice(by, ("rmse", "mae", "r2"), name="by")
    sub = metrics_df[(metrics_df["cv_scheme"] == scheme) & (metrics_df["split"] == split)]
    if target is not None:
        sub = sub[sub["target"] == target]
    if sub.empty:
        raise ModelError(
            f"no metrics rows with cv_scheme={scheme!r}, split={split!r}"
            f"{'' if target is None else f', target={target!r}'}; available schemes "
            f"{sorted(metrics_df['cv_scheme'].unique())}, splits "
            f"{sorted(metrics_df['split'].unique())}."
        )
    wide = sub.pivot_table(index="model", columns="target", values=by, aggfunc="first")
    complete = wide.dropna()
    if complete.empty:
        raise ModelError(f"no model has a finite {by} for every target {list(wide.columns)}.")
    dropped = sorted(set(wide.index) - set(complete.index))
    if dropped:
        log.info("best_model: %s lack a target and are not ranked", dropped)
    value = complete.mean(axis=1).sort_index()
    return str(value.idxmax() if by == "r2" else value.idxmin())


# ------------------------------------------------------------------------ hold-outs


def split_holdout(
    samples: pd.DataFrame,
    *,
    scheme: HoldoutScheme = "7:2:1",
    spatial: bool = False,
    block_size_m: float | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Split the sample rows into train/validation/test (7:2:1) or train/test (10 % hold-out).

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table (``x``, ``y`` in metres when ``spatial``).
    scheme : {"7:2:1", "10pct"}, default "7:2:1"
    spatial : bool, default False
        False: rows are shuffled and cut at the fractions (sizes: validation and test are
        rounded, train takes the rest). True: whole blocks of ``block_size_m`` go to one
        split; blocks are shuffled and each goes to the split in whose fraction range its
        cumulative row-count midpoint falls, so fractions hold approximately.
    block_size_m : float, optional
        Block side in metres (required with ``spatial``).
    seed : int, default 0

    Returns
    -------
    dict of str -> numpy.ndarray
        Sorted **positional** row indices (use ``samples.iloc[idx]``) for ``train``,
        ``validation`` (7:2:1 only) and ``test``; disjoint and covering every row.

    Raises
    ------
    ParameterError
        Unknown scheme, or ``spatial`` without ``block_size_m``.
    ModelError
        Too few rows or blocks to give every split at least one row.
    """
    check_choice(scheme, HOLDOUT_FRACTIONS, name="scheme")
    fractions = HOLDOUT_FRACTIONS[scheme]
    names = list(fractions)
    n = len(samples)
    rng = np.random.default_rng(seed)
    if not spatial:
        sizes = {s: int(round(fractions[s] * n)) for s in names[1:]}
        sizes[names[0]] = n - sum(sizes.values())
        if min(sizes.values()) < 1:
            raise ModelError(
                f"hold-out {scheme} of {n} plots gives split sizes {sizes}; every split needs "
                f"at least one plot (need about {int(np.ceil(1 / min(fractions.values())))} plots)."
            )
        perm = rng.permutation(n)
        out, start = {}, 0
        for s in names:
            out[s] = np.sort(perm[start:start + sizes[s]])
            start += sizes[s]
        return out
    if block_size_m is None:
        raise ParameterError("split_holdout(spatial=True) needs block_size_m (metres).")
    blocks = spatial_blocks(samples, block_size_m=block_size_m)
    n_blocks = int(blocks.max()) + 1 if n else 0
    counts = np.bincount(blocks, minlength=n_blocks)
    order = rng.permutation(n_blocks)
    midpoints = (np.cumsum(counts[order]) - counts[order] / 2.0) / max(n, 1)
    edges = np.cumsum([fractions[s] for s in names])[:-1]
    split_of_block = np.empty(n_blocks, dtype=np.int64)
    split_of_block[order] = np.searchsorted(edges, midpoints, side="right")
    split_of_row = split_of_block[blocks]
    out = {s: np.flatnonzero(split_of_row == i) for i, s in enumerate(names)}
    empty = [s for s in names if out[s].size == 0]
    if empty:
        raise ModelError(
            f"spatial hold-out {scheme} with block_size_m={block_size_m} puts no plot in "
            f"{empty} ({n_blocks} blocks for {n} plots); use a smaller block_size_m."
        )
    return out


def evaluate_holdout(
    model_factory: ModelFactory,
    samples: pd.DataFrame,
    cube: xr.Dataset | None,
    splits: Mapping[str, np.ndarray],
    *,
    cv_scheme: str = "7:2:1",
    reference: xr.Dataset | None = None,
    year: int | None = None,
) -> tuple[pd.DataFrame, CarbonModel]:
    """Fit on the ``train`` split and score every split; optionally SSIM against a reference map.

    Parameters
    ----------
    model_factory : callable
        Returns a fresh unfitted :class:`CarbonModel`.
    samples : pandas.DataFrame
    cube : xarray.Dataset or None
        Needed when ``reference`` is given (the model maps ``year`` of the cube).
    splits : mapping
        From :func:`split_holdout` (positional indices; must include ``train``).
    cv_scheme : str, default "7:2:1"
        Label for the ``cv_scheme`` column (e.g. "7:2:1_spatial").
    reference : xarray.Dataset, optional
        Reference maps (e.g. synthetic truth) with ``veg_carbon_density`` /
        ``soil_carbon_density`` in t C ha-1, (y, x) or (year, y, x).
    year : int, optional
        Year mapped and compared when ``reference`` is given.

    Returns
    -------
    metrics : pandas.DataFrame
        Metrics-table rows per target and split; ``ssim`` (1) is the SSIM of the model's map
        against the reference (the same map for every split, so repeated), NaN without one.
    model : CarbonModel
        The model fitted on ``train``.
    """
    if "train" not in splits:
        raise ParameterError(f"splits has keys {list(splits)}; expected a 'train' entry.")
    bad = [s for s in splits if s not in ("train", "validation", "test")]
    if bad:
        raise ParameterError(f"splits has unknown keys {bad}; expected train/validation/test.")
    model = model_factory()
    check_before_fits(model, samples, cube)
    model.fit(samples.iloc[np.asarray(splits["train"])], cube)
    return score_holdout(model, samples, cube, splits, cv_scheme=cv_scheme, reference=reference,
                         year=year), model


def score_holdout(model: CarbonModel, samples: pd.DataFrame, cube: xr.Dataset | None,
                  splits: Mapping[str, np.ndarray], *, cv_scheme: str,
                  reference: xr.Dataset | None = None, year: int | None = None,
                  sample_inputs: tuple[pd.DataFrame, xr.Dataset | None] | None = None
                  ) -> pd.DataFrame:
    """Metrics of a model fitted on the ``train`` split (see :func:`evaluate_holdout`).

    ``sample_inputs`` — the model's own ``(samples, cube)`` for predictions at the plots
    (:func:`terracarbon.models.training.model_inputs`: a network's window mosaic, rows in the
    order of ``samples``); the reference map (SSIM) is always predicted on ``cube``, by
    chunk when ``cube`` is lazy (:func:`terracarbon.carbon.mapping.predict_years`), and
    compared by bands of rows (:func:`~terracarbon.models.metrics.ssim_maps`): memory holds
    the (y, x) map, never the model's features for the whole grid.
    """
    at_plots, plot_cube = sample_inputs if sample_inputs is not None else (samples, cube)
    ssim = {t: np.nan for t in model.targets}
    if reference is not None:
        if cube is None or year is None:
            raise ParameterError("evaluate_holdout: a reference map needs cube and year.")
        # by chunk when the cube is lazy (a network's whole-grid map holds every feature of
        # its years: 4 GB at China scale); only the (y, x) result is kept
        pred_map = predict_years(model, cube, years=[int(year)]).isel(year=0).compute()
        # read by bands of rows inside ssim_maps: never a whole-grid array beside the map
        mask = cube["region_mask"] if "region_mask" in cube else None
        for t in model.targets:
            ref = reference[OUTPUT_VARIABLES[t]]
            if "year" in ref.dims:
                ref = ref.sel(year=int(year))
            ssim[t] = ssim_maps(pred_map[OUTPUT_VARIABLES[t]], ref, mask=mask)
    rows = []
    for split, idx in splits.items():
        part = samples.iloc[np.asarray(idx)]
        pred = model.predict_samples(at_plots.iloc[np.asarray(idx)], plot_cube)
        for j, t in enumerate(model.targets):
            rows.append({"model": model.name, "target": t, "cv_scheme": cv_scheme,
                         "split": split, **score(part[TARGETS[t]].to_numpy(), pred[:, j]),
                         "ssim": ssim[t]})
    return metrics_table(rows)

