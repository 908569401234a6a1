"""Below-ground biomass carbon from above-ground by a random forest fitted on paired records.

The method of the China forest biomass dataset (Reference studies, ``seeds/001``): a random
forest trained on in-situ root/shoot records maps below-ground biomass carbon (BGBC) from the
above-ground map (AGBC) and covariates; there the BGB-AGB relation has R^2 >= 0.85.

Steps
-----
1. :func:`fit_belowground_rf` — from a table of paired AGB/BGB records with covariates
   (one row per plot; e.g. :func:`terracarbon.data.synthetic.root_shoot.make_root_shoot_records`
   or the compilations named there): cross-validation, random k-fold **and** spatial-block
   (the project's folds, :func:`terracarbon.models.validation.cv_folds`), scored on BGB and on
   the ratio, next to a constant-ratio baseline (the training folds' median BGB/AGB); then
   the final fit on every record. Returns a :class:`BelowgroundRF`.
2. :func:`map_belowground` — BGC (``t C ha-1``) from an AGC map plus covariate layers, block by
   block (``xr.apply_ufunc(..., dask="parallelized")``): a ``(year, y, x)`` map is never
   materialised, static ``(y, x)`` covariates are broadcast inside each block.
3. :func:`implied_ratio` — the BGC/AGC ratio a map implies: median, 10th and 90th percentiles
   and the pooled ratio (sum BGC / sum AGC), overall and by land-use class, from streamed
   histograms (one pass over the blocks).

Target
------
``target="ratio"`` (default) fits the root-to-shoot ratio ``BGB / AGB`` and predicts
``BGB = ratio x AGB``; ``target="bgb"`` fits BGB itself. A forest cannot extrapolate: beyond the
training AGB range a BGB forest stays flat at its largest training values, while a ratio
forest holds the edge ratio and BGB keeps scaling with AGB (the AGB range of the records is
kept in the model card and the map's attributes).

Units
-----
Records are dry biomass (``basis="biomass"``, t d.m. ha-1, as most root/shoot compilations)
or carbon (``basis="carbon"``, t C ha-1). A carbon map is turned into the records' basis
with ``carbon_fraction`` (AGB = AGC / 0.47) before it is fed to the forest, and the
prediction turned back (BGC = BGB x 0.47): the roots' carbon fraction is taken equal to the
shoots' (IPCC Tier 1).

Metrics
-------
Pooled over the out-of-fold predictions of each scheme: ``n``, ``r2`` (1 - SS_res/SS_tot),
``rmse``, ``mae`` and ``bias`` (mean of predicted - observed) in t ha-1 of the records'
basis for ``quantity="bgb"`` and dimensionless for ``quantity="ratio"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon.root_shoot import _as_carbon, _check_fraction
from terracarbon.checks import check_choice, check_int, require_columns
from terracarbon.conventions import CARBON_FRACTION_OF_BIOMASS, DENSITY_UNITS, LANDUSE
from terracarbon.data import io
from terracarbon.errors import InputDataError, ModelError, ParameterError
from terracarbon.models import metrics

log = logging.getLogger(__name__)

Target = Literal["ratio", "bgb"]
Basis = Literal["biomass", "carbon"]
Scheme = Literal["random", "spatial_block"]

DEFAULT_FEATURES: tuple[str, ...] = ("agb_t_ha", "temperature", "precipitation", "dem",
                                     "forest_type")
"""Features of the default forest: AGB (the record column) and cube covariates by name."""

RF_SETTINGS: dict[str, Any] = {"n_estimators": 200, "max_depth": None, "min_samples_leaf": 3,
                               "max_features": 0.6}
"""Hyper-parameters of this forest (few features: a larger share per split than the stock
models' default of 0.33, which with five features would split on one random feature)."""

CV_COLUMNS: list[str] = ["scheme", "model", "quantity", "k", "n", "r2", "rmse", "mae", "bias"]


# --------------------------------------------------------------------------- the model
@dataclass
class BelowgroundRF:
    """A fitted below-ground forest, its cross-validation and what it was trained on.

    Attributes
    ----------
    estimator
        The fitted regressor (``terracarbon.models.estimators`` random forest).
    features : list of str
        Feature columns, in order; ``agb_column`` is the AGB feature.
    target : {"ratio", "bgb"}
    agb_column, bgb_column : str
    basis : {"biomass", "carbon"}
        What the records' AGB/BGB are.
    carbon_fraction : float
        Used to move a carbon map to the biomass basis and back.
    cv : pandas.DataFrame
        Columns :data:`CV_COLUMNS`: per scheme, model (``rf``, ``median_ratio``) and
        quantity (``bgb``, ``ratio``).
    oof : pandas.DataFrame
        Out-of-fold predictions: ``scheme, fold, row`` (position in the records used),
        ``agb, bgb_obs, bgb_pred, baseline_pred``.
    agb_range : tuple of float
        Min and max AGB of the training records (records' units).
    training_ratio : dict
        Median, 10th and 90th percentile of BGB/AGB in the records.
    importance : pandas.DataFrame
        Impurity-based feature importances of the final fit.
    n_records, n_dropped : int
        Records used; records dropped (NaN feature/target or AGB <= 0).
    settings : dict
        Hyper-parameters, seed, schemes, ``k``, ``block_size_m``.
    """

    estimator: Any
    features: list[str]
    target: str
    agb_column: str
    bgb_column: str
    basis: str
    carbon_fraction: float
    cv: pd.DataFrame
    oof: pd.DataFrame
    agb_range: tuple[float, float]
    training_ratio: dict[str, float]
    importance: pd.DataFrame
    n_records: int
    n_dropped: int
    settings: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ prediction
    def _matrix(self, table: pd.DataFrame) -> np.ndarray:
        require_columns(table, self.features, name="table", error=ModelError)
        return _feature_matrix(table, self.features)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """BGB (records' basis and units) for each row of ``table`` (the feature columns)."""
        X = self._matrix(table)
        return _predict_bgb(self.estimator, X, self.target, self.features.index(self.agb_column))

    def predict_ratio(self, table: pd.DataFrame) -> np.ndarray:
        """BGB/AGB for each row of ``table``."""
        X = self._matrix(table)
        agb = X[:, self.features.index(self.agb_column)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return _predict_bgb(self.estimator, X, self.target,
                                self.features.index(self.agb_column)) / agb

    # ------------------------------------------------------------------ reporting
    def summary(self) -> pd.DataFrame:
        """The report's table: CV of BGB per scheme, RF next to the constant-ratio baseline,
        with the training records' median ratio."""
        out = self.cv[self.cv["quantity"] == "bgb"].drop(columns="quantity").copy()
        out["units"] = "t ha-1" if self.basis == "biomass" else DENSITY_UNITS
        out["training_median_ratio"] = self.training_ratio["median"]
        return out.reset_index(drop=True)

    def card(self) -> dict[str, Any]:
        """A JSON-ready description (for a model card next to a saved estimator)."""
        return {
            "model": "belowground random forest",
            "target": self.target, "features": list(self.features),
            "agb_column": self.agb_column, "bgb_column": self.bgb_column,
            "basis": self.basis, "carbon_fraction": self.carbon_fraction,
            "n_records": self.n_records, "n_dropped": self.n_dropped,
            "agb_range": list(self.agb_range), "training_ratio": dict(self.training_ratio),
            "settings": dict(self.settings),
            "cv": self.cv.to_dict(orient="records"),
            "importance": dict(zip(self.importance["feature"],
                                   self.importance["importance"].round(4))),
        }

    def __repr__(self) -> str:
        rows = self.cv[(self.cv["model"] == "rf") & (self.cv["quantity"] == "bgb")]
        scores = ", ".join(f"{r.scheme} R2={r.r2:.3f}" for r in rows.itertuples())
        return (f"BelowgroundRF(target={self.target!r}, n={self.n_records}, "
                f"features={self.features}, {scores})")


# --------------------------------------------------------------------------- kernels
def _feature_matrix(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    cols = []
    for name in features:
        col = table[name]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise ModelError(
                f"feature {name!r} has dtype {col.dtype}; features must be numbers. Encode a "
                "class column (forest type, vegetation type) as the integer codes of the "
                "matching raster."
            )
        cols.append(np.asarray(col, dtype=np.float64))
    return np.column_stack(cols) if cols else np.empty((len(table), 0))


def _predict_bgb(estimator: Any, X: np.ndarray, target: str, agb_index: int) -> np.ndarray:
    """BGB for the rows of ``X``: NaN where a feature is NaN, 0 where AGB <= 0."""
    from terracarbon.models.estimators import one_native_thread

    out = np.full(X.shape[0], np.nan)
    ok = np.isfinite(X).all(axis=1)
    agb = X[:, agb_index]
    pos = ok & (agb > 0)
    out[ok & ~pos] = 0.0
    if pos.any():
        with one_native_thread():
            pred = np.asarray(estimator.predict(X[pos]), dtype=np.float64)
        out[pos] = pred * agb[pos] if target == "ratio" else pred
    return out


def _make_forest(settings: Mapping[str, Any], seed: int) -> Any:
    from terracarbon.models.estimators import make_estimator

    return make_estimator("rf", {"rf": dict(settings)}, seed=seed)


def _scores(obs: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    t, p = np.asarray(obs, float), np.asarray(pred, float)
    keep = np.isfinite(t) & np.isfinite(p)
    return {"n": int(keep.sum()), "r2": metrics.r2(t, p), "rmse": metrics.rmse(t, p),
            "mae": metrics.mae(t, p),
            "bias": float(np.mean(p[keep] - t[keep])) if keep.any() else float("nan")}


# --------------------------------------------------------------------------- fitting
def _clean_records(records: pd.DataFrame, features: list[str], agb_column: str,
                   bgb_column: str) -> tuple[pd.DataFrame, int]:
    require_columns(records, [*features, bgb_column], name="records", error=ModelError,
                    fix="Give the paired records with the feature and target columns "
                        "(see terracarbon.data.synthetic.root_shoot).")
    X = _feature_matrix(records, features)
    bgb = pd.to_numeric(records[bgb_column], errors="coerce").to_numpy(dtype=np.float64)
    agb = X[:, features.index(agb_column)]
    keep = np.isfinite(X).all(axis=1) & np.isfinite(bgb) & (agb > 0) & (bgb >= 0)
    dropped = int((~keep).sum())
    if dropped:
        log.info("belowground RF: %d of %d records dropped (NaN feature/target, AGB <= 0 or "
                 "BGB < 0)", dropped, len(records))
    return records.loc[keep].reset_index(drop=True), dropped


def fit_belowground_rf(
    records: pd.DataFrame,
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
    agb_column: str = "agb_t_ha",
    bgb_column: str = "bgb_t_ha",
    basis: Basis = "biomass",
    target: Target = "ratio",
    schemes: Sequence[Scheme] = ("random", "spatial_block"),
    k: int = 5,
    block_size_m: float | None = 50_000.0,
    seed: int = 0,
    settings: Mapping[str, Any] | None = None,
    carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
) -> BelowgroundRF:
    """Cross-validate and fit a random forest of below-ground on above-ground biomass.

    Parameters
    ----------
    records : pandas.DataFrame
        Paired records, one row per plot: ``agb_column`` and ``bgb_column`` (t ha-1 of dry
        biomass, or t C ha-1 with ``basis="carbon"``), the other ``features`` (numbers;
        classes as integer codes), and ``x``, ``y`` (m, projected) for spatial-block CV.
    features : sequence of str
        Feature columns; must include ``agb_column``. Covariates are named as the cube's
        variables (``temperature`` degC, ``precipitation`` mm yr-1, ``dem`` m, ...) so that
        :func:`map_belowground` finds them.
    agb_column, bgb_column : str
        Above- and below-ground columns.
    basis : {"biomass", "carbon"}
        What the records hold (see the module docstring).
    target : {"ratio", "bgb"}, default "ratio"
        Fit BGB/AGB (predict ``ratio x AGB``) or BGB.
    schemes : sequence of {"random", "spatial_block"}
        CV schemes, each scored (``random``: shuffled k-fold; ``spatial_block``: square
        blocks of ``block_size_m`` as groups, :func:`terracarbon.models.validation.cv_folds`).
    k : int, default 5
        Folds per scheme.
    block_size_m : float, default 50000
        Block side for ``spatial_block`` (m); choose it near the range of residual spatial
        autocorrelation of the records.
    seed : int, default 0
        Seed of the folds and the forest (same seed, same model and scores).
    settings : mapping, optional
        Forest hyper-parameters replacing :data:`RF_SETTINGS` (keys of
        ``terracarbon.models.estimators.DEFAULTS["rf"]``).
    carbon_fraction : float, default 0.47
        Kept with the model for mapping a carbon map on a biomass basis.

    Returns
    -------
    BelowgroundRF
        Fitted on every usable record, with ``cv``, ``oof``, ``summary()``, ``card()``.

    Raises
    ------
    ModelError
        Missing columns, non-numeric features, too few records/blocks for ``k`` folds.
    ParameterError
        Unknown ``target``/``basis``/scheme, ``agb_column`` not among ``features``.

    Notes
    -----
    The forest is :func:`terracarbon.models.estimators.make_estimator` ``("rf")``
    (deterministic for a seed). Per fold a fresh forest is fitted on the other folds; the
    baseline predicts ``median(BGB/AGB of the training folds) x AGB``. Scores are pooled
    over all out-of-fold predictions of a scheme.

    Examples
    --------
    >>> from terracarbon.data.synthetic.root_shoot import make_root_shoot_records
    >>> model = fit_belowground_rf(make_root_shoot_records(60), k=3,
    ...                            schemes=("random",), settings={"n_estimators": 20})
    >>> model.summary()[["scheme", "model", "n"]].values.tolist()
    [['random', 'rf', 60], ['random', 'median_ratio', 60]]
    """
    from terracarbon.models.validation import cv_folds, fold_jobs

    if not isinstance(records, pd.DataFrame):
        raise ModelError(f"records: expected a pandas DataFrame, got {type(records).__name__}.")
    features = [str(f) for f in features]
    if agb_column not in features:
        raise ParameterError(f"features {features} must include agb_column={agb_column!r}: "
                             "below-ground biomass is modelled from above-ground biomass.")
    if len(set(features)) != len(features):
        raise ParameterError(f"features {features} repeat a name.")
    check_choice(target, ("ratio", "bgb"), name="target")
    check_choice(basis, ("biomass", "carbon"), name="basis")
    schemes = list(schemes)
    for s in schemes:
        check_choice(s, ("random", "spatial_block"), name="schemes")
    check_int(k, name="k", minimum=2, hint="(folds per CV scheme)")
    carbon_fraction = _check_fraction(carbon_fraction)
    hp = {**RF_SETTINGS, **dict(settings or {})}
    data, dropped = _clean_records(records, features, agb_column, bgb_column)
    if len(data) < max(2 * k, 10):
        raise ModelError(f"records: {len(data)} usable records (of {len(records)}); at least "
                         f"{max(2 * k, 10)} are needed for {k}-fold CV.")
    X = _feature_matrix(data, features)
    agb = X[:, features.index(agb_column)]
    bgb = data[bgb_column].to_numpy(dtype=np.float64)
    ratio = bgb / agb
    y = ratio if target == "ratio" else bgb
    agb_index = features.index(agb_column)

    rows, oofs = [], []
    for scheme in schemes:
        folds = cv_folds(data, scheme=scheme, k=k, block_size_m=block_size_m, seed=seed)
        pred = np.full(len(data), np.nan)
        base = np.full(len(data), np.nan)
        for job in fold_jobs(folds, scheme=scheme):
            est = _make_forest(hp, seed).fit(X[job.train], y[job.train])
            pred[job.predict] = _predict_bgb(est, X[job.predict], target, agb_index)
            base[job.predict] = np.median(ratio[job.train]) * agb[job.predict]
        for model, p in (("rf", pred), ("median_ratio", base)):
            rows.append({"scheme": scheme, "model": model, "quantity": "bgb", "k": k,
                         **_scores(bgb, p)})
            rows.append({"scheme": scheme, "model": model, "quantity": "ratio", "k": k,
                         **_scores(ratio, p / agb)})
        oofs.append(pd.DataFrame({"scheme": scheme, "fold": folds, "row": np.arange(len(data)),
                                  "agb": agb, "bgb_obs": bgb, "bgb_pred": pred,
                                  "baseline_pred": base}))
    final = _make_forest(hp, seed).fit(X, y)
    importance = pd.DataFrame({"feature": features,
                               "importance": np.asarray(final.feature_importances_)}
                              ).sort_values("importance", ascending=False, ignore_index=True)
    cv = pd.DataFrame(rows, columns=CV_COLUMNS)
    model = BelowgroundRF(
        estimator=final, features=features, target=target, agb_column=agb_column,
        bgb_column=bgb_column, basis=basis, carbon_fraction=carbon_fraction, cv=cv,
        oof=pd.concat(oofs, ignore_index=True) if oofs else pd.DataFrame(),
        agb_range=(float(agb.min()), float(agb.max())),
        training_ratio={"median": float(np.median(ratio)),
                        "p10": float(np.quantile(ratio, 0.1)),
                        "p90": float(np.quantile(ratio, 0.9))},
        importance=importance, n_records=len(data), n_dropped=dropped,
        settings={**hp, "seed": seed, "schemes": schemes, "k": k,
                  "block_size_m": block_size_m},
    )
    log.info("%r", model)
    return model


# --------------------------------------------------------------------------- mapping
def _map_kernel(*arrays: np.ndarray, estimator: Any, target: str, agb_index: int,
                to_basis: float, from_basis: float, out_dtype: Any) -> np.ndarray:
    """One block: feature arrays (broadcastable) -> BGC. ``arrays[agb_index]`` is AGC."""
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    cols = [np.broadcast_to(np.asarray(a, dtype=np.float64), shape).reshape(-1)
            for a in arrays]
    cols[agb_index] = cols[agb_index] * to_basis
    X = np.column_stack(cols)
    out = _predict_bgb(estimator, X, target, agb_index) * from_basis
    return out.reshape(shape).astype(out_dtype)


def _layer_on_grid(ref: xr.DataArray, layer: Any, name: str) -> xr.DataArray:
    if not isinstance(layer, xr.DataArray):
        raise InputDataError(f"{name}: expected an xarray DataArray.")
    extra = sorted(set(layer.dims) - {"year", "y", "x"})
    if extra or not {"y", "x"} <= set(layer.dims):
        raise InputDataError(f"{name}: dims {layer.dims}; expected (y, x) or "
                             "(year, y, x) on the above-ground map's grid.")
    for dim in ("y", "x"):
        a, b = ref[dim].values, layer[dim].values
        step = abs(float(a[1] - a[0])) if a.size > 1 else 1.0
        if a.size != b.size or not np.allclose(a, b, rtol=0.0, atol=1e-6 * step):
            raise InputDataError(
                f"{name}: its {dim} coordinates ({b.size} values) differ from the "
                f"above-ground map's ({a.size} values); align both to one grid first."
            )
    if "year" in layer.dims:
        if "year" not in ref.dims:
            raise InputDataError(f"{name} is annual but the above-ground map has "
                                 "no 'year'; select one year of the covariate.")
        missing = sorted(set(ref["year"].values.tolist()) - set(layer["year"].values.tolist()))
        if missing:
            raise InputDataError(f"{name}: no values for years {missing} of the "
                                 "above-ground map.")
        layer = layer.sel(year=ref["year"])
    keep = [c for c in layer.coords if c in layer.dims]
    return layer.reset_coords(drop=True).assign_coords(
        {c: ref[c] for c in keep}).drop_vars([c for c in layer.coords if c not in keep],
                                             errors="ignore")


def map_belowground(
    model: BelowgroundRF,
    above: xr.DataArray,
    covariates: xr.Dataset | Mapping[str, xr.DataArray] | None = None,
    *,
    landuse: xr.DataArray | None = None,
    classes: Sequence[int] | None = None,
    name: str = "below_carbon_density",
) -> xr.DataArray:
    """Below-ground carbon density from an above-ground map with a fitted forest.

    Parameters
    ----------
    model : BelowgroundRF
        From :func:`fit_belowground_rf`.
    above : xarray.DataArray
        Above-ground carbon (``t C ha-1`` or convertible) or dry biomass density (``t ha-1``,
        multiplied by the model's carbon fraction), ``(y, x)`` or ``(year, y, x)``, NumPy or
        dask.
    covariates : xarray.Dataset or mapping, optional
        A variable for every feature but the AGB one, named as the feature, ``(y, x)``
        (static) or ``(year, y, x)`` (annual, with the map's years) on the same grid. The
        units must be those of the records (the forest sees the numbers).
    landuse : xarray.DataArray, optional
        Class codes; with ``classes``, pixels of other classes are NaN.
    classes : sequence of int, optional
        Classes mapped (e.g. ``[1]`` for a forest-only forest, as the China dataset); combine
        with :func:`terracarbon.carbon.root_shoot.belowground_carbon` elsewhere
        (``bgc.fillna(by_table)``).
    name : str
        Output name.

    Returns
    -------
    xarray.DataArray
        BGC (``t C ha-1``) on the grid and years of ``above``; lazy for dask input (blocks
        follow ``above``'s chunks). NaN where any feature is NaN, 0 where AGC <= 0.
        Attributes ``units``, ``long_name``, ``model`` (target, features, CV R^2),
        ``training_agb_range``, ``history``.

    Raises
    ------
    InputDataError
        Missing covariates, grids or years that differ, ``above`` without units.
    ParameterError
        ``classes`` without ``landuse``.
    """
    if not isinstance(model, BelowgroundRF):
        raise ParameterError(f"model: expected a BelowgroundRF from fit_belowground_rf, got "
                             f"{type(model).__name__}.")
    agc, _ = _as_carbon(above, model.carbon_fraction)
    if not {"y", "x"} <= set(agc.dims) or not set(agc.dims) <= {"year", "y", "x"}:
        raise InputDataError(f"above: dims {agc.dims}; expected (y, x) or (year, y, x).")
    others = [f for f in model.features if f != model.agb_column]
    cov = dict(covariates.data_vars) if isinstance(covariates, xr.Dataset) else \
        dict(covariates or {})
    missing = [f for f in others if f not in cov]
    if missing:
        raise InputDataError(
            f"covariates: missing {missing} that the forest uses (features {model.features}); "
            f"got {sorted(cov)}. Name the layers as the record columns."
        )
    if classes is not None and landuse is None:
        raise ParameterError("classes: needs landuse (the class of each pixel).")
    ref = agc.reset_coords(drop=True)
    layers = []
    for f in model.features:
        layers.append(ref if f == model.agb_column
                      else _layer_on_grid(ref, cov[f], f"covariates[{f!r}]"))
    dtype = agc.dtype if np.issubdtype(agc.dtype, np.floating) else np.float64
    to_basis = 1.0 / model.carbon_fraction if model.basis == "biomass" else 1.0
    out = xr.apply_ufunc(
        _map_kernel, *layers, dask="parallelized", output_dtypes=[dtype],
        kwargs={"estimator": model.estimator, "target": model.target,
                "agb_index": model.features.index(model.agb_column), "to_basis": to_basis,
                "from_basis": 1.0 / to_basis, "out_dtype": dtype},
    )
    out = out.transpose(*agc.dims)
    if classes is not None:
        lu = _layer_on_grid(ref, landuse, "landuse")
        out = out.where(lu.isin([int(c) for c in classes]))
    if "spatial_ref" in agc.coords:
        out = out.assign_coords(spatial_ref=agc["spatial_ref"])
    rf_r2 = model.cv[(model.cv["model"] == "rf") & (model.cv["quantity"] == "bgb")]
    out.name = name
    out.attrs = {
        "units": DENSITY_UNITS,
        "long_name": "below-ground biomass carbon density",
        "model": (f"random forest of {'BGB/AGB' if model.target == 'ratio' else 'BGB'} on "
                  f"{model.features}; CV R2 " + ", ".join(
                      f"{r.scheme} {r.r2:.3f}" for r in rf_r2.itertuples())),
        "training_agb_range": f"{model.agb_range[0]:.4g}-{model.agb_range[1]:.4g} "
                              f"({'t ha-1' if model.basis == 'biomass' else DENSITY_UNITS})",
        "carbon_fraction": model.carbon_fraction,
        "history": io.update_history(io.history_line(
            "carbon.map_belowground", target=model.target, features=model.features,
            classes=None if classes is None else [int(c) for c in classes]), above),
    }
    return out


# --------------------------------------------------------------------------- implied ratio
def implied_ratio(
    below: xr.DataArray,
    above: xr.DataArray,
    landuse: xr.DataArray | None = None,
    *,
    classes: Sequence[int] | None = None,
    max_ratio: float = 20.0,
    resolution: float = 0.001,
) -> pd.DataFrame:
    """The below-/above-ground ratio a pair of maps implies: overall and by class.

    Parameters
    ----------
    below, above : xarray.DataArray
        Below- and above-ground carbon density on one grid (same dims; carbon units, or dry
        biomass for ``above`` as :func:`map_belowground`), NumPy or dask.
    landuse : xarray.DataArray, optional
        Class codes, ``(y, x)`` or with the maps' years; adds a row per class.
    classes : sequence of int, optional
        Classes reported, each with a row (default: the classes of ``conventions.LANDUSE``
        that have pixels).
    max_ratio : float, default 20
        Ratios above are counted as ``max_ratio`` in the percentiles (not in the pooled ratio).
    resolution : float, default 0.001
        Bin width of the streamed histogram: percentiles are exact to ``resolution / 2``.

    Returns
    -------
    pandas.DataFrame
        ``class`` (code, or ``"all"``), ``class_name``, ``n_pixels`` (pixel-years with
        AGC > 0 and both maps finite), ``median_ratio``, ``p10_ratio``, ``p90_ratio``,
        ``pooled_ratio`` (sum BGC / sum AGC), ``mean_above_t_C_ha``, ``mean_below_t_C_ha``.

    Notes
    -----
    Each block contributes a histogram of its ratios (and sums) per class; one computation
    combines them, so a ``(year, y, x)`` map is read once and never held in memory.
    """
    import dask
    import dask.array as dsa

    for arg, value in (("max_ratio", max_ratio), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ParameterError(f"{arg}={value!r}: expected a positive number.")
    if resolution >= max_ratio:
        raise ParameterError("resolution must be smaller than max_ratio.")
    agc, _ = _as_carbon(above, CARBON_FRACTION_OF_BIOMASS)
    bgc, _ = _as_carbon(below, CARBON_FRACTION_OF_BIOMASS)
    if set(bgc.dims) != set(agc.dims) or any(bgc.sizes[d] != agc.sizes[d] for d in agc.dims):
        raise InputDataError(f"below {dict(bgc.sizes)} and above {dict(agc.sizes)} must share "
                             "their grid and years.")
    bgc = bgc.transpose(*agc.dims)
    codes_list = list(LANDUSE.codes if classes is None else [int(c) for c in classes])
    if landuse is not None:
        lu = _layer_on_grid(agc.reset_coords(drop=True), landuse, "landuse")
        lu = xr.broadcast(lu, agc.reset_coords(drop=True))[0].transpose(*agc.dims)
        lu_data = lu.data
    else:
        lu_data = None

    def flat(a: Any) -> Any:
        return (a if isinstance(a, dsa.Array) else dsa.from_array(np.asarray(a))).reshape(-1)

    a, b = flat(agc.data).astype(np.float64), flat(bgc.data).astype(np.float64)
    ok = dsa.isfinite(a) & dsa.isfinite(b) & (a > 0)
    ratio = dsa.where(ok, b / dsa.where(ok, a, 1.0), np.nan)
    n_bins = round(max_ratio / resolution)
    r_clip = dsa.clip(ratio, 0.0, n_bins * resolution)
    # bins centred on multiples of the resolution: a ratio of exactly 0.2 is a bin centre
    edges = (np.arange(n_bins + 2) - 0.5) * resolution
    groups: list[tuple[Any, Any]] = [("all", ok)]
    if lu_data is not None:
        c = flat(lu_data)
        groups += [(code, ok & (c == code)) for code in codes_list]
    lazy = []
    for _, mask in groups:
        w = mask.astype(np.float64)
        hist, _ = dsa.histogram(dsa.where(mask, r_clip, -1.0), bins=edges,
                                range=(edges[0], edges[-1]))
        lazy.append((hist, dsa.where(mask, a, 0.0).sum(), dsa.where(mask, b, 0.0).sum(),
                     w.sum()))
    computed = dask.compute(*lazy)
    rows = []
    centres = (edges[:-1] + edges[1:]) / 2
    for (key, _), (hist, sum_a, sum_b, n) in zip(groups, computed):
        n = int(n)
        row: dict[str, Any] = {"class": key,
                               "class_name": "all" if key == "all" else LANDUSE.as_dict().get(
                                   key, str(key)),
                               "n_pixels": n}
        if n:
            cum = np.cumsum(hist)
            for label, q in (("median_ratio", 0.5), ("p10_ratio", 0.1), ("p90_ratio", 0.9)):
                row[label] = float(centres[np.searchsorted(cum, q * cum[-1], side="left")])
            row.update(pooled_ratio=float(sum_b / sum_a), mean_above_t_C_ha=float(sum_a / n),
                       mean_below_t_C_ha=float(sum_b / n))
        if n or key == "all" or classes is not None:  # default classes: only those present
            rows.append(row)
    cols = ["class", "class_name", "n_pixels", "median_ratio", "p10_ratio", "p90_ratio",
            "pooled_ratio", "mean_above_t_C_ha", "mean_below_t_C_ha"]
    return pd.DataFrame(rows).reindex(columns=cols)
