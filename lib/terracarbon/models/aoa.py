"""Area of applicability (AOA) of a model: where the predictors resemble the training plots.

Meyer & Pebesma (2021), "Predicting into unknown space? Estimating the area of applicability
of spatial prediction models", Methods Ecol. Evol. 12:1620, as implemented in ``CAST::aoa``:

1. Standardise each feature with the training mean and s.d., multiply by its importance
   weight (negative weights -> 0, as CAST does).
2. Dissimilarity index of a point: ``DI = d_min / d_bar``, the distance to the nearest
   training point divided by the mean distance between all pairs of training points.
3. Threshold: the DI of every training point to its nearest training point **in another CV
   fold** (or, without folds, its nearest other training point); the threshold is the upper
   whisker of those values, the largest training DI not above ``Q3 + 1.5 IQR`` (quartiles by
   ``numpy.percentile``, R's type-7 quantiles; R's ``boxplot.stats`` uses Tukey hinges, which
   can differ slightly for small samples).
4. A pixel is inside the AOA when ``DI <= threshold``.

Nearest-neighbour searches use :class:`scipy.spatial.cKDTree`. Categorical features enter as
their integer codes, standardised like the others: the same feature space the random forest
splits in (see :mod:`terracarbon.models.rf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy.spatial import cKDTree

from terracarbon.checks import check_choice
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.tabular import (
    DEFAULT_CHUNK_PIXELS,
    check_cube_features,
    feature_matrix,
    pixel_feature_blocks,
)

PAIRWISE_CHUNK_ROWS = 1024
"""Rows per block when averaging all pairwise training distances (memory ~ rows x n_train)."""


class _Space:
    """Standardised, importance-weighted feature space fitted on the training points."""

    def __init__(self, train: np.ndarray, weights: np.ndarray | None):
        self.mean = train.mean(axis=0)
        sd = train.std(axis=0, ddof=1)
        # A constant feature carries no distance; dividing by 1 keeps it at 0 instead of NaN.
        self.sd = np.where(sd > 0, sd, 1.0)
        p = train.shape[1]
        w = np.ones(p) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != (p,) or not np.isfinite(w).all():
            raise ParameterError(
                f"weights has shape {w.shape} / non-finite values; expected {p} finite "
                "importance values, one per feature."
            )
        w = np.clip(w, 0.0, None)
        if not w.any():
            raise ParameterError("weights are all <= 0; at least one feature must count.")
        self.w = w

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.sd * self.w


def _as_matrix(X: Any, name: str, n_features: int | None = None) -> np.ndarray:
    arr = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=np.float64)
    if arr.ndim != 2 or (n_features is not None and arr.shape[1] != n_features):
        expected = "(n, n_features)" if n_features is None else f"(n, {n_features})"
        raise ParameterError(f"{name} has shape {arr.shape}; expected a 2-D array {expected}.")
    return arr


def mean_pairwise_distance(Z: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of distinct rows of ``Z`` (chunked, O(n²) time)."""
    from scipy.spatial.distance import cdist

    n = Z.shape[0]
    total = 0.0
    for start in range(0, n, PAIRWISE_CHUNK_ROWS):
        total += float(cdist(Z[start:start + PAIRWISE_CHUNK_ROWS], Z).sum())
    return total / (n * (n - 1))


def training_dissimilarity(
    Z: np.ndarray, d_bar: float, cv_folds: np.ndarray | None
) -> np.ndarray:
    """DI of each (transformed) training point to the nearest training point in another fold."""
    if cv_folds is None:
        dist, _ = cKDTree(Z).query(Z, k=2)
        return dist[:, 1] / d_bar
    di = np.empty(Z.shape[0])
    for f in np.unique(cv_folds):
        held = cv_folds == f
        if held.all():
            raise ModelError("cv_folds has a single fold; the AOA threshold needs >= 2 folds.")
        dist, _ = cKDTree(Z[~held]).query(Z[held], k=1)
        di[held] = dist / d_bar
    return di


def upper_whisker(values: np.ndarray) -> float:
    """Largest value not above Q3 + 1.5 IQR (the upper whisker of a box plot)."""
    q1, q3 = np.percentile(values, [25, 75])
    return float(values[values <= q3 + 1.5 * (q3 - q1)].max())


def dissimilarity_index(
    train_features: np.ndarray | pd.DataFrame,
    new_features: np.ndarray | pd.DataFrame,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    cv_folds: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Dissimilarity index of new points and the AOA threshold (Meyer & Pebesma 2021).

    Parameters
    ----------
    train_features : array (n_train, n_features) or DataFrame
        Predictor values at the training plots (units of the cube variables). Rows with a
        NaN are dropped (with their ``cv_folds`` entry).
    new_features : array (n_new, n_features) or DataFrame
        Predictor values where DI is wanted (same columns, same order).
    weights : array (n_features,), optional
        Feature importance (e.g. random-forest impurity importance); default equal weights.
        Only ratios matter; negative values count as 0.
    cv_folds : array (n_train,) of int, optional
        CV fold of each training row (e.g. from
        :func:`terracarbon.models.validation.cv_folds`); without it the threshold uses each
        training point's nearest other training point.

    Returns
    -------
    di : numpy.ndarray (n_new,)
        Dissimilarity index (dimensionless, >= 0); NaN where a new row has a NaN.
    threshold : float
        AOA threshold on DI (dimensionless); inside the AOA where ``di <= threshold``.

    Raises
    ------
    ParameterError
        Shapes that do not match, bad weights or folds.
    ModelError
        Fewer than 2 complete training rows, or a single CV fold.

    Examples
    --------
    Four training points on the corners of a unit square and one at its centre; a new
    point near the centre is inside the AOA, one far outside the square is not:

    >>> X_train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    >>> di, threshold = dissimilarity_index(X_train, np.array([[0.5, 0.4], [3.0, 3.0]]))
    >>> di.round(2), round(threshold, 2)
    (array([0.1 , 2.93]), 0.73)
    """
    train = _as_matrix(train_features, "train_features")
    new = _as_matrix(new_features, "new_features", train.shape[1])
    folds = None
    if cv_folds is not None:
        folds = np.asarray(cv_folds).ravel()
        if folds.shape[0] != train.shape[0]:
            raise ParameterError(
                f"cv_folds has {folds.shape[0]} entries but train_features has "
                f"{train.shape[0]} rows; pass one fold id per training row."
            )
    complete = np.isfinite(train).all(axis=1)
    train = train[complete]
    folds = None if folds is None else folds[complete]
    if train.shape[0] < 2:
        raise ModelError(
            f"dissimilarity_index needs >= 2 complete training rows, got {train.shape[0]}."
        )
    space = _Space(train, None if weights is None else np.asarray(weights, dtype=np.float64))
    Z = space.transform(train)
    d_bar = mean_pairwise_distance(Z)
    if d_bar == 0.0:
        raise ModelError("all training points are identical in feature space; DI is undefined.")
    threshold = upper_whisker(training_dissimilarity(Z, d_bar, folds))
    return _di_of(new, space, cKDTree(Z), d_bar), threshold


def _di_of(new: np.ndarray, space: _Space, tree: cKDTree, d_bar: float) -> np.ndarray:
    di = np.full(new.shape[0], np.nan)
    ok = np.isfinite(new).all(axis=1)
    if ok.any():
        dist, _ = tree.query(space.transform(new[ok]), k=1)
        di[ok] = dist / d_bar
    return di


def _model_weights(model: Any) -> np.ndarray | None:
    forests = getattr(model, "forests_", None)
    if forests:
        return np.mean([f.feature_importances_ for f in forests.values()], axis=0)
    return None


def aoa_map(
    model: Any,
    cube: xr.Dataset,
    year: int,
    *,
    samples: pd.DataFrame,
    weights: Literal["importance", "equal"] | Sequence[float] | np.ndarray = "importance",
    cv_folds: Sequence[int] | np.ndarray | None = None,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
) -> xr.Dataset:
    """Dissimilarity index and area-of-applicability mask of a model for one cube year.

    Parameters
    ----------
    model : CarbonModel
        A model with ``features`` (cube variable names); for ``weights="importance"`` a
        fitted random forest (mean impurity importance over its targets).
    cube : xarray.Dataset
        Data-prep cube holding the feature variables (and optionally ``region_mask``).
    year : int
        Calendar year of the annual features.
    samples : pandas.DataFrame
        The training sample table (feature columns) the model was fitted on.
    weights : "importance", "equal" or array (n_features,), default "importance"
        Feature weights; "importance" falls back to equal weights for models without
        impurity importance.
    cv_folds : array (n_samples,), optional
        CV fold of each sample row, for the threshold (see :func:`dissimilarity_index`).
    chunk_pixels : int, default 200_000
        Pixels per batch.

    Returns
    -------
    xarray.Dataset
        On the cube grid (y, x): ``DI`` (float32, units "1", NaN outside the region or where
        a covariate is missing) and ``aoa`` (uint8, 1 inside the area of applicability,
        0 outside it or where DI is NaN). The threshold is in ``aoa.attrs["threshold"]``.
    """
    check_cube_features(cube, model.features)
    train = feature_matrix(samples, model.features)
    if isinstance(weights, str):
        # an array of weights is the third choice; a string must name a rule
        check_choice(weights, ("importance", "equal"), name="weights")
        w = _model_weights(model) if weights == "importance" else None
    else:
        w = np.asarray(weights, dtype=np.float64)
    folds = None if cv_folds is None else np.asarray(cv_folds).ravel()
    if folds is not None and folds.shape[0] != len(samples):
        raise ParameterError(
            f"cv_folds has {folds.shape[0]} entries but samples has {len(samples)} rows."
        )
    complete = np.isfinite(train).all(axis=1)
    if complete.sum() < 2:
        raise ModelError(f"aoa_map needs >= 2 complete training rows, got {int(complete.sum())}.")
    space = _Space(train[complete], w)
    Z = space.transform(train[complete])
    d_bar = mean_pairwise_distance(Z)
    threshold = upper_whisker(
        training_dissimilarity(Z, d_bar, None if folds is None else folds[complete])
    )
    tree = cKDTree(Z)
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    di_map = np.full((ny, nx), np.nan)
    for rows, X, valid in pixel_feature_blocks(
        cube, year, model.features, chunk_pixels=chunk_pixels
    ):
        flat = np.full(X.shape[0], np.nan)
        if valid.any():
            flat[valid] = _di_of(X[valid], space, tree, d_bar)
        di_map[rows] = flat.reshape(rows.stop - rows.start, nx)
    inside = (np.isfinite(di_map) & (di_map <= threshold)).astype(np.uint8)
    hist = update_history(
        history_line("aoa_map", model=getattr(model, "name", "?"), year=int(year),
                     weights=weights if isinstance(weights, str) else "array",
                     cv_folds=folds is not None),
        cube)
    coords: dict[str, Any] = {"y": cube["y"], "x": cube["x"], "year": int(year)}
    if "spatial_ref" in cube.coords:
        coords["spatial_ref"] = cube["spatial_ref"]
    return xr.Dataset(
        {
            "DI": (("y", "x"), di_map.astype(np.float32), {
                "units": "1", "long_name": "dissimilarity index (Meyer & Pebesma 2021)",
                "history": hist,
            }),
            "aoa": (("y", "x"), inside, {
                "units": "1", "long_name": "inside the area of applicability",
                "flag_values": [0, 1], "flag_meanings": "outside inside",
                "threshold": threshold, "history": hist,
            }),
        },
        coords=coords,
        attrs={"history": hist, "aoa_threshold": threshold},
    )
