"""Carbon accounting: pixel areas, storage, totals, change, transitions and lookup carbon.

One module per concern, every public name re-exported here (``tc.carbon.storage(...)``):

* :mod:`~terracarbon.carbon.area` — :func:`pixel_area_ha`, the one pixel-area function
* :mod:`~terracarbon.carbon.stocks` — :func:`add_total`, :func:`storage` (density -> t C)
* :mod:`~terracarbon.carbon.regional_totals` — :func:`totals`, :func:`to_pg`,
  :func:`check_plausible_totals`
* :mod:`~terracarbon.carbon.zonal` — :func:`totals_by_class`, :func:`totals_by_region`,
  :func:`outside_aoa_share`
* :mod:`~terracarbon.carbon.stock_change` — :func:`change`, :func:`change_table`,
  :func:`describe_change`, :func:`ecosystem_contribution`
* :mod:`~terracarbon.carbon.transitions` — :func:`transition_matrix`,
  :func:`transition_matrices`, :func:`conversion_decomposition`
* :mod:`~terracarbon.carbon.lookup` — :func:`lookup_carbon`, :func:`class_mean_table`,
  :func:`compare_with_lookup` (InVEST parity)
* :mod:`~terracarbon.carbon.invest` — :func:`invest_carbon`, :func:`invest_totals`: InVEST's
  Carbon model (storage, sequestration, valuation) with parity tests against InVEST 3.20.2
  and per-pixel uncertainty from class means ± sd (docs/invest.md)
* :mod:`~terracarbon.carbon.pools` — pools as data: which pools a study maps and where each
  comes from (model, ratio, rf, product, lookup)
* :mod:`~terracarbon.carbon.root_shoot`, :mod:`~terracarbon.carbon.belowground` —
  below-ground carbon from above-ground by root:shoot ratios or a random forest
* :mod:`~terracarbon.carbon.biomass_product` — biomass/carbon raster products as pool inputs
* :mod:`~terracarbon.carbon.products` — :func:`export_products` (Cloud-Optimised GeoTIFFs)
* :mod:`~terracarbon.carbon.mapping` — model predictions for every year of the cube

Inputs follow ``docs/architecture.md``: density maps are ``xarray`` objects with dims
``(year, y, x)`` or ``(y, x)`` (pixel centres in CRS units, CRS attached with rioxarray) and
one variable ``<pool>_carbon_density`` per pool the study maps, in ``t C ha-1``, optionally with
``<var>_lower`` / ``<var>_upper`` prediction bounds; ``landuse`` is ``int16`` with codes 1..8
(0 = nodata). Units are checked by dimension (:mod:`terracarbon.units`): a density in
``Mg C ha-1`` or ``kg C m-2`` is converted to ``t C ha-1``, one in ``g C m-2 yr-1`` is refused.
Every output's ``history`` continues its inputs' history.

Naming used throughout: a *pool* is one of ``conventions.CARBON_POOLS`` (``above``,
``below``, ``dead``, ``veg`` = above + below, ``soil``) or ``total``, the sum of the pools a
dataset holds (never ``veg`` with ``above``/``below``); per-pixel density is
``<pool>_carbon_density`` (t C ha-1), per-pixel storage is ``<pool>_carbon_storage`` (t C),
and tables carry their units in column names (``storage_Tg``, ``area_ha``).

Uncertainty propagation (``interval_method``)
---------------------------------------------
Per-pixel bounds are quantiles of each pixel's predictive distribution. Summing them over
pixels (or over pools) needs an assumption about how errors co-vary:

``"correlated"`` (default, conservative)
    errors perfectly correlated (comonotonic): the lower bound of a sum is the sum of the lower
    bounds. This is exact for comonotonic errors and never narrower than the truth for
    positively correlated ones, which is the usual case for model-based maps (a biased model is
    biased everywhere).
``"independent"``
    errors independent between pixels (and between pools): the half-widths
    ``value - lower`` and ``upper - value`` are added in quadrature, each side separately.
    Assumes roughly symmetric, near-Gaussian errors; it is much narrower for many pixels and
    understates uncertainty when errors are spatially autocorrelated.

The total pool is never double counted: when the density data carry their own
``total_carbon_density_lower/upper`` those are used; otherwise the total's bounds are built
from the pools' bounds with the *same* rule (see :func:`add_total` and :func:`totals`).
"""

from terracarbon.carbon._common import BOUNDS, POOL_LONG_NAMES, POOLS, IntervalMethod, Pool
from terracarbon.carbon import (
    belowground, biomass_product, invest, mapping, pools, root_shoot, uncertainty,
)
from terracarbon.carbon.area import pixel_area_ha, uniform_pixel_area_ha
from terracarbon.carbon.stock_change import change, change_table, describe_change, ecosystem_contribution
from terracarbon.carbon.lookup import (
    LOOKUP_POOLS,
    VEG_COMPONENTS,
    class_mean_table,
    compare_with_lookup,
    lookup_carbon,
    read_lookup_table,
)
from terracarbon.carbon.invest import (
    class_table_from_plots,
    invest_carbon,
    invest_totals,
    read_carbon_pools,
    read_landuse_map,
    valuation_constant,
)
from terracarbon.carbon.products import PRODUCT_PREFIXES, export_products
from terracarbon.carbon.stocks import add_total, storage
from terracarbon.carbon.regional_totals import check_plausible_totals, to_pg, totals
from terracarbon.carbon.transitions import (
    conversion_decomposition,
    transition_matrices,
    transition_matrix,
)
from terracarbon.carbon.zonal import outside_aoa_share, totals_by_class, totals_by_region
from terracarbon.conventions import LANDUSE_CLASSES

__all__ = [
    "LOOKUP_POOLS",
    "class_table_from_plots", "invest_carbon", "invest_totals", "read_carbon_pools",
    "read_landuse_map", "valuation_constant",
    "read_lookup_table",
    "uniform_pixel_area_ha",
    "belowground", "biomass_product", "invest", "mapping", "pools", "root_shoot", "uncertainty",
    "BOUNDS", "LANDUSE_CLASSES", "POOLS", "POOL_LONG_NAMES", "PRODUCT_PREFIXES",
    "VEG_COMPONENTS", "IntervalMethod", "Pool", "add_total", "change", "change_table",
    "check_plausible_totals", "class_mean_table", "compare_with_lookup",
    "conversion_decomposition", "describe_change", "ecosystem_contribution", "export_products",
    "lookup_carbon", "outside_aoa_share", "pixel_area_ha", "storage", "to_pg", "totals",
    "totals_by_class", "totals_by_region", "transition_matrices", "transition_matrix",
]
