"""Spatial autocorrelation on the raster grid (global Moran's I, LISA) and diagnostic zoning.

Modules
-------
autocorrelation  moran, moran_by_year, lisa, lisa_bivariate, lisa_by_year, fdr_cutoff,
                 MoranResult: esda's statistics on implicit grid weights, numpy or dask
weights          raster inputs and their implicit rook/queen/distance-band neighbours
irregular        moran_w, lisa_w: irregular units with a libpysal W/Graph, via esda
zoning           diagnostic_zoning (LISA cluster x future trend by ordered rules),
                 persistent_cluster, cluster_shares, zone_table
rules            parse_rules: the zoning rules' grammar and class names (light: the
                 parameter check imports it without the statistics)
kernels          numba kernels (permutation inference)

Class codes come from :mod:`terracarbon.conventions` (``LISA_CLUSTER``, ``LISA_QUADRANT``,
``FUTURE_TREND``). Everything public is reachable from here: ``tc.spatial.lisa``; each name
loads its module on first use, so importing one submodule (``rules``) loads no other.
"""

from __future__ import annotations

import importlib as _importlib

_HOME = {
    "LisaMethod": "autocorrelation", "MoranResult": "autocorrelation",
    "fdr_cutoff": "autocorrelation", "lisa": "autocorrelation",
    "lisa_bivariate": "autocorrelation", "lisa_by_year": "autocorrelation",
    "moran": "autocorrelation", "moran_by_year": "autocorrelation",
    "lisa_w": "irregular", "moran_w": "irregular", "Contiguity": "weights",
    "CLUSTER_CLASSES": "rules", "FUTURE_TREND_CLASSES": "rules",
    "cluster_shares": "zoning", "diagnostic_zoning": "zoning",
    "persistent_cluster": "zoning", "zone_table": "zoning",
}
"""Public name -> the submodule that defines it."""

_SUBMODULES = {*_HOME.values(), "kernels"}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(_importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME, *_SUBMODULES])
