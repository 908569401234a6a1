"""Plain regressors of the tabular model families, built from one settings mapping.

Each tabular family (random forest, gradient boosting, support-vector regression, multilayer
perceptron, multiple linear regression) is a scikit-learn regressor built here and nowhere
else, so that the stock path (``models.*`` classes that map carbon densities from a cube) and
the flux path (:mod:`terracarbon.flux`, monthly fluxes at towers) fit the *same* estimator
for the same family name and settings.

Scale-sensitive families (SVR, MLP, MLR) are pipelines that standardise their inputs first,
so callers never scale by hand and a fold's scaling is learnt on that fold's training rows
only.

>>> est = make_estimator("svr", {}, seed=0)
>>> [name for name, _ in est.steps]
['scale', 'svr']
>>> make_estimator("xgb", {}, seed=0)
Traceback (most recent call last):
...
terracarbon.errors.ParameterError: unknown tabular family 'xgb'; expected one of rf, gbm, svr, mlp, mlr
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from terracarbon.errors import ParameterError

DEFAULTS: dict[str, dict[str, Any]] = {
    # rf and gbm: chosen on the 24 FLUXNET2015 towers by leave-one-site-out R² and speed
    # (benchmarks/README.md, "Flux models"): 100 trees with leaves of 5 and a third of the
    # features per split map 2x faster than 200 trees of leaves of 2 and score higher
    "rf": {"n_estimators": 100, "max_depth": None, "min_samples_leaf": 5, "max_features": 0.33},
    "gbm": {"max_iter": 300, "learning_rate": 0.03, "max_leaf_nodes": 15,
            "min_samples_leaf": 30, "l2_regularization": 1.0},
    "svr": {"C": 10.0, "epsilon": 0.1, "gamma": "scale"},
    "mlp": {"hidden_layer_sizes": [64, 32], "alpha": 1e-3, "learning_rate_init": 1e-3,
            "max_iter": 500, "early_stopping": True},
    "mlr": {},
}
"""Hyper-parameters of each family when the settings do not give them."""


def _settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    given = dict(settings.get(name, {}) or {})
    unknown = sorted(set(given) - set(DEFAULTS[name]))
    if unknown:
        raise ParameterError(f"models.{name}: unknown setting(s) {unknown}; expected some of "
                             f"{sorted(DEFAULTS[name])}")
    return {**DEFAULTS[name], **given}


def _rf(hp: dict[str, Any], seed: int) -> Any:
    return _forest_class()(n_estimators=hp["n_estimators"], max_depth=hp["max_depth"],
                           min_samples_leaf=hp["min_samples_leaf"],
                           max_features=hp["max_features"], random_state=seed, n_jobs=-1)


_FOREST: type | None = None


def _forest_class() -> type:
    """:class:`sklearn.ensemble.RandomForestRegressor` whose predictions are bit-identical
    from run to run (built on first use, so importing this module imports no sklearn)."""
    global _FOREST
    if _FOREST is None:
        _FOREST = _make_forest_class()
    return _FOREST


def _make_forest_class() -> type:
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.utils.validation import check_array, check_is_fitted

    class DeterministicForest(RandomForestRegressor):
        """A random forest that fits on all cores and predicts with the trees added in a
        fixed order. scikit-learn's threaded ``predict`` adds the trees' outputs in the
        order the threads finish, so the last bits of a prediction change between runs;
        here the sum runs tree by tree (callers parallelise over blocks of rows instead)."""

        def predict(self, X: Any) -> Any:
            check_is_fitted(self)
            X = check_array(X, dtype=np.float32, ensure_all_finite="allow-nan")
            total = np.zeros(X.shape[0], dtype=np.float64)
            for tree in self.estimators_:
                total += tree.predict(X, check_input=False).ravel()
            return total / len(self.estimators_)

    DeterministicForest.__module__ = __name__
    DeterministicForest.__qualname__ = "DeterministicForest"
    globals()["DeterministicForest"] = DeterministicForest  # picklable by module path
    return DeterministicForest


def _gbm(hp: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor
    return HistGradientBoostingRegressor(max_iter=hp["max_iter"],
                                         learning_rate=hp["learning_rate"],
                                         max_leaf_nodes=hp["max_leaf_nodes"],
                                         min_samples_leaf=hp["min_samples_leaf"],
                                         l2_regularization=hp["l2_regularization"],
                                         random_state=seed)


def _svr(hp: dict[str, Any], seed: int) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR
    return Pipeline([("scale", StandardScaler()),
                     ("svr", SVR(C=hp["C"], epsilon=hp["epsilon"], gamma=hp["gamma"]))])


def _mlp(hp: dict[str, Any], seed: int) -> Any:
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    return Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPRegressor(hidden_layer_sizes=tuple(hp["hidden_layer_sizes"]),
                                          alpha=hp["alpha"],
                                          learning_rate_init=hp["learning_rate_init"],
                                          max_iter=hp["max_iter"],
                                          early_stopping=hp["early_stopping"],
                                          random_state=seed))])


def _mlr(hp: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    return Pipeline([("scale", StandardScaler()), ("mlr", LinearRegression())])


_BUILDERS: dict[str, Callable[[dict[str, Any], int], Any]] = {
    "rf": _rf, "gbm": _gbm, "svr": _svr, "mlp": _mlp, "mlr": _mlr,
}
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)
"""The tabular families, in display order."""


def make_estimator(name: str, settings: Mapping[str, Any] | None = None, *, seed: int) -> Any:
    """An unfitted scikit-learn regressor of family ``name``.

    Parameters
    ----------
    name : {"rf", "gbm", "svr", "mlp", "mlr"}
        The family.
    settings : mapping, optional
        A ``models``-like section; hyper-parameters are read from ``settings[name]`` and
        default to :data:`DEFAULTS`. Unknown keys raise.
    seed : int
        Random state of the estimator (results are deterministic for a given seed).

    Returns
    -------
    A regressor with ``fit(X, y)`` / ``predict(X)``; scale-sensitive families standardise
    their inputs inside the pipeline.
    """
    if name not in _BUILDERS:
        raise ParameterError(f"unknown tabular family {name!r}; expected one of "
                             f"{', '.join(FAMILIES)}")
    return _BUILDERS[name](_settings(name, settings or {}), int(seed))


def one_native_thread() -> Any:
    """A context in which native thread pools (OpenMP: the histogram GBM; BLAS: the MLP,
    the SVR's kernels) use one thread.

    The flux path fits thousands of small models and predicts in dask worker threads: the
    parallelism is across fits and blocks. Thread teams inside them oversubscribe the two
    cores, and OpenMP's spin-waiting then makes a fit 10-25x slower (measured: a
    leave-one-site-out CV of 3.7 s took 94 s with a second process busy). The random
    forest's own joblib threads are not affected.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def run_side_by_side(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], *,
                     n_jobs: int | None = None) -> list[Any]:
    """``[fn(*job) for job in jobs]``, the calls side by side in worker processes.

    For independent small fits (CV folds, bootstrap members): ``fn`` must be a module-level
    function (the workers import it) that runs its native code under
    :func:`one_native_thread`. Processes, not threads: the GBM's grower and the MLP's epochs
    run Python between their native calls, and two threads of them were slower than one
    (``benchmarks/bench_flux_folds.py``). Results come back in job order and do not depend on
    ``n_jobs`` (each job carries its own seed and rows).

    Parameters
    ----------
    fn : callable
        The work of one job.
    jobs : sequence of tuples
        The arguments of each call.
    n_jobs : int, optional
        Worker processes (default: the machine's cores; 1: every call in this process).
    """
    return list(start_side_by_side(fn, jobs, n_jobs=n_jobs))


def start_side_by_side(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], *,
                       n_jobs: int | None = None) -> Iterator[Any]:
    """Start :func:`run_side_by_side`'s calls now and return their results as an iterator.

    With worker processes the calls run in the background while this process does other
    work (the pool hands the next job to a worker as one finishes); the iterator yields the
    results in job order, waiting where one is not ready. Close it (``.close()``) to abandon
    the jobs not yet started. With one worker the calls run in this process, one per
    ``next``. Worker processes take the jobs in order: put the costliest first.
    """
    jobs = list(jobs)
    workers = max(1, min(len(jobs), n_jobs or os.cpu_count() or 1))
    if workers == 1:
        return (fn(*job) for job in jobs)
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers, backend="loky", return_as="generator")(
        delayed(fn)(*job) for job in jobs)


def __getattr__(name: str) -> Any:
    # a pickled forest names its class terracarbon.models.estimators.DeterministicForest:
    # build it on first access so unpickling works in a fresh process
    if name == "DeterministicForest":
        return _forest_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
