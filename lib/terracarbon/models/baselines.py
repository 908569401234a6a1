"""The baseline carbon-density models every study reports next to the random forest and CNNs.

* :class:`NdviLinear` (``ndvi_lr``) - density ~ a + b·NDVI, ordinary least squares.
* :class:`MultipleLinear` (``mlr``) - density ~ all features, standardised OLS, categorical
  features one-hot encoded.
* :class:`LanduseLookup` (``lookup``) - the mean plot density of each land-use class, as in
  InVEST's carbon model.

All three are :class:`~terracarbon.models.tabular.TabularCarbonModel` subclasses: they
predict from the covariate columns of the sample table, and their prediction intervals are
the empirical quantiles of the training residuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from terracarbon.models.base import CATEGORICAL_FEATURES
from terracarbon.models.tabular import TabularCarbonModel


class NdviLinear(TabularCarbonModel):
    """Carbon density as a straight line of NDVI: ``density = a + b·ndvi`` (OLS per target).

    Parameters
    ----------
    targets : sequence of {"veg", "soil"}
        Targets to model.
    feature : str, default "ndvi"
        The single predictor (any continuous cube variable, e.g. "evi").
    """

    name = "ndvi_lr"

    def __init__(self, *, targets: Sequence[str] = ("veg", "soil"), feature: str = "ndvi"):
        super().__init__([feature], targets=targets)
        self.coef_: dict[str, tuple[float, float]] = {}

    def _fit_target(self, target: str, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LinearRegression

        reg = LinearRegression().fit(X, y)
        self.coef_[target] = (float(reg.intercept_), float(reg.coef_[0]))

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        a, b = self.coef_[target]
        return a + b * X[:, 0]

    def _card_extra(self) -> dict[str, Any]:
        return {
            "method": "ordinary least squares, density = intercept + slope * feature",
            "scaling": "none",
            "coefficients": {t: {"intercept": a, "slope": b} for t, (a, b) in self.coef_.items()},
        }


class MultipleLinear(TabularCarbonModel):
    """Multiple linear regression on all features, standardised (OLS per target).

    Continuous features are used as they are; categorical features (``landuse``,
    ``soil_type``, ``veg_type``) are one-hot encoded with the classes seen in training, the
    first (lowest) class dropped as the reference level. A class not seen in training is
    predicted as the reference class (all dummies 0). All columns are then standardised with
    the training mean and standard deviation (scikit-learn ``StandardScaler``) before
    ``LinearRegression``, so coefficients are comparable.
    """

    name = "mlr"

    def __init__(self, features: Sequence[str], *, targets: Sequence[str] = ("veg", "soil")):
        super().__init__(features, targets=targets)
        self.categories_: dict[str, dict[str, list[float]]] = {}
        self.pipelines_: dict[str, Any] = {}

    def _design(self, target: str, X: np.ndarray) -> np.ndarray:
        cols = []
        for i, f in enumerate(self.features):
            if f in CATEGORICAL_FEATURES:
                levels = np.asarray(self.categories_[target][f])
                cols.append((X[:, [i]] == levels[None, 1:]).astype(np.float64))
            else:
                cols.append(X[:, [i]])
        return np.hstack(cols)

    def _fit_target(self, target: str, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.categories_[target] = {
            f: np.unique(X[:, i]).tolist()
            for i, f in enumerate(self.features) if f in CATEGORICAL_FEATURES
        }
        pipe = make_pipeline(StandardScaler(), LinearRegression())
        self.pipelines_[target] = pipe.fit(self._design(target, X), y)

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        return self.pipelines_[target].predict(self._design(target, X))

    def _card_extra(self) -> dict[str, Any]:
        scaling = {}
        for t, pipe in self.pipelines_.items():
            sc, lr = pipe[0], pipe[-1]
            scaling[t] = {
                "mean": sc.mean_.tolist(), "sd": sc.scale_.tolist(),
                "coef_standardised": lr.coef_.tolist(), "intercept": float(lr.intercept_),
            }
        return {
            "method": "OLS on standardised features; categorical one-hot, first class dropped",
            "categories": self.categories_,
            "scaling": scaling,
        }


class LanduseLookup(TabularCarbonModel):
    """Mean plot carbon density of each land-use class (InVEST carbon-model style lookup).

    Parameters
    ----------
    targets : sequence of {"veg", "soil"}
        Targets to model.
    feature : str, default "landuse"
        The categorical cube variable to group by (codes ≥ 1; 0 = nodata).

    Notes
    -----
    The density of class c is the mean of the target over training plots with code c. A
    class with no training plot (e.g. water, built-up) gets the global mean of all training
    plots, so every mapped pixel gets a value; set such classes explicitly in a carbon
    lookup table if a different value (e.g. 0 for water) is wanted.
    """

    name = "lookup"

    def __init__(self, *, targets: Sequence[str] = ("veg", "soil"), feature: str = "landuse"):
        super().__init__([feature], targets=targets)
        self.table_: dict[str, dict[int, float]] = {}
        self.global_mean_: dict[str, float] = {}

    def _fit_target(self, target: str, X: np.ndarray, y: np.ndarray) -> None:
        means = pd.Series(y).groupby(X[:, 0].astype(np.int64)).mean()
        self.table_[target] = {int(k): float(v) for k, v in means.items()}
        self.global_mean_[target] = float(y.mean())

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        classes = np.array(sorted(self.table_[target]), dtype=np.int64)
        values = np.array([self.table_[target][c] for c in classes])
        codes = X[:, 0].astype(np.int64)
        pos = np.clip(np.searchsorted(classes, codes), 0, len(classes) - 1)
        seen = classes[pos] == codes
        return np.where(seen, values[pos], self.global_mean_[target])

    def _card_extra(self) -> dict[str, Any]:
        return {
            "method": "mean density per class; unseen classes -> global mean",
            "scaling": "none",
            "lookup_t_C_ha": {t: {str(k): v for k, v in tab.items()}
                              for t, tab in self.table_.items()},
            "global_mean_t_C_ha": dict(self.global_mean_),
        }
