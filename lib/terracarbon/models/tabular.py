"""The shared core of the tabular carbon models (random forest and baselines).

:class:`TabularCarbonModel` implements the :class:`~terracarbon.models.base.CarbonModel`
protocol for every model that predicts from the covariate columns of the sample table (one
row = one plot-year): input checks, per-target fitting on the rows where that target was
measured, prediction at the samples, and chunked, bounded-memory mapping of a cube year.
Subclasses only say how to fit and predict one target from a feature matrix.

The helpers that read covariates as a feature matrix (:func:`feature_matrix` for a sample
table, :func:`pixel_feature_blocks` for a cube year) are shared with the area of
applicability (:mod:`terracarbon.models.aoa`), which measures distances in the same space.

Categorical features (``landuse``, ``soil_type``, ``veg_type``) use code ``0`` as nodata; it
is treated like NaN (the row/pixel is not used / predicted as NaN).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import conventions as units
from terracarbon.conventions import CARBON_POOLS
from terracarbon.checks import require_columns
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.base import (
    CATEGORICAL_FEATURES,
    OUTPUT_VARIABLES,
    TARGETS,
    check_interval,
    check_sample_years,
    check_target_columns,
    check_targets,
)

log = logging.getLogger(__name__)

MIN_TRAIN_ROWS = 3
"""Fewest complete rows (finite target and features) a target can be fitted on."""

DEFAULT_CHUNK_PIXELS = 200_000
"""Pixels predicted per batch in ``predict_map`` (bounds memory)."""


# --------------------------------------------------------------------------- helpers


def check_feature_names(features: Sequence[str] | str) -> list[str]:
    """Validate a list of feature (cube variable) names and return it as a list.

    Only the names are checked (non-empty, distinct strings); whether a table or a cube
    holds them is checked where they are read (:func:`feature_matrix`,
    :func:`check_cube_features`).

    >>> check_feature_names("ndvi")
    ['ndvi']
    """
    features = [features] if isinstance(features, str) else list(features)
    if not features or len(set(features)) != len(features) or not all(
        isinstance(f, str) and f for f in features
    ):
        raise ParameterError(
            f"features={features!r}; expected a non-empty list of distinct cube variable "
            "names such as ['ndvi', 'npp', 'dem']."
        )
    return features


def feature_matrix(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The (n_rows, n_features) float64 matrix of ``features`` from a sample table.

    Categorical code 0 (nodata) becomes NaN. Raises :class:`ModelError` when a column is
    missing.
    """
    require_columns(table, features, name="sample table", error=ModelError,
                    fix="Extract these covariates at the plots (prep) or drop them from the "
                        "features.")
    X = np.column_stack([np.asarray(table[f], dtype=np.float64) for f in features])
    return _categorical_nodata_to_nan(X, features)


def _categorical_nodata_to_nan(X: np.ndarray, features: Sequence[str]) -> np.ndarray:
    cat = [i for i, f in enumerate(features) if f in CATEGORICAL_FEATURES]
    if cat:
        X[:, cat] = np.where(X[:, cat] == 0, np.nan, X[:, cat])
    return X


def check_training_table(
    samples: pd.DataFrame, features: Sequence[str], targets: Sequence[str], cube: xr.Dataset | None
) -> None:
    """Validate a training sample table before any fitting (nothing is changed)."""
    if not isinstance(samples, pd.DataFrame):
        raise ModelError(f"samples must be a pandas DataFrame, got {type(samples).__name__}.")
    X = feature_matrix(samples, features)
    all_nan = [f for i, f in enumerate(features) if not np.isfinite(X[:, i]).any()]
    if all_nan:
        raise ModelError(
            f"covariates {all_nan} are NaN (or nodata code 0) at every one of the "
            f"{len(samples)} plots; check their extraction or drop them from the features."
        )
    check_target_columns(samples, targets)
    check_sample_years(samples, cube)


def _year_layer(cube: xr.Dataset, name: str, year: int) -> xr.Variable:
    """Layer ``name`` of ``year`` (a static layer as is), dims ``(y, x)``.

    On ``Variable`` objects rather than DataArrays: a mapping task calls this for every
    feature of every model on a chunk of a few thousand pixels, where building DataArrays
    (coordinates, indexes) took longer than the model's prediction.
    """
    layer = cube.variables[name]
    if "year" in layer.dims:
        years = np.asarray(cube["year"]).astype(int)
        at = np.flatnonzero(years == int(year))
        if at.size == 0:
            raise ModelError(
                f"year {year} is not in the cube (years {years.tolist()}); pick one of those."
            )
        layer = layer[{"year": int(at[0])}]
    return layer.transpose("y", "x")


def check_cube_features(cube: xr.Dataset, features: Sequence[str]) -> None:
    """Raise :class:`ModelError` when the cube lacks a feature variable or is not (y, x)."""
    if not isinstance(cube, xr.Dataset):
        raise ModelError(f"cube must be an xarray Dataset, got {type(cube).__name__}.")
    missing = [f for f in features if f not in cube.data_vars]
    if missing:
        raise ModelError(
            f"cube lacks feature variables {missing}; it has {list(cube.data_vars)}."
        )
    if "y" not in cube.dims or "x" not in cube.dims:
        raise ModelError(f"cube must have dims 'y' and 'x', got {dict(cube.sizes)}.")


def pixel_feature_blocks(
    cube: xr.Dataset, year: int, features: Sequence[str], *, chunk_pixels: int
):
    """Yield ``(row_slice, X, valid)`` for successive blocks of whole grid rows.

    ``X`` is (n_pixels_in_block, n_features) float64 in row-major (y, x) order, ``valid``
    is True where every feature is finite (categorical code 0 = missing) and the pixel is
    inside ``region_mask`` (when the cube has one). Loading block by block keeps memory
    bounded and works for dask-backed cubes.
    """
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    rows_per_block = max(1, int(chunk_pixels) // nx)
    layers = [_year_layer(cube, f, year) for f in features]
    mask = (cube.variables["region_mask"].transpose("y", "x")
            if "region_mask" in cube.data_vars else None)
    for start in range(0, ny, rows_per_block):
        rows = slice(start, min(ny, start + rows_per_block))
        X = np.column_stack(
            [np.asarray(layer[{"y": rows}].values, np.float64).ravel() for layer in layers]
        )
        X = _categorical_nodata_to_nan(X, features)
        valid = np.isfinite(X).all(axis=1)
        if mask is not None:
            valid &= np.asarray(mask[{"y": rows}].values).astype(bool).ravel()
        yield rows, X, valid


def _map_template(cube: xr.Dataset, year: int) -> dict[str, Any]:
    coords: dict[str, Any] = {"y": cube["y"], "x": cube["x"]}
    if "spatial_ref" in cube.coords:
        coords["spatial_ref"] = cube["spatial_ref"]
    coords["year"] = int(year)
    return coords


# ------------------------------------------------------------------------- base class


class TabularCarbonModel:
    """Base of the models that predict from covariate columns (RF and baselines).

    Subclasses set ``name`` and implement ``_fit_target(target, X, y)`` and
    ``_predict_target(target, X)``; models with prediction intervals also implement
    ``_interval_target(target, X, q_low, q_high)``.

    ``fit`` and ``predict_samples`` read only the sample table's covariate columns; the
    ``cube`` argument is used to check plot years and record feature units and may be
    ``None`` when there is no cube (e.g. a table of real plots with sampled covariates).
    """

    name: str = "tabular"
    supports_interval: bool = True

    def __init__(self, features: Sequence[str], *, targets: Sequence[str] = ("veg", "soil")):
        self.features = check_feature_names(features)
        self.targets = check_targets(targets)
        self.n_train_: dict[str, int] = {}
        self.residuals_: dict[str, np.ndarray] = {}
        self.feature_units_: dict[str, str] = {}
        self.fitted_ = False

    # -- to implement -----------------------------------------------------------------
    def _fit_target(self, target: str, X: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _interval_target(
        self, target: str, X: np.ndarray, q_low: float, q_high: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Default bounds: prediction + empirical quantiles of the training residuals.

        A homoscedastic residual interval (the baselines' model is one global fit, so one
        residual distribution is their own assumption). It uses in-sample residuals and is
        therefore somewhat narrow; the RF overrides it with quantile regression forests.
        """
        residuals = self.residuals_[target]
        pred = self._predict_target(target, X)
        low, high = np.quantile(residuals, [q_low, q_high])
        return pred + low, pred + high

    def _require_interval_support(self) -> None:
        if not self.supports_interval:
            raise ModelError(
                f"model {self.name!r} has no prediction intervals; call predict_map without "
                "interval, or use the random forest ('rf')."
            )

    def _card_extra(self) -> dict[str, Any]:
        return {}

    # -- protocol ---------------------------------------------------------------------
    def fit(self, samples: pd.DataFrame, cube: xr.Dataset | None = None) -> TabularCarbonModel:
        """Fit one model per target on the rows where that target and all features are finite.

        Parameters
        ----------
        samples : pandas.DataFrame
            Sample table (see docs/architecture.md); target columns in t C ha-1, feature
            columns in the units of the cube variables.
        cube : xarray.Dataset or None
            The data-prep cube; used to check that every plot year is in it and to record
            feature units. ``None`` skips both.

        Returns
        -------
        self

        Raises
        ------
        ModelError
            Missing feature/target columns, a covariate NaN at every plot, a target NaN at
            every plot, plot years missing from the cube, or fewer than ``MIN_TRAIN_ROWS``
            complete rows for a target.
        """
        check_training_table(samples, self.features, self.targets, cube)
        X = feature_matrix(samples, self.features)
        complete = np.isfinite(X).all(axis=1)
        ys = {t: np.asarray(samples[TARGETS[t]], dtype=np.float64) for t in self.targets}
        for t, y in ys.items():
            rows = complete & np.isfinite(y)
            if rows.sum() < MIN_TRAIN_ROWS:
                raise ModelError(
                    f"target {t!r} has only {int(rows.sum())} rows with all features "
                    f"{self.features} finite (of {len(samples)} plots); at least "
                    f"{MIN_TRAIN_ROWS} are needed."
                )
        for t, y in ys.items():
            rows = complete & np.isfinite(y)
            if rows.sum() < len(y):
                log.info("%s: target %s fitted on %d of %d rows", self.name, t, rows.sum(), len(y))
            self._fit_target(t, X[rows], y[rows])
            self.n_train_[t] = int(rows.sum())
            self.residuals_[t] = y[rows] - self._predict_target(t, X[rows])
        if cube is not None:
            self.feature_units_ = {
                f: str(cube[f].attrs.get("units", "unknown"))
                for f in self.features if f in cube.data_vars
            }
        self.fitted_ = True
        return self

    def _density(self, target: str, X: np.ndarray) -> np.ndarray:
        # carbon density cannot be negative; a linear model can extrapolate below zero
        return np.maximum(self._predict_target(target, X), 0.0)

    def _density_bounds(self, target: str, X: np.ndarray, q_low: float, q_high: float
                        ) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._interval_target(target, X, q_low, q_high)
        return np.maximum(low, 0.0), np.maximum(high, 0.0)

    def _require_fitted(self) -> None:
        if not self.fitted_:
            raise ModelError(f"model {self.name!r} is not fitted; call fit(samples, cube) first.")

    def _predict_complete(self, X: np.ndarray) -> np.ndarray:
        out = np.full((X.shape[0], len(self.targets)), np.nan)
        ok = np.isfinite(X).all(axis=1)
        if ok.any():
            for j, t in enumerate(self.targets):
                out[ok, j] = self._density(t, X[ok])
        return out

    def predict_samples(self, samples: pd.DataFrame, cube: xr.Dataset | None = None) -> np.ndarray:
        """Predict carbon density at the sample rows.

        Parameters
        ----------
        samples : pandas.DataFrame
            Sample table with the feature columns.
        cube : xarray.Dataset or None
            Unused by tabular models (kept for the protocol).

        Returns
        -------
        numpy.ndarray
            (n_samples, len(targets)) carbon density, t C ha-1; NaN where a feature is
            missing.
        """
        self._require_fitted()
        return self._predict_complete(feature_matrix(samples, self.features))

    def predict_interval_samples(
        self, samples: pd.DataFrame, cube: xr.Dataset | None = None, *, interval: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower/upper prediction bounds at the sample rows, each (n, len(targets)), t C ha-1."""
        self._require_fitted()
        self._require_interval_support()
        q_low, q_high = _interval_quantiles(interval)
        X = feature_matrix(samples, self.features)
        lower = np.full((X.shape[0], len(self.targets)), np.nan)
        upper = lower.copy()
        ok = np.isfinite(X).all(axis=1)
        if ok.any():
            for j, t in enumerate(self.targets):
                lower[ok, j], upper[ok, j] = self._density_bounds(t, X[ok], q_low, q_high)
        return lower, upper

    def predict_map(
        self,
        cube: xr.Dataset,
        year: int,
        *,
        interval: float | None = None,
        chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    ) -> xr.Dataset:
        """Predict carbon density for every pixel of one cube year, in bounded-memory chunks.

        Parameters
        ----------
        cube : xarray.Dataset
            Data-prep cube with the feature variables (annual ``(year, y, x)`` or static
            ``(y, x)``) and optionally ``region_mask``.
        year : int
            Calendar year to map; annual features are taken from this year.
        interval : float, optional
            Central prediction-interval probability in (0, 1), e.g. 0.9; adds
            ``<var>_lower`` and ``<var>_upper``. Only models with intervals (``rf``).
        chunk_pixels : int, default 200_000
            Approximate pixels per batch (whole grid rows are taken).

        Returns
        -------
        xarray.Dataset
            On the cube grid (y, x), float32: ``veg_carbon_density`` / ``soil_carbon_density``
            (t C ha-1) for each target, plus bounds with ``interval``. NaN outside
            ``region_mask`` and where a covariate is missing.

        Raises
        ------
        ModelError
            Not fitted, features missing from the cube, or ``year`` not in the cube.
        ParameterError
            ``interval`` outside (0, 1) or ``chunk_pixels`` < 1.
        """
        self._require_fitted()
        check_cube_features(cube, self.features)
        if int(chunk_pixels) < 1:
            raise ParameterError(f"chunk_pixels={chunk_pixels}; expected a positive integer.")
        quantiles = None
        if interval is not None:
            self._require_interval_support()
            quantiles = _interval_quantiles(interval)
        ny, nx = cube.sizes["y"], cube.sizes["x"]
        names = [OUTPUT_VARIABLES[t] for t in self.targets]
        arrays = {n: np.full((ny, nx), np.nan, np.float32) for n in names}
        if quantiles is not None:
            for n in names:
                arrays[f"{n}_lower"] = np.full((ny, nx), np.nan, np.float32)
                arrays[f"{n}_upper"] = np.full((ny, nx), np.nan, np.float32)
        for rows, X, valid in pixel_feature_blocks(
            cube, year, self.features, chunk_pixels=chunk_pixels
        ):
            if not valid.any():
                continue
            Xv = X[valid]
            nrows = rows.stop - rows.start
            for t, n in zip(self.targets, names):
                flat = np.full(nrows * nx, np.nan, np.float32)
                flat[valid] = self._density(t, Xv)
                arrays[n][rows] = flat.reshape(nrows, nx)
                if quantiles is not None:
                    lo, hi = self._density_bounds(t, Xv, *quantiles)
                    for suffix, vals in (("_lower", lo), ("_upper", hi)):
                        flat = np.full(nrows * nx, np.nan, np.float32)
                        flat[valid] = vals
                        arrays[n + suffix][rows] = flat.reshape(nrows, nx)
        hist = update_history(history_line(
            f"{type(self).__name__}.predict_map", model=self.name, year=int(year),
            interval=interval,
        ), cube)
        data_vars = {}
        for n, arr in arrays.items():
            base = n.removesuffix("_lower").removesuffix("_upper")
            pool = CARBON_POOLS[base.removesuffix("_carbon_density")].long_name
            long = f"{pool} carbon density predicted by {self.name}"
            if n.endswith(("_lower", "_upper")):
                bound = "lower" if n.endswith("_lower") else "upper"
                long += f", {bound} bound of the {interval:g} prediction interval"
            data_vars[n] = (("y", "x"), arr, {
                "units": units.DENSITY_UNITS, "long_name": long, "history": hist,
            })
        ds = xr.Dataset(data_vars, coords=_map_template(cube, year))
        ds.attrs.update({"model": self.name, "history": hist})
        return ds

    def card(self) -> dict[str, Any]:
        """JSON-serialisable model card: features, units, encoding, hyper-parameters."""
        card: dict[str, Any] = {
            "name": self.name,
            "class": self.name,
            "python_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "features": list(self.features),
            "feature_units": dict(self.feature_units_),
            "categorical_features": [f for f in self.features if f in CATEGORICAL_FEATURES],
            "targets": list(self.targets),
            "target_columns": {t: TARGETS[t] for t in self.targets},
            "output_variables": {t: OUTPUT_VARIABLES[t] for t in self.targets},
            "units": units.DENSITY_UNITS,
            "n_train": dict(self.n_train_),
            "fitted": bool(self.fitted_),
        }
        card.update(self._card_extra())
        return card

    def __repr__(self) -> str:
        return f"{type(self).__name__}(features={self.features}, targets={self.targets})"


def _interval_quantiles(interval: float) -> tuple[float, float]:
    check_interval(interval)
    tail = (1.0 - float(interval)) / 2.0
    return tail, 1.0 - tail
