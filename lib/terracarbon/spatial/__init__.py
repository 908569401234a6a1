"""Spatial autocorrelation on the raster grid (global Moran's I, LISA) and diagnostic zoning.

Modules
-------
autocorrelation  moran, moran_by_year, lisa, lisa_bivariate, lisa_by_year, fdr_cutoff,
                 MoranResult: esda's statistics on implicit grid weights, numpy or dask
weights          raster inputs and their implicit rook/queen/distance-band neighbours
irregular        moran_w, lisa_w: irregular units with a libpysal W/Graph, via esda
zoning           diagnostic_zoning (LISA cluster x future trend by ordered rules),
                 persistent_cluster, cluster_shares, zone_table
kernels          numba kernels (permutation inference)

Class codes come from :mod:`terracarbon.conventions` (``LISA_CLUSTER``, ``LISA_QUADRANT``,
``FUTURE_TREND``). Everything public is importable from here: ``tc.spatial.lisa``.
"""

from __future__ import annotations

from terracarbon.spatial.autocorrelation import (
    LisaMethod,
    MoranResult,
    fdr_cutoff,
    lisa,
    lisa_bivariate,
    lisa_by_year,
    moran,
    moran_by_year,
)
from terracarbon.spatial.irregular import lisa_w, moran_w
from terracarbon.spatial.weights import Contiguity
from terracarbon.spatial.zoning import (
    CLUSTER_CLASSES,
    FUTURE_TREND_CLASSES,
    cluster_shares,
    diagnostic_zoning,
    persistent_cluster,
    zone_table,
)

__all__ = [
    "CLUSTER_CLASSES",
    "FUTURE_TREND_CLASSES",
    "Contiguity",
    "LisaMethod",
    "MoranResult",
    "cluster_shares",
    "diagnostic_zoning",
    "fdr_cutoff",
    "lisa",
    "lisa_bivariate",
    "lisa_by_year",
    "lisa_w",
    "moran",
    "moran_by_year",
    "moran_w",
    "persistent_cluster",
    "zone_table",
]
