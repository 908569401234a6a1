"""terracarbon: a notebook-driven workbench for terrestrial-ecosystem carbon storage.

Modules (one concern each): ``params`` (YAML parameters), ``stages`` (run folders and
manifests), ``io`` (reading/writing rasters and tables with units, atomically),
``synthetic`` (the built-in study area), ``grid`` (target grid, alignment), ``prep``
(the data-prep facade), ``fieldplots`` (field plots: cleaning, extraction, augmentation, VIF), ``models``
(RF, CNN, CNN-TCN, baselines, validation), ``carbon`` (density, storage, change),
``trends`` (Sen/MK, Cv, Hurst, partial correlation), ``spatial`` (Moran, LISA, zoning),
``plot`` and ``report`` (figures and HTML).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib as _importlib

_SUBMODULES = {
    "errors", "units", "classes", "params", "stages", "io", "report", "runner", "inputs", "synthetic",
    "grid", "prep", "fieldplots", "mapping", "models", "carbon", "trends", "spatial", "plot", "compute", "app",
}


def __getattr__(name: str):
    """Import submodules on first use: ``import terracarbon as tc; tc.trends.sen_mk(...)``.

    Notebooks name their parameter sections ``study``, ``prep``, ``trends`` …, so they reach
    the library through ``tc.<module>`` and the names never clash.
    """
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
