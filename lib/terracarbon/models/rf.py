"""Random-forest carbon-density model with quantile-regression-forest prediction intervals.

One forest per target (defaults from the Ningxia study: 100 trees, depth ≤ 10, ≥ 20 plots
per leaf), fitted on the plots where that target was measured. The forest is
``quantile_forest.RandomForestQuantileRegressor`` (Johnson 2024, JOSS 9:5976), a
scikit-learn ``RandomForestRegressor`` that also keeps the training targets of its leaves.

Design choices
--------------
* **Categorical features as integer codes.** ``landuse``, ``soil_type`` and ``veg_type``
  enter the trees as their integer codes, not one-hot. Trees split codes as ordered numbers,
  which with 100 trees and few classes separates any class subset in a few splits; it keeps
  one importance value per cube variable and a map pixel with a class unseen in training
  still gets a prediction. Code 0 (nodata) makes the row/pixel missing.
* **Point prediction: the scikit-learn forest mean.** The trees are those scikit-learn's
  ``RandomForestRegressor`` grows with the same settings and seed (quantile-forest fits
  through it), and the mean adds the trees' leaf values in tree order, as scikit-learn does
  with one job — so the point maps are bit-identical to a plain scikit-learn forest's.
* **Prediction intervals: quantile regression forest** (Meinshausen 2006, JMLR 7:983),
  computed by quantile-forest with ``weighted_leaves=True``, ``aggregate_leaves_first=True``,
  ``weighted_quantile=True`` and linear interpolation: training plot i gets, for a new point
  x, the weight ``w_i(x) = mean over trees of n_it / |leaf_t(x)|`` with ``n_it`` its count
  in tree t's bootstrap sample inside x's leaf and ``|leaf_t(x)|`` the leaf's bootstrap
  size; the bounds are quantiles of the weighted distribution of the training targets.
  These are the weights whose weighted mean *is* the forest mean (leaf values are means of
  the in-bag targets), and on a planted heteroscedastic problem they gave 89.5 % coverage
  of nominal 90 % intervals (benchmarks/README.md, "QRF"). This is a *prediction* interval
  for a new plot, wider than the spread of per-tree means. Where the forest mean falls
  outside the QRF interval (skewed leaves, narrow intervals) the bound is moved to it, so
  ``lower <= prediction <= upper`` always holds.
* **Deterministic, parallel prediction.** After fitting, each forest predicts with one job
  and rows are split across ``n_jobs`` threads (tree traversal and quantile-forest's
  quantile kernel release the GIL). Every row is computed on its own and the trees are
  summed in a fixed order, so a pixel gets bit-identical values whether it is predicted
  alone, in a sample table or in a map chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import check_int
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.base import TARGETS
from terracarbon.models.tabular import TabularCarbonModel, feature_matrix

MIN_ROWS_PER_THREAD = 20_000
"""Below this many rows prediction runs in the calling thread (thread start-up dominates)."""

APPLY_BATCH_ROWS = 50_000
"""Rows per quantile call in interval prediction: (rows x trees) int64 leaf ids in memory."""

QRF_OPTIONS: dict[str, Any] = {
    "interpolation": "linear",
    "weighted_quantile": True,
    "weighted_leaves": True,
    "aggregate_leaves_first": True,
}
"""Keyword arguments of ``RandomForestQuantileRegressor.predict`` for the interval bounds."""


def _forest_mean(forest: Any, X32: np.ndarray) -> np.ndarray:
    """Mean of the trees' predictions, summed in tree order (scikit-learn's one-job sum)."""
    total = np.zeros(X32.shape[0], dtype=np.float64)
    for tree in forest.estimators_:
        total += tree.predict(X32, check_input=False).ravel()
    total /= len(forest.estimators_)
    return total


def _threaded_rows(
    fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, n_jobs: int
) -> np.ndarray:
    """Apply ``fn`` to row blocks of ``X`` in ``n_jobs`` threads and stack the results."""
    n_jobs = max(1, int(n_jobs))
    if n_jobs == 1 or X.shape[0] < 2 * MIN_ROWS_PER_THREAD:
        return fn(X)
    parts = np.array_split(X, n_jobs)
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return np.concatenate(list(pool.map(fn, parts)))


class RandomForestCarbon(TabularCarbonModel):
    """Random forest of carbon density, one quantile regression forest per target.

    Parameters
    ----------
    features : sequence of str
        Cube variable names used as predictors (columns of the sample table).
    targets : sequence of {"veg", "soil"}, default ("veg", "soil")
        Targets to model; densities in t C ha-1.
    n_estimators : int, default 100
        Trees per forest.
    max_depth : int or None, default 10
        Maximum tree depth.
    min_samples_leaf : int, default 20
        Minimum plots per leaf (also the smallest sample behind a QRF leaf distribution).
    max_features : float, int or "sqrt", default 1.0
        Features tried per split (scikit-learn meaning; 1.0 = all).
    seed : int, default 0
        Random seed of bootstrap and feature sampling.
    n_jobs : int, default 2
        Threads for fitting and prediction.

    Notes
    -----
    See the module docstring for the categorical encoding (integer codes), the quantile
    regression forest intervals (quantile-forest's ``RandomForestQuantileRegressor``, in
    ``forests_``) and deterministic prediction.

    Examples
    --------
    Vegetation carbon planted as 100 x NDVI at 200 plots, elevation a distractor; no cube
    (the covariates are columns of the sample table):

    >>> rng = np.random.default_rng(0)
    >>> samples = pd.DataFrame({"ndvi": rng.uniform(0.2, 0.8, 200),
    ...                         "dem": rng.uniform(0, 1000, 200)})
    >>> samples["veg_carbon_t_ha"] = 100 * samples["ndvi"]
    >>> rf = RandomForestCarbon(["ndvi", "dem"], targets=["veg"], n_estimators=20,
    ...                         min_samples_leaf=5).fit(samples)
    >>> new = pd.DataFrame({"ndvi": [0.3, 0.7], "dem": [500.0, 500.0]})
    >>> rf.predict_samples(new).round(-1)
    array([[30.],
           [70.]])

    ``rf.predict_map(cube, 2020, interval=0.9)`` maps a cube year with QRF bounds.
    """

    name = "rf"
    supports_interval = True

    def __init__(
        self,
        features: Sequence[str],
        *,
        targets: Sequence[str] = ("veg", "soil"),
        n_estimators: int = 100,
        max_depth: int | None = 10,
        min_samples_leaf: int = 20,
        max_features: float | str = 1.0,
        seed: int = 0,
        n_jobs: int = 2,
    ):
        super().__init__(features, targets=targets)
        self.n_estimators = check_int(n_estimators, name="n_estimators", minimum=1)
        self.max_depth = None if max_depth is None else check_int(
            max_depth, name="max_depth", minimum=1, hint="(or None for unlimited depth)")
        self.min_samples_leaf = check_int(min_samples_leaf, name="min_samples_leaf", minimum=1)
        self.max_features = max_features
        self.seed = int(seed)
        self.n_jobs = check_int(n_jobs, name="n_jobs", minimum=1)
        self.point_only = False
        self.forests_: dict[str, Any] = {}

    def for_point_predictions(self) -> RandomForestCarbon:
        """Fit plain scikit-learn forests, without the leaves' training targets that the
        QRF intervals need: the same trees and means, about 15 % less work per fit (a CV
        fold's model, which only predicts its fold's plots). Returns ``self``, unfitted."""
        if self.forests_:
            raise ModelError("for_point_predictions: call it before fit")
        self.point_only = True
        return self

    # -- fitting -----------------------------------------------------------------------
    def _fit_target(self, target: str, X: np.ndarray, y: np.ndarray) -> None:
        from quantile_forest import RandomForestQuantileRegressor
        from sklearn.ensemble import RandomForestRegressor

        options = dict(n_estimators=self.n_estimators, max_depth=self.max_depth,
                       min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
                       random_state=self.seed, n_jobs=self.n_jobs)
        if getattr(self, "point_only", False):  # the trees quantile-forest grows: it fits
            # through this class
            forest = RandomForestRegressor(**options).fit(X.astype(np.float32), y)
        else:
            forest = RandomForestQuantileRegressor(
                max_samples_leaf=None,  # keep every in-bag target of a leaf
                **options).fit(X.astype(np.float32), y, sparse_pickle=True)
        forest.set_params(n_jobs=1)
        self.forests_[target] = forest

    # -- prediction --------------------------------------------------------------------
    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        forest = self.forests_[target]
        return _threaded_rows(lambda rows: _forest_mean(forest, rows),
                              X.astype(np.float32), self.n_jobs)

    def _interval_target(
        self, target: str, X: np.ndarray, q_low: float, q_high: float
    ) -> tuple[np.ndarray, np.ndarray]:
        bounds = self.predict_quantiles_matrix(target, X, [q_low, q_high])
        mean = self._predict_target(target, X)
        return np.minimum(bounds[:, 0], mean), np.maximum(bounds[:, 1], mean)

    def predict_quantiles_matrix(
        self, target: str, X: np.ndarray, quantiles: Sequence[float]
    ) -> np.ndarray:
        """QRF quantiles of ``target`` for feature matrix ``X`` (rows complete).

        Parameters
        ----------
        target : {"veg", "soil"}
        X : ndarray (n, n_features)
            Feature values in the order of ``self.features`` (no NaN).
        quantiles : sequence of float in (0, 1)

        Returns
        -------
        ndarray (n, len(quantiles))
            Conditional quantiles of carbon density, t C ha-1
            (``RandomForestQuantileRegressor.predict`` with :data:`QRF_OPTIONS`).

        Raises
        ------
        ParameterError
            A quantile outside (0, 1).
        ModelError
            Not fitted, or a forest saved before terracarbon used quantile-forest (it
            cannot give quantiles; refit it, i.e. rerun stage 02).
        """
        self._require_fitted()
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or not np.all((q > 0) & (q < 1)):
            raise ParameterError(f"quantiles={list(np.atleast_1d(q))}; expected a list of "
                                 "values strictly in (0, 1), e.g. [0.05, 0.95].")
        forest = self.forests_[target]
        if getattr(self, "point_only", False):  # (models saved before it lack it)
            raise ModelError("this random forest was fitted for point predictions only "
                             "(for_point_predictions: a CV fold's model) and has no QRF "
                             "intervals; fit one without it")
        if not hasattr(forest, "forest_"):
            raise ModelError(
                f"the {target!r} forest of this model was saved by an earlier terracarbon "
                "(hand-written quantile index) and cannot give quantiles; refit the model "
                "(rerun stage 02) to get QRF intervals.")
        qs = [float(v) for v in q]

        def quantiles_of(rows: np.ndarray) -> np.ndarray:
            return np.asarray(forest.predict(rows, quantiles=qs, **QRF_OPTIONS),
                              dtype=np.float64).reshape(rows.shape[0], len(qs))

        X32 = X.astype(np.float32)
        out = np.empty((X.shape[0], q.size))
        for start in range(0, X.shape[0], APPLY_BATCH_ROWS):
            rows = slice(start, start + APPLY_BATCH_ROWS)
            out[rows, :] = _threaded_rows(quantiles_of, X32[rows], self.n_jobs)
        return out

    def _card_extra(self) -> dict[str, Any]:
        import quantile_forest

        return {
            "method": "quantile-forest RandomForestQuantileRegressor per target (trees and "
                      "mean as scikit-learn RandomForestRegressor)",
            "hyperparameters": {
                "n_estimators": self.n_estimators, "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf, "max_features": self.max_features,
                "n_jobs": self.n_jobs,
            },
            "seed": self.seed,
            "categorical_encoding": "integer codes (0 = nodata -> missing)",
            "scaling": "none (trees are invariant to monotone feature scaling)",
            "uncertainty": "quantile regression forest (Meinshausen 2006) by quantile-forest "
                           f"{quantile_forest.__version__}: in-bag leaf weights, "
                           f"{', '.join(f'{k}={v}' for k, v in QRF_OPTIONS.items())}; bounds "
                           "widened to contain the forest mean",
        }


def feature_importance(
    model: RandomForestCarbon,
    samples: pd.DataFrame,
    cube: xr.Dataset | None = None,
    *,
    n_repeats: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Impurity and permutation importance of each feature, per target.

    Parameters
    ----------
    model : RandomForestCarbon
        A fitted forest.
    samples : pandas.DataFrame
        Rows on which permutation importance is scored (held-out plots give the honest
        answer; the training plots give the optimistic one). Rows with a NaN feature or
        target are skipped for that target.
    cube : xarray.Dataset or None
        Unused (kept for symmetry with the model protocol).
    n_repeats : int, default 10
        Permutations per feature.
    seed : int, default 0
        Seed of the permutations.

    Returns
    -------
    pandas.DataFrame
        Columns ``target``, ``feature``, ``impurity`` (mean decrease in impurity, sums to 1
        per target, dimensionless), ``permutation_mean`` and ``permutation_sd`` (mean and
        s.d. of the drop in R² when the feature is permuted, dimensionless).

    Raises
    ------
    ModelError
        Model not a fitted :class:`RandomForestCarbon`, or fewer than 2 usable rows.
    """
    from sklearn.inspection import permutation_importance

    if not isinstance(model, RandomForestCarbon):
        raise ModelError(
            f"feature_importance takes a RandomForestCarbon, got {type(model).__name__}."
        )
    model._require_fitted()
    check_int(n_repeats, name="n_repeats", minimum=1)
    X = feature_matrix(samples, model.features).astype(np.float32)
    frames = []
    for t in model.targets:
        y = np.asarray(samples[TARGETS[t]], dtype=np.float64)
        rows = np.isfinite(X).all(axis=1) & np.isfinite(y)
        if rows.sum() < 2:
            raise ModelError(
                f"feature_importance: target {t!r} has {int(rows.sum())} usable rows in "
                "samples; need at least 2."
            )
        forest = model.forests_[t]
        perm = permutation_importance(
            forest, X[rows], y[rows], scoring=_mean_r2, n_repeats=int(n_repeats),
            random_state=int(seed), n_jobs=1,
        )
        frames.append(pd.DataFrame({
            "target": t,
            "feature": model.features,
            "impurity": forest.feature_importances_,
            "permutation_mean": perm.importances_mean,
            "permutation_sd": perm.importances_std,
        }))
    return pd.concat(frames, ignore_index=True)


def _mean_r2(forest: Any, X: np.ndarray, y: np.ndarray) -> float:
    """R² of the forest mean (a quantile forest's own ``predict`` gives its median)."""
    from sklearn.metrics import r2_score

    return float(r2_score(y, _forest_mean(forest, np.asarray(X, dtype=np.float32))))
