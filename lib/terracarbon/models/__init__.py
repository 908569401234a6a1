"""Carbon-density models: random forest, CNN, CNN-TCN, baselines, validation, AOA.

* ``registry`` - one entry per model family (name, class, how it is built from parameters)
* ``base`` - the CarbonModel protocol, targets, checks every family shares
* ``tabular`` - the shared core of the models that read covariate columns
* ``rf``, ``baselines`` (NDVI regression, multiple regression, land-use lookup), ``cnn``
  (package: CNN and CNN-TCN with their networks, patches, encoding, fitting, mapping)
* ``validation`` (CV schemes, hold-outs), ``change_validation`` (change at remeasured plots,
  the choice of the mapping model), ``ensemble`` (block-bootstrap members), ``metrics``,
  ``aoa`` (area of applicability)
* ``persistence`` (save/load next to a model card), ``training`` (train and compare the
  candidates of a study)

Submodules load on first use (``tc.models.rf``), so importing the package does not import
torch or scikit-learn.
"""

from __future__ import annotations

import importlib as _importlib

_SUBMODULES = {"registry", "base", "tabular", "rf", "cnn", "baselines", "validation", "metrics",
               "aoa", "persistence", "training", "change_validation", "ensemble", "average"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES])
