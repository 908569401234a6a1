"""The interface every carbon-density model implements.

A model predicts vegetation and soil carbon density (t C ha-1) from the data-prep cube.
Tabular models (RF, baselines) use the covariate columns already extracted into the sample
table; spatial models (CNN, CNN-TCN) cut patches from the cube at each plot's ``row, col``
and ``year``. Both receive both, so validation and mapping code treat every model alike.

Besides the protocol, this module holds what every model family shares: the targets and
their output variables, the categorical covariates, and the checks of a model's arguments
and sample table that do not depend on the family (targets, interval, target columns, plot
years).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import require_columns
from terracarbon.conventions import CARBON_POOLS
from terracarbon.errors import ModelError, ParameterError

TARGETS: dict[str, str] = {pool: f"{pool}_carbon_t_ha" for pool in CARBON_POOLS}
"""Short target name (a carbon pool: ``veg``, ``soil``, ``above`` …) -> sample-table column
(t C ha-1). A study's models predict the pools its plots measured."""

OUTPUT_VARIABLES: dict[str, str] = {pool: f"{pool}_carbon_density" for pool in CARBON_POOLS}
"""Short target name -> variable name in predicted maps (t C ha-1)."""

CATEGORICAL_FEATURES: frozenset[str] = frozenset({"landuse", "soil_type", "veg_type"})
"""Cube variables holding integer class codes (0 = nodata), whatever their dtype."""


@runtime_checkable
class CarbonModel(Protocol):
    """A fitted or unfitted model of vegetation and soil carbon density.

    Attributes
    ----------
    name : str
        Short identifier used in tables (``rf``, ``cnn``, ``cnn_tcn``, ``ndvi_lr``, ``mlr``,
        ``lookup``).
    features : list of str
        Cube variable names used as predictors.
    targets : list of str
        Subset of ``TARGETS`` keys the model predicts.
    """

    name: str
    features: list[str]
    targets: list[str]

    def fit(self, samples: pd.DataFrame, cube: xr.Dataset) -> CarbonModel:
        """Fit on the sample table (rows with NaN in a target are ignored for that target)."""
        ...

    def predict_samples(self, samples: pd.DataFrame, cube: xr.Dataset) -> np.ndarray:
        """Predict at the sample rows: array (n_samples, len(targets)) in t C ha-1."""
        ...

    def predict_map(
        self, cube: xr.Dataset, year: int, *, interval: float | None = None
    ) -> xr.Dataset:
        """Predict every pixel of ``year``: Dataset on the cube grid (y, x).

        Variables ``OUTPUT_VARIABLES[t]`` for each target, units ``t C ha-1``; with
        ``interval`` (e.g. 0.9) also ``<var>_lower`` / ``<var>_upper``. Pixels outside the
        region mask or with missing covariates are NaN. Reads only the variables
        ``features`` and ``region_mask`` of ``cube``: the mapping hands it no others
        (:func:`terracarbon.carbon.mapping.variables_read`).
        """
        ...

    def card(self) -> dict:
        """A JSON-serialisable model card (features, units, scaling, hyper-parameters, seed)."""
        ...


# ------------------------------------------------------------------------------ checks


def check_targets(targets: Sequence[str] | str) -> list[str]:
    """Validate a list of short target names (``veg``, ``soil``) and return it as a list.

    >>> check_targets("veg")
    ['veg']
    >>> check_targets(["veg", "wood"])
    Traceback (most recent call last):
    ...
    terracarbon.errors.ParameterError: targets=['veg', 'wood']; expected a non-empty list of distinct names from ['above', 'below', 'dead', 'veg', 'soil'] (e.g. targets=('veg', 'soil')).
    """
    targets = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in targets if t not in TARGETS]
    if not targets or bad or len(set(targets)) != len(targets):
        raise ParameterError(
            f"targets={targets!r}; expected a non-empty list of distinct names from "
            f"{list(TARGETS)} (e.g. targets=('veg', 'soil'))."
        )
    return targets


def check_interval(interval: Any, *, where: str = "") -> Any:
    """``interval`` if it is a central probability strictly inside (0, 1); ParameterError else.

    ``where`` (e.g. ``"CnnCarbon.predict_map"``) prefixes the message. The value is returned
    unchanged (not converted), so callers compute with exactly what they were given.

    >>> check_interval(1.5, where="predict_map")
    Traceback (most recent call last):
    ...
    terracarbon.errors.ParameterError: predict_map: interval=1.5 is invalid; expected a central probability in (0, 1) such as 0.9, or None.
    """
    if isinstance(interval, bool) or not isinstance(interval, (int, float, np.floating)) \
            or not 0.0 < float(interval) < 1.0:
        raise ParameterError(
            f"{where + ': ' if where else ''}interval={interval!r} is invalid; expected a "
            "central probability in (0, 1) such as 0.9, or None."
        )
    return interval


def check_target_columns(samples: pd.DataFrame, targets: Sequence[str]) -> None:
    """Raise :class:`ModelError` when a target's column is missing or NaN at every plot."""
    for t in targets:
        col = TARGETS[t]
        require_columns(samples, [col], name="sample table", error=ModelError,
                        fix=f"Add the column of target {t!r} or drop {t!r} from targets.")
        if not np.isfinite(np.asarray(samples[col], dtype=np.float64)).any():
            raise ModelError(
                f"target {t!r} (column {col!r}) is NaN at all {len(samples)} plots; "
                f"drop {t!r} from targets."
            )


def check_sample_years(samples: pd.DataFrame, cube: xr.Dataset | None) -> None:
    """Raise :class:`ModelError` listing plot years that the cube does not hold."""
    if cube is None or "year" not in cube.coords or "year" not in samples.columns:
        return
    cube_years = set(np.asarray(cube["year"]).astype(int).ravel().tolist())
    plot_years = set(pd.unique(samples["year"].astype(int)).tolist())
    missing = sorted(plot_years - cube_years)
    if missing:
        raise ModelError(
            f"plot years {missing} are not in the cube (cube years {sorted(cube_years)}); "
            "extend the cube's year range or drop those plots."
        )
