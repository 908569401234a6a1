"""Carbon-density models: random forest, CNN, CNN-TCN, baselines, validation, AOA.

Submodules load on first use (``tc.models.rf``), so importing the package does not import
torch or scikit-learn.
"""

from __future__ import annotations

import importlib as _importlib

_SUBMODULES = {"base", "rf", "cnn", "patches", "baselines", "validation", "metrics", "aoa", "persistence",
               "training"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
