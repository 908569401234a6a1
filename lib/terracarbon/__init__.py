"""terracarbon: a notebook-driven workbench for terrestrial-ecosystem carbon storage.

Subpackages by concern (docs/architecture.md):

* ``conventions`` (units, class-code tables), ``checks`` (argument validation), ``errors``
* ``pipeline`` — ``params`` (schema, validation), ``stages`` (stage specs, contexts,
  manifests), ``runner``, ``report`` (HTML, index), ``compute`` (dask sessions)
* ``data`` — ``io`` (atomic writes, CF attributes), ``grid``, ``prep`` (data-prep facade),
  ``survey`` (field plots), ``inputs`` (synthetic or user data), ``synthetic`` (the built-in
  study area and its truth)
* ``models`` — registry, base, each family, validation, metrics, AOA, persistence, training
* ``carbon`` — area, storage, totals, change, transitions, lookup, products, mapping
* ``landcover`` — the study's land-cover classes: built-in schemes, class tables, groups,
  validation, the cube's land-use layers and tables at the class and group level
* ``trends`` — Sen/MK, persistence (Hurst, Cv), drivers; ``spatial`` — Moran, LISA, zoning
* ``viz`` — maps, charts, interactive maps, the dashboard (``viz.app``), screenshots

Notebooks reach the library as ``tc.<name>`` (they name their parameter sections ``study``,
``trends`` …, so a module name never clashes with a parameter): :data:`PUBLIC_MODULES` maps
each short name to its module, imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib as _importlib

PUBLIC_MODULES: dict[str, str] = {
    "errors": "errors", "conventions": "conventions", "checks": "checks",
    "pipeline": "pipeline", "params": "pipeline.params", "stages": "pipeline.stages",
    "runner": "pipeline.runner", "report": "pipeline.report", "compute": "pipeline.compute",
    "data": "data", "io": "data.io", "grid": "data.grid", "prep": "data.prep",
    "survey": "data.survey", "inputs": "data.inputs", "synthetic": "data.synthetic",
    "models": "models", "carbon": "carbon", "trends": "trends", "spatial": "spatial",
    "viz": "viz", "app": "viz.app", "flux": "flux", "monthly": "data.monthly",
    "landcover": "landcover",
}
"""Short name -> module (relative to ``terracarbon``) of everything ``tc.<name>`` reaches."""


def __getattr__(name: str):
    """Import a public module on first use: ``import terracarbon as tc; tc.trends.sen_mk(...)``."""
    if name in PUBLIC_MODULES:
        return _importlib.import_module(f"{__name__}.{PUBLIC_MODULES[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
