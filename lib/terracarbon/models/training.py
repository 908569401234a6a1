"""Train and compare every candidate model of a study the same way.

For each candidate: random k-fold CV and spatial-block CV side by side (random CV overstates
accuracy on spatially autocorrelated data, Ploton et al. 2020), leave-one-site-out and
leave-one-campaign-out CV where sites were remeasured or plots come from several years (not
for the networks: every fold retrains one), a hold-out evaluation (the Ningxia 10 % or the
green-space 7:2:1 split, spatially blocked) with SSIM against a reference map when one
exists, and a final fit on all plots for mapping. Change is validated at remeasured plots
from the spatial-CV predictions, and the mapping model is chosen with temporal skill where
the data can measure it (:mod:`terracarbon.models.change_validation`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import progress as _progress
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models import change_validation, registry, validation
from terracarbon.models.base import TARGETS, CarbonModel

log = logging.getLogger(__name__)

DEEP_MODELS: tuple[str, ...] = registry.DEEP_MODELS
"""The patch (CNN) models: fewer CV folds (``models.cv_folds_deep``), no leave-one-site-out."""
DEEP_CV_SCHEMES: tuple[str, ...] = ("spatial_block",)
"""Default CV schemes of the networks (``models.cv_schemes_deep``): every fold retrains a
network, and spatial-block CV is the scheme that chooses the mapping model; random CV of the
networks (about 40 % of their training time) is reported only when asked for."""


def model_factory(
    name: str, *, features: Sequence[str], settings: Mapping[str, Any], seed: int,
    targets: Sequence[str] = ("veg", "soil"),
) -> Callable[[], CarbonModel]:
    """A zero-argument factory of fresh, unfitted models for candidate ``name``.

    Parameters
    ----------
    name : str
        A model of the registry (:data:`terracarbon.models.registry.MODEL_NAMES`).
    features : sequence of str
        Cube variables used as predictors.
    settings : mapping
        The ``models`` parameter section (hyper-parameters under ``rf``, ``cnn``, ``cnn_tcn``).
    seed : int
        Seed of every random choice in the model.
    targets : sequence of {"veg", "soil"}
        The pools the plots measured.

    Raises
    ------
    ParameterError
        ``name`` is not a model of the registry, or one registered for loading only.
    """
    entry = registry.get(name)
    if entry.build is None:
        raise ParameterError(f"models.candidates: {name!r} is registered for loading only; "
                             f"expected one of {', '.join(registry.MODEL_NAMES)}")
    cls = entry.load()
    feats = list(features)
    tg = tuple(targets)
    return lambda: entry.build(cls, settings, feats, seed, tg)


def training_variables(cube: xr.Dataset, settings: Mapping[str, Any]) -> xr.Dataset:
    """The part of the data-prep cube that model training reads.

    ``models.features``, the candidates' own inputs (the baselines' NDVI or land use, see
    :func:`terracarbon.models.registry.extra_inputs`) and ``region_mask``, where present;
    missing ones are left for :func:`check_training_inputs` to report. Loading only these
    keeps stage 02's memory independent of cube layers no model uses (single-year layers
    next to their composites, for instance).

    A subset of at most :data:`TRAINING_IN_MEMORY_BYTES` is read into memory here, once:
    training reads it many times (the networks' windows, every candidate's hold-out maps, the
    area of applicability), and on a small grid reading it chunk by chunk each time costs
    more than holding it (the quick study's ``train_candidates``: 23 s lazily, 19 s loaded).
    A larger subset stays lazy, read a chunk at a time.
    """
    wanted = list(dict.fromkeys(
        [*settings["features"],
         *(var for _, var in registry.extra_inputs(settings["candidates"])),
         "region_mask"]))
    _check_features_present(cube, settings["features"])
    subset = cube[[v for v in wanted if v in cube.data_vars]]
    return subset.compute() if subset.nbytes <= TRAINING_IN_MEMORY_BYTES else subset


TRAINING_IN_MEMORY_BYTES = 512 * 2**20
"""Largest training subset :func:`training_variables` reads into memory (bytes), a sixteenth
of the 8 GB a stage may use: the quick study's subset is 1.2 MB and the default study's
365 MB (read once); the Guangdong-scale and China studies' are gigabytes and stay lazy."""


def _check_features_present(cube: xr.Dataset, features: Sequence[str]) -> None:
    missing = [f for f in features if f not in cube.data_vars]
    if missing:
        raise ModelError(f"models.features: {missing} are not in the data-prep cube (it has "
                         f"{sorted(v for v in cube.data_vars if v != 'region_mask')}); remove "
                         "them from models.features or add the layers to data.layers")


def check_training_inputs(cube: xr.Dataset, samples: pd.DataFrame, features: Sequence[str],
                          candidates: Sequence[str]) -> None:
    """Fail early, naming the parameter, when the cube or the plots cannot train the candidates.

    Raises :class:`ModelError` when a feature or a candidate's own input (see
    :func:`terracarbon.models.registry.extra_inputs`) is not in the cube, or when the plots
    measured no carbon at all.
    """
    _check_features_present(cube, features)
    for name, var in registry.extra_inputs(candidates):
        if var not in cube.data_vars:
            raise ModelError(f"models.candidates: {name} needs the cube variable {var!r}; "
                             f"drop {name} from models.candidates")
    if not measured_targets(samples):
        raise ModelError("the sample table has no vegetation or soil carbon values; check "
                         "data.plots.veg_column / soil_column")


def has_repeated_sites(samples: pd.DataFrame) -> bool:
    """True when some site (``plot_id``) was measured more than once (leave-one-site-out CV
    then differs from random CV)."""
    return "plot_id" in samples and bool(samples["plot_id"].duplicated().any())


def measured_targets(samples: pd.DataFrame) -> list[str]:
    """The targets (``veg``, ``soil``) with at least one measured value in the plots."""
    return [t for t, col in TARGETS.items() if col in samples and samples[col].notna().any()]


@dataclass
class TrainingResult:
    """Metrics of every candidate, out-of-fold predictions and the final fitted models."""

    metrics: pd.DataFrame
    oof: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    fitted: dict[str, CarbonModel] = field(default_factory=dict)
    holdout_models: dict[str, CarbonModel] = field(default_factory=dict)
    best: str | None = None
    change: pd.DataFrame = field(default_factory=pd.DataFrame)
    choice: change_validation.ModelChoice | None = None


def train_candidates(
    samples: pd.DataFrame,
    cube: xr.Dataset,
    *,
    settings: Mapping[str, Any],
    seed: int,
    reference: xr.Dataset | None = None,
    reference_year: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Cross-validate, hold-out-evaluate and finally fit every candidate model.

    Parameters
    ----------
    samples : pandas.DataFrame
        The data-prep sample table (targets in t C ha-1, covariate columns).
    cube : xarray.Dataset
        The data-prep cube.
    settings : mapping
        The ``models`` parameter section: ``candidates``, ``features``, ``cv_folds``,
        ``cv_folds_deep`` (folds for CNN/CNN-TCN, each fold retrains a network),
        ``cv_schemes_deep`` (their CV schemes; default spatial blocks only),
        ``cv_block_size_m``, ``holdout`` and the per-model hyper-parameters.
    seed : int
        Seed of folds, splits and models.
    reference : xarray.Dataset, optional
        Reference density maps (``veg_carbon_density``/``soil_carbon_density``, t C ha-1) for
        SSIM, e.g. the synthetic truth.
    reference_year : int, optional
        Year compared with the reference (default: the last plot year).

    Returns
    -------
    TrainingResult
        ``metrics`` has the columns ``model, target, cv_scheme, split, r2, rmse, mae, ssim``
        (rmse/mae in t C ha-1; r2 and ssim dimensionless); ``change`` the change validation
        at remeasured plots (:func:`terracarbon.models.change_validation.change_metrics`);
        ``choice`` the mapping model and the criterion that chose it
        (:func:`terracarbon.models.change_validation.choose_model`), ``best`` its name.
    """

    candidates = list(settings["candidates"])
    features = list(settings["features"])
    check_training_inputs(cube, samples, features, candidates)
    say = progress or (lambda msg: None)
    if reference_year is None:
        reference_year = int(samples["year"].max())
    splits = validation.split_holdout(samples, scheme=settings["holdout"], spatial=True,
                                      block_size_m=settings["cv_block_size_m"], seed=seed)
    result = TrainingResult(metrics=pd.DataFrame())
    targets = measured_targets(samples)
    n_jobs = fit_processes(settings.get("n_jobs", 1))
    # every candidate planned (and its inputs checked) before any fit starts
    plans: dict[str, _CandidatePlan] = {}
    for name in candidates:
        plan = plans[name] = _plan_candidate(name, samples, cube, features=features,
                                             settings=settings, seed=seed, targets=targets,
                                             holdout_train=splits["train"])
        cv = ", ".join(_scheme_label(s, plan.folds[s]) for s in plan.schemes)
        say(f"{name}: {len(plan.jobs)} fits ({cv}, hold-out, final)"
            f"{f' in {n_jobs} processes' if plan.deep and n_jobs > 1 else ''}")
    # networks train on one thread each (deterministic): every network's fits go to one pool
    # of worker processes, started first, and run while this process fits and scores the
    # other candidates (their own threads fill the cores the pool leaves idle)
    pooled = [name for name in candidates if plans[name].deep and n_jobs > 1]
    in_process = [name for name in candidates if name not in pooled]
    scored: dict[str, _ScoredCandidate] = {}
    score = functools.partial(_score_candidate, samples=samples, cube=cube, splits=splits,
                              holdout=settings["holdout"], reference=reference,
                              reference_year=reference_year)
    background = _start_pooled_fits([plans[name] for name in pooled], n_jobs) if pooled else None
    try:
        outputs = {name: run_fits(plans[name].factory, plans[name].fit_samples,
                                  plans[name].fit_cube, plans[name].jobs)
                   for name in _progress.iterate(in_process, "training", unit="models")}
        # scored in candidate order within each group: the same tables however the fits ran
        for name in _progress.iterate(in_process, "scoring", unit="models"):
            scored[name] = score(plans[name], outputs.pop(name))
        if background is not None:
            with _progress.task("training", label=f"{', '.join(pooled)}: fits side by side"):
                outputs = background.collect()
            for name in _progress.iterate(pooled, "scoring", unit="models"):
                scored[name] = score(plans[name], outputs.pop(name))
    finally:
        if background is not None:
            background.close()  # an error above: the pool's fits not yet started are dropped
    tables = []
    for name in candidates:  # in candidate order, whichever group was scored first
        tables.extend(scored[name].tables)
        result.oof.update({(name, scheme): oof for scheme, oof in scored[name].oof.items()})
        result.holdout_models[name] = scored[name].held
        result.fitted[name] = scored[name].final
    result.metrics = pd.concat(tables, ignore_index=True)
    eligible = eligible_models(candidates, settings)
    components = average_components(result.metrics, eligible)
    if len(components) >= 2:
        say(f"average of {', '.join(components)}: scored on their out-of-fold predictions")
        tables.append(_add_average(result, components, samples, cube, splits, targets,
                                   settings=settings, reference=reference,
                                   reference_year=reference_year))
        result.metrics = pd.concat(tables, ignore_index=True)
        eligible = [*eligible, AVERAGE]
    result.change = pd.concat(
        [change_validation.change_metrics(result.oof[(name, "spatial_block")], model=name,
                                          targets=targets)
         for name in result.fitted], ignore_index=True)
    errors = change_validation.pair_rate_errors(
        {name: result.oof[(name, "spatial_block")] for name in result.fitted}, targets)
    result.choice = change_validation.choose_model(result.metrics, result.change,
                                                   eligible=eligible, pair_errors=errors)
    result.best = result.choice.name
    return result


AVERAGE = "average"


def eligible_models(candidates: Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    """The candidates ``maps.model: best`` may choose.

    The maps need an ensemble for their level and change intervals; a network's ensemble
    retrains it once per member (minutes each), so networks compete for the choice only when
    ``models.ensemble_networks`` is true or no ensemble is asked for
    (``models.ensemble_members: 0``). Their scores are reported either way.
    """
    if settings.get("ensemble_networks", False) or not settings.get("ensemble_members", 0):
        return list(candidates)
    return [c for c in candidates if c not in DEEP_MODELS]


def average_components(metrics: pd.DataFrame, eligible: Sequence[str]) -> list[str]:
    """The candidates the average is formed from: the eligible models on the level
    shortlist (spatial-CV RMSE within
    :data:`~terracarbon.models.change_validation.LEVEL_TOLERANCE` of the best eligible one)."""
    sub = metrics[metrics["model"].isin(eligible)]
    return list(change_validation.level_shortlist(sub))


def _add_average(result: TrainingResult, components: Sequence[str], samples: pd.DataFrame,
                 cube: xr.Dataset, splits: Mapping[str, np.ndarray], targets: Sequence[str],
                 *, settings: Mapping[str, Any], reference: xr.Dataset | None,
                 reference_year: int) -> pd.DataFrame:
    """Score the average of ``components`` from their out-of-fold predictions (the folds of a
    scheme are the same for every candidate), and form its hold-out and final models."""
    from terracarbon.models.average import AveragedModel

    tables = []
    schemes = [s for s in ("random", "spatial_block", "loso", "campaign")
               if all((c, s) in result.oof for c in components)]
    for scheme in schemes:
        oofs = [result.oof[(c, scheme)] for c in components]
        oof = oofs[0].copy()
        for t in targets:
            oof[f"{t}_pred"] = np.mean([o[f"{t}_pred"].to_numpy() for o in oofs], axis=0)
        result.oof[(AVERAGE, scheme)] = oof
        tables.append(validation.cv_summary(oof, model=AVERAGE, targets=targets,
                                            scheme=scheme))
    held = AveragedModel([result.holdout_models[c] for c in components])
    with _progress.task("hold-out scoring", label=_holdout_label(AVERAGE, reference,
                                                                  reference_year)):
        tables.append(validation.score_holdout(
            held, samples, cube, splits, cv_scheme=f"{settings['holdout']}_spatial",
            reference=reference, year=reference_year))
    result.holdout_models[AVERAGE] = held
    result.fitted[AVERAGE] = AveragedModel([result.fitted[c] for c in components])
    return pd.concat(tables, ignore_index=True)


def _holdout_label(name: str, reference: xr.Dataset | None, year: int) -> str:
    """What the hold-out scoring does: with a reference, it maps the whole grid (minutes at
    China scale), so the console says so."""
    if reference is None:
        return f"{name}: hold-out plots"
    return f"{name}: hold-out plots and the {year} map against the reference (SSIM)"


def _scheme_label(scheme: str, folds: np.ndarray) -> str:
    return f"{scheme} {int(folds.max()) + 1}-fold CV"


@dataclass
class _CandidatePlan:
    """One candidate's fits: its factory, inputs, CV folds per scheme and the job list (the
    schemes' folds in order, then the hold-out fit, then the final fit)."""

    name: str
    factory: Callable[[], CarbonModel]
    probe: CarbonModel
    deep: bool
    schemes: list[str]
    folds: dict[str, np.ndarray]
    jobs: list[validation.FitJob]
    fit_samples: pd.DataFrame
    fit_cube: xr.Dataset


def _plan_candidate(name: str, samples: pd.DataFrame, cube: xr.Dataset, *,
                    features: Sequence[str], settings: Mapping[str, Any], seed: int,
                    targets: Sequence[str], holdout_train: np.ndarray) -> _CandidatePlan:
    factory = model_factory(name, features=features, settings=settings, seed=seed,
                            targets=targets)
    deep = name in DEEP_MODELS
    k = settings["cv_folds_deep"] if deep else settings["cv_folds"]
    # the networks retrain for every fold: by default only the scheme that chooses the
    # mapping model (spatial blocks); models.cv_schemes_deep adds random CV
    schemes = (list(settings.get("cv_schemes_deep", DEEP_CV_SCHEMES)) if deep
               else ["random", "spatial_block"])
    if has_repeated_sites(samples) and not deep:
        schemes.append("loso")
    if samples["year"].nunique() >= 2 and not deep:
        schemes.append("campaign")
    probe = factory()
    validation.check_before_fits(probe, samples, cube)
    # a network's inputs, cut once per candidate: every fold, the hold-out and the final
    # fit read the plots' windows, never the whole (lazy, chunked) cube (#17)
    with _progress.task("inputs", label=f"{name}: the model's inputs at the plots"):
        fit_samples, fit_cube = model_inputs(probe, samples, cube)
    folds = {scheme: validation.cv_folds(
        samples, scheme=scheme, k=k, seed=seed,
        block_size_m=settings["cv_block_size_m"] if scheme == "spatial_block" else None)
        for scheme in schemes}
    jobs = [job for scheme in schemes for job in validation.fold_jobs(folds[scheme],
                                                                      scheme=scheme)]
    jobs += [validation.FitJob(f"{settings['holdout']} hold-out",
                               np.asarray(holdout_train),
                               np.array([], int), True),
             validation.FitJob("final fit on all plots", np.arange(len(samples)),
                               np.array([], int), True)]
    return _CandidatePlan(name, factory, probe, deep, schemes, folds, jobs, fit_samples,
                          fit_cube)


@dataclass
class _ScoredCandidate:
    """One candidate's metric tables, out-of-fold predictions per CV scheme, hold-out model
    and final model."""

    tables: list[pd.DataFrame]
    oof: dict[str, pd.DataFrame]
    held: CarbonModel
    final: CarbonModel


def _score_candidate(plan: _CandidatePlan, fits: list[validation.FitOutput], *,
                     samples: pd.DataFrame, cube: xr.Dataset, splits: Mapping[str, np.ndarray],
                     holdout: str, reference: xr.Dataset | None, reference_year: int
                     ) -> _ScoredCandidate:
    """CV metrics and out-of-fold predictions from a candidate's fold fits (in
    :attr:`_CandidatePlan.jobs` order), then its hold-out scores."""
    fits = list(fits)
    tables, oofs = [], {}
    for scheme in plan.schemes:
        n_folds = int(plan.folds[scheme].max()) + 1
        metrics, oofs[scheme] = validation.cv_result(
            plan.probe, samples, plan.folds[scheme],
            [fits.pop(0).predictions for _ in range(n_folds)], scheme=scheme)
        tables.append(metrics)
    held, final = fits[0].model, fits[1].model
    with _progress.task("hold-out scoring", label=_holdout_label(plan.name, reference,
                                                                  reference_year)):
        tables.append(validation.score_holdout(
            held, samples, cube, splits, cv_scheme=f"{holdout}_spatial",
            reference=reference, year=reference_year,
            sample_inputs=(plan.fit_samples, plan.fit_cube)))
    return _ScoredCandidate(tables, oofs, held, final)


class _PooledFits:
    """Several candidates' fits (the networks) running in one pool of worker processes.

    One pool instead of one per network: a network's 7 fits on 2 cores leave one core idle
    for its last fit; pooled, the next network's fits fill it. The costliest fits start
    first (a CNN-TCN fit encodes ``sequence_years`` patches per plot, a CNN fit one), so the
    pool's last round is a short fit. Every fit is the same as in a pool of its own.
    """

    def __init__(self, plans: Sequence[_CandidatePlan], n_jobs: int):
        self.plans = list(plans)
        tasks = [(plan, job) for plan in self.plans for job in plan.jobs]
        self.order = sorted(range(len(tasks)), key=lambda i: -_fit_cost(tasks[i][0].probe))
        self.n_tasks, self.workers = len(tasks), min(n_jobs, len(tasks))
        self._results = start_fits_side_by_side(
            [(tasks[i][0].factory, tasks[i][0].fit_samples, tasks[i][0].fit_cube, tasks[i][1])
             for i in self.order], n_jobs=n_jobs)

    def collect(self) -> dict[str, list[validation.FitOutput]]:
        """Wait for every fit; each candidate's outputs in its own job order."""
        fitted = list(_progress.iterate(self._results, "fits", total=self.n_tasks,
                                        unit="fits",
                                        label=lambda _: f"{self.workers} processes"))
        by_task = dict(zip(self.order, fitted, strict=True))
        out, i = {}, 0
        for plan in self.plans:
            out[plan.name] = [by_task[i + j] for j in range(len(plan.jobs))]
            i += len(plan.jobs)
        return out

    def close(self) -> None:
        """Drop the fits not yet started (a no-op once collected)."""
        close = getattr(self._results, "close", None)
        if close is not None:
            close()


def _start_pooled_fits(plans: Sequence[_CandidatePlan], n_jobs: int) -> _PooledFits:
    """Start every job of ``plans`` in one pool of worker processes, in the background."""
    return _PooledFits(plans, n_jobs)


def _fit_cost(probe: CarbonModel) -> int:
    """Relative cost of one fit, to start the costliest first: years of patches per plot."""
    return int(getattr(probe, "sequence_years", 1))


def fit_processes(n_jobs: int) -> int:
    """Processes for independent network fits: ``n_jobs``, or one per core when 0."""
    return max(1, os.cpu_count() or 1) if n_jobs == 0 else max(1, int(n_jobs))


def model_inputs(probe: CarbonModel, samples: pd.DataFrame, cube: xr.Dataset
                 ) -> tuple[pd.DataFrame, xr.Dataset]:
    """The smallest (samples, cube) that give ``probe``'s kind of model the same fits and
    sample predictions as the whole cube: ``probe.fit_inputs`` where the model has one (the
    plots' windows as a small in-memory mosaic for a CNN, read from a chunked cube without
    touching chunks far from every plot), else ``(samples, cube)`` unchanged (tabular models
    read their covariates from the sample table)."""
    if hasattr(probe, "fit_inputs"):
        return probe.fit_inputs(samples, cube)
    return samples, cube


def run_fits(factory: Callable[[], CarbonModel], samples: pd.DataFrame, cube: xr.Dataset,
             jobs: Sequence[validation.FitJob], *, n_jobs: int = 1
             ) -> list[validation.FitOutput]:
    """Run independent fits, in this process or side by side in ``n_jobs`` worker processes.

    ``samples, cube`` are the model's own inputs (:func:`model_inputs`: the plots' windows
    for a CNN, a few MB instead of the cube), so a fit gives the same weights and predictions
    wherever it runs; results come back in job order.
    """
    return run_fits_side_by_side([(factory, samples, cube, job) for job in jobs], n_jobs=n_jobs)


def run_fits_side_by_side(
    tasks: Sequence[tuple[Callable[[], CarbonModel], pd.DataFrame, xr.Dataset | None,
                          validation.FitJob]], *, n_jobs: int = 1
) -> list[validation.FitOutput]:
    """:func:`~terracarbon.models.validation.fit_and_predict` of each ``(factory, samples,
    cube, job)``, in this process (``n_jobs`` 1) or in ``n_jobs`` worker processes; results in
    task order. Worker processes take the tasks in order, so put the costliest first."""
    if n_jobs <= 1 or len(tasks) < 2:
        return [validation.fit_and_predict(*task)
                for task in _progress.iterate(tasks, "fits", unit="fits",
                                              label=lambda task: task[-1].label)]
    workers = min(n_jobs, len(tasks))
    return list(_progress.iterate(start_fits_side_by_side(tasks, n_jobs=n_jobs), "fits",
                                  total=len(tasks), unit="fits",
                                  label=lambda _: f"{workers} processes"))


def start_fits_side_by_side(
    tasks: Sequence[tuple[Callable[[], CarbonModel], pd.DataFrame, xr.Dataset | None,
                          validation.FitJob]], *, n_jobs: int
) -> Iterator[validation.FitOutput]:
    """Start :func:`run_fits_side_by_side`'s fits in ``n_jobs`` worker processes now; the
    iterator returned yields their outputs in task order
    (:func:`terracarbon.models.estimators.start_side_by_side`)."""
    from terracarbon.models.estimators import start_side_by_side

    return start_side_by_side(validation.fit_and_predict, tasks, n_jobs=n_jobs)


def observed_vs_predicted(result: TrainingResult, model: str, *, scheme: str = "spatial_block"
                          ) -> pd.DataFrame:
    """Long table ``target, observed, predicted`` (t C ha-1) of out-of-fold predictions."""
    oof = result.oof[(model, scheme)]
    frames = []
    for target in TARGETS:
        if f"{target}_obs" in oof:
            part = oof[[f"{target}_obs", f"{target}_pred"]].dropna()
            frames.append(pd.DataFrame({"target": target, "observed": part.iloc[:, 0],
                                        "predicted": part.iloc[:, 1]}))
    return pd.concat(frames, ignore_index=True)


def residual_table(result: TrainingResult, model: str, *, scheme: str = "spatial_block"
                   ) -> pd.DataFrame:
    """Out-of-fold residuals (predicted − observed, t C ha-1) with plot coordinates."""
    oof = result.oof[(model, scheme)]
    out = oof[[c for c in ("plot_id", "year", "x", "y") if c in oof]].copy()
    for target in TARGETS:
        if f"{target}_obs" in oof:
            out[f"{target}_residual_t_ha"] = oof[f"{target}_pred"] - oof[f"{target}_obs"]
    return out


def headline_metrics(metrics: pd.DataFrame, model: str) -> dict[str, float]:
    """Spatial- and random-CV mean R² and RMSE of ``model`` per target."""
    out = {}
    cv = metrics[(metrics["model"] == model) & (metrics["split"] == "cv_mean")]
    for _, row in cv.iterrows():
        out[f"{row['target']}_{row['cv_scheme']}_r2"] = float(row["r2"])
        out[f"{row['target']}_{row['cv_scheme']}_rmse"] = float(row["rmse"])
    return out


def comparison_table(metrics: pd.DataFrame, change: pd.DataFrame | None = None) -> pd.DataFrame:
    """Model × target table: R²/RMSE/MAE of every CV scheme (``<metric>_<scheme>``, t C ha-1),
    hold-out SSIM, and with ``change`` the change validation at remeasured plots
    (``change_pairs``, ``change_rate_bias`` and ``change_rate_rmse`` in t C ha-1 yr-1)."""
    cv = metrics[metrics["split"] == "cv_mean"]
    wide = cv.pivot_table(index=["model", "target"], columns="cv_scheme",
                          values=["r2", "rmse", "mae"])
    wide.columns = [f"{m}_{s}" for m, s in wide.columns]
    test = metrics[metrics["split"].isin(["test"])]
    ssim = test.groupby(["model", "target"])["ssim"].first().rename("ssim")
    table = wide.join(ssim)
    if change is not None and len(change) and (change["n_pairs"] > 0).any():
        rates = change.set_index(["model", "target"])[["n_pairs", "rate_bias", "rate_rmse"]]
        table = table.join(rates.rename(columns={"n_pairs": "change_pairs",
                                                 "rate_bias": "change_rate_bias",
                                                 "rate_rmse": "change_rate_rmse"}))
    table = table.reset_index()
    return table.sort_values(["target", "rmse_spatial_block"]).reset_index(drop=True)


def assert_finite(metrics: pd.DataFrame) -> None:
    """Raise ModelError when a CV metric is NaN/inf (a model failed silently)."""
    cv = metrics[metrics["split"] == "cv_mean"]
    bad = cv[~np.isfinite(cv[["r2", "rmse", "mae"]]).all(axis=1)]
    if len(bad):
        raise ModelError(f"non-finite CV metrics for {bad[['model', 'target']].values.tolist()}")


def obs_pred_arrays(result: TrainingResult, model: str, *, target: str,
                    scheme: str = "spatial_block") -> tuple[np.ndarray, np.ndarray]:
    """Observed and out-of-fold predicted density (t C ha-1) of one target, NaN rows dropped."""
    table = observed_vs_predicted(result, model, scheme=scheme)
    part = table[table["target"] == target]
    return part["observed"].to_numpy(), part["predicted"].to_numpy()


def area_of_applicability(result: TrainingResult, cube: xr.Dataset, samples: pd.DataFrame,
                          *, year: int, seed: int = 0, block_size_m: float | None = None
                          ) -> xr.Dataset:
    """Dissimilarity index and AOA mask for the best model's features (Meyer & Pebesma 2021).

    Features are weighted by the random forest's importance when an RF was trained (the
    weighting of the original method), else equally. The threshold comes from the
    dissimilarities of the training plots to other spatial-CV folds when ``block_size_m`` is
    given, so it reflects the same extrapolation distance the spatial CV measured.
    """
    from terracarbon.models import aoa

    best = result.fitted[result.best]
    weights_model = result.fitted.get("rf")
    folds = None
    if block_size_m:
        folds = validation.cv_folds(samples, scheme="spatial_block", k=5,
                                    block_size_m=block_size_m, seed=seed)
    if weights_model is not None:
        return aoa.aoa_map(weights_model, cube, year, samples=samples, weights="importance",
                           cv_folds=folds)
    return aoa.aoa_map(best, cube, year, samples=samples, weights="equal", cv_folds=folds)


def fit_ensemble(result: TrainingResult, samples: pd.DataFrame, cube: xr.Dataset, *,
                 settings: Mapping[str, Any], seed: int) -> tuple[list[CarbonModel], str]:
    """Block-bootstrap members of the chosen model (:mod:`terracarbon.models.ensemble`).

    ``models.ensemble_members`` members (0: none), refitted like the final model on resampled
    spatial blocks of ``models.cv_block_size_m``. A chosen network gets members only with
    ``models.ensemble_networks`` (each member retrains a network).

    Returns
    -------
    members : list of CarbonModel
        Empty when there is no ensemble.
    note : str
        Why there is no ensemble, or how it was built, for the reports.
    """
    from terracarbon.models import ensemble

    from terracarbon.models.average import averaged_factory

    n = int(settings.get("ensemble_members", 0))
    name = result.best
    if n == 0:
        return [], "no ensemble (models.ensemble_members: 0)"
    parts = (result.fitted[name].component_names if name == AVERAGE else [name])
    if any(p in DEEP_MODELS for p in parts) and not settings.get("ensemble_networks", False):
        return [], (f"no ensemble: the chosen model {name} is or contains a network and "
                    "models.ensemble_networks is false")
    targets = measured_targets(samples)
    member_settings = _member_settings(settings)
    factories = [model_factory(p, features=settings["features"], settings=member_settings,
                               seed=seed, targets=targets) for p in parts]
    factory = averaged_factory(factories) if name == AVERAGE else factories[0]
    deep = any(p in DEEP_MODELS for p in parts)
    members = ensemble.fit_members(
        factory, samples, cube, n_members=n, block_size_m=settings["cv_block_size_m"],
        seed=seed, n_jobs=fit_processes(settings.get("n_jobs", 1)) if deep else 1)
    label = f"{name} ({', '.join(parts)})" if name == AVERAGE else name
    trees = (f"; random forests of {member_settings['rf']['n_estimators']} trees"
             if "rf" in parts and member_settings is not settings else "")
    return members, (f"{n} members of {label}, each refitted on a block bootstrap of the "
                     f"plots (blocks of {settings['cv_block_size_m'] / 1000:g} km){trees}")


def _member_settings(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``models`` section the ensemble members are built with.

    Their random forests have ``ensemble_member_trees`` trees (null: as many as the mapped
    model's). The members' spread, not their mean, makes the intervals, and with the same
    seed a *k*-tree forest is the first *k* trees of the larger one, so fewer trees cost
    proportionally less to fit and to map (benchmarks/README.md, session 7: 25 of 100 trees
    left every coverage of the calibration table unchanged).
    """
    trees = settings.get("ensemble_member_trees")
    if trees is None:
        return settings
    return {**settings, "rf": {**(settings.get("rf") or {}), "n_estimators": int(trees)}}


def out_of_fold_table(result: TrainingResult, model: str, samples: pd.DataFrame | None = None,
                      *, scheme: str = "spatial_block") -> pd.DataFrame:
    """The out-of-fold table of ``model`` under ``scheme``: ``plot_id, year, x, y, fold``,
    ``<target>_obs`` / ``<target>_pred`` (t C ha-1) and, from ``samples``, the plot's
    ``landuse`` class that year — the residuals the maps stage turns into pixel intervals
    (per land-use class)."""
    oof = result.oof[(model, scheme)].reset_index(drop=True)
    if samples is not None and "landuse" in samples:
        oof["landuse"] = samples["landuse"].to_numpy()
    return oof
