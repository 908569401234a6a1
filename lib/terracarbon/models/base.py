"""The interface every carbon-density model implements.

A model predicts vegetation and soil carbon density (t C ha-1) from the data-prep cube.
Tabular models (RF, baselines) use the covariate columns already extracted into the sample
table; spatial models (CNN, CNN-TCN) cut patches from the cube at each plot's ``row, col``
and ``year``. Both receive both, so validation and mapping code treat every model alike.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import xarray as xr

TARGETS: dict[str, str] = {"veg": "veg_carbon_t_ha", "soil": "soil_carbon_t_ha"}
"""Short target name -> sample-table column (t C ha-1)."""

OUTPUT_VARIABLES: dict[str, str] = {"veg": "veg_carbon_density", "soil": "soil_carbon_density"}
"""Short target name -> variable name in predicted maps (t C ha-1)."""


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

    def fit(self, samples: pd.DataFrame, cube: xr.Dataset) -> "CarbonModel":
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
        region mask or with missing covariates are NaN.
        """
        ...

    def card(self) -> dict:
        """A JSON-serialisable model card (features, units, scaling, hyper-parameters, seed)."""
        ...
