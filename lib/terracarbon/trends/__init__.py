"""Pixel-wise trend, stability, persistence and driver analysis of annual series.

Every public function takes xarray objects (numpy- or dask-backed) with a time dimension
(``dim``, default ``"year"``) and returns xarray objects on the input grid, with ``units``,
``long_name`` and ``history`` (the inputs' lineage plus its own line) on every variable.
The per-pixel arithmetic lives in :mod:`terracarbon.trends.kernels` (numba) and is applied
block by block with ``xr.apply_ufunc(..., dask="parallelized")``; the time dimension is made
a single chunk. Class codes and names come from :mod:`terracarbon.conventions`.

Modules
-------
mann_kendall   sen_mk (Theil-Sen + Mann-Kendall: original, Hamed-Rao, Yue-Wang, TFPW),
               classify_trend (3 / 5 classes), series_trend (one table column), steepest_pixel
persistence    coefficient_of_variation, stability_classes, hurst_rs (classic R/S, optional
               Anis-Lloyd correction), future_trend (Sen/MK trend x Hurst persistence)
drivers        partial_correlation (partial r, multiple R, F test, driving types),
               benjamini_hochberg
ensemble       ensemble_trend_robustness (members' slopes and class agreement on the
               maps stage's pixel sample), agreement_table
tables         area_shares (ha and % per class), zone_trend_table (planted-truth check),
               assemble (one Dataset of every product)
core           argument checks, time axis, apply_ufunc plumbing, flagged class rasters
kernels        numba kernels

Everything public is importable from here: ``tc.trends.sen_mk``, ``tc.trends.area_shares``.
"""

from __future__ import annotations

from terracarbon.trends.core import DAYS_PER_YEAR, time_in_years
from terracarbon.trends.ensemble import agreement_table, ensemble_trend_robustness
from terracarbon.trends.drivers import benjamini_hochberg, partial_correlation
from terracarbon.trends.mann_kendall import classify_trend, sen_mk, series_trend, steepest_pixel
from terracarbon.trends.persistence import (
    anis_lloyd_expected_rs,
    coefficient_of_variation,
    future_trend,
    hurst_rs,
    stability_classes,
)
from terracarbon.trends.tables import (
    area_shares,
    assemble,
    zone_trend_table,
)

__all__ = [
    "DAYS_PER_YEAR",
    "agreement_table",
    "ensemble_trend_robustness",
    "anis_lloyd_expected_rs",
    "area_shares",
    "assemble",
    "benjamini_hochberg",
    "classify_trend",
    "coefficient_of_variation",
    "future_trend",
    "hurst_rs",
    "partial_correlation",
    "sen_mk",
    "series_trend",
    "stability_classes",
    "steepest_pixel",
    "time_in_years",
    "zone_trend_table",
]
