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

    Prediction does not build the design matrix: the fitted pipeline is rewritten in raw
    feature units (one weight per continuous feature, one effect per training class of each
    categorical feature, one constant), so a pixel's density is a dot product plus one
    table lookup per categorical feature. It equals the pipeline's prediction on the
    one-hot design to float round-off (about 1e-13 t C ha-1).
    """

    name = "mlr"

    def __init__(self, features: Sequence[str], *, targets: Sequence[str] = ("veg", "soil")):
        super().__init__(features, targets=targets)
        self.categories_: dict[str, dict[str, list[float]]] = {}
        self.pipelines_: dict[str, Any] = {}

    def _design(self, target: str, X: np.ndarray) -> np.ndarray:
        """Unscaled design: each feature's column or dummies, in feature order (fit only)."""
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

    def _linear_terms(self, target: str) -> tuple[float, np.ndarray, list[int],
                                                  list[tuple[int, _ClassEffects]]]:
        """The fitted pipeline of ``target`` rewritten in raw (unstandardised) feature units.

        ``StandardScaler`` + ``LinearRegression`` predict ``b0 + sum_j c_j (d_j - m_j) / s_j``
        over the design columns ``d_j`` (continuous features and dummies). With
        ``w_j = c_j / s_j`` this is ``const + sum over continuous features of w_j x_j + sum
        over categorical features of the weight of the row's class``, where ``const = b0 -
        sum_j w_j m_j`` and a class's weight is its dummy's ``w_j`` (0 for the reference
        class and for codes not seen in training, whose dummies are all 0).

        Returns ``(const, weights, continuous_columns, [(column, class_effects), ...])``;
        ``weights`` has one entry per feature, 0 at the categorical ones.
        """
        scaler, reg = self.pipelines_[target][0], self.pipelines_[target][-1]
        w_design = np.asarray(reg.coef_, np.float64).ravel() / scaler.scale_
        const = float(np.ravel(reg.intercept_)[0]) - float(w_design @ scaler.mean_)
        weights = np.zeros(len(self.features))
        continuous, categorical = [], []
        j = 0  # first design column of feature i
        for i, f in enumerate(self.features):
            if f in CATEGORICAL_FEATURES:
                levels = np.asarray(self.categories_[target][f], np.float64)
                effects = np.concatenate([[0.0], w_design[j:j + levels.size - 1]])
                categorical.append((i, _ClassEffects(levels, effects)))
                j += levels.size - 1
            else:
                weights[i] = w_design[j]
                continuous.append(i)
                j += 1
        return const, weights, continuous, categorical

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        # Equal (to float round-off) to pipelines_[target].predict(self._design(target, X))
        # without building the one-hot design: a categorical feature adds the weight of the
        # row's class, looked up by code (issue #19; benchmarks/bench_baselines.py).
        # einsum, not matmul: a matrix-vector product this thin is memory-bound, and
        # multi-threaded BLAS only slows it down on a shared machine.
        X = np.asarray(X, dtype=np.float64)
        const, weights, continuous, categorical = self._linear_terms(target)
        out = np.einsum("ij,j->i", X, weights)
        if categorical:
            # a non-finite class code times its weight 0 gave NaN: redo those rows from the
            # continuous columns only (the class lookup below gives such a code effect 0)
            redo = np.isnan(out)
            if redo.any():
                out[redo] = np.einsum("ij,j->i", X[np.ix_(redo, continuous)],
                                      weights[continuous])
        out += const
        for i, effects in categorical:
            out += effects.lookup(X[:, i])
        return out

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


class _ClassEffects:
    """Per-class additive effects of one categorical feature, looked up by class code.

    ``levels`` are the training classes (sorted, distinct, finite) and ``effects`` their
    effects; any other code (unseen class, NaN, a non-integer value) gets 0. Integer
    classes in 0..65535 use a dense table indexed by code; other classes a sorted search.

    >>> _ClassEffects(np.array([1.0, 3.0]), np.array([0.0, 2.5])).lookup(
    ...     np.array([3.0, 1.0, 2.0, 7.0, 3.5, np.nan, -1.0]))
    array([2.5, 0. , 0. , 0. , 0. , 0. , 0. ])
    """

    MAX_DENSE_CODE = 65_535

    def __init__(self, levels: np.ndarray, effects: np.ndarray):
        self.dense = bool(
            levels.size and levels.min() >= 0 and levels.max() <= self.MAX_DENSE_CODE
            and np.array_equal(levels, np.round(levels))
        )
        if self.dense:
            # slot n = the code n for n <= max class; one spare slot for everything else
            size = int(levels.max()) + 2
            self.codes = np.full(size, np.nan)
            self.table = np.zeros(size)
            self.codes[levels.astype(np.intp)] = levels
            self.table[levels.astype(np.intp)] = effects
        else:
            self.codes = np.append(levels, np.nan)
            self.table = np.append(effects, 0.0)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """The effect of each code (float64 array like ``codes``)."""
        if self.dense:
            with np.errstate(invalid="ignore"):  # NaN/inf/huge codes: any slot, rejected below
                slot = codes.astype(np.intp)
            np.clip(slot, 0, self.codes.size - 1, out=slot)
        else:
            slot = np.searchsorted(self.codes, codes)
            np.minimum(slot, self.codes.size - 1, out=slot)
        # a slot counts only when it holds exactly this code (NaN never equals itself)
        return np.where(self.codes[slot] == codes, self.table[slot], 0.0)


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
