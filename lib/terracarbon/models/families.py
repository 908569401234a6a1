"""Gradient boosting, support-vector regression and a multilayer perceptron for carbon density.

One class, :class:`EstimatorCarbon`, wraps the regressor of a tabular family
(:func:`terracarbon.models.estimators.make_estimator`: the same estimator, with the same
defaults, that the flux path fits at towers) as a
:class:`~terracarbon.models.tabular.TabularCarbonModel`: one regressor per target (pool),
categorical features one-hot encoded with the classes seen in training (a class not seen is
all zeros), continuous features as they are (SVR and MLP standardise inside their
pipeline). Prediction intervals are the empirical quantiles of the training residuals (as
the baselines'). The registry's ``gbm``, ``svr`` and ``mlp`` entries build it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from terracarbon.models.base import CATEGORICAL_FEATURES
from terracarbon.models.estimators import make_estimator, one_native_thread
from terracarbon.models.tabular import TabularCarbonModel


class EstimatorCarbon(TabularCarbonModel):
    """Carbon density from a scikit-learn regressor of tabular family ``family``.

    Parameters
    ----------
    features : sequence of str
        Cube variables used as predictors (``landuse``, ``soil_type``, ``veg_type`` one-hot).
    family : {"gbm", "svr", "mlp"}
        The family (:data:`terracarbon.models.estimators.FAMILIES`).
    targets : sequence of {"veg", "soil"}
    settings : mapping, optional
        ``{family: {hyper-parameter: value}}``; defaults from
        :data:`terracarbon.models.estimators.DEFAULTS`.
    seed : int
    """

    def __init__(self, features: Sequence[str], *, family: str,
                 targets: Sequence[str] = ("veg", "soil"),
                 settings: Mapping[str, Any] | None = None, seed: int = 0):
        super().__init__(features, targets=targets)
        make_estimator(family, settings, seed=seed)  # validates family and settings now
        self.name = family
        self.family = family
        self.settings = dict(settings or {})
        self.seed = int(seed)
        self.levels_: dict[str, dict[str, np.ndarray]] = {}
        self.estimators_: dict[str, Any] = {}

    def _design(self, target: str, X: np.ndarray) -> np.ndarray:
        cols = []
        for i, f in enumerate(self.features):
            if f in CATEGORICAL_FEATURES:
                levels = self.levels_[target][f]
                cols.append((X[:, [i]] == levels[None, :]).astype(np.float64))
            else:
                cols.append(X[:, [i]].astype(np.float64))
        return np.hstack(cols)

    def _fit_target(self, target: str, X: np.ndarray, y: np.ndarray) -> None:
        self.levels_[target] = {f: np.unique(X[:, i]) for i, f in enumerate(self.features)
                                if f in CATEGORICAL_FEATURES}
        est = make_estimator(self.family, self.settings, seed=self.seed)
        with one_native_thread():
            self.estimators_[target] = est.fit(self._design(target, X), y)

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        with one_native_thread():
            return np.asarray(self.estimators_[target].predict(self._design(target, X)),
                              np.float64)

    def _card_extra(self) -> dict[str, Any]:
        return {"method": f"scikit-learn {type(next(iter(self.estimators_.values()), None)).__name__}"
                          if self.estimators_ else self.family,
                "family": self.family, "settings": self.settings, "seed": self.seed,
                "categorical_encoding": "one-hot of the training classes"}
