"""The average of several candidate models: a simple ensemble of different model families.

Different families err differently in time: on the default synthetic study a multiple
regression reads the region-wide greening as carbon gain (its 2000-2021 change is too high)
while a random forest, regularised by its leaves, damps the gradients it learned (its change
is too low). Their mean carries each one's information and cancels part of each one's bias,
as model averaging does in general (Dormann et al. 2018, Ecological Monographs). Training
scores it like any candidate — its cross-validated predictions are the mean of the
components' out-of-fold predictions on the same folds — and the model choice takes it only
when it is better by the criterion (:mod:`terracarbon.models.change_validation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.errors import ModelError

NAME = "average"


class AveragedModel:
    """Equal-weight mean of fitted (or to-be-fitted) carbon models with the same targets.

    Parameters
    ----------
    components : sequence of CarbonModel
        At least two models predicting the same targets (t C ha-1).

    Examples
    --------
    >>> class Const:
    ...     targets, features, name = ("veg",), ["ndvi"], "const"
    ...     def __init__(self, v): self.v = v
    ...     def predict_samples(self, samples, cube=None): return np.full((len(samples), 1), self.v)
    >>> AveragedModel([Const(10.0), Const(20.0)]).predict_samples(pd.DataFrame({"a": [1, 2]}))
    array([[15.],
           [15.]])
    """

    name = NAME

    def __init__(self, components: Sequence):
        components = list(components)
        if len(components) < 2:
            raise ModelError(f"an averaged model needs at least 2 components, got "
                             f"{len(components)}")
        targets = {tuple(c.targets) for c in components}
        if len(targets) != 1:
            raise ModelError(f"averaged components predict different targets: {targets}")
        self.components = components
        self.targets = tuple(components[0].targets)
        self.features = list(dict.fromkeys(f for c in components for f in c.features))
        self.seed = getattr(components[0], "seed", None)

    @property
    def component_names(self) -> list[str]:
        return [c.name for c in self.components]

    def fit(self, samples: pd.DataFrame, cube: xr.Dataset | None = None) -> AveragedModel:
        """Fit every component on the same rows."""
        for c in self.components:
            c.fit(samples, cube)
        return self

    def predict_samples(self, samples: pd.DataFrame, cube: xr.Dataset | None = None
                        ) -> np.ndarray:
        """Mean of the components' predictions (t C ha-1); NaN where any is NaN."""
        preds = [np.asarray(c.predict_samples(samples, cube), dtype=np.float64)
                 for c in self.components]
        return np.mean(preds, axis=0)

    def predict_map(self, cube: xr.Dataset, year: int, *, interval: float | None = None
                    ) -> xr.Dataset:
        """Mean of the components' maps; with ``interval`` the mean of their bounds (the
        components' own intervals averaged as comonotonic quantiles)."""
        maps = [c.predict_map(cube, year, interval=interval) for c in self.components]
        out = maps[0].copy()
        for name, first in maps[0].data_vars.items():
            # on the arrays: a mapping task averages a chunk of a few thousand pixels, where
            # concatenating DataArrays took longer than the components' predictions
            stacked = np.stack([np.asarray(m[name].values) for m in maps])
            out[name] = first.copy(data=stacked.mean(axis=0).astype(first.dtype))
        out.attrs["model"] = f"{NAME}({', '.join(self.component_names)})"
        return out

    def card(self) -> dict:
        return {"class": NAME, "components": self.component_names,
                "description": f"equal-weight mean of {', '.join(self.component_names)}",
                "component_cards": [c.card() for c in self.components]}


def averaged_factory(factories: Sequence[Callable[[], object]]) -> Callable[[], AveragedModel]:
    """A factory of unfitted averaged models from the components' factories."""
    return lambda: AveragedModel([f() for f in factories])
