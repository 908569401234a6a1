"""The flux path (GitHub issue #15): monthly carbon fluxes at towers and on grids.

* :mod:`~terracarbon.flux.towers` — flux-site tables: :func:`read_fluxnet_monthly`
  (FLUXNET2015 SUBSET monthly files), :func:`read_flux_csv` (any site-month CSV);
* :mod:`~terracarbon.flux.respiration` — :func:`heterotrophic_respiration` (Pei et al. 2009)
  and :func:`net_ecosystem_production` (NEP = NPP - Rh);
* :mod:`~terracarbon.flux.aggregate` — :func:`monthly_to_annual` (sum fluxes, average
  states, CF ``cell_methods``);
* :mod:`~terracarbon.flux.inputs` — a study's monthly cube (:func:`build_monthly_cube`) and
  tower table with the covariates at each tower (:func:`prepare_towers`), for data prep;
* :mod:`~terracarbon.flux.totals` — annual sums and the sink, regional totals (Tg C yr-1),
  totals per land-use class and transition.

Monthly rasters are read onto the study grid by :mod:`terracarbon.data.monthly`.
Units and the sign convention (NEE < 0 = uptake; sink = -NEE; NEP > 0 = sink) are in
:mod:`terracarbon.conventions`. Importing this package loads pandas and xarray, nothing heavier.
"""

from __future__ import annotations

from terracarbon.flux import inputs, totals, workflow
from terracarbon.flux.aggregate import annual_units, monthly_to_annual
from terracarbon.flux.inputs import build_monthly_cube, prepare_towers
from terracarbon.flux.respiration import heterotrophic_respiration, net_ecosystem_production
from terracarbon.flux.towers import (
    SIGN_CONVENTION,
    TIDY_UNITS,
    monthly_total,
    read_flux_csv,
    read_fluxnet_monthly,
)

__all__ = [
    "read_fluxnet_monthly", "read_flux_csv", "monthly_total", "TIDY_UNITS", "SIGN_CONVENTION",
    "heterotrophic_respiration", "net_ecosystem_production",
    "monthly_to_annual", "annual_units", "build_monthly_cube", "prepare_towers",
    "inputs", "totals", "workflow",
]
